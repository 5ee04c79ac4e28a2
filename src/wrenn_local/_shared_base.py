"""The base template, made once for the host's ``/etc`` as it is and shared by the
servers of one user.

Making the base (``_rootfs.prepare_base``) copies the host's ``/etc``, filtered: about
1,200 entries, most of them symbolic links, which took 1.5 s of CPU at every server start
on a disk whose metadata is slow (each entry made costs ~1.3 ms there). What it holds
depends only on the host's ``/etc``, a few host facts and this package's code, so it is
made once for that content and kept: ``<tmp>/wrenn-base-<uid>/<key>``, where ``key`` is
a digest of a listing of ``/etc`` (each entry's path, type, mode, owner, size, mtime,
inode and link target; the contents of directories capsules never see are skipped), of
those host facts and of the source of ``_rootfs.py`` and of the capsule's ``sudo``. A
listing costs ~1,900 ``lstat`` calls (tens of milliseconds), a copy 1.5 s.

- **Complete or absent.** A base is made under a temporary name (``.making-*``) and
  renamed into place: a base under its key is whole. Two servers making the same one
  at once: the first rename wins, the other's copy is removed.
- **Never changed in place.** Capsules see it only as overlay lower layers (read-only);
  nothing writes to it after the rename. A host whose ``/etc`` changed gets a new key.
- **Held while used.** Each server holds a shared ``flock`` on its base's directory
  while it runs (``SharedBase.release``). A server that starts removes every other
  base nobody holds (an ``/etc`` that has changed since), under an exclusive lock, after
  renaming it out of place, so a server looking it up never finds half of one.
- **This user's only.** The directory must be a real directory owned by this user,
  mode ``0700`` (made so if absent). If it is not (another account made it first), the
  server makes a base of its own in its data directory, as every server once did, and
  says why.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

import attrs

from ._inside import SUDO
from ._rootfs import ETC_SECRETS, prepare_base

__all__ = ["SharedBase", "base_home", "etc_key", "hold_base"]

log = logging.getLogger("wrenn_local")

HOME_PREFIX = "wrenn-base-"  # not TEMP_PREFIX: these are not data directories
MAKING = ".making-"
TRASH = ".trash-"
ABANDONED_AFTER = 600.0  # a ``.making-*`` older than this, and unlocked, is a dead maker's


@attrs.define(eq=False)
class SharedBase:
    """A base template in use by this server: ``path`` holds ``skeleton``, ``etc`` and
    ``usr`` (``_rootfs.prepare_base``)."""

    path: Path
    fd: int | None  # a shared lock on ``path`` (None: the server's own base)

    def release(self) -> None:
        """Let go of the base (it may be removed once no server holds it)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def base_home() -> Path:
    """Where this user's shared bases are kept."""
    return Path(tempfile.gettempdir()) / f"{HOME_PREFIX}{os.getuid()}"


def hold_base(own: Path, home: Path | None = None) -> SharedBase:
    """The base template for the host's ``/etc`` as it is now, held for this server.

    Found under its key in ``home`` (default :func:`base_home`) or made there; a base of
    the server's own at ``own`` if ``home`` is not this user's private directory.
    Removes the bases of other keys that no server holds. Blocking (disk work): call it
    in a worker thread.
    """
    home = base_home() if home is None else home
    try:
        _private_directory(home)
    except OSError as exc:
        log.warning("no shared base template (%s): this server makes its own", exc)
        prepare_base(own)
        return SharedBase(path=own, fd=None)
    target = home / etc_key()
    for _ in range(20):
        fd = _hold(target) or _make(home, target)
        if fd is not None:
            break
        time.sleep(0.05)  # in a worker thread: another server is removing or making it
    else:
        raise OSError(f"the base template {target} could not be held: try again")
    _prune(home, keep=target)
    return SharedBase(path=target, fd=fd)


def _private_directory(home: Path) -> None:
    with contextlib.suppress(FileExistsError):
        home.mkdir(mode=0o700)
    info = home.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise PermissionError(f"{home} is not a directory")
    if info.st_uid != os.getuid():
        raise PermissionError(f"{home} belongs to uid {info.st_uid}, not to this user")
    if info.st_mode & 0o077:
        raise PermissionError(f"{home} is open to other accounts (mode {info.st_mode & 0o777:o})")


def etc_key(etc: Path = Path("/etc")) -> str:
    """A digest of everything the base is made from (see the module's docstring);
    ``etc``: the directory listed (the host's ``/etc``, which ``prepare_base`` copies)."""
    digest = hashlib.sha256()
    for source in (Path(__file__).with_name("_rootfs.py"), SUDO):
        digest.update(source.read_bytes())
    digest.update(f"euid={os.geteuid()} sudo={Path('/usr/bin/sudo').exists()}\n".encode())
    for name in ("bin", "lib", "lib64", "sbin"):
        digest.update(_describe(Path("/", name), name))
    stack = [etc]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda entry: entry.name)
        except OSError as exc:
            digest.update(f"{directory}: {exc.errno}\n".encode())
            continue
        for entry in entries:
            path = Path(entry.path)
            rel = str(path.relative_to(etc))
            if rel in ETC_SECRETS:
                continue  # never copied: what they hold changes nothing
            digest.update(_describe(path, rel))
            with contextlib.suppress(OSError):
                info = entry.stat(follow_symlinks=False)
                # capsules see a directory's entries only if everyone may list it
                if stat.S_ISDIR(info.st_mode) and info.st_mode & 0o005 == 0o005:
                    stack.append(path)
    return digest.hexdigest()[:32]


def _describe(path: Path, rel: str) -> bytes:
    try:
        info = path.lstat()
    except OSError as exc:
        return f"{rel} ? {exc.errno}\n".encode()
    link = os.readlink(path) if stat.S_ISLNK(info.st_mode) else ""
    return (
        f"{rel} {info.st_mode:o} {info.st_uid} {info.st_gid} {info.st_size} "
        f"{info.st_mtime_ns} {info.st_ino} {link}\n"
    ).encode()


def _hold(target: Path) -> int | None:
    """A shared lock on ``target`` if it is in place (and stays so), else None."""
    try:
        fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        if os.stat(target, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
            return fd
    except OSError:  # being removed (locked), or moved away meanwhile
        pass
    os.close(fd)
    return None


def _make(home: Path, target: Path) -> int | None:
    """Make the base for ``target`` and put it in place: a shared lock on it, or None if
    another server's was put there first (then hold that one)."""
    making = Path(tempfile.mkdtemp(prefix=MAKING, dir=home))
    fd = os.open(making, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    placed = False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # a pruner leaves it alone from here
        prepare_base(making)
        os.chmod(making, 0o755)  # as a base in a data directory was
        with contextlib.suppress(OSError):  # another server's is in place (ENOTEMPTY, EEXIST)
            os.rename(making, target)
            placed = True
    finally:
        if not placed:  # (also on failure or interruption: nothing half-made stays)
            shutil.rmtree(making, ignore_errors=True)
            os.close(fd)
    return fd if placed else None


def _prune(home: Path, keep: Path) -> None:
    """Remove the bases (and dead makers' leftovers) of ``home`` no server holds."""
    try:
        names = sorted(os.listdir(home))
    except OSError:
        return
    for name in names:
        path = home / name
        if path == keep:
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if name.startswith(MAKING) and time.time() - os.fstat(fd).st_mtime < ABANDONED_AFTER:
                continue  # perhaps made a moment ago, not locked yet
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live server's
            if not name.startswith((MAKING, TRASH)):
                trash = Path(tempfile.mkdtemp(prefix=TRASH, dir=home))
                os.rename(path, trash / name)  # out of place first: never found half gone
                path = trash
            shutil.rmtree(path, ignore_errors=True)
            log.info("removed the base template %s (the host's /etc has changed)", name)
        except OSError:
            continue
        finally:
            os.close(fd)
