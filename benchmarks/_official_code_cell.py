"""The official wrenn 0.3.0 SDK side of benchmarks/code_cell.py.

Runs in a virtual environment that holds the official SDK (it is also called ``wrenn``).
Prints one JSON line per API (sync, async) with the latency of each trivial cell.
Usage: python _official_code_cell.py N   (WRENN_* variables in the environment)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from _common import resolve_localhost_names


def main() -> None:
    resolve_localhost_names()
    from wrenn.code_runner import AsyncCapsule, Capsule

    n = int(sys.argv[1])
    with Capsule(wait=True) as cap:
        for _ in range(5):
            assert cap.run_code("1 + 1").text == "2"
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            cap.run_code("1 + 1")
            samples.append(time.perf_counter() - t0)
    print(json.dumps({"client": "official sync", "samples": samples}), flush=True)

    async def run_async() -> list[float]:
        cap = await AsyncCapsule.create(wait=True)
        try:
            for _ in range(5):
                await cap.run_code("1 + 1")
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                await cap.run_code("1 + 1")
                out.append(time.perf_counter() - t0)
            return out
        finally:
            await cap.close()
            await cap.destroy()

    samples = asyncio.run(run_async())
    print(json.dumps({"client": "official async", "samples": samples}), flush=True)


if __name__ == "__main__":
    main()
