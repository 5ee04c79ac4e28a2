"""``client.files``: read, write, list, create and remove files in a capsule (PROTOCOL §10).

Raw REST calls that move whole files in one request; the streaming variants for large
files belong to the capsule-level API.
"""

from __future__ import annotations

import builtins
from typing import Any, Final, final

from .._exceptions import WrennProtocolError, WrennTooLargeError, WrennValidationError
from .._models import FileEntry
from .._transport.http import HTTPTransport, api_path, response_json
from .converter import structure, structure_list

__all__ = ["AsyncFiles"]

WRITE_LIMIT: Final = 100 * 1024 * 1024


def _path(path: str) -> str:
    if not isinstance(path, str) or not path or "\0" in path:
        raise WrennValidationError("path must be a non-empty string without NUL bytes")
    return path


@final
class AsyncFiles:
    """Reached as ``client.files``. Relative paths and ``~`` resolve in the user's home."""

    def __init__(self, http: HTTPTransport) -> None:
        self._http = http

    async def write(
        self, capsule_id: str, path: str, data: bytes | str, *, timeout: float | None = None
    ) -> None:
        """Write a whole file (parents created, existing file replaced). At most 100 MiB."""
        payload = data.encode() if isinstance(data, str) else bytes(data)
        if len(payload) > WRITE_LIMIT:
            raise WrennTooLargeError(
                f"{len(payload)} bytes is over the 100 MiB limit of a single write"
            )
        # `path` goes first: streaming servers read the parts in order.
        files: Any = [("path", (None, _path(path))), ("file", ("upload", payload))]
        await self._http.request(
            "POST",
            api_path("capsules", capsule_id, "files", "write"),
            files=files,
            timeout=timeout,
            idempotent=True,  # writing the same bytes twice leaves the same file
        )

    async def read(self, capsule_id: str, path: str, *, timeout: float | None = None) -> bytes:
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
        self, capsule_id: str, path: str, *, depth: int = 1, timeout: float | None = None
    ) -> builtins.list[FileEntry]:
        """Entries under a directory, ``depth`` levels deep, as a flat list."""
        if not isinstance(depth, int) or depth < 1:
            raise WrennValidationError("depth must be an integer >= 1")
        resp = await self._http.request(
            "POST",
            api_path("capsules", capsule_id, "files", "list"),
            json_body={"path": _path(path), "depth": depth},
            timeout=timeout,
            idempotent=True,
        )
        data = response_json(resp, what="file list")
        if not isinstance(data, dict):
            raise WrennProtocolError("file list is not a JSON object")
        return structure_list(data.get("entries") or [], FileEntry)

    async def make_dir(
        self, capsule_id: str, path: str, *, timeout: float | None = None
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

    async def remove(self, capsule_id: str, path: str, *, timeout: float | None = None) -> None:
        """Remove a file or a directory tree."""
        await self._http.request(
            "POST",
            api_path("capsules", capsule_id, "files", "remove"),
            json_body={"path": _path(path)},
            timeout=timeout,
        )
