"""Bulk file transfers of the sync API, done in the caller's thread.

The portal hands every call to the event-loop thread; for a transfer of many megabytes
that costs wake-ups of the loop around each non-blocking send and receive, and a thread
hop per batch. Here a sync client's uploads and downloads (``files.read``, ``write``,
``read_stream``, ``write_stream`` and the capsule forms) use a blocking httpx2 client
instead, owned by the sync :class:`~wrenn.WrennClient`: one ``sendall``/``recv`` per
chunk in the calling thread, as the official sync SDK does. Streamed uploads and
downloads over plain HTTP skip httpx2 too: a raw blocking socket, one ``sendmsg`` per
chunk from the caller's buffer (:func:`wrenn._transport.upload.send_upload_blocking`),
one ``recv`` straight into each piece handed over
(:meth:`wrenn._transport.offload.Offload.download_blocking`).

It shares the async client's configuration (base URL, credentials, TLS context,
timeouts, retry policy) and its error mapping: every failure is the same
:class:`~wrenn.WrennError` subclass the async path raises. A ``KeyboardInterrupt`` in the
calling thread (Ctrl-C, or raised by a chunk source) ends the transfer there and closes
its connection; closing the sync client closes the pool. A client built on a transport
of the caller's own (``http_transport=``) has no bulk client: its transfers go through
the portal, over that transport.
"""

from __future__ import annotations

import json
import math
import threading
import time
import weakref
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Final, final

from .._config import CLIENT_DEFAULT, Timeout
from .._exceptions import (
    WrennTimeoutError,
    WrennTransportError,
    WrennValidationError,
    error_from_response,
)
from .._resources.files import check_path, stream_framing, write_parts
from .._text import upload_chunk
from .._transport.errors import map_transport_errors, not_sent
from .._transport.http import USER_AGENT, HTTPTransport, api_path, check_chunk_size, httpx
from .._transport.offload import offload_for
from .._transport.retry import parse_retry_after

__all__ = ["SyncBulk", "bulk_for", "close_bulk", "open_bulk"]

# A streamed upload is bounded by an hour, each wait of a streamed download by a minute
# (the async path's bounds).
UPLOAD_DEADLINE: Final = 3600.0
READ_WAIT: Final = 60.0

_BULK: weakref.WeakKeyDictionary[HTTPTransport, SyncBulk] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def open_bulk(http: HTTPTransport) -> SyncBulk | None:
    """The bulk client of a sync client's transport (made now), or ``None`` when the
    transport is the caller's own."""
    if not http.own_transport:
        return None
    with _LOCK:
        bulk = _BULK.get(http)
        if bulk is None:
            bulk = _BULK[http] = SyncBulk(http)
        return bulk


def bulk_for(http: HTTPTransport) -> SyncBulk | None:
    """The open bulk client of ``http``, if its sync client made one."""
    bulk = _BULK.get(http)
    return None if bulk is None or bulk.closed else bulk


def close_bulk(http: HTTPTransport) -> None:
    """Close the bulk client of ``http`` (its connections); safe when there is none."""
    with _LOCK:
        bulk = _BULK.pop(http, None)
    if bulk is not None:
        bulk.close()


def _bound(seconds: float) -> float | None:
    """httpx2's form of a timeout: ``None`` for none (a blocking socket cannot wait
    ``math.inf`` seconds)."""
    return None if math.isinf(seconds) else seconds


def _chunks_of(chunks: Iterable[bytes]) -> Iterator[bytes]:
    for item in chunks:
        chunk = upload_chunk(item)
        if chunk:
            yield bytes(chunk)  # no copy for bytes


@final
class SyncBulk:
    """A blocking httpx2 client for one sync client's file transfers."""

    def __init__(self, http: HTTPTransport) -> None:
        self._http = http
        self._config = config = http.config
        self._client = httpx.Client(
            base_url=config.base_url,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            timeout=httpx.Timeout(_bound(config.timeout), connect=_bound(config.connect_timeout)),
            verify=http.ssl_context,
            follow_redirects=False,
            trust_env=False,
        )
        self.closed = False
        # streamed uploads over plain HTTP: wrenn._transport.upload, blocking
        self._plain = offload_for(
            config.base_url,
            http.own_transport,
            config.auth_headers,
            USER_AGENT,
            config.connect_timeout,
        )

    def __repr__(self) -> str:
        return f"<SyncBulk base_url={self._config.base_url!r}>"

    def close(self) -> None:
        """Close the pool and every connection in it."""
        self.closed = True
        self._client.close()

    def _timeout(self, read: float) -> httpx.Timeout:
        return httpx.Timeout(_bound(read), connect=_bound(self._config.connect_timeout))

    def _raise_for(self, response: httpx.Response, context: str) -> None:
        if response.status_code >= 400:
            body = response.read()
            raise error_from_response(
                response.status_code,
                body,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                context=context,
            )

    def _idempotent(self, path: str, timeout: Timeout, **request: Any) -> bytes:
        """One idempotent POST read whole, with the async path's retries and deadline."""
        context = f"POST {path}"
        deadline = self._config.deadline(timeout)
        end = time.monotonic() + deadline
        retry = self._http.retry
        headers = self._config.auth_headers()
        attempt = 0
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise WrennTimeoutError(f"no complete answer within {deadline:g} s ({context})")
            try:
                with (
                    map_transport_errors(context, server=self._config.describe_server()),
                    self._client.stream(
                        "POST", path, headers=headers, timeout=self._timeout(left), **request
                    ) as response,
                ):
                    status = response.status_code
                    parts = []
                    for part in response.iter_bytes():
                        parts.append(part)
                        if time.monotonic() > end:
                            raise WrennTimeoutError(
                                f"no complete answer within {deadline:g} s ({context})"
                            )
                    body = b"".join(parts)
            except (WrennTransportError, WrennTimeoutError) as exc:
                cause = exc.__cause__
                sent_maybe = not (isinstance(cause, Exception) and not_sent(cause))
                if attempt >= retry.max_retries or (
                    isinstance(exc, WrennTimeoutError) and sent_maybe
                ):
                    raise
                time.sleep(retry.delay(attempt))
                attempt += 1
                continue
            if status < 400:
                return body
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if attempt < retry.max_retries and retry.may_retry_status(
                "POST", status, idempotent=True
            ):
                time.sleep(retry.delay(attempt, retry_after))
                attempt += 1
                continue
            raise error_from_response(status, body, retry_after=retry_after, context=context)

    def read(self, capsule_id: str, path: str, *, timeout: Timeout = CLIENT_DEFAULT) -> bytes:
        """A whole file as bytes (see :meth:`wrenn.AsyncFiles.read`)."""
        return self._idempotent(
            api_path("capsules", capsule_id, "files", "read"),
            timeout,
            json={"path": check_path(path)},
        )

    def write(
        self, capsule_id: str, path: str, data: bytes | str, *, timeout: Timeout = CLIENT_DEFAULT
    ) -> None:
        """A whole file in one request (see :meth:`wrenn.AsyncFiles.write`)."""
        files = write_parts(path, data)
        self._idempotent(api_path("capsules", capsule_id, "files", "write"), timeout, files=files)

    def write_stream(
        self, capsule_id: str, path: str, chunks: Iterable[bytes], *, size: int | None = None
    ) -> None:
        """Stream chunks into a file, sent from the calling thread as the iterable yields
        them (see :meth:`wrenn.AsyncFiles.write_stream`: the same framing, size checks and
        errors). An exception in the iterable (also ``KeyboardInterrupt``) abandons the
        upload and closes its connection; the server keeps no partial file."""
        head, tail, headers = stream_framing(path, size)
        api = api_path("capsules", capsule_id, "files", "stream", "write")
        context = f"POST {api}"
        end = time.monotonic() + UPLOAD_DEADLINE

        def body() -> Generator[bytes, None, None]:
            yield head
            sent = 0
            for chunk in _chunks_of(chunks):
                sent += len(chunk)
                if size is not None and sent > size:
                    raise WrennValidationError(f"the data grew past {size} bytes while sent")
                if time.monotonic() > end:
                    raise WrennTimeoutError(
                        f"no complete answer within {UPLOAD_DEADLINE:g} s ({context})"
                    )
                yield chunk
            if size is not None and sent != size:
                raise WrennValidationError(f"the data ended after {sent} of {size} bytes")
            yield tail

        source: Generator[bytes, None, None] = body()
        if self._plain is not None:  # plain HTTP: a raw socket, no httpx2 layers
            try:
                self._plain.stream_upload_blocking(api, headers, source)
            finally:
                source.close()  # finalises the caller's generator now, not in the GC
            return
        try:
            with (
                map_transport_errors(context, server=self._config.describe_server()),
                self._client.stream(
                    "POST",
                    api,
                    content=source,
                    headers={**self._config.auth_headers(), **headers},
                    timeout=self._timeout(UPLOAD_DEADLINE),
                ) as response,
            ):
                self._raise_for(response, context)
        finally:
            source.close()  # finalises the caller's generator now, not in the GC

    @contextmanager
    def read_stream(
        self, capsule_id: str, path: str, *, chunk_size: int = 256 * 1024
    ) -> Iterator[Iterator[bytes]]:
        """The file's bytes in chunks for the block, read in the calling thread (see
        :meth:`wrenn.AsyncFiles.read_stream`: a missing file raises on entering, each
        wait is bounded by 60 s, a body that breaks off raises
        :class:`WrennConnectionError`). Leaving the block closes the transfer."""
        check_chunk_size(chunk_size)
        api = api_path("capsules", capsule_id, "files", "stream", "read")
        context = f"POST {api}"
        opening = self._config.deadline(CLIENT_DEFAULT)
        if self._plain is not None:  # plain HTTP: a raw socket, each piece recv'd in place
            body = json.dumps({"path": check_path(path)}).encode()
            with map_transport_errors(context, server=self._config.describe_server()):
                pieces = self._plain.download_blocking(api, body, chunk_size, open_timeout=opening)
            try:
                yield iter(pieces)
            finally:
                pieces.close()  # mid-body: the connection is closed, never reused
            return
        server = self._config.describe_server()
        request = self._client.build_request(
            "POST",
            api,
            json={"path": check_path(path)},
            headers=self._config.auth_headers(),
            timeout=self._timeout(opening),
        )
        with map_transport_errors(context, server=server):
            response = self._client.send(request, stream=True)
        # the answer came within the call's timeout; each wait for more body from now on
        # is bounded by READ_WAIT (httpcore2 reads this when the body's first read starts)
        timeouts = request.extensions.get("timeout")
        if isinstance(timeouts, dict):
            timeouts["read"] = READ_WAIT
        try:
            with map_transport_errors(context, server=server):
                self._raise_for(response, context)
            yield self._chunks(response, chunk_size, f"read of {path}")
        finally:
            response.close()  # mid-body: the connection is closed, not reused

    @staticmethod
    def _chunks(response: httpx.Response, size: int, context: str) -> Iterator[bytes]:
        with map_transport_errors(context):
            for chunk in response.iter_bytes():
                if len(chunk) <= size:
                    yield chunk
                    continue
                view = memoryview(chunk)
                for i in range(0, len(chunk), size):
                    yield bytes(view[i : i + size])
