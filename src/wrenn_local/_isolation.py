"""What this host lets the server do, found once at start-up: the isolation level.

Full isolation needs root, bubblewrap, util-linux ``unshare``, ``/usr/bin/python3`` and a
working overlayfs over idmapped layers (user namespaces, Linux 5.19+); anything missing
gives reduced isolation, with the reasons reported in ``/health``, the log and capsule
metadata.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

import attrs

from ._cgroups import detect_cgroups
from ._inside import BOOT
from ._network import NetworkTools
from ._seccomp import program as seccomp_program

__all__ = ["HostSupport", "Isolation"]


class Isolation(StrEnum):
    FULL = "full"
    REDUCED = "reduced"


@attrs.frozen
class HostSupport:
    """What this host lets the server do, found once at start-up."""

    isolation: Isolation
    reasons: tuple[str, ...]
    bwrap: str | None
    unshare: str | None
    capsule_python: str
    cgroup_version: int | None  # 1, 2 or None
    cgroup_controllers: frozenset[str]
    # the capsule's syscall filter (full isolation), None where this arch has no table
    seccomp: bytes | None = None
    # outbound network for capsules (_network.py), or why there is none
    network: NetworkTools = attrs.field(
        factory=lambda: NetworkTools(None, None, None, None, ("not detected",))
    )

    @classmethod
    def detect(
        cls, scratch: Path, *, force_reduced: bool = False, network: bool = True
    ) -> HostSupport:
        reasons: list[str] = []
        bwrap = shutil.which("bwrap")
        unshare = shutil.which("unshare")
        is_root = os.geteuid() == 0
        python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
        if force_reduced:
            reasons.append("reduced isolation requested")
        if not is_root:
            reasons.append("not running as root (namespaces, overlayfs and cgroups need it)")
        if bwrap is None:
            reasons.append("bubblewrap (bwrap) is not installed")
        if unshare is None:
            reasons.append("util-linux unshare is not installed")
        if not Path("/usr/bin/python3").exists():
            reasons.append("no /usr/bin/python3 for the in-capsule agent")
        overlay_ok = False
        if not reasons:
            overlay_ok, why = _probe_overlay(unshare or "unshare", scratch)
            if not overlay_ok:
                reasons.append(f"overlayfs is not usable: {why}")
            else:
                overlay_ok, why = _probe_idmap(unshare or "unshare", python, scratch)
                if not overlay_ok:
                    reasons.append(f"idmapped mounts (user namespaces) are not usable: {why}")
        version, controllers = detect_cgroups() if is_root else (None, frozenset[str]())
        full = not reasons and overlay_ok
        seccomp = seccomp_program() if full else None
        if full and seccomp is None:
            reasons.append("no syscall filter for this architecture (x86_64 only)")
        return cls(
            isolation=Isolation.FULL if full else Isolation.REDUCED,
            reasons=tuple(reasons),
            bwrap=bwrap,
            unshare=unshare,
            capsule_python=python if full else sys.executable,
            cgroup_version=version,
            cgroup_controllers=controllers,
            seccomp=seccomp,
            network=NetworkTools.detect(full_isolation=full, disabled=not network),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "isolation": str(self.isolation),
            "reasons": list(self.reasons),
            "cgroups": f"v{self.cgroup_version}" if self.cgroup_version else "unavailable",
            "controllers": sorted(self.cgroup_controllers),
            "user_namespaces": self.isolation is Isolation.FULL,
            "syscall_filter": self.isolation is Isolation.FULL and self.seccomp is not None,
            "network": "on" if self.network.available else "off",
            "network_reasons": list(self.network.reasons),
        }


def _probe_overlay(unshare: str, scratch: Path) -> tuple[bool, str]:
    probe = scratch / "overlay-probe"
    shutil.rmtree(probe, ignore_errors=True)
    for d in ("lower", "upper", "work", "merged"):
        (probe / d).mkdir(parents=True, exist_ok=True)
    script = (
        "mount --make-rprivate / && mount -t overlay overlay -o "
        f"lowerdir={probe}/lower,upperdir={probe}/upper,workdir={probe}/work {probe}/merged"
    )
    try:
        result = subprocess.run(
            [unshare, "-m", "sh", "-c", script], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    return result.returncode == 0, result.stderr.strip()


def _probe_idmap(unshare: str, python: str, scratch: Path) -> tuple[bool, str]:
    """Whether overlayfs takes idmapped lower layers here (Linux 5.19 or later)."""
    probe = scratch / "idmap-probe"
    shutil.rmtree(probe, ignore_errors=True)
    probe.mkdir(parents=True)
    try:
        result = subprocess.run(
            [unshare, "-m", python, "-I", str(BOOT), "--probe", str(probe)],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    lines = result.stderr.strip().splitlines()
    return result.returncode == 0, lines[-1] if lines else ""
