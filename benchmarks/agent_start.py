"""The capsule agent's own start, in isolation (issue 20): bubblewrap → Python → agent →
the answer to its first ping, against a bare ``bwrap … python3 -I -S -c pass``.

Run as root (bubblewrap makes namespaces):
    python benchmarks/agent_start.py [--rounds 15] [--baseline-rev 307cfb8]

No server, no mounts, no network: the agent's bytecode (compiled by the capsule's Python,
as ``_sandbox.py`` does) and its configuration are bound into a minimal sandbox (own pid,
ipc, uts and network namespaces, read-only root, /proc, /dev, tmpfs /tmp and /run); it
inherits a listening socket made here, as in a capsule, and the figure ends when the ping
queued on it is answered. Rounds are interleaved (floor, ours, baseline, …) so load on
the machine falls on every row alike.

Figures (one JSON line per row, ``figure: agent_start``): ``wall`` p50 ms and its spread,
``cpu`` p50 ms (CPU time of bubblewrap and everything under it, from a cpuacct cgroup
where the host has cgroup v1's cpuacct; else omitted), and their ratios to the floor.
Not part of ``run.py``'s suites: boot.py's ``phases`` row places this phase in a boot.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from boot import FLOOR_SANDBOX

HERE = Path(__file__).resolve().parent
AGENT = HERE.parent / "src" / "wrenn_local" / "_inside" / "agent.py"
PYTHON = "/usr/bin/python3"
COMPILE = (
    "import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2],"
    " dfile='/run/wrenn/agent.py', doraise=True,"
    " invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)"
)
SANDBOX = [*FLOOR_SANDBOX, "--tmpfs", "/run"]
# as in a full-isolation capsule (_sandbox.py): commands as the user, sudo served
CONFIG = {
    "root": "/",
    "uid": 1000,
    "gid": 1000,
    "home": "/tmp",
    "user": "wrenn-user",
    "env": {},
    "switch_user": True,
    "ports": {},
    "sudo": "/run/wrenn/sudo.sock",
}
CGROUP = Path("/sys/fs/cgroup/cpuacct") / f"wrenn-agent-start-{os.getpid()}"


def emit(**fields: Any) -> None:
    print(json.dumps({"figure": "agent_start", **fields}), flush=True)


def prepare(source: str, where: Path) -> Path:
    """The agent's bytecode and configuration in ``where``."""
    where.mkdir(parents=True)
    (where / "agent.py").write_text(source)
    subprocess.run(
        [PYTHON, "-I", "-S", "-c", COMPILE, str(where / "agent.py"), str(where / "agent.pyc")],
        check=True,
    )
    (where / "agent.json").write_text(json.dumps(CONFIG))
    return where


def cpu_seconds() -> float | None:
    with contextlib.suppress(OSError):
        return int((CGROUP / "cpuacct.usage").read_text()) / 1e9
    return None


def enter_cgroup() -> None:  # in the child, before exec
    with contextlib.suppress(OSError):
        (CGROUP / "tasks").write_text(str(os.getpid()))


def floor_once(bwrap: str) -> tuple[float, float | None]:
    cpu0, started = cpu_seconds(), time.perf_counter()
    subprocess.run(
        [bwrap, *SANDBOX, "--", PYTHON, "-I", "-S", "-c", "pass"],
        check=True,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        preexec_fn=enter_cgroup,
    )
    wall, cpu1 = time.perf_counter() - started, cpu_seconds()
    return wall, (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None


def agent_once(bwrap: str, where: Path) -> tuple[float, float | None]:
    path = where / "agent.sock"
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)
    request = json.dumps({"op": "ping"}).encode()
    cpu0, started = cpu_seconds(), time.perf_counter()
    child = subprocess.Popen(
        [
            bwrap,
            *SANDBOX,
            "--ro-bind",
            str(where / "agent.pyc"),
            "/run/wrenn/agent.py",
            "--ro-bind",
            str(where / "agent.json"),
            "/run/wrenn/agent.json",
            "--",
            PYTHON,
            "-I",
            "-S",
            "/run/wrenn/agent.py",
            f"fd:{listener.fileno()}",
            "/run/wrenn/agent.json",
        ],
        pass_fds=(listener.fileno(),),
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        preexec_fn=enter_cgroup,
    )
    listener.close()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(str(path))  # queued in the backlog until the agent accepts
        client.sendall(struct.pack(">IB", len(request), ord("J")) + request)
        answer = client.recv(256)
    wall = time.perf_counter() - started
    if b'"ok":true' not in answer:
        raise SystemExit(f"the agent did not answer its ping: {answer!r}")
    child.send_signal(signal.SIGTERM)
    child.wait(10)
    cpu1 = cpu_seconds()
    return wall, (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--baseline-rev", help="also the agent.py of this git revision")
    args = parser.parse_args()
    bwrap = shutil.which("bwrap")
    if bwrap is None or os.geteuid() != 0:
        raise SystemExit("needs root and bubblewrap")
    scratch = Path(tempfile.mkdtemp(prefix="wrenn-agent-start-"))
    with contextlib.suppress(OSError):
        CGROUP.mkdir()
    try:
        rows: dict[str, Callable[[], tuple[float, float | None]]] = {
            "bare bwrap (floor)": lambda: floor_once(bwrap)
        }
        ours = prepare(AGENT.read_text(), scratch / "ours")
        rows["ours"] = lambda: agent_once(bwrap, ours)
        if args.baseline_rev:
            source = subprocess.run(
                ["git", "show", f"{args.baseline_rev}:src/wrenn_local/_inside/agent.py"],
                cwd=HERE.parent,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            base = prepare(source, scratch / "baseline")
            rows[f"baseline ({args.baseline_rev})"] = lambda: agent_once(bwrap, base)
        for run in rows.values():  # warm the page cache
            run()
        walls: dict[str, list[float]] = {name: [] for name in rows}
        cpus: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(args.rounds):
            for name, run in rows.items():
                wall, cpu = run()
                walls[name].append(wall * 1000)
                if cpu is not None:
                    cpus[name].append(cpu * 1000)
        floor = "bare bwrap (floor)"
        for name in rows:
            fields: dict[str, Any] = {
                "build": name,
                "rounds": args.rounds,
                "wall_p50_ms": round(statistics.median(walls[name]), 1),
                "wall_min_ms": round(min(walls[name]), 1),
                "wall_max_ms": round(max(walls[name]), 1),
                "wall_vs_floor": round(
                    statistics.median(walls[name]) / statistics.median(walls[floor]), 2
                ),
            }
            if cpus[name]:
                fields |= {
                    "cpu_p50_ms": round(statistics.median(cpus[name]), 1),
                    "cpu_min_ms": round(min(cpus[name]), 1),
                    "cpu_max_ms": round(max(cpus[name]), 1),
                    "cpu_vs_floor": round(
                        statistics.median(cpus[name]) / statistics.median(cpus[floor]), 2
                    ),
                }
            emit(**fields)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        for _ in range(50):  # the last sandbox's processes may still be exiting
            try:
                CGROUP.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)


if __name__ == "__main__":
    main()
