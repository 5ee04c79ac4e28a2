"""``AsyncCapsule``: a live capsule, and the scope that creates and destroys it."""

from __future__ import annotations

import builtins
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import (
    Any,
    Concatenate,
    Final,
    Generic,
    ParamSpec,
    Self,
    TypeVar,
    overload,
)

import anyio
import anyio.abc
import anyio.lowlevel

from ._code import DEFAULT_KERNEL, AsyncCodeRunner
from ._commands import AsyncCommands
from ._concurrency import helper_tasks
from ._exceptions import WrennError, WrennNotFoundError, WrennValidationError
from ._files import AsyncCapsuleFiles
from ._git import AsyncGit
from ._models import Capsule, CapsuleStatus, PendingSnapshot
from ._models.code import CodeContext, Execution, ExecutionError, Result
from ._owner import with_owner
from ._pty import AsyncPtySession, open_pty
from ._session import Session
from ._wait import wait_for_status

__all__ = ["AsyncCapsule", "DualMethod", "capsule_scope", "connect_capsule"]

log = logging.getLogger("wrenn")

CLEANUP_TIMEOUT: Final = 30.0
DEFAULT_WAIT: Final = 60.0
READY_WAIT: Final = 30.0  # the official wait_ready() default
C = TypeVar("C", bound="AsyncCapsule")
P = ParamSpec("P")
R = TypeVar("R")
K = TypeVar("K")


class DualMethod(Generic[P, R, K]):
    """The official SDK's class-or-instance methods: ``cap.destroy()`` acts on that
    capsule, ``Capsule.destroy(capsule_id)`` on a capsule by ID (with a one-off client).

    ``instance_function`` and ``class_function`` are the two forms, each with its own
    signature (type checkers see the right one for each kind of access).
    """

    def __init__(self, instance_function: Callable[Concatenate[Any, P], R], class_function: K):
        self.instance_function = instance_function
        self.class_function = class_function
        self.__doc__ = instance_function.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.__name__ = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> K: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> Callable[P, R]: ...
    def __get__(self, obj: object, owner: type | None = None) -> Any:
        if obj is None:
            return self.class_function
        return self.instance_function.__get__(obj, owner)


def placeholder_info(capsule_id: str) -> Capsule:
    """A description for a capsule known only by ID (the class-level forms)."""
    return Capsule(id=capsule_id, status=CapsuleStatus("unknown"))


async def _by_id(capsule_id: str, api_key: str | None, base_url: str | None, op: Any) -> Any:
    session = Session.from_options(api_key=api_key, base_url=base_url)
    try:
        return await op(AsyncCapsule(session, placeholder_info(capsule_id)))
    finally:
        await session.aclose()


async def destroy_by_id(
    capsule_id: str,
    *,
    wait: bool = False,
    api_key: str | None = None,
    base_url: str | None = None,
) -> None:
    """Destroy a capsule by ID; with ``wait``, until it is stopped or gone."""
    await _by_id(capsule_id, api_key, base_url, lambda cap: cap._destroy(wait))


async def pause_by_id(
    capsule_id: str,
    *,
    wait: bool = False,
    api_key: str | None = None,
    base_url: str | None = None,
) -> Capsule:
    """Pause a capsule by ID; with ``wait``, until it is paused."""
    result: Capsule = await _by_id(capsule_id, api_key, base_url, lambda cap: cap._pause(wait))
    return result


async def resume_by_id(
    capsule_id: str,
    *,
    wait: bool = False,
    api_key: str | None = None,
    base_url: str | None = None,
) -> Capsule:
    """Resume a capsule by ID; with ``wait``, until it runs."""
    result: Capsule = await _by_id(capsule_id, api_key, base_url, lambda cap: cap._resume(wait))
    return result


async def get_info_by_id(
    capsule_id: str, *, api_key: str | None = None, base_url: str | None = None
) -> Capsule:
    """The current description of a capsule by ID."""
    result: Capsule = await _by_id(capsule_id, api_key, base_url, lambda cap: cap._get_info())
    return result


class AsyncCapsule:
    """A capsule you can work with: ``commands``, ``files`` and its lifecycle.

    Get one from ``async with client.capsule(...) as cap`` (created for the block and
    destroyed after it) or ``await client.connect(capsule_id)`` (an existing one, left as
    it is). Not constructed directly.
    """

    capsule_id: str
    info: Capsule

    def __init__(self, session: Session, info: Capsule, *, kernel: str = DEFAULT_KERNEL) -> None:
        self._session = session
        self._owns_session = False
        self.info = info
        self.capsule_id = info.id
        self.commands = AsyncCommands(session.processes, info.id, owner=lambda: self._services)
        self.files = AsyncCapsuleFiles(session.files, info.id, owner=lambda: self._services)
        self.git = AsyncGit(self.commands, self.files)
        self.code = AsyncCodeRunner(
            session,
            info.id,
            kernel=kernel,
            template=info.template,
            owner=lambda: self._services,
        )
        self.detached = False
        # the task group of the capsule's scope (None outside `client.capsule()`): long-
        # lived connections such as kernel WebSockets run there and end with the scope
        self._services: anyio.abc.TaskGroup | None = None
        self._own_services: anyio.abc.TaskGroup | None = None  # opened by __aenter__

    def __repr__(self) -> str:
        return f"<AsyncCapsule {self.capsule_id} {self.info.status}>"

    # --- the official SDK's constructors ----------------------------------------------

    @classmethod
    async def create(
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
    ) -> Self:
        """Create a capsule with a client of its own (the official SDK's form).

        Use it as ``async with await AsyncCapsule.create() as cap:`` so that it is
        destroyed and its client closed at the end, or call ``destroy()`` and
        ``aclose()`` yourself. Prefer ``client.capsule(...)``, which ties the capsule to
        a scope from the start. The create itself is shielded from cancellation (so the
        capsule is never lost), and a failure after it destroys the capsule again.
        """
        session = Session.from_options(api_key=api_key, base_url=base_url)
        try:
            capsule = await create_capsule(
                session,
                template=template,
                vcpus=vcpus,
                memory_mb=memory_mb,
                timeout=timeout,
                metadata=metadata,
                wait=wait,
                factory=cls,
            )
        except BaseException:
            await session.aclose()
            raise
        capsule._owns_session = True
        return capsule

    @classmethod
    async def connect(
        cls, capsule_id: str, *, api_key: str | None = None, base_url: str | None = None
    ) -> AsyncCapsule:
        """Attach to an existing capsule with a client of its own (official SDK form)."""
        session = Session.from_options(api_key=api_key, base_url=base_url)
        try:
            capsule = await connect_capsule(session, capsule_id)
        except BaseException:
            await session.aclose()
            raise
        capsule._owns_session = True
        return capsule

    @classmethod
    async def list(
        cls, *, api_key: str | None = None, base_url: str | None = None
    ) -> builtins.list[Capsule]:
        """The team's capsules (a one-off client; prefer ``client.capsules.list()``)."""
        session = Session.from_options(api_key=api_key, base_url=base_url)
        try:
            return await session.capsules.list()
        finally:
            await session.aclose()

    async def __aenter__(self) -> AsyncCapsule:
        """The block is the capsule's scope: streams iterated directly and kernel
        connections run in it and end with it."""
        if self._services is None:
            services = anyio.create_task_group()
            await services.__aenter__()
            self._own_services = self._services = services
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """Destroy the capsule (unless detached) and close a client it owns; shielded
        and bounded like every clean-up."""
        services, self._own_services = self._own_services, None
        try:
            if services is not None:
                self._services = None
                services.cancel_scope.cancel()
                try:
                    await services.__aexit__(None, None, None)
                except BaseException:
                    if exc_val is None:
                        raise
                    # the block's own exception goes on unchanged (not a cancellation
                    # that an enclosing deadline raised while the helpers ended)
        finally:
            if not self.detached:
                await destroy_quietly(self._session, self.capsule_id)
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_TIMEOUT):
                await self.aclose()

    async def aclose(self) -> None:
        """Close the connections this capsule owns (from ``create``/``connect``); the
        capsule itself is left as it is."""
        if self._owns_session:
            await self._session.aclose()

    async def _get_info(self) -> Capsule:
        """Fetch the capsule's current description (and keep it in ``info``)."""
        self.info = await self._session.capsules.get(self.capsule_id)
        return self.info

    get_info = DualMethod(_get_info, get_info_by_id)

    async def is_running(self) -> bool:
        return (await self._get_info()).status is CapsuleStatus.RUNNING

    async def wait_ready(self, timeout: float | None = READY_WAIT) -> Capsule:
        """Wait until the capsule runs (polling with backoff); see :func:`wait_for_status`.

        Raises :class:`WrennTimeoutError` (a ``TimeoutError``) when it does not run in
        time and :class:`WrennCapsuleFailedError` (a ``RuntimeError``) when it failed.
        """
        found = await wait_for_status(
            self._session.capsules, self.capsule_id, CapsuleStatus.RUNNING, timeout=timeout
        )
        assert found is not None
        self.info = found
        return found

    async def ping(self) -> None:
        """Reset the inactivity timer."""
        await self._session.capsules.ping(self.capsule_id)

    async def _pause(self, wait: bool = False, *, timeout: float | None = DEFAULT_WAIT) -> Capsule:
        """Pause the capsule; with ``wait``, until it is paused."""
        self.info = await self._session.capsules.pause(self.capsule_id)
        if wait:
            found = await wait_for_status(
                self._session.capsules, self.capsule_id, CapsuleStatus.PAUSED, timeout=timeout
            )
            assert found is not None
            self.info = found
        return self.info

    pause = DualMethod(_pause, pause_by_id)

    async def _resume(self, wait: bool = False, *, timeout: float | None = DEFAULT_WAIT) -> Capsule:
        """Resume the capsule; with ``wait``, until it runs."""
        self.info = await self._session.capsules.resume(self.capsule_id)
        if wait:
            await self.wait_ready(timeout)
        return self.info

    resume = DualMethod(_resume, resume_by_id)

    async def _destroy(self, wait: bool = False, *, timeout: float | None = DEFAULT_WAIT) -> None:
        """Destroy the capsule; with ``wait``, until it is stopped (or gone)."""
        await self._session.capsules.destroy(self.capsule_id)
        if wait:
            await wait_for_status(
                self._session.capsules,
                self.capsule_id,
                CapsuleStatus.STOPPED,
                timeout=timeout,
                missing_ok=True,
                fail_on=(CapsuleStatus.ERROR,),
            )

    destroy = DualMethod(_destroy, destroy_by_id)

    async def create_snapshot(
        self, name: str | None = None, overwrite: bool = False
    ) -> PendingSnapshot:
        """Snapshot the capsule as a template; see :meth:`AsyncSnapshots.create`."""
        return await self._session.snapshots.create(self.capsule_id, name=name, overwrite=overwrite)

    # --- code runner (capsules running Jupyter, e.g. the code-runner-beta template) ---

    async def run_code(
        self,
        code: str,
        language: str = "python",
        timeout: float | None = 30.0,
        jupyter_timeout: float | None = 30.0,
        on_result: Callable[[Result], Awaitable[None] | None] | None = None,
        on_stdout: Callable[[str], Awaitable[None] | None] | None = None,
        on_stderr: Callable[[str], Awaitable[None] | None] | None = None,
        on_error: Callable[[ExecutionError], Awaitable[None] | None] | None = None,
        *,
        context: CodeContext | str | None = None,
    ) -> Execution:
        """Run ``code`` in the capsule's Jupyter kernel; see :meth:`AsyncCodeRunner.run`."""
        return await self.code.run(
            code,
            language=language,
            context=context,
            timeout=timeout,
            jupyter_timeout=jupyter_timeout,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
            on_result=on_result,
            on_error=on_error,
        )

    async def create_code_context(
        self, *, language: str = "python", cwd: str | None = None
    ) -> CodeContext:
        """A new kernel with state of its own; see :meth:`AsyncCodeRunner.create_context`."""
        return await self.code.create_context(language=language, cwd=cwd)

    async def list_code_contexts(self) -> builtins.list[CodeContext]:
        """The kernels running in the capsule."""
        return await self.code.list_contexts()

    async def restart_code_context(self, context: CodeContext | str | None = None) -> None:
        """Restart a kernel (the default one when none is given); its state is lost."""
        await self.code.restart_context(context)

    async def remove_code_context(self, context: CodeContext | str) -> None:
        """Shut a kernel down."""
        await self.code.remove_context(context)

    def get_url(self, port: int) -> str:
        """The URL of ``port`` inside the capsule, through the port proxy."""
        config = self._session.config
        scheme = "http" if config.base_url.startswith("http://") else "https"
        return f"{scheme}://{port}-{self.capsule_id}.{config.proxy_domain}"

    async def browser_url(self, port: int, path: str = "/") -> str:
        """A URL of ``port`` inside the capsule that a browser can open (not in the
        official SDK).

        A browser cannot send the API key the port proxy asks for. A local server
        (``wrenn_local``) gives a short-lived link instead: its token (valid 10 minutes,
        usable once) is traded by the proxy for a cookie that opens this capsule's port
        only, and the browser is redirected to the same URL without it. Against a server
        without that extension (the Wrenn cloud) this is :meth:`get_url` plus ``path``.

        Treat the URL as a credential for that port until it is used or expires.
        """
        if not path.startswith("/"):
            raise WrennValidationError(f"path must start with '/', got {path!r}")
        token = await self._session.capsules.browser_token(self.capsule_id, port)
        url = self.get_url(port) + path
        if token is None:
            return url
        return f"{url}{'&' if '?' in path else '?'}wrenn_token={token}"

    def pty(
        self,
        cmd: str = "/bin/bash",
        args: Sequence[str] | None = None,
        cols: int = 80,
        rows: int = 24,
        envs: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> AbstractAsyncContextManager[AsyncPtySession]:
        """An interactive terminal (see :class:`AsyncPtySession`). Leaving the block ends
        its process, and every job its shell started (its whole session), unless
        ``term.detach()`` was called: then it keeps running, and
        :meth:`pty_connect` reattaches by its tag."""
        return open_pty(
            self._session.http,
            self.capsule_id,
            cmd=cmd,
            args=args,
            cols=cols,
            rows=rows,
            envs=envs,
            cwd=cwd,
        )

    def pty_connect(self, tag: str) -> AbstractAsyncContextManager[AsyncPtySession]:
        """Reattach to a running terminal by its tag (output from now on)."""
        return open_pty(self._session.http, self.capsule_id, tag=tag)

    def use_kernel(self, kernel: str) -> None:
        """Run code with another kernelspec from now on (a fresh default context)."""
        self.code = AsyncCodeRunner(
            self._session,
            self.capsule_id,
            kernel=kernel,
            template=self.info.template,
            owner=lambda: self._services,
        )

    def detach(self) -> None:
        """Keep the capsule when the ``client.capsule(...)`` block ends."""
        self.detached = True


async def create_shielded(session: Session, **fields: Any) -> Capsule:
    """Create a capsule, shielded from cancellation.

    A cancellation arriving while the request is in flight would leave a capsule on the
    server whose ID we never learn. The shield is bounded by the client's own deadline;
    callers deliver a pending cancellation right after (``anyio.lowlevel.checkpoint``),
    once they hold the ID and can clean up. The capsule's metadata records its owner
    (this process; see :mod:`wrenn._owner`) next to the caller's own keys.
    """
    fields["metadata"] = with_owner(fields.get("metadata"), session.owner)
    with anyio.CancelScope(shield=True):
        capsule = await session.capsules.create(**fields)
    return capsule  # noqa: RET504 - mypy cannot see that the shield never swallows errors


async def create_capsule(
    session: Session,
    *,
    template: str | None,
    vcpus: int | None,
    memory_mb: int | None,
    timeout: int | None,
    metadata: Mapping[str, str] | None,
    wait: bool,
    factory: Callable[[Session, Capsule], C],
) -> C:
    """Create a capsule that no scope owns (the official constructors); on any failure
    or cancellation after the create, it is destroyed again."""
    info = await create_shielded(
        session,
        template=template,
        vcpus=vcpus,
        memory_mb=memory_mb,
        timeout_sec=timeout,
        metadata=metadata,
    )
    capsule = factory(session, info)
    try:
        await anyio.lowlevel.checkpoint()
        if wait:
            await capsule.wait_ready()
    except BaseException:
        await destroy_quietly(session, capsule.capsule_id)
        raise
    return capsule


async def connect_capsule(
    session: Session, capsule_id: str, *, ready_timeout: float | None = DEFAULT_WAIT
) -> AsyncCapsule:
    """Attach to an existing capsule: resumed (after a pause in progress) and waited for."""
    info = await session.capsules.get(capsule_id)
    capsule = AsyncCapsule(session, info)
    if info.status is CapsuleStatus.PAUSING:
        await wait_for_status(
            session.capsules, capsule_id, CapsuleStatus.PAUSED, timeout=ready_timeout
        )
        info = await session.capsules.get(capsule_id)
    if info.status is CapsuleStatus.PAUSED:
        await session.capsules.resume(capsule_id)
    if info.status is not CapsuleStatus.RUNNING:
        await capsule.wait_ready(ready_timeout)
    return capsule


async def destroy_quietly(session: Session, capsule_id: str) -> None:
    """Destroy a capsule in a shielded, bounded clean-up: cancellation cannot leak it, an
    unresponsive server cannot hold the caller forever, and a failure is logged."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_TIMEOUT):
        try:
            await session.capsules.destroy(capsule_id)
        except WrennNotFoundError:
            log.debug("capsule %s was already gone", capsule_id)
        except WrennError as exc:
            log.warning("could not destroy capsule %s: %s", capsule_id, exc)


def keepalive_interval(keepalive: bool | float, ttl: int) -> float:
    """Seconds between pings: as asked, else a third of the TTL (at most a minute)."""
    if keepalive is not True and isinstance(keepalive, int | float) and keepalive > 0:
        return float(keepalive)
    return min(60.0, ttl / 3) if ttl > 0 else 60.0


async def _keep_alive(capsule: AsyncCapsule, interval: float) -> None:
    """Ping within the inactivity TTL so the capsule is not auto-paused while in use."""
    while True:
        await anyio.sleep(interval)
        try:
            await capsule.ping()
        except WrennError as exc:  # paused or gone: the user's next call will say so
            log.info("keepalive ping of %s failed: %s", capsule.capsule_id, exc)


@asynccontextmanager
async def capsule_scope(
    session: Session,
    *,
    template: str | None = None,
    vcpus: int | None = None,
    memory_mb: int | None = None,
    disk_size_mb: int | None = None,
    timeout: int | None = None,
    metadata: Mapping[str, str] | None = None,
    ready_timeout: float | None = DEFAULT_WAIT,
    keepalive: bool | float = False,
    network: bool | None = None,
) -> AsyncIterator[AsyncCapsule]:
    """The scope behind ``client.capsule(...)``: create (shielded), wait until running,
    run the block with the capsule's service task group, destroy (shielded, bounded)."""
    info = await create_shielded(
        session,
        template=template,
        vcpus=vcpus,
        memory_mb=memory_mb,
        disk_size_mb=disk_size_mb,
        timeout_sec=timeout,
        metadata=metadata,
        network=network,
    )
    capsule = AsyncCapsule(session, info)
    try:
        await anyio.lowlevel.checkpoint()
        await capsule.wait_ready(ready_timeout)
        async with helper_tasks() as services:  # the body's exception leaves bare
            if keepalive:
                interval = keepalive_interval(keepalive, capsule.info.timeout_sec)
                services.start_soon(_keep_alive, capsule, interval)
            # long-lived connections (kernel WebSockets, streams iterated directly) run
            # in the scope's task group
            capsule._services = services
            try:
                yield capsule
            finally:
                capsule._services = None
    finally:
        if not capsule.detached:
            await destroy_quietly(session, capsule.capsule_id)
