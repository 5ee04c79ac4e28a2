"""This host's memory, as ``/proc/meminfo`` reports it: the one place that reads it.

Used for a capsule's ``memory_mb`` bound (no more than the host has), the host's entry
in ``/v1/hosts``, and the spare pool's "short of memory" check.
"""

from __future__ import annotations

import attrs

__all__ = ["HostMemory", "host_memory"]


@attrs.frozen
class HostMemory:
    """Totals in KiB, as the kernel counts them."""

    total_kib: int
    available_kib: int | None  # None: a kernel without MemAvailable (before 3.14)

    @property
    def total_mb(self) -> int:
        return self.total_kib // 1024

    @property
    def available_share(self) -> float:
        """The share of the memory that is available (1.0 where the kernel does not say)."""
        if self.available_kib is None or self.total_kib <= 0:
            return 1.0
        return self.available_kib / self.total_kib


def host_memory(meminfo: str = "/proc/meminfo") -> HostMemory | None:
    """The host's memory now; None if ``meminfo`` cannot be read or has no total."""
    fields: dict[str, int] = {}
    try:
        with open(meminfo, encoding="ascii") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in ("MemTotal", "MemAvailable"):
                    fields[name] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if "MemTotal" not in fields:
        return None
    return HostMemory(total_kib=fields["MemTotal"], available_kib=fields.get("MemAvailable"))
