"""A capsule's root filesystem: the base template, layers, overlay plans, copies.

* ``prepare_base``: the base template, a root skeleton, a filtered copy of the host's
  ``/etc`` (no password hashes, private keys or sudoers; ``wrenn-user`` added) and a
  ``/usr`` layer with the capsule's ``sudo`` (``_inside/sudo.py``, not setuid).
* ``overlay_plan``: the overlayfs mounts of a capsule (template layers over the host's
  ``/usr`` and the filtered ``/etc``, with per-capsule upper directories) for ``boot.py``.
* ``populate_reduced_root``: the plain directory that stands in for the root in reduced
  isolation.
* ``copy_layers``: a capsule's upper directories saved as a template layer (snapshots).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from ._inside import SUDO
from ._userns import FIRST_BASE, shift_tree

__all__ = [
    "USER_HOME",
    "USER_NAME",
    "USER_UID",
    "copy_layers",
    "du",
    "overlay_plan",
    "populate_reduced_root",
    "prepare_base",
    "rmtree",
]

SYSTEM_DIRS: Final = ("usr", "etc")
# The package manager's state, over the host's (which describes the host's /usr): with
# it, capsule root can run dpkg and apt-get on the capsule's copy-on-write view.
PACKAGE_DIRS: Final = ("var/lib/dpkg",)
# Host files under /etc that must never show inside a capsule.
ETC_SECRETS: Final = (
    "shadow",
    "shadow-",
    "gshadow",
    "gshadow-",
    "ssh",
    "ssl/private",
    "sudoers",
    "sudoers.d",
    "security/opasswd",
    "machine-id",
)
USER_NAME: Final = "wrenn-user"
USER_UID: Final = 1000
USER_HOME: Final = f"/home/{USER_NAME}"


def overlay_plan(layers: Sequence[Path], base: Path, directory: Path) -> list[dict[str, Any]]:
    """The overlay mounts of a capsule's root: ``/`` and the system directories.

    Each lists its lower directories (the template's layers, newest first, then the base
    skeleton, the filtered ``/etc`` or the host's own directory) and the capsule's upper
    and work directories under ``directory``.
    """
    overlays = []
    extra = [name for name in PACKAGE_DIRS if Path(f"/{name}").is_dir()]
    for target in ("", *(f"/{name}" for name in (*SYSTEM_DIRS, *extra))):
        key = target.strip("/") or "root"
        lowers = [str(layer / key) for layer in layers if (layer / key).is_dir()]
        if key == "root":
            lowers.append(str(base / "skeleton"))
        elif key == "etc":
            lowers.append(str(base / "etc"))
        else:
            if (base / key).is_dir():  # the base template's own files (sudo)
                lowers.append(str(base / key))
            lowers.append(target)
        overlays.append(
            {
                "target": target,
                "lowers": lowers,
                "upper": str(directory / "upper" / key),
                "work": str(directory / "work" / key),
            }
        )
    return overlays


def populate_reduced_root(root: Path, layers: Sequence[Path]) -> None:
    """The reduced-isolation root: a home, a tmp, and the layers' files copied in."""
    (root / USER_HOME.lstrip("/")).mkdir(parents=True, exist_ok=True)
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    for layer in reversed(layers):
        src = layer / "root"
        if src.is_dir():
            _copy_tree(src, root)


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _copy_tree(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", f"{src}/.", str(dst)], check=True)


def copy_layers(capsule_upper: Path, target: Path, names: Sequence[str]) -> None:
    """Copy a capsule's upper directories into a template layer (whiteouts included).

    Under a user namespace the capsule's files are owned by its host id range (the
    owner of its upper root is the range's base): the layer gets them back as ids
    0..65535, the form every capsule sees template layers in.
    """
    target.mkdir(parents=True, exist_ok=True)
    try:
        owner = (capsule_upper / "root").stat().st_uid
    except OSError:
        owner = 0
    for name in names:
        src = capsule_upper / name
        if src.is_dir():
            _copy_tree(src, target / name)
            if owner >= FIRST_BASE:
                shift_tree(target / name, owner)


def du(path: Path) -> int:
    """Disk space used under ``path`` (allocated blocks; links not followed)."""
    total = 0
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        else:
                            total += entry.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def prepare_base(base: Path) -> None:
    """Create the base template: a root skeleton and the ``/etc`` layer with wrenn-user."""
    skeleton = base / "skeleton"
    for rel, mode in (
        ("home", 0o755),
        ("root", 0o700),
        ("tmp", 0o1777),
        ("run", 0o755),
        ("proc", 0o555),
        ("dev", 0o755),
        ("sys", 0o555),
        ("mnt", 0o755),
        ("srv", 0o755),
        ("usr", 0o755),
        ("etc", 0o755),
        ("opt", 0o755),
        ("var", 0o755),
        ("var/tmp", 0o1777),
        ("var/log", 0o755),
        ("var/cache", 0o755),
        ("var/lib", 0o755),
        ("var/lock", 0o1777),
        *((name, 0o755) for name in PACKAGE_DIRS),
    ):
        (skeleton / rel).mkdir(parents=True, exist_ok=True)
        os.chmod(skeleton / rel, mode)
    home = skeleton / USER_HOME.lstrip("/")
    home.mkdir(parents=True, exist_ok=True)
    for link in ("bin", "lib", "lib64", "sbin"):
        host = Path("/") / link
        target = skeleton / link
        if host.is_symlink() and not target.is_symlink():
            target.symlink_to(os.readlink(host))
        elif not host.is_symlink() and host.is_dir() and not target.exists():
            target.mkdir()
    etc = base / "etc"
    if not etc.exists():
        _filtered_etc(Path("/etc"), etc)
    passwd = [line for line in _read_lines("/etc/passwd") if not line.startswith(f"{USER_NAME}:")]
    passwd = [line for line in passwd if line.split(":")[2:3] != [str(USER_UID)]]
    passwd.append(f"{USER_NAME}:x:{USER_UID}:{USER_UID}:Wrenn user:{USER_HOME}:/bin/bash")
    (etc / "passwd").write_text("\n".join(passwd) + "\n")
    group = [line for line in _read_lines("/etc/group") if line.split(":")[2:3] != [str(USER_UID)]]
    group = [line for line in group if not line.startswith(f"{USER_NAME}:")]
    group.append(f"{USER_NAME}:x:{USER_UID}:")
    (etc / "group").write_text("\n".join(group) + "\n")
    (etc / "hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n")
    shadow = [f"{line.split(':')[0]}:*:19000:0:99999:7:::" for line in passwd]
    (etc / "shadow").write_text("\n".join(shadow) + "\n")
    os.chmod(etc / "shadow", 0o640)
    sudo = base / "usr" / "bin" / "sudo"
    sudo.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SUDO, sudo)
    os.chmod(sudo, 0o755)  # never setuid: it asks the agent (see _inside/sudo.py)
    if Path("/usr/bin/sudo").exists():
        sudoers = etc / "sudoers.d"
        sudoers.mkdir(exist_ok=True)
        (sudoers / "wrenn-user").write_text(f"{USER_NAME} ALL=(ALL) NOPASSWD:ALL\n")
        os.chmod(sudoers / "wrenn-user", 0o440)
    if os.geteuid() == 0:
        os.chown(home, USER_UID, USER_UID)


def _filtered_etc(src: Path, dst: Path) -> None:
    """Copy the host's /etc: only what every account may read, and never ETC_SECRETS.

    The allow-list is the host's own permissions: a file is copied only if it is
    world-readable (a directory, only if world-listable), so a ``0640`` file that the
    host keeps from other accounts is kept from capsules too. Sockets, FIFOs and devices
    are never copied.
    """

    def ignore(directory: str, names: list[str]) -> set[str]:
        rel = os.path.relpath(directory, src)
        skip = set()
        for name in names:
            path = name if rel == "." else f"{rel}/{name}"
            if path in ETC_SECRETS:
                skip.add(name)
                continue
            try:
                st = os.lstat(os.path.join(directory, name))
            except OSError:
                skip.add(name)
                continue
            if stat.S_ISLNK(st.st_mode):
                continue  # a link shows only what its target's own rules allow
            if stat.S_ISDIR(st.st_mode):
                if st.st_mode & 0o005 != 0o005:  # not listable by everyone
                    skip.add(name)
            elif not stat.S_ISREG(st.st_mode) or not st.st_mode & stat.S_IROTH:
                skip.add(name)  # sockets, fifos, devices, and files not world-readable
        return skip

    shutil.copytree(src, dst, symlinks=True, ignore=ignore, ignore_dangling_symlinks=True)


def _read_lines(path: str) -> list[str]:
    try:
        return [line for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError:
        return []
