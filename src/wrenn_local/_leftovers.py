"""What a killed server left behind in its data directory, reaped before a new one starts.

A server stopped by SIGINT/SIGTERM destroys every capsule. One killed by SIGKILL cannot:
bubblewrap's ``--die-with-parent`` kills a running capsule with it, but a *paused*
capsule's processes are frozen and cannot die until thawed, and in reduced isolation the
agent is an ordinary process that outlives its server. A server started on the same
``--data-dir`` therefore first, for every capsule directory it finds there: kills the
capsule's processes (those in its cgroups, and in reduced isolation every process
descended from an agent started from that directory) and thaws them so they die,
removes its cgroups, unmounts anything still mounted under the data directory, and
removes the capsule's directory. Only capsules of *this* data directory are touched:
other servers on the same machine keep theirs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from ._cgroups import CGROUP_ROOT
from ._proc import descendants

__all__ = ["reap_leftovers"]

log = logging.getLogger("wrenn_local")


def reap_leftovers(data_dir: Path) -> list[str]:
    """Reap the capsules a previous server left in ``data_dir``; their IDs.

    Its ready networks' files go too (``_ready_networks.py``; their pastas died with
    that server's boot process)."""
    shutil.rmtree(data_dir / "networks", ignore_errors=True)
    capsules = data_dir / "capsules"
    if not capsules.is_dir():
        return []
    ids = sorted(p.name for p in capsules.iterdir() if p.is_dir())
    if not ids:
        return []
    for capsule_id in ids:
        groups = _cgroup_dirs(capsule_id)
        for _ in range(250):  # at most ~5 s per capsule
            pids = _pids_in(groups) | _agent_trees(capsules / capsule_id)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            _thaw(groups)
            time.sleep(0.02)
        for group in groups:
            with contextlib.suppress(OSError):
                group.rmdir()
    _unmount_under(data_dir)
    for capsule_id in ids:
        shutil.rmtree(capsules / capsule_id, ignore_errors=True)
    log.warning("reaped %d capsule(s) a killed server left in %s", len(ids), data_dir)
    return ids


def _cgroup_dirs(capsule_id: str) -> list[Path]:
    found = [CGROUP_ROOT / "wrenn-local" / capsule_id]
    found += CGROUP_ROOT.glob(f"*/wrenn-local/{capsule_id}")
    return [path for path in found if path.is_dir()]


def _pids_in(groups: list[Path]) -> set[int]:
    pids: set[int] = set()
    for group in groups:
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in (group / "cgroup.procs").read_text().split())
    return pids


def _thaw(groups: list[Path]) -> None:
    for group in groups:
        for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            if (group / name).exists():
                with contextlib.suppress(OSError):
                    (group / name).write_text(value)


def _agent_trees(directory: Path) -> set[int]:
    """Processes descended from an agent started from ``directory`` (reduced isolation,
    where the agent's command line names its host path)."""
    marker = str(directory / "run" / "agent.py").encode()
    roots: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if marker in (entry / "cmdline").read_bytes():
                    roots.append(int(entry.name))
    return set(descendants(*roots)) if roots else set()


def _unmount_under(data_dir: Path) -> None:
    prefix = str(data_dir).rstrip("/") + "/"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    points = [line.split()[4] for line in lines if len(line.split()) > 4]
    # deepest first (mount points are octal-escaped in mountinfo: spaces show as \040)
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True, timeout=10)
