"""Peak memory of wrenn_local while 1 GiB streams through it, up and down.

Starts ``python -m wrenn_local serve`` as its own process, creates a capsule, streams a
file of ``--mib`` MiB into it with ``files/stream/write`` (chunked multipart) and back
out with ``files/stream/read``, sampling the server process's resident memory every 50 ms
(``/proc/<pid>/status`` VmRSS; the agent runs in the capsule, so it is not counted).
Prints JSON with the server's RSS at rest and at peak during each transfer, and the
peak growth as a fraction of the bytes moved.

Run: python benchmarks/server_memory.py --mib 1024
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import AsyncIterator

import anyio
import httpx

from _common import local_server, rss_kib, sample_peak


async def measure(base: str, key: str, pid: int, mib: int) -> dict[str, object]:
    block = os.urandom(1 << 20)
    boundary = "wrennbench" + "0" * 22
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\n/tmp/big\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="u"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    async def body() -> AsyncIterator[bytes]:
        yield head
        for _ in range(mib):
            yield block
        yield tail

    async with httpx.AsyncClient(
        base_url=base, headers={"X-API-Key": key}, timeout=httpx.Timeout(600)
    ) as http:
        cid = (await http.post("/v1/capsules", json={"memory_mb": 2048})).json()["id"]
        while (await http.get(f"/v1/capsules/{cid}")).json()["status"] != "running":
            await anyio.sleep(0.05)
        rest = rss_kib(pid)
        results: dict[str, object] = {"mib": mib, "server_rss_at_rest_mib": round(rest / 1024, 1)}
        for direction in ("upload", "download"):
            peak = [rss_kib(pid)]
            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(sample_peak, pid, peak, stop, 0.05)
                started = time.perf_counter()
                if direction == "upload":
                    resp = await http.post(
                        f"/v1/capsules/{cid}/files/stream/write",
                        content=body(),
                        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                    )
                    assert resp.status_code == 204, resp.text
                    moved = mib << 20
                else:
                    moved = 0
                    async with http.stream(
                        "POST", f"/v1/capsules/{cid}/files/stream/read", json={"path": "/tmp/big"}
                    ) as resp:
                        async for chunk in resp.aiter_raw():
                            moved += len(chunk)
                    assert moved == mib << 20, moved
                seconds = time.perf_counter() - started
                stop.set()
            results[direction] = {
                "seconds": round(seconds, 2),
                "mib_per_s": round(mib / seconds, 1),
                "server_peak_rss_mib": round(peak[0] / 1024, 1),
                "growth_mib": round((peak[0] - rest) / 1024, 1),
                "growth_per_byte_moved": round((peak[0] - rest) * 1024 / moved, 5),
            }
        await http.delete(f"/v1/capsules/{cid}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=1024)
    args = parser.parse_args()
    with local_server() as (base, key, pid):
        print(json.dumps(anyio.run(measure, base, key, pid, args.mib)))


if __name__ == "__main__":
    main()
