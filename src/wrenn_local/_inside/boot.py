"""Capsule boot, run as root inside a fresh private mount namespace (``unshare -m``).

1. It makes the capsule's user namespace (its ids 0..65535 are a host range of its own,
   ``_userns.py``) and mounts the capsule's copy-on-write root: overlayfs over the
   template's layers and the host's system directories, each seen through an idmapped
   mount (so the capsule's root owns them), with the capsule's own upper directories on
   top (owned by its host range).
2. It moves that root onto a tmpfs of its own (the data directory is not reachable from
   the capsule's user namespace), joins the capsule's cgroups and makes the capsule's
   network namespace (:func:`new_network_namespace`, owned by the host's user namespace).
3. It joins the capsule's user namespace as its root and becomes bubblewrap, which adds
   mount, pid, IPC, UTS and cgroup namespaces (owned by the capsule's user namespace),
   loads the syscall filter (``_seccomp.py``) and starts the agent as the capsule's
   first process.

Every mount lives only in this namespace: when the capsule's last process exits, the
kernel drops them all, so nothing can be left mounted on the host.

Usage: python -I boot.py <plan.json>   (the plan is written by ``_sandbox.py``)
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import shutil
import socket
import struct
import sys
import time

# Syscalls of the new mount API (the same numbers on every architecture).
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442
OPEN_TREE_CLONE = 1
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_IDMAP = 0x100000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _check(result: int) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def _syscall(number: int, *args: object) -> int:
    return _check(_libc.syscall(ctypes.c_long(number), *args))


MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]


def mount(
    source: str | None, target: str, fstype: str | None, options: str = "", flags: int = 0
) -> None:
    """mount(2) directly: no ``mount`` process per mount (boot time is measured)."""
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            options.encode() if options else None,
        )
    )


LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A
LO_FLAGS_AUTOCLEAR = 4


def mount_image(image: str, target: str) -> None:
    """Loop-mount the ext4 ``image`` at ``target``, like ``mount -o loop`` but in-process.

    A free loop device is configured in one ``LOOP_CONFIGURE`` ioctl (Linux 5.8) with
    auto-clear, so it is released when the capsule's mount namespace drops the mount.
    Another boot may take the same free device first (EBUSY): then the next free one is
    tried. Kernels without ``LOOP_CONFIGURE`` use ``mount -o loop``.
    """
    backing = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(64):
            control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
            try:
                number = fcntl.ioctl(control, LOOP_CTL_GET_FREE)
            finally:
                os.close(control)
            device = f"/dev/loop{number}"
            loop = os.open(device, os.O_RDWR | os.O_CLOEXEC)
            try:
                # struct loop_config: fd, block_size, loop_info64 (lo_flags at 52), reserved
                config = bytearray(304)
                struct.pack_into("II", config, 0, backing, 0)
                struct.pack_into("I", config, 8 + 52, LO_FLAGS_AUTOCLEAR)
                try:
                    fcntl.ioctl(loop, LOOP_CONFIGURE, bytes(config))
                except OSError as exc:
                    if exc.errno == errno.EBUSY:
                        continue  # taken by another boot between the two calls
                    if exc.errno in (errno.EINVAL, errno.ENOTTY):
                        import subprocess  # only here: its import is a boot cost

                        subprocess.run(["mount", "-o", "loop", image, target], check=True)
                        return
                    raise
                # the mount holds the device from here; auto-clear frees it after
                mount(device, target, "ext4")
                return
            finally:
                os.close(loop)
        raise OSError(errno.EBUSY, "no free loop device")
    finally:
        os.close(backing)


def make_user_namespace(base: int, size: int) -> int:
    """A new user namespace mapping ids 0..size-1 to base..base+size-1 on the host.

    A forked child creates it (the kernel needs a process in a namespace to write its
    maps), says so on a pipe (not polled) and exits once the maps are written; the
    returned descriptor keeps the namespace alive.
    """
    read_end, write_end = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: unshare, say so, then wait for the parent to be done
        try:
            os.close(write_end)
            os.close(ready_r)
            _check(_libc.unshare(CLONE_NEWUSER))
            os.write(ready_w, b"u")
            os.read(read_end, 1)
        finally:
            os._exit(0)
    os.close(read_end)
    os.close(ready_w)
    try:
        # end of file instead: the child failed to unshare and has exited
        if os.read(ready_r, 1) != b"u":
            raise OSError("the user namespace helper could not make the namespace")
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "w") as fh:
                fh.write(f"0 {base} {size}\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(write_end)
        os.waitpid(pid, 0)


def join_cgroups(procs_files: list[str]) -> int | None:
    """Move this process into the capsule's cgroups from a forked helper.

    Each move waits for the kernel's cgroup lock (an RCU grace period per hierarchy:
    ~10 ms on a cgroup v1 host), so a child makes them while this process mounts the
    capsule's root; :func:`joined` waits for it. Returns the child's pid, or None if
    there is nothing to join. (A thread would do, but the user namespace is joined
    later and only a single-threaded process may join one.)

    The helper writes a pid, and a pid outlives its process: if this process is killed
    (a destroy racing the boot) and reaped while the helper waits for the lock, its pid
    may name a new process of the host by the time of the write, which would move that
    process into the capsule's cgroups (to be starved as a spare's, or killed with
    them). So the boot process does not reap this process while the helper lives (the
    helper holds its reap gate: :func:`serve`), and the helper writes nothing once this
    process has died (it is reparented then: its parent is another).
    """
    if not procs_files:
        return None
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            for procs_file in procs_files:
                with open(procs_file, "w") as fh:
                    if os.getppid() != parent:  # gone: the pid may be another's now
                        code = 1
                        break
                    fh.write(str(parent))
        except BaseException as exc:
            os.write(2, f"joining the capsule's cgroups failed: {exc}\n".encode())
            code = 1
        finally:
            os._exit(code)
    return pid


def joined(pid: int | None) -> None:
    """Wait for :func:`join_cgroups`'s helper; raise if it failed."""
    if pid is not None and os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0:
        raise OSError("could not join the capsule's cgroups")


def detached_tree(source: str, *, userns: int | None = None, readonly: bool = False) -> int:
    """A detached copy of the mount at ``source`` (idmapped and/or read-only)."""
    fd = _syscall(SYS_OPEN_TREE, AT_FDCWD, source.encode(), OPEN_TREE_CLONE | os.O_CLOEXEC)
    attr_set = (MOUNT_ATTR_IDMAP if userns is not None else 0) | (
        MOUNT_ATTR_RDONLY if readonly else 0
    )
    if attr_set:
        attr = ctypes.create_string_buffer(
            struct.pack("QQQQ", attr_set, 0, 0, userns if userns is not None else 0)
        )
        _syscall(SYS_MOUNT_SETATTR, fd, b"", AT_EMPTY_PATH, attr, 32)
    return fd


def attach(fd: int, target: str) -> None:
    """Mount the tree ``fd`` refers to (detached or not) at ``target``."""
    os.makedirs(target, exist_ok=True)
    _syscall(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, target.encode(), MOVE_MOUNT_F_EMPTY_PATH)
    os.close(fd)


def new_network_namespace() -> None:
    """The capsule's network namespace, with its loopback up.

    Made here, by host root, so it belongs to the host's initial user namespace: root
    inside the capsule (root of the capsule's own user namespace only) can use it but
    not reconfigure it (no interfaces, routes or filters of its own). Bubblewrap and
    everything in the capsule inherit it. If boot already runs in a network namespace
    other than its parent's (the server started it with ``unshare -n``, e.g. to attach
    outbound networking), that one is kept: the capsule never shares the server's.
    """
    try:
        inherited = os.readlink("/proc/self/ns/net") == os.readlink(f"/proc/{os.getppid()}/ns/net")
    except OSError:
        inherited = True  # the parent is gone: make one, never risk sharing
    if inherited:
        _check(_libc.unshare(CLONE_NEWNET))
    loopback_up()


def loopback_up() -> None:
    """Bring this network namespace's loopback up (a no-op if it is up)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, 0x8913, request))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(sock, 0x8914, struct.pack("16sH22x", b"lo", flags | 1))  # SIOCSIFFLAGS, UP


def enter_user_namespace(userns: int) -> None:
    """Become root of the capsule's user namespace (host ids base..): never host root."""
    _check(_libc.setns(userns, CLONE_NEWUSER))
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    os.close(userns)


def mount_overlay(
    lowers: list[str],
    upper: str,
    work: str,
    target: str,
    *,
    userns: int | None = None,
    idmap_dir: str = "",
    owner: int | None = None,
) -> None:
    os.makedirs(upper, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    os.makedirs(target, exist_ok=True)
    if userns is not None:
        # Every lower layer (host directories, the base template and template layers,
        # all owned by host ids 0..65535) is seen through an idmapped mount, so the
        # capsule's root owns it; the upper directory keeps the capsule's host ids.
        idmapped = []
        for lower in lowers:
            path = os.path.join(idmap_dir, str(len(os.listdir(idmap_dir))))
            attach(detached_tree(lower, userns=userns), path)
            idmapped.append(path)
        lowers = idmapped
    if owner is not None:
        os.chown(upper, owner, owner)
    # Overlay options show in the capsule's /proc/*/mountinfo as given: paths under the
    # data directory are given relative to it (the working directory), so its location
    # never shows inside.
    lowers, upper, work = [_relative(p) for p in lowers], _relative(upper), _relative(work)
    options = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
    mount("overlay", target, "overlay", options)


def _relative(path: str) -> str:
    cwd = os.getcwd()
    if path == cwd or path.startswith(cwd.rstrip("/") + "/"):
        return os.path.relpath(path, cwd)
    return path


def stage(merged: str, binds: list[list[str]], where: dict[str, str]) -> None:
    """Move the capsule's root, and mount bind sources read-only, onto a fresh tmpfs.

    Once boot has joined the capsule's user namespace it cannot traverse the data
    directory (0700, host root) any more, so bubblewrap takes the root and its bind
    sources from there (``where``: the tmpfs, the root and the binds directory; the
    tmpfs exists only in this mount namespace).
    """
    root = _syscall(SYS_OPEN_TREE, AT_FDCWD, merged.encode(), os.O_CLOEXEC)  # the mount itself
    sources = [(detached_tree(src, readonly=True), name) for src, name in binds]
    mount("tmpfs", where["tmpfs"], "tmpfs", "size=64k,mode=755")
    attach(root, where["root"])
    for fd, name in sources:
        attach(fd, f"{where['binds']}/{name}")


def main(plan_path: str) -> None:
    marks = {"boot_started": time.monotonic()}  # boot timings, for benchmarks/boot.py
    with open(plan_path) as fh:
        plan = json.load(fh)
    joining = join_cgroups(plan.get("cgroups", []))  # first: the longest wait, in a child
    mount(None, "/", None, flags=MS_REC | MS_PRIVATE)
    merged = plan["merged"]
    os.chdir(plan["data_dir"])
    ids = plan.get("userns")
    userns = make_user_namespace(ids["base"], ids["size"]) if ids else None
    marks["boot_userns"] = time.monotonic()
    idmap_dir = plan.get("idmap_dir", "")
    if idmap_dir:
        os.makedirs(idmap_dir, exist_ok=True)
    disk = plan.get("disk")
    if disk:  # the writable layers on the capsule's size-limited image (_disk.py)
        os.makedirs(disk["mount"], exist_ok=True)
        mount_image(disk["image"], disk["mount"])
        # overlayfs wants upper and work under one mount: both go to the image's own
        # mount; the capsule's ``upper`` shows the same files (the server reads them)
        for name in disk["binds"]:
            inner, outer = os.path.join(disk["mount"], name), os.path.join(disk["directory"], name)
            os.makedirs(outer, exist_ok=True)
            # what the server put there before boot (resolv.conf, say) moves onto the image
            shutil.copytree(outer, inner, symlinks=True, dirs_exist_ok=True)
            mount(inner, outer, None, flags=MS_BIND)
            for layer in plan["overlays"]:
                for key in ("upper", "work"):
                    if layer[key].startswith(outer + "/"):
                        layer[key] = inner + layer[key][len(outer) :]
    marks["boot_disk"] = time.monotonic()
    for layer in plan["overlays"]:
        mount_overlay(
            layer["lowers"],
            layer["upper"],
            layer["work"],
            merged + layer["target"],
            userns=userns,
            idmap_dir=idmap_dir,
            owner=ids["base"] if ids else None,
        )
    for hidden in plan.get("hide", []):
        target = merged + hidden
        if os.path.isdir(target):
            mount("tmpfs", target, "tmpfs", "size=4k,mode=000")
    marks["boot_overlays"] = time.monotonic()
    joined(joining)
    marks["boot_mounted"] = time.monotonic()
    new_network_namespace()
    # The OOM killer never picks bubblewrap or the agent (inherited by both); the agent
    # raises every command it starts, so a memory hog goes first. Lowering a score needs
    # CAP_SYS_RESOURCE, which a container may not grant: then the agent stays at 0 and
    # raises commands to the top instead (agent.py, ``oom_first``).
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as fh:
        fh.write("-1000")
    # bubblewrap is the capsule's pid 1: its command line is readable inside, so it reads
    # its options (host paths among them) from a pipe and shows only ``bwrap --args N``
    # and the command it runs, which names paths inside the capsule only.
    argv = plan["argv"]
    split = argv.index("--")
    options, command = argv[1:split], argv[split + 1 :]
    # Files the capsule reads at boot (the agent and its configuration) are copied in by
    # bubblewrap from descriptors, not bound from the host: a bind mount would show its
    # host path in mountinfo.
    for source, target in plan.get("data", []):
        fd = os.open(source, os.O_RDONLY)
        os.set_inheritable(fd, True)
        options += ["--perms", "0644", "--ro-bind-data", str(fd), target]
    if plan.get("seccomp"):
        fd = os.open(plan["seccomp"], os.O_RDONLY)
        os.set_inheritable(fd, True)
        options += ["--seccomp", str(fd)]
    if plan.get("trace"):
        marks["boot_exec"] = time.monotonic()
        with open(plan["trace"], "w") as fh:
            json.dump(marks, fh)
    # last of all: the staging tmpfs covers the host's /run, where the data directory
    # (and the files opened above) may be
    stage(merged, plan.get("binds", []), plan["stage"])
    if userns is not None:
        enter_user_namespace(userns)
    encoded = b"".join(arg.encode() + b"\0" for arg in options)
    read_end, write_end = os.pipe()
    os.write(write_end, encoded)  # far below a pipe's buffer
    os.close(write_end)
    os.set_inheritable(read_end, True)
    os.execve(argv[0], [argv[0], "--args", str(read_end), *command], plan.get("env", {}))


def probe(scratch: str) -> None:
    """Check this kernel can do what :func:`main` does: an overlay over idmapped layers.

    Run by the server at start-up, in a mount namespace of its own; exits non-zero with
    the reason on standard error if it cannot.
    """
    mount(None, "/", None, flags=MS_REC | MS_PRIVATE)
    base = 2**31
    for name in ("lower", "upper", "work", "merged", "idmap"):
        os.makedirs(os.path.join(scratch, name), exist_ok=True)
    with open(os.path.join(scratch, "lower", "file"), "w"):
        pass
    userns = make_user_namespace(base, 65536)
    mount_overlay(
        [os.path.join(scratch, "lower")],
        os.path.join(scratch, "upper"),
        os.path.join(scratch, "work"),
        os.path.join(scratch, "merged"),
        userns=userns,
        idmap_dir=os.path.join(scratch, "idmap"),
        owner=base,
    )
    if os.stat(os.path.join(scratch, "merged", "file")).st_uid != base:
        raise SystemExit("idmapped lower layers are not honoured by overlayfs")


PR_SET_PDEATHSIG = 1
CLONE_NEWNS = 0x20000
MAX_FDS = 4  # descriptors a request may pass (standard error, the agent's listener)


def serve(control_fd: int, server_pid: int) -> None:
    """The server's boot process: one fork per capsule runs :func:`main`.

    Started once per server (``_boot_process.py``), single-threaded, with this module
    imported and its interpreter started: a capsule's boot then costs a fork, not an
    ``unshare`` process and a Python start-up. It dies with the server (a parent-death
    signal) and bubblewrap dies with it (``--die-with-parent``).

    Requests arrive on ``control_fd`` (a SOCK_SEQPACKET socket the server holds the
    other end of): JSON ``{"plan", "network", "fds"}`` with the descriptors to pass
    (SCM_RIGHTS) placed at the numbers ``fds`` gives. The answer is the child's pid and,
    as a descriptor, one end of a socket pair that gets the child's exit status (text)
    once it has ended. The child is reaped only when the server has closed that end,
    so its pid cannot name another process while the server may still signal it, and
    only once every process that inherited the child's *reap gate* (a pipe's write end,
    closed on exec) has closed it: the cgroup-join helper (:func:`join_cgroups`) writes
    the child's pid and must not find it naming another process.
    """
    import array
    import select
    import signal

    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0))
    if os.getppid() != server_pid:  # the server died before the signal was armed
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    control = socket.socket(fileno=control_fd)
    poller = select.poll()
    poller.register(control_fd, select.POLLIN)
    # pidfd -> (pid, our end of its status pair, its reap gate's read end)
    running: dict[int, tuple[int, int, int]] = {}
    ended: dict[int, tuple[int, int]] = {}  # our end of a status pair -> (pid, gate)
    gated: dict[int, int] = {}  # a reap gate's read end -> pid (a zombie until EOF)
    while True:
        for fd, _ in poller.poll():
            if fd == control_fd:
                msg, ancdata, _, _ = control.recvmsg(65536, socket.CMSG_SPACE(MAX_FDS * 4))
                fds = array.array("i")
                for level, kind, data in ancdata:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
                if not msg:
                    return  # the server closed its end: it is gone or stopping
                try:
                    pid, gate = _start_child(json.loads(msg), list(fds))
                finally:
                    for passed in fds:
                        os.close(passed)
                pidfd = os.pidfd_open(pid)
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                status_w, status_r = ours.detach(), theirs.detach()
                running[pidfd] = (pid, status_w, gate)
                poller.register(pidfd, select.POLLIN)
                try:
                    control.sendmsg(
                        [json.dumps({"pid": pid}).encode()],
                        [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [status_r]))],
                    )
                finally:
                    os.close(status_r)
            elif fd in running:  # a child ended: its status, without reaping it
                pid, status_w, gate = running.pop(fd)
                poller.unregister(fd)
                os.close(fd)
                result = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
                assert result is not None  # it has ended: the pidfd said so
                code = result.si_status if result.si_code == os.CLD_EXITED else -result.si_status
                with contextlib.suppress(OSError):  # the server closed it already
                    os.write(status_w, str(code).encode())
                ended[status_w] = (pid, gate)
                poller.register(status_w, 0)  # POLLHUP once the server closed its end
            elif fd in ended:  # the server has the status: the pid may go once ungated
                poller.unregister(fd)
                os.close(fd)
                pid, gate = ended.pop(fd)
                gated[gate] = pid
                poller.register(gate, select.POLLIN)  # end of file: nobody holds it
            elif fd in gated:  # (nothing is ever written to a gate: this is its end)
                poller.unregister(fd)
                os.close(fd)
                os.waitpid(gated.pop(fd), 0)


def _start_child(request: dict[str, object], fds: list[int]) -> tuple[int, int]:
    """Fork the child that boots one capsule: only the passed descriptors (and its reap
    gate's write end, closed on exec), a new session, private mount (and, when asked,
    network) namespace, then :func:`main`. Its pid and the gate's read end."""
    targets = [int(n) for n in request["fds"]]  # type: ignore[attr-defined]
    plan = str(request.get("plan"))
    flags = CLONE_NEWNS | (CLONE_NEWNET if request.get("network") else 0)
    if len(targets) != len(fds):
        raise OSError(errno.EINVAL, "descriptors do not match the request")
    parent = os.getpid()
    gate_r, gate_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.fork()
    except BaseException:
        os.close(gate_r)
        os.close(gate_w)
        raise
    if pid:
        os.close(gate_w)
        return pid, gate_r
    code = 1
    try:
        import signal

        os.close(gate_r)
        _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0))  # until bwrap's own
        if os.getppid() != parent:  # the boot process died before the signal was armed
            os._exit(1)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.setsid()
        # every passed descriptor above every target first, then onto its target
        low = max([*targets, 2]) + 1
        moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low) for fd in fds]
        gate = fcntl.fcntl(gate_w, fcntl.F_DUPFD_CLOEXEC, low)  # forks keep it, execs not
        null = os.open("/dev/null", os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        for fd, target in zip(moved, targets, strict=True):
            os.dup2(fd, target)  # inheritable: bubblewrap and the agent get it
        keep = sorted({0, 1, 2, *targets, gate})
        # nothing else of the boot process (its control socket, other capsules'
        # descriptors) reaches the capsule
        start = 0
        for fd in keep:
            if start < fd:  # an empty range would close everything (close_range(0, -1))
                os.closerange(start, fd)
            start = fd + 1
        os.closerange(start, 1 << 20)
        if "hold" in request:
            hold(
                [str(arg) for arg in request["hold"]],  # type: ignore[attr-defined]
                int(request.get("nice", 0)),  # type: ignore[call-overload]
            )
        if "run" in request:
            run_in_netns(
                [str(arg) for arg in request["run"]],  # type: ignore[attr-defined]
                int(request["netns"]),  # type: ignore[call-overload]
                str(request.get("input", "")),
            )
        if request.get("make_netns"):
            hold_network_namespace()
        if "join_netns" in request:  # a ready network (_ready_networks.py): joined, not made
            netns = int(request["join_netns"])  # type: ignore[call-overload]
            _check(_libc.setns(netns, CLONE_NEWNET))
            os.close(netns)  # nothing in the capsule holds a descriptor of it
            flags &= ~CLONE_NEWNET
        _check(_libc.unshare(flags))
        main(plan)
    except BaseException:
        with contextlib.suppress(BaseException):
            import traceback

            os.write(2, traceback.format_exc().encode(errors="replace"))
    finally:
        os._exit(code)


CLONE_NEWPID = 0x20000000


def run_in_netns(argv: list[str], netns: int, data: str) -> None:
    """Exec ``argv`` (``nft -f -``: a capsule's filter) in the network namespace
    ``netns`` (a descriptor), with ``data`` on its standard input.

    What ``nsenter --net=… nft`` did from the server: no ``nsenter`` process, no fork of
    the server. ``data`` is written to a pipe before the exec (a filter is a few KiB,
    far below a pipe's buffer).
    """
    _check(_libc.setns(netns, CLONE_NEWNET))
    os.close(netns)
    read_end, write_end = os.pipe()
    os.write(write_end, data.encode())
    os.close(write_end)
    os.dup2(read_end, 0)
    os.close(read_end)
    os.execv(argv[0], argv)


def hold_network_namespace() -> None:
    """Make a network namespace (owned by the host's user namespace, its loopback up) and
    stay in it until killed: the server opens it through ``/proc/<pid>/ns/net``, filters
    and connects it, and kills this process (the namespace lives on in its descriptors).
    A ready network for a later boot (``_ready_networks.py``)."""
    import signal

    _check(_libc.unshare(CLONE_NEWNET))
    loopback_up()
    while True:
        signal.pause()


def hold(argv: list[str], nice: int = 0) -> None:
    """Run ``argv`` (the capsule's pasta) at niceness ``nice`` in a new pid namespace;
    exit with its status.

    Its init (a fork of this process) has a parent-death signal: when this child ends
    (killed by the server, or with the boot process, which dies with the server), the
    whole namespace goes, pasta and anything it started.
    """
    import signal

    _check(_libc.unshare(CLONE_NEWPID))
    # open in this process until it ends: the init's check that it has not ended already
    alive_r, alive_w = os.pipe()
    init = os.fork()
    if init == 0:  # pid 1 of the new namespace
        code = 1
        try:
            os.close(alive_w)
            _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0))
            # Killed before the signal was armed (a destroy racing the boot), this process
            # sent none: its end of the pipe is closed. (getppid() cannot tell: the parent
            # is outside this pid namespace, so it reads 0 either way.)
            os.set_blocking(alive_r, False)
            try:
                if os.read(alive_r, 1) == b"":
                    os._exit(1)
            except BlockingIOError:
                pass  # still there: its death from now on sends the signal
            os.close(alive_r)
            child = os.fork()
            if child == 0:
                signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # pasta refuses an ignored one
                os.setpriority(os.PRIO_PROCESS, 0, nice)
                os.execv(argv[0], argv)
            code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) & 0xFF
        finally:
            os._exit(code)
    os.close(alive_r)
    os._exit(os.waitstatus_to_exitcode(os.waitpid(init, 0)[1]) & 0xFF)


if __name__ == "__main__":
    if sys.argv[1] == "--probe":
        probe(sys.argv[2])
    elif sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), int(sys.argv[3]))
    else:
        main(sys.argv[1])
