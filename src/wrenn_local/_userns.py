"""Each capsule's own range of host user and group ids (its user namespace).

Inside a capsule ids 0–65535 are what they always are (root is 0, ``wrenn-user`` is
1000); on the host they are ``base + id``, where each live capsule holds its own
65,536-wide range::

    base = 2**31 + k * 65536        k = 0, 1, … 32766

The ranges start above every id a distribution hands out (system and login accounts,
``/etc/subuid`` ranges of rootless containers, systemd's container and dynamic ranges
all lie below 2^31). A range that contains an id named in ``/etc/passwd``,
``/etc/group``, ``/etc/subuid`` or ``/etc/subgid`` is skipped all the same.

A range is held with an exclusive ``flock`` on ``/run/wrenn-local/id-ranges/<k>``: the
lock is host-wide, so two servers on one machine never hand out the same range, and it
goes with the process that holds it, so a killed server frees its ranges.

Files a capsule writes land in its upper directories owned by its range; a snapshot
shifts them back to ``0…65535`` (:func:`shift_tree`) so a template layer can be stacked
under any capsule's range (the capsule sees template layers through idmapped mounts).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Final

__all__ = ["FIRST_BASE", "RANGE", "IdRange", "shift_tree"]

RANGE: Final = 65536
FIRST_BASE: Final = 2**31
SLOTS: Final = (2**32 - FIRST_BASE) // RANGE - 1  # the last id, 2^32-1, is invalid
LOCK_DIR: Final = Path("/run/wrenn-local/id-ranges")


class IdRange:
    """One capsule's host id range, held until :meth:`release`."""

    def __init__(self, base: int, fd: int) -> None:
        self.base = base
        self.size = RANGE
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, lock_dir: Path = LOCK_DIR) -> IdRange:
        """Take the first free range on this host (raises ``OSError`` if none is)."""
        lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        taken = _host_ids()
        for k in range(SLOTS):
            base = FIRST_BASE + k * RANGE
            if any(base <= i < base + RANGE for i in taken):
                continue
            fd = os.open(lock_dir / str(k), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return cls(base, fd)
        raise OSError("no free user id range for a capsule")

    def contains(self, host_id: int) -> bool:
        return self.base <= host_id < self.base + self.size

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the lock
            self._fd = None

    def __repr__(self) -> str:
        return f"IdRange(base={self.base}, size={self.size})"


def shift_tree(path: Path, base: int) -> None:
    """Give every file under ``path`` owned by ``base + i`` the owner ``i`` (no links followed).

    Ids outside the range (the whiteouts overlayfs makes as host root) are kept.
    """

    def shifted(value: int) -> int:
        return value - base if base <= value < base + RANGE else value

    def fix(entry: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(entry)
            uid, gid = shifted(st.st_uid), shifted(st.st_gid)
            if (uid, gid) != (st.st_uid, st.st_gid):
                os.lchown(entry, uid, gid)
                if not os.path.islink(entry) and st.st_mode & 0o6000:
                    os.chmod(entry, st.st_mode & 0o7777)  # chown clears setuid/setgid

    if not path.exists():
        return
    fix(str(path))
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            fix(os.path.join(root, name))


def _host_ids() -> set[int]:
    ids: set[int] = set()
    for name, field in (("passwd", 2), ("group", 2)):
        with contextlib.suppress(OSError):
            for line in Path(f"/etc/{name}").read_text().splitlines():
                parts = line.split(":")
                if len(parts) > field and parts[field].isdigit():
                    ids.add(int(parts[field]))
    for name in ("subuid", "subgid"):
        with contextlib.suppress(OSError):
            for line in Path(f"/etc/{name}").read_text().splitlines():
                parts = line.split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    start, count = int(parts[1]), int(parts[2])
                    if start + count > FIRST_BASE:  # only ranges that reach ours matter
                        ids.update(range(max(start, FIRST_BASE), start + count, RANGE // 2))
                        ids.add(start + count - 1)
    return ids
