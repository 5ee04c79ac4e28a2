"""One capsule's sandbox: the process tree that is the capsule, from boot to stop.

Full isolation: ``unshare -m`` runs ``_inside/boot.py``, which mounts the root planned by
``_rootfs.overlay_plan`` in a private mount namespace, joins the capsule's cgroups and
becomes bubblewrap with the command line built here: own pid namespace (bubblewrap is its
init), own network namespace with its own loopback, own IPC and UTS namespaces, the
agent as the first process, commands as ``wrenn-user`` (uid 1000). Bubblewrap runs with
``--die-with-parent`` and every mount lives in the capsule's private mount namespace,
so even a killed server leaves no process or mount.

Reduced isolation (no root, no bubblewrap or no overlayfs): the agent runs as the
server's user with its own home and tmp under the capsule directory and maps absolute
paths there.

Pause freezes the capsule's cgroup (or stops its process tree with SIGSTOP where there
is no freezer); resume thaws it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.abc
import attrs

from ._agent_client import AgentClient
from ._boot_process import BootChild, BootProcess, boot_process_for
from ._cgroups import ENDING_IN_BACKGROUND_SECONDS, CgroupSet
from ._code_runner import (
    JUPYTER_PORT,
    SITE_IN_CAPSULE,
    auth_header,
    free_port,
    launch,
    new_token,
    wait_until_serving,
)
from ._disk import copy_image, disk_quota_problem
from ._forker import Child, open_child
from ._inside import AGENT, BOOT
from ._isolation import HostSupport, Isolation
from ._network import CapsuleNetwork, write_resolv_conf
from ._proc import descendants
from ._rootfs import (
    USER_HOME,
    USER_NAME,
    USER_UID,
    du,
    overlay_plan,
    populate_reduced_root,
    rmtree,
)
from ._userns import IdRange

if TYPE_CHECKING:
    from ._ready_networks import ReadyNetworks

__all__ = ["BOOT_ENV", "Sandbox", "SandboxSpec"]

# The whole environment of a capsule's first processes (boot, bubblewrap, the agent):
# nothing of the server's environment is passed on, since /proc/1/environ is readable
# inside.
BOOT_ENV: Final = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
# Where boot.py moves the capsule's root and bind sources (a tmpfs of its own mount
# namespace) so that it can still reach them from the capsule's user namespace.
STAGE: Final = {"tmpfs": "/run", "root": "/run/wrenn-root", "binds": "/run/wrenn-binds"}
SUDO_SOCKET: Final = "/run/wrenn/sudo.sock"
IN_AGENT: Final = "/run/wrenn/agent.py"  # the agent's path inside


@attrs.define
class SandboxSpec:
    capsule_id: str
    template: str
    vcpus: int
    memory_mb: int
    layers: list[Path]  # template layer directories, newest first
    directory: Path  # this capsule's directory under the data dir
    hide: list[str]  # host paths that must not show inside (data dir, shared bases)
    services: tuple[str, ...] = ()  # started at boot: "jupyter" (code-runner template)
    jupyter_site: Path | None = None  # host site-packages with jupyter, for "jupyter"
    network: bool = False  # outbound network (_network.py), where the host has it
    disk_size_mb: int | None = None  # the writable layer's size (full isolation, _disk.py)


class Sandbox:
    """One capsule's sandbox: its boot process, agent socket and cgroups."""

    def __init__(self, spec: SandboxSpec, support: HostSupport, base: Path, data_dir: Path) -> None:
        self.spec = spec
        self.support = support
        self.base = base  # the base template (_rootfs.prepare_base, _shared_base.py)
        self.data_dir = data_dir  # the server's
        self.run_dir = spec.directory / "run"
        self.socket_path = self.run_dir / "agent.sock"
        self.agent = AgentClient(self.socket_path)
        self.cgroups: CgroupSet | None = None
        if support.isolation is Isolation.FULL and support.cgroup_version is not None:
            self.cgroups = CgroupSet(
                support.cgroup_version, support.cgroup_controllers, spec.capsule_id
            )
        self.process: Child | BootChild | None = None
        # reduced isolation shares the host's network: give Jupyter a port of its own
        self.ports: dict[int, int] = {}
        if "jupyter" in spec.services and support.isolation is not Isolation.FULL:
            self.ports[JUPYTER_PORT] = free_port()
        # headers the port proxy adds for a port (Jupyter's token: clients never hold it)
        self.port_headers: dict[int, list[tuple[bytes, bytes]]] = {}
        self._jupyter_token = new_token() if "jupyter" in spec.services else ""
        if self._jupyter_token:
            self.port_headers[JUPYTER_PORT] = [auth_header(self._jupyter_token)]
        self._stop_requested = False
        self._stopped = False
        self._background_until: float | None = None  # (stop: see there)
        self._disk_image = False
        self.disk_limit = "recorded, not enforced"
        self._listener: socket.socket | None = None
        # bytecode of the agent and of boot.py, compiled once per server (full isolation)
        self.cache = self.data_dir / "boot-cache"
        self._agent_code: Path | None = None
        self._boot_code: Path | None = None
        self.phases: dict[str, float] = {}  # boot timestamps (time.monotonic), by phase
        self.ids: IdRange | None = None  # the capsule's host id range (full isolation)
        self.network = self._network_hook()
        # booted for nobody yet (a warm spare): the lowest CPU weight (and a niced pasta)
        # until claimed
        self.background = False
        # where a cold boot takes a network made ahead (_ready_networks.py), if anywhere
        self.ready_networks: ReadyNetworks | None = None

    @property
    def isolation(self) -> Isolation:
        return self.support.isolation

    @property
    def upper_dir(self) -> Path:
        upper = self.spec.directory / "upper"
        if self._disk_image and self.process is not None and self.process.returncode is None:
            # on the capsule's disk image, mounted only in its own mount namespace
            return Path(f"/proc/{self.process.pid}/root") / str(upper).lstrip("/")
        return upper

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
                "sudo": SUDO_SOCKET,
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

    def _prepare(self) -> list[str]:
        """(In a worker thread.) Directories, disk image, plan: the boot's command."""
        self._prepare_dirs()
        return self._command()

    def _prepare_dirs(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.isolation is Isolation.FULL and self.ids is None:
            self.ids = IdRange.acquire()
        if self.isolation is Isolation.FULL and self.spec.disk_size_mb:
            problem = disk_quota_problem(self.support.unshare)
            if problem is None:
                copy_image(self.spec.directory / "disk.img", self.spec.disk_size_mb, self.cache)
                self._disk_image = True
                self.disk_limit = "enforced"
            else:
                self.disk_limit = f"recorded, not enforced: {problem}"
        if self.isolation is Isolation.FULL:
            self._agent_code = compiled(AGENT, self.support.capsule_python, self.cache, IN_AGENT)
            self._boot_code = compiled(BOOT, self.support.capsule_python, self.cache, str(BOOT))
        else:
            shutil.copyfile(AGENT, self.run_dir / "agent.py")
        (self.run_dir / "agent.json").write_text(json.dumps(self._agent_config()))
        if self.network is not None:
            write_resolv_conf(self.upper_dir / "etc")
        if self.isolation is Isolation.REDUCED:
            populate_reduced_root(self.upper_dir / "root", self.spec.layers)

    def _plan(self) -> dict[str, Any]:
        merged = str(self.spec.directory / "merged")
        overlays = overlay_plan(self.spec.layers, self.base, self.spec.directory)
        argv = [
            self.support.bwrap or "bwrap",
            "--die-with-parent",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname",
            self.spec.capsule_id[:28],
            "--bind",
            STAGE["root"],
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            *self._shm(),
            "--tmpfs",
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
            "-S",  # the agent is stdlib only: no site-packages scan at each boot
            IN_AGENT,  # bytecode where compiled: python tells it by its magic number
            f"fd:{self._listen_fd()}",
            "/run/wrenn/agent.json",
        ]
        procs = (
            self.cgroups.create(
                vcpus=self.spec.vcpus, memory_mb=self.spec.memory_mb, background=self.background
            )
            if (self.cgroups)
            else []
        )
        seccomp = None
        if self.support.seccomp is not None:
            seccomp = str(self.run_dir / "seccomp.bpf")
            Path(seccomp).write_bytes(self.support.seccomp)
        return {
            "merged": merged,
            "overlays": overlays,
            "userns": {"base": self.ids.base, "size": self.ids.size} if self.ids else None,
            "idmap_dir": str(self.spec.directory / "idmap"),
            "stage": STAGE,
            "binds": self._bind_sources(),
            "seccomp": seccomp,
            "hide": self.spec.hide,
            "cgroups": procs,
            "argv": argv,
            "env": BOOT_ENV,
            "data_dir": str(self.data_dir),
            # boot's own timings (benchmarks/boot.py), only when the server traces boots
            "trace": str(self.run_dir / "boot-trace.json") if _TRACE else None,
            "disk": (
                {
                    "image": str(self.spec.directory / "disk.img"),
                    "mount": str(self.spec.directory / "disk"),
                    "binds": ["upper", "work"],
                    "directory": str(self.spec.directory),
                }
                if self._disk_image
                else None
            ),
            "data": [
                [str(self._agent_code or AGENT), IN_AGENT],
                [str(self.run_dir / "agent.json"), "/run/wrenn/agent.json"],
            ],
        }

    def _listen_fd(self) -> int:
        """The agent's listening socket, made here and inherited by the agent.

        Nothing of the host is bound into the capsule for it: the socket file lives in
        the host's run directory, and the agent only holds the descriptor.
        """
        if self._listener is None:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            dir_fd = os.open(self.run_dir, os.O_PATH | os.O_DIRECTORY)
            try:  # a deep data directory would exceed the 108-byte socket path limit
                listener.bind(f"/proc/self/fd/{dir_fd}/{self.socket_path.name}")
            finally:
                os.close(dir_fd)
            os.chmod(self.socket_path, 0o600)
            listener.listen(socket.SOMAXCONN)  # bursts of streams (connect_unix retries)
            self._listener = listener
        return self._listener.fileno()

    def _service_binds(self) -> list[str]:
        if "jupyter" in self.spec.services and self.spec.jupyter_site is not None:
            return ["--ro-bind", f"{STAGE['binds']}/site", SITE_IN_CAPSULE]
        return []

    def _bind_sources(self) -> list[list[str]]:
        """Host directories boot.py mounts read-only under ``STAGE['binds']``."""
        if "jupyter" in self.spec.services and self.spec.jupyter_site is not None:
            return [[str(self.spec.jupyter_site), "site"]]
        return []

    def _shm(self) -> list[str]:
        """A writable ``/dev/shm``: a tmpfs of half the capsule's memory.

        Its pages are charged to the memory cgroup of the process that writes them (a
        process of the capsule), so it counts against the capsule's memory limit too.
        """
        size = max(self.spec.memory_mb, 2) * 1024 * 1024 // 2
        return ["--size", str(size), "--perms", "1777", "--tmpfs", "/dev/shm"]

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
        await launch(self.agent, python, site, port, self._jupyter_token)
        await wait_until_serving(self.agent, self._jupyter_token, stopped=self.stop_requested)

    def _command(self) -> list[str]:
        if self.isolation is Isolation.FULL:
            plan_path = self.run_dir / "plan.json"
            plan_path.write_text(json.dumps(self._plan()))
            return [
                self.support.unshare or "unshare",
                "-m",
                *(["-n"] if self.network else []),  # a netns of the host's root: _network.py
                "--propagation",
                "private",
                self.support.capsule_python,
                "-I",
                "-S",
                str(self._boot_code or BOOT),
                str(plan_path),
            ]
        return [
            self.support.capsule_python,
            "-I",
            str(self.run_dir / "agent.py"),
            str(self.socket_path),
            str(self.run_dir / "agent.json"),
        ]

    def to_foreground(self) -> None:
        """An account owns this sandbox now: its CPU weight, and its pasta's niceness,
        are every capsule's again."""
        self.background = False
        if self.cgroups is not None:
            self.cgroups.to_foreground()
        if self.network is not None:
            self.network.to_foreground()

    def stop_requested(self) -> bool:
        """Whether :meth:`stop` was called (possibly by another task, across an await)."""
        return self._stop_requested

    async def start(self, *, timeout: float = 30.0) -> None:
        """Boot the sandbox and wait until its agent answers."""
        if self.stop_requested():
            raise RuntimeError("capsule was stopped before it started")
        boot = boot_process_for(self.data_dir) if self.isolation is Isolation.FULL else None
        networks = self.ready_networks
        if boot is None or self.network is None or self.background:
            networks = None  # (a warm spare makes its own: it boots in the background)
        if networks is not None:
            networks.boot_started()  # no refill competes with this boot
        try:
            await self._start(boot, networks, timeout)
        finally:
            if networks is not None:
                networks.boot_ended()
        if _TRACE:
            marks = self.network.marks if self.network is not None else {}
            _trace({**self.phases, **marks}, self.run_dir / "boot-trace.json")

    async def _start(
        self, boot: BootProcess | None, networks: ReadyNetworks | None, timeout: float
    ) -> None:
        self.phases = {"start": time.monotonic()}
        command = await anyio.to_thread.run_sync(self._prepare)  # one worker-thread trip
        self.phases["prepared"] = time.monotonic()
        ready = networks.claim() if networks is not None else None
        if ready is not None:  # filtered and connected already: the boot joins it
            self.network = ready.network
            self.phases["network"] = time.monotonic()
        if self.network is not None:
            self.network.boot = boot
            self.network.background = self.background
        try:
            if boot is not None:  # a fork of the server's boot process (_boot_process.py)
                self.process = await boot.spawn(
                    self.run_dir / "plan.json",
                    network=self.network is not None,
                    pass_fds=(self._listener.fileno(),) if self._listener is not None else (),
                    netns=ready.netns if ready is not None else None,
                )
            else:
                # forked from a thread that outlives it: --die-with-parent follows the thread
                self.process = await open_child(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                    env=dict(BOOT_ENV),
                    pass_fds=(self._listener.fileno(),) if self._listener is not None else (),
                )
        finally:
            if self._listener is not None:  # the agent holds it now
                self._listener.close()
                self._listener = None
            if ready is not None:  # the boot holds the namespace now (or failed: stop())
                ready.release()
        if self.stop_requested():  # a stop raced the spawn (another task): honour it
            await self.stop()
            raise RuntimeError("capsule was stopped while starting")
        self.phases["spawned"] = time.monotonic()
        await self._attach_while_ready(timeout)
        self.phases["ready"] = time.monotonic()

    async def _attach_while_ready(self, timeout: float) -> None:
        """Attach the outbound network while the capsule boots and its agent starts.

        Both are waited for: the capsule is ``running`` (and runs capsule code: commands,
        services) only once its network filter is in place. Only our agent runs before.
        """
        assert self.process is not None
        failures: list[BaseException] = []

        async def attach(network: CapsuleNetwork, pid: int) -> None:
            try:
                await network.attach(pid)
            except Exception as exc:  # raised below, as the sequential path raised it
                failures.append(exc)
            self.phases["network"] = time.monotonic()

        async with anyio.create_task_group() as tg:
            if self.network is not None and not self.network.connected:  # (ready: it is)
                tg.start_soon(attach, self.network, self.process.pid)
            try:
                with anyio.fail_after(timeout):
                    await self._until_ready()
            except Exception as exc:  # not wrapped in the task group's exception group
                failures.insert(0, exc)  # boot's own failure says more than the network's
                tg.cancel_scope.cancel()
        if failures:
            raise failures[0]

    async def _until_ready(self) -> None:
        """Wait until the agent answers; fail at once (with boot's error) if it exits.

        Not polled: the listening socket exists before boot starts (the agent inherits
        it), so a ping is queued in its backlog and answered the moment the agent
        serves — the agent's first answer is the readiness signal. If the capsule dies
        first, every holder of the listener is gone: the ping fails at once, and so
        does the boot, with what boot wrote on standard error.
        """
        assert self.process is not None
        while True:
            if self.process.returncode is None and await self.agent.ping():
                return
            # ping failed: the agent is gone or (reduced isolation) not listening yet
            await anyio.sleep(0.005)
            if self.process.returncode is not None:
                err = b""
                if self.process.stderr is not None:
                    with anyio.move_on_after(1):
                        err = await self.process.stderr.receive()
                raise RuntimeError(f"capsule failed to boot: {err.decode(errors='replace')}")

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
        return descendants(self.process.pid)

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
        """Disk space the capsule's writable layer takes.

        On its disk image (``_disk.py``): the image's used blocks, from one ``statvfs``.
        Constant time however many names capsule code makes: a walk of the upper
        directory (what runs without an image) took the server's sampler, and a core of
        the server outside every capsule's CPU limit, ~10 s per million hard links of
        one file, again at every sample, and counted neither directories nor names.
        """
        if self._disk_image and self.process is not None and self.process.returncode is None:
            try:
                st = os.statvfs(self.upper_dir)
            except OSError:  # the capsule ended meanwhile: its image is gone
                return 0
            return (st.f_blocks - st.f_bfree) * st.f_frsize
        return du(self.upper_dir)

    # -- stop

    async def stop(self) -> None:
        """Kill every process of the sandbox and wait for them, then release its network
        and cgroups (bounded, shielded).

        The processes end in the background: killed ones still run, in the kernel, to
        free their memory (some 10 ms of CPU for an agent, as much for pasta), and in a
        fan-out that is CPU the capsules still in use want. So the capsule's cgroups get
        the lowest CPU weight before the kill (its pasta the highest niceness:
        :meth:`CapsuleNetwork.close`), and the default one back if they have not ended
        within :data:`ENDING_IN_BACKGROUND_SECONDS`, so that a busy host still sees the
        stop end soon. Nothing of the capsule runs its own code after the kill either way.

        Safe to call again, and at any point of a boot: a destroy racing a boot calls it
        once at once and once more after the boot has given up, so that what the boot
        made in between (its cgroups, say, before any process ran) is released too.
        """
        self._stop_requested = True
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            process = self.process  # None: never spawned (start() will not spawn now)
            if process is not None and not self._stopped:
                cgroups = self.cgroups if self.cgroups is not None and self.cgroups.made else None
                if cgroups is not None:
                    cgroups.to_background()
                    self._background_until = time.monotonic() + ENDING_IN_BACKGROUND_SECONDS
                    if cgroups.can_freeze:
                        await cgroups.freeze(False)  # a frozen process cannot die
                if process.returncode is None:
                    if self.isolation is Isolation.REDUCED:
                        for pid in self._tree_pids():
                            with contextlib.suppress(OSError):
                                os.kill(pid, signal.SIGKILL)
                    kill_unreaped(process)
                    if cgroups is not None and self._background_until is not None:
                        left = self._background_until - time.monotonic()
                        with anyio.move_on_after(max(left, 0.0)):
                            await process.wait()
                        if process.returncode is None:
                            cgroups.to_foreground()
                    await process.wait()
                if process.stderr is not None:
                    await process.stderr.aclose()
                self._stopped = True
            if self.network is not None:
                await self.network.close()
            if self.cgroups is not None and self.cgroups.made:
                # (the rest of the capsule's processes may still be ending: the removal
                # waits for them, and gives them the default weight back when it is time)
                remove = functools.partial(
                    self.cgroups.remove, background_until=self._background_until
                )
                await anyio.to_thread.run_sync(remove)

    def _network_hook(self) -> CapsuleNetwork | None:
        """The capsule's outbound network (``_network.py``), or None: only its loopback."""
        tools = self.support.network
        if not self.spec.network or self.isolation is not Isolation.FULL or not tools.available:
            return None
        return CapsuleNetwork(tools, self.run_dir)

    async def remove_files(self) -> None:
        self.agent.close()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(rmtree, self.spec.directory)
        if self.ids is not None:  # its files are gone: the range may serve another capsule
            self.ids.release()
            self.ids = None


def kill_unreaped(process: Child | BootChild | anyio.abc.Process) -> None:
    """SIGKILL a child without reaping it.

    ``Popen.kill()`` polls first (CPython 3.9+, against signalling a reused pid), and that
    poll reaps a child that has just died. Under asyncio the child watcher's thread is
    waiting for that child too; it then finds no child and logs "Unknown child process pid
    …, will report returncode 255" — and the exit status is lost. ``os.kill`` only
    signals: until the watcher has reaped it, the pid is still this child's (a zombie at
    worst), so it cannot name another process.
    """
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)


_compile_lock = threading.Lock()
_compiled: dict[tuple[str, str, str, int], Path | None] = {}
_COMPILE: Final = (
    "import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2],"
    " dfile=sys.argv[3], doraise=True,"
    " invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)"
)


def compiled(source: Path, python: str, cache: Path, shown_as: str) -> Path | None:
    """``source`` compiled to bytecode by ``python`` (the capsule's), once per server.

    A script given to ``python`` is compiled at every start (~19 ms for the agent);
    its bytecode, made by the same interpreter, starts at once (it keeps the source's
    name inside: the interpreter tells bytecode by its magic number). ``shown_as`` is the
    file name tracebacks show (the agent's path inside: no host path shows in the
    capsule). The file is keyed by the source's and the interpreter's contents, so
    an upgrade of either makes a new one. None if it cannot be made: the source runs.
    """
    key = (str(source), python, str(cache), source.stat().st_mtime_ns)
    with _compile_lock:
        if key in _compiled:
            known = _compiled[key]
            if known is None or known.exists():
                return known
        target: Path | None = None
        try:
            py = os.stat(python)
            digest = hashlib.sha256(source.read_bytes())
            digest.update(f"{python}:{py.st_ino}:{py.st_size}:{py.st_mtime_ns}".encode())
            target = cache / f"{source.stem}-{digest.hexdigest()[:20]}.pyc"
            if not target.exists():
                cache.mkdir(parents=True, exist_ok=True, mode=0o700)
                partial = target.with_suffix(f".{os.getpid()}.partial")
                subprocess.run(
                    [python, "-I", "-S", "-c", _COMPILE, str(source), str(partial), shown_as],
                    check=True,
                    capture_output=True,
                    timeout=60,
                )
                partial.rename(target)
        except (OSError, subprocess.SubprocessError):
            target = None
        _compiled[key] = target
        return target


_TRACE: Final = os.environ.get("WRENN_LOCAL_BOOT_TRACE", "")


def _trace(phases: dict[str, float], boot_marks: Path) -> None:
    """Append one boot's phases (the server's and boot.py's, ``time.monotonic()`` of
    one clock) to ``$WRENN_LOCAL_BOOT_TRACE`` (benchmarks/boot.py)."""
    with contextlib.suppress(OSError, ValueError):
        phases = {**phases, **json.loads(boot_marks.read_text())}
    with contextlib.suppress(OSError), open(_TRACE, "a") as fh:
        fh.write(json.dumps(phases) + "\n")
