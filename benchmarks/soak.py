"""A bounded soak: many capsules doing mixed work for a fixed time (never run by the tests).

One wrenn_local server in its own process; one client process runs W workers (64 by
default) for D seconds (600 by default). Each worker loops: open a capsule scope, then a
random mix of foreground commands, streamed commands, file writes and reads (some
streamed), a terminal session, a background process attached and killed, sometimes a
cancellation in the middle of an operation; then leave the scope (the capsule is
destroyed) and start again. Every 10 s the client samples its RSS, open file
descriptors, threads and tasks. At the end it reports the samples, the operation counts,
the errors (there should be none but injected cancellations), and whether the server
holds any capsule afterwards.

Run: python benchmarks/soak.py [--workers 64] [--seconds 600] [--backend asyncio|trio]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

import wrenn_local
from _common import rss_mib


def run(base_url: str, api_key: str, workers: int, seconds: float, backend: str) -> dict[str, Any]:
    import anyio

    from wrenn import AsyncCapsule, AsyncWrennClient, WrennError

    ops: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    samples: list[dict[str, float]] = []
    deadline = time.monotonic() + seconds

    async def one_round(cap: AsyncCapsule, rng: random.Random) -> None:
        for _ in range(rng.randint(3, 8)):
            kind = rng.choice(["run", "stream", "files", "bigfile", "pty", "background", "cancel"])
            if kind == "run":
                out = await cap.commands.run("echo $((1+2))")
                assert out.stdout == "3\n"
            elif kind == "stream":
                async with cap.commands.stream("seq 1 20000") as run_:
                    assert await run_.wait() == 0
            elif kind == "files":
                payload = os.urandom(rng.randint(1, 64 * 1024))
                await cap.files.write("f.bin", payload)
                assert await cap.files.read_bytes("f.bin") == payload
            elif kind == "bigfile":
                await cap.files.write("big.bin", b"z" * (9 * 1024 * 1024))  # streamed
                size = 0
                async with cap.files.read_stream("big.bin") as chunks:
                    async for chunk in chunks:
                        size += len(chunk)
                assert size == 9 * 1024 * 1024
            elif kind == "pty":
                async with cap.pty("/bin/sh") as term:
                    await term.write("echo pty-$((6*7)); exit\n")
                    seen = b"".join([c async for c in term.output()])
                    assert b"pty-42" in seen
            elif kind == "background":
                handle = await cap.commands.run("sleep 30", background=True)
                await handle.kill()
            else:
                with anyio.move_on_after(rng.uniform(0.0, 0.3)):
                    await cap.commands.run("sleep 5")
            ops[kind] += 1

    async def worker(client: AsyncWrennClient, n: int) -> None:
        rng = random.Random(n)
        while time.monotonic() < deadline:
            try:
                async with client.capsule() as cap:
                    await one_round(cap, rng)
                ops["capsule"] += 1
            except WrennError as exc:
                errors[f"{type(exc).__name__}: {exc}"[:120]] += 1
                await anyio.sleep(1)

    async def sampler() -> None:
        started = time.monotonic()
        while True:
            samples.append(
                {
                    "t": round(time.monotonic() - started),
                    "rss_mib": round(rss_mib(), 1),
                    "fds": len(os.listdir("/proc/self/fd")),
                    "threads": threading.active_count(),
                    "tasks": len(anyio.get_running_tasks()),
                }
            )
            await anyio.sleep(10)

    async def main() -> list[str]:
        async with AsyncWrennClient(api_key=api_key, base_url=base_url, timeout=120) as client:
            async with anyio.create_task_group() as tg:
                tg.start_soon(sampler)
                async with anyio.create_task_group() as pool:
                    for n in range(workers):
                        pool.start_soon(worker, client, n)
                tg.cancel_scope.cancel()
            await anyio.sleep(3)  # let the server finish the last destroys
            left = [c.id for c in await client.capsules.list() if c.status != "stopped"]
            with anyio.move_on_after(30):
                while left:
                    await anyio.sleep(0.5)
                    left = [c.id for c in await client.capsules.list()]
            return left

    left = anyio.run(main, backend=backend)
    samples.append(
        {
            "t": round(seconds),
            "rss_mib": round(rss_mib(), 1),
            "fds": len(os.listdir("/proc/self/fd")),
            "threads": threading.active_count(),
            "tasks": 0,
        }
    )
    return {
        "workers": workers,
        "seconds": seconds,
        "backend": backend,
        "operations": dict(ops),
        "errors": dict(errors),
        "capsules_left_on_server": left,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--backend", default="asyncio")
    parser.add_argument("--one", nargs=2, metavar=("BASE", "KEY"))
    args = parser.parse_args()
    if args.one:
        result = run(args.one[0], args.one[1], args.workers, args.seconds, args.backend)
        print(json.dumps(result))
        return
    with wrenn_local.server_process() as env:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                env["WRENN_BASE_URL"],
                env["WRENN_API_KEY"],
                "--workers",
                str(args.workers),
                "--seconds",
                str(args.seconds),
                "--backend",
                args.backend,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        print(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
