"""User namespaces, the syscall filter, sudo and /dev/shm of full-isolation capsules.

Issues 17 and 18. Each capsule's ids are a host id range of its own (its root is not
host root, its ``wrenn-user`` is not host uid 1000), a seccomp filter refuses nested
user namespaces, keyrings, mounts and other escape staples, ``sudo`` asks the agent
(no setuid) and ``/dev/shm`` is a bounded tmpfs. Every test attacks from inside a
capsule or from another host account and fails if the protection is missing; the ones
that need full isolation are skipped under reduced isolation, which claims none of it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.localserver import local_http, new_capsule, sh, wait_status
from wrenn_local import _seccomp
from wrenn_local._userns import FIRST_BASE, RANGE

HOST_UNISTD = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")


def full_only(server: object) -> None:
    if getattr(server, "isolation", None) != "full":
        pytest.skip("reduced isolation has no user namespace, filter or sudo")


async def ok(http: httpx.AsyncClient, cid: str, script: str, **extra: Any) -> str:
    out = await sh(http, cid, script, **extra)
    assert out["exit_code"] == 0, out
    stdout: str = out["stdout"]
    return stdout


async def marker_process(http: httpx.AsyncClient, cid: str) -> int:
    """Start a shell with a unique marker in the capsule; its host pid."""
    marker = "wrenn-marker-" + secrets.token_hex(6)
    await sh(http, cid, f"sleep 300; : {marker}", background=True)
    for _ in range(200):
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if marker.encode() in (entry / "cmdline").read_bytes():
                        return int(entry.name)
                except OSError:
                    continue
        await _sleep()
    raise AssertionError("the marker process did not show on the host")


async def _sleep() -> None:
    await anyio.sleep(0.02)


def host_ids(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    gid = int(re.search(r"^Gid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    return uid, gid


LOOPBACK_DOWN = """
import errno, fcntl, socket, struct
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
def flags():
    return struct.unpack("16sH22x", fcntl.ioctl(sock, 0x8913, struct.pack("16sH22x", b"lo", 0)))[1]
try:
    fcntl.ioctl(sock, 0x8914, struct.pack("16sH22x", b"lo", flags() & ~1))
    print("done")
except OSError as exc:
    print(errno.errorcode[exc.errno])
print("up" if flags() & 1 else "down")
"""


# -- user namespaces ---------------------------------------------------------------------


async def test_each_capsule_has_its_own_host_id_range_that_no_host_account_can_enter() -> None:
    async with local_http() as (server, http):
        full_only(server)
        a, b = await new_capsule(http), await new_capsule(http)
        secret = "capsule-secret-" + secrets.token_hex(6)
        await ok(http, a, f"echo {secret} > ~/secret.txt; chmod 600 ~/secret.txt")
        pid_a, pid_b = await marker_process(http, a), await marker_process(http, b)
        (uid_a, gid_a), (uid_b, gid_b) = host_ids(pid_a), host_ids(pid_b)
        # wrenn-user (1000 inside) is base + 1000 on the host: in a range of its own
        for uid, gid in ((uid_a, gid_a), (uid_b, gid_b)):
            assert uid >= FIRST_BASE
            assert (uid - FIRST_BASE) % RANGE == 1000
            assert gid == uid
        assert uid_a // RANGE != uid_b // RANGE
        host_accounts = {
            int(line.split(":")[2])
            for line in Path("/etc/passwd").read_text().splitlines()
            if line.count(":") >= 2
        }
        assert not host_accounts & {uid_a, uid_b}
        # own user and network namespaces; the network one belongs to the host's (ours)
        ours = os.stat("/proc/self/ns/user").st_ino
        assert os.stat(f"/proc/{pid_a}/ns/user").st_ino != ours
        assert os.stat(f"/proc/{pid_a}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
        net = os.open(f"/proc/{pid_a}/ns/net", os.O_RDONLY)
        try:
            owner = fcntl.ioctl(net, 0xB701)  # NS_GET_USERNS: a descriptor of the owner
            try:
                assert os.fstat(owner).st_ino == ours
            finally:
                os.close(owner)
        finally:
            os.close(net)
        # inside, the ids are the usual ones
        assert (await ok(http, a, "id -u; id -un")).split() == ["1000", "wrenn-user"]
        mapping = (await ok(http, a, "cat /proc/self/uid_map")).split()
        assert mapping == ["0", str(uid_a - 1000), str(RANGE)]
        # the host's uid 1000 (another account) cannot reach into a capsule any more
        attempt = await anyio.to_thread.run_sync(
            lambda: subprocess.run(
                ["cat", f"/proc/{pid_a}/root/home/wrenn-user/secret.txt"],
                user=1000,
                group=1000,
                extra_groups=[],
                capture_output=True,
                text=True,
                timeout=10,
            )
        )
        assert secret not in attempt.stdout
        assert attempt.returncode != 0


async def test_capsule_root_owns_its_root_filesystem_and_nothing_of_the_host() -> None:
    async with local_http() as (server, http):
        full_only(server)
        cid = await new_capsule(http)
        name = "wrenn-userns-" + secrets.token_hex(4)
        # the official SDK's sudo tests (test_integration_advanced.py, test_sudo_*)
        assert (await ok(http, cid, "which sudo")).strip() == "/usr/bin/sudo"
        assert (await ok(http, cid, "sudo whoami")).strip() == "root"
        assert (await ok(http, cid, f"sudo touch /opt/{name} && cat /opt/{name}; echo ok")) == (
            "ok\n"
        )
        assert "root" in await ok(http, cid, "sudo cat /etc/shadow | head -1")
        # capsule root writes into /etc and /usr: the files stay in the capsule
        await ok(http, cid, f"echo hi | sudo tee /etc/{name} >/dev/null")
        await ok(http, cid, f"sudo sh -c 'echo x > /usr/bin/{name}'")
        assert not Path(f"/etc/{name}").exists()
        assert not Path(f"/usr/bin/{name}").exists()
        assert (await ok(http, cid, f"stat -c %U /etc/{name} /usr/bin/{name}")).split() == [
            "root",
            "root",
        ]
        # the server's view of the capsule's writable layer (on its disk image, which is
        # mounted in the capsule's mount namespace only)
        sandbox = server.capsules.capsules[cid].sandbox
        assert sandbox is not None
        upper = sandbox.upper_dir
        on_host = (upper / "etc" / name).stat()
        assert on_host.st_uid >= FIRST_BASE  # the capsule's range, not host root
        assert (on_host.st_uid - FIRST_BASE) % RANGE == 0
        assert (upper / "usr" / "bin" / name).stat().st_uid == on_host.st_uid
        # the capsule's shadow is its own, readable by its root only
        assert (await sh(http, cid, "cat /etc/shadow"))["exit_code"] != 0
        # a host-root file outside the capsule's view stays out of reach of capsule root
        secret = "host-secret-" + secrets.token_hex(6)
        secret_file = Path(server.data_dir) / "capsules" / cid / "host-secret"
        secret_file.write_text(secret)
        secret_file.chmod(0o600)
        out = await sh(
            http,
            cid,
            "sudo sh -c 'cat /proc/*/root/../host-secret /proc/*/cwd/../host-secret;"
            " for f in /proc/*/fd/*; do cat $f/../host-secret $f/../../host-secret; done;"
            " find / -xdev -name host-secret' 2>/dev/null; true",
        )
        assert secret not in out["stdout"]
        # capsule root cannot reconfigure the network (the namespace belongs to the host):
        # taking the loopback down is refused, and it stays up
        await ok(http, cid, f"cat > /tmp/lo.py <<'EOF'\n{LOOPBACK_DOWN}EOF")
        assert (await ok(http, cid, "sudo python3 -I /tmp/lo.py")).split() == ["EPERM", "up"]


async def test_sudo_options_exit_codes_descriptors_and_environment() -> None:
    async with local_http() as (server, http):
        full_only(server)
        cid = await new_capsule(http)
        assert (await ok(http, cid, "sudo -n true; echo $?")).strip() == "0"
        assert (await ok(http, cid, "sudo -u wrenn-user id -un")).strip() == "wrenn-user"
        assert (await ok(http, cid, "sudo -u root id -u")).strip() == "0"
        assert (await sh(http, cid, "sudo sh -c 'exit 7'"))["exit_code"] == 7
        assert (await ok(http, cid, "echo piped | sudo cat")).strip() == "piped"
        assert (await ok(http, cid, "cd /tmp && sudo pwd")).strip() == "/tmp"
        assert (await ok(http, cid, "sudo -i pwd")).strip() == "/root"
        out = await ok(
            http,
            cid,
            "FOO=bar sudo sh -c 'echo ${FOO:-unset} $SUDO_USER $HOME';"
            " FOO=bar sudo -E sh -c 'echo ${FOO:-unset}'; sudo BAZ=1 sh -c 'echo $BAZ'",
        )
        assert out.split("\n")[:3] == ["unset wrenn-user /root", "bar", "1"]
        errors = await sh(http, cid, "sudo no-such-command-here")
        assert errors["exit_code"] == 1
        assert "command not found" in errors["stderr"]
        assert "NOPASSWD" in await ok(http, cid, "sudo -l")
        # sudo is not setuid, and no-new-privileges stays on for everything
        assert (await ok(http, cid, "stat -c %a /usr/bin/sudo")).strip() == "755"
        assert "NoNewPrivs:\t1" in await ok(http, cid, "sudo grep NoNewPrivs /proc/self/status")
        # killing sudo kills the command it asked for
        find = (
            "found() { for q in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $q/cmdline 2>/dev/null);"
            " [ \"$c\" = 'sleep 4242 ' ] && return 0; done; return 1; }"
        )
        out = await ok(
            http,
            cid,
            f"{find}; sudo sleep 4242 >/dev/null 2>&1 & p=$!;"
            " i=0; until found || [ $i -ge 100 ]; do sleep 0.05; i=$((i+1)); done;"
            " found && echo started; kill -9 $p;"
            " i=0; while found && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done;"
            " found && echo left || echo gone",
        )
        assert out.split() == ["started", "gone"]


async def test_capsule_root_installs_a_package_with_dpkg_and_the_host_is_untouched() -> None:
    async with local_http() as (server, http):
        full_only(server)
        if not Path("/usr/bin/dpkg-deb").exists():
            pytest.skip("no dpkg on this host")
        cid = await new_capsule(http)
        name = "wrenn-demo-" + secrets.token_hex(3)
        control = (
            f"Package: {name}\\nVersion: 1.0\\nArchitecture: all\\nDepends: dpkg\\n"
            "Maintainer: t <t@example.invalid>\\nDescription: t\\n"
        )
        out = await ok(
            http,
            cid,
            f"mkdir -p /tmp/p/DEBIAN /tmp/p/usr/share/{name} && echo hi > /tmp/p/usr/share/{name}/f"
            f" && printf '{control}' > /tmp/p/DEBIAN/control"
            " && dpkg-deb --build /tmp/p /tmp/p.deb >/dev/null"
            " && sudo dpkg -i /tmp/p.deb >/dev/null"
            f" && dpkg-query -W -f '${{Status}}' {name} && cat /usr/share/{name}/f",
        )
        assert out.splitlines() == ["install ok installedhi"]
        assert name not in Path("/var/lib/dpkg/status").read_text()
        assert not Path(f"/usr/share/{name}").exists()


async def test_the_sudo_socket_refuses_a_peer_outside_the_capsule() -> None:
    async with local_http() as (server, http):
        full_only(server)
        cid = await new_capsule(http)
        pid = await marker_process(http, cid)
        target = f"/tmp/wrenn-pwned-{secrets.token_hex(4)}"
        request = json.dumps(
            {
                "path": "/usr/bin/touch",
                "argv": ["touch", target],
                "user": "root",
                "group": None,
                "env": {"PATH": "/usr/bin:/bin"},
                "chdir": None,
            }
        ).encode()
        # the host's root, reaching the socket through the capsule's root directory
        read_end, write_end = os.pipe()
        cwd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(10)
                sock.connect(f"/proc/{pid}/root/run/wrenn/sudo.sock")
                # the agent may answer (and close) before the request is even sent
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    socket.send_fds(
                        sock,
                        [struct.pack(">I", len(request)) + request],
                        [read_end, write_end, write_end, cwd],
                    )
                answer = b""
                while not answer.endswith(b"\n"):
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    answer += chunk
        finally:
            for fd in (read_end, write_end, cwd):
                os.close(fd)
        assert "refused" in json.loads(answer)["error"]
        assert not Path(target).exists()
        assert (await sh(http, cid, f"test -e {target}"))["exit_code"] != 0


async def test_snapshots_keep_ownership_across_id_ranges() -> None:
    async with local_http() as (server, http):
        full_only(server)
        cid = await new_capsule(http)
        await ok(http, cid, "sudo touch /opt/by-root; touch ~/by-user")
        started = await http.post("/v1/snapshots", json={"sandbox_id": cid, "name": "owned"})
        assert started.status_code == 202
        await wait_status(http, cid, "running")
        with anyio.fail_after(20):
            while "owned" not in [
                t["name"] for t in (await http.get("/v1/snapshots?type=snapshot")).json()
            ]:
                await anyio.sleep(0.05)
        layer = next(p for p in Path(server.data_dir).rglob("by-root") if "capsules" not in p.parts)
        assert layer.stat().st_uid == 0  # shifted back: a layer is range-independent
        second = await new_capsule(http, template="owned")
        owners = await ok(http, second, "stat -c %U /opt/by-root /home/wrenn-user/by-user")
        assert owners.split() == ["root", "wrenn-user"]
        assert (await ok(http, second, "sudo rm /opt/by-root && echo gone")).strip() == "gone"


async def test_a_data_directory_under_run_still_boots() -> None:
    """boot.py covers the host's /run with its staging tmpfs: only after it is done."""
    if os.geteuid() != 0:
        pytest.skip("full isolation needs root")
    data_dir = Path("/run") / f"wrenn-userns-test-{secrets.token_hex(4)}"
    try:
        async with local_http(data_dir=data_dir) as (server, http):
            full_only(server)
            cid = await new_capsule(http)
            assert (await ok(http, cid, "sudo whoami; id -un")).split() == ["root", "wrenn-user"]
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


# -- the syscall filter ------------------------------------------------------------------


EPERM_PROBE = r"""
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(nr, *args):
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return result, ctypes.get_errno()
for name, nr, args in CALLS:
    result, err = call(nr, *args)
    print(name, result, errno.errorcode.get(err, err) if result < 0 else "ok")
"""


def probe(calls: list[tuple[str, list[int]]]) -> str:
    table = _seccomp.SYSCALLS_X86_64
    spec = [(name, table[name], args) for name, args in calls]
    return f"CALLS = {spec!r}\n" + EPERM_PROBE


async def test_the_syscall_filter_refuses_escape_staples_and_allows_a_workload() -> None:
    async with local_http() as (server, http):
        full_only(server)
        if _seccomp.program() is None:
            pytest.skip("no syscall table for this architecture")
        cid = await new_capsule(http)
        refused = await sh(http, cid, "unshare -Ur true")
        assert refused["exit_code"] != 0
        assert "Operation not permitted" in refused["stderr"]
        await ok(http, cid, "! sudo unshare -U true 2>/dev/null")
        # the calls themselves, as wrenn-user and as capsule root; each would succeed (or
        # fail otherwise) without the filter: a nested user namespace, a keyring, io_uring…
        user_calls = [
            ("unshare", [0x10000000]),
            ("clone", [0x10000000 | 17, 0, 0, 0, 0]),
            ("keyctl", [0, -3, 1]),  # KEYCTL_GET_KEYRING_ID, session, create
            ("add_key", [0, 0, 0, 0, 0]),
            ("request_key", [0, 0, 0, 0]),
            ("userfaultfd", [1]),
            ("io_uring_setup", [1, 0]),
            ("bpf", [0, 0, 0]),
            ("perf_event_open", [0, 0, -1, -1, 0]),
        ]
        root_calls = [
            ("setns", [0, 0]),
            ("mount", [0, 0, 0, 0, 0]),
            ("umount2", [0, 0]),
            ("pivot_root", [0, 0]),
            ("open_tree", [-100, 0, 1]),
            ("move_mount", [0, 0, 0, 0, 0]),
            ("mount_setattr", [0, 0, 0, 0, 0]),
            ("fsopen", [0, 0]),
            ("fsmount", [0, 0, 0]),
            ("fspick", [0, 0, 0]),
            ("open_by_handle_at", [0, 0, 0]),
            ("init_module", [0, 0, 0]),
            ("finit_module", [0, 0, 0]),
            ("delete_module", [0, 0]),
            ("kexec_load", [0, 0, 0, 0]),
            ("kexec_file_load", [0, 0, 0, 0, 0]),
        ]
        for calls, prefix in ((user_calls, ""), (root_calls, "sudo ")):
            await ok(http, cid, f"cat > /tmp/probe.py <<'EOF'\n{probe(calls)}EOF")
            lines = (await ok(http, cid, f"{prefix}python3 -I /tmp/probe.py")).splitlines()
            results = {line.split()[0]: line.split()[2] for line in lines}
            assert results == {name: "EPERM" for name, _ in calls}, results
        # clone3 answers ENOSYS (the C library falls back to clone): threads still work
        await ok(http, cid, f"cat > /tmp/c3.py <<'EOF'\n{probe([('clone3', [0, 0])])}EOF")
        assert "ENOSYS" in await ok(http, cid, "python3 -I /tmp/c3.py")
        # a normal workload: threads, processes, a pipeline, a multiprocessing pool
        work = await ok(
            http,
            cid,
            "python3 -c 'import threading, multiprocessing as mp, subprocess;"
            ' t = threading.Thread(target=print, args=("thread",)); t.start(); t.join();'
            ' print(subprocess.run(["echo", "child"], capture_output=True, text=True).stdout'
            ".strip()); print(sum(mp.Pool(2).map(abs, [-1, -2])))'; ls / | wc -l",
        )
        assert work.split()[:3] == ["thread", "child", "3"]
        assert "Seccomp:\t2" in await ok(http, cid, "grep Seccomp /proc/self/status")


def run_filter(program: bytes, nr: int, arch: int, args: tuple[int, ...] = (0,) * 6) -> int:
    """A classic BPF interpreter for the few instructions the filter uses."""
    data = struct.pack("<IIQ6Q", nr, arch, 0, *args)
    insns = [struct.unpack_from("<HBBI", program, at) for at in range(0, len(program), 8)]
    pc, acc = 0, 0
    for _ in range(len(insns) + 1):
        code, jt, jf, k = insns[pc]
        if code == _seccomp.BPF_LD_W_ABS:
            acc, pc = struct.unpack_from("<I", data, k)[0], pc + 1
        elif code == _seccomp.BPF_JEQ_K:
            pc += 1 + (jt if acc == k else jf)
        elif code == _seccomp.BPF_JSET_K:
            pc += 1 + (jt if acc & k else jf)
        elif code == _seccomp.BPF_RET_K:
            return int(k)
        else:
            raise AssertionError(f"unexpected instruction {code:#x}")
    raise AssertionError("the program does not end")


def test_the_filter_program_decides_each_call_as_documented() -> None:
    program = _seccomp.program("x86_64")
    assert program is not None
    assert _seccomp.program("riscv64") is None
    allow, x86 = _seccomp.SECCOMP_RET_ALLOW, _seccomp.AUDIT_ARCH_X86_64
    eperm = _seccomp.SECCOMP_RET_ERRNO | errno.EPERM
    enosys = _seccomp.SECCOMP_RET_ERRNO | errno.ENOSYS
    table = _seccomp.SYSCALLS_X86_64
    if HOST_UNISTD.exists():  # the numbers agree with the kernel headers
        header = dict(re.findall(r"#define __NR_(\w+) (\d+)", HOST_UNISTD.read_text()))
        assert {name: int(header[name]) for name in table} == table
    for name in _seccomp.REFUSED:
        assert run_filter(program, table[name], x86) == eperm, name
    newuser = _seccomp.CLONE_NEWUSER
    assert run_filter(program, table["unshare"], x86, (newuser, 0, 0, 0, 0, 0)) == eperm
    assert run_filter(program, table["unshare"], x86, (0x20000, 0, 0, 0, 0, 0)) == allow
    assert run_filter(program, table["clone"], x86, (newuser | 17, 0, 0, 0, 0, 0)) == eperm
    assert run_filter(program, table["clone"], x86, (0x3D0F00, 0, 0, 0, 0, 0)) == allow
    assert run_filter(program, table["clone3"], x86) == enosys
    for nr in (0, 1, 2, 59, 231, 302):  # read, write, open, execve, exit_group, prlimit64
        assert run_filter(program, nr, x86) == allow
    assert run_filter(program, 0x40000000 | 250, x86) == enosys  # x32 keyctl
    assert run_filter(program, 1, 0x40000003) == enosys  # i386 (int 0x80)


# -- /dev/shm ----------------------------------------------------------------------------


async def test_dev_shm_is_writable_and_bounded() -> None:
    async with local_http() as (server, http):
        full_only(server)
        cid = await new_capsule(http, memory_mb=128)
        lock = await ok(
            http, cid, "python3 -c 'import multiprocessing as mp; l = mp.Lock(); l.acquire()'"
        )
        assert lock == ""
        out = await sh(http, cid, "head -c 96M /dev/zero > /dev/shm/big; echo $?; df -m /dev/shm")
        assert "No space left on device" in out["stderr"]
        assert out["stdout"].split("\n")[0] != "0"
        size_mb = int(out["stdout"].splitlines()[-1].split()[1])
        assert size_mb == 64  # half the capsule's memory


# -- id ranges ---------------------------------------------------------------------------


def test_id_ranges_are_held_host_wide_and_skip_host_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wrenn_local import _userns

    first = _userns.IdRange.acquire(tmp_path)
    second = _userns.IdRange.acquire(tmp_path)
    assert (first.base, second.base) == (FIRST_BASE, FIRST_BASE + RANGE)
    # another process (another server on this host) sees both ranges as taken
    script = (
        "import sys; from pathlib import Path; from wrenn_local._userns import IdRange;"
        f" print(IdRange.acquire(Path({str(tmp_path)!r})).base)"
    )
    other = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=30
    )
    assert int(other.stdout) == FIRST_BASE + 2 * RANGE
    first.release()
    third = _userns.IdRange.acquire(tmp_path)
    assert third.base == FIRST_BASE  # freed by its holder, taken again
    # /etc/passwd et al. cannot be edited here: a host id in the next free range is
    # injected instead, and that range is skipped
    monkeypatch.setattr(_userns, "_host_ids", lambda: {FIRST_BASE + 2 * RANGE + 77})
    fourth = _userns.IdRange.acquire(tmp_path)
    assert fourth.base == FIRST_BASE + 3 * RANGE
    for held in (second, third, fourth):
        held.release()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_snapshot_layer_gets_ids_0_to_65535_back(tmp_path: Path) -> None:
    from wrenn_local._userns import shift_tree

    base = FIRST_BASE + 7 * RANGE
    files = {"root-file": base, "user-file": base + 1000, "whiteout-like": 0}
    (tmp_path / "dir").mkdir()
    for name, owner in files.items():
        path = tmp_path / "dir" / name
        path.write_text(name)
        os.chown(path, owner, owner)
    os.chmod(tmp_path / "dir" / "root-file", 0o4755)
    os.chown(tmp_path / "dir", base, base)
    os.symlink("root-file", tmp_path / "dir" / "link")
    os.lchown(tmp_path / "dir" / "link", base + 1000, base + 1000)
    shift_tree(tmp_path / "dir", base)
    owners = {p.name: (p.lstat().st_uid, p.lstat().st_gid) for p in (tmp_path / "dir").iterdir()}
    assert owners == {
        "root-file": (0, 0),
        "user-file": (1000, 1000),
        "whiteout-like": (0, 0),
        "link": (1000, 1000),
    }
    assert (tmp_path / "dir").stat().st_uid == 0
    assert (tmp_path / "dir" / "root-file").stat().st_mode & 0o7777 == 0o4755
