"""A capsule's disk quota: its writable layer on an ext4 image of ``disk_size_mb``.

Under full isolation each capsule's upper and work directories (everything it writes)
live on a sparse ext4 image (no journal, lazily initialised: ~40 ms and ~3 MB for 5 GiB,
made once per size as a template that each capsule gets a sparse copy of, its own file:
:func:`copy_image`) that ``boot.py`` loop-mounts in the capsule's private mount
namespace and binds over the capsule's ``upper``/``work`` directories. Writes past the
size fail with ENOSPC inside the capsule. The mount exists only in that namespace, and
the loop device is released when its last process exits. Where the host cannot (no
``mkfs.ext4``, no loop devices, a container that forbids them; checked once by mounting
a small image), the size is recorded and not enforced, and capsule metadata says so.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["copy_image", "disk_quota_problem", "make_image"]

# disk templates kept (the sizes used most recently); capsules of other sizes make theirs again
TEMPLATES_KEPT = 4
_probed: list[str | None] = []
_template_lock = threading.Lock()


def copy_image(path: Path, size_mb: int, cache: Path) -> None:
    """A fresh image of ``size_mb`` MiB at ``path``: a sparse copy of a template image.

    The template (``cache/disk-<size>.img``, made once by :func:`make_image`) is never
    mounted; each capsule gets its own file, copied extent by extent (only the few MB
    mkfs wrote are copied; holes stay holes), so no block is shared between capsules.
    That replaces a ``mkfs.ext4`` process per capsule with a few ``copy_file_range``
    calls.
    """
    template = cache / f"disk-{size_mb}.img"
    with _template_lock:
        if not template.exists():
            cache.mkdir(parents=True, exist_ok=True, mode=0o700)
            partial = template.with_suffix(".partial")
            make_image(partial, size_mb)
            partial.rename(template)
            _forget_templates(cache, keep=template)
        else:  # used: the last to be forgotten (its access time; its mtime says it
            # was never written after mkfs)
            os.utime(template, ns=(time.time_ns(), template.stat().st_mtime_ns))
        src = template.open("rb")  # open under the lock: a forgotten one is still read whole
    with src, path.open("wb") as dst:
        size = os.fstat(src.fileno()).st_size
        offset = 0
        while offset < size:
            try:
                start = os.lseek(src.fileno(), offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: only a hole remains
                    raise
                break
            end = os.lseek(src.fileno(), start, os.SEEK_HOLE)
            position = start
            while position < end:
                copied = os.copy_file_range(
                    src.fileno(), dst.fileno(), end - position, position, position
                )
                if copied == 0:
                    raise OSError(errno.EIO, "short copy of the disk template")
                position += copied
            offset = end
        dst.truncate(size)


def _forget_templates(cache: Path, keep: Path) -> None:
    """Remove all but the :data:`TEMPLATES_KEPT` most recently used templates (under
    ``_template_lock``). Each size asked for makes one, so without a bound capsules of
    ever new sizes would fill the host's disk a few MB (133 MB for 10 TB) at a time.
    A capsule's image is its own copy: forgetting a template never touches one."""
    found = []
    for image in cache.glob("disk-*.img"):
        with contextlib.suppress(OSError):
            found.append((image.stat().st_atime_ns, image))
    found.sort(reverse=True)
    for _, image in found[TEMPLATES_KEPT:]:
        if image != keep:
            with contextlib.suppress(OSError):
                image.unlink()


def make_image(path: Path, size_mb: int) -> None:
    """A sparse ext4 image of ``size_mb`` MiB at ``path``."""
    with path.open("wb") as fh:
        fh.truncate(size_mb * 1024 * 1024)
    subprocess.run(
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-m",
            "0",
            "-O",
            "^has_journal",
            "-E",
            "lazy_itable_init=1,nodiscard",
            str(path),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


def disk_quota_problem(unshare: str | None) -> str | None:
    """Why disk quotas cannot be enforced here (``None``: they can). Probed once."""
    if not _probed:
        _probed.append(_probe(unshare))
    return _probed[0]


def _probe(unshare: str | None) -> str | None:
    if shutil.which("mkfs.ext4") is None:
        return "no mkfs.ext4"
    if unshare is None or not Path("/dev/loop-control").exists():
        return "no loop devices"
    with tempfile.TemporaryDirectory(prefix="wrenn-disk-probe-") as tmp:
        image, mount = Path(tmp) / "probe.img", Path(tmp) / "mnt"
        mount.mkdir()
        try:
            make_image(image, 8)
            subprocess.run(
                [
                    unshare,
                    "-m",
                    "--propagation",
                    "private",
                    "mount",
                    "-o",
                    "loop",
                    str(image),
                    str(mount),
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError):
            return "loop mounts refused"
    return None
