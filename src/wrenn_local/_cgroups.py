"""The cgroups of a capsule (v1 or v2): limits, freezing, usage, removal.

Each capsule gets ``/sys/fs/cgroup/wrenn-local/<capsule id>`` (v2) or one such directory
per controller (v1): memory and CPU limits, a pids limit, the freezer for pause, CPU and
memory usage for the metrics. Controllers the host lacks are reported, not faked.

A capsule nobody owns yet (a warm spare, _spares.py) runs in the *background*: its group
has the lowest CPU weight the kernel takes, so its boot only gets CPU that no owned
capsule wants. It is put back to the default weight when an account claims it. A
stopping capsule's group goes back to the background while its processes end (their
exit, which frees their memory, is CPU the capsules still in use want more).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Final

import anyio

__all__ = [
    "CGROUP_ROOT",
    "ENDING_IN_BACKGROUND_SECONDS",
    "CgroupSet",
    "detect_cgroups",
    "pids_limit",
    "remove_cgroup_parents",
]

log = logging.getLogger("wrenn_local.sandbox")

CGROUP_ROOT: Final = Path("/sys/fs/cgroup")

#: CPU weight of a background group and of a normal one: (v2 ``cpu.weight``, v1 ``cpu.shares``)
BACKGROUND_WEIGHT: Final = ("1", "2")
DEFAULT_WEIGHT: Final = ("100", "1024")
#: how long a stopping capsule's processes (and its pasta) may take to end in the
#: background before they get the default weight (niceness) back, so that a stop ends
#: soon on a busy host too (``Sandbox.stop``, ``CapsuleNetwork.close``)
ENDING_IN_BACKGROUND_SECONDS: Final = 1.0
#: how long removing a stopped capsule's groups is retried (all hierarchies together)
REMOVE_SECONDS: Final = 5.0


def detect_cgroups() -> tuple[int | None, frozenset[str]]:
    """The cgroup version mounted here (1, 2 or None) and the controllers it offers."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        wanted = {"cpu", "memory", "pids"}
        have = set((CGROUP_ROOT / "cgroup.controllers").read_text().split())
        return 2, frozenset((have & wanted) | {"freezer"})
    found = {
        name
        for name in ("freezer", "memory", "cpu", "cpuacct", "pids")
        if (CGROUP_ROOT / name / "cgroup.procs").exists()
    }
    return (1, frozenset(found)) if found else (None, frozenset())


class CgroupSet:
    """The cgroups of one capsule (v1: one directory per controller; v2: one directory)."""

    def __init__(self, version: int, controllers: frozenset[str], name: str) -> None:
        self.version = version
        self.controllers = controllers
        if version == 2:
            self._dirs = {"unified": CGROUP_ROOT / "wrenn-local" / name}
        else:
            self._dirs = {c: CGROUP_ROOT / c / "wrenn-local" / name for c in controllers}
        self._last_cpu: tuple[float, int] | None = None
        self.made = False  # directories created and not (all) removed yet
        # create() and remove() run in worker threads, and a destroy racing a boot runs
        # one while the other is under way: a removal waits for a creation to finish
        self._lock = threading.Lock()

    def create(self, *, vcpus: int, memory_mb: int, background: bool = False) -> list[str]:
        """Create the groups and set limits; return the ``cgroup.procs`` files to join.

        ``background``: the lowest CPU weight (see the module's docstring) until
        :meth:`to_foreground`.
        """
        with self._lock:
            self.made = True
            paths = self._create(vcpus=vcpus, memory_mb=memory_mb)
            if background:
                self._weigh(BACKGROUND_WEIGHT)
            return paths

    def to_foreground(self) -> None:
        """Give the groups the default CPU weight (a claimed spare: see the module)."""
        with self._lock:
            if self.made:
                self._weigh(DEFAULT_WEIGHT)

    def to_background(self) -> None:
        """Give the groups the lowest CPU weight again: a stopping capsule's processes
        end in the background (see :meth:`Sandbox.stop <wrenn_local._sandbox.Sandbox.stop>`)."""
        with self._lock:
            if self.made:
                self._weigh(BACKGROUND_WEIGHT)

    def _weigh(self, weight: tuple[str, str], *, quiet: bool = False) -> None:
        if "cpu" not in self.controllers:
            return
        if self.version == 2:
            self._write("unified", "cpu.weight", weight[0], quiet=quiet)
        else:
            self._write("cpu", "cpu.shares", weight[1], quiet=quiet)

    def _create(self, *, vcpus: int, memory_mb: int) -> list[str]:
        for path in self._dirs.values():
            _make_group_dir(path)
        if self.version == 2:
            parent = self._dirs["unified"].parent
            with contextlib.suppress(OSError):
                (parent / "cgroup.subtree_control").write_text("+cpu +memory +pids")
            self._write("unified", "memory.max", str(memory_mb * 1024 * 1024))
            self._write("unified", "cpu.max", f"{vcpus * 100000} 100000")
            self._write("unified", "pids.max", str(pids_limit()))
        else:
            self._write("memory", "memory.limit_in_bytes", str(memory_mb * 1024 * 1024))
            self._write("cpu", "cpu.cfs_period_us", "100000")
            self._write("cpu", "cpu.cfs_quota_us", str(vcpus * 100000))
            self._write("pids", "pids.max", str(pids_limit()))
        return [str(path / "cgroup.procs") for path in self._dirs.values()]

    def _write(self, controller: str, name: str, value: str, *, quiet: bool = False) -> None:
        path = self._dirs.get(controller)
        if path is None:
            return
        try:
            (path / name).write_text(value)
        except OSError as exc:
            if not quiet:
                log.warning("cgroup setting %s=%s failed: %s", name, value, exc)

    def _read(self, controller: str, name: str) -> str | None:
        path = self._dirs.get(controller)
        if path is None:
            return None
        try:
            return (path / name).read_text()
        except OSError:
            return None

    @property
    def can_freeze(self) -> bool:
        return "freezer" in self.controllers

    async def freeze(self, frozen: bool) -> None:
        """Freeze or thaw, and wait (at most 5 s) until the kernel says it is done."""
        if self.version == 2:
            self._write("unified", "cgroup.freeze", "1" if frozen else "0")
            want = "frozen 1" if frozen else "frozen 0"
            for _ in range(500):
                events = self._read("unified", "cgroup.events")
                if events is None or want in events:
                    return  # (None: the group is gone, so nothing in it is frozen)
                await anyio.sleep(0.01)
            return
        self._write("freezer", "freezer.state", "FROZEN" if frozen else "THAWED")
        want = "FROZEN" if frozen else "THAWED"
        for _ in range(500):
            state = self._read("freezer", "freezer.state")
            if state is None or state.strip() == want:
                return  # (None: the group is gone, so nothing in it is frozen)
            await anyio.sleep(0.01)

    def cpu_ns(self) -> int | None:
        if self.version == 2:
            stat = self._read("unified", "cpu.stat") or ""
            for line in stat.splitlines():
                if line.startswith("usage_usec"):
                    return int(line.split()[1]) * 1000
            return None
        raw = self._read("cpuacct", "cpuacct.usage")
        return int(raw) if raw and raw.strip().isdigit() else None

    def memory_bytes(self) -> int | None:
        name = "memory.current" if self.version == 2 else "memory.usage_in_bytes"
        raw = self._read("unified" if self.version == 2 else "memory", name)
        return int(raw) if raw and raw.strip().isdigit() else None

    def cpu_percent(self, now: float, vcpus: int) -> float:
        used = self.cpu_ns()
        if used is None:
            return 0.0
        last, self._last_cpu = self._last_cpu, (now, used)
        if last is None or now <= last[0]:
            return 0.0
        share = (used - last[1]) / 1e9 / (now - last[0]) / max(vcpus, 1) * 100
        return round(max(0.0, min(share, 100.0)), 2)

    def remove(self, *, background_until: float | None = None) -> None:
        """Remove the directories (their processes killed if any remain); ``made`` stays
        true if one could not be removed, so that a later call tries again.

        ``background_until``: a ``time.monotonic()`` after which processes that have
        not ended yet get the default CPU weight back (a stop let them end in the
        background until then: see :meth:`to_background`)."""
        with self._lock:
            self._remove(background_until)

    def _remove(self, background_until: float | None) -> None:
        left = False
        deadline = time.monotonic() + REMOVE_SECONDS
        for path in self._dirs.values():
            # its last processes are usually released a moment after the capsule's end
            # was seen, but on a loaded machine that has taken over a second (a spare
            # stopped mid-boot as the server went kept its group): retry soon, then every
            # 20 ms, for up to REMOVE_SECONDS (in a worker thread; a stop is bounded)
            delay = 0.001
            while True:
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    now = time.monotonic()
                    if now > deadline:
                        left = True
                        break
                    if background_until is not None and now >= background_until:
                        # (the stop should end soon now; v1: a cpu group removed
                        # already had no process left, so quiet if it is gone)
                        self._weigh(DEFAULT_WEIGHT, quiet=True)
                        background_until = None
                    _kill_cgroup(path)
                    time.sleep(delay)
                    delay = min(delay * 2, 0.02)
        self.made = left


def _make_group_dir(path: Path) -> None:
    """Create a capsule's directory and its ``wrenn-local`` parent.

    The parent is shared by every server on the machine, and a server that stops removes
    it when it is empty (:func:`remove_cgroup_parents`): it can vanish between our making
    it and our making the capsule's directory in it. Make both again then; a parent that
    keeps vanishing (a hundred times in a row) is an error.
    """
    for _ in range(100):
        try:
            path.mkdir(parents=True, exist_ok=True)
            return
        except FileNotFoundError:
            continue
    path.mkdir(parents=True, exist_ok=True)


def pids_limit() -> int:
    """Processes (threads included) one capsule may have: a sixteenth of the host's
    ``pid_max``, between 256 and 4,096, so that a fork bomb in one capsule leaves the
    host and the other capsules room to work."""
    try:
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        pid_max = 32768
    return max(256, min(4096, pid_max // 16))


def remove_cgroup_parents() -> None:
    """Remove the server's parent cgroups when no capsule of any server uses them."""
    for parent in (CGROUP_ROOT / "wrenn-local", *CGROUP_ROOT.glob("*/wrenn-local")):
        with contextlib.suppress(OSError):
            parent.rmdir()


def _kill_cgroup(path: Path) -> None:
    with contextlib.suppress(OSError):
        for pid in (path / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                os.kill(int(pid), signal.SIGKILL)
