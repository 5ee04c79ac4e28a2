"""File entries (PROTOCOL §10)."""

from __future__ import annotations

import datetime as dt

import attrs

from .base import WireModel
from .enums import FileType

__all__ = ["FileEntry", "ListDirResponse", "MakeDirResponse"]


@attrs.frozen
class FileEntry(WireModel):
    """A file, directory or link inside a capsule.

    ``mode`` is treated as an opaque integer (servers send either the permission bits or
    the full ``st_mode``); ``permissions`` is the ``ls``-style string. ``modified_at`` is
    Unix seconds. For a symlink, ``symlink_target`` is the target path.
    """

    name: str
    path: str
    type: FileType = FileType.FILE
    size: int = 0
    mode: int = 0
    permissions: str = ""
    owner: str = ""
    group: str = ""
    modified_at: int = 0
    symlink_target: str | None = None

    @property
    def is_dir(self) -> bool:
        return self.type is FileType.DIRECTORY

    @property
    def is_file(self) -> bool:
        return self.type is FileType.FILE

    @property
    def modified(self) -> dt.datetime:
        """``modified_at`` as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.modified_at, tz=dt.UTC)


@attrs.frozen
class ListDirResponse(WireModel):
    """The body of a directory listing (the official SDK's model)."""

    entries: list[FileEntry] = attrs.field(factory=list)


@attrs.frozen
class MakeDirResponse(WireModel):
    """The body of a ``mkdir`` answer (the official SDK's model)."""

    entry: FileEntry | None = None
