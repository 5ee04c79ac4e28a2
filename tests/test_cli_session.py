"""The session in docs/cli.md, run exactly as written: each ``$`` line in bash (the
``wrenn`` command in subprocesses), ``wrenn shell`` through a real pseudo-terminal, and
every output line compared with the page (``…`` matches anything)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def session() -> list[tuple[str, list[str]]]:
    """``[(command, [expected output lines])]`` from the page's session block."""
    found = re.search(r"## A session.*?```console\n(.*?)```", PAGE.read_text(), re.S)
    assert found, "docs/cli.md has no session block"
    steps: list[tuple[str, list[str]]] = []
    for line in found.group(1).splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    return steps


def pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*?".join(re.escape(part) for part in expected.split("…")))


class Terminal:
    """The parent's end of a pty, with what has been read but not yet matched."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending = b""

    def expect(self, needle: str, timeout: float = 120) -> None:
        wanted = pattern(needle)
        deadline = time.monotonic() + timeout
        while not (found := wanted.search(self.pending.decode(errors="replace"))):
            left = deadline - time.monotonic()
            assert left > 0, f"{needle!r} never came; got {self.pending[-500:]!r}"
            if select.select([self.fd], [], [], left)[0]:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                assert chunk, f"the terminal closed before {needle!r}: {self.pending[-500:]!r}"
                self.pending += chunk
        self.pending = self.pending.decode(errors="replace")[found.end() :].encode()

    def drain_until_exit(self, pid: int, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            assert time.monotonic() < deadline, "wrenn shell did not exit"
            if select.select([self.fd], [], [], 0.2)[0]:
                try:
                    os.read(self.fd, 4096)
                except OSError:
                    pass


def shell_step(command: str, expected: list[str], env: dict[str, str], cwd: Path) -> None:
    pid, master = pty.fork()
    if pid == 0:  # the child: bash runs the line with the pty as its terminal
        os.chdir(cwd)
        os.execve("/bin/bash", ["bash", "-c", command], {**env, "TERM": "xterm"})
    term = Terminal(master)
    try:
        for line in expected:
            if line.startswith("…$ "):
                term.expect("$ ")  # the capsule's prompt
                os.write(master, line[len("…$ ") :].encode() + b"\r")
            else:
                term.expect(line)
        assert term.drain_until_exit(pid) == 0
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(master)


@pytest.mark.timeout(600)
def test_the_session_in_the_cli_page_runs_as_written(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WRENN_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["XDG_RUNTIME_DIR"] = str(tmp_path / "runtime")
    work = tmp_path / "work"
    work.mkdir()
    steps = session()
    assert [c.split()[1] for c, _ in steps if c.startswith("wrenn ")] == [
        "local", "exec", "put", "exec", "get", "shell", "snapshot", "kill", "local",
    ]  # fmt: skip
    try:
        for command, expected in steps:
            if command.startswith("wrenn shell "):
                shell_step(command, expected, env, work)
                continue
            assigned = re.fullmatch(r"(\w+)=\$\((.*)\)", command)
            done = subprocess.run(
                ["bash", "-c", assigned.group(2) if assigned else command],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert done.returncode == 0, (command, done.stderr)
            assert done.stderr == "", (command, done.stderr)  # no spinner off a terminal
            if assigned:
                env[assigned.group(1)] = done.stdout.strip()
                assert expected == []
                continue
            lines = done.stdout.splitlines()
            assert len(lines) == len(expected), (command, lines)
            for want, got in zip(expected, lines, strict=True):
                assert pattern(want).fullmatch(got), (command, want, got)
    finally:
        subprocess.run(["bash", "-c", "wrenn local stop"], env=env, check=False, timeout=120)
