"""Outbound network for one capsule: pasta in a network namespace the server owns.

The capsule's network namespace is made by ``unshare -n`` (run by the server as host
root, before bubblewrap), so it belongs to the host's initial user namespace: nothing in
the capsule — not even root of a capsule user namespace — holds ``CAP_NET_ADMIN`` over it.
Once the agent answers and before the capsule turns ``running`` (so before any capsule
code), the server, from the host side:

1. brings the capsule's loopback up and loads an nftables filter into that namespace
   (``nft -f -`` run by a fork of the boot process that joined it, else through
   ``nsenter --net=…``): output to the host's loopback, link-local, private,
   shared-address, multicast and reserved ranges, to every address of the host and to
   the network each is on (the host's LAN and gateway, whatever its range), is
   rejected; only the DNS forwarder's address is allowed, on UDP port 53;
2. once the filter is in place (never without it: see :meth:`CapsuleNetwork.attach`),
   starts ``pasta`` (Debian ``passt``) attached to it with ``--config-net`` (address and
   routes copied from the host), ``--no-map-gw`` (the gateway address does not lead to
   the host's loopback), ``-t none -u none -T none -U none`` (no port forwarded in either
   direction) and ``--dns-forward`` (the capsule's ``/etc/resolv.conf`` names that
   address; pasta sends those queries to the host's resolver).

pasta runs under a small holder, in a PID namespace of its own, which ends it when the
server closes its end of a pipe or dies (the pipe's end of file): destroy, stop and a
killed server all end pasta. Where the server has a boot process (``_boot_process.py``)
the holder is a fork of it (``boot.py``'s ``hold``: no Python start-up per capsule),
killed by the server or with the boot process, which dies with the server. pasta is not
in the capsule's cgroup, so pause leaves it running and the capsule's open connections
resume with it.

slirp4netns would do too; pasta was chosen because it configures the namespace itself
(no tap set-up inside), forwards DNS to the host's resolver by address mapping, has every
port forwarding off by switch, and splices TCP instead of running a guest TCP stack.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import anyio
import anyio.abc
import attrs

from ._boot_process import BootChild, BootProcess
from ._cgroups import ENDING_IN_BACKGROUND_SECONDS
from ._proc import children

__all__ = [
    "BLOCKED",
    "DNS_FORWARDER",
    "CapsuleNetwork",
    "NetworkTools",
    "host_addresses",
    "ruleset",
]

# The address the capsule's resolv.conf names; pasta maps it to the host's resolver.
DNS_FORWARDER: Final = "169.254.1.53"
# Destinations no capsule may send to, beside every address of the host itself.
BLOCKED: Final = (
    "0.0.0.0/8",  # "this network"
    "10.0.0.0/8",  # private
    "100.64.0.0/10",  # shared address space (carrier-grade NAT)
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local, the cloud metadata address
    "172.16.0.0/12",  # private
    "192.0.0.0/24",  # IETF protocol assignments
    "192.88.99.0/24",  # 6to4 relay anycast (deprecated): tunnels to an embedded address
    "192.168.0.0/16",  # private
    "198.18.0.0/15",  # benchmarking
    "224.0.0.0/3",  # multicast, reserved, broadcast
    "::/96",  # unspecified, loopback and IPv4-compatible (sit tunnels to ::a.b.c.d)
    "::ffff:0:0/96",  # IPv4-mapped
    "64:ff9b::/96",  # NAT64: would lead to the IPv4 ranges above
    "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215): likewise
    "100::/64",  # discard-only
    "2001::/32",  # Teredo: tunnels to an embedded IPv4 address
    "2002::/16",  # 6to4: tunnels to an embedded IPv4 address
    "fc00::/7",  # unique local
    "fec0::/10",  # site-local (deprecated, still found on old LANs)
    "fe80::/10",  # link-local
    "ff00::/8",  # multicast
)
TABLE: Final = "wrenn_capsule"
# pasta's niceness while its capsule is a warm spare (_spares.py): its start-up (some
# 10-20 ms of CPU, most of it clearing its buffers) runs outside the capsule's cgroups,
# so their low CPU weight does not cover it; the claim makes it 0, as every pasta's.
# A closing network's pasta gets it again for its end (CapsuleNetwork.close).
BACKGROUND_NICE: Final = 19
# The holder: pasta's grandparent. It makes a PID namespace whose init is pasta's parent
# (init dies with the holder: parent-death signal; the kernel then kills pasta) and
# watches its stdin, a pipe whose other end only the server holds: end of file means the
# server is gone, however it ended. (A parent-death signal on the holder itself would
# follow the *thread* that spawned it, and trio spawns from worker threads.)
_HOLDER: Final = """
import ctypes, os, select, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x20000000) != 0:  # CLONE_NEWPID
    os._exit(4)
init = os.fork()
if init == 0:  # pid 1 of the new namespace
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: the holder is single-threaded
    child = os.fork()
    if child == 0:
        os.dup2(os.open("/dev/null", os.O_RDONLY), 0)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # pasta refuses an ignored SIGPIPE
        os.setpriority(os.PRIO_PROCESS, 0, int(sys.argv[1]))  # pasta's niceness
        os.execv(sys.argv[2], sys.argv[2:])
    _, status = os.waitpid(child, 0)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
while True:
    ready, _, _ = select.select([0], [], [], 0.5)
    if ready and not os.read(0, 64):  # the server is gone
        os.kill(init, signal.SIGKILL)
        os.waitpid(init, 0)
        os._exit(0)
    pid, status = os.waitpid(init, os.WNOHANG)
    if pid:
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
"""


@attrs.frozen
class NetworkTools:
    """The host programs capsule networking needs, or why it is off."""

    pasta: str | None
    nft: str | None
    nsenter: str | None
    ip: str | None
    reasons: tuple[str, ...]

    @classmethod
    def detect(cls, *, full_isolation: bool, disabled: bool = False) -> NetworkTools:
        tools = {name: shutil.which(name) for name in ("pasta", "nft", "nsenter", "ip")}
        reasons = []
        if disabled:
            reasons.append("network turned off for this server")
        if not full_isolation:
            reasons.append("needs full isolation (reduced: capsules share the host's network)")
        if tools["pasta"] is None:
            reasons.append("pasta is not installed (Debian package passt)")
        if tools["nft"] is None:
            reasons.append("nft is not installed (Debian package nftables)")
        if tools["nsenter"] is None or tools["ip"] is None:
            reasons.append("util-linux nsenter or iproute2 ip is not installed")
        if tools["pasta"] is not None:
            tools["pasta"] = _pasta_build(tools["pasta"])
        return cls(reasons=tuple(reasons), **tools)

    @property
    def available(self) -> bool:
        return not self.reasons


def _pasta_build(pasta: str) -> str:
    """``pasta.avx2`` beside ``pasta`` where the CPU has AVX2, else ``pasta``.

    That is the build ``pasta`` itself picks: started as ``pasta`` on such a CPU, it
    executes ``pasta.avx2`` at once (a second ``execve`` and dynamic link, ~1 ms of CPU
    at every capsule boot); started as ``pasta.avx2`` it runs as it is.
    """
    fast = Path(pasta).with_name("pasta.avx2")
    try:
        flags = next(
            line
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
        )
    except (OSError, StopIteration):
        return pasta
    if "avx2" in flags.split() and os.access(fast, os.X_OK):
        return str(fast)
    return pasta


def host_addresses(*, networks: bool = False) -> list[str]:
    """Every address of the host's interfaces; empty if unreadable.

    With ``networks``, each as ``address/prefix``: the network it is on (the host's LAN
    and its gateway), or the address alone (``/32``, ``/128``) if that network is wider
    than :data:`_WIDEST_LAN` (not a LAN to block whole). Read at every capsule's attach
    (addresses change), so from the kernel directly (:func:`_netlink_addresses`);
    ``ip -j addr`` where netlink is refused.
    """
    with contextlib.suppress(OSError, struct.error):
        return _netlink_addresses(networks=networks)
    try:
        out = subprocess.run(
            ["ip", "-j", "addr", "show"], capture_output=True, text=True, timeout=5, check=True
        ).stdout
        links = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
    found = []
    for link in links:
        for info in link.get("addr_info", []):
            local, prefix = info.get("local"), info.get("prefixlen")
            if isinstance(local, str):
                local = local.split("%")[0]
                if networks and isinstance(prefix, int):
                    local = _on_link(local, prefix)
                found.append(local)
    return found


# The widest network of one of the host's addresses blocked whole (its LAN): a wider one
# (a /8 given to one interface, say) blocks that address alone.
_WIDEST_LAN: Final = {4: 16, 6: 48}


def _on_link(address: str, prefix: int) -> str:
    """``address/prefix``, or the address alone if that network is wider than a LAN."""
    version = 6 if ":" in address else 4
    if prefix < _WIDEST_LAN[version]:
        prefix = 32 if version == 4 else 128
    return f"{address}/{prefix}"


_RTM_NEWADDR: Final = 20
_RTM_GETADDR: Final = 22
_NLM_F_REQUEST_DUMP: Final = 0x1 | 0x300
_NLMSG_ERROR: Final = 2
_NLMSG_DONE: Final = 3
_IFA_ADDRESS: Final = 1
_IFA_LOCAL: Final = 2
_NLMSG: Final = struct.Struct("=IHHII")  # length, type, flags, sequence, port
_IFADDRMSG: Final = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, index
_RTATTR: Final = struct.Struct("=HH")  # length, type


def _netlink_addresses(*, networks: bool = False) -> list[str]:
    """Every address of the host's interfaces from one ``RTM_GETADDR`` netlink dump.

    What ``ip -j addr`` lists as ``local`` (``IFA_LOCAL``, else ``IFA_ADDRESS``), without
    an ``ip`` process (~2 ms of CPU) per capsule; with ``networks`` as
    :func:`host_addresses` gives them. Raises OSError if the dump fails.
    """
    found: list[str] = []
    request = _NLMSG.pack(_NLMSG.size + _IFADDRMSG.size, _RTM_GETADDR, _NLM_F_REQUEST_DUMP, 1, 0)
    request += _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(5)
        sock.sendto(request, (0, 0))
        while True:
            data = sock.recv(1 << 16)
            offset = 0
            while offset + _NLMSG.size <= len(data):
                length, kind, _flags, _seq, _port = _NLMSG.unpack_from(data, offset)
                if length < _NLMSG.size:
                    raise OSError("malformed netlink answer")
                if kind == _NLMSG_DONE:
                    return found
                if kind == _NLMSG_ERROR:
                    code = struct.unpack_from("=i", data, offset + _NLMSG.size)[0]
                    raise OSError(-code, os.strerror(-code))
                if kind == _RTM_NEWADDR:
                    family, prefix = _IFADDRMSG.unpack_from(data, offset + _NLMSG.size)[:2]
                    attrs: dict[int, bytes] = {}
                    at, end = offset + _NLMSG.size + _IFADDRMSG.size, offset + length
                    while at + _RTATTR.size <= end:
                        size, kind_ = _RTATTR.unpack_from(data, at)
                        if size < _RTATTR.size:
                            break
                        attrs[kind_] = data[at + _RTATTR.size : at + size]
                        at += (size + 3) & ~3
                    local = attrs.get(_IFA_LOCAL) or attrs.get(_IFA_ADDRESS)
                    if local is not None and family in (socket.AF_INET, socket.AF_INET6):
                        text = socket.inet_ntop(family, local)
                        found.append(_on_link(text, prefix) if networks else text)
                offset += (length + 3) & ~3


def ruleset(extra: list[str]) -> str:
    """The capsule namespace's nftables filter; ``extra`` are the host's own addresses
    and networks (``address/prefix``: its LAN, gateway included)."""
    return _ruleset(tuple(extra))


@functools.lru_cache(maxsize=8)
def _ruleset(extra: tuple[str, ...]) -> str:
    """:func:`ruleset`, made once per set of host addresses (each capsule's attach asks,
    in the server's event loop; parsing and collapsing the ranges is most of it)."""
    nets4: list[ipaddress.IPv4Network] = []
    nets6: list[ipaddress.IPv6Network] = []
    for text in (*BLOCKED, *extra):
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network):
            nets4.append(net)
        else:
            nets6.append(net)
    v4 = ", ".join(str(n) for n in ipaddress.collapse_addresses(nets4))
    v6 = ", ".join(str(n) for n in ipaddress.collapse_addresses(nets6))
    return f"""table inet {TABLE} {{
  set blocked4 {{ type ipv4_addr; flags interval; elements = {{ {v4} }}; }}
  set blocked6 {{ type ipv6_addr; flags interval; elements = {{ {v6} }}; }}
  chain output {{
    type filter hook output priority filter; policy accept;
    oifname "lo" accept
    ip daddr {DNS_FORWARDER} udp dport 53 accept
    ip daddr @blocked4 reject with icmpx type admin-prohibited
    ip6 daddr @blocked6 reject with icmpx type admin-prohibited
  }}
}}
"""


def write_resolv_conf(etc_upper: Path) -> None:
    """Point the capsule's resolver at the DNS forwarder (in its own ``/etc`` layer)."""
    etc_upper.mkdir(parents=True, exist_ok=True)
    target = etc_upper / "resolv.conf"
    with contextlib.suppress(FileNotFoundError):
        target.unlink()  # a symlink copied from the host would lead elsewhere
    target.write_text(f"nameserver {DNS_FORWARDER}\noptions timeout:2 attempts:2\n")
    target.chmod(0o644)


class CapsuleNetwork:
    """One capsule's network: its filter and its pasta, from attach to close."""

    def __init__(self, tools: NetworkTools, run_dir: Path) -> None:
        self.tools = tools
        self.pid_file = run_dir / "pasta.pid"
        self.holder: anyio.abc.Process | BootChild | None = None
        # the server's boot process (_boot_process.py): pasta's holder is its fork
        self.boot: BootProcess | None = None
        self._lifeline: int | None = None  # closing it (or the server dying) ends pasta
        # why the capsule ended up without network (no usable host interface: offline)
        self.problem: str | None = None
        # set by close(): a pasta started after it (a destroy racing the boot) goes at once
        self._closed = False
        # when each step of attach() ended (time.monotonic()): boot traces, benchmarks/boot.py
        self.marks: dict[str, float] = {}
        # a warm spare's network: pasta starts at BACKGROUND_NICE (see to_foreground)
        self.background = False
        # the filter loaded (nftables text), once loaded; True once pasta is ready too
        self.rules: str | None = None
        self.connected = False
        # a ready network's own directory (_ready_networks.py): removed by close()
        self.scratch: Path | None = None

    async def attach(self, pid: int, *, timeout: float = 10.0) -> None:
        """Filter and connect the network namespace of process ``pid``.

        ``pid`` is the capsule's boot process (``unshare -m -n``): this waits until it is
        in a network namespace other than the server's, so the filter never lands on the
        host, and runs while the rest of the capsule boots. Raises ``RuntimeError`` if the
        process goes away first. If the filter or pasta fails (a host with no usable
        interface, say: offline), the capsule keeps only its loopback and ``problem`` says
        why. Cancellation leaves pasta running until :meth:`close`.
        """
        fd = await wait_for_netns(pid, timeout)
        self.marks["network_netns"] = time.monotonic()
        try:
            await self.connect(fd, timeout=timeout)
        finally:
            os.close(fd)

    async def connect(self, fd: int, *, timeout: float = 10.0) -> None:
        """Filter, then connect (pasta) the network namespace ``fd`` (a descriptor, left
        open: pasta holds its own).

        On success :attr:`connected` is True. If the filter or pasta fails, the
        namespace keeps only its loopback, :attr:`problem` says why and the network is
        closed. Cancellation leaves pasta running until :meth:`close`.
        """
        failed: dict[str, Exception] = {}

        async def step(name: str, run: Callable[[], Awaitable[None]]) -> None:
            try:
                await run()
            except (RuntimeError, OSError, subprocess.SubprocessError, TimeoutError) as exc:
                failed[name] = exc

        # The filter first, then pasta (which connects the namespace): never a moment
        # with a route out and no filter. Capsule code may run before the capsule is
        # running: the agent's interpreter is the capsule's own /usr/bin/python3,
        # which a snapshot can replace. No filter, no pasta.
        await step("filter", functools.partial(self._load_filter, fd))
        if not failed:
            await step("pasta", functools.partial(self._start_pasta, fd, timeout))
        if failed:
            exc = failed.get("filter") or failed["pasta"]
            self.problem = str(exc) or type(exc).__name__
            await self.close()
        else:
            self.connected = True

    async def _load_filter(self, fd: int) -> None:
        """Load the filter into the namespace ``fd``: through a fork of the server's boot
        process where there is one (no ``nsenter``, no worker thread), else ``nsenter``."""
        if self.boot is None:
            await anyio.to_thread.run_sync(self._filter, fd)
            return
        rules = ruleset(host_addresses(networks=True))
        code, err = await self.boot.run_in_netns(
            [self.tools.nft or "nft", "-f", "-"], netns=fd, data=rules
        )
        if code != 0:
            raise RuntimeError(f"capsule network filter failed: {err.strip() or code}")
        self.rules = rules
        self.marks["network_filter"] = time.monotonic()

    def _filter(self, fd: int) -> None:
        ns = f"--net=/proc/self/fd/{fd}"
        nsenter = self.tools.nsenter or "nsenter"
        rules = ruleset(host_addresses(networks=True))
        # the loopback is brought up by boot.py (new_network_namespace), before bwrap
        for argv, data in (([nsenter, ns, self.tools.nft or "nft", "-f", "-"], rules),):
            result = subprocess.run(
                argv, input=data, capture_output=True, text=True, pass_fds=(fd,), timeout=10
            )
            if result.returncode != 0:
                raise RuntimeError(f"capsule network filter failed: {result.stderr.strip()}")
        self.rules = rules

    async def _start_pasta(self, fd: int, timeout: float) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        log = self.pid_file.with_name("pasta.log")
        pasta = [
            self.tools.pasta or "pasta",
            "--foreground",
            "--quiet",
            "--runas",
            "0:0",  # as nobody it could not enter a namespace of the host's root
            "--config-net",
            "--no-map-gw",
            "-t",
            "none",
            "-u",
            "none",
            "-T",
            "none",
            "-U",
            "none",
            "--dns-forward",
            DNS_FORWARDER,
            "--pid",
            str(self.pid_file),
            "--netns",
            f"/proc/self/fd/{fd}",
        ]
        nice = BACKGROUND_NICE if self.background else 0
        if self.boot is not None:  # a fork of the server's boot process: no Python start
            with log.open("wb") as err:
                self.holder = await self.boot.hold(
                    pasta, stderr=err.fileno(), pass_fds=(fd,), nice=nice
                )
        else:
            lifeline, self._lifeline = os.pipe()  # the holder's stdin; ours is not inherited
            try:
                with log.open("wb") as err:  # a file: a pipe nobody reads could stall pasta
                    self.holder = await anyio.open_process(
                        [sys.executable, "-I", "-S", "-c", _HOLDER, str(nice), *pasta],
                        stdin=lifeline,
                        stdout=subprocess.DEVNULL,
                        stderr=err,
                        pass_fds=(fd,),
                        start_new_session=True,
                    )
            finally:
                os.close(lifeline)
        self.marks["network_pasta_spawned"] = time.monotonic()
        holder = self.holder
        if self._closed:  # closed while pasta started (a destroy racing the boot)
            await self.close()
            raise RuntimeError("capsule network closed while pasta started")
        with anyio.fail_after(timeout):
            while not (self.pid_file.exists() and self.pid_file.read_text().strip()):
                if self._closed:
                    raise RuntimeError("capsule network closed while pasta started")
                if holder.returncode is not None:
                    lines = log.read_text(errors="replace").splitlines()
                    why = "; ".join(x.strip() for x in lines if x.strip() and "syslog" not in x)
                    raise RuntimeError(f"pasta failed (exit {holder.returncode}): {why}")
                await anyio.sleep(0.005)
        self.marks["network_pasta"] = time.monotonic()

    def pasta_pid(self) -> int | None:
        """pasta's pid (the host's) while it runs, or None.

        Not from its pid file: pasta writes the pid it has in its own pid namespace.
        pasta is its holder's grandchild (the holder, the namespace's init, pasta); the
        holder's pid names it while the holder has not ended, and the process found is
        checked to be a pasta."""
        holder = self.holder
        if holder is None or holder.returncode is not None:
            return None
        for init in children(holder.pid):
            for pid in children(init):
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{pid}/comm").read_text().startswith("pasta"):
                        return pid
        return None

    def to_foreground(self) -> None:
        """An account owns the capsule now: pasta runs at niceness 0, as every pasta.

        (It started at :data:`BACKGROUND_NICE` if the capsule booted as a warm spare.)
        A pasta that is not running (no network, or it has ended) is left alone."""
        if not self.background:
            return
        self.background = False
        pid = self.pasta_pid()
        if pid is not None:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, pid, 0)

    async def close(self) -> None:
        """Kill pasta (through its holder) and wait until it has ended; bounded (5 s) and
        shielded.

        pasta ends at the highest niceness: freeing its buffers takes some 10 ms of CPU,
        which capsules still in use want more (as :meth:`Sandbox.stop
        <wrenn_local._sandbox.Sandbox.stop>` does with the capsule's own processes). If
        it has not ended within :data:`ENDING_IN_BACKGROUND_SECONDS` it gets niceness 0
        back, so that a busy host still sees the close end soon.

        Final: a pasta whose start was under way is killed as soon as it exists."""
        self._closed = True
        self.connected = False
        pasta = self.pasta_pid()
        pidfd = None
        if pasta is not None:
            with contextlib.suppress(OSError):
                # (taken while its holder lives: the pid is pasta's, not reaped yet)
                pidfd = os.pidfd_open(pasta)
                os.setpriority(os.PRIO_PROCESS, pasta, BACKGROUND_NICE)
        holder, self.holder = self.holder, None
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            try:
                if holder is not None:
                    if holder.returncode is None:
                        with contextlib.suppress(ProcessLookupError):
                            holder.send_signal(signal.SIGKILL)
                    await holder.wait()  # its namespace's init dies with it, and pasta
                if pidfd is not None:
                    with anyio.move_on_after(ENDING_IN_BACKGROUND_SECONDS) as background:
                        await anyio.wait_readable(pidfd)
                    if background.cancelled_caught and not _readable(pidfd):
                        # (not readable: not ended, so not reaped, and the pid still its)
                        with contextlib.suppress(OSError):
                            os.setpriority(os.PRIO_PROCESS, pasta, 0)  # type: ignore[arg-type]
                        await anyio.wait_readable(pidfd)
            finally:
                if pidfd is not None:
                    os.close(pidfd)
            if self.scratch is not None:
                await anyio.to_thread.run_sync(
                    functools.partial(shutil.rmtree, self.scratch, ignore_errors=True)
                )
                self.scratch = None


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


async def wait_for_netns(pid: int, timeout: float) -> int:
    """A descriptor of ``pid``'s network namespace once it is not the server's.

    Raises ``RuntimeError`` if the process goes away first, ``TimeoutError`` after
    ``timeout`` seconds.
    """
    with anyio.fail_after(timeout):
        while True:  # procfs only: cheap enough to poll from the event loop
            fd = _open_netns(pid)
            if fd is not None:
                return fd
            await anyio.sleep(0.002)


def _open_netns(pid: int) -> int | None:
    """A descriptor of ``pid``'s network namespace; None while it is still the server's."""
    try:
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise RuntimeError("the capsule stopped before its network was attached") from exc
    if os.fstat(fd).st_ino == os.stat("/proc/self/ns/net").st_ino:
        os.close(fd)
        return None
    return fd
