"""The official wrenn 0.3.0 SDK side of benchmarks/compare.py (run in its own venv, since
that package is also called ``wrenn``). One measurement per process; prints one JSON line.

Usage: python _official.py KIND CLIENT N   (WRENN_* variables in the environment)
  KIND: exec | fanout | stream | upload | download;  CLIENT: sync | async
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from typing import Any

from _common import cpu, machine_busy_s, peak_mib, resolve_localhost_names


def main() -> None:
    resolve_localhost_names()
    from wrenn import AsyncCapsule, Capsule

    kind, client, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    out: dict[str, Any] = {}
    if kind == "exec" and client == "sync":
        with Capsule(wait=True) as cap:
            for _ in range(10):
                cap.commands.run("true")
            samples = []
            c0 = cpu()
            for _ in range(n):
                t0 = time.perf_counter()
                cap.commands.run("true")
                samples.append(time.perf_counter() - t0)
            out["cpu_s"] = cpu() - c0
        out["samples"] = samples
    elif kind == "exec":

        async def run_async() -> list[float]:
            cap = await AsyncCapsule.create(wait=True)
            try:
                for _ in range(10):
                    await cap.commands.run("true")
                samples = []
                c0 = cpu()
                for _ in range(n):
                    t0 = time.perf_counter()
                    await cap.commands.run("true")
                    samples.append(time.perf_counter() - t0)
                out["cpu_s"] = cpu() - c0
                return samples
            finally:
                await cap.destroy()

        out["samples"] = asyncio.run(run_async())
    elif kind == "fanout":
        commands = 10
        latencies: list[float] = []

        async def job() -> None:
            cap = await AsyncCapsule.create(wait=True)
            try:
                for _ in range(commands):
                    t0 = time.perf_counter()
                    await cap.commands.run("true")
                    latencies.append(time.perf_counter() - t0)
            finally:
                await cap.destroy()

        async def fan() -> float:
            t0 = time.perf_counter()
            await asyncio.gather(*(job() for _ in range(n)))
            return time.perf_counter() - t0

        m0, c0 = machine_busy_s(), cpu()
        out["wall_s"] = asyncio.run(fan())
        out["latencies"] = latencies
        out["cpu_s"] = cpu() - c0
        out["machine_cpu_s"] = machine_busy_s() - m0
    elif kind == "stream":
        with Capsule(wait=True) as cap:
            c0, t0 = cpu(), time.perf_counter()
            total = 0
            for event in cap.commands.stream(f"yes | head -c {n * 1024 * 1024}"):
                data = getattr(event, "data", None)
                if isinstance(data, str):
                    total += len(data)
            out.update(bytes=total, wall_s=time.perf_counter() - t0, cpu_s=cpu() - c0)
    elif kind in ("upload", "download"):
        chunk = b"w" * (1024 * 1024)
        with Capsule(wait=True) as cap:
            if kind == "download":
                cap.files.upload_stream("/tmp/big.bin", (chunk for _ in range(n)))
            c0, t0 = cpu(), time.perf_counter()
            if kind == "upload":
                cap.files.upload_stream("/tmp/big.bin", (chunk for _ in range(n)))
                total = n * len(chunk)
            else:
                total = sum(len(part) for part in cap.files.download_stream("/tmp/big.bin"))
            out.update(bytes=total, wall_s=time.perf_counter() - t0, cpu_s=cpu() - c0)
    else:
        raise SystemExit(f"unknown measurement {kind} {client}")
    out["peak_rss_mib"] = peak_mib()
    if "samples" in out:
        out["p50_ms"] = statistics.median(out["samples"]) * 1000
    print(json.dumps(out))


if __name__ == "__main__":
    main()
