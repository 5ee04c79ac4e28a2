"""The host's process tree, as ``/proc`` shows it: who is whose child.

Read fresh on every call (a snapshot: processes come and go meanwhile); processes that
end while ``/proc`` is read are left out.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

__all__ = ["children", "descendants", "parents"]


def parents() -> dict[int, list[int]]:
    """Every process's children, by parent pid (one pass over ``/proc``)."""
    found: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                found.setdefault(ppid, []).append(int(entry.name))
    return found


def children(pid: int) -> list[int]:
    """The pids of ``pid``'s children, for a single-threaded ``pid`` (the kernel lists
    each thread's own): from ``/proc/<pid>/task/<pid>/children`` where the kernel has
    it (CONFIG_PROC_CHILDREN), else from :func:`parents`. Empty if ``pid`` is gone."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:  # no such file on this kernel, or no such process
        return parents().get(pid, [])
    except (OSError, ValueError):
        return []


def descendants(*roots: int) -> list[int]:
    """``roots`` and every process descended from them (roots first)."""
    tree = parents()
    out: list[int] = []
    seen: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            out.append(pid)
            todo.extend(tree.get(pid, []))
    return out
