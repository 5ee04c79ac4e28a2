"""The wire, measured as ratios in one run: exec per-call cost and stream CPU per GiB.

Interleaved rounds against one wrenn_local server; every client runs in a fresh process
each round (the children of compare.py and _official.py), and each ratio is taken
within its round, so a machine loaded by something else moves both sides:
  exec    serial ``commands.run("true")``: ours (asyncio, trio, sync), a bare httpx POST
          of the same request (the floor of the round trip), the official sync SDK (the
          peer of the client CPU per call), and the baseline build when given.
          ``p50_vs_floor`` and ``cpu_vs_official_sync`` (the client process's CPU over
          the measured calls / calls).
  stream  stdout through the exec stream: ours with binary output frames (the default
          against wrenn_local), ours on the JSON wire (with and without orjson), the
          baseline build, the official sync SDK; CPU seconds per GiB and its ratio, and
          the server process's CPU per GiB meanwhile (capsule creation included).
  server  with the baseline build: the same JSON-wire stream served by this server and
          by the baseline's, alternating; the server process's CPU per GiB.
Each row gives the median of the rounds and their min–max.
Run: python benchmarks/wire.py [--rounds 5] [--calls 200] [--mib 128]
     [--official-python P] [--baseline-python P]
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections import defaultdict
from typing import Any

from _common import local_server
from compare import MIB, Runner, emit


def spread(values: list[float], digits: int = 3) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def exec_rounds(r: Runner, rounds: int, calls: int) -> None:
    clients: list[tuple[str, Any]] = [
        ("ours asyncio", lambda: r.ours("exec", "asyncio", calls)),
        ("ours trio", lambda: r.ours("exec", "trio", calls)),
        ("ours sync", lambda: r.ours("exec", "sync", calls)),
        ("raw httpx (floor)", lambda: r.ours("exec", "raw", calls)),
    ]
    if r.official:
        clients.append(("official sync", lambda: r.theirs("exec", "sync", calls)))
    if r.baseline:
        base = r.baseline
        clients += [
            (f"baseline {c}", lambda c=c: r.ours("exec", c, calls, base))
            for c in ("asyncio", "sync")
        ]
    p50: dict[str, list[float]] = defaultdict(list)
    cpu_ms: dict[str, list[float]] = defaultdict(list)
    vs_floor: dict[str, list[float]] = defaultdict(list)
    vs_peer: dict[str, list[float]] = defaultdict(list)
    for i in range(rounds):
        turn = clients[i % len(clients) :] + clients[: i % len(clients)]  # rotate the order
        got = {name: run() for name, run in turn}
        floor = statistics.median(got["raw httpx (floor)"]["samples"])
        peer = got.get("official sync")
        for name, res in got.items():
            mid = statistics.median(res["samples"])
            per_call = res["cpu_s"] / calls
            p50[name].append(mid * 1000)
            cpu_ms[name].append(per_call * 1000)
            vs_floor[name].append(mid / floor)
            if peer is not None:
                vs_peer[name].append(per_call / (peer["cpu_s"] / calls))
    for name, _ in clients:
        emit(
            "exec",
            client=name,
            rounds=rounds,
            calls=calls,
            p50_ms=spread(p50[name]),
            cpu_ms_per_call=spread(cpu_ms[name]),
            p50_vs_floor=spread(vs_floor[name], 2),
            cpu_vs_official_sync=spread(vs_peer[name], 2) if vs_peer[name] else None,
        )


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stream_rounds(r: Runner, rounds: int, mib: int, server_pid: int) -> None:
    clients: list[tuple[str, Any]] = [
        ("ours asyncio, binary frames", lambda: r.ours("stream", "asyncio", mib)),
        ("ours trio, binary frames", lambda: r.ours("stream", "trio", mib)),
        ("ours asyncio, JSON wire (orjson)", lambda: r.ours("stream", "asyncio-jsonwire", mib)),
        ("ours asyncio, JSON wire (stdlib json)", lambda: r.ours("stream", "asyncio-json", mib)),
    ]
    if r.official:
        clients.append(("official sync", lambda: r.theirs("stream", "sync", mib)))
    if r.baseline:
        clients.append(
            ("baseline asyncio", lambda: r.ours("stream", "asyncio", mib, r.baseline or ""))
        )
    per_gib: dict[str, list[float]] = defaultdict(list)
    server_per_gib: dict[str, list[float]] = defaultdict(list)
    speed: dict[str, list[float]] = defaultdict(list)
    vs_peer: dict[str, list[float]] = defaultdict(list)
    for i in range(rounds):
        turn = clients[i % len(clients) :] + clients[: i % len(clients)]
        got = {}
        for name, run in turn:
            s0 = process_cpu(server_pid)
            got[name] = run()
            got[name]["server_cpu_s"] = process_cpu(server_pid) - s0  # start-up included
        peer = got.get("official sync")
        for name, res in got.items():
            gib = res["bytes"] / (1024 * MIB)
            per_gib[name].append(res["cpu_s"] / gib)
            server_per_gib[name].append(res["server_cpu_s"] / gib)
            speed[name].append(res["bytes"] / MIB / res["wall_s"])
            if peer is not None:
                vs_peer[name].append(
                    (res["cpu_s"] / gib) / (peer["cpu_s"] * 1024 * MIB / peer["bytes"])
                )
    for name, _ in clients:
        emit(
            "stream",
            client=name,
            rounds=rounds,
            mib=mib,
            cpu_s_per_gib=spread(per_gib[name], 2),
            server_cpu_s_per_gib=spread(server_per_gib[name], 2),
            mib_per_s=spread(speed[name], 1),
            cpu_vs_official_sync=spread(vs_peer[name], 2) if vs_peer[name] else None,
        )


def server_rounds(r: Runner, rounds: int, mib: int, pid: int, baseline_python: str) -> None:
    """The server's encoding, before and after: the same JSON-wire stream (the official
    SDK's, or ours with binary frames off) from this server and from a baseline build's
    server, alternating; the server process's CPU per GiB."""
    per_gib: dict[str, list[float]] = defaultdict(list)
    with local_server(python=baseline_python) as (base, key, base_pid):
        old = Runner(base, key, r.official, None)
        servers = [("this server", r, pid), ("baseline server", old, base_pid)]
        client = "official sync" if r.official else "ours asyncio, JSON wire"
        for i in range(rounds):
            for name, runner, server_pid in servers[i % 2 :] + servers[: i % 2]:
                s0 = process_cpu(server_pid)
                if r.official:
                    res = runner.theirs("stream", "sync", mib)
                else:
                    res = runner.ours("stream", "asyncio-jsonwire", mib)
                assert res is not None
                per_gib[name].append((process_cpu(server_pid) - s0) / (res["bytes"] / (1024 * MIB)))
    ratio = [a / b for a, b in zip(per_gib["this server"], per_gib["baseline server"], strict=True)]
    for name, _, _ in servers:
        emit(
            "server",
            server=name,
            client=client,
            rounds=rounds,
            mib=mib,
            server_cpu_s_per_gib=spread(per_gib[name], 2),
            cpu_vs_baseline=spread(ratio, 2) if name == "this server" else None,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="exec,stream,server")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--mib", type=int, default=128)
    parser.add_argument("--official-python", default=os.environ.get("WRENN_OFFICIAL_PYTHON"))
    parser.add_argument("--baseline-python", default=os.environ.get("WRENN_BASELINE_PYTHON"))
    args = parser.parse_args()
    only = set(args.only.split(","))
    with local_server() as (base, key, pid):
        r = Runner(base, key, args.official_python, args.baseline_python)
        if "exec" in only:
            exec_rounds(r, args.rounds, args.calls)
        if "stream" in only:
            stream_rounds(r, max(1, args.rounds - 2), args.mib, pid)
        if "server" in only and args.baseline_python:
            server_rounds(r, max(2, args.rounds - 1), args.mib, pid, args.baseline_python)


if __name__ == "__main__":
    main()
