"""File entries (PROTOCOL §10)."""

from __future__ import annotations

import datetime as dt

import attrs

from .enums import FileType

__all__ = ["FileEntry"]


@attrs.frozen
class FileEntry:
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
