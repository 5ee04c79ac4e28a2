"""The official SDK's ``wrenn.files`` module: a capsule's files (``capsule.files``)."""

from __future__ import annotations

from wrenn import AsyncCapsuleFiles as AsyncFiles
from wrenn import CapsuleFiles as Files
from wrenn.exceptions import WrennNotFoundError, handle_response
from wrenn.models import FileEntry, ListDirResponse, MakeDirResponse

__all__ = [
    "AsyncFiles",
    "FileEntry",
    "Files",
    "ListDirResponse",
    "MakeDirResponse",
    "WrennNotFoundError",
    "handle_response",
]
