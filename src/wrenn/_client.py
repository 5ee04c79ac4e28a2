"""``AsyncWrennClient``: configuration, the HTTP transport and the REST resources."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Self, TypeVar, final

from ._capsule import AsyncCapsule, capsule_scope, connect_capsule
from ._config import ClientConfig, ClientTimeout
from ._fanout import fan_out
from ._pool import AsyncCapsulePool, open_pool
from ._session import Session
from ._transport.http import httpx
from ._transport.tls import Verify

__all__ = ["AsyncWrennClient"]

T = TypeVar("T")
R = TypeVar("R")


DEFAULT_TIMEOUT = 30.0  # seconds per HTTP phase when the caller gives none


@final
class AsyncWrennClient:
    """The async entry point of the SDK; runs unchanged under asyncio and trio.

    Args:
        api_key: The team API key (``wrn_...``); defaults to ``WRENN_API_KEY``.
        token: A user JWT sent as ``Authorization: Bearer``; defaults to ``WRENN_TOKEN``.
            Needed only for account routes (API keys, hosts). When both are set the API
            key authenticates capsule routes.
        base_url: The API root; defaults to ``WRENN_BASE_URL``, then
            ``https://app.wrenn.dev/api``. Given with or without ``/api``.
        proxy_domain: Domain of the capsule port proxy; defaults to
            ``WRENN_PROXY_DOMAIN``, then derived from the base URL.
        timeout: Deadline in seconds for one call (all retries included); ``None``
            (the default) means 30. An ``httpx.Timeout`` (the official SDK's form) is
            taken as it is: its ``connect`` is ``connect_timeout``, the longest of its
            other phases the deadline (``None`` in any of them: no limit).
        connect_timeout: Deadline for opening one connection; ``None`` means no limit.
        max_retries: Extra attempts for calls that are safe to repeat.
        verify: TLS verification: ``True`` (system trust), ``False``, or an
            :class:`ssl.SSLContext` of your own.
        http_transport: An httpx transport to use instead of the network (testing).
        ping_interval: Liveness of every WebSocket (streams, terminals, code runs): ping
            after this many seconds with nothing received; ``None`` turns it off.
        ping_timeout: Seconds to wait for an answer to that ping before the connection
            fails with :class:`WrennConnectionError` (a peer gone without FIN or RST).
        binary_frames: Offer binary output frames on exec and attach streams (the
            ``wrenn.output.v1`` WebSocket subprotocol): a server that accepts the offer
            (wrenn_local) sends stdout/stderr as raw bytes instead of JSON text, so the
            events also carry the exact bytes (``event.raw``); any other server (the
            cloud, an older wrenn_local) ignores it and the stream stays JSON. Defaults
            to ``WRENN_BINARY_FRAMES`` (``0``/``false``/``no``/``off`` turn it off),
            then on. See docs/wire.md.

    Credentials are checked before the first call that needs them; a missing one raises
    :class:`WrennConfigurationError` naming the variable to set. They never appear in
    ``repr()``, logs or exception messages.

    Use it as an async context manager (``async with AsyncWrennClient() as client:``) or
    call :meth:`aclose` when done; either way the connection pool is closed, also on
    cancellation (the close is shielded and bounded).
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
    ) -> None:
        self._session = Session.from_options(
            api_key=api_key,
            token=token,
            base_url=base_url,
            proxy_domain=proxy_domain,
            timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
            connect_timeout=connect_timeout,
            max_retries=max_retries,
            verify=verify,
            http_transport=http_transport,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            binary_frames=binary_frames,
        )
        self._config = self._session.config
        self.capsules = self._session.capsules
        self.snapshots = self._session.snapshots
        self.events = self._session.events
        self.auth = self._session.auth
        self.api_keys = self._session.api_keys
        self.hosts = self._session.hosts
        self.processes = self._session.processes
        self.files = self._session.files

    @property
    def config(self) -> ClientConfig:
        """The resolved configuration (credentials hidden in its repr)."""
        return self._config

    @property
    def base_url(self) -> str:
        return self._config.base_url

    @property
    def proxy_domain(self) -> str:
        return self._config.proxy_domain

    @property
    def http(self) -> httpx.AsyncClient:
        """The underlying httpx client (advanced use; its headers carry no credential)."""
        return self._session.http.client

    def __repr__(self) -> str:
        auth = "api_key" if self._config.api_key else "token" if self._config.token else "none"
        state = "closed" if self._session.closed else "open"
        return f"<AsyncWrennClient base_url={self._config.base_url!r} auth={auth} {state}>"

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
    ) -> AbstractAsyncContextManager[AsyncCapsule]:
        """A capsule for the duration of an ``async with`` block::

            async with client.capsule(template="minimal-ubuntu") as cap:
                result = await cap.commands.run("echo hi")

        Creates the capsule, waits until it runs (``ready_timeout``), and destroys it when
        the block ends — normally, by an exception or by cancellation. The destroy is
        shielded from cancellation and bounded (30 s). ``cap.detach()`` keeps the capsule.
        ``timeout`` is the inactivity auto-pause TTL in seconds (0 or None: never).
        ``keepalive=True`` (or a number of seconds) pings the capsule in the background,
        within its TTL, for as long as the block runs. ``network=False`` asks for a capsule
        without outbound network (a ``wrenn_local`` extension; None: the server's default,
        and nothing is sent).
        """
        return capsule_scope(
            self._session,
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

    def pool(self, size: int, **capsule: Any) -> AbstractAsyncContextManager[AsyncCapsulePool]:
        """``size`` warm capsules, reused for many small jobs::

            async with client.pool(4, template="minimal-ubuntu") as pool:
                results = await pool.map(job, items)

        Capsules are created together on entry and destroyed on exit (also on error and
        cancellation). A job gets a capsule to itself while it runs; files and processes
        it leaves behind are seen by later jobs on the same capsule.
        """
        return open_pool(self._session, size, capsule)

    async def connect(self, capsule_id: str, *, ready_timeout: float | None = 60.0) -> AsyncCapsule:
        """Attach to an existing capsule (resumed and waited for if paused).

        The capsule is not destroyed by this client; call ``destroy()`` when done.
        """
        return await connect_capsule(self._session, capsule_id, ready_timeout=ready_timeout)

    async def map(
        self,
        fn: Callable[[AsyncCapsule, T], Awaitable[R]],
        items: Iterable[T],
        *,
        concurrency: int = 8,
        capsule: Mapping[str, Any] | None = None,
        creation_rate: float | None = None,
        retries: int = 0,
        return_exceptions: bool = False,
        on_progress: Callable[[int, int], Any] | None = None,
    ) -> list[Any]:
        """Run ``await fn(capsule, item)`` for every item, each in a fresh capsule.

        At most ``concurrency`` capsules exist at once and at most ``creation_rate`` are
        created per second (a 429's ``Retry-After`` slows every job). Transient failures
        (429, 503, connection, timeout, a capsule that failed to start) are retried up to
        ``retries`` times. Results come back in input order. If any job failed, raises
        :class:`WrennFanOutError` (an ``ExceptionGroup``) of the failures after the others
        finished — or, with ``return_exceptions=True``, puts each exception in its place.
        ``capsule`` holds keyword arguments for :meth:`capsule` (template, vcpus, ...).

        Cancelling the call cancels every job and destroys every capsule it created.
        """
        return await fan_out(
            self._session,
            fn,
            items,
            concurrency=concurrency,
            capsule=capsule,
            creation_rate=creation_rate,
            retries=retries,
            return_exceptions=return_exceptions,
            on_progress=on_progress,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (shielded, at most 5 s). Safe to call twice."""
        await self._session.aclose()
