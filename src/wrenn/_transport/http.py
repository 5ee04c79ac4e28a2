"""HTTP transport: one httpx client per SDK client, auth, deadlines, retries, errors.

Every call has a deadline (the client's ``timeout`` unless the call gives its own) that
bounds all of its attempts together; when it passes the call raises
:class:`WrennTimeoutError`. Idempotent requests are retried on transport failures and
on 429/503/504; any request is retried when the connection could not be made (its body
never left) or on 429 (the server refused before acting). A POST whose body may have
reached the server is never sent twice.

Cancellation: every wait (connect, send, receive, backoff sleep) is a checkpoint of the
caller's cancel scope; a cancelled call leaves no task behind and returns its connection
to the pool (or closes it).
"""

from __future__ import annotations

import json
import logging
import math
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, Literal, final
from urllib.parse import quote

import anyio
import httpcore2
import httpx2 as httpx

try:  # an httpx2 internal: without it, every request goes through the client
    from httpx2._transports.default import map_httpcore_exceptions

    _DIRECT = True
except ImportError:  # pragma: no cover - depends on the httpx2 version
    _DIRECT = False

from .._config import CLIENT_DEFAULT, ClientConfig, Timeout
from .._exceptions import (
    WrennConnectionError,
    WrennProtocolError,
    WrennTimeoutError,
    WrennTransportError,
    WrennValidationError,
    error_from_response,
)
from .._protocol.http1 import HTTP1Error, encode_request
from .._version import __version__
from .direct import DirectWriteBackend
from .errors import map_transport_errors, not_sent
from .fast import AsyncFastPool, SyncFastPool
from .retry import IDEMPOTENT_METHODS, RetryPolicy, parse_retry_after
from .tls import Verify, ssl_context

# wsproto is loaded with the first WebSocket, not with the SDK.
if TYPE_CHECKING:
    from .websocket import WebSocket

__all__ = [
    "AuthMode",
    "BodyChunks",
    "HTTPTransport",
    "api_path",
    "check_chunk_size",
    "httpx",
    "response_json",
]

log = logging.getLogger("wrenn.http")

AuthMode = Literal["api", "bearer", "none"]
USER_AGENT: Final = f"wrenn-python/{__version__}"

# httpcore2 reads an answer 64 KiB at a time, and every read costs a deadline scope, an
# h11 parse and a wake-up of the loop: bulk bodies paid per read. A read returns what the
# socket holds, so a larger limit changes nothing for small answers and cuts the reads of a
# download by up to 4x. (A class constant of httpcore2, only ever raised here.)
READ_SIZE: Final = 256 * 1024
if httpcore2.AsyncHTTP11Connection.READ_NUM_BYTES < READ_SIZE:
    httpcore2.AsyncHTTP11Connection.READ_NUM_BYTES = READ_SIZE
if httpcore2.HTTP11Connection.READ_NUM_BYTES < READ_SIZE:  # the sync API's (wrenn._sync.bulk)
    httpcore2.HTTP11Connection.READ_NUM_BYTES = READ_SIZE


def direct_write_transport(
    ssl_context: ssl.SSLContext, limits: httpx.Limits
) -> httpx.AsyncHTTPTransport:
    """httpx2's transport, its pool on :class:`DirectWriteBackend` (uploads sent from the
    caller's buffers; see :mod:`wrenn._transport.direct`)."""
    transport = httpx.AsyncHTTPTransport(verify=ssl_context, limits=limits, trust_env=False)
    pool = transport._pool
    if isinstance(pool, httpcore2.AsyncConnectionPool):
        pool._network_backend = DirectWriteBackend()
    return transport


# the largest request body the fast path sends in one buffer
FAST_BODY: Final = 64 * 1024

# JSON request bodies as httpx encodes them (one encoder, not one per call)
_JSON_BODY: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def api_path(*segments: str) -> str:
    """Join ``/v1`` with URL-quoted segments; an empty segment is refused.

    Quoting each segment means an ID such as ``../x`` can never change which route is hit.
    """
    parts = ["v1"]
    for seg in segments:
        if not isinstance(seg, str) or not seg:
            raise WrennValidationError(f"an identifier in the path is empty or not text: {seg!r}")
        parts.append(quote(seg, safe=""))
    return "/" + "/".join(parts)


def check_chunk_size(chunk_size: int) -> int:
    """A streamed read's ``chunk_size``: an int of 1 or more (not a bool), else
    :class:`WrennValidationError` (a ``ValueError``)."""
    value: object = chunk_size
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WrennValidationError(
            f"chunk_size must be a whole number of bytes, 1 or more, not {value!r}"
        )
    return value


@final
class BodyChunks:
    """The body of a streamed answer in chunks as they arrive, each at most
    ``chunk_size`` bytes; a body that breaks off raises :class:`WrennConnectionError`
    instead of ending quietly.

    Chunks are handed on as the socket delivers them (no re-chunking buffer that copies
    every byte); only a piece larger than ``chunk_size`` is split.
    """

    def __init__(self, response: httpx.Response, chunk_size: int, context: str) -> None:
        check_chunk_size(chunk_size)
        self._chunks = response.aiter_bytes()
        self._chunk_size = chunk_size
        self._split: deque[bytes] = deque()
        self._context = context
        self._closed = False

    def __aiter__(self) -> BodyChunks:
        return self

    async def __anext__(self) -> bytes:
        if self._closed:  # not a quiet end: that would be a short body
            raise WrennConnectionError(
                "this download is closed: read its chunks inside the"
                f" `async with ... read_stream(...)` block ({self._context})"
            )
        if self._split:
            return self._split.popleft()
        with map_transport_errors(self._context):
            chunk = await anext(self._chunks)
        size = self._chunk_size
        if len(chunk) <= size:
            return chunk
        view = memoryview(chunk)
        self._split.extend(bytes(view[i : i + size]) for i in range(size, len(chunk), size))
        return bytes(view[:size])

    def take_ready(self, limit: int) -> list[bytes]:
        """Up to ``limit`` chunks already received, without waiting (for batching)."""
        if self._closed:
            return []
        return [self._split.popleft() for _ in range(min(limit, len(self._split)))]

    async def aclose(self) -> None:
        """Stop reading (shielded and bounded: safe in a ``finally``); reading on then
        raises :class:`WrennConnectionError`."""
        self._closed = True
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await self._chunks.aclose()


def response_json(response: httpx.Response, *, what: str) -> Any:
    """Decode a JSON answer; bad JSON becomes :class:`WrennProtocolError`."""
    try:
        return json.loads(response.content) if response.content else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise WrennProtocolError(f"the server's answer to {what} is not valid JSON") from exc


class HTTPTransport:
    """Owns the httpx client of one SDK client. Not part of the public API."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: Verify = True,
        max_connections: int = 100,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.config = config
        # one TLS context for REST, WebSockets and capsule ports
        self.ssl_context = ssl_context(verify)
        self.retry = retry or RetryPolicy(config.max_retries)
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self.own_transport = transport is None  # not a caller's (sync bulk may bypass it)
        if transport is None:
            transport = direct_write_transport(self.ssl_context, limits)
        self._client = httpx.AsyncClient(
            base_url=config.base_url,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout),
            limits=limits,
            transport=transport,
            verify=self.ssl_context,
            follow_redirects=False,
            trust_env=False,
        )
        # The connection pool behind the client, for requests that skip httpx's layers.
        self._pool = _plain_pool(self._client) if self.own_transport else None
        base = httpx.URL(config.base_url)
        self._origin = (base.raw_scheme, base.raw_host, base.port)
        self._prefix = base.raw_path.rstrip(b"/")
        self._default_headers = [
            (k.decode("latin-1").lower(), k, v)
            for k, v in [(b"Host", base.netloc), *self._client.headers.raw]
        ]
        # Small calls over plain http: one send, a lean parser (see wrenn._transport.fast)
        self._fast: AsyncFastPool | None = None
        self._sync_fast: SyncFastPool | None = None
        if self._pool is not None and base.scheme == "http":
            self._fast = AsyncFastPool(
                base.host,
                base.port or 80,
                connect_timeout=config.connect_timeout,
                max_connections=max_connections,
            )
            self._sync_fast = SyncFastPool(
                base.host, base.port or 80, connect_timeout=config.connect_timeout
            )

    def __repr__(self) -> str:
        return f"<HTTPTransport base_url={self.config.base_url!r}>"

    @property
    def client(self) -> httpx.AsyncClient:
        return self._client

    async def aclose(self) -> None:
        if self._fast is not None:
            self._fast.close()
        if self._sync_fast is not None:
            self._sync_fast.close()
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await self._client.aclose()

    def ws_url(self, path: str) -> str:
        """The ``ws://`` or ``wss://`` URL of an API path."""
        scheme, _, rest = self.config.base_url.partition("://")
        return ("wss" if scheme == "https" else "ws") + "://" + rest + path

    def websocket(
        self,
        url_or_path: str,
        *,
        headers: Mapping[str, str] | None = None,
        open_timeout: float | None = None,
        subprotocols: Sequence[str] = (),
    ) -> AbstractAsyncContextManager[WebSocket]:
        """A WebSocket for the duration of a block, with this client's TLS context.

        ``url_or_path`` is an API path (``/v1/...``, authenticated with the API key) or a
        full ``ws(s)://`` URL with its own ``headers`` (a capsule port). Opening is
        bounded by ``open_timeout`` (default: connect plus call timeout). Every
        WebSocket gets the client's liveness check: a ping after ``ping_interval``
        seconds of silence, and :class:`WrennConnectionError` when nothing answers it
        within ``ping_timeout``. ``subprotocols`` are offered on the upgrade; the
        server's choice is the WebSocket's ``subprotocol``.
        """
        if url_or_path.startswith("/"):
            url = self.ws_url(url_or_path)
            headers = {**self.config.auth_headers(), **(headers or {})}
        else:
            url = url_or_path
        from .websocket import connect_websocket  # wsproto on first use

        return connect_websocket(
            url,
            headers=headers,
            ssl_context=self.ssl_context,
            open_timeout=(
                self.config.connect_timeout + self.config.timeout
                if open_timeout is None
                else open_timeout
            ),
            ping_interval=self.config.ping_interval,
            ping_timeout=self.config.ping_timeout,
            subprotocols=subprotocols,
        )

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        json_body: Any = None,
        timeout: float,
    ) -> httpx.Response:
        """One attempt at a request to a full URL (a capsule port), answer read whole.

        Error statuses are returned, not raised (the caller knows what they mean there);
        transport failures raise their mapped :class:`WrennError`.
        """
        with map_transport_errors(f"{method} {url}"):
            return await self._client.request(
                method,
                url,
                headers=headers,
                json=json_body,
                timeout=httpx.Timeout(timeout, connect=self.config.connect_timeout),
            )

    def _headers(self, auth: AuthMode, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if auth == "api":
            headers.update(self.config.auth_headers())
        elif auth == "bearer":
            headers.update(self.config.bearer_headers())
        if extra:
            headers.update(extra)
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        files: Any = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: AuthMode = "api",
        timeout: Timeout = CLIENT_DEFAULT,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send a request and read its whole answer; raise the mapped error on 4xx/5xx.

        Args:
            timeout: Deadline in seconds for the whole call, all attempts included.
            idempotent: Override the method's idempotency (e.g. a POST that only reads).

        Raises:
            WrennTimeoutError: the deadline passed.
            WrennAPIError: the server answered with an error (a subclass per family).
            WrennConnectionError: the connection failed and retrying did not help.
        """
        method = method.upper()
        is_idempotent = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        request_headers = self._headers(auth, headers)
        context = f"{method} {path}"
        deadline = self.config.deadline(timeout)
        with anyio.move_on_after(deadline) as scope:
            return await self._attempts(
                method,
                path,
                context=context,
                idempotent=is_idempotent,
                json_body=json_body,
                params=params,
                content=content,
                files=files,
                data=data,
                headers=request_headers,
                read_timeout=deadline,
            )
        assert scope.cancelled_caught
        raise WrennTimeoutError(f"no complete answer within {deadline:g} s ({context})")

    async def _attempts(
        self,
        method: str,
        path: str,
        *,
        context: str,
        idempotent: bool,
        read_timeout: float,
        **kwargs: Any,
    ) -> httpx.Response:
        attempt = 0
        while True:
            try:
                with map_transport_errors(context, server=self.config.describe_server()):
                    response = await self._send_once(method, path, read_timeout, **kwargs)
            except (WrennTransportError, WrennTimeoutError) as exc:
                if not self._may_retry(exc, attempt, idempotent=idempotent):
                    raise
                log.debug("%s failed (%s), retrying", context, exc.code)
                await anyio.sleep(self.retry.delay(attempt))
                attempt += 1
                continue
            log.debug("%s -> %d", context, response.status_code)
            if response.status_code < 400:
                return response
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if attempt < self.retry.max_retries and self.retry.may_retry_status(
                method, response.status_code, idempotent=idempotent
            ):
                wait = self.retry.delay(attempt, retry_after)
                log.debug("%s -> %d, retrying in %.2fs", context, response.status_code, wait)
                await anyio.sleep(wait)
                attempt += 1
                continue
            raise error_from_response(
                response.status_code, response.content, retry_after=retry_after, context=context
            )

    def _may_retry(
        self, exc: WrennTransportError | WrennTimeoutError, attempt: int, *, idempotent: bool
    ) -> bool:
        """Whether a call that failed on the way is tried again (both the async and the
        blocking path): retries left, and either the request never left or it may be
        sent twice; a timeout only when the request never left (connect, pool) —
        waiting longer for an answer is the call deadline's job."""
        cause = exc.__cause__
        sent_maybe = not (isinstance(cause, Exception) and not_sent(cause))
        return not (
            attempt >= self.retry.max_retries
            or (sent_maybe and not idempotent)
            or (isinstance(exc, WrennTimeoutError) and sent_maybe)
        )

    async def _send_once(
        self, method: str, path: str, read_timeout: float, **kwargs: Any
    ) -> httpx.Response:
        content = kwargs["content"]
        if (
            self._pool is not None
            and kwargs["params"] is None
            and kwargs["files"] is None
            and kwargs["data"] is None
            and (content is None or isinstance(content, bytes))
            and path.startswith("/")
            and path.isascii()
        ):
            if self._fast is not None and (content is None or len(content) <= FAST_BODY):
                return await self._send_fast(
                    method, path, kwargs["json_body"], content, kwargs["headers"]
                )
            return await self._send_direct(
                method, path, read_timeout, kwargs["json_body"], content, kwargs["headers"]
            )
        return await self._client.request(
            method,
            path,
            json=kwargs["json_body"],
            params=kwargs["params"],
            content=kwargs["content"],
            files=kwargs["files"],
            data=kwargs["data"],
            headers=kwargs["headers"],
            timeout=httpx.Timeout(
                None if math.isinf(read_timeout) else read_timeout,
                connect=self.config.connect_timeout,
            ),
        )

    async def _send_direct(
        self,
        method: str,
        path: str,
        read_timeout: float,
        json_body: Any,
        content: bytes | None,
        headers: Mapping[str, str],
    ) -> httpx.Response:
        """One request straight through the client's connection pool (httpcore2), read
        whole: the bytes on the wire are the ones httpx would send, without the
        per-call cost of its URL merging, request and response models, auth and
        redirect layers — most of a small call's client CPU. Failures are httpx's own
        exceptions, as from the client."""
        body, raw = self._wire_request(method, json_body, content, headers)
        read = None if math.isinf(read_timeout) else read_timeout
        scheme, host, port = self._origin
        request = httpcore2.Request(
            method.encode("ascii"),
            httpcore2.URL(scheme=scheme, host=host, port=port, target=self._prefix + path.encode()),
            headers=raw,
            content=body,
            extensions={
                "timeout": {
                    "connect": self.config.connect_timeout,
                    "read": read,
                    "write": read,
                    "pool": read,
                }
            },
        )
        assert self._pool is not None
        with map_httpcore_exceptions():
            answer = await self._pool.handle_async_request(request)
            try:
                data = b"".join([chunk async for chunk in answer.aiter_stream()])
            finally:
                await answer.aclose()
        return _response(answer.status, answer.headers, data)

    def _wire_request(
        self, method: str, json_body: Any, content: bytes | None, headers: Mapping[str, str]
    ) -> tuple[bytes | None, list[tuple[bytes, bytes]]]:
        """The body and headers of a request as httpx would send them."""
        body = content
        if json_body is not None:
            body = _JSON_BODY.encode(json_body).encode()
        ours = {name.lower() for name in headers}
        raw = [(k, v) for low, k, v in self._default_headers if low not in ours]
        raw += [(k.encode("ascii"), v.encode("ascii")) for k, v in headers.items()]
        if body is not None:
            raw.append((b"Content-Length", str(len(body)).encode()))
            if json_body is not None:
                raw.append((b"Content-Type", b"application/json"))
        elif method in ("POST", "PUT", "PATCH"):
            raw.append((b"Content-Length", b"0"))
        return body, raw

    def _fast_request(
        self,
        method: str,
        path: str,
        json_body: Any,
        content: bytes | None,
        headers: Mapping[str, str],
    ) -> bytes:
        body, raw = self._wire_request(method, json_body, content, headers)
        try:
            return encode_request(method.encode("ascii"), self._prefix + path.encode(), raw, body)
        except HTTP1Error as exc:
            raise httpx.LocalProtocolError(str(exc)) from exc

    async def _send_fast(
        self,
        method: str,
        path: str,
        json_body: Any,
        content: bytes | None,
        headers: Mapping[str, str],
    ) -> httpx.Response:
        """One small request over the fast path (see :mod:`wrenn._transport.fast`): the
        bytes httpx would send, in one buffer; bounded by the caller's deadline."""
        assert self._fast is not None
        request = self._fast_request(method, path, json_body, content, headers)
        answer = await self._fast.exchange(request, head=method == "HEAD")
        return _response(answer.status, answer.headers, answer.body)

    def request_blocking(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        timeout: Timeout = CLIENT_DEFAULT,
        idempotent: bool | None = None,
    ) -> httpx.Response | None:
        """The sync API's form of :meth:`request` for a small JSON call, done blocking in
        the caller's thread: the same headers, deadline, retries and errors. ``None``
        when this transport has no fast path (a caller's transport, or https): then the
        call goes through the portal as before.

        ``KeyboardInterrupt`` in the caller's thread abandons the call and closes its
        connection (never reused half-read)."""
        pool = self._sync_fast
        if pool is None:
            return None
        method = method.upper()
        is_idempotent = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        context = f"{method} {path}"
        deadline = self.config.deadline(timeout)
        end = time.monotonic() + deadline
        request = self._fast_request(method, path, json_body, None, self._headers("api", None))
        attempt = 0
        while True:
            try:
                with map_transport_errors(context, server=self.config.describe_server()):
                    answer = pool.exchange(request, end=end, head=method == "HEAD")
            except (WrennTransportError, WrennTimeoutError) as exc:
                if isinstance(exc, WrennTimeoutError) and time.monotonic() >= end:
                    raise WrennTimeoutError(
                        f"no complete answer within {deadline:g} s ({context})"
                    ) from exc
                if not self._may_retry(exc, attempt, idempotent=is_idempotent):
                    raise
                log.debug("%s failed (%s), retrying", context, exc.code)
                _sleep_until(self.retry.delay(attempt), end, deadline, context)
                attempt += 1
                continue
            status = answer.status
            log.debug("%s -> %d", context, status)
            response = _response(status, answer.headers, answer.body)
            if status < 400:
                return response
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if attempt < self.retry.max_retries and self.retry.may_retry_status(
                method, status, idempotent=is_idempotent
            ):
                _sleep_until(self.retry.delay(attempt, retry_after), end, deadline, context)
                attempt += 1
                continue
            raise error_from_response(
                status, response.content, retry_after=retry_after, context=context
            )

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        content: Any = None,
        headers: Mapping[str, str] | None = None,
        auth: AuthMode = "api",
        open_timeout: Timeout = CLIENT_DEFAULT,
        read_timeout: float | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """Open a streaming answer; its body is read by the caller inside the block.

        ``open_timeout`` bounds getting the status line and headers (default: the client
        timeout); ``read_timeout`` bounds each wait for more body (``None`` = no limit,
        for event streams). Error statuses are read (bounded) and raised as mapped
        errors. Leaving the block closes the answer, also on cancellation.
        """
        method = method.upper()
        context = f"{method} {path}"
        request_headers = self._headers(auth, headers)
        opening = self.config.deadline(open_timeout)
        request = self._client.build_request(
            method,
            path,
            json=json_body,
            params=params,
            content=content,
            headers=request_headers,
            timeout=httpx.Timeout(read_timeout, connect=self.config.connect_timeout),
        )
        response: httpx.Response | None = None
        with map_transport_errors(context, server=self.config.describe_server()):
            with anyio.move_on_after(opening) as scope:
                response = await self._client.send(request, stream=True)
            if scope.cancelled_caught or response is None:
                raise WrennTimeoutError(f"no answer within {opening:g} s ({context})")
        try:
            if response.status_code >= 400:
                body = b""
                with (
                    map_transport_errors(context, server=self.config.describe_server()),
                    anyio.move_on_after(opening),
                ):
                    body = await response.aread()
                raise error_from_response(
                    response.status_code,
                    body,
                    retry_after=parse_retry_after(response.headers.get("Retry-After")),
                    context=context,
                )
            yield response
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await response.aclose()


def _response(status: int, headers: list[tuple[bytes, bytes]], data: bytes) -> httpx.Response:
    """An httpx response read whole, as the client would have made it."""
    response = httpx.Response(status, headers=headers, stream=httpx.ByteStream(data))
    if any(name.lower() == b"content-encoding" for name, _ in headers):
        response.read()  # decoded as the client would
    else:
        response._content = data  # as read() would set it, without its decoder walk
    return response


def _sleep_until(wait: float, end: float, deadline: float, context: str) -> None:
    """The sync retry's backoff; past the call's deadline it is a timeout."""
    if time.monotonic() + wait >= end:
        raise WrennTimeoutError(f"no complete answer within {deadline:g} s ({context})")
    time.sleep(wait)


def _plain_pool(client: httpx.AsyncClient) -> httpcore2.AsyncConnectionPool | None:
    """The httpcore2 pool of a client with httpx's own transport and no proxy or mount;
    None otherwise (requests then go through the client)."""
    inner = getattr(client, "_transport", None)
    if not _DIRECT:
        return None
    if type(inner) is not httpx.AsyncHTTPTransport or getattr(client, "_mounts", None):
        return None
    pool = getattr(inner, "_pool", None)
    return pool if type(pool) is httpcore2.AsyncConnectionPool else None
