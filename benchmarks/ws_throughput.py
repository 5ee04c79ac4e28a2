"""WebSocket download throughput and PTY keystroke latency, side by side in one run.

Download: 256 MiB in 64 KiB binary messages from an independent server (the `websockets`
library in its own process), received by
  * ours (wrenn._transport.websocket) under asyncio and under trio,
  * the `websockets` asyncio client (C speedups),
  * httpx-ws (the official SDK's WebSocket layer), when installed.
Each client runs 3 times in a fresh process; we report the median MiB/s, the spread and
the client's CPU seconds per GiB, plus ratios to the `websockets` client.

PTY: keystroke echo round trip through wrenn_local's PTY endpoint with our client
(one byte in, wait for its echo), 300 keystrokes, p50 and p99, on both backends.

Run: python benchmarks/ws_throughput.py [--mib 256]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_ours(url: str, backend: str) -> tuple[int, float, float]:
    import anyio

    from wrenn._transport.websocket import connect_websocket

    async def go() -> tuple[int, float, float]:
        total = 0
        c0, t0 = cpu(), time.perf_counter()
        async with connect_websocket(url, max_message_size=1 << 20) as ws:
            async for message in ws:
                total += len(message)
        return total, time.perf_counter() - t0, cpu() - c0

    return anyio.run(go, backend=backend)


def run_websockets(url: str) -> tuple[int, float, float]:
    import asyncio

    from websockets.asyncio.client import connect

    async def go() -> tuple[int, float, float]:
        total = 0
        c0, t0 = cpu(), time.perf_counter()
        async with connect(url, max_size=None, compression=None) as ws:
            async for message in ws:
                total += len(message)
        return total, time.perf_counter() - t0, cpu() - c0

    return asyncio.run(go())


def run_httpx_ws(url: str) -> tuple[int, float, float]:
    import asyncio

    import httpx
    from httpx_ws import WebSocketDisconnect, aconnect_ws

    async def go() -> tuple[int, float, float]:
        total = 0
        c0, t0 = cpu(), time.perf_counter()
        async with (
            httpx.AsyncClient() as client,
            aconnect_ws(
                url.replace("ws://", "http://"), client, max_message_size_bytes=1 << 20
            ) as ws,
        ):
            try:
                while True:
                    total += len(await ws.receive_bytes())
            except WebSocketDisconnect:
                pass
        return total, time.perf_counter() - t0, cpu() - c0

    return asyncio.run(go())


def one(client: str, url: str) -> None:
    if client.startswith("ours-"):
        result = run_ours(url, client.split("-", 1)[1])
    elif client == "websockets":
        result = run_websockets(url)
    else:
        result = run_httpx_ws(url)
    print(json.dumps(result))


def pty_latency(backend: str, count: int) -> dict[str, float]:
    import anyio
    import httpx

    import wrenn_local
    from wrenn._transport.websocket import connect_websocket

    async def go() -> list[float]:
        async with (
            wrenn_local.serve() as server,
            httpx.AsyncClient(
                base_url=server.base_url, headers={"X-API-Key": server.api_key}
            ) as http,
        ):
            cid = (await http.post("/v1/capsules", json={})).json()["id"]
            while (await http.get(f"/v1/capsules/{cid}")).json()["status"] != "running":
                await anyio.sleep(0.02)
            url = server.base_url.replace("http", "ws") + f"/v1/capsules/{cid}/pty"
            async with connect_websocket(url, headers={"X-API-Key": server.api_key}) as ws:
                # `cat` echoes every byte through the terminal: one keystroke, one echo
                await ws.send_text(json.dumps({"type": "start", "cmd": "/bin/cat"}))
                await ws.receive()
                samples = []
                for i in range(count + 20):
                    key = bytes([97 + i % 26])
                    t0 = time.perf_counter()
                    await ws.send_bytes(key)
                    while True:
                        message = await ws.receive()
                        if isinstance(message, bytes) and key in message:
                            break
                    if i >= 20:  # warm-up
                        samples.append(time.perf_counter() - t0)
                return samples

    samples = sorted(anyio.run(go, backend=backend))
    return {
        "p50_ms": round(statistics.median(samples) * 1000, 3),
        "p99_ms": round(samples[int(len(samples) * 0.99) - 1] * 1000, 3),
        "n": len(samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--one", nargs=2, metavar=("CLIENT", "URL"))
    args = parser.parse_args()
    if args.one:
        one(*args.one)
        return
    with subprocess.Popen(
        [sys.executable, str(HERE / "_ws_source.py"), str(args.mib)],
        stdout=subprocess.PIPE,
        text=True,
    ) as source:
        try:
            assert source.stdout is not None
            url = f"ws://127.0.0.1:{source.stdout.readline().strip().split('=')[1]}/"
            clients = ["websockets", "ours-asyncio", "ours-trio", "httpx-ws"]
            results: dict[str, dict[str, float]] = {}
            for client in clients:
                rates, cpus = [], []
                for _ in range(args.runs):
                    out = subprocess.run(
                        [sys.executable, __file__, "--one", client, url],
                        capture_output=True,
                        text=True,
                        check=False,
                    )
                    if out.returncode != 0:
                        break
                    total, seconds, cpu_s = json.loads(out.stdout.strip().splitlines()[-1])
                    assert total == args.mib << 20, (client, total)
                    rates.append(args.mib / seconds)
                    cpus.append(cpu_s / (args.mib / 1024))
                if rates:
                    results[client] = {
                        "mib_per_s": round(statistics.median(rates), 1),
                        "spread_mib_per_s": round(max(rates) - min(rates), 1),
                        "cpu_s_per_gib": round(statistics.median(cpus), 2),
                    }
        finally:
            source.terminate()
    base = results["websockets"]["mib_per_s"]
    for values in results.values():
        values["ratio_to_websockets"] = round(values["mib_per_s"] / base, 2)
    print(json.dumps({"download": results, "mib": args.mib}))
    print(json.dumps({"pty_keystroke": {b: pty_latency(b, 300) for b in ("asyncio", "trio")}}))


if __name__ == "__main__":
    main()
