"""A pool of warm capsules reused across many small jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar, final

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._capsule import AsyncCapsule, capsule_scope
from ._concurrency import jobs
from ._exceptions import WrennFanOutError, WrennValidationError
from ._session import Session

__all__ = ["AsyncCapsulePool", "open_pool"]

T = TypeVar("T")
R = TypeVar("R")


@final
class AsyncCapsulePool:
    """Warm capsules; see :meth:`AsyncWrennClient.pool`."""

    def __init__(self, capsules: list[AsyncCapsule]) -> None:
        self.capsules = capsules
        send, receive = anyio.create_memory_object_stream[AsyncCapsule](len(capsules))
        self._free_send: MemoryObjectSendStream[AsyncCapsule] = send
        self._free: MemoryObjectReceiveStream[AsyncCapsule] = receive
        for capsule in capsules:
            send.send_nowait(capsule)

    def _stop(self) -> None:
        """Stop handing out capsules (the pool is ending)."""
        self._free_send.close()
        self._free.close()

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[AsyncCapsule]:
        """A free capsule for the block (waits while all are busy)."""
        capsule = await self._free.receive()
        try:
            yield capsule
        finally:
            try:
                self._free_send.send_nowait(capsule)
            except anyio.ClosedResourceError:
                pass  # the pool is closing

    async def run(self, fn: Callable[[AsyncCapsule, T], Awaitable[R]], item: T) -> R:
        async with self.acquire() as capsule:
            return await fn(capsule, item)

    async def map(
        self, fn: Callable[[AsyncCapsule, T], Awaitable[R]], items: Iterable[T]
    ) -> list[R]:
        """Run ``fn(capsule, item)`` for every item on the pool's capsules, in input order.

        All jobs run; failures are raised together as :class:`WrennFanOutError`.
        """
        todo = list(items)
        results: list[Any] = [None] * len(todo)
        failures: list[tuple[int, Exception]] = []

        async def one(index: int, item: T) -> None:
            try:
                results[index] = await self.run(fn, item)
            except Exception as exc:
                failures.append((index, exc))

        async with jobs() as tg:  # a KeyboardInterrupt in a job comes out bare
            for index, item in enumerate(todo):
                tg.start_soon(one, index, item)
        if failures:
            failures.sort(key=lambda pair: pair[0])
            raise WrennFanOutError(
                f"{len(failures)} of {len(todo)} jobs failed", [exc for _, exc in failures]
            )
        return results


@asynccontextmanager
async def open_pool(
    session: Session, size: int, capsule: Mapping[str, Any]
) -> AsyncIterator[AsyncCapsulePool]:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise WrennValidationError(f"a pool needs an int of 1 or more capsules, not {size!r}")
    async with AsyncExitStack() as stack:
        # Each capsule scope joins the exit stack, so leaving the pool (normally, by error
        # or by cancellation) destroys every capsule, shielded and bounded.
        capsules = [
            await stack.enter_async_context(capsule_scope(session, **capsule)) for _ in range(size)
        ]
        pool = AsyncCapsulePool(capsules)
        try:
            yield pool
        finally:
            pool._stop()
