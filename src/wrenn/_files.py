"""``capsule.files``: read, write, list, create, remove and test files in one capsule."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import BinaryIO, Final, Literal, final, overload

import anyio
import anyio.abc

from ._exceptions import (
    WrennConflictError,
    WrennError,
    WrennFanOutError,
    WrennValidationError,
)
from ._models import FileEntry
from ._resources import AsyncFiles
from ._resources.scoped import ScopedIterable

__all__ = ["AsyncCapsuleFiles", "WriteData"]

STREAM_THRESHOLD: Final = 8 * 1024 * 1024
WriteData = str | bytes | bytearray | memoryview | BinaryIO | AsyncIterable[bytes]


def _chunks_of(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        view = memoryview(data)
        for start in range(0, len(view), size):
            yield bytes(view[start : start + size])

    return gen()


def _file_chunks(fh: BinaryIO, size: int = 256 * 1024) -> AsyncIterator[bytes]:
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
        and every file object or iterable, is streamed in 256 KiB chunks with constant
        memory and no size limit. Cancelling a streamed write abandons it; the server
        keeps no partial file.
        """
        if isinstance(data, str):
            data = data.encode()
        if isinstance(data, bytes | bytearray | memoryview):
            payload = bytes(data)
            if len(payload) <= STREAM_THRESHOLD:
                await self._files.write(self._capsule_id, path, payload)
                return
            await self._stream_write(path, _chunks_of(payload))
            return
        if hasattr(data, "read"):
            await self._stream_write(path, _file_chunks(data))  # type: ignore[arg-type]
            return
        if not hasattr(data, "__aiter__"):
            raise WrennValidationError(
                "data must be str, bytes, a binary file object or an async iterable of "
                f"bytes, not {type(data).__name__}"
            )
        await self._stream_write(path, data)

    async def _stream_write(self, path: str, chunks: AsyncIterable[bytes]) -> None:
        await self._files.write_stream(self._capsule_id, path, chunks)

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
        return ScopedIterable(lambda: self.read_stream(path, chunk_size=chunk_size), self._owner)

    async def write_many(self, files: Mapping[str, WriteData], *, concurrency: int = 8) -> None:
        """Write several files at once, at most ``concurrency`` transfers in flight.

        Every write is attempted; if any failed, raises :class:`WrennFanOutError`.
        """
        limiter = anyio.CapacityLimiter(concurrency)
        failures: list[Exception] = []

        async def one(target: str, data: WriteData) -> None:
            async with limiter:
                try:
                    await self.write(target, data)
                except WrennError as exc:
                    failures.append(exc)

        async with anyio.create_task_group() as tg:
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
        for entry in await self.list(parent or ("/" if path.startswith("/") else ".")):
            if entry.name == name and entry.is_dir:
                return entry
        raise WrennConflictError(f"{path} exists and is not a directory")

    async def remove(self, path: str) -> None:
        await self._files.remove(self._capsule_id, path)

    async def exists(self, path: str) -> bool:
        """Whether ``path`` exists, in one request whatever the directory's size.

        Opens the streaming read of the path and closes it before any byte is read: a
        404 means no, a 400 (a directory) or a 200 means yes. (Servers older than v0.2
        answer 200 for missing files here; against those this says yes.)
        """
        return await self._files.exists(self._capsule_id, path)
