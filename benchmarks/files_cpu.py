"""Client CPU per GiB of streamed uploads and downloads, against the official sync SDK.

Interleaved rounds against one wrenn_local server: in every round each client moves the
same bytes in a fresh process (the order rotates from round to round), and its CPU
seconds (user + system of that process only) are divided by the official sync SDK's of
the same round. Each row gives the median over the rounds and the min-max spread of
CPU s/GiB and of that ratio (``cpu_vs_official_sync``; issue 20's target: <= 1.0 through
our async API, <= 1.15 through our sync API).

Clients: ours (asyncio, trio, sync), the build in ``--baseline-python`` (today's main,
asyncio and sync), httpx streaming a hand-built multipart body (the floor) and the
official SDK's sync client (``--official-python``). The children are compare.py's.
Run: python benchmarks/files_cpu.py [--mib 256] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from typing import Any

import wrenn_local
from compare import Runner

OURS = ("asyncio", "trio", "sync")
BASELINE = ("asyncio", "sync")


def spread(values: list[float], digits: int = 2) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def measure(r: Runner, direction: str, mib: int, rounds: int) -> None:
    clients: list[tuple[str, Any]] = [
        (f"ours {c}", lambda c=c: r.ours(direction, c, mib)) for c in OURS
    ]
    if r.baseline:
        clients += [
            (f"baseline {c}", lambda c=c: r.ours(direction, c, mib, r.baseline)) for c in BASELINE
        ]
    clients.append(("raw httpx (floor)", lambda: r.ours(direction, "raw", mib)))
    if r.official:
        clients.append(("official sync", lambda: r.theirs(direction, "sync", mib)))
    per_gib: dict[str, list[float]] = {name: [] for name, _ in clients}
    speed: dict[str, list[float]] = {name: [] for name, _ in clients}
    ratios: dict[str, list[float]] = {name: [] for name, _ in clients}
    for _, run in clients:  # a warm-up round, not counted (page cache, server, capsules)
        run()
    for i in range(rounds):
        shift = i % len(clients)
        this_round: dict[str, float] = {}
        for name, run in clients[shift:] + clients[:shift]:
            res = run()
            gib = res["bytes"] / (1 << 30)
            this_round[name] = res["cpu_s"] / gib
            per_gib[name].append(this_round[name])
            speed[name].append(res["bytes"] / (1 << 20) / res["wall_s"])
        if "official sync" in this_round:
            for name, value in this_round.items():
                ratios[name].append(value / this_round["official sync"])
    for name, _ in clients:
        row: dict[str, Any] = {
            "figure": f"files {direction}",
            "client": name,
            "mib": mib,
            "rounds": rounds,
            "cpu_s_per_gib": spread(per_gib[name]),
            "mib_per_s": spread(speed[name], 0),
        }
        if ratios[name]:
            row["cpu_vs_official_sync"] = spread(ratios[name])
        print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="upload,download")
    parser.add_argument("--official-python", default=os.environ.get("WRENN_OFFICIAL_PYTHON"))
    parser.add_argument("--baseline-python", default=os.environ.get("WRENN_BASELINE_PYTHON"))
    args = parser.parse_args()
    with wrenn_local.server_process() as env:
        r = Runner(
            env["WRENN_BASE_URL"], env["WRENN_API_KEY"], args.official_python, args.baseline_python
        )
        for direction in args.only.split(","):
            measure(r, direction, args.mib, args.rounds)


if __name__ == "__main__":
    main()
