"""Latency of a trivial cell (``1 + 1``) through the code runner, side by side in one run.

One wrenn_local server (its own process, template ``code-runner-beta``) serves every
client; each client gets a fresh capsule, warms up with 5 cells, then runs N cells one
after another:
  * ours: async on asyncio, async on trio, and the sync API;
  * the official wrenn 0.3.0 SDK, sync and async (from its own virtual environment, given
    with ``--official-python``; skipped when absent);
  * a floor: the ``websockets`` client speaking the kernel protocol by hand over the
    same proxy, one connection kept open.
Reports p50, p90 and mean in ms, and each p50 as a ratio to ours on asyncio.
Run: python benchmarks/code_cell.py [--cells 200] [--official-python PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import wrenn_local

HERE = Path(__file__).resolve().parent


def ours(base_url: str, api_key: str, n: int, flavour: str) -> list[float]:
    if flavour == "sync":
        from wrenn import WrennClient

        with (
            WrennClient(api_key=api_key, base_url=base_url) as client,
            client.capsule(template="code-runner-beta") as cap,
        ):
            for _ in range(5):
                assert cap.run_code("1 + 1").text == "2"
            samples = []
            for _ in range(n):
                t0 = time.perf_counter()
                cap.run_code("1 + 1")
                samples.append(time.perf_counter() - t0)
            return samples

    import anyio

    from wrenn import AsyncWrennClient

    async def main() -> list[float]:
        async with (
            AsyncWrennClient(api_key=api_key, base_url=base_url) as client,
            client.capsule(template="code-runner-beta") as cap,
        ):
            for _ in range(5):
                assert (await cap.run_code("1 + 1")).text == "2"
            samples = []
            for _ in range(n):
                t0 = time.perf_counter()
                await cap.run_code("1 + 1")
                samples.append(time.perf_counter() - t0)
            return samples

    return anyio.run(main, backend=flavour)


def floor(base_url: str, api_key: str, n: int) -> list[float]:
    """The kernel protocol by hand with `websockets`: no SDK at all."""
    import asyncio
    import uuid

    import httpx
    import websockets

    port = base_url.rsplit(":", 1)[1].split("/")[0]

    async def main() -> list[float]:
        async with httpx.AsyncClient(
            base_url=base_url, headers={"X-API-Key": api_key}, timeout=60
        ) as http:
            cid = (await http.post("/v1/capsules", json={"template": "code-runner-beta"})).json()[
                "id"
            ]
            try:
                while (await http.get(f"/v1/capsules/{cid}")).json()["status"] != "running":
                    await asyncio.sleep(0.05)
                host = {"Host": f"8888-{cid}.localhost:{port}"}
                kernel = (
                    await http.post("/api/kernels", json={"name": "wrenn"}, headers=host)
                ).json()["id"]
                url = f"ws://8888-{cid}.localhost:{port}/api/kernels/{kernel}/channels"
                async with websockets.connect(
                    url,
                    additional_headers={"X-API-Key": api_key},
                    host="127.0.0.1",  # connect here; the Host header names the capsule
                    port=int(port),
                ) as ws:

                    async def cell() -> None:
                        msg_id = uuid.uuid4().hex
                        await ws.send(
                            json.dumps(
                                {
                                    "header": {
                                        "msg_id": msg_id,
                                        "msg_type": "execute_request",
                                        "username": "bench",
                                        "session": "bench",
                                        "version": "5.3",
                                    },
                                    "parent_header": {},
                                    "metadata": {},
                                    "content": {"code": "1 + 1", "silent": False},
                                    "buffers": [],
                                    "channel": "shell",
                                }
                            )
                        )
                        while True:
                            m = json.loads(await ws.recv())
                            if (
                                m.get("parent_header", {}).get("msg_id") == msg_id
                                and m.get("msg_type") == "status"
                                and m["content"].get("execution_state") == "idle"
                            ):
                                return

                    for _ in range(5):
                        await cell()
                    samples = []
                    for _ in range(n):
                        t0 = time.perf_counter()
                        await cell()
                        samples.append(time.perf_counter() - t0)
                    return samples
            finally:
                await http.delete(f"/v1/capsules/{cid}")

    return asyncio.run(main())


def summary(name: str, samples: list[float]) -> dict[str, object]:
    ms = sorted(s * 1000 for s in samples)
    return {
        "client": name,
        "cells": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p90_ms": round(ms[int(len(ms) * 0.9) - 1], 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--official-python", default=os.environ.get("WRENN_OFFICIAL_PYTHON"))
    parser.add_argument("--one", nargs=4, metavar=("BASE", "KEY", "N", "FLAVOUR"))
    args = parser.parse_args()
    if args.one:
        base, key, n, flavour = args.one
        samples = (
            floor(base, key, int(n)) if flavour == "floor" else ours(base, key, int(n), flavour)
        )
        print(json.dumps({"client": flavour, "samples": samples}))
        return
    with wrenn_local.server_process() as env:
        results: list[dict[str, object]] = []
        for flavour in ("asyncio", "trio", "sync", "floor"):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    env["WRENN_BASE_URL"],
                    env["WRENN_API_KEY"],
                    str(args.cells),
                    flavour,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            line = json.loads(out.stdout.strip().splitlines()[-1])
            name = {"floor": "raw websockets (floor)"}.get(flavour, f"ours {flavour}")
            results.append(summary(name, line["samples"]))
        if args.official_python:
            port = env["WRENN_BASE_URL"].rsplit(":", 1)[1].split("/")[0]
            out = subprocess.run(
                [args.official_python, str(HERE / "_official_code_cell.py"), str(args.cells)],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, **env, "WRENN_PROXY_DOMAIN": f"localhost:{port}"},
            )
            for raw in out.stdout.strip().splitlines():
                line = json.loads(raw)
                results.append(summary(line["client"], line["samples"]))
        base = next(r for r in results if r["client"] == "ours asyncio")["p50_ms"]
        assert isinstance(base, float)
        for r in results:
            p50 = r["p50_ms"]
            assert isinstance(p50, float)
            r["p50_vs_ours_asyncio"] = round(p50 / base, 2)
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
