"""Connections you can enter or iterate directly (the official SDK's iteration shapes)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Final, Generic, TypeVar, final

import anyio
import anyio.abc
import attrs

from .._exceptions import WrennError

__all__ = ["ScopedIterable"]

S = TypeVar("S", bound=AsyncIterator[Any])
T = TypeVar("T")
BUFFER: Final = 256  # items a directly iterated connection holds for a slow reader


@attrs.frozen
class _Failure:
    error: BaseException


@final
class ScopedIterable(Generic[S, T]):
    """A connection you can enter or iterate directly: what ``commands.stream()``,
    ``commands.connect()`` and ``files.download_stream()`` return.

    Either enter it (``async with cap.commands.stream(cmd) as run: async for event in
    run``), which ties the connection to your block, or iterate it directly as in the
    official SDK (``async for event in cap.commands.stream(cmd)``). A directly iterated
    one runs in the capsule's scope (``client.capsule()``, or ``async with`` an
    official ``AsyncCapsule``) and is closed when iteration ends or fails, when you call
    :meth:`aclose`, and at the latest when that scope ends. Outside any scope it runs in
    the iterating task: iterate it to the end, or call :meth:`aclose` if you stop early.
    """

    def __init__(
        self,
        opener: Callable[[], AbstractAsyncContextManager[S]],
        owner: Callable[[], anyio.abc.TaskGroup | None] = lambda: None,
        *,
        quiet: tuple[type[WrennError], ...] = (),
    ) -> None:
        self._opener = opener
        self._owner = owner
        # errors that end direct iteration as an empty stream (official SDK behaviour)
        self.quiet = quiet
        self._cm: AbstractAsyncContextManager[S] | None = None
        self._stream: S | None = None
        self._receive: Any = None
        self._scope: anyio.CancelScope | None = None
        self._started = False
        self._done = False

    # --- as a context manager (the recommended form) ---------------------------------

    async def __aenter__(self) -> S:
        if self._started:
            raise WrennError("this stream is already open")
        self._started = True
        self._cm = self._opener()
        return await self._cm.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        cm, self._cm = self._cm, None
        self._done = True
        if cm is None:
            return None
        return await cm.__aexit__(exc_type, exc, tb)

    # --- iterated directly (the official SDK's form) ---------------------------------

    def __aiter__(self) -> ScopedIterable[S, T]:
        return self

    async def __anext__(self) -> T:
        if self._done:
            raise StopAsyncIteration
        if not self._started:
            await self._begin()
        try:
            if self._receive is not None:
                try:
                    item = await self._receive.receive()
                except anyio.EndOfStream:
                    raise StopAsyncIteration from None
                if isinstance(item, _Failure):
                    raise item.error
                event: T = item
                return event
            assert self._stream is not None
            value: T = await self._stream.__anext__()
            return value
        except BaseException as exc:
            await self._finish(exc)
            if self.quiet and isinstance(exc, self.quiet):
                raise StopAsyncIteration from None
            raise

    async def _begin(self) -> None:
        self._started = True
        services = self._owner()
        if services is not None:
            self._receive = await services.start(self._pump)
        else:
            self._cm = self._opener()
            self._stream = await self._cm.__aenter__()

    async def _pump(self, *, task_status: anyio.abc.TaskStatus[Any]) -> None:
        """A task of the capsule's scope: the connection, and its items handed over
        through a bounded buffer (a slow reader slows the server down). It owns both
        ends of the buffer and ends when the reader is done (:meth:`_finish`) or the
        scope ends, whichever comes first."""
        send, receive = anyio.create_memory_object_stream[Any](BUFFER)
        with anyio.CancelScope() as scope:
            self._scope = scope
            try:
                task_status.started(receive)
                with send:
                    try:
                        async with self._opener() as stream:
                            async for item in stream:
                                await send.send(item)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        pass  # the reader is gone
                    except Exception as exc:  # handed to the reader, never to the scope
                        try:
                            await send.send(_Failure(exc))
                        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                            pass
                await anyio.sleep_forever()  # until the reader is done or the scope ends
            finally:
                receive.close()

    async def _finish(self, exc: BaseException | None = None) -> None:
        self._done = True
        if self._scope is not None:
            self._scope.cancel()
        if self._receive is not None:
            self._receive.close()
        cm, self._cm = self._cm, None
        if cm is not None:
            # entered in this task, left in it (no scope of our own around it: cancel
            # scopes must be left in the order they were entered); its clean-up is
            # shielded and bounded inside
            if exc is None or isinstance(exc, StopAsyncIteration):
                await cm.__aexit__(None, None, None)
            else:
                await cm.__aexit__(type(exc), exc, exc.__traceback__)

    async def aclose(self) -> None:
        """Close a directly iterated stream (safe to call twice)."""
        if not self._done:
            await self._finish()
