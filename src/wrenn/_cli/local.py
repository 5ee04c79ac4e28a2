"""``wrenn local``: the embedded local server in the foreground (``serve``) or in the
background (``start``, ``stop``, ``status``); the options are in :mod:`.parser`.

A background server records its address, API key and pid in a state file, readable by
its owner only (0600, in a 0700 directory): ``$XDG_RUNTIME_DIR/wrenn/local.json``, or
``~/.local/state/wrenn/local.json`` where there is no runtime directory. Other commands
find it there when neither ``WRENN_BASE_URL`` nor ``WRENN_API_KEY`` is set (or with
``--local``). The server removes the file when it stops; a file whose process is gone
is ignored and removed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .._exceptions import WrennError
from . import output

__all__ = ["BackgroundServer", "LocalServerError", "running", "start", "state_file", "stop"]

START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0


class LocalServerError(WrennError):
    """The background local server could not be started or stopped (one line, exit 1)."""


@dataclasses.dataclass(frozen=True, slots=True)
class BackgroundServer:
    """What ``wrenn local start`` recorded about the server it started."""

    pid: int
    base_url: str
    api_key: str = dataclasses.field(repr=False)
    proxy_domain: str
    data_dir: str
    isolation: str

    def environ(self) -> dict[str, str]:
        return {
            "WRENN_BASE_URL": self.base_url,
            "WRENN_API_KEY": self.api_key,
            "WRENN_PROXY_DOMAIN": self.proxy_domain,
        }

    def public(self) -> dict[str, Any]:
        """Everything but the key, for ``status`` and ``--json``."""
        return {
            "running": True,
            "pid": self.pid,
            "base_url": self.base_url,
            "proxy_domain": self.proxy_domain,
            "data_dir": self.data_dir,
            "isolation": self.isolation,
            "state_file": str(state_file()),
        }


def state_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "wrenn"
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "wrenn"


def state_file() -> Path:
    return state_dir() / "local.json"


def log_file() -> Path:
    return state_dir() / "local.log"


def _alive(pid: int) -> bool:
    """A live (not zombie) wrenn_local process with that pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)  # no /proc: trust the signal check
        except OSError:
            return False
        return True
    state = stat.rpartition(")")[2].split()[:1]
    return state != ["Z"] and b"wrenn_local" in cmdline


def running() -> BackgroundServer | None:
    """The background server, if one is running (a stale state file is removed)."""
    path = state_file()
    try:
        data = json.loads(path.read_text())
        server = BackgroundServer(
            pid=int(data["pid"]),
            base_url=str(data["base_url"]),
            api_key=str(data["api_key"]),
            proxy_domain=str(data.get("proxy_domain", "")),
            data_dir=str(data.get("data_dir", "")),
            isolation=str(data.get("isolation", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _alive(server.pid):
        path.unlink(missing_ok=True)
        return None
    return server


def exports(env: dict[str, str]) -> str:
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


async def start(serve_options: list[str], *, quiet: bool) -> tuple[BackgroundServer, bool]:
    """Start the background server (unless one runs); ``(server, started_now)``."""
    found = running()
    if found is not None:
        return found, False
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_file()
    log = log_file()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as log_out:
        proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the server is detached
            [
                sys.executable,
                "-m",
                "wrenn_local",
                "serve",
                "--port",
                "0",
                *serve_options,
                "--state-file",
                str(path),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_out,
            stderr=log_out,
            start_new_session=True,  # Ctrl-C in this terminal does not reach it
        )
    import anyio

    deadline = time.monotonic() + START_TIMEOUT
    async with output.spinner("starting the local server", quiet=quiet):
        while True:
            code = proc.poll()
            if code is not None:
                why = _last_line(log) or f"exit code {code}"
                raise LocalServerError(f"the local server did not start: {why} (log: {log})")
            server = running()
            if server is not None and server.pid == proc.pid:
                return server, True
            if time.monotonic() > deadline:
                proc.terminate()
                raise LocalServerError(
                    f"the local server did not start within {START_TIMEOUT:.0f} s (log: {log})"
                )
            await anyio.sleep(0.1)


async def stop(*, quiet: bool) -> BackgroundServer | None:
    """Stop the background server (every capsule destroyed); None if none ran."""
    server = running()
    if server is None:
        return None
    import anyio

    os.kill(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    async with output.spinner("stopping the local server (destroying its capsules)", quiet=quiet):
        while _alive(server.pid):
            if time.monotonic() > deadline:
                os.kill(server.pid, signal.SIGKILL)
                break
            await anyio.sleep(0.1)
    state_file().unlink(missing_ok=True)
    return server


EXIT_NOT_RUNNING = 3


async def dispatch(args: argparse.Namespace, extra: list[str]) -> int:
    write = sys.stdout.write
    if args.local_command == "start":
        server, fresh = await start(extra, quiet=args.json or args.env)
        if args.env:
            write(exports(server.environ()))
        elif args.json:
            write(json.dumps({**server.public(), "started": fresh}) + "\n")
        else:
            what = "started" if fresh else "already running"
            write(
                f"local server {what}: {server.base_url} (pid {server.pid}, isolation "
                f"{server.isolation})\nwrenn commands use it until `wrenn local stop`\n"
            )
        return 0
    if args.local_command == "stop":
        stopped = await stop(quiet=args.json)
        if args.json:
            write(json.dumps({"stopped": stopped is not None}) + "\n")
        elif stopped is None:
            write("no local server was running\n")
        else:
            write(f"local server {stopped.base_url} stopped\n")
        return 0
    found = running()
    if found is None:
        if args.json:
            write(json.dumps({"running": False, "state_file": str(state_file())}) + "\n")
        else:
            sys.stderr.write("no local server is running (start one: wrenn local start)\n")
        return EXIT_NOT_RUNNING
    if args.env:
        write(exports(found.environ()))
    elif args.json:
        write(json.dumps(found.public()) + "\n")
    else:
        for key, value in found.public().items():
            if key != "running":
                write(f"{key:13} {value}\n")
    return 0
