"""``capsule.files`` for synchronous code."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator, Mapping
from contextlib import aclosing, contextmanager
from typing import BinaryIO, Final, Literal, cast, final, overload

import anyio

from .._exceptions import WrennValidationError
from .._files import (
    FILE_READ,
    STREAM_THRESHOLD,
    AsyncCapsuleFiles,
    _remaining_size,
    check_binary_file,
)
from .._text import upload_chunk, wire_text
from .adapt import Facet, blocking
from .bulk import SyncBulk, bulk_for

__all__ = ["CapsuleFiles", "SyncData", "pulled"]

SyncData = str | bytes | bytearray | memoryview | BinaryIO
# Bytes a sync download hands over per portal crossing (about: whole chunks, each at most
# ``chunk_size``). A crossing costs a thread hop each way; per 256 KiB chunk, that was
# more CPU than the download itself.
BATCH_BYTES: Final = 4 * 1024 * 1024


@final
class _Batches:
    """A download's chunks, gathered in the loop thread into batches of about
    :data:`BATCH_BYTES`: the caller's thread crosses into the loop once per batch. No
    byte is copied; a failure is raised after the chunks that came before it."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._failure: Exception | None = None
        self._done = False

    async def next_batch(self) -> list[bytes]:
        """The next chunks (``[]`` at the end)."""
        if self._failure is not None:
            raise self._failure
        batch: list[bytes] = []
        size = 0
        while size < BATCH_BYTES and not self._done:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self._done = True
            except Exception as exc:
                if not batch:
                    raise
                self._failure = exc  # the chunks before it first
                break
            else:
                batch.append(chunk)
                size += len(chunk)
        return batch


def pulled(stream: Iterable[bytes]) -> AsyncGenerator[bytes, None]:
    """An iterable of byte chunks as an async generator for the portal. The chunks are
    read in a worker thread, about :data:`BATCH_BYTES` per trip to it (one trip per chunk
    cost more CPU than the upload), and only as fast as the consumer goes."""
    chunks = iter(stream)

    def take() -> list[bytes]:
        batch: list[bytes] = []
        size = 0
        for item in chunks:
            chunk = upload_chunk(item)
            batch.append(bytes(chunk))
            size += len(chunk)
            if size >= BATCH_BYTES:
                break
        return batch

    async def pull() -> AsyncGenerator[bytes, None]:
        while batch := await anyio.to_thread.run_sync(take):
            for chunk in batch:
                yield chunk

    return pull()


@final
class CapsuleFiles(Facet[AsyncCapsuleFiles]):
    """``capsule.files`` for synchronous code (same names and arguments as async)."""

    __slots__ = ()

    @overload
    def read(self, path: str, *, format: Literal["text"] = ...) -> str: ...

    @overload
    def read(self, path: str, *, format: Literal["bytes"]) -> bytes: ...

    def read(self, path: str, *, format: Literal["text", "bytes"] = "text") -> str | bytes:
        """A whole file as text (UTF-8, undecodable bytes replaced) or bytes."""

        async def read() -> str | bytes:
            return await self._async.read(path, format=format)

        if (bulk := self._bulk()) is not None:
            data = bulk.read(self._async._capsule_id, path)
            if format == "bytes":
                return data
            if format != "text":
                raise WrennValidationError("format must be 'text' or 'bytes'")
            return data.decode("utf-8", errors="replace")
        return self._runner.call(read)

    def read_bytes(self, path: str) -> bytes:
        """The whole file as bytes (the official SDK's name)."""
        return self.read(path, format="bytes")

    def _bulk(self) -> SyncBulk | None:
        """The sync client's blocking transfer client (see :mod:`wrenn._sync.bulk`)."""
        return bulk_for(self._async._files._http)

    def _bulk_write(self, bulk: SyncBulk, path: str, data: SyncData | Iterable[bytes]) -> None:
        """:meth:`write` in the calling thread (the async write's choices of framing)."""
        cid = self._async._capsule_id
        if isinstance(data, str):
            data = wire_text(data, "data").encode()
        if isinstance(data, bytes | bytearray | memoryview):
            payload = bytes(data)
            if len(payload) <= STREAM_THRESHOLD:
                bulk.write(cid, path, payload)
            else:
                bulk.write_stream(cid, path, (payload,), size=len(payload))
        elif hasattr(data, "read"):
            check_binary_file(data)
            fh = cast("BinaryIO", data)
            chunks = iter(lambda: fh.read(FILE_READ), b"")
            bulk.write_stream(cid, path, chunks, size=_remaining_size(fh))
        else:
            bulk.write_stream(cid, path, data)

    list = blocking(AsyncCapsuleFiles.list)
    make_dir = blocking(AsyncCapsuleFiles.make_dir)
    remove = blocking(AsyncCapsuleFiles.remove)
    exists = blocking(AsyncCapsuleFiles.exists)

    def write(self, path: str, data: SyncData | Iterable[bytes]) -> None:
        """Write a file (parents created, an existing file replaced) from text, bytes, a
        binary file object or an iterable of byte chunks. Large data, file objects and
        iterables are streamed in constant memory (see :meth:`upload_stream`). Ctrl-C
        abandons the write; the server keeps no partial file."""
        if (bulk := self._bulk()) is not None and (
            isinstance(data, str | bytes | bytearray | memoryview | Iterable)
            or hasattr(data, "read")
        ):
            self._bulk_write(bulk, path, data)
            return
        if isinstance(data, str | bytes | bytearray | memoryview):
            self._runner.call(self._async.write, path, data)
            return
        if hasattr(data, "read"):
            self._runner.call(self._async.write, path, cast("BinaryIO", data))
            return
        if not isinstance(data, Iterable):
            raise WrennValidationError(
                "data must be str, bytes, a binary file object or an iterable of bytes, "
                f"not {type(data).__name__}"
            )
        self.upload_stream(path, data)

    def write_many(self, files: Mapping[str, SyncData], *, concurrency: int = 8) -> None:
        """Write several files, ``concurrency`` at a time."""
        self._runner.call(self._async.write_many, files, concurrency=concurrency)

    def upload_stream(self, path: str, stream: Iterable[bytes]) -> None:
        """Upload the chunks of ``stream`` as one file, in constant memory.

        The iterable is read in the calling thread as the upload goes (over a transport
        of the caller's own: in a worker thread of the portal). Ctrl-C cancels the
        upload (the file is not written).
        """
        if (bulk := self._bulk()) is not None:
            bulk.write_stream(self._async._capsule_id, path, stream)
            return

        async def upload() -> None:
            async with aclosing(pulled(stream)) as gen:
                await self._async.upload_stream(path, gen)

        self._runner.call(upload)

    def download_stream(self, path: str, *, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        """The official SDK's form of :meth:`read_stream`: ``for chunk in
        cap.files.download_stream(path)`` (closed when the loop ends or is left)."""
        with self.read_stream(path, chunk_size=chunk_size) as chunks:
            yield from chunks

    @contextmanager
    def read_stream(self, path: str, *, chunk_size: int = 256 * 1024) -> Iterator[Iterator[bytes]]:
        """``with cap.files.read_stream(p) as chunks: for chunk in chunks`` (constant memory).

        Read in the calling thread (see :mod:`wrenn._sync.bulk`); over a transport of
        the caller's own, the chunks cross from the event loop's thread in batches of
        about 4 MiB."""
        if (bulk := self._bulk()) is not None:
            with bulk.read_stream(self._async._capsule_id, path, chunk_size=chunk_size) as chunks:
                yield chunks
            return
        with self._runner.enter(lambda: self._async.read_stream(path, chunk_size=chunk_size)) as it:
            yield self._batched(_Batches(it))

    def _batched(self, batches: _Batches) -> Iterator[bytes]:
        while batch := self._runner.call(batches.next_batch):
            yield from batch
