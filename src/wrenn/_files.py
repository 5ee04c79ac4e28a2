"""``capsule.files``: read, write, list, create, remove and test files in one capsule."""

from __future__ import annotations

import builtins
from typing import Literal, final, overload

from ._exceptions import WrennConflictError, WrennNotFoundError, WrennValidationError
from ._http import HTTPTransport, api_path
from ._models import FileEntry
from ._resources import AsyncFiles

__all__ = ["AsyncCapsuleFiles"]


@final
class AsyncCapsuleFiles:
    """Reached as ``capsule.files``. Relative paths and ``~`` resolve in the user's home."""

    def __init__(self, files: AsyncFiles, http: HTTPTransport, capsule_id: str) -> None:
        self._files = files
        self._http = http
        self._capsule_id = capsule_id

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

    async def write(self, path: str, data: str | bytes) -> None:
        """Write a whole file (parents created, an existing file replaced; <= 100 MiB)."""
        await self._files.write(self._capsule_id, path, data)

    async def list(self, path: str = ".", *, depth: int = 1) -> builtins.list[FileEntry]:
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
        try:
            async with self._http.stream(
                "POST",
                api_path("capsules", self._capsule_id, "files", "stream", "read"),
                json_body={"path": path},
            ):
                return True
        except WrennNotFoundError:
            return False
        except WrennValidationError:
            return True
