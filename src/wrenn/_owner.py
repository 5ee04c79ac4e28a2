"""Who owns a capsule: the process that created it, recorded in the capsule's metadata.

Every capsule a scope (``client.capsule()``, ``map``, ``pool``) or an official
constructor (``Capsule(...)``, ``AsyncCapsule.create``) creates carries four metadata
keys, so a capsule whose program died without cleaning up (``SIGKILL``, a power cut,
``os._exit``) can be recognised later and destroyed (``client.capsules.reap()``):

=========================  =============================================================
``wrenn.owner.client``     a random ID of the client (one per session)
``wrenn.owner.host``       the host name (at most 64 characters)
``wrenn.owner.pid``        the process ID
``wrenn.owner.started``    the process start time in clock ticks since boot (Linux;
                           absent elsewhere), so a reused PID is not taken for the owner
=========================  =============================================================

The server accepts at most 20 metadata keys of at most 64 characters (PROTOCOL §5.3).
The user's keys always win: they are never overwritten, and if they leave no room for
all four owner keys, none is added (the capsule is then simply not reapable).
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Mapping
from typing import Final

import attrs

__all__ = ["OWNER_PREFIX", "Owner", "owner_is_gone", "pid_start_time", "with_owner"]

OWNER_PREFIX: Final = "wrenn.owner."
MAX_KEYS: Final = 20
MAX_VALUE: Final = 64


def pid_start_time(pid: int) -> str | None:
    """When process ``pid`` started, in clock ticks since boot (Linux ``/proc``), or
    None where that cannot be read (no such process, another OS)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return fields[19].decode()  # field 22 of the whole line: starttime
    except IndexError:
        return None


def pid_exists(pid: int) -> bool | None:
    """Whether a process ``pid`` exists on this host; None when that cannot be told."""
    if sys.platform == "win32" or pid <= 0:
        return None  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, and belongs to someone else
    except OSError:
        return None
    return True


@attrs.frozen
class Owner:
    """The program that created a capsule."""

    client: str
    host: str
    pid: int
    started: str | None = None

    @classmethod
    def current(cls) -> Owner:
        """This process, with a fresh client ID."""
        pid = os.getpid()
        return cls(
            client=uuid.uuid4().hex[:16],
            host=this_host(),
            pid=pid,
            started=pid_start_time(pid),
        )

    def metadata(self) -> dict[str, str]:
        out = {
            OWNER_PREFIX + "client": self.client,
            OWNER_PREFIX + "host": self.host[:MAX_VALUE],
            OWNER_PREFIX + "pid": str(self.pid),
        }
        if self.started is not None:
            out[OWNER_PREFIX + "started"] = self.started
        return out

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> Owner | None:
        """The owner recorded in a capsule's metadata, or None (no or unreadable keys)."""
        try:
            return cls(
                client=metadata.get(OWNER_PREFIX + "client", ""),
                host=metadata[OWNER_PREFIX + "host"],
                pid=int(metadata[OWNER_PREFIX + "pid"]),
                started=metadata.get(OWNER_PREFIX + "started"),
            )
        except (KeyError, ValueError):
            return None


def this_host() -> str:
    return socket.gethostname()[:MAX_VALUE]


def owner_is_gone(owner: Owner) -> bool | None:
    """True when ``owner`` ran on this host and that process no longer exists (or the
    PID now belongs to a process that started at another time); False when it still
    runs; None when it cannot be told (another host, or an OS without the means)."""
    if owner.host != this_host():
        return None
    exists = pid_exists(owner.pid)
    if exists is None:
        return None
    if not exists:
        return True
    if owner.started is not None:
        now = pid_start_time(owner.pid)
        if now is not None and now != owner.started:
            return True  # the PID was reused by a younger process
    return False


def with_owner(metadata: Mapping[str, str] | None, owner: Owner) -> dict[str, str] | None:
    """The user's metadata plus the owner keys, never overwriting a user key and never
    going over the server's key limit (then the owner keys are left out)."""
    user = dict(metadata or {})
    extra = {k: v for k, v in owner.metadata().items() if k not in user}
    if len(user) + len(extra) > MAX_KEYS:
        return user or None
    return {**user, **extra}
