"""What the command line shows: tables, live status and transfer progress.

With the ``cli`` extra (rich) installed, tables are drawn and a terminal gets a live
view and progress bars; without it the same information is printed as plain aligned
text, so the command works with the SDK's own dependencies alone.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Protocol, TextIO

__all__ = [
    "Progress",
    "has_rich",
    "is_terminal",
    "live_view",
    "print_table",
    "progress",
    "spinner",
]


def has_rich() -> bool:
    """Whether rich (the ``cli`` extra) can be imported."""
    import importlib.util

    try:
        return importlib.util.find_spec("rich") is not None
    except (ImportError, ValueError):  # blocked (sys.modules["rich"] = None) or broken
        return False


def is_terminal(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def print_table(
    out: TextIO,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
    width: int = 160,
) -> None:
    """A table of text cells; on a pipe it is never cut to the terminal's width."""
    if has_rich():
        from rich.console import Console
        from rich.table import Table

        table = Table(*headers, title=title, box=None)
        for column in table.columns:
            column.no_wrap = True
        for row in rows:
            table.add_row(*row)
        console = Console(file=out, highlight=False)
        if not console.is_terminal:
            console = Console(file=out, highlight=False, width=width)
        console.print(table)
        return
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    if title:
        out.write(title + "\n")
    for row in (list(headers), *rows):
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


class Progress(Protocol):
    """The part of a progress display the transfers use."""

    def __enter__(self) -> Any: ...
    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> Any: ...
    def add_task(self, description: str, *, total: float | None = None) -> Any: ...
    def advance(self, task: Any, advance: float = 1) -> None: ...


class _Silent:
    """No display (not a terminal, ``--json``, or no rich)."""

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, *, total: float | None = None) -> int:
        return 0

    def advance(self, task: Any, advance: float = 1) -> None:
        return None


def progress(label: str, quiet: bool) -> Progress:
    """A transfer progress bar on stderr when stderr is a terminal (and rich is there)."""
    if quiet or not is_terminal(sys.stderr) or not has_rich():
        return _Silent()
    from rich.progress import BarColumn, DownloadColumn, TextColumn, TransferSpeedColumn
    from rich.progress import Progress as RichProgress

    return RichProgress(
        TextColumn(label),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        transient=True,
    )


class LiveView(Protocol):
    def update(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None: ...
    def close(self) -> None: ...


class _RichLive:
    def __init__(self, out: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self._live = Live(console=Console(file=out, highlight=False), refresh_per_second=8)
        self._live.__enter__()

    def update(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        from rich.table import Table

        table = Table(*headers, box=None)
        for row in rows:
            table.add_row(*row)
        self._live.update(table)

    def close(self) -> None:
        self._live.__exit__(None, None, None)


def live_view(out: TextIO) -> LiveView | None:
    """A table redrawn in place, on a terminal with rich; else None (print lines)."""
    if is_terminal(out) and has_rich():
        return _RichLive(out)
    return None


_FRAMES = "|/-\\"


class Spinner:
    """One status line on a terminal: ``label``, a turning bar and the seconds waited,
    drawn once a wait has lasted ``delay`` seconds and wiped when it ends."""

    def __init__(self, out: TextIO | None, label: str, delay: float) -> None:
        self._out = out  # None: draw nothing
        self._label = label
        self._delay = delay
        self._since = time.monotonic()
        self._active = True
        self._drawn = False

    def stop(self) -> None:
        """Stop drawing (and wipe the line), e.g. before a command's own output."""
        self._active = False
        self._wipe()

    def resume(self, label: str) -> None:
        """Wait for something else, e.g. clean-up: drawn again after ``delay``."""
        self._label, self._since, self._active = label, time.monotonic(), True

    def _wipe(self) -> None:
        if self._drawn and self._out is not None:
            self._out.write("\r\x1b[K")
            self._out.flush()
            self._drawn = False

    async def _spin(self) -> None:
        import anyio

        frame = 0
        while True:
            await anyio.sleep(0.1)
            waited = time.monotonic() - self._since
            if self._out is None or not self._active or waited < self._delay:
                continue
            self._out.write(f"\r{_FRAMES[frame % 4]} {self._label}… ({waited:.0f}s)\x1b[K")
            self._out.flush()
            self._drawn = True
            frame += 1


@asynccontextmanager
async def spinner(
    label: str, *, quiet: bool, out: TextIO | None = None, delay: float = 0.5
) -> AsyncIterator[Spinner]:
    """A :class:`Spinner` on stderr for the block. Nothing at all is drawn under
    ``--json`` (``quiet``) or when the stream is not a terminal."""
    stream = sys.stderr if out is None else out
    if quiet or not is_terminal(stream):
        yield Spinner(None, label, delay)
        return
    from .._concurrency import helper_tasks  # on first use: `wrenn --help` stays quick

    spin = Spinner(stream, label, delay)
    try:
        async with helper_tasks() as tg:
            tg.start_soon(spin._spin)
            yield spin
    finally:
        spin._wipe()
