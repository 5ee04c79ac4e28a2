"""Capsule boot against its floor (issue 20): create→running, serial and 32 at once.

Run as root on a host with full isolation:
    python benchmarks/boot.py [--rounds 15] [--concurrent 32] [--baseline-python PY]

Figures (one JSON line each):
  create      serial create→running (POST until the server's event stream says
              ``running``: pushed, so no polling load skews either build); rows
              the floor — a bare ``bwrap … python3 -I -c pass`` with the same bwrap binary
              and a comparable minimal sandbox (own pid, ipc, uts and network namespaces,
              read-only root, /proc, /dev, a tmpfs) —, ours (the default server: warm
              spares on, so a create of the key it repeats claims a booted spare),
              ``ours cold`` (the same build with ``--spares 0``: every create a cold
              boot, joining a ready network: one made, filtered and connected ahead),
              ``ours cold, own network`` (``--spares 0 --ready-networks 0``: each boot
              makes its own network, on its critical path) and the baseline build's
              server (``--baseline-python`` or WRENN_BASELINE_PYTHON: today's main);
              p50/p99 ms and ``p50_vs_floor``.
              Rounds are interleaved (floor, ours, ours cold, …), the order rotating
              by one each round, so load on the machine falls on every row alike: what
              one server does after a create (the default server boots a spare to
              replace the one claimed, ``ours cold`` makes a ready network) lands on
              each of the others in turn, not always on the row that follows it.
  concurrent  N creates at once, wall until the last is ``running``, ours (default
              server: after its first round it keeps spares for N capsules in use at
              once, so later rounds claim booted ones), ours cold and baseline alternately
              (``--concurrent-rounds`` each, the machine let settle before each); median
              ``wall_s`` and ``wall_vs_baseline`` (the medians' ratio) with each row's
              spread.
  phases      where one of our cold boots goes (``ours cold``: the server's
              ``WRENN_LOCAL_BOOT_TRACE`` timestamps, medians over the serial rounds, ms
              since the sandbox's start; the network rows only for boots that made
              their own:
              prepared = directories, disk image, plan; spawned = boot process started;
              boot_started / boot_userns / boot_disk / boot_overlays / boot_mounted /
              boot_exec = boot.py running, the capsule's user namespace made, its disk
              image mounted, its overlays mounted, its cgroups joined (every mount
              done), bubblewrap exec'd; network_netns / network_filter /
              network_pasta_spawned / network_pasta = the server saw the capsule's
              network namespace, its filter loaded, pasta started and ready; network =
              both attached; ready = the agent answered).
Each server is the build's own ``python -m wrenn_local serve`` with its own data directory,
so the server is what is measured; the client here is the same plain httpx for both.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx

from _common import settle

# the floor's sandbox (benchmarks/agent_start.py's too): bwrap's own namespaces, read-only root
FLOOR_SANDBOX = [
    "--die-with-parent",
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-net",
    "--ro-bind",
    "/",
    "/",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--tmpfs",
    "/tmp",
]
BWRAP_FLOOR = [*FLOOR_SANDBOX, "--", "/usr/bin/python3", "-I", "-c", "pass"]


def emit(figure: str, **fields: Any) -> None:
    print(json.dumps({"figure": figure, **fields}), flush=True)


def stats_ms(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    return {
        "p50_ms": round(statistics.median(ms), 1),
        "p99_ms": round(ms[max(0, int(len(ms) * 0.99) - 1)], 1),
        "min_ms": round(ms[0], 1),
        "max_ms": round(ms[-1], 1),
    }


@contextmanager
def server(
    python: str, trace: Path | None = None, extra: tuple[str, ...] = ()
) -> Iterator[tuple[str, str]]:
    """``python -m wrenn_local serve`` of one build, with a data directory of its own."""
    data = tempfile.mkdtemp(prefix="wrenn-boot-bench-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WRENN_")}
    if trace is not None:
        env["WRENN_LOCAL_BOOT_TRACE"] = str(trace)
    proc = subprocess.Popen(
        [python, "-m", "wrenn_local", "serve", "--port", "0", "--data-dir", data, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = dict(proc.stdout.readline().strip().split("=", 1) for _ in range(2))
        yield lines["WRENN_BASE_URL"], lines["WRENN_API_KEY"]
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(data, ignore_errors=True)


class Watcher:
    """The server's event stream (``/v1/events/stream``): when each capsule turned
    ``running`` (or failed). Pushed by the server, so no polling load skews the figure."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.done: dict[str, tuple[float, str]] = {}
        self.waiting: dict[str, anyio.Event] = {}
        self.connected = anyio.Event()

    async def run(self) -> None:
        async with self.http.stream("GET", "/v1/events/stream", timeout=None) as stream:
            async for line in stream.aiter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                if event["event"] == "connected":
                    self.connected.set()
                    continue
                if event["event"] == "capsule.state.changed":
                    to = event["metadata"].get("to")
                elif event["event"] == "capsule.create" and event.get("outcome") == "error":
                    to = "error"
                else:
                    continue
                if to in ("running", "error"):
                    cid = event["resource"]["id"]
                    self.done[cid] = (time.perf_counter(), to)
                    self.waiting.setdefault(cid, anyio.Event()).set()

    async def create_running(self) -> tuple[str, float]:
        start = time.perf_counter()
        response = await self.http.post("/v1/capsules", json={})
        response.raise_for_status()
        cid = response.json()["id"]
        await self.waiting.setdefault(cid, anyio.Event()).wait()
        at, status = self.done[cid]
        if status != "running":
            raise SystemExit(f"capsule {cid} ended {status}")
        return cid, at - start


async def one_create(watcher: Watcher) -> float:
    cid, took = await watcher.create_running()
    await watcher.http.delete(f"/v1/capsules/{cid}")
    await anyio.sleep(0.05)  # let its teardown finish outside the next measurement
    return took


async def many_creates(watcher: Watcher, n: int) -> float:
    ids: list[str] = []

    async def one() -> None:
        ids.append((await watcher.create_running())[0])

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    wall = time.perf_counter() - start
    async with anyio.create_task_group() as tg:
        for cid in ids:
            tg.start_soon(watcher.http.delete, f"/v1/capsules/{cid}")
    await anyio.sleep(1)
    return wall


def floor_once(bwrap: str) -> float:
    start = time.perf_counter()
    subprocess.run([bwrap, *BWRAP_FLOOR], check=True)
    return time.perf_counter() - start


def client(base: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}, timeout=120)


def read_trace(path: Path) -> list[dict[str, float]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def main(args: argparse.Namespace) -> None:
    bwrap = shutil.which("bwrap")
    if bwrap is None or os.geteuid() != 0:
        raise SystemExit("needs root and bubblewrap (full isolation)")
    builds = {"ours": sys.executable}
    if args.baseline_python:
        builds["baseline"] = args.baseline_python
    trace = Path(tempfile.mkdtemp(prefix="wrenn-boot-trace-")) / "trace.jsonl"
    with (
        server(builds["ours"]) as ours,
        server(builds["ours"], trace, extra=("--spares", "0")) as cold,
        server(builds["ours"], extra=("--spares", "0", "--ready-networks", "0")) as own,
        contextlib_server(builds.get("baseline")) as base,
    ):
        clients = {
            "ours": client(*ours),
            "ours cold": client(*cold),
            "ours cold, own network": client(*own),
        }
        if base is not None:
            clients["baseline"] = client(*base)
        health = (await clients["ours"].get("/health")).json()
        async with anyio.create_task_group() as tg:
            http = {name: Watcher(h) for name, h in clients.items()}
            for watcher in http.values():
                tg.start_soon(watcher.run)
                await watcher.connected.wait()
            await measure(args, bwrap, trace, health, http)
            tg.cancel_scope.cancel()
        for h in clients.values():
            await h.aclose()


async def measure(
    args: argparse.Namespace,
    bwrap: str,
    trace: Path,
    health: dict[str, Any],
    http: dict[str, Watcher],
) -> None:
    for h in http.values():  # warm-up: first boots fill caches
        for _ in range(2):
            await one_create(h)
    floor_once(bwrap)
    trace.unlink(missing_ok=True)
    floor_name = "bare bwrap (floor)"
    times: dict[str, list[float]] = {floor_name: [], **{k: [] for k in http}}
    rows = list(times)
    for k in range(args.rounds):
        for name in rows[k % len(rows) :] + rows[: k % len(rows)]:
            if name == floor_name:
                times[name].append(floor_once(bwrap))
            else:
                times[name].append(await one_create(http[name]))
    phases = read_trace(trace)
    floor = statistics.median(times["bare bwrap (floor)"])
    for name, values in times.items():
        emit(
            "create",
            build=name,
            rounds=args.rounds,
            isolation=health.get("isolation"),
            network=health.get("network"),
            **stats_ms(values),
            p50_vs_floor=round(statistics.median(values) / floor, 2),
        )
    if phases:
        since = {
            k: round(statistics.median(p[k] - p["start"] for p in phases if k in p) * 1e3, 1)
            for k in {k for p in phases for k in p} - {"start"}
        }
        emit(
            "phases",
            build="ours cold",
            rounds=len(phases),
            **{f"{k}_ms": v for k, v in sorted(since.items(), key=lambda kv: kv[1])},
        )
    walls: dict[str, list[float]] = {k: [] for k in http}
    for _ in range(args.concurrent_rounds):
        for name in walls:
            # the previous round's teardown, and the default server refilling its spares,
            # must not land in this one
            await anyio.to_thread.run_sync(settle)
            walls[name].append(await many_creates(http[name], args.concurrent))
    ref = statistics.median(walls["baseline"]) if walls.get("baseline") else None
    for name, values in walls.items():
        if not values:
            continue
        emit(
            "concurrent",
            build=name,
            capsules=args.concurrent,
            rounds=len(values),
            wall_s=round(statistics.median(values), 2),
            wall_min_s=round(min(values), 2),
            wall_max_s=round(max(values), 2),
            wall_vs_baseline=(
                round(statistics.median(values) / ref, 2) if ref is not None else None
            ),
        )


@contextmanager
def contextlib_server(python: str | None) -> Iterator[tuple[str, str] | None]:
    if python is None:
        yield None
        return
    with server(python) as got:
        yield got


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--concurrent", type=int, default=32)
    parser.add_argument("--concurrent-rounds", type=int, default=3)
    parser.add_argument("--baseline-python", default=os.environ.get("WRENN_BASELINE_PYTHON"))
    anyio.run(main, parser.parse_args())
