"""Side by side against one wrenn_local server: ours, raw baselines and the official SDK.

Each measurement runs in a fresh process (so peak RSS is that client's own), one after
the other, against the same server:
  exec     serial ``commands.run("true")``: ours (asyncio, trio, sync), raw httpx POST,
           official (sync, async)
  fanout   N capsules x 10 commands at once: ours (asyncio, trio; client.map), official
           (asyncio.gather); throughput, p50/p99, peak RSS
  stream   256 MiB of stdout through the exec stream: ours (asyncio, trio: binary output
           frames; asyncio-jsonwire: the JSON wire with orjson; asyncio-json: the JSON
           wire without the optional orjson codec), a raw ``websockets`` client,
           official (sync); MiB/s and CPU seconds per GiB
  files    1 GiB streamed upload and download: ours, raw httpx streaming, official
  scale    1,000 exec streams open at once: client RSS, threads, fds (ours), and the
           threads of one capsule's agent
  import   ``import wrenn`` in a fresh interpreter: ours, official (minus bare start-up)
The official SDK is skipped when ``--official-python`` (or WRENN_OFFICIAL_PYTHON) is not
given. Prints one JSON line per figure.
Run: python benchmarks/compare.py [--only exec,fanout,...] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import cpu, local_server, machine_busy_s, peak_mib, rss_kib, rss_mib, settle

HERE = Path(__file__).resolve().parent
MIB = 1024 * 1024


# --- children: one measurement each ------------------------------------------------------


def child(kind: str, client: str, n: int, base: str, key: str) -> dict[str, Any]:
    if client == "raw":
        return raw_child(kind, n, base, key)
    if client == "sync":
        return sync_child(kind, n, base, key)
    import anyio

    if client in ("asyncio-json", "asyncio-jsonwire"):
        os.environ["WRENN_BINARY_FRAMES"] = "0"  # the JSON wire (as against the cloud)
    if client == "asyncio-json":  # ours without the optional orjson codec (the `fast` extra)
        from wrenn._protocol import exec_stream

        exec_stream._orjson = None  # type: ignore[assignment]
    if client in ("asyncio-json", "asyncio-jsonwire"):
        client = "asyncio"
    return anyio.run(async_child, kind, n, base, key, backend=client)


def sync_child(kind: str, n: int, base: str, key: str) -> dict[str, Any]:
    from wrenn import WrennClient

    if kind in ("upload", "download"):
        chunk = b"w" * MIB
        with (
            WrennClient(api_key=key, base_url=base, timeout=300) as client,
            client.capsule() as cap,
        ):
            if kind == "download":
                cap.files.write("/tmp/big.bin", (chunk for _ in range(n)))
            c0, t0 = cpu(), time.perf_counter()
            total = 0
            if kind == "upload":
                cap.files.write("/tmp/big.bin", (chunk for _ in range(n)))
                total = n * MIB
            else:
                with cap.files.read_stream("/tmp/big.bin", chunk_size=MIB) as parts:
                    for part in parts:
                        total += len(part)
            return {"bytes": total, "wall_s": time.perf_counter() - t0, "cpu_s": cpu() - c0}
    assert kind == "exec"
    with WrennClient(api_key=key, base_url=base) as client, client.capsule() as cap:
        for _ in range(10):
            cap.commands.run("true")
        samples = []
        c0 = cpu()
        for _ in range(n):
            t0 = time.perf_counter()
            cap.commands.run("true")
            samples.append(time.perf_counter() - t0)
        cpu_s = cpu() - c0
    return {"samples": samples, "cpu_s": cpu_s}


async def async_child(kind: str, n: int, base: str, key: str) -> dict[str, Any]:
    import anyio

    from wrenn import AsyncCapsule, AsyncWrennClient, StreamStdout

    async with AsyncWrennClient(api_key=key, base_url=base, timeout=300) as client:
        if kind == "exec":
            async with client.capsule() as cap:
                for _ in range(10):
                    await cap.commands.run("true")
                samples = []
                c0 = cpu()
                for _ in range(n):
                    t0 = time.perf_counter()
                    await cap.commands.run("true")
                    samples.append(time.perf_counter() - t0)
                cpu_s = cpu() - c0
            return {"samples": samples, "cpu_s": cpu_s}
        if kind == "fanout":
            latencies: list[float] = []

            async def job(cap: AsyncCapsule, _: int) -> None:
                for _ in range(10):
                    t0 = time.perf_counter()
                    await cap.commands.run("true")
                    latencies.append(time.perf_counter() - t0)

            m0, c0, t0 = machine_busy_s(), cpu(), time.perf_counter()
            await client.map(job, range(n), concurrency=n)
            wall = time.perf_counter() - t0
            return {
                "wall_s": wall,
                "latencies": latencies,
                "cpu_s": cpu() - c0,
                "machine_cpu_s": machine_busy_s() - m0,
            }
        if kind == "stream":
            async with client.capsule() as cap:
                c0, t0 = cpu(), time.perf_counter()
                total = 0
                async with cap.commands.stream(f"yes | head -c {n * MIB}") as run:
                    async for event in run:
                        if isinstance(event, StreamStdout):
                            total += len(event.data)
                return {"bytes": total, "wall_s": time.perf_counter() - t0, "cpu_s": cpu() - c0}
        if kind in ("upload", "download"):
            chunk = b"w" * MIB

            async def chunks() -> Any:
                for _ in range(n):
                    yield chunk

            async with client.capsule() as cap:
                if kind == "download":
                    await cap.files.write("/tmp/big.bin", chunks())
                c0, t0 = cpu(), time.perf_counter()
                total = 0
                if kind == "upload":
                    await cap.files.write("/tmp/big.bin", chunks())
                    total = n * MIB
                else:
                    async with cap.files.read_stream("/tmp/big.bin", chunk_size=MIB) as parts:
                        async for part in parts:
                            total += len(part)
                return {"bytes": total, "wall_s": time.perf_counter() - t0, "cpu_s": cpu() - c0}
        if kind == "scale":
            import threading

            per_capsule = n // 4
            ready = 0
            all_started = anyio.Event()
            sampled: dict[str, Any] = {}

            async def one(cap: AsyncCapsule) -> None:
                nonlocal ready
                async with cap.commands.stream("sleep 120") as run:
                    async for event in run:
                        if event.type == "start":
                            ready += 1
                            if ready == n:
                                all_started.set()
                            await anyio.sleep_forever()

            async with anyio.create_task_group() as outer:
                caps = [await outer.start(_hold_capsule, client) for _ in range(4)]
                base_rss = rss_mib()
                server = int(os.environ.get("WRENN_SERVER_PID") or 0)
                server_base = await _settled_kib(server) if server else 0
                async with anyio.create_task_group() as tg:
                    for cap in caps:
                        for _ in range(per_capsule):
                            tg.start_soon(one, cap)
                    with anyio.fail_after(240):
                        await all_started.wait()
                    # this command's shell is a child of the agent's spawner (or of the
                    # agent): the first root process up the tree is the agent
                    probe = await caps[0].commands.run(
                        "P=$PPID; while ! grep -q '^Uid:\t0\t' /proc/$P/status; do "
                        "P=$(grep PPid: /proc/$P/status | cut -f2); done; "
                        "grep Threads: /proc/$P/status"
                    )
                    server_open = await _settled_kib(server) if server else 0
                    sampled = {
                        "agent_threads": int(probe.stdout.split()[1]),
                        "streams": ready,
                        "rss_mib": round(rss_mib(), 1),
                        "rss_per_stream_kib": round((rss_mib() - base_rss) * 1024 / ready, 1),
                        # the server's growth (RSS): its side of each stream
                        "server_rss_per_stream_kib": round((server_open - server_base) / ready, 1)
                        if server
                        else None,
                        "threads": threading.active_count(),
                        "fds": len(os.listdir("/proc/self/fd")),
                        "tasks": len(anyio.get_running_tasks()),
                    }
                    tg.cancel_scope.cancel()
                outer.cancel_scope.cancel()
            return sampled
    raise SystemExit(f"unknown measurement {kind}")


async def _settled_kib(pid: int, quiet: float = 1.0, longest: float = 10.0) -> int:
    """The RSS (KiB) of ``pid`` once it has not moved by more than 64 KiB for ``quiet``
    seconds (or after ``longest``): a server still finishing its side of the streams
    would otherwise be caught part-way."""
    import anyio

    last, since, end = rss_kib(pid), time.monotonic(), time.monotonic() + longest
    while time.monotonic() < end:
        await anyio.sleep(0.1)
        now = rss_kib(pid)
        if abs(now - last) > 64:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return rss_kib(pid)


async def _hold_capsule(client: Any, *, task_status: Any) -> None:
    import anyio

    async with client.capsule() as cap:
        task_status.started(cap)
        await anyio.sleep_forever()


def raw_child(kind: str, n: int, base: str, key: str) -> dict[str, Any]:
    """No SDK: httpx and websockets speaking the wire protocol by hand."""
    import httpx

    headers = {"X-API-Key": key}
    with httpx.Client(base_url=base, headers=headers, timeout=300) as http:
        cid = http.post("/v1/capsules", json={}).json()["id"]
        while http.get(f"/v1/capsules/{cid}").json()["status"] != "running":
            time.sleep(0.05)
        try:
            if kind == "exec":
                body = {"cmd": "/bin/sh", "args": ["-c", "true"], "timeout_sec": 30}
                for _ in range(10):
                    http.post(f"/v1/capsules/{cid}/exec", json=body)
                samples = []
                c0 = cpu()
                for _ in range(n):
                    t0 = time.perf_counter()
                    http.post(f"/v1/capsules/{cid}/exec", json=body).json()
                    samples.append(time.perf_counter() - t0)
                return {"samples": samples, "cpu_s": cpu() - c0}
            if kind == "stream":
                return raw_stream(base, key, cid, n)
            if kind in ("upload", "download"):
                chunk = b"w" * MIB

                def multipart() -> Any:
                    yield (
                        b'--b\r\nContent-Disposition: form-data; name="path"\r\n\r\n/tmp/big.bin'
                        b'\r\n--b\r\nContent-Disposition: form-data; name="file"; '
                        b'filename="f"\r\nContent-Type: application/octet-stream\r\n\r\n'
                    )
                    for _ in range(n):
                        yield chunk
                    yield b"\r\n--b--\r\n"

                def upload() -> None:
                    http.post(
                        f"/v1/capsules/{cid}/files/stream/write",
                        content=multipart(),
                        headers={"Content-Type": "multipart/form-data; boundary=b"},
                    ).raise_for_status()

                if kind == "download":
                    upload()
                c0, t0 = cpu(), time.perf_counter()
                total = 0
                if kind == "upload":
                    upload()
                    total = n * MIB
                else:
                    with http.stream(
                        "POST",
                        f"/v1/capsules/{cid}/files/stream/read",
                        json={"path": "/tmp/big.bin"},
                    ) as resp:
                        for part in resp.iter_raw(MIB):
                            total += len(part)
                return {"bytes": total, "wall_s": time.perf_counter() - t0, "cpu_s": cpu() - c0}
        finally:
            http.delete(f"/v1/capsules/{cid}")
    raise SystemExit(f"unknown measurement {kind}")


def raw_stream(base: str, key: str, cid: str, n: int) -> dict[str, Any]:
    import asyncio

    import websockets

    async def main() -> dict[str, Any]:
        url = base.replace("http://", "ws://") + f"/v1/capsules/{cid}/exec/stream"
        async with websockets.connect(
            url, additional_headers={"X-API-Key": key}, max_size=None
        ) as ws:
            start = {"type": "start", "cmd": "/bin/sh", "args": ["-c", f"yes | head -c {n * MIB}"]}
            c0, t0 = cpu(), time.perf_counter()
            await ws.send(json.dumps(start))
            total = 0
            async for message in ws:
                frame = json.loads(message)
                if frame["type"] == "stdout":
                    total += len(frame["data"])
                elif frame["type"] == "exit":
                    break
            return {"bytes": total, "wall_s": time.perf_counter() - t0, "cpu_s": cpu() - c0}

    return asyncio.run(main())


# --- the parent: run everything, summarise ------------------------------------------------


class Runner:
    def __init__(
        self, base: str, key: str, official: str | None, baseline: str | None = None
    ) -> None:
        self.base = base
        self.key = key
        self.official = official
        self.baseline = baseline
        port = base.rsplit(":", 1)[1].split("/")[0]
        self.env = {
            **os.environ,
            "WRENN_BASE_URL": base,
            "WRENN_API_KEY": key,
            "WRENN_PROXY_DOMAIN": f"localhost:{port}",
            "WRENN_SERVER_PID": str(_server_pid()),
        }

    def ours(self, kind: str, client: str, n: int, python: str = sys.executable) -> dict[str, Any]:
        cmd = [python, __file__, "--child", kind, client, str(n), self.base, self.key]
        return self._run(cmd)

    def before(self, kind: str, client: str, n: int) -> list[tuple[str, dict[str, Any]]]:
        """The same measurement with the baseline build (``--baseline-python``), if any."""
        if not self.baseline:
            return []
        return [(f"baseline {client}", self.ours(kind, client, n, self.baseline))]

    def theirs(self, kind: str, client: str, n: int) -> dict[str, Any] | None:
        if not self.official:
            return None
        return self._run([self.official, str(HERE / "_official.py"), kind, client, str(n)])

    def _run(self, cmd: list[str]) -> dict[str, Any]:
        out = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=900)
        if out.returncode != 0:
            raise SystemExit(f"{cmd[1:3]} failed:\n{out.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result


def _server_pid() -> int:
    """The local server started last by this process (a child of ours), 0 if none."""
    found: list[tuple[int, int]] = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as fh:
            for pid in fh.read().split():
                with open(f"/proc/{pid}/cmdline", "rb") as cmd:
                    if b"wrenn_local\0serve" not in cmd.read():
                        continue
                with open(f"/proc/{pid}/stat") as stat:
                    started = int(stat.read().rsplit(")", 1)[1].split()[19])
                found.append((started, int(pid)))
    return max(found)[1] if found else 0


def emit(figure: str, **fields: Any) -> None:
    print(json.dumps({"figure": figure, **fields}), flush=True)


def latency(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    return {
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(ms[max(0, int(len(ms) * 0.99) - 1)], 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def run_exec(r: Runner, n: int) -> None:
    rows: list[tuple[str, dict[str, Any]]] = [
        (f"ours {client}", r.ours("exec", client, n)) for client in ("asyncio", "trio", "sync")
    ]
    rows.append(("raw httpx (floor)", r.ours("exec", "raw", n)))
    official = [(f"official {c}", r.theirs("exec", c, n)) for c in ("sync", "async")]
    rows.extend((name, got) for name, got in official if got is not None)
    floor = statistics.median(dict(rows)["raw httpx (floor)"]["samples"])
    peer = dict(rows).get("official sync")
    peer_cpu = peer["cpu_s"] / n if peer and peer.get("cpu_s") else None
    for name, got in rows:
        stats = latency(got["samples"])
        per_call = got["cpu_s"] / n if got.get("cpu_s") is not None else None
        emit(
            "exec",
            client=name,
            calls=n,
            **stats,
            p50_vs_floor=round(statistics.median(got["samples"]) / floor, 2),
            cpu_ms_per_call=round(per_call * 1000, 3) if per_call is not None else None,
            cpu_vs_official_sync=(
                round(per_call / peer_cpu, 2) if per_call is not None and peer_cpu else None
            ),
        )


def run_fanout(r: Runner, sizes: list[int], rounds: int) -> None:
    """Commands/s of a fan-out, and where the machine's CPU went during it.

    Both clients drive the same server, so everything but the client (server, boot, agents,
    pasta, the commands) costs them alike. ``others_cpu_s`` is the machine's busy CPU during
    the child's life minus the child's own; ``ceiling_vs_official_async`` is the ratio ours
    would reach if our client cost nothing and the rest ran perfectly on every core:
    official wall / (others / cores), an upper bound of what a client can do here.

    ``rounds`` interleaved rounds, the clients' order rotating each round, the machine let
    settle before each run; each row is the client's median round (by commands/s), with
    the spread of its per-round ratio to the official SDK's run of the same round.

    The server keeps booted spares of a template for as many capsules as were in use at
    once (wrenn_local/_spares.py), refilled after each run while the machine settles. One
    unmeasured run before each size's rounds earns them, so every measured run, whichever
    client's, meets the server as a program that fans out again finds it.
    """
    cores = os.cpu_count() or 1
    clients = ["ours asyncio", "ours trio"] + (["official async"] if r.official else [])

    def one(name: str, n: int) -> dict[str, Any]:
        settle()
        if name == "official async":
            got = r.theirs("fanout", "async", n)
            assert got is not None
            return got
        return r.ours("fanout", name.split()[1], n)

    def rate(res: dict[str, Any]) -> float:
        return len(res["latencies"]) / res["wall_s"]

    for n in sizes:
        one(clients[0], n)  # unmeasured: the server learns this size (see above)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in clients}
        for k in range(rounds):
            for name in clients[k % len(clients) :] + clients[: k % len(clients)]:
                runs[name].append(one(name, n))
        peers = runs.get("official async")
        for name in clients:
            ordered = sorted(runs[name], key=rate)
            res = ordered[len(ordered) // 2]
            stats = latency(res["latencies"])
            others = res["machine_cpu_s"] - res["cpu_s"] if "machine_cpu_s" in res else None
            peer = sorted(peers, key=rate)[len(peers) // 2] if peers else None
            ratios = [rate(a) / rate(b) for a, b in zip(runs[name], peers or [], strict=False)]
            emit(
                "fanout",
                client=name,
                capsules=n,
                rounds=len(runs[name]),
                commands=len(res["latencies"]),
                wall_s=round(res["wall_s"], 2),
                commands_per_s=round(rate(res), 1),
                commands_per_s_min=round(rate(ordered[0]), 1),
                commands_per_s_max=round(rate(ordered[-1]), 1),
                p50_ms=stats["p50_ms"],
                p99_ms=stats["p99_ms"],
                peak_rss_mib=res.get("peak_rss_mib") or res.get("peak"),
                client_cpu_s=round(res["cpu_s"], 2) if res.get("cpu_s") is not None else None,
                others_cpu_s=round(others, 2) if others is not None else None,
                vs_official_async=round(rate(res) / rate(peer), 2) if peer else None,
                vs_official_async_min=round(min(ratios), 2) if ratios else None,
                vs_official_async_max=round(max(ratios), 2) if ratios else None,
                ceiling_vs_official_async=(
                    round(peer["wall_s"] / (others / cores), 2)
                    if peer and others and name != "official async"
                    else None
                ),
            )


def transfer_row(
    figure: str, name: str, res: dict[str, Any], mib: int, peer: dict[str, Any] | None = None
) -> None:
    gib = res["bytes"] / (1024 * MIB)
    extra: dict[str, Any] = {}
    if peer is not None and gib and peer["bytes"] and peer["cpu_s"]:
        peer_per_gib = peer["cpu_s"] / (peer["bytes"] / (1024 * MIB))
        extra["cpu_vs_official_sync"] = round(res["cpu_s"] / gib / peer_per_gib, 2)
    emit(
        figure,
        client=name,
        mib=mib,
        mib_per_s=round(res["bytes"] / MIB / res["wall_s"], 1),
        cpu_s_per_gib=round(res["cpu_s"] / gib, 2) if gib else None,
        peak_rss_mib=res["peak_rss_mib"],
        **extra,
    )


def run_stream(r: Runner, mib: int) -> None:
    clients = ("asyncio", "trio", "asyncio-jsonwire", "asyncio-json")
    rows = [(f"ours {c}", r.ours("stream", c, mib)) for c in clients]
    rows += r.before("stream", "asyncio", mib)
    rows.append(("raw websockets (floor)", r.ours("stream", "raw", mib)))
    if (got := r.theirs("stream", "sync", mib)) is not None:
        rows.append(("official sync", got))
    peer = dict(rows).get("official sync")
    for name, res in rows:
        transfer_row("stream", name, res, mib, peer)


def run_files(r: Runner, mib: int) -> None:
    for direction in ("upload", "download"):
        rows = [(f"ours {c}", r.ours(direction, c, mib)) for c in ("asyncio", "sync")]
        rows += r.before(direction, "asyncio", mib)
        rows.append(("raw httpx (floor)", r.ours(direction, "raw", mib)))
        if (got := r.theirs(direction, "sync", mib)) is not None:
            rows.append(("official sync", got))
        # issue 20's target: <= 1.0 through our async API, <= 1.15 through our sync API
        # (benchmarks/files_cpu.py repeats this in interleaved rounds, with the spread)
        peer = dict(rows).get("official sync")
        for name, res in rows:
            transfer_row(f"files {direction}", name, res, mib, peer)


def run_scale(r: Runner, n: int) -> None:
    for client in ("asyncio", "trio"):
        # a fresh server each: its RSS grows once and stays (a warm one shows no growth)
        with local_server() as (base, key, _pid):
            fresh = Runner(base, key, None, None)
            res = fresh.ours("scale", client, n)
        res.pop("peak_rss_mib", None)
        # issue 20's targets: agent threads <= 10, server growth <= 40 KiB per stream
        res["agent_threads_vs_target"] = round(res["agent_threads"] / 10, 2)
        if res.get("server_rss_per_stream_kib") is not None:
            res["server_kib_vs_target"] = round(res["server_rss_per_stream_kib"] / 40, 2)
        emit("scale", client=f"ours {client}", **res)


def run_import(r: Runner) -> None:
    def timed(python: str, code: str) -> float:
        runs = []
        for _ in range(7):
            t0 = time.perf_counter()
            subprocess.run([python, "-c", code], check=True, env=r.env)
            runs.append(time.perf_counter() - t0)
        return statistics.median(runs)

    bare = timed(sys.executable, "pass")
    emit(
        "import",
        client="ours",
        import_ms=round((timed(sys.executable, "import wrenn") - bare) * 1000, 1),
    )
    if r.official:
        bare_official = timed(r.official, "pass")
        emit(
            "import",
            client="official",
            import_ms=round((timed(r.official, "import wrenn") - bare_official) * 1000, 1),
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=5, metavar=("KIND", "CLIENT", "N", "BASE", "KEY"))
    parser.add_argument("--only", default="exec,fanout,stream,files,scale,import")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--fanout-rounds", type=int, default=3)
    parser.add_argument("--official-python", default=os.environ.get("WRENN_OFFICIAL_PYTHON"))
    parser.add_argument(
        "--baseline-python",
        default=os.environ.get("WRENN_BASELINE_PYTHON"),
        help="a build to compare with (e.g. today's main): its rows are named 'baseline'",
    )
    args = parser.parse_args()
    if args.child:
        kind, client, n, base, key = args.child
        result = child(kind, client, int(n), base, key)
        result["peak_rss_mib"] = peak_mib()
        print(json.dumps(result))
        return
    only = set(args.only.split(","))
    # the server's log is kept, and shown if it ends before the benchmark stops it
    with local_server() as (base, key, _pid):
        r = Runner(base, key, args.official_python, args.baseline_python)
        if "exec" in only:
            run_exec(r, 50 if args.quick else 300)
        if "fanout" in only:
            sizes = [4, 8] if args.quick else [16, 64]  # 64: issue 20's target
            run_fanout(r, sizes, args.fanout_rounds)
        if "stream" in only:
            run_stream(r, 16 if args.quick else 256)
        if "files" in only:
            run_files(r, 32 if args.quick else 1024)
        if "scale" in only:
            run_scale(r, 40 if args.quick else 1000)
        if "import" in only:
            run_import(r)


if __name__ == "__main__":
    main()
