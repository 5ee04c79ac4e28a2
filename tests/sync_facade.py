"""Run the async suite's end-to-end scenarios through the sync API.

``open_client("sync", ...)`` yields an object with the *async* client's interface whose
every call goes through the real :class:`wrenn.WrennClient`: each coroutine method runs
the sync method in a worker thread of the test's event loop; async context managers and
async iterators are the sync ones driven from worker threads; async callbacks handed to
``map`` are turned into plain functions that call back into the test's loop through a
blocking portal. Which attribute is a coroutine is read off the async twin of each sync
class, so the facade has no list of methods to keep in step.

This is a test adapter, not a mock: every byte still crosses the real sync facade, its
portal thread and real sockets to wrenn_local.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, Literal, cast

import anyio
import anyio.to_thread
from anyio.from_thread import BlockingPortal

import wrenn
from wrenn._resources import accounts, capsules, events, files, hosts, processes, snapshots
from wrenn._sync import resources as _sync_resources

Api = Literal["async", "sync"]
APIS: list[Api] = ["async", "sync"]

TWINS: dict[type, type] = {
    wrenn.WrennClient: wrenn.AsyncWrennClient,
    wrenn.Capsule: wrenn.AsyncCapsule,
    wrenn.Commands: wrenn.AsyncCommands,
    wrenn.SyncCommandHandle: wrenn.CommandHandle,
    wrenn.ExecStream: wrenn.AsyncExecStream,
    wrenn.CapsuleFiles: wrenn.AsyncCapsuleFiles,
    wrenn.PtySession: wrenn.AsyncPtySession,
    wrenn.Git: wrenn.AsyncGit,
    wrenn.CapsulePool: wrenn.AsyncCapsulePool,
    wrenn.CodeRunner: wrenn.AsyncCodeRunner,
    wrenn.CodeRun: wrenn.AsyncCodeRun,
    _sync_resources.Capsules: capsules.AsyncCapsules,
    _sync_resources.Snapshots: snapshots.AsyncSnapshots,
    _sync_resources.Events: events.AsyncEvents,
    _sync_resources.Auth: accounts.AsyncAuth,
    _sync_resources.APIKeys: accounts.AsyncAPIKeys,
    _sync_resources.Hosts: hosts.AsyncHosts,
    _sync_resources.Processes: processes.AsyncProcesses,
    _sync_resources.Files: files.AsyncFiles,
}
_DONE = object()


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


class AsyncView:
    """The async face of one sync object."""

    def __init__(self, target: Any, portal: BlockingPortal) -> None:
        self._target = target
        self._portal = portal
        self._twin = TWINS[type(target)]

    def __repr__(self) -> str:
        return f"AsyncView({self._target!r})"

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        twin = inspect.getattr_static(self._twin, name, None)
        if twin is None or not callable(value):
            return wrap(value, self._portal)
        if isinstance(twin, classmethod | staticmethod):
            twin = twin.__func__
        twin = getattr(twin, "instance_function", twin)  # class-or-instance methods
        if inspect.iscoroutinefunction(twin):

            async def call(*args: Any, **kwargs: Any) -> Any:
                args, kwargs = self._sync_arguments(args, kwargs)
                return wrap(await in_thread(value, *args, **kwargs), self._portal)

            return call

        def plain(*args: Any, **kwargs: Any) -> Any:
            return wrap(value(*args, **kwargs), self._portal)

        return plain

    def _sync_arguments(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        convert = functools.partial(sync_argument, portal=self._portal)
        return tuple(map(convert, args)), {k: convert(v) for k, v in kwargs.items()}

    # sync streams and terminals iterate; their async twins iterate asynchronously
    def __aiter__(self) -> AsyncIterator[Any]:
        return iterate_in_threads(iter(self._target), self._portal)

    async def __aenter__(self) -> Any:
        await in_thread(self._target.__enter__)
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await in_thread(self._target.__exit__, *exc)


class iterate_in_threads:
    """A sync iterator as an async one; each ``next`` runs in a worker thread. (A class,
    not an async generator: a loop left early must not leave a generator to the GC.)"""

    def __init__(self, it: Iterator[Any], portal: BlockingPortal) -> None:
        self._it = it
        self._portal = portal

    def __aiter__(self) -> iterate_in_threads:
        return self

    async def __anext__(self) -> Any:
        item = await in_thread(next, self._it, _DONE)
        if item is _DONE:
            raise StopAsyncIteration
        return wrap(item, self._portal)


def wrap(value: Any, portal: BlockingPortal) -> Any:
    if type(value) in TWINS:
        return AsyncView(value, portal)
    if isinstance(value, list) and value and type(value[0]) in TWINS:
        return [wrap(v, portal) for v in value]
    if hasattr(value, "__enter__") and hasattr(value, "__exit__"):
        return async_context(value, portal)
    if isinstance(value, Iterator):
        return iterate_in_threads(value, portal)
    return value


@asynccontextmanager
async def async_context(manager: Any, portal: BlockingPortal) -> AsyncIterator[Any]:
    value = await in_thread(manager.__enter__)
    try:
        yield wrap(value, portal)
    except BaseException as exc:
        if not await in_thread(manager.__exit__, type(exc), exc, exc.__traceback__):
            raise
    else:
        await in_thread(manager.__exit__, None, None, None)


def sync_argument(value: Any, *, portal: BlockingPortal) -> Any:
    """Async callables and async iterables given to the async API become sync ones that
    call back into the test's event loop."""
    if inspect.iscoroutinefunction(value):

        def call(*args: Any) -> Any:
            return portal.call(value, *(wrap(a, portal) for a in args))

        return call
    if hasattr(value, "__aiter__") and not isinstance(value, AsyncView):
        source = value.__aiter__()

        def chunks() -> Iterator[Any]:
            while True:
                try:
                    yield portal.call(source.__anext__)
                except StopAsyncIteration:
                    return

        return chunks()
    return value


@asynccontextmanager
async def open_client(api: Api, **kwargs: Any) -> AsyncIterator[wrenn.AsyncWrennClient]:
    """An async client, or the sync client behind its async face (typed as the async
    one: the scenarios are written against it)."""
    if api == "async":
        async with wrenn.AsyncWrennClient(**kwargs) as client:
            yield client
        return
    backend = "trio" if _running_trio() else "asyncio"
    client = await in_thread(wrenn.WrennClient, backend=backend, **kwargs)
    try:
        async with BlockingPortal() as portal:
            yield cast("wrenn.AsyncWrennClient", AsyncView(client, portal))
    finally:
        with anyio.CancelScope(shield=True):
            await in_thread(client.close)


def _running_trio() -> bool:
    import sniffio

    return sniffio.current_async_library() == "trio"
