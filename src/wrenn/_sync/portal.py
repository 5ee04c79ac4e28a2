"""The sync facade's engine: one anyio ``BlockingPortal`` thread per sync client.

Every sync method is the async one run through :meth:`PortalRunner.call`. Three generic
adapters do all the work, so there is no second implementation of anything:

* ``call``: run a coroutine function in the portal and wait. A ``KeyboardInterrupt``
  (Ctrl-C) while waiting cancels that call inside the portal, waits for its clean-up
  (bounded) and re-raises — the client stays usable.
* ``enter``: turn an async context manager into a sync one (entered and exited in the
  portal, so its task group lives in the portal's event loop).
* ``iterate``: turn an async iterator into a sync one that **drains in batches**: one
  portal crossing fetches the next item plus whatever is already available without
  waiting, so the per-item cost is a list pop, not a thread hop.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Any, Final, Generic, Literal, ParamSpec, Protocol, TypeVar, final

import anyio
import anyio.abc
from anyio.from_thread import BlockingPortal, start_blocking_portal

from .._exceptions import WrennError

__all__ = ["Backend", "PortalRunner", "ReadyItems"]

T = TypeVar("T")
P = ParamSpec("P")
Backend = Literal["asyncio", "trio"]
CANCEL_WAIT: Final = 30.0
WAIT_SLICE: Final = 0.1
BATCH: Final = 256


class ReadyItems(Protocol[T]):
    """An async iterator that can also hand over items that are already available."""

    def __aiter__(self) -> AsyncIterator[T]: ...

    async def __anext__(self) -> T: ...

    def take_ready(self, limit: int) -> list[T]:
        """Up to ``limit`` items that are available right now, without waiting."""
        ...


class _Held(Generic[T]):
    """What :meth:`PortalRunner.enter` shares with the task holding a manager."""

    def __init__(self) -> None:
        self.value: T
        self.leave: anyio.Event | None = None
        self.thrown: Exception | None = None


@final
class PortalRunner:
    """Owns the portal thread of one sync client."""

    def __init__(self, backend: Backend = "asyncio") -> None:
        if backend not in ("asyncio", "trio"):
            raise WrennError(f"backend must be 'asyncio' or 'trio', not {backend!r}")
        self.backend = backend
        self._cm = start_blocking_portal(backend)
        self.portal: BlockingPortal = self._cm.__enter__()
        self._closed = False
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop the portal (joins its thread). Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._cm.__exit__(None, None, None)

    def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` in the portal and return its result.

        Ctrl-C while waiting cancels the call in the portal, waits (bounded) for it to
        unwind its clean-ups, then raises ``KeyboardInterrupt``.
        """
        if self._closed:
            raise WrennError("this client is closed")

        async def run() -> T:
            return await fn(*args, **kwargs)

        future: concurrent.futures.Future[T] = self.portal.start_task_soon(run)
        try:
            # Wait in short slices: a blocked wait would not let Ctrl-C through until the
            # call ended. `exception()` returns the call's own error rather than raising
            # it, so a TimeoutError here can only mean the slice ran out.
            while True:
                try:
                    error = future.exception(timeout=WAIT_SLICE)
                except TimeoutError:
                    continue
                if error is not None:
                    raise error
                return future.result()
        except KeyboardInterrupt:
            future.cancel()
            concurrent.futures.wait([future], timeout=CANCEL_WAIT)
            raise

    @contextmanager
    def enter(self, manager: Callable[[], AbstractAsyncContextManager[T]]) -> Iterator[T]:
        """Enter the async context manager made by ``manager()`` inside the portal.

        The manager lives in one task of the portal from entry to exit (its task groups
        belong to that task). An ``Exception`` raised by the block is thrown into it, as
        ``async with`` would; ``KeyboardInterrupt``, ``SystemExit`` and other
        ``BaseException``s end it as a normal exit would (so it still releases what it
        holds, e.g. destroys its capsule) and then leave the block unchanged. Ctrl-C
        while entering cancels the entry — whatever it had created is released — and
        raises ``KeyboardInterrupt``.
        """
        if self._closed:
            raise WrennError("this client is closed")
        holder = _Held[T]()
        entered: concurrent.futures.Future[None] = concurrent.futures.Future()

        async def hold() -> None:
            async with manager() as value:
                holder.value = value
                holder.leave = anyio.Event()
                entered.set_result(None)
                await holder.leave.wait()
                if holder.thrown is not None:
                    raise holder.thrown

        future = self.portal.start_task_soon(hold)
        try:
            while not entered.done():
                done, _ = concurrent.futures.wait(
                    [entered, future],
                    timeout=WAIT_SLICE,
                    return_when=concurrent.futures.FIRST_COMPLETED,
                )
                if future in done and not entered.done():
                    error = future.exception()
                    raise error if error is not None else WrennError("the scope ended at entry")
        except KeyboardInterrupt:
            future.cancel()  # cancels the entry; the manager releases what it made
            concurrent.futures.wait([future], timeout=CANCEL_WAIT)
            raise
        try:
            yield holder.value
        except Exception as exc:
            holder.thrown = exc
            if not self._leave(future, holder):
                raise
        except BaseException:
            self._leave(future, holder)
            raise
        else:
            self._leave(future, holder)

    def _leave(self, future: concurrent.futures.Future[None], holder: _Held[Any]) -> bool:
        """Let the held manager exit; True when it swallowed the thrown exception."""
        assert holder.leave is not None
        self.portal.call(holder.leave.set)
        try:
            error = self._wait(future)
        except KeyboardInterrupt:
            future.cancel()
            concurrent.futures.wait([future], timeout=CANCEL_WAIT)
            raise
        if error is None:
            return holder.thrown is not None
        if error is holder.thrown:
            return False
        raise error

    @staticmethod
    def _wait(future: concurrent.futures.Future[Any]) -> BaseException | None:
        """Wait for ``future`` in slices (so Ctrl-C gets through); its exception or None."""
        while True:
            try:
                return future.exception(timeout=WAIT_SLICE)
            except TimeoutError:
                continue

    def iterate(self, source: AsyncIterator[T] | ReadyItems[T]) -> Iterator[T]:
        """A sync iterator over ``source`` that crosses the portal once per batch."""
        buffer: deque[T] = deque()
        take_ready = getattr(source, "take_ready", None)

        async def fetch() -> list[T] | None:
            try:
                first = await anext(source)
            except StopAsyncIteration:
                return None
            batch = [first]
            if take_ready is not None:
                batch.extend(take_ready(BATCH - 1))
            return batch

        while True:
            if not buffer:
                got = self.call(fetch)
                if got is None:
                    return
                buffer.extend(got)
            yield buffer.popleft()
