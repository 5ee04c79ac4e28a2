"""The hosts of this server (PROTOCOL §15.3): the one local host, plus registered ones.

Hosts users register stay ``pending`` for ever: nothing here ever connects to them.
"""

from __future__ import annotations

import os
import platform
from typing import Any

from ._accounts import now_utc, rfc3339
from ._errors import bad_request, not_found
from ._host_memory import host_memory
from ._ids import is_valid, new_id

__all__ = ["Hosts"]


class Hosts:
    """The one local host, plus hosts users register (they stay ``pending``)."""

    def __init__(self) -> None:
        stamp = rfc3339(now_utc())
        self.local_id = new_id("host")
        self.hosts: dict[str, dict[str, Any]] = {
            self.local_id: {
                "id": self.local_id,
                "type": "regular",
                "team_id": None,
                "provider": "local",
                "availability_zone": "local",
                "arch": platform.machine(),
                "cpu_cores": os.cpu_count() or 1,
                "memory_mb": _memory_mb(),
                "disk_gb": None,
                "address": "127.0.0.1",
                "status": "online",
                "last_heartbeat_at": stamp,
                "created_by": "system",
                "created_at": stamp,
                "updated_at": stamp,
            }
        }
        # a registered host's tags by its ID; the shared local host's by (ID, team): one
        # team's tags are never another's to see or change
        self.tags: dict[str | tuple[str, str], set[str]] = {}

    def get(self, host_id: str, team_id: str) -> dict[str, Any]:
        """A host this team may see: the shared local host, or one of the team's own."""
        if not is_valid("host", host_id):
            raise bad_request("invalid host ID")
        host = self.hosts.get(host_id)
        if host is None or not self.visible(host, team_id):
            raise not_found("host not found")
        return host

    def tags_of(self, host: dict[str, Any], team_id: str) -> set[str]:
        """The tags of ``host`` (one :meth:`get` gave this team) as this team sees them."""
        key = (host["id"], team_id) if host["team_id"] is None else host["id"]
        return self.tags.setdefault(key, set())

    @staticmethod
    def visible(host: dict[str, Any], team_id: str) -> bool:
        return host["team_id"] is None or host["team_id"] == team_id


def _memory_mb() -> int | None:
    memory = host_memory()
    return None if memory is None else memory.total_mb
