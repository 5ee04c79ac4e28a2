"""The local server's memory per open exec stream, in rounds, against a baseline build.

Each round starts a fresh server (``python -m wrenn_local serve``; with
``--baseline-python`` the baseline build's server runs in the same round, interleaved),
creates 4 capsules from a client process of its own, reads the server's RSS once it has
settled, opens ``--streams`` exec streams (``sleep 120``) spread over the capsules,
reads the settled RSS again, closes every stream and reads the server's RSS once more,
and its fds once the client has exited (HTTP keep-alive connections the client closed stay
open in hypercorn until its keep-alive timeout, 30 s: fds above the base count for at most
that long). A round whose server or client fails is reported as failed; the others go
on. It prints one JSON line per round and server, and a summary line with the median and
the spread of the growth per stream.

``--trace DIR`` runs our server under tracemalloc instead and writes a snapshot before and
after the streams open (DIR/before.snap, DIR/open.snap), then prints the biggest
differences by line: where the server's per-stream memory goes.

``--before-src DIR`` adds a server from another source tree (with this interpreter), e.g.
``git archive <commit> src | tar -x -C DIR`` then ``--before-src DIR/src``.

Run: python benchmarks/stream_memory.py --streams 1000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import rss_kib

HERE = Path(__file__).resolve().parent
CAPSULES = 4


# --- the client: its own process, steered line by line over stdin/stdout -----------------


def client(base: str, key: str, n: int) -> None:
    import anyio

    from wrenn import AsyncCapsule, AsyncWrennClient

    async def line() -> str:
        return await anyio.to_thread.run_sync(sys.stdin.readline)

    def say(word: str) -> None:
        print(word, flush=True)

    async def hold(client: Any, *, task_status: Any) -> None:
        async with client.capsule() as cap:
            task_status.started(cap)
            await anyio.sleep_forever()

    async def main() -> None:
        started = 0
        all_started = anyio.Event()

        async def one(cap: AsyncCapsule) -> None:
            nonlocal started
            async with cap.commands.stream("sleep 120") as run:
                async for event in run:
                    if event.type == "start":
                        started += 1
                        if started == n:
                            all_started.set()
                        await anyio.sleep_forever()

        async with (
            AsyncWrennClient(api_key=key, base_url=base, timeout=300) as c,
            anyio.create_task_group() as outer,
        ):
            caps = [await outer.start(hold, c) for _ in range(CAPSULES)]
            # one stream opened and closed first: every code path is loaded
            async with caps[0].commands.stream("true") as run:
                async for _ in run:
                    pass
            say("capsules")
            await line()
            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(one, caps[i % CAPSULES])
                with anyio.fail_after(240):
                    await all_started.wait()
                say("open")
                await line()
                tg.cancel_scope.cancel()
            say("closed")
            await line()
            outer.cancel_scope.cancel()

    anyio.run(main)


# --- the traced server ---------------------------------------------------------------------


def traced_server(folder: str, frames: int) -> None:
    """``python -m wrenn_local serve --port 0`` under tracemalloc; SIGUSR1 writes a
    snapshot (``before.snap`` first, then ``open.snap``)."""
    import tracemalloc

    tracemalloc.start(frames)
    names = iter(["before", "open", "closed"])

    def dump(signum: int, frame: object) -> None:
        import gc

        gc.collect()
        tracemalloc.take_snapshot().dump(os.path.join(folder, next(names) + ".snap"))
        print("dumped", file=sys.stderr, flush=True)

    signal.signal(signal.SIGUSR1, dump)
    import wrenn_local

    sys.exit(wrenn_local.main(["serve", "--port", "0"]))


# --- the driver ------------------------------------------------------------------------------


def settled_rss(pid: int, *, quiet: float = 1.0, longest: float = 15.0) -> int:
    """The server's RSS (KiB) once it has not changed by more than 64 KiB for ``quiet``
    seconds (or after ``longest``)."""
    t0 = time.monotonic()
    last, since = rss_kib(pid), time.monotonic()
    while time.monotonic() - t0 < longest:
        time.sleep(0.1)
        now = rss_kib(pid)
        if abs(now - last) > 64:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
    return rss_kib(pid)


def _stderr() -> Any:
    """Where the server's log goes: ``WRENN_BENCH_SERVER_LOG`` (appended), else nowhere."""
    path = os.environ.get("WRENN_BENCH_SERVER_LOG")
    return open(path, "a") if path else subprocess.DEVNULL


def _fds_settled(pid: int, target: int, longest: float = 10.0) -> int:
    """The server's open fds, once back at ``target`` (or after ``longest`` seconds)."""
    t0 = time.monotonic()
    while True:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        if fds <= target or time.monotonic() - t0 > longest:
            return fds
        time.sleep(0.1)


def one_round(
    server_cmd: list[str], n: int, trace: str | None = None, src: str | None = None
) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": src} if src else None
    with subprocess.Popen(
        server_cmd, stdout=subprocess.PIPE, stderr=_stderr(), text=True, env=env
    ) as server:
        try:
            assert server.stdout is not None
            env = dict(server.stdout.readline().strip().split("=", 1) for _ in range(2))
            pid = server.pid
            with subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--client",
                    env["WRENN_BASE_URL"],
                    env["WRENN_API_KEY"],
                    str(n),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            ) as cl:
                assert cl.stdin is not None
                assert cl.stdout is not None

                def expect(word: str) -> None:
                    got = cl.stdout.readline().strip()  # type: ignore[union-attr]
                    if got != word:
                        cl.kill()
                        raise SystemExit(f"client said {got!r}, expected {word!r}")

                def go() -> None:
                    cl.stdin.write("\n")  # type: ignore[union-attr]
                    cl.stdin.flush()  # type: ignore[union-attr]

                def snap() -> None:
                    if trace:
                        os.kill(pid, signal.SIGUSR1)
                        time.sleep(3)

                expect("capsules")
                base = settled_rss(pid)
                fds_base = len(os.listdir(f"/proc/{pid}/fd"))
                snap()
                go()
                expect("open")
                opened = settled_rss(pid)
                fds_open = len(os.listdir(f"/proc/{pid}/fd"))
                snap()
                go()
                expect("closed")
                closed = settled_rss(pid)
                snap()
                go()
                cl.wait(60)
            # the client is gone (and its pooled HTTP connections with it)
            fds_closed = _fds_settled(pid, fds_base)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
    return {
        "streams": n,
        "server_base_mib": round(base / 1024, 1),
        "server_rss_per_stream_kib": round((opened - base) / n, 1),
        "server_kept_after_close_kib": closed - base,
        "server_fds": [fds_base, fds_open, fds_closed],
    }


def show_trace(folder: str, n: int, top: int) -> None:
    import tracemalloc

    before = tracemalloc.Snapshot.load(os.path.join(folder, "before.snap"))
    opened = tracemalloc.Snapshot.load(os.path.join(folder, "open.snap"))
    total = 0
    stats = opened.compare_to(before, "lineno")
    for stat in stats:
        total += stat.size_diff
    print(f"traced growth: {total / n / 1024:.1f} KiB per stream")
    for stat in stats[:top]:
        where = stat.traceback[0]
        print(
            f"{stat.size_diff / n:9.0f} B/stream {stat.count_diff / n:6.1f} blocks/stream  "
            f"{where.filename.split('site-packages/')[-1]}:{where.lineno}"
        )
    print("--- by traceback (top 12)")
    for stat in opened.compare_to(before, "traceback")[:12]:
        print(f"{stat.size_diff / n:9.0f} B/stream")
        for line in stat.traceback.format(limit=8):
            print("   ", line)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--client", nargs=3, metavar=("BASE", "KEY", "N"))
    parser.add_argument("--traced-server", nargs=2, metavar=("DIR", "FRAMES"))
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-python", default=os.environ.get("WRENN_BASELINE_PYTHON"))
    parser.add_argument(
        "--before-src",
        metavar="DIR",
        help="a source tree (e.g. `git archive <commit> src`) whose server runs as 'before' "
        "with this interpreter, interleaved",
    )
    parser.add_argument("--trace", metavar="DIR", help="tracemalloc the server instead")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    if args.client:
        client(args.client[0], args.client[1], int(args.client[2]))
        return
    if args.traced_server:
        traced_server(args.traced_server[0], int(args.traced_server[1]))
        return
    if args.trace:
        os.makedirs(args.trace, exist_ok=True)
        cmd = [sys.executable, __file__, "--traced-server", args.trace, "12"]
        print(json.dumps(one_round(cmd, args.streams, trace=args.trace)))
        show_trace(args.trace, args.streams, args.top)
        return
    servers: dict[str, tuple[str, str | None]] = {"ours": (sys.executable, None)}
    if args.before_src:
        servers["before"] = (sys.executable, args.before_src)
    if args.baseline_python:
        servers["baseline"] = (args.baseline_python, None)
    growth: dict[str, list[float]] = {name: [] for name in servers}
    for i in range(args.rounds):
        for name, (python, src) in servers.items():
            cmd = [python, "-m", "wrenn_local", "serve", "--port", "0"]
            try:
                res = one_round(cmd, args.streams, src=src)
            except SystemExit as exc:  # that server (or the client) failed: say so, go on
                print(json.dumps({"round": i, "server": name, "failed": str(exc)}), flush=True)
                continue
            growth[name].append(res["server_rss_per_stream_kib"])
            print(json.dumps({"round": i, "server": name, **res}), flush=True)
    for name, values in growth.items():
        if not values:
            continue
        print(
            json.dumps(
                {
                    "server": name,
                    "median_kib_per_stream": statistics.median(values),
                    "spread": [min(values), max(values)],
                }
            )
        )


if __name__ == "__main__":
    main()
