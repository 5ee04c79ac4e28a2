"""Terminals for synchronous code."""

from __future__ import annotations

from collections.abc import Iterator
from typing import final

from .._pty import AsyncPtySession, PtyEvent
from .adapt import Facet, blocking

__all__ = ["PtySession"]


@final
class PtySession(Facet[AsyncPtySession]):
    """A terminal for synchronous code; iterate it for :class:`PtyEvent` objects (as the
    official SDK) or ``term.output()`` for the output bytes. ``with term:`` kills the
    process and closes the connection when the block ends (official SDK).

    Each ``next`` that finds nothing buffered crosses into the portal once and brings back
    every chunk already received. While nothing is read, output waits in a bounded
    buffer and the shell is slowed down; nothing is dropped.
    """

    __slots__ = ()

    @property
    def tag(self) -> str | None:
        return self._async.tag

    @property
    def pid(self) -> int | None:
        return self._async.pid

    @property
    def exit_code(self) -> int | None:
        return self._async.exit_code

    def detach(self) -> None:
        """Keep the process running when the block ends (see the async ``detach``)."""
        self._async.detach()

    write = blocking(AsyncPtySession.write)
    resize = blocking(AsyncPtySession.resize)
    kill = blocking(AsyncPtySession.kill)
    wait = blocking(AsyncPtySession.wait)

    def __iter__(self) -> Iterator[PtyEvent]:
        return self._runner.iterate(self._async)

    def output(self) -> Iterator[bytes]:
        """The output bytes until the process exits."""
        return self._runner.iterate(self._async.output())

    def __enter__(self) -> PtySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self._runner.call(self._async.__aexit__, None, None, None)
