"""Cancellation churn against httpx and httpx2: does the pool survive?

Thousands of GETs through a pool of 2-4 connections, 8 at once, each in a cancel scope
with a random deadline of 0-25 ms, so that cancellation lands at every stage (waiting
for a pool slot, connecting, sending, reading). Afterwards a health phase sends sequential
requests, each bounded to 2 s, and the pool's internal queue is inspected. A leak shows
as health failures (PoolTimeout) or requests left queued in the pool.

Run one combination:  python benchmarks/http_churn.py --lib httpx2 --backend trio
Run the whole matrix: python benchmarks/http_churn.py --all   (prints JSON per run)
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio

HERE = Path(__file__).resolve().parent


def pool_state(client: Any) -> dict[str, int]:
    pool = client._transport._pool  # private on purpose: we are inspecting for leaks
    conns = list(pool.connections)
    return {
        "connections": len(conns),
        "busy_connections": sum(1 for c in conns if not c.is_idle() and not c.is_closed()),
        "queued_requests": len(getattr(pool, "_requests", [])),
    }


async def churn(lib: str, port: int, requests: int, pool_size: int, seed: int) -> dict[str, Any]:
    httpx = importlib.import_module(lib)
    rng = random.Random(seed)
    url = f"http://127.0.0.1:{port}/x"
    counts = {"ok": 0, "cancelled": 0, "errors": 0}
    error_kinds: dict[str, int] = {}
    limits = httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(5.0)) as client:
        started = time.perf_counter()
        sem = anyio.Semaphore(8)

        async def one() -> None:
            async with sem:
                with anyio.move_on_after(rng.random() * 0.025) as scope:
                    try:
                        await client.get(url)
                        counts["ok"] += 1
                    except Exception as exc:
                        counts["errors"] += 1
                        error_kinds[type(exc).__name__] = error_kinds.get(type(exc).__name__, 0) + 1
                if scope.cancelled_caught:
                    counts["cancelled"] += 1

        async with anyio.create_task_group() as tg:
            for _ in range(requests):
                tg.start_soon(one)
        churn_s = time.perf_counter() - started
        state_after_churn = pool_state(client)
        health_fail = 0
        health_kinds: dict[str, int] = {}
        for _ in range(40):
            try:
                with anyio.fail_after(2):
                    resp = await client.get(url)
                    resp.raise_for_status()
            except BaseException as exc:
                if isinstance(exc, anyio.get_cancelled_exc_class()):
                    raise
                health_fail += 1
                health_kinds[type(exc).__name__] = health_kinds.get(type(exc).__name__, 0) + 1
        return {
            "lib": lib,
            "version": httpx.__version__,
            "requests": requests,
            "pool": pool_size,
            **counts,
            "error_kinds": error_kinds,
            "churn_seconds": round(churn_s, 3),
            "after_churn": state_after_churn,
            "health_failures_of_40": health_fail,
            "health_error_kinds": health_kinds,
            "after_health": pool_state(client),
        }


def run_one(lib: str, backend: str, requests: int, pool_size: int, seed: int) -> dict[str, Any]:
    server = subprocess.Popen(
        [sys.executable, str(HERE / "_churn_server.py"), "asyncio"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline().strip()
        port = int(line.split("=", 1)[1])
        result = anyio.run(churn, lib, port, requests, pool_size, seed, backend=backend)
        result["backend"] = backend
        return result
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lib", default="httpx2")
    parser.add_argument("--backend", default="asyncio")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--pool", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--all", action="store_true")
    args = parser.parse_args()
    combos = (
        [
            (lib, be, pool)
            for lib in ("httpx", "httpx2")
            for be in ("asyncio", "trio")
            for pool in (2, 4)
        ]
        if args.all
        else [(args.lib, args.backend, args.pool)]
    )
    for lib, backend, pool in combos:
        # each run in a fresh process, so the two libraries never share an interpreter
        out = (
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--lib",
                    lib,
                    "--backend",
                    backend,
                    "--pool",
                    str(pool),
                    "--requests",
                    str(args.requests),
                    "--seed",
                    str(args.seed),
                    "--one",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if args.all
            else None
        )
        if out is not None:
            print(
                out.stdout.strip()
                or json.dumps({"lib": lib, "backend": backend, "crashed": out.stderr[-2000:]}),
                flush=True,
            )
        else:
            print(json.dumps(run_one(lib, backend, args.requests, pool, args.seed)), flush=True)


if __name__ == "__main__":
    if "--one" in sys.argv:
        sys.argv.remove("--one")
    main()
