"""The embedded server's start and stop, in this process: ``async with
wrenn_local.serve()`` entered and left with no capsule, against the same with a base
template of its own (every server made one, copying the host's ``/etc``, before
``_shared_base.py``).

    python benchmarks/server_start.py [--rounds 15] [--backend trio]

Rounds are interleaved (shared, own, shared, …) so load on the machine falls on both rows
alike. Figures (one JSON line per row, ``figure: server start``): ``enter`` and ``exit``
p50 ms, with min–max, ``cpu`` p50 ms (this process's, worker threads included: the base
is made in one), and the shared row's ratio to the own-base row. What a test suite or a
script that starts a server per run waits for, before its first capsule.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

import wrenn_local
from wrenn_local import _shared_base


async def one(own_base: bool) -> tuple[float, float, float]:
    """Enter and leave one server: (enter ms, exit ms, CPU ms)."""
    real = _shared_base.base_home
    if own_base:  # a base home that cannot be used: the server makes its own, as before
        blocker = Path(tempfile.mkstemp(prefix="wrenn-bench-not-a-dir-")[1])
        _shared_base.base_home = lambda: blocker
    try:
        cpu0, t0 = time.process_time(), time.perf_counter()
        async with wrenn_local.serve():
            t1 = time.perf_counter()
        t2, cpu1 = time.perf_counter(), time.process_time()
    finally:
        _shared_base.base_home = real
        if own_base:
            blocker.unlink()
    return (t1 - t0) * 1000, (t2 - t1) * 1000, (cpu1 - cpu0) * 1000


def row(name: str, runs: list[tuple[float, float, float]]) -> dict[str, Any]:
    enter, leave, cpu = (sorted(r[i] for r in runs) for i in range(3))
    return {
        "figure": "server start",
        "server": name,
        "rounds": len(runs),
        "enter_p50_ms": round(statistics.median(enter), 1),
        "enter_min_ms": round(enter[0], 1),
        "enter_max_ms": round(enter[-1], 1),
        "exit_p50_ms": round(statistics.median(leave), 1),
        "cpu_p50_ms": round(statistics.median(cpu), 1),
    }


async def main(rounds: int) -> None:
    logging.disable(logging.WARNING)  # the own-base rows warn at every start, by design
    await one(False)  # unmeasured: makes the shared base for this host's /etc
    shared: list[tuple[float, float, float]] = []
    own: list[tuple[float, float, float]] = []
    for _ in range(rounds):
        shared.append(await one(False))
        own.append(await one(True))
    peer = row("own base (each server copies /etc: before)", own)
    ours = row("shared base (default)", shared)
    ours["enter_vs_own_base"] = round(ours["enter_p50_ms"] / peer["enter_p50_ms"], 2)
    ours["cpu_vs_own_base"] = round(ours["cpu_p50_ms"] / peer["cpu_p50_ms"], 2)
    for result in (ours, peer):
        print(json.dumps(result))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    args = parser.parse_args()
    anyio.run(main, args.rounds, backend=args.backend)
