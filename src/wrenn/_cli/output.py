"""What the command line shows: tables, live status and transfer progress.

With the ``cli`` extra (rich) installed, tables are drawn and a terminal gets a live
view and progress bars; without it the same information is printed as plain aligned
text, so the command works with the SDK's own dependencies alone.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Protocol, TextIO

__all__ = ["Progress", "has_rich", "is_terminal", "live_view", "print_table", "progress"]


def has_rich() -> bool:
    """Whether rich (the ``cli`` extra) can be imported."""
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
