"""The synchronous API: the async core driven through one blocking portal per client.

``WrennClient`` starts a portal thread (asyncio by default, trio on request) and runs every
call of the async core in it; nothing here re-implements the protocol, except file
transfers, sent and received blocking in the caller's thread (:mod:`wrenn._sync.bulk`,
closed with the client). Usable from any
thread, from several at once, and from a thread that already runs an event loop
(Jupyter). Ctrl-C during a call cancels that call cleanly; the client stays usable.
Closing the client closes every capsule scope before the portal stops.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Self, TypeVar, final

import anyio

from .._capsule import AsyncCapsule, DualMethod, create_capsule, placeholder_info
from .._client import AsyncWrennClient
from .._config import ClientConfig, ClientTimeout
from .._models import Capsule as CapsuleInfo
from .._pool import AsyncCapsulePool
from .._transport.http import httpx
from .._transport.tls import Verify
from .adapt import Facet, blocking
from .bulk import close_bulk, open_bulk
from .code import CodeRunner
from .commands import Commands
from .exit import EXIT_JOIN, track, untrack
from .files import CapsuleFiles
from .git import Git
from .portal import Backend, PortalRunner
from .pty import PtySession
from .resources import APIKeys, Auth, Capsules, Events, Files, Hosts, Processes, Snapshots

__all__ = ["Capsule", "CapsulePool", "WrennClient"]

T = TypeVar("T")
R = TypeVar("R")


def _by_id(
    capsule_id: str,
    api_key: str | None,
    base_url: str | None,
    backend: Backend,
    op: Callable[[Capsule], R],
) -> R:
    with WrennClient(api_key=api_key, base_url=base_url, backend=backend) as client:
        acap = AsyncCapsule(client._async._session, placeholder_info(capsule_id))
        return op(Capsule._wrap(client._runner, acap))


def destroy_by_id(
    capsule_id: str,
    *,
    wait: bool = False,
    api_key: str | None = None,
    base_url: str | None = None,
    backend: Backend = "asyncio",
) -> None:
    """Destroy a capsule by ID (a one-off client); with ``wait``, until it is gone."""
    _by_id(capsule_id, api_key, base_url, backend, lambda cap: cap._destroy(wait))


def pause_by_id(
    capsule_id: str,
    *,
    wait: bool = False,
    api_key: str | None = None,
    base_url: str | None = None,
    backend: Backend = "asyncio",
) -> CapsuleInfo:
    """Pause a capsule by ID (a one-off client); with ``wait``, until it is paused."""
    return _by_id(capsule_id, api_key, base_url, backend, lambda cap: cap._pause(wait))


def resume_by_id(
    capsule_id: str,
    *,
    wait: bool = False,
    api_key: str | None = None,
    base_url: str | None = None,
    backend: Backend = "asyncio",
) -> CapsuleInfo:
    """Resume a capsule by ID (a one-off client); with ``wait``, until it runs."""
    return _by_id(capsule_id, api_key, base_url, backend, lambda cap: cap._resume(wait))


def get_info_by_id(
    capsule_id: str,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    backend: Backend = "asyncio",
) -> CapsuleInfo:
    """The current description of a capsule by ID (a one-off client)."""
    return _by_id(capsule_id, api_key, base_url, backend, lambda cap: cap._get_info())


class Capsule(Facet[AsyncCapsule]):
    """A capsule for synchronous code. Get one from ``with client.capsule() as cap``, or
    the official SDK's way: ``with Capsule(wait=True) as cap`` (a client of its own)."""

    def __init__(
        self,
        template: str | None = None,
        vcpus: int | None = None,
        memory_mb: int | None = None,
        timeout: int | None = None,
        *,
        wait: bool = False,
        api_key: str | None = None,
        base_url: str | None = None,
        metadata: Mapping[str, str] | None = None,
        backend: Backend = "asyncio",
    ) -> None:
        """Create a capsule with a client of its own (it performs I/O, as in the official
        SDK). ``with Capsule(...) as cap`` destroys it and closes that client at the end;
        without a ``with`` block call :meth:`destroy` and :meth:`close`. Ctrl-C while it
        is being created destroys it again."""
        client = WrennClient(api_key=api_key, base_url=base_url, backend=backend)
        made: list[AsyncCapsule] = []

        async def make() -> AsyncCapsule:
            acap = await create_capsule(
                client._async._session,
                template=template,
                vcpus=vcpus,
                memory_mb=memory_mb,
                timeout=timeout,
                metadata=metadata,
                wait=wait,
                factory=AsyncCapsule,
            )
            made.append(acap)  # in the loop: a Ctrl-C as the result crosses still finds it
            return acap

        try:
            acap = client._runner.call(make)
        except BaseException:
            try:
                if made and not client._runner.closed:  # created after all: destroyed
                    client._runner.call(made[0].__aexit__, None, None, None)
            finally:
                client.close()
            raise
        client._exit_capsule = acap  # destroyed if still open at interpreter exit
        self._setup(client._runner, acap, owner=client)

    def _setup(self, runner: PortalRunner, acap: AsyncCapsule, owner: WrennClient | None) -> None:
        self._runner = runner
        self._async = acap
        self._owner = owner
        self._commands = Commands(runner, acap.commands)
        self._files = CapsuleFiles(runner, acap.files)
        self._git = Git(runner, acap.git)
        self._code = CodeRunner(runner, acap.code)

    @property
    def commands(self) -> Commands:
        """Run, stream, attach to, list and kill processes in this capsule."""
        return self._commands

    @property
    def files(self) -> CapsuleFiles:
        """Read, write, stream and list this capsule's files."""
        return self._files

    @property
    def git(self) -> Git:
        """git inside this capsule."""
        return self._git

    @property
    def code(self) -> CodeRunner:
        """Stateful code in a Jupyter kernel (capsules that run Jupyter)."""
        return self._code

    @classmethod
    def _wrap(cls, runner: PortalRunner, acap: AsyncCapsule) -> Capsule:
        self = cls.__new__(cls)
        self._setup(runner, acap, owner=None)
        return self

    @classmethod
    def create(
        cls,
        template: str | None = None,
        vcpus: int | None = None,
        memory_mb: int | None = None,
        timeout: int | None = None,
        *,
        wait: bool = False,
        api_key: str | None = None,
        base_url: str | None = None,
        metadata: Mapping[str, str] | None = None,
        backend: Backend = "asyncio",
    ) -> Self:
        """The same as ``Capsule(...)`` (the official SDK's other spelling)."""
        return cls(
            template,
            vcpus,
            memory_mb,
            timeout,
            wait=wait,
            api_key=api_key,
            base_url=base_url,
            metadata=metadata,
            backend=backend,
        )

    @classmethod
    def connect(
        cls,
        capsule_id: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        backend: Backend = "asyncio",
    ) -> Capsule:
        """Attach to an existing capsule with a client of its own (resumed if paused).
        ``with Capsule.connect(id) as cap`` destroys it at the end unless
        :meth:`detach` was called; :meth:`close` closes the client only."""
        client = WrennClient(api_key=api_key, base_url=base_url, backend=backend)
        try:
            acap = client._runner.call(client._async.connect, capsule_id)
        except BaseException:
            client.close()
            raise
        self = cls.__new__(cls)
        self._setup(client._runner, acap, owner=client)
        return self

    @classmethod
    def list(
        cls,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        backend: Backend = "asyncio",
    ) -> builtins.list[CapsuleInfo]:
        """The team's capsules (a one-off client; prefer ``client.capsules.list()``)."""
        with WrennClient(api_key=api_key, base_url=base_url, backend=backend) as client:
            return client.capsules.list()

    @property
    def capsule_id(self) -> str:
        return self._async.capsule_id

    @property
    def info(self) -> CapsuleInfo:
        """The capsule as last seen by this object (refresh with :meth:`get_info`)."""
        return self._async.info

    @property
    def detached(self) -> bool:
        return self._async.detached

    def __repr__(self) -> str:
        return f"<Capsule {self.capsule_id} {self.info.status}>"

    _get_info = blocking(AsyncCapsule._get_info)
    is_running = blocking(AsyncCapsule.is_running)
    wait_ready = blocking(AsyncCapsule.wait_ready)
    ping = blocking(AsyncCapsule.ping)
    _pause = blocking(AsyncCapsule._pause)
    _resume = blocking(AsyncCapsule._resume)
    _destroy = blocking(AsyncCapsule._destroy)
    create_snapshot = blocking(AsyncCapsule.create_snapshot)
    run_code = blocking(AsyncCapsule.run_code)
    create_code_context = blocking(AsyncCapsule.create_code_context)
    list_code_contexts = blocking(AsyncCapsule.list_code_contexts)
    restart_code_context = blocking(AsyncCapsule.restart_code_context)
    remove_code_context = blocking(AsyncCapsule.remove_code_context)
    browser_url = blocking(AsyncCapsule.browser_url)

    def use_kernel(self, kernel: str) -> None:
        """Run code with another kernelspec from now on (a fresh default context)."""
        self._async.use_kernel(kernel)
        self._code = CodeRunner(self._runner, self._async.code)

    # instance and class forms (Capsule.destroy(capsule_id)), as in the official SDK
    get_info = DualMethod(_get_info, get_info_by_id)
    pause = DualMethod(_pause, pause_by_id)
    resume = DualMethod(_resume, resume_by_id)
    destroy = DualMethod(_destroy, destroy_by_id)

    def get_url(self, port: int) -> str:
        """The proxy URL of ``port`` in the capsule."""
        return self._async.get_url(port)

    def detach(self) -> None:
        """Leave the capsule running when its block ends."""
        self._async.detach()

    @contextmanager
    def pty(
        self,
        cmd: str = "/bin/bash",
        args: Sequence[str] | None = None,
        cols: int = 80,
        rows: int = 24,
        envs: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Iterator[PtySession]:
        """An interactive terminal for the block (see :meth:`wrenn.AsyncCapsule.pty`)."""
        with self._runner.enter(
            lambda: self._async.pty(cmd, args=args, cols=cols, rows=rows, envs=envs, cwd=cwd)
        ) as session:
            yield PtySession(self._runner, session)

    @contextmanager
    def pty_connect(self, tag: str) -> Iterator[PtySession]:
        """Reattach to a terminal by tag (its shell outlives a dropped connection)."""
        with self._runner.enter(lambda: self._async.pty_connect(tag)) as session:
            yield PtySession(self._runner, session)

    def close(self) -> None:
        """Close the client this capsule owns (from ``Capsule(...)``/``connect``); the
        capsule itself is left as it is. Safe to call twice."""
        if self._owner is not None:
            self._owner.close()

    def __enter__(self) -> Capsule:
        return self

    def __exit__(self, *exc: object) -> None:
        """For a capsule made by ``Capsule(...)``/``connect``: destroy it (unless detached)
        and close its client. A capsule from ``client.capsule()`` is left to its scope."""
        if self._owner is not None:
            try:
                self._runner.call(self._async.__aexit__, None, None, None)
            finally:
                self._owner.close()


@final
class CapsulePool:
    """Warm capsules for synchronous code; see :meth:`WrennClient.pool`."""

    def __init__(self, runner: PortalRunner, pool: AsyncCapsulePool) -> None:
        self._runner = runner
        self._async = pool
        self.capsules = [Capsule._wrap(runner, c) for c in pool.capsules]
        self._by_id = {c.capsule_id: c for c in self.capsules}

    @contextmanager
    def acquire(self) -> Iterator[Capsule]:
        """A free capsule for the block (waits while all are busy; Ctrl-C cancels)."""
        with self._runner.enter(self._async.acquire) as acap:
            yield self._by_id[acap.capsule_id]

    def run(self, fn: Callable[[Capsule, T], R], item: T) -> R:
        """``fn(capsule, item)`` on a free capsule, in the calling thread."""
        with self.acquire() as capsule:
            return fn(capsule, item)

    def map(self, fn: Callable[[Capsule, T], R], items: Iterable[T]) -> builtins.list[R]:
        """Run ``fn(capsule, item)`` for every item on the pool's capsules, in input order;
        ``fn`` runs in worker threads (one per capsule in use). All jobs run; failures
        are raised together as :class:`WrennFanOutError`. Ctrl-C cancels the jobs that
        have not started and waits for the running ones."""
        by_id = self._by_id

        async def job(acap: AsyncCapsule, item: T) -> R:
            return await anyio.to_thread.run_sync(fn, by_id[acap.capsule_id], item)

        return self._runner.call(self._async.map, job, items)


@final
class WrennClient:
    """The synchronous client; same arguments as :class:`AsyncWrennClient`, plus
    ``backend`` (``"asyncio"`` or ``"trio"``) for the portal's event loop.

    One portal thread per client runs every call; the client is safe to share between
    threads. Use it as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        proxy_domain: str | None = None,
        timeout: ClientTimeout = None,
        *,
        token: str | None = None,
        connect_timeout: float | None = 10.0,
        max_retries: int = 3,
        verify: Verify = True,
        http_transport: httpx.AsyncBaseTransport | None = None,
        ping_interval: float | None = 20.0,
        ping_timeout: float = 20.0,
        binary_frames: bool | None = None,
        backend: Backend = "asyncio",
    ) -> None:
        async def make() -> AsyncWrennClient:
            return AsyncWrennClient(
                api_key=api_key,
                token=token,
                base_url=base_url,
                proxy_domain=proxy_domain,
                timeout=timeout,
                connect_timeout=connect_timeout,
                max_retries=max_retries,
                verify=verify,
                http_transport=http_transport,
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
                binary_frames=binary_frames,
            )

        runner: PortalRunner | None = None
        try:  # (to the end: a Ctrl-C anywhere in here leaves no loop thread behind)
            self._runner = runner = PortalRunner(backend)
            self._async = client = runner.call(make)
            self._open_scopes: builtins.list[Any] = []
            open_bulk(client._session.http)  # file transfers in the caller's thread
            self._capsules = Capsules(runner, client.capsules)
            self._snapshots = Snapshots(runner, client.snapshots)
            self._events = Events(runner, client.events)
            self._auth = Auth(runner, client.auth)
            self._api_keys = APIKeys(runner, client.api_keys)
            self._hosts = Hosts(runner, client.hosts)
            self._processes = Processes(runner, client.processes)
            self._files = Files(runner, client.files)
            self._exit_capsule: AsyncCapsule | None = None
            track(self)  # closed at interpreter exit if still open (see wrenn._sync.exit)
        except BaseException:
            if hasattr(self, "_async"):
                close_bulk(self._async._session.http)
            if runner is None:
                runner = getattr(self, "_runner", None)  # (interrupted as it was assigned)
            if runner is not None:
                runner.close()
            raise

    @property
    def capsules(self) -> Capsules:
        """Capsule REST calls: create, list, get, destroy, pause, resume, metrics, ..."""
        return self._capsules

    @property
    def snapshots(self) -> Snapshots:
        """Templates made from capsules."""
        return self._snapshots

    @property
    def events(self) -> Events:
        """The team's event stream."""
        return self._events

    @property
    def auth(self) -> Auth:
        """Sign up and log in."""
        return self._auth

    @property
    def api_keys(self) -> APIKeys:
        """The team's API keys (needs a user token)."""
        return self._api_keys

    @property
    def hosts(self) -> Hosts:
        """The machines capsules run on (needs a user token)."""
        return self._hosts

    @property
    def processes(self) -> Processes:
        """Commands by capsule ID (the thin REST and stream calls)."""
        return self._processes

    @property
    def files(self) -> Files:
        """Whole-file REST calls by capsule ID."""
        return self._files

    def __repr__(self) -> str:
        return repr(self._async).replace("AsyncWrennClient", "WrennClient")

    @property
    def config(self) -> ClientConfig:
        """The resolved configuration (credentials hidden in its repr)."""
        return self._async.config

    @property
    def base_url(self) -> str:
        return self._async.base_url

    @property
    def proxy_domain(self) -> str:
        return self._async.proxy_domain

    @property
    def backend(self) -> Backend:
        """The event loop the portal thread runs: ``"asyncio"`` or ``"trio"``."""
        return self._runner.backend

    def close(self) -> None:
        """Close every open capsule scope (destroying its capsule), then the HTTP client,
        then the portal thread. Safe to call twice."""
        untrack(self)
        if self._runner.closed:
            return
        try:
            while self._open_scopes:
                self._open_scopes.pop().__exit__(None, None, None)
            self._runner.call(self._async.aclose)
        finally:
            close_bulk(self._async._session.http)
            self._runner.close()

    def _close_at_exit(self) -> str:
        """The exit hook's close (see :mod:`wrenn._sync.exit`): what :meth:`close`
        does, and first destroy the capsule an official ``Capsule(...)`` created unless
        it was detached. Each step is bounded."""
        done = []
        capsule = self._exit_capsule
        if capsule is not None and not capsule.detached and not self._runner.closed:
            self._runner.call(capsule.__aexit__, None, None, None)
            done.append(f"capsule {capsule.capsule_id} destroyed")
        if self._open_scopes:
            done.append(f"{len(self._open_scopes)} capsule scope(s) ended")
        try:
            while self._open_scopes:
                self._open_scopes.pop().__exit__(None, None, None)
            if not self._runner.closed:
                self._runner.call(self._async.aclose)
        finally:
            close_bulk(self._async._session.http)
            self._runner.close(timeout=EXIT_JOIN)
        done.append("connections closed")
        return ", ".join(done)

    def __enter__(self) -> WrennClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _scope(self, manager: Callable[[], Any]) -> Iterator[Any]:
        """Enter an async scope in the portal and remember it, so that :meth:`close`
        can end it even when the thread that opened it never comes back."""
        scope = self._runner.enter(manager)
        value = scope.__enter__()
        self._open_scopes.append(scope)
        try:
            yield value
        except BaseException as exc:
            if scope in self._open_scopes:
                self._open_scopes.remove(scope)
                if not scope.__exit__(type(exc), exc, exc.__traceback__):
                    raise
        else:
            if scope in self._open_scopes:
                self._open_scopes.remove(scope)
                scope.__exit__(None, None, None)

    @contextmanager
    def capsule(
        self,
        *,
        template: str | None = None,
        vcpus: int | None = None,
        memory_mb: int | None = None,
        disk_size_mb: int | None = None,
        timeout: int | None = None,
        metadata: Mapping[str, str] | None = None,
        ready_timeout: float | None = 60.0,
        keepalive: bool | float = False,
        network: bool | None = None,
    ) -> Iterator[Capsule]:
        """A capsule for the block: created and waited for on entry, destroyed on exit
        (also on error and Ctrl-C); see :meth:`AsyncWrennClient.capsule`."""
        with self._scope(
            lambda: self._async.capsule(
                template=template,
                vcpus=vcpus,
                memory_mb=memory_mb,
                disk_size_mb=disk_size_mb,
                timeout=timeout,
                metadata=metadata,
                ready_timeout=ready_timeout,
                keepalive=keepalive,
                network=network,
            )
        ) as acap:
            yield Capsule._wrap(self._runner, acap)

    @contextmanager
    def pool(self, size: int, **capsule: Any) -> Iterator[CapsulePool]:
        """``size`` warm capsules reused for many small jobs::

            with client.pool(4) as pool:
                results = pool.map(job, items)

        Created together on entry, destroyed on exit (also on error and Ctrl-C).
        """
        with self._scope(lambda: self._async.pool(size, **capsule)) as apool:
            yield CapsulePool(self._runner, apool)

    def connect(self, capsule_id: str, *, ready_timeout: float | None = 60.0) -> Capsule:
        """Attach to an existing capsule (resumed if paused); this client never destroys
        it — call ``destroy()`` when done."""
        acap = self._runner.call(self._async.connect, capsule_id, ready_timeout=ready_timeout)
        return Capsule._wrap(self._runner, acap)

    def map(
        self,
        fn: Callable[[Capsule, T], R],
        items: Iterable[T],
        *,
        concurrency: int = 8,
        capsule: Mapping[str, Any] | None = None,
        creation_rate: float | None = None,
        retries: int = 0,
        return_exceptions: bool = False,
        on_progress: Callable[[int, int], Any] | None = None,
    ) -> builtins.list[Any]:
        """See :meth:`AsyncWrennClient.map`; ``fn`` is a plain function, run in worker
        threads (one per job in flight), given a sync :class:`Capsule`. Ctrl-C cancels
        the fan-out: jobs not started are dropped, every capsule is destroyed."""
        runner = self._runner

        async def job(acap: AsyncCapsule, item: T) -> R:
            return await anyio.to_thread.run_sync(
                fn, Capsule._wrap(runner, acap), item, abandon_on_cancel=True
            )

        return self._runner.call(
            self._async.map,
            job,
            items,
            concurrency=concurrency,
            capsule=capsule,
            creation_rate=creation_rate,
            retries=retries,
            return_exceptions=return_exceptions,
            on_progress=on_progress,
        )
