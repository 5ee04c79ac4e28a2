"""The REST resources of :class:`wrenn.WrennClient` (``client.capsules``, ``.snapshots``,
``.events``, ``.auth``, ``.api_keys``, ``.hosts``, ``.processes``, ``.files``).

Each is a :class:`Facet` over the async resource; every method is the async one run
through the client's portal, with the same parameters, errors and retries, except the
file transfers of ``client.files``, done in the caller's thread (:mod:`wrenn._sync.bulk`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import aclosing, contextmanager
from typing import Any, final

from .._config import CLIENT_DEFAULT, Timeout
from .._models import Event
from .._resources.accounts import AsyncAPIKeys, AsyncAuth
from .._resources.capsules import AsyncCapsules
from .._resources.events import AsyncEvents
from .._resources.files import AsyncFiles
from .._resources.hosts import AsyncHosts
from .._resources.processes import AsyncProcesses
from .._resources.snapshots import AsyncSnapshots
from .._resources.streams import process_selector
from .adapt import Facet, blocking
from .bulk import SyncBulk, bulk_for
from .commands import ExecStream
from .files import pulled
from .portal import PortalRunner

__all__ = [
    "APIKeys",
    "Auth",
    "Capsules",
    "EventIterator",
    "Events",
    "Files",
    "Hosts",
    "Processes",
    "Snapshots",
]


@final
class Capsules(Facet[AsyncCapsules]):
    """``client.capsules``: capsule REST calls (see :class:`wrenn.AsyncCapsules`)."""

    __slots__ = ()
    create = blocking(AsyncCapsules.create)
    list = blocking(AsyncCapsules.list)
    get = blocking(AsyncCapsules.get)
    destroy = blocking(AsyncCapsules.destroy)
    reap = blocking(AsyncCapsules.reap)
    pause = blocking(AsyncCapsules.pause)
    resume = blocking(AsyncCapsules.resume)
    ping = blocking(AsyncCapsules.ping)
    browser_token = blocking(AsyncCapsules.browser_token)
    metrics = blocking(AsyncCapsules.metrics)
    stats = blocking(AsyncCapsules.stats)
    usage = blocking(AsyncCapsules.usage)


@final
class Snapshots(Facet[AsyncSnapshots]):
    """``client.snapshots``: templates made from capsules."""

    __slots__ = ()
    create = blocking(AsyncSnapshots.create)
    list = blocking(AsyncSnapshots.list)
    get = blocking(AsyncSnapshots.get)
    delete = blocking(AsyncSnapshots.delete)
    wait = blocking(AsyncSnapshots.wait)


@final
class Events(Facet[AsyncEvents]):
    """``client.events``: the team's event stream."""

    __slots__ = ()

    def stream(
        self, *, open_timeout: Timeout = CLIENT_DEFAULT, idle_timeout: float | None = 90.0
    ) -> EventIterator:
        """``with client.events.stream() as events: for event in events``, or
        ``for event in client.events.stream()`` (the official SDK's form).

        Each ``next`` waits for the next event with no deadline of its own (Ctrl-C
        cancels the wait); events already received are handed over in one batch.
        Leaving the block (or the loop) closes the connection. Raises
        :class:`WrennConnectionError` when nothing, not even a keepalive, arrived for
        ``idle_timeout`` seconds.
        """
        return EventIterator(
            self._runner,
            lambda: self._async.stream(open_timeout=open_timeout, idle_timeout=idle_timeout),
        )


@final
class EventIterator:
    """What the sync ``client.events.stream()`` returns: a context manager giving an
    iterator of events, or an iterable closed when the loop ends or is left."""

    def __init__(self, runner: PortalRunner, factory: Callable[[], Any]) -> None:
        self._runner = runner
        self._factory = factory
        self._cm: Any = None

    def __enter__(self) -> Iterator[Event]:
        cm = self._runner.enter(self._factory)
        events: Iterator[Event] = self._runner.iterate(cm.__enter__())
        self._cm = cm
        return events

    def __exit__(self, *exc: Any) -> None:
        cm, self._cm = self._cm, None
        if cm is not None:
            cm.__exit__(*exc)

    def __iter__(self) -> Iterator[Event]:
        with self as events:
            yield from events


@final
class Auth(Facet[AsyncAuth]):
    """``client.auth``: sign up and log in (returns a session with a JWT)."""

    __slots__ = ()
    signup = blocking(AsyncAuth.signup)
    login = blocking(AsyncAuth.login)


@final
class APIKeys(Facet[AsyncAPIKeys]):
    """``client.api_keys``: the team's API keys (needs a JWT client)."""

    __slots__ = ()
    create = blocking(AsyncAPIKeys.create)
    list = blocking(AsyncAPIKeys.list)
    delete = blocking(AsyncAPIKeys.delete)


@final
class Hosts(Facet[AsyncHosts]):
    """``client.hosts``: the machines capsules run on."""

    __slots__ = ()
    create = blocking(AsyncHosts.create)
    list = blocking(AsyncHosts.list)
    get = blocking(AsyncHosts.get)
    delete = blocking(AsyncHosts.delete)
    delete_preview = blocking(AsyncHosts.delete_preview)
    regenerate_token = blocking(AsyncHosts.regenerate_token)
    tags = blocking(AsyncHosts.tags)
    add_tag = blocking(AsyncHosts.add_tag)
    remove_tag = blocking(AsyncHosts.remove_tag)


@final
class Processes(Facet[AsyncProcesses]):
    """``client.processes``: commands by capsule ID (the thin REST and stream calls)."""

    __slots__ = ()
    run = blocking(AsyncProcesses.run)
    start = blocking(AsyncProcesses.start)
    list = blocking(AsyncProcesses.list)
    kill = blocking(AsyncProcesses.kill)
    terminate = blocking(AsyncProcesses.terminate)

    def stream(
        self,
        capsule_id: str,
        cmd: str,
        *,
        args: Sequence[str] | None = None,
        envs: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> ExecStream:
        """Run ``cmd`` (no shell) and stream its output; see :class:`ExecStream`."""
        return ExecStream(
            self._runner,
            lambda: self._async.stream(capsule_id, cmd, args=args, envs=envs, cwd=cwd),
        )

    def attach(self, capsule_id: str, selector: int | str) -> ExecStream:
        """Stream a running process's output from now on, by pid or tag."""
        process_selector(selector)  # at the call, not when the stream opens
        return ExecStream(self._runner, lambda: self._async.attach(capsule_id, selector))


@final
class Files(Facet[AsyncFiles]):
    """``client.files``: whole-file REST calls by capsule ID."""

    __slots__ = ()
    _write = blocking(AsyncFiles.write)
    _read = blocking(AsyncFiles.read)
    list = blocking(AsyncFiles.list)
    make_dir = blocking(AsyncFiles.make_dir)
    remove = blocking(AsyncFiles.remove)
    exists = blocking(AsyncFiles.exists)

    def _bulk(self) -> SyncBulk | None:
        """The sync client's blocking transfer client (see :mod:`wrenn._sync.bulk`)."""
        return bulk_for(self._async._http)

    def write(
        self, capsule_id: str, path: str, data: bytes | str, *, timeout: Timeout = CLIENT_DEFAULT
    ) -> None:
        """Write a whole file (parents created, existing file replaced). At most 100 MiB.
        Sent from the calling thread (see :mod:`wrenn._sync.bulk`)."""
        if (bulk := self._bulk()) is not None:
            bulk.write(capsule_id, path, data, timeout=timeout)
        else:
            self._write(capsule_id, path, data, timeout=timeout)

    def read(self, capsule_id: str, path: str, *, timeout: Timeout = CLIENT_DEFAULT) -> bytes:
        """Read a whole file as bytes (in the calling thread). Missing:
        :class:`WrennNotFoundError`."""
        if (bulk := self._bulk()) is not None:
            return bulk.read(capsule_id, path, timeout=timeout)
        return self._read(capsule_id, path, timeout=timeout)

    def write_stream(
        self, capsule_id: str, path: str, chunks: Iterable[bytes], *, size: int | None = None
    ) -> None:
        """Upload the chunks as one file in constant memory (read in a worker thread
        only as fast as the upload goes). ``size``: their total, when known (sent as a
        Content-Length; a mismatch raises :class:`WrennValidationError`). Ctrl-C cancels
        it; no partial file is kept."""
        if (bulk := self._bulk()) is not None:
            bulk.write_stream(capsule_id, path, chunks, size=size)
            return

        async def upload() -> None:
            async with aclosing(pulled(chunks)) as gen:
                await self._async.write_stream(capsule_id, path, gen, size=size)

        self._runner.call(upload)

    @contextmanager
    def read_stream(
        self, capsule_id: str, path: str, *, chunk_size: int = 256 * 1024
    ) -> Iterator[Iterator[bytes]]:
        """``with client.files.read_stream(id, p) as chunks: for chunk in chunks``."""
        if (bulk := self._bulk()) is not None:
            with bulk.read_stream(capsule_id, path, chunk_size=chunk_size) as body:
                yield body
            return
        with self._runner.enter(
            lambda: self._async.read_stream(capsule_id, path, chunk_size=chunk_size)
        ) as body:
            yield self._runner.iterate(body)
