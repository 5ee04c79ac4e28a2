"""``capsule.files``: read, write, list, create, remove and test files in one capsule."""

from __future__ import annotations

import builtins
import io
import os
import stat
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import BinaryIO, Final, Literal, final, overload

import anyio
import anyio.abc

from ._concurrency import check_concurrency, jobs
from ._exceptions import (
    WrennConflictError,
    WrennError,
    WrennFanOutError,
    WrennValidationError,
)
from ._models import FileEntry, FileType
from ._resources import AsyncFiles
from ._resources.scoped import ScopedIterable
from ._text import wire_text
from ._transport.http import check_chunk_size

__all__ = ["AsyncCapsuleFiles", "WriteData"]

STREAM_THRESHOLD: Final = 8 * 1024 * 1024
WriteData = str | bytes | bytearray | memoryview | BinaryIO | AsyncIterable[bytes]


# A file object is read this much per trip to a worker thread.
FILE_READ: Final = 1024 * 1024


@final
class _Whole:
    """Bytes already in memory, as one chunk: sent with a Content-Length and without a
    copy (the socket is written from a view of it). Not a generator: nothing to
    finalise when the upload is abandoned."""

    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data

    def __aiter__(self) -> _Whole:
        return self

    async def __anext__(self) -> bytes:
        data, self._data = self._data, None
        if data is None:
            raise StopAsyncIteration
        return data


def _remaining_size(fh: BinaryIO) -> int | None:
    """How many bytes a regular file has left from its position, or ``None`` when that
    is not known up front (a pipe, a socket, an in-memory buffer without a descriptor)."""
    try:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            return None
        return max(0, st.st_size - fh.tell())
    except (AttributeError, OSError, ValueError):
        return None


TEXT_MODE: Final = (
    "data is a text stream (a file opened in text mode, a StringIO): open the file in"
    " binary mode ('rb') or pass bytes"
)


def check_binary_file(fh: object) -> None:
    """Refuse a file object opened in text mode (its reads give str, not bytes)."""
    if isinstance(fh, io.TextIOBase):
        raise WrennValidationError(TEXT_MODE)


def _file_chunks(fh: BinaryIO, size: int = FILE_READ) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        while True:
            chunk = await anyio.to_thread.run_sync(fh.read, size)
            if not chunk:
                return
            yield chunk

    return gen()


@final
class AsyncCapsuleFiles:
    """Reached as ``capsule.files``. Relative paths and ``~`` resolve in the user's home."""

    def __init__(
        self,
        files: AsyncFiles,
        capsule_id: str,
        owner: Callable[[], anyio.abc.TaskGroup | None] = lambda: None,
    ) -> None:
        self._files = files
        self._capsule_id = capsule_id
        self._owner = owner  # the task group of the capsule's scope, if any

    @overload
    async def read(self, path: str, *, format: Literal["text"] = ...) -> str: ...

    @overload
    async def read(self, path: str, *, format: Literal["bytes"]) -> bytes: ...

    async def read(self, path: str, *, format: Literal["text", "bytes"] = "text") -> str | bytes:
        """The whole file, as text (UTF-8, undecodable bytes replaced) or exact bytes."""
        data = await self._files.read(self._capsule_id, path)
        if format == "bytes":
            return data
        if format != "text":
            raise WrennValidationError("format must be 'text' or 'bytes'")
        return data.decode("utf-8", errors="replace")

    async def read_bytes(self, path: str) -> bytes:
        """The whole file as bytes (the official SDK's name)."""
        return await self.read(path, format="bytes")

    async def upload_stream(self, path: str, stream: AsyncIterable[bytes]) -> None:
        """Stream chunks into a file (the official SDK's name for ``write``)."""
        await self.write(path, stream)

    async def write(self, path: str, data: WriteData) -> None:
        """Write a file (parents created, an existing file replaced).

        ``data`` may be ``bytes``, ``str`` (UTF-8), a binary file object or an async
        iterable of byte chunks. Up to 8 MiB of bytes go in one request; anything larger,
        and every file object or iterable, is streamed with constant memory and no size
        limit (bytes and regular files with a ``Content-Length``, sent without copying;
        a file read 1 MiB at a time). Cancelling a streamed write abandons it; the server
        keeps no partial file.
        """
        if isinstance(data, str):
            data = wire_text(data, "data").encode()
        if isinstance(data, bytes | bytearray | memoryview):
            payload = bytes(data)
            if len(payload) <= STREAM_THRESHOLD:
                await self._files.write(self._capsule_id, path, payload)
                return
            await self._stream_write(path, _Whole(payload), size=len(payload), whole=True)
            return
        if hasattr(data, "read"):
            check_binary_file(data)
            fh: BinaryIO = data  # type: ignore[assignment]
            await self._stream_write(path, _file_chunks(fh), size=_remaining_size(fh))
            return
        if not hasattr(data, "__aiter__"):
            raise WrennValidationError(
                "data must be str, bytes, a binary file object or an async iterable of "
                f"bytes, not {type(data).__name__}"
            )
        await self._stream_write(path, data)

    async def _stream_write(
        self,
        path: str,
        chunks: AsyncIterable[bytes],
        *,
        size: int | None = None,
        whole: bool = False,
    ) -> None:
        await self._files._write_stream(self._capsule_id, path, chunks, size=size, whole=whole)

    def read_stream(
        self, path: str, *, chunk_size: int = 256 * 1024
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Stream a file of any size in constant memory::

            async with cap.files.read_stream("big.bin") as chunks:
                async for chunk in chunks:
                    ...

        A missing file raises :class:`WrennNotFoundError` on entering the block. Leaving
        the block early closes the transfer. A transfer that breaks off raises
        :class:`WrennConnectionError` rather than ending quietly.
        """
        return self._files.read_stream(self._capsule_id, path, chunk_size=chunk_size)

    def download_stream(
        self, path: str, *, chunk_size: int = 256 * 1024
    ) -> ScopedIterable[AsyncIterator[bytes], bytes]:
        """The official SDK's form of :meth:`read_stream`: ``async for chunk in
        cap.files.download_stream(path)`` (closed when the loop ends, fails or the
        capsule's scope ends; see :class:`ScopedIterable`). ``async with`` works too."""
        check_chunk_size(chunk_size)  # at the call, not at the first chunk
        return ScopedIterable(lambda: self.read_stream(path, chunk_size=chunk_size), self._owner)

    async def write_many(self, files: Mapping[str, WriteData], *, concurrency: int = 8) -> None:
        """Write several files at once, at most ``concurrency`` transfers in flight.

        Every write is attempted; if any failed, raises :class:`WrennFanOutError`. An
        exception that is not the SDK's (a chunk source that raises, say) cancels the
        other writes and comes out as it was raised.
        """
        check_concurrency(concurrency)
        limiter = anyio.CapacityLimiter(concurrency)
        failures: list[Exception] = []

        async def one(target: str, data: WriteData) -> None:
            async with limiter:
                try:
                    await self.write(target, data)
                except WrennError as exc:
                    failures.append(exc)

        async with jobs() as tg:
            for target, data in files.items():
                tg.start_soon(one, target, data)
        if failures:
            raise WrennFanOutError(f"{len(failures)} of {len(files)} writes failed", failures)

    async def list(self, path: str = ".", depth: int = 1) -> builtins.list[FileEntry]:
        return await self._files.list(self._capsule_id, path, depth=depth)

    async def make_dir(self, path: str, *, exist_ok: bool = True) -> FileEntry:
        """Create a directory and its parents. An existing one is fine unless
        ``exist_ok=False`` (then :class:`WrennConflictError`)."""
        try:
            return await self._files.make_dir(self._capsule_id, path)
        except WrennConflictError:
            if not exist_ok:
                raise
        parent, _, name = path.rstrip("/").rpartition("/")
        if name not in ("", ".", "..", "~"):
            for entry in await self.list(parent or ("/" if path.startswith("/") else ".")):
                if entry.name == name:
                    if entry.is_dir:
                        return entry
                    raise WrennConflictError(f"{path} exists and is not a directory")
        # ``/``, ``~``, ``.``, ``a/..`` and the like have no entry of that name in a
        # parent listing: the path is a directory if it can be listed itself
        try:
            await self.list(path, depth=1)
        except WrennError:
            raise WrennConflictError(f"{path} exists and is not a directory") from None
        return FileEntry(name=name or path, path=path, type=FileType.DIRECTORY)

    async def remove(self, path: str) -> None:
        await self._files.remove(self._capsule_id, path)

    async def exists(self, path: str) -> bool:
        """Whether ``path`` exists, in one request whatever the directory's size.

        Opens the streaming read of the path and closes it before any byte is read: a
        404 means no, a 400 (a directory) or a 200 means yes. (Servers older than v0.2
        answer 200 for missing files here; against those this says yes.)
        """
        return await self._files.exists(self._capsule_id, path)
