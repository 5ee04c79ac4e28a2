"""Server memory while a command prints a lot (issue 17: bounded exec output).

Starts ``python -m wrenn_local serve`` as its own process, creates a capsule and runs a
command printing ``--mib`` MiB (``head -c N /dev/zero | base64 -w 0``, ~1.33 × N bytes
of text) three ways, sampling the server's resident memory every 20 ms
(``/proc/<pid>/status`` VmRSS; the agent runs in the capsule, so it is not counted):

* ``foreground``: ``POST .../exec`` (the answer carries the output, up to the cap);
* ``stream``: the exec stream WebSocket, read to the end;
* ``stream_unread``: the exec stream WebSocket, not read for 5 s, then closed.

Prints JSON: the server's RSS at rest, its peak and growth for each.

Run: python benchmarks/exec_output_memory.py --mib 200
"""

from __future__ import annotations

import argparse
import json
import time

import anyio
import httpx
from websockets.asyncio.client import connect

from _common import local_server, rss_kib, sample_peak


async def measure(base: str, key: str, pid: int, mib: int) -> dict[str, object]:
    script = f"head -c {mib}M /dev/zero | base64 -w 0"
    headers = {"X-API-Key": key}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=600) as http:
        cid = (await http.post("/v1/capsules", json={})).json()["id"]
        while (await http.get(f"/v1/capsules/{cid}")).json()["status"] != "running":
            await anyio.sleep(0.05)
        rest = rss_kib(pid)
        results: dict[str, object] = {"mib": mib, "server_rss_at_rest_mib": round(rest / 1024, 1)}
        for how in ("foreground", "stream", "stream_unread"):
            peak = [rss_kib(pid)]
            stop = anyio.Event()
            received = 0
            async with anyio.create_task_group() as tg:
                tg.start_soon(sample_peak, pid, peak, stop)
                started = time.perf_counter()
                if how == "foreground":
                    resp = await http.post(
                        f"/v1/capsules/{cid}/exec",
                        json={"cmd": "/bin/sh", "args": ["-c", script], "timeout_sec": 300},
                    )
                    assert resp.status_code == 200, resp.text[:200]
                    received = len(resp.json()["stdout"])
                else:
                    url = base.replace("http", "ws", 1) + f"/v1/capsules/{cid}/exec/stream"
                    async with connect(
                        url, additional_headers=headers, max_size=None, ping_interval=None
                    ) as ws:
                        start = {"type": "start", "cmd": "/bin/sh", "args": ["-c", script]}
                        await ws.send(json.dumps(start))
                        if how == "stream":
                            while True:
                                msg = json.loads(await ws.recv())
                                if msg["type"] in ("stdout", "stderr"):
                                    received += len(msg["data"])
                                elif msg["type"] in ("exit", "error"):
                                    break
                        else:
                            await anyio.sleep(5)
                seconds = time.perf_counter() - started
                stop.set()
            results[how] = {
                "seconds": round(seconds, 2),
                "received_mib": round(received / (1 << 20), 1),
                "server_peak_rss_mib": round(peak[0] / 1024, 1),
                "growth_mib": round((peak[0] - rest) / 1024, 1),
            }
        await http.delete(f"/v1/capsules/{cid}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=200)
    args = parser.parse_args()
    with local_server() as (base, key, pid):
        print(json.dumps(anyio.run(measure, base, key, pid, args.mib)))


if __name__ == "__main__":
    main()
