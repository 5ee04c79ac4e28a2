"""Agent spawn cost: a command as the capsule user, against a bare spawn.

Agent-level, on the host (needs root, as the agent has inside its capsule): the agent
program (``wrenn_local/_inside/agent.py`` of the interpreter that runs the child) is
loaded as a module and asked to start ``/bin/true`` the way ``exec`` does, as uid/gid
65534. Each child process runs interleaved rounds, one spawn of every mode per round:
  user         ``Agent.spawn`` as the user: through the spawner where the build has one
  user direct  the same with the spawner off (``Popen(user=, group=, extra_groups=,
               preexec_fn=)``: no vfork; what every user command cost before the spawner)
  bare         ``asyncio.create_subprocess_exec("/bin/true")`` with the same pipes, no
               user switch, no preexec (the vfork floor; what a root command could cost)
Per spawn: ``start`` = request until the child has exec'd (the agent holds its pid),
``round`` = request until its exit is known, ``cpu`` = the agent process's CPU (plus the
spawner's, spread over its spawns). ``--baseline-python`` (or WRENN_BASELINE_PYTHON, e.g.
today's main) runs the same children with that build's agent, interleaved with ours.
Then ``exec true`` over HTTP (raw httpx POST, as the user) against one server per build,
interleaved rounds: the whole round trip a user waits for.
Prints one JSON line per row: medians over all spawns, the spread (min–max of the
per-child medians), and ratios to the floor and to the baseline.
Run: python benchmarks/spawn.py [--children 3] [--rounds 200]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

UID = GID = 65534
MODES = ("user", "user direct", "bare")


async def child(rounds: int) -> dict[str, Any]:
    from wrenn_local._inside import AGENT

    spec = importlib.util.spec_from_file_location("wrenn_agent", AGENT)
    assert spec is not None
    assert spec.loader is not None
    agent_mod: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(agent_mod)
    agent_mod.watch_children_with_pidfds()
    raw = {"root": "/", "uid": UID, "gid": GID, "home": "/tmp", "switch_user": True}
    agent = agent_mod.Agent(agent_mod.Config(raw))
    spawner = None
    if hasattr(agent_mod, "Spawner") and agent_mod.Spawner.usable():
        spawner = agent_mod.Spawner(UID, GID)
    request = {"cmd": "/bin/true"}
    samples: dict[str, dict[str, list[float]]] = {
        m: {"start": [], "round": [], "cpu": []} for m in MODES
    }

    async def once(mode: str) -> tuple[float, float, float]:
        c0, t0 = time.process_time(), time.perf_counter()
        if mode == "bare":
            process = await asyncio.create_subprocess_exec(
                "/bin/true",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
            t1 = time.perf_counter()
            await process.communicate()
        else:
            agent.spawner = spawner if mode == "user" else None
            proc = await agent.spawn(dict(request))
            t1 = time.perf_counter()
            await proc.done.wait()
        t2 = time.perf_counter()
        return t1 - t0, t2 - t0, time.process_time() - c0

    for _ in range(20):  # warm up (and start the spawner)
        for mode in MODES:
            await once(mode)
    spawner_cpu0 = _cpu_of(spawner.pid) if spawner is not None and spawner.pid else 0.0
    for _ in range(rounds):
        for mode in MODES:
            start, rtt, cpu = await once(mode)
            samples[mode]["start"].append(start)
            samples[mode]["round"].append(rtt)
            samples[mode]["cpu"].append(cpu)
    if spawner is not None and spawner.pid:
        extra = (_cpu_of(spawner.pid) - spawner_cpu0) / rounds
        samples["user"]["cpu"] = [c + extra for c in samples["user"]["cpu"]]
        spawner.close()
    else:  # no spawner in this build: "user" is the direct path
        samples["user direct"] = samples["user"]
    await asyncio.sleep(0.6)  # the agent forgets finished processes after 0.5 s
    return {"spawner": spawner is not None, "samples": samples}


def _cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_child(python: str, rounds: int) -> dict[str, Any]:
    out = subprocess.run(
        [python, os.path.abspath(__file__), "--child", "--rounds", str(rounds)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return result


def http_round_trips(builds: dict[str, str], rounds: int, per_round: int) -> None:
    """``POST /exec {"cmd": "true"}`` (raw httpx) against one server per build, interleaved:
    the whole path a user waits for, with each build's server and agent."""
    import contextlib

    import httpx

    samples: dict[str, list[float]] = {name: [] for name in builds}
    with contextlib.ExitStack() as stack:
        clients = {}
        for name, python in builds.items():
            server = stack.enter_context(
                subprocess.Popen(
                    [python, "-m", "wrenn_local", "serve", "--port", "0"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                    cwd="/",
                )
            )
            stack.callback(server.terminate)
            assert server.stdout is not None
            env = dict(server.stdout.readline().strip().split("=", 1) for _ in range(2))
            http = stack.enter_context(
                httpx.Client(
                    base_url=env["WRENN_BASE_URL"],
                    headers={"X-API-Key": env["WRENN_API_KEY"]},
                    timeout=60,
                )
            )
            cid = http.post("/v1/capsules", json={}).json()["id"]
            while http.get(f"/v1/capsules/{cid}").json()["status"] != "running":
                time.sleep(0.05)
            clients[name] = (http, cid)
        for _ in range(rounds):
            for name, (http, cid) in clients.items():
                for i in range(per_round + 5):
                    t0 = time.perf_counter()
                    resp = http.post(f"/v1/capsules/{cid}/exec", json={"cmd": "true"})
                    if resp.status_code != 200:
                        raise SystemExit(f"exec failed: {resp.text}")
                    if i >= 5:  # the first few warm the connection
                        samples[name].append(time.perf_counter() - t0)
    for name, values in samples.items():
        row: dict[str, Any] = {
            "figure": "exec true over HTTP (as the user)",
            "client": name,
            "p50_ms": round(statistics.median(values) * 1000, 3),
            "p90_ms": round(statistics.quantiles(values, n=10)[-1] * 1000, 3),
        }
        if name != "baseline" and "baseline" in samples:
            row["p50_vs_baseline"] = round(
                statistics.median(values) / statistics.median(samples["baseline"]), 2
            )
        print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--children", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--baseline-python", default=os.environ.get("WRENN_BASELINE_PYTHON"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args.rounds))))
        return
    if os.geteuid() != 0:
        print(json.dumps({"figure": "agent spawn", "skipped": "needs root (it switches users)"}))
        return
    builds = {"ours": sys.executable}
    if args.baseline_python:
        builds["baseline"] = args.baseline_python
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in builds}
    for _ in range(args.children):  # interleaved: a busy machine slows every build alike
        for name, python in builds.items():
            runs[name].append(run_child(python, args.rounds))

    def pooled(name: str, mode: str, what: str) -> list[float]:
        return [x for run in runs[name] for x in run["samples"][mode][what]]

    def medians(name: str, mode: str, what: str) -> list[float]:
        return [statistics.median(run["samples"][mode][what]) for run in runs[name]]

    def ms(values: list[float]) -> float:
        return round(statistics.median(values) * 1000, 3)

    table: dict[tuple[str, str], dict[str, float]] = {}
    for name in builds:
        for mode in MODES:
            row: dict[str, Any] = {"figure": "agent spawn", "client": f"{name} {mode}"}
            if mode == "user":
                row["via"] = "spawner" if runs[name][0]["spawner"] else "direct"
            for what in ("start", "round", "cpu"):
                row[f"{what}_ms"] = ms(pooled(name, mode, what))
                spread = [x * 1000 for x in medians(name, mode, what)]
                row[f"{what}_spread_ms"] = f"{min(spread):.3f}–{max(spread):.3f}"
            table[(name, mode)] = row
    for (name, mode), row in table.items():
        if mode == "user direct" and not runs[name][0]["spawner"]:
            continue  # the same as "user" in a build without a spawner
        floor = table[(name, "bare")]
        if mode != "bare":
            for what in ("start", "round", "cpu"):
                row[f"{what}_vs_bare"] = round(row[f"{what}_ms"] / floor[f"{what}_ms"], 2)
        if name != "baseline" and ("baseline", mode) in table:
            before = table[("baseline", mode)]
            for what in ("start", "round", "cpu"):
                row[f"{what}_vs_baseline"] = round(row[f"{what}_ms"] / before[f"{what}_ms"], 2)
        print(json.dumps(row), flush=True)
    http_round_trips(builds, rounds=args.children, per_round=50)


if __name__ == "__main__":
    main()
