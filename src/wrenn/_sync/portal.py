"""The sync facade's engine: one event-loop thread per sync client.

Every sync method is the async one run through :meth:`PortalRunner.call`. Three generic
adapters do all the work, so there is no second implementation of anything:

* ``call``: run a coroutine function in the loop thread and wait. A ``KeyboardInterrupt``
  (Ctrl-C) while waiting cancels that call in the loop, waits for its clean-up (bounded)
  and re-raises — the client stays usable.
* ``enter``: turn an async context manager into a sync one (entered and exited in the
  loop thread, so its task group lives in that loop).
* ``iterate``: turn an async iterator into a sync one that **drains in batches**: one
  crossing fetches the next item plus whatever is already available without waiting,
  so the per-item cost is a list pop, not a thread hop.

Why not anyio's ``start_blocking_portal``: its crossing into a trio loop goes through
``trio.from_thread``, which refuses to run in any thread that is itself inside
``trio.run`` ("this is a blocking function; call it from a thread") — so a
``WrennClient(backend="trio")`` made by sync code called from a trio program hung in its
constructor. Here a caller hands work over with no event-loop API at all: it appends to
a queue and writes one byte to a socket pair, and a dispatcher task in the loop wakes on
that socket (``anyio.wait_readable``, on every backend and platform anyio supports) and
starts the work in its task group. So the sync API works from any thread, including one
that runs an asyncio or trio loop, whatever the client's backend.

The loop thread is a daemon thread: it never holds the interpreter open at exit. What is
still open at exit is closed by an exit hook (see :mod:`wrenn._sync.exit`).
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import socket
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Any, Final, Generic, Literal, ParamSpec, Protocol, TypeVar, final

import anyio
import anyio.abc

from .._exceptions import WrennError

__all__ = ["Backend", "PortalRunner", "ReadyItems"]

T = TypeVar("T")
P = ParamSpec("P")
Backend = Literal["asyncio", "trio"]
CANCEL_WAIT: Final = 30.0
CLOSE_WAIT: Final = 60.0
WAIT_SLICE: Final = 0.1
BATCH: Final = 256

ExcInfo = tuple[type[BaseException] | None, BaseException | None, Any]


class ReadyItems(Protocol[T]):
    """An async iterator that can also hand over items that are already available."""

    def __aiter__(self) -> AsyncIterator[T]: ...

    async def __anext__(self) -> T: ...

    def take_ready(self, limit: int) -> list[T]:
        """Up to ``limit`` items that are available right now, without waiting."""
        ...


class _Task(Generic[T]):
    """One piece of work in the loop thread, its result in a thread-safe future."""

    def __init__(self, factory: Callable[[], Awaitable[T]]) -> None:
        self.factory = factory
        self.future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self.scope: anyio.CancelScope | None = None
        self.cancel_requested = False
        self.submitted = False  # handed to the loop (it will run, and end, there)

    def cancel(self) -> None:
        """In the loop thread: cancel the work (before it started, or while it runs)."""
        self.cancel_requested = True
        if self.scope is not None:
            self.scope.cancel()

    async def run(self) -> None:
        try:
            with anyio.CancelScope() as self.scope:
                if self.cancel_requested:
                    self.scope.cancel()
                try:
                    result = await self.factory()
                except anyio.get_cancelled_exc_class():
                    raise
                except BaseException as exc:  # handed to the waiting thread, raised there
                    self.future.set_exception(exc)
                else:
                    self.future.set_result(result)
        finally:
            if not self.future.done():
                self.future.set_exception(
                    WrennError("the call was cancelled (interrupted, or the client closed)")
                )


@final
class PortalRunner:
    """Owns the event-loop thread of one sync client."""

    def __init__(self, backend: Backend = "asyncio") -> None:
        if backend not in ("asyncio", "trio"):
            raise WrennError(f"backend must be 'asyncio' or 'trio', not {backend!r}")
        self.backend = backend
        self._jobs: deque[Callable[[anyio.abc.TaskGroup], object]] = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = False
        self._closed = False
        self._close_started = False
        self._lock = threading.Lock()
        self._loop_thread_id: int | None = None
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        extra: dict[str, Any] = {}
        if sys.version_info >= (3, 14):  # threads may inherit the creator's context there
            extra["context"] = contextvars.Context()
        self._thread = threading.Thread(
            target=self._main,
            args=(ready,),
            name=f"wrenn-{backend}-portal",
            daemon=True,  # never holds the interpreter open; the exit hook closes clients
            **extra,
        )
        try:
            self._thread.start()
            ready.result()
        except BaseException:  # Ctrl-C while the loop starts, or it could not start
            self._closed = True
            self._stopping = True  # the loop ends as soon as it runs, or now if it does
            try:
                self._wake_w.send(b"\0")
            except OSError:
                pass
            if self._thread.ident is not None:  # (started)
                self._thread.join(CLOSE_WAIT)
            if not self._thread.is_alive():
                self._close_sockets()
            raise

    @property
    def closed(self) -> bool:
        return self._closed

    # --- the loop thread ---------------------------------------------------------------

    def _main(self, ready: concurrent.futures.Future[None]) -> None:
        try:
            anyio.run(self._serve, ready, backend=self.backend)
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(
                    WrennError(f"could not start the {self.backend} event loop: {exc!r}")
                )
        finally:
            self._closed = True
            self._stopping = True

    async def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        self._loop_thread_id = threading.get_ident()
        async with anyio.create_task_group() as tg:
            ready.set_result(None)
            while True:
                while self._jobs:
                    self._jobs.popleft()(tg)
                if self._stopping:
                    break
                await anyio.wait_readable(self._wake_r)
                try:
                    while self._wake_r.recv(4096):
                        pass
                except (BlockingIOError, InterruptedError):
                    pass
            # Whatever is still running is cancelled; its clean-ups are shielded and bounded.
            tg.cancel_scope.cancel()

    def _submit(
        self, job: Callable[[anyio.abc.TaskGroup], object], task: _Task[Any] | None = None
    ) -> None:
        """Hand ``job(task_group)`` to the loop thread (it runs there, soon); ``task``
        (what ``job`` starts) is marked as handed over."""
        if self._stopping:
            raise WrennError("this client is closed")
        self._jobs.append(job)
        if task is not None:
            task.submitted = True
        try:
            self._wake_w.send(b"\0")
        except BlockingIOError:
            pass  # the buffer is full of wake-ups: the dispatcher is awake anyway
        except OSError as exc:
            raise WrennError("this client is closed") from exc

    def _task(self, factory: Callable[[], Awaitable[T]]) -> _Task[T]:
        """A task for ``factory``, not yet handed to the loop (:meth:`_launch` does, in
        the caller's guarded region: a Ctrl-C raised as the hand-over returns must find
        the task to cancel it)."""
        if self._closed:
            raise WrennError("this client is closed")
        if threading.get_ident() == self._loop_thread_id:
            raise WrennError(
                "the sync API was called from inside its own event loop; "
                "use the async API (AsyncWrennClient) there"
            )
        return _Task(factory)

    def _launch(self, task: _Task[Any]) -> None:
        self._submit(lambda tg: tg.start_soon(task.run), task)

    def _wait(self, task: _Task[T], *, launch: bool = False) -> T:
        """Wait for ``task`` in short slices (so Ctrl-C gets through), launching it
        first if asked: from the hand-over on, a Ctrl-C cancels it."""
        future = task.future
        try:
            if launch:
                self._launch(task)
            while True:
                # result() with a timeout waits on the future's own condition: a third
                # less CPU per call than concurrent.futures.wait, which builds waiters
                try:
                    return future.result(WAIT_SLICE)
                except TimeoutError:
                    if future.done():
                        raise  # the call's own TimeoutError (e.g. WrennTimeoutError)
                if not self._thread.is_alive():
                    raise WrennError("the client's event loop has stopped")
        except KeyboardInterrupt:
            self._wait_cancelled(task)
            raise

    # --- the three adapters ------------------------------------------------------------

    def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` in the loop thread and return its result.

        Ctrl-C while waiting cancels the call in the loop, waits (bounded) for it to
        unwind its clean-ups, then raises ``KeyboardInterrupt``.
        """

        async def run() -> T:
            return await fn(*args, **kwargs)

        return self._wait(self._task(run), launch=True)

    @contextmanager
    def enter(self, manager: Callable[[], AbstractAsyncContextManager[T]]) -> Iterator[T]:
        """Enter the async context manager made by ``manager()`` inside the loop thread.

        It is entered and exited by one task of the loop, so task groups it opens are
        entered and left in the same task. An ``Exception`` raised by the block is passed
        to its exit, as ``async with`` would; ``KeyboardInterrupt``, ``SystemExit`` and
        other ``BaseException``s end it as a normal exit would (so it still releases what
        it holds, e.g. destroys its capsule — an interrupt must not be raised inside the
        event loop) and then leave the block unchanged. Ctrl-C while it is being entered
        cancels the entry (its clean-ups run, bounded; a capsule made so far is
        destroyed) and raises ``KeyboardInterrupt``.
        """
        entered: concurrent.futures.Future[T] = concurrent.futures.Future()
        exit_info: list[ExcInfo] = []
        leave: list[anyio.Event] = []

        async def hold() -> bool | None:
            cm = manager()
            value = await cm.__aenter__()
            leave.append(anyio.Event())
            entered.set_result(value)
            try:
                await leave[0].wait()
            finally:
                info = exit_info[0] if exit_info else (None, None, None)
                suppress = await cm.__aexit__(*info)
            return suppress

        task = self._task(hold)
        try:
            self._launch(task)
            while True:
                pending: list[concurrent.futures.Future[Any]] = [entered, task.future]
                done, _ = concurrent.futures.wait(
                    pending,
                    timeout=WAIT_SLICE,
                    return_when=concurrent.futures.FIRST_COMPLETED,
                )
                if entered in done:
                    break
                if task.future in done:
                    task.future.result()  # raises the entry's error
                    raise WrennError("the context manager ended before it was entered")
                if not self._thread.is_alive():
                    raise WrennError("the client's event loop has stopped")
        except KeyboardInterrupt:
            self._wait_cancelled(task)
            raise
        value = entered.result()

        def release() -> None:
            self._submit(lambda tg: leave[0].set())

        # Once the client is closed (its loop has ended the block, releasing what it
        # held), leaving the block has nothing left to do: no error of its own either
        # (a stream's generator closed by the garbage collector at interpreter exit).
        try:
            yield value
        except BaseException as exc:
            if isinstance(exc, Exception):
                exit_info.append((type(exc), exc, exc.__traceback__))
            if self._stopping:
                raise
            release()
            if not self._wait(task) or not isinstance(exc, Exception):
                raise
        else:
            if self._stopping:
                return
            release()
            self._wait(task)

    def _wait_cancelled(self, task: _Task[Any]) -> None:
        if not task.submitted:  # interrupted before the hand-over: nothing runs
            return
        try:
            self._submit(lambda tg: task.cancel())
        except WrennError:
            return
        concurrent.futures.wait([task.future], timeout=CANCEL_WAIT)

    def iterate(self, source: AsyncIterator[T] | ReadyItems[T]) -> Iterator[T]:
        """A sync iterator over ``source`` that crosses into the loop once per batch."""
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

    # --- closing -------------------------------------------------------------------------

    def close(self, timeout: float = CLOSE_WAIT) -> None:
        """Stop the loop thread: work still running is cancelled (its clean-ups are
        shielded and bounded) and the thread is joined for at most ``timeout`` seconds.
        Safe to call twice, and from any thread."""
        with self._lock:
            if self._close_started:
                return
            self._close_started = True
        self._closed = True
        self._stopping = True
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass
        if threading.get_ident() != self._loop_thread_id:
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self._close_sockets()

    def _close_sockets(self) -> None:
        self._wake_r.close()
        self._wake_w.close()
