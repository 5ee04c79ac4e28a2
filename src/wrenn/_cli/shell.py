"""``wrenn shell``: a capsule terminal attached to yours.

Your terminal goes into raw mode for the session (every key goes to the capsule, Ctrl-C
included) and is restored when the session ends however it ends. The capsule terminal
starts at your window's size and follows it (SIGWINCH). The session ends when the
program in the capsule exits; its exit code becomes wrenn's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import termios
import tty
from collections.abc import Iterator

import anyio

from .._capsule import AsyncCapsule
from .._pty import AsyncPtySession

__all__ = ["attach"]


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """Raw mode on a terminal for the block; the saved settings come back afterwards."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)


def window_size(fd: int) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return 80, 24
    return size.columns or 80, size.lines or 24  # a new pty may not have a size yet


async def attach(cap: AsyncCapsule, cmd: str = "/bin/bash") -> int:
    """Attach the calling terminal to a new terminal session in ``cap``."""
    stdin = sys.stdin.fileno()
    stdout = sys.stdout.fileno()
    cols, rows = window_size(stdout if os.isatty(stdout) else stdin)
    async with cap.pty(cmd, cols=cols, rows=rows) as term:
        with raw_mode(stdin):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_keys, term, stdin)
                tg.start_soon(_resizes, term, stdout)
                async for chunk in term.output():
                    await _write_all(stdout, chunk)
                tg.cancel_scope.cancel()
        code = term.exit_code
    return code if code is not None and 0 <= code <= 255 else 1


async def _keys(term: AsyncPtySession, fd: int) -> None:
    while True:
        await anyio.wait_readable(fd)
        data = os.read(fd, 4096)
        if not data:  # our stdin closed: end the capsule's input too
            await term.write(b"\x04")
            return
        await term.write(data)


async def _resizes(term: AsyncPtySession, fd: int) -> None:
    with anyio.open_signal_receiver(signal.SIGWINCH) as signals:
        async for _ in signals:
            cols, rows = window_size(fd)
            await term.resize(cols, rows)


async def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            await anyio.wait_writable(fd)
            continue
        view = view[written:]
