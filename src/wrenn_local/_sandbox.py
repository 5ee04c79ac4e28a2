"""Capsule sandboxes: what the host allows, and one sandbox per capsule.

Full isolation (root, bubblewrap, util-linux ``unshare``, overlayfs):

* root filesystem: overlayfs of the template's layers over the host's ``/usr`` and a
  filtered copy of its ``/etc`` (no password hashes, private keys or sudoers), with
  per-capsule upper directories, so writes anywhere stay in the capsule; ``/home``,
  ``/root``, ``/tmp``, ``/var`` and ``/opt`` start empty. Nothing else of the host is
  visible (not the server's data directory, not other capsules, not host logs).
* processes: own pid namespace (bubblewrap is its init); own network namespace with its
  own loopback; own IPC and UTS namespaces; commands run as ``wrenn-user`` (uid 1000).
* cgroups (v1 or v2): freezer for pause, memory and CPU limits, a pids limit, usage for
  metrics. Missing controllers are reported, not faked.
* clean-up: bubblewrap runs with ``--die-with-parent`` and every mount lives in the
  capsule's private mount namespace, so even a killed server leaves no process or mount.

Reduced isolation (no root, no bubblewrap or no overlayfs): the agent runs as the server's
user with its own home and tmp under the capsule directory and maps absolute paths there.
The level and the reasons are reported in ``/health``, the log and capsule metadata.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.abc
import attrs

from ._agent_client import AgentClient
from ._code_runner import (
    JUPYTER_PORT,
    SITE_IN_CAPSULE,
    free_port,
    launch_request,
    wait_until_serving,
)

__all__ = [
    "CgroupSet",
    "HostSupport",
    "Isolation",
    "Sandbox",
    "SandboxSpec",
    "copy_layers",
    "du",
    "prepare_base",
    "remove_cgroup_parents",
]

log = logging.getLogger("wrenn_local.sandbox")

SYSTEM_DIRS: Final = ("usr", "etc")
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
CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
AGENT_SOURCE: Final = Path(__file__).with_name("_agent.py")
BOOT_SOURCE: Final = Path(__file__).with_name("_boot.py")


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

    @classmethod
    def detect(cls, scratch: Path, *, force_reduced: bool = False) -> HostSupport:
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
        version, controllers = _detect_cgroups() if is_root else (None, frozenset[str]())
        full = not reasons and overlay_ok
        return cls(
            isolation=Isolation.FULL if full else Isolation.REDUCED,
            reasons=tuple(reasons),
            bwrap=bwrap,
            unshare=unshare,
            capsule_python=python if full else sys.executable,
            cgroup_version=version,
            cgroup_controllers=controllers,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "isolation": str(self.isolation),
            "reasons": list(self.reasons),
            "cgroups": f"v{self.cgroup_version}" if self.cgroup_version else "unavailable",
            "controllers": sorted(self.cgroup_controllers),
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


def _detect_cgroups() -> tuple[int | None, frozenset[str]]:
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

    def create(self, *, vcpus: int, memory_mb: int) -> list[str]:
        """Create the groups and set limits; return the ``cgroup.procs`` files to join."""
        for path in self._dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        if self.version == 2:
            parent = self._dirs["unified"].parent
            with contextlib.suppress(OSError):
                (parent / "cgroup.subtree_control").write_text("+cpu +memory +pids")
            self._write("unified", "memory.max", str(memory_mb * 1024 * 1024))
            self._write("unified", "cpu.max", f"{vcpus * 100000} 100000")
            self._write("unified", "pids.max", "4096")
        else:
            self._write("memory", "memory.limit_in_bytes", str(memory_mb * 1024 * 1024))
            self._write("cpu", "cpu.cfs_period_us", "100000")
            self._write("cpu", "cpu.cfs_quota_us", str(vcpus * 100000))
            self._write("pids", "pids.max", "4096")
        return [str(path / "cgroup.procs") for path in self._dirs.values()]

    def _write(self, controller: str, name: str, value: str) -> None:
        path = self._dirs.get(controller)
        if path is None:
            return
        try:
            (path / name).write_text(value)
        except OSError as exc:
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
        if self.version == 2:
            self._write("unified", "cgroup.freeze", "1" if frozen else "0")
            want = "frozen 1" if frozen else "frozen 0"
            for _ in range(500):
                events = self._read("unified", "cgroup.events") or ""
                if want in events:
                    return
                await anyio.sleep(0.01)
            return
        self._write("freezer", "freezer.state", "FROZEN" if frozen else "THAWED")
        want = "FROZEN" if frozen else "THAWED"
        for _ in range(500):
            if (self._read("freezer", "freezer.state") or "").strip() == want:
                return
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

    def remove(self) -> None:
        for path in self._dirs.values():
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    _kill_cgroup(path)
                    import time

                    time.sleep(0.02)


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


@attrs.define
class SandboxSpec:
    capsule_id: str
    template: str
    vcpus: int
    memory_mb: int
    layers: list[Path]  # template layer directories, newest first
    directory: Path  # this capsule's directory under the data dir
    hide: list[str]  # host paths that must not show inside (the data dir)
    services: tuple[str, ...] = ()  # started at boot: "jupyter" (code-runner template)
    jupyter_site: Path | None = None  # host site-packages with jupyter, for "jupyter"


class Sandbox:
    """One capsule's sandbox: its boot process, agent socket and cgroups."""

    def __init__(self, spec: SandboxSpec, support: HostSupport, base: Path) -> None:
        self.spec = spec
        self.support = support
        self.base = base
        self.run_dir = spec.directory / "run"
        self.socket_path = self.run_dir / "agent.sock"
        self.agent = AgentClient(self.socket_path)
        self.cgroups: CgroupSet | None = None
        if support.isolation is Isolation.FULL and support.cgroup_version is not None:
            self.cgroups = CgroupSet(
                support.cgroup_version, support.cgroup_controllers, spec.capsule_id
            )
        self.process: anyio.abc.Process | None = None
        # reduced isolation shares the host's network: give Jupyter a port of its own
        self.ports: dict[int, int] = {}
        if "jupyter" in spec.services and support.isolation is not Isolation.FULL:
            self.ports[JUPYTER_PORT] = free_port()
        self._stop_requested = False
        self._stopped = False

    @property
    def isolation(self) -> Isolation:
        return self.support.isolation

    @property
    def upper_dir(self) -> Path:
        return self.spec.directory / "upper"

    # -- start

    def _agent_config(self) -> dict[str, Any]:
        env = {
            "WRENN_SANDBOX": "true",
            "WRENN_SANDBOX_ID": self.spec.capsule_id,
            "WRENN_TEMPLATE_ID": self.spec.template,
        }
        if self.isolation is Isolation.FULL:
            return {
                "root": "/",
                "uid": USER_UID,
                "gid": USER_UID,
                "home": USER_HOME,
                "user": USER_NAME,
                "env": env,
                "switch_user": True,
                "ports": self.ports,
            }
        root = self.upper_dir / "root"
        return {
            "root": str(root),
            "uid": os.getuid(),
            "gid": os.getgid(),
            "home": USER_HOME,
            "user": USER_NAME,
            "env": env,
            "switch_user": False,
            "ports": self.ports,
        }

    def _prepare_dirs(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(AGENT_SOURCE, self.run_dir / "agent.py")
        (self.run_dir / "agent.json").write_text(json.dumps(self._agent_config()))
        if self.isolation is Isolation.REDUCED:
            root = self.upper_dir / "root"
            (root / USER_HOME.lstrip("/")).mkdir(parents=True, exist_ok=True)
            (root / "tmp").mkdir(parents=True, exist_ok=True)
            for layer in reversed(self.spec.layers):
                src = layer / "root"
                if src.is_dir():
                    _copy_tree(src, root)

    def _plan(self) -> dict[str, Any]:
        d = self.spec.directory
        merged = str(d / "merged")
        overlays = []
        for target in ("", *(f"/{name}" for name in SYSTEM_DIRS)):
            key = target.strip("/") or "root"
            lowers = [str(layer / key) for layer in self.spec.layers if (layer / key).is_dir()]
            if key == "root":
                lowers.append(str(self.base / "skeleton"))
            elif key == "etc":
                lowers.append(str(self.base / "etc"))
            else:
                lowers.append(target)
            overlays.append(
                {
                    "target": target,
                    "lowers": lowers,
                    "upper": str(d / "upper" / key),
                    "work": str(d / "work" / key),
                }
            )
        argv = [
            self.support.bwrap or "bwrap",
            "--die-with-parent",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname",
            self.spec.capsule_id[:28],
            "--bind",
            merged,
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--bind",
            str(self.run_dir),
            "/run/wrenn",
            *self._service_binds(),
            "--chdir",
            "/",
            "--clearenv",
            "--setenv",
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--setenv",
            "LANG",
            "C.UTF-8",
            "--",
            self.support.capsule_python,
            "-I",
            "/run/wrenn/agent.py",
            "/run/wrenn/agent.sock",
            "/run/wrenn/agent.json",
        ]
        procs = (
            self.cgroups.create(vcpus=self.spec.vcpus, memory_mb=self.spec.memory_mb)
            if (self.cgroups)
            else []
        )
        return {
            "merged": merged,
            "overlays": overlays,
            "hide": self.spec.hide,
            "cgroups": procs,
            "argv": argv,
        }

    def _service_binds(self) -> list[str]:
        if "jupyter" in self.spec.services and self.spec.jupyter_site is not None:
            return ["--ro-bind", str(self.spec.jupyter_site), SITE_IN_CAPSULE]
        return []

    async def start_services(self) -> None:
        """Start what the template runs at boot and wait until it serves."""
        if "jupyter" not in self.spec.services:
            return
        if self.spec.jupyter_site is None:
            raise RuntimeError("the code-runner template is not available on this server")
        if self.support.isolation is Isolation.FULL:
            python, site = self.support.capsule_python, SITE_IN_CAPSULE
        else:
            python, site = sys.executable, str(self.spec.jupyter_site)
        port = self.ports.get(JUPYTER_PORT, JUPYTER_PORT)
        await self.agent.call(launch_request(python, site, port))
        await wait_until_serving(self.agent)

    def _command(self) -> list[str]:
        if self.isolation is Isolation.FULL:
            plan_path = self.run_dir / "plan.json"
            plan_path.write_text(json.dumps(self._plan()))
            return [
                self.support.unshare or "unshare",
                "-m",
                "--propagation",
                "private",
                self.support.capsule_python,
                "-I",
                str(BOOT_SOURCE),
                str(plan_path),
            ]
        return [
            self.support.capsule_python,
            "-I",
            str(self.run_dir / "agent.py"),
            str(self.socket_path),
            str(self.run_dir / "agent.json"),
        ]

    def stop_requested(self) -> bool:
        """Whether :meth:`stop` was called (possibly by another task, across an await)."""
        return self._stop_requested

    async def start(self, *, timeout: float = 30.0) -> None:
        """Boot the sandbox and wait until its agent answers."""
        if self.stop_requested():
            raise RuntimeError("sandbox was stopped before it started")
        await anyio.to_thread.run_sync(self._prepare_dirs)
        command = await anyio.to_thread.run_sync(self._command)
        self.process = await anyio.open_process(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        if self.stop_requested():  # a stop raced the spawn (another task): honour it
            await self.stop()
            raise RuntimeError("sandbox was stopped while starting")
        with anyio.fail_after(timeout):
            while True:
                if self.process.returncode is not None:
                    err = b""
                    if self.process.stderr is not None:
                        with anyio.move_on_after(1):
                            err = await self.process.stderr.receive()
                    raise RuntimeError(f"sandbox failed to boot: {err.decode(errors='replace')}")
                if self.socket_path.exists() and await self.agent.ping():
                    return
                await anyio.sleep(0.02)

    # -- pause / resume

    async def freeze(self, frozen: bool) -> None:
        if self.cgroups is not None and self.cgroups.can_freeze:
            await self.cgroups.freeze(frozen)
            return
        signum = signal.SIGSTOP if frozen else signal.SIGCONT
        for pid in self._tree_pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signum)

    def _tree_pids(self) -> list[int]:
        if self.process is None:
            return []
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
        out, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, []))
        return out

    # -- usage

    def memory_bytes(self) -> int:
        if self.cgroups is not None:
            value = self.cgroups.memory_bytes()
            if value is not None:
                return value
        total = 0
        for pid in self._tree_pids():
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int((Path(f"/proc/{pid}/statm")).read_text().split()[1]) * 4096
        return total

    def cpu_percent(self, now: float, vcpus: int) -> float:
        return self.cgroups.cpu_percent(now, vcpus) if self.cgroups is not None else 0.0

    def disk_bytes(self) -> int:
        return du(self.upper_dir)

    # -- stop

    async def stop(self) -> None:
        """Kill every process of the sandbox and wait for them (bounded, shielded)."""
        if self._stop_requested and self._stopped:
            return  # already done (a destroy racing a boot may call this twice)
        self._stop_requested = True
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            if self.process is None:
                return  # never started (start() checks the request and will not spawn)
            if self.cgroups is not None and self.cgroups.can_freeze:
                await self.cgroups.freeze(False)
            if self.process.returncode is None:
                if self.isolation is Isolation.REDUCED:
                    for pid in self._tree_pids():
                        with contextlib.suppress(OSError):
                            os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
            if self.process.stderr is not None:
                await self.process.stderr.aclose()
            if self.cgroups is not None:
                await anyio.to_thread.run_sync(self.cgroups.remove)
            self._stopped = True

    async def remove_files(self) -> None:
        self.agent.close()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_rmtree, self.spec.directory)


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _copy_tree(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", f"{src}/.", str(dst)], check=True)


def copy_layers(capsule_upper: Path, target: Path, names: Sequence[str]) -> None:
    """Copy a capsule's upper directories into a template layer (whiteouts included)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        src = capsule_upper / name
        if src.is_dir():
            _copy_tree(src, target / name)


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
    if Path("/usr/bin/sudo").exists():
        sudoers = etc / "sudoers.d"
        sudoers.mkdir(exist_ok=True)
        (sudoers / "wrenn-user").write_text(f"{USER_NAME} ALL=(ALL) NOPASSWD:ALL\n")
        os.chmod(sudoers / "wrenn-user", 0o440)
    if os.geteuid() == 0:
        os.chown(home, USER_UID, USER_UID)


def _filtered_etc(src: Path, dst: Path) -> None:
    """Copy the host's /etc without its secrets (ETC_SECRETS) and without sockets."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        rel = os.path.relpath(directory, src)
        skip = set()
        for name in names:
            path = name if rel == "." else f"{rel}/{name}"
            if path in ETC_SECRETS:
                skip.add(name)
                continue
            full = os.path.join(directory, name)
            if not (os.path.isdir(full) or os.path.isfile(full) or os.path.islink(full)):
                skip.add(name)  # sockets, fifos, devices
            elif not os.path.islink(full) and not os.access(full, os.R_OK):
                skip.add(name)
        return skip

    shutil.copytree(src, dst, symlinks=True, ignore=ignore, ignore_dangling_symlinks=True)


def _read_lines(path: str) -> list[str]:
    try:
        return [line for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError:
        return []
