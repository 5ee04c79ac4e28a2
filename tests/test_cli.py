"""The ``wrenn`` command, run as a user runs it: a subprocess against a real server (its
own process), and ``wrenn shell`` through a real pseudo-terminal."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.localserver import server_process


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, str]]:
    with server_process() as env:
        yield env


def wrenn(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m wrenn ARGS`` with none of the caller's ``WRENN_*`` variables but ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("WRENN_")}
    return subprocess.run(
        [sys.executable, "-m", "wrenn", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        input=stdin,
        timeout=timeout,
        check=False,
    )


def test_run_streams_output_and_exits_with_the_commands_code() -> None:
    done = wrenn(
        "run",
        "--local",
        "--env",
        "WHO=capsule",
        "--cwd",
        "/tmp",
        "--",
        "sh",
        "-c",
        "echo hello $WHO from $(pwd); echo oops >&2; exit 3",
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout == "hello capsule from /tmp\n"
    assert "oops" in done.stderr


def test_capsule_commands_against_a_server(server: dict[str, str], tmp_path: Path) -> None:
    assert json.loads(wrenn("ls", "--json", env=server).stdout) == []
    made = wrenn("run", "--json", "--", "true", env=server)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["exit_code"] == 0  # the whole of stdout: one document
    # a capsule that outlives one command: made with the SDK, driven by the CLI
    import anyio

    from wrenn import AsyncWrennClient

    async def create() -> str:
        async with (
            AsyncWrennClient(
                api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]
            ) as client,
            client.capsule() as cap,
        ):
            cap.detach()
            return cap.capsule_id

    cid = anyio.run(create)
    listed = wrenn("ls", env=server)
    assert cid in listed.stdout
    assert "running" in listed.stdout
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    up = wrenn("put", str(source), f"{cid}:in/data.bin", env=server)
    assert up.returncode == 0, up.stderr
    back = tmp_path / "back.bin"
    down = wrenn("get", f"{cid}:in/data.bin", str(back), "--json", env=server)
    assert down.returncode == 0, down.stderr
    assert back.read_bytes() == source.read_bytes()
    assert not (tmp_path / "back.bin.part").exists()
    snap = wrenn("snapshot", cid, "cli-snap", "--json", env=server)
    assert json.loads(snap.stdout)["name"] == "cli-snap", snap.stderr
    gone = wrenn("kill", cid, env=server)
    assert gone.returncode == 0
    assert f"{cid} destroyed" in gone.stdout


def test_errors_are_one_line_with_the_right_exit_code(
    server: dict[str, str], tmp_path: Path
) -> None:
    missing = wrenn("kill", "cl-" + "0" * 25, env=server)
    assert missing.returncode == 1
    assert missing.stderr.startswith("wrenn: error:")
    assert "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    nothing = wrenn("get", f"cl-{'0' * 25}:x", str(tmp_path / "x"), env=server)
    assert nothing.returncode == 1
    assert "Traceback" not in nothing.stderr
    no_key = wrenn("ls")
    assert no_key.returncode == 2
    assert "WRENN_API_KEY" in no_key.stderr
    assert "--local" in no_key.stderr
    assert wrenn("run", "--local").returncode == 2  # nothing to run
    assert wrenn("put", "/nonexistent", "cl-x:y", env=server).returncode == 2
    assert wrenn("get", "no-colon", "x", env=server).returncode == 2
    assert server["WRENN_API_KEY"] not in missing.stderr + no_key.stderr


def read_until(fd: int, needle: bytes, timeout: float = 60) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} never came; got {seen[-500:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


@pytest.mark.timeout(240)
def test_shell_through_a_real_terminal() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WRENN_")}
    pid, master = pty.fork()
    if pid == 0:  # the child: wrenn with the pty as its controlling terminal
        os.execve(
            sys.executable,
            [sys.executable, "-m", "wrenn", "shell", "--local", "--cmd", "/bin/sh"],
            {**env, "TERM": "xterm"},
        )
    try:
        set_size(master, 30, 100)
        before = termios.tcgetattr(master)
        read_until(master, b"$ ")  # the capsule's shell prompt: wrenn is attached
        os.write(master, b"echo ready-$((40+2))\r")
        read_until(master, b"ready-42")
        during = termios.tcgetattr(master)
        assert not during[3] & termios.ECHO  # raw mode: the capsule's terminal echoes
        os.write(master, b"stty size\r")
        read_until(master, b"30 100")
        set_size(master, 40, 120)  # the kernel sends wrenn SIGWINCH; it resizes the capsule's
        time.sleep(0.5)
        os.write(master, b"stty size\r")
        read_until(master, b"40 120")
        os.write(master, b"exit 5\r")
        deadline = time.monotonic() + 60
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            assert time.monotonic() < deadline, "wrenn shell did not exit"
            select.select([master], [], [], 0.2)
            try:
                os.read(master, 4096)
            except OSError:
                pass
        assert os.waitstatus_to_exitcode(status) == 5
        after = termios.tcgetattr(master)
        assert after[3] == before[3]  # the terminal is back as it was
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(master)
