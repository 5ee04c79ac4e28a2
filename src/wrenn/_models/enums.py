"""String enums that accept values this SDK version does not know yet.

Servers add statuses between versions (PROTOCOL §5.2). An unknown value becomes a
pseudo-member that keeps the server's exact string, so a whole response never fails on
one new word and ``str(value)`` still says what the server sent. Known values compare by
identity (``status is CapsuleStatus.RUNNING``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

__all__ = [
    "CapsuleStatus",
    "FileType",
    "HostStatus",
    "HostType",
    "LenientStrEnum",
    "Range",
    "TemplateType",
]


class LenientStrEnum(StrEnum):
    """A :class:`~enum.StrEnum` whose unknown values become pseudo-members."""

    @classmethod
    def _missing_(cls, value: object) -> Self | None:
        if not isinstance(value, str):
            return None
        member = str.__new__(cls, value)
        member._name_ = "UNKNOWN"
        member._value_ = value
        return member

    @property
    def is_known(self) -> bool:
        """False for a value this SDK version did not know about."""
        return self._name_ != "UNKNOWN"


class CapsuleStatus(LenientStrEnum):
    """Status of a capsule (PROTOCOL §5.2)."""

    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    SNAPSHOTTING = "snapshotting"
    RESUMING = "resuming"
    STOPPING = "stopping"
    HIBERNATED = "hibernated"
    STOPPED = "stopped"
    MISSING = "missing"
    ERROR = "error"
    # the official SDK's lowercase spellings (aliases of the members above)
    pending = "pending"
    starting = "starting"
    running = "running"
    pausing = "pausing"
    paused = "paused"
    snapshotting = "snapshotting"
    resuming = "resuming"
    stopping = "stopping"
    hibernated = "hibernated"
    stopped = "stopped"
    missing = "missing"
    error = "error"

    @property
    def is_transitional(self) -> bool:
        """True while the server is moving the capsule to another status."""
        return self in _TRANSITIONAL

    @property
    def is_terminal(self) -> bool:
        """True when the capsule will never run again."""
        return self in _TERMINAL


_TRANSITIONAL = frozenset(
    {
        CapsuleStatus.PENDING,
        CapsuleStatus.STARTING,
        CapsuleStatus.PAUSING,
        CapsuleStatus.SNAPSHOTTING,
        CapsuleStatus.RESUMING,
        CapsuleStatus.STOPPING,
    }
)
_TERMINAL = frozenset({CapsuleStatus.STOPPED, CapsuleStatus.MISSING, CapsuleStatus.ERROR})


class Range(LenientStrEnum):
    """A time range of stats and metrics (``range.value`` is the wire string)."""

    field_5m = "5m"
    field_10m = "10m"
    field_1h = "1h"
    field_2h = "2h"
    field_6h = "6h"
    field_12h = "12h"
    field_24h = "24h"
    field_30d = "30d"


class TemplateType(LenientStrEnum):
    """Kind of template: a base image or a snapshot of a capsule."""

    BASE = "base"
    SNAPSHOT = "snapshot"


class FileType(LenientStrEnum):
    """Type of a file entry; servers may also send ``unknown`` (sockets, broken links)."""

    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"


class HostType(LenientStrEnum):
    """Kind of host: platform-run or bring-your-own-cloud."""

    REGULAR = "regular"
    BYOC = "byoc"


class HostStatus(LenientStrEnum):
    """Status of a host."""

    PENDING = "pending"
    ONLINE = "online"
    OFFLINE = "offline"
    DRAINING = "draining"
    UNREACHABLE = "unreachable"
