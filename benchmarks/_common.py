"""Small helpers shared by the benchmark scripts, including the ones that run in the
official SDK's virtualenv (so nothing here imports wrenn or wrenn_local)."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_getaddrinfo = socket.getaddrinfo


def cpu() -> float:
    """CPU seconds (user + system) this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy_s() -> float:
    """CPU seconds every core of this machine has spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:9]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def settle(limit: float = 20.0, busy_below: float = 0.15, window: float = 0.5) -> None:
    """Wait until the machine is idle (under ``busy_below`` of every core busy over
    ``window`` seconds), at most ``limit`` seconds: a run's teardown and the server
    refilling its spare capsules go on after its last destroy answered, and would land
    in the next measurement."""
    import time

    cores = os.cpu_count() or 1
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = machine_busy_s()
        time.sleep(window)
        if (machine_busy_s() - before) / (window * cores) < busy_below:
            return


def peak_mib() -> float:
    """This process's peak resident memory, MiB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def rss_mib() -> float:
    """This process's resident memory now, MiB."""
    return rss_kib("self") / 1024


def rss_kib(pid: int | str) -> int:
    """The resident memory of process ``pid`` (or ``"self"``) now, KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def sample_peak(pid: int, peak: list[int], stop: Any, interval: float = 0.02) -> None:
    """Keep ``peak[0]`` at the highest RSS (KiB) of ``pid`` seen until ``stop`` is set."""
    import anyio

    while not stop.is_set():
        peak[0] = max(peak[0], rss_kib(pid))
        await anyio.sleep(interval)


def _resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str) and name.endswith(".localhost"):
        host = "127.0.0.1"
    return _getaddrinfo(host, *args, **kwargs)


def resolve_localhost_names() -> None:
    """Make ``*.localhost`` resolve to loopback in this process (RFC 6761), as wildcard
    DNS does for the cloud's capsule proxy; plain glibc does not."""
    socket.getaddrinfo = _resolve


@contextmanager
def local_server(*options: str, python: str = sys.executable) -> Iterator[tuple[str, str, int]]:
    """``python -m wrenn_local serve --port 0 [options]`` for the block, in a process of its
    own (so its memory can be read): yields its base URL, API key and pid; stopped after.
    ``python``: the interpreter (another build's, for a before/after).

    The server's log goes to a temporary file; if the block fails, or the server ended
    before it was stopped, the log's last lines go to this process's stderr (which
    benchmarks/run.py shows for a failed suite)."""
    with (
        tempfile.TemporaryFile("w+", prefix="wrenn-bench-server-") as log,
        subprocess.Popen(
            [python, "-m", "wrenn_local", "serve", "--port", "0", *options],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        ) as server,
    ):
        failed = True
        try:
            assert server.stdout is not None
            base = server.stdout.readline().strip().split("=", 1)[1]
            key = server.stdout.readline().strip().split("=", 1)[1]
            yield base, key, server.pid
            failed = False
        finally:
            died = server.poll()
            server.terminate()
            server.wait(30)
            if failed or died is not None:
                log.seek(0)
                tail = log.read()[-6000:]
                sys.stderr.write(
                    f"-- the local server (exit code {died if died is not None else 'none'}, "
                    f"stopped by the benchmark: {died is None}); its log's end:\n{tail}\n"
                )
