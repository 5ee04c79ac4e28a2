"""``client.files``: read, write, list, create and remove files in a capsule (PROTOCOL §10).

Whole files in one request, and the streaming variants (``write_stream``,
``read_stream``) that move files of any size in constant memory.
"""

from __future__ import annotations

import builtins
import json
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final, final

import anyio

from .._config import CLIENT_DEFAULT, Timeout
from .._exceptions import (
    WrennNotFoundError,
    WrennProtocolError,
    WrennTimeoutError,
    WrennTooLargeError,
    WrennValidationError,
)
from .._models import FileEntry
from .._text import upload_chunk, wire_text
from .._transport.http import (
    USER_AGENT,
    BodyChunks,
    HTTPTransport,
    api_path,
    check_chunk_size,
    response_json,
)
from .._transport.offload import Offload, OffloadBody, offload_for, on_asyncio
from .converter import structure, structure_list

__all__ = ["AsyncFiles", "check_path", "stream_framing"]

WRITE_LIMIT: Final = 100 * 1024 * 1024


def _path(path: str) -> str:
    if not isinstance(path, str) or not path or "\0" in path:
        raise WrennValidationError("path must be a non-empty string without NUL bytes")
    return wire_text(path, "path")


check_path = _path  # for the sync bulk client (wrenn._sync.bulk)


def write_parts(path: str, data: bytes | str) -> Any:
    """The multipart parts of a whole-file write; over 100 MiB is refused before sending.
    ``path`` goes first: streaming servers read the parts in order."""
    if not isinstance(data, str | bytes | bytearray | memoryview):
        raise WrennValidationError(
            f"data must be str or bytes-like, not {type(data).__name__}"
            " (to send chunks or a file, use write_stream)"
        )
    payload = wire_text(data, "data").encode() if isinstance(data, str) else bytes(data)
    if len(payload) > WRITE_LIMIT:
        raise WrennTooLargeError(
            f"{len(payload)} bytes is over the 100 MiB limit of a single write"
        )
    return [("path", (None, _path(path))), ("file", ("upload", payload))]


def stream_framing(path: str, size: int | None) -> tuple[bytes, bytes, dict[str, str]]:
    """What goes before and after the bytes of a streamed upload, and its headers (with
    a ``Content-Length`` when ``size``, the bytes' total, is known)."""
    if not path or "\r" in path or "\n" in path:
        raise WrennValidationError("path must be non-empty and on one line")
    boundary = secrets.token_hex(16)
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\n{path}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="upload.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    if size is not None:
        headers["Content-Length"] = str(len(head) + size + len(tail))
    return head, tail, headers


@final
class AsyncFiles:
    """Reached as ``client.files``. Relative paths and ``~`` resolve in the user's home."""

    def __init__(self, http: HTTPTransport) -> None:
        self._http = http
        self._offload_made = False
        self._offload_one: Offload | None = None

    def _offload(self) -> Offload | None:
        """Streamed downloads over plain HTTP on our own transport are read by a thread
        of their own (see :mod:`wrenn._transport.offload`); made on first use."""
        if not self._offload_made:
            config = self._http.config
            self._offload_one = offload_for(
                config.base_url,
                self._http.own_transport,
                config.auth_headers,
                USER_AGENT,
                config.connect_timeout,
            )
            self._offload_made = True
        return self._offload_one

    def _plain(self) -> Offload | None:
        """The same: streamed uploads from chunks go over a raw socket on the loop
        (:mod:`wrenn._transport.upload`) under asyncio and trio."""
        return self._offload()

    async def write(
        self, capsule_id: str, path: str, data: bytes | str, *, timeout: Timeout = CLIENT_DEFAULT
    ) -> None:
        """Write a whole file (parents created, existing file replaced). At most 100 MiB."""
        files = write_parts(path, data)
        await self._http.request(
            "POST",
            api_path("capsules", capsule_id, "files", "write"),
            files=files,
            timeout=timeout,
            idempotent=True,  # writing the same bytes twice leaves the same file
        )

    async def read(self, capsule_id: str, path: str, *, timeout: Timeout = CLIENT_DEFAULT) -> bytes:
        """Read a whole file as bytes. Missing: :class:`WrennNotFoundError`."""
        resp = await self._http.request(
            "POST",
            api_path("capsules", capsule_id, "files", "read"),
            json_body={"path": _path(path)},
            timeout=timeout,
            idempotent=True,
        )
        return resp.content

    async def list(
        self, capsule_id: str, path: str, *, depth: int = 1, timeout: Timeout = CLIENT_DEFAULT
    ) -> builtins.list[FileEntry]:
        """Entries under a directory, ``depth`` levels deep, as a flat list (``depth=0``
        is taken as 1, as servers and the official SDK take it)."""
        if not isinstance(depth, int) or depth < 0:
            raise WrennValidationError("depth must be an integer >= 0 (0 is taken as 1)")
        resp = await self._http.request(
            "POST",
            api_path("capsules", capsule_id, "files", "list"),
            json_body={"path": _path(path), "depth": depth or 1},
            timeout=timeout,
            idempotent=True,
        )
        data = response_json(resp, what="file list")
        if not isinstance(data, dict):
            raise WrennProtocolError("file list is not a JSON object")
        return structure_list(data.get("entries") or [], FileEntry)

    async def make_dir(
        self, capsule_id: str, path: str, *, timeout: Timeout = CLIENT_DEFAULT
    ) -> FileEntry:
        """Create a directory and its parents. Existing: :class:`WrennConflictError`."""
        resp = await self._http.request(
            "POST",
            api_path("capsules", capsule_id, "files", "mkdir"),
            json_body={"path": _path(path)},
            timeout=timeout,
        )
        data = response_json(resp, what="mkdir")
        if not isinstance(data, dict) or "entry" not in data:
            raise WrennProtocolError("mkdir answer has no entry")
        return structure(data["entry"], FileEntry)

    async def remove(
        self, capsule_id: str, path: str, *, timeout: Timeout = CLIENT_DEFAULT
    ) -> None:
        """Remove a file or a directory tree."""
        await self._http.request(
            "POST",
            api_path("capsules", capsule_id, "files", "remove"),
            json_body={"path": _path(path)},
            timeout=timeout,
        )

    async def write_stream(
        self,
        capsule_id: str,
        path: str,
        chunks: AsyncIterable[bytes],
        *,
        size: int | None = None,
    ) -> None:
        """Stream chunks into a file as one multipart upload, in constant memory.

        With ``size`` (the chunks' total, when known) the body goes with a
        ``Content-Length`` and each chunk is sent as it is; without, in chunked encoding
        (over plain HTTP each chunk still leaves from its own buffer; through httpx2, for
        https, it is copied once more). Chunks that add up to more or less than
        ``size`` raise :class:`WrennValidationError` and the upload is abandoned.
        Bounded by one hour (bound it more with your own scope); cancelling abandons
        the upload and the server keeps no partial file.
        """
        await self._write_stream(capsule_id, path, chunks, size=size, whole=False)

    async def _write_stream(
        self,
        capsule_id: str,
        path: str,
        chunks: AsyncIterable[bytes],
        *,
        size: int | None,
        whole: bool,
    ) -> None:
        """:meth:`write_stream`; ``whole`` says the chunks are one buffer already in
        memory (``files.write`` of large bytes): under asyncio over plain HTTP it is then
        sent by a worker thread in one blocking ``sendall`` (:mod:`wrenn._transport.offload`).
        Other chunks over plain HTTP go from the event loop on a raw socket
        (:mod:`wrenn._transport.upload`), each from the caller's buffer; https and a
        caller's own transport go through httpx2."""
        head, tail, headers = stream_framing(path, size)

        async def body() -> AsyncIterator[bytes]:
            yield head
            sent = 0
            iterator = aiter(chunks)
            try:
                async for item in iterator:
                    chunk = upload_chunk(item)
                    if chunk:
                        sent += len(chunk)
                        if size is not None and sent > size:
                            raise WrennValidationError(
                                f"the data grew past {size} bytes while sent"
                            )
                        yield bytes(chunk)
            except BaseException:
                # abandoned (refused, failed or cancelled): finalised now, not by the GC
                if (aclose := getattr(iterator, "aclose", None)) is not None:
                    with anyio.CancelScope(shield=True):
                        await aclose()
                raise
            if size is not None and sent != size:
                raise WrennValidationError(f"the data ended after {sent} of {size} bytes")
            yield tail

        api = api_path("capsules", capsule_id, "files", "stream", "write")
        if (offload := self._plain()) is not None:
            with anyio.move_on_after(3600.0) as scope:
                if whole and size is not None and on_asyncio():
                    await offload.upload(api, headers, body())
                else:
                    await offload.stream_upload(api, headers, body(), self._http.retry)
            if scope.cancelled_caught:
                raise WrennTimeoutError(f"no complete answer within 3600 s (POST {api})")
            return
        await self._http.request(
            "POST",
            api,
            content=body(),  # type: ignore[arg-type]
            headers=headers,
            timeout=3600.0,
        )

    @asynccontextmanager
    async def read_stream(
        self, capsule_id: str, path: str, *, chunk_size: int = 256 * 1024
    ) -> AsyncIterator[BodyChunks | OffloadBody]:
        """The file's bytes in chunks, for the duration of a block. A missing file
        raises :class:`WrennNotFoundError` on entering; leaving early closes the transfer;
        each wait for more bytes is bounded by 60 s."""
        check_chunk_size(chunk_size)  # before any request
        if (offload := self._offload()) is not None:
            api = api_path("capsules", capsule_id, "files", "stream", "read")
            body = json.dumps({"path": _path(path)}).encode()
            opening = self._http.config.deadline(CLIENT_DEFAULT)
            offloaded = await offload.download(api, body, chunk_size, open_timeout=opening)
            try:
                yield offloaded
            finally:
                await offloaded.aclose()
            return
        async with self._http.stream(
            "POST",
            api_path("capsules", capsule_id, "files", "stream", "read"),
            json_body={"path": _path(path)},
            read_timeout=60.0,
        ) as response:
            chunks = BodyChunks(response, chunk_size, f"read of {path}")
            try:
                yield chunks
            finally:
                await chunks.aclose()

    async def exists(self, capsule_id: str, path: str) -> bool:
        """Whether ``path`` exists, in one request whatever the directory's size.

        Opens the streaming read of the path and closes it before any byte is read: a
        404 means no, a 400 (a directory) or a 200 means yes. (Servers older than v0.2
        answer 200 for missing files here; against those this says yes.)
        """
        body = {"path": _path(path)}
        try:
            async with self._http.stream(
                "POST", api_path("capsules", capsule_id, "files", "stream", "read"), json_body=body
            ):
                return True
        except WrennNotFoundError:
            return False
        except WrennValidationError:
            return True
