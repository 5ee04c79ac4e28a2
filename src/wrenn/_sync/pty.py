"""Terminals for synchronous code."""

from __future__ import annotations

from collections.abc import Iterator
from typing import final

from .._pty import AsyncPtySession
from .adapt import Facet, blocking

__all__ = ["PtySession"]


@final
class PtySession(Facet[AsyncPtySession]):
    """A terminal for synchronous code; iterate it for output bytes.

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

    def __iter__(self) -> Iterator[bytes]:
        return self._runner.iterate(self._async)
