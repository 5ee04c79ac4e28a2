"""A server's hold on its data directory, and the temporary ones killed servers left.

A running server holds an exclusive ``flock`` on ``<data dir>/server.lock`` (its pid
written inside) from before it touches the directory until it has left it. That says
two things to any other server on the machine:

- *in use*: a second server given the same ``--data-dir`` refuses to start, instead of
  reaping the first one's capsules as a killed predecessor's (``_leftovers.py``);
- *abandoned*: a lock nobody holds belongs to a server that died without clean-up
  (SIGKILL, a crash, the machine's OOM killer). A server without a ``--data-dir`` makes
  a temporary one (``<tmp>/wrenn-local-*``) and removes it when it stops; one killed
  cannot. Each server, as it starts, therefore reaps every such temporary directory of
  its own user whose lock it can take — the capsules' processes, cgroups and mounts
  first, as for a reused data directory, then the directory.

A lock file appears only already locked (made under another name, locked, then linked
into place), so a server that is starting is never taken for a dead one. A directory
without a lock file is never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

from ._leftovers import reap_leftovers

__all__ = ["TEMP_PREFIX", "DataDirInUse", "hold_data_dir", "reap_abandoned_temp_dirs"]

log = logging.getLogger("wrenn_local")

LOCK_NAME = "server.lock"
TEMP_PREFIX = "wrenn-local-"


class DataDirInUse(OSError):
    """Another running server holds this data directory (``python -m wrenn_local serve``
    says so in one line and exits 1, as for a busy port)."""


def hold_data_dir(root: Path) -> int:
    """Lock ``root`` for this server; the lock's descriptor (close it to let go).

    Raises:
        DataDirInUse: another live server holds it.
    """
    path = root / LOCK_NAME
    for _ in range(5):  # another server may be linking its lock in at this moment
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            linked = _link_locked(root, path)
            if linked is None:
                continue  # another server's appeared first: try to take that one
            fd = linked
        else:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                raise DataDirInUse(
                    f"data directory {root} is in use by another wrenn_local server"
                    f"{f' (pid {holder})' if holder else ''}: stop that server, or give"
                    " this one a data directory of its own"
                ) from None
        with contextlib.suppress(OSError):
            if os.fstat(fd).st_ino == os.stat(path).st_ino:  # still the file in place
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                return fd
        os.close(fd)
    raise DataDirInUse(f"data directory {root}: its lock keeps changing; try again")


def _link_locked(root: Path, path: Path) -> int | None:
    """A new lock file at ``path``, locked before it appears; None if one appeared first."""
    fd, partial = tempfile.mkstemp(prefix=".server.lock.", dir=root)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody else knows this file
        try:
            os.link(partial, path)
        except FileExistsError:
            os.close(fd)
            return None
        return fd
    finally:
        os.unlink(partial)


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip() or "x")
    return None


def reap_abandoned_temp_dirs(own: Path | None = None) -> list[Path]:
    """Reap the temporary data directories of this user's killed servers; those removed.

    Only ``<tmp>/wrenn-local-*`` directories owned by this user, with a lock file no
    server holds, are touched; each stays locked by this call while it is reaped, so
    two servers starting together never work on the same one.
    """
    removed: list[Path] = []
    try:
        candidates = sorted(Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"))
    except OSError:
        return removed
    for directory in candidates:
        if own is not None and directory == own:
            continue
        try:
            info = directory.lstat()
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                continue  # a file, a symlink, or another user's: not ours to judge
            fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue  # gone, or no lock file: never touched
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live server's
            reap_leftovers(directory)
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
        finally:
            os.close(fd)
    if removed:
        log.warning("removed %d data directories of killed servers", len(removed))
    return removed
