"""Fan-out: N capsules at once, 5 commands each, through `client.map`.

The server (wrenn_local) runs in its own process; each N is measured in a fresh client
process, which reports wall time, p50/p99 latency of the individual commands, and its
own peak resident memory (ru_maxrss). Run: python benchmarks/fanout.py [16 64 256]
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time


def measure(base_url: str, api_key: str, n: int, backend: str) -> dict[str, object]:
    import anyio

    from wrenn import AsyncCapsule, AsyncWrennClient

    latencies: list[float] = []

    async def job(cap: AsyncCapsule, _: int) -> None:
        for _ in range(5):
            t0 = time.perf_counter()
            await cap.commands.run("true", check=True)
            latencies.append(time.perf_counter() - t0)

    async def main() -> float:
        async with AsyncWrennClient(api_key=api_key, base_url=base_url, timeout=120) as client:
            t0 = time.perf_counter()
            await client.map(job, range(n), concurrency=n)
            return time.perf_counter() - t0

    wall = anyio.run(main, backend=backend)
    latencies.sort()
    return {
        "capsules": n,
        "backend": backend,
        "commands": len(latencies),
        "wall_s": round(wall, 2),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000, 1),
        "peak_client_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(measure(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])))
        return
    sizes = [int(a) for a in sys.argv[1:]] or [16, 64, 256]
    with subprocess.Popen(
        [sys.executable, "-m", "wrenn_local", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as server:
        try:
            assert server.stdout is not None
            env = dict(server.stdout.readline().strip().split("=", 1) for _ in range(2))
            for n in sizes:
                for backend in ("asyncio", "trio"):
                    out = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--one",
                            env["WRENN_BASE_URL"],
                            env["WRENN_API_KEY"],
                            str(n),
                            backend,
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    print(out.stdout.strip(), flush=True)
        finally:
            server.terminate()
            server.wait(60)


if __name__ == "__main__":
    main()
