"""The server's boot process (issue 20): capsule boots forked from one pre-started Python.

Attacked from the capsule's side: a boot child must hold no descriptor of the server or
of the boot process (its control socket would let capsule code start boots as host
root). Its failure modes: a boot process that dies is replaced at the next create, and
its capsules end with it (bubblewrap dies with its parent), as with a dying server.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import signal
import socket
import sys
from pathlib import Path

import anyio
import anyio.abc
import pytest

from tests.localserver import local_http, new_capsule, sh, wait_status
from tests.test_local_network import boot_pid, in_netns, networked
from wrenn_local import _boot_process, _network
from wrenn_local._boot_process import BootChild, BootFailed, BootProcess, boot_process_for


def _capsule_python() -> str:
    return "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def _shared_objects(pid: int) -> set[str]:
    """The sockets and pipes ``pid`` holds (``socket:[inode]``, ``pipe:[inode]``)."""
    out = set()
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith(("socket:", "pipe:")):
            out.add(target)
    return out


async def test_a_capsules_processes_hold_no_descriptor_of_the_server_or_boot_process() -> None:
    async with local_http() as (server, http):
        if server.isolation != "full":
            return  # reduced isolation has no boot process
        boot = boot_process_for(server.data_dir)
        assert boot is not None
        assert boot.process is not None
        cid = await new_capsule(http)
        # a command running in the capsule while it is looked at from the host
        await sh(http, cid, "sleep 30", background=True)
        sandbox = server.capsules.capsules[cid].sandbox
        assert sandbox is not None
        assert isinstance(sandbox.process, BootChild)
        assert sandbox.process.stderr is not None
        # the one object shared on purpose: boot's standard error, read by the server
        stderr = os.readlink(f"/proc/self/fd/{sandbox.process.stderr._fd}")
        capsule = set[str]()
        pids = sandbox._tree_pids()
        assert len(pids) >= 3, pids  # bubblewrap, the agent, the command (and more)
        for pid in pids:
            capsule |= _shared_objects(pid)
        theirs = _shared_objects(boot.process.pid) | _shared_objects(os.getpid())
        assert capsule & theirs == {stderr}, (capsule & theirs, stderr)


async def test_a_killed_boot_process_ends_its_capsules_and_is_replaced() -> None:
    async with local_http() as (server, http):
        if server.isolation != "full":
            return
        boot = boot_process_for(server.data_dir)
        assert boot is not None
        assert boot.process is not None
        first = boot.process.pid
        old = await new_capsule(http)
        os.kill(first, signal.SIGKILL)
        # its capsule dies with it (bubblewrap's --die-with-parent): reported, not hung
        body = await wait_status(http, old, "error", timeout=15)
        assert body["status"] == "error"
        # the next create starts a new boot process, and its capsule runs
        cid = await new_capsule(http)
        assert (await sh(http, cid, "echo ok"))["stdout"] == "ok\n"
        assert boot.process is not None
        assert boot.process.pid != first
        assert boot.process.returncode is None


async def test_a_failed_boot_reports_its_error_and_exit_status(tmp_path: Path) -> None:
    # no server: a plan that does not exist is the simplest boot failure to make
    boot = BootProcess(_capsule_python(), {"PATH": "/usr/bin:/bin"})
    try:
        child = await boot.spawn(tmp_path / "missing.json", network=False)
        assert child.stderr is not None
        async with anyio.create_task_group() as tg:  # any number of tasks may wait
            codes: list[int] = []

            async def wait() -> None:
                codes.append(await child.wait())

            for _ in range(3):
                tg.start_soon(wait)
        assert codes == [1, 1, 1]
        assert child.returncode == 1
        err = b""
        with anyio.fail_after(5):
            while True:
                try:
                    err += await child.stderr.receive()
                except anyio.EndOfStream:
                    break
        await child.stderr.aclose()
        # why, from the child itself (it runs as root or fails to unshare: both say so)
        assert b"Error" in err, err
    finally:
        await boot.aclose()
    assert boot.process is not None
    assert boot.process.returncode is not None  # stopped and reaped


async def test_a_boot_process_that_cannot_start_fails_the_boot_clearly(tmp_path: Path) -> None:
    boot = BootProcess(str(tmp_path / "no-python"), {"PATH": "/usr/bin:/bin"})
    try:
        with pytest.raises(BootFailed, match="could not start the capsule"):
            await boot.spawn(tmp_path / "plan.json", network=False)
    finally:
        await boot.aclose()
    assert _boot_process.boot_process_for(tmp_path) is None


async def test_a_stopped_boot_process_is_replaced_not_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_boot_process, "REQUEST_SECONDS", 0.5)
    boot = BootProcess(_capsule_python(), {"PATH": "/usr/bin:/bin"})
    try:
        await boot.start()
        assert boot.process is not None
        first = boot.process.pid
        os.kill(first, signal.SIGSTOP)  # wedged: it reads no request
        with anyio.fail_after(10):
            child = await boot.spawn(tmp_path / "missing.json", network=False)
            assert await child.wait() == 1  # served by its replacement
        assert child.stderr is not None
        await child.stderr.aclose()
        assert boot.process.pid != first
    finally:
        await boot.aclose()


async def test_a_capsule_runs_only_once_its_network_filter_is_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The network is attached while the agent starts: a slow filter (here 1 s) must
    # still be in place before the capsule is running, i.e. before any capsule code.
    real = _network.CapsuleNetwork._load_filter

    async def slow(self: _network.CapsuleNetwork, fd: int) -> None:
        await anyio.sleep(1.0)  # a slow nft (a loaded host): the agent answers long before
        await real(self, fd)

    monkeypatch.setattr(_network.CapsuleNetwork, "_load_filter", slow)
    async with local_http() as (server, http):
        await networked(server, http)
        cid = await new_capsule(http)  # polled: within 20 ms of turning running
        assert "hook output" in in_netns(boot_pid(server, cid), "nft", "list", "ruleset")


async def test_a_filter_that_fails_leaves_the_capsule_offline_and_pasta_unstarted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The filter comes first and pasta only after it (capsule code may run during boot):
    # if the filter fails, pasta is never started and the capsule runs with its loopback
    # only, saying why.
    pastas: list[int] = []
    real = _network.CapsuleNetwork._start_pasta

    async def pasta(self: _network.CapsuleNetwork, fd: int, timeout: float) -> None:
        pastas.append(fd)
        await real(self, fd, timeout)

    async def refused(self: _network.CapsuleNetwork, fd: int) -> None:
        # mocked: an nft the kernel refuses (no nf_tables) is not something to break here
        raise RuntimeError("capsule network filter failed: refused")

    monkeypatch.setattr(_network.CapsuleNetwork, "_start_pasta", pasta)
    monkeypatch.setattr(_network.CapsuleNetwork, "_load_filter", refused)
    async with local_http() as (server, http):
        await networked(server, http)
        cid = await new_capsule(http)
        meta = (await http.get(f"/v1/capsules/{cid}")).json()["metadata"]
        assert meta["network"] == "off"
        assert "filter failed" in meta["network_reasons"]
        assert pastas == []  # never connected without its filter, not even for a moment
        out = await sh(http, cid, "ip -br link")
        assert out["stdout"].split()[0] == "lo", out
        assert out["stdout"].count("\n") == 1, out  # no interface but the loopback


async def test_a_tool_run_in_a_network_namespace_runs_there_not_on_the_host() -> None:
    # The capsule's filter is loaded by a fork of the boot process that joins the
    # capsule's network namespace (no nsenter): what it runs sees that namespace, with
    # its input on stdin, and the host's namespace is left alone.
    if os.geteuid() != 0:
        pytest.skip("needs root to make a network namespace")
    holder = await anyio.open_process(["unshare", "-n", "sleep", "30"])
    boot = BootProcess(_capsule_python(), {"PATH": "/usr/bin:/bin"})
    try:
        with anyio.fail_after(10):
            while (fd := _network._open_netns(holder.pid)) is None:
                await anyio.sleep(0.01)
        try:
            ns = os.readlink(f"/proc/{holder.pid}/ns/net")
            script = "cat > /dev/stderr; readlink /proc/self/ns/net >&2; exit 3"
            code, err = await boot.run_in_netns(["/bin/sh", "-c", script], netns=fd, data="in\n")
        finally:
            os.close(fd)
        assert code == 3  # its own status and standard error come back
        assert err.splitlines() == ["in", ns]
        assert ns != os.readlink("/proc/self/ns/net")
    finally:
        holder.kill()
        await holder.wait()
        await boot.aclose()


async def test_a_tool_cancelled_in_a_network_namespace_is_killed_and_closed(
    tmp_path: Path,
) -> None:
    # A boot given up while its filter loads cancels run_in_netns: the tool must be
    # killed, and its standard error pipe and status socket closed then (not left to the
    # garbage collector, with the tool running on until it ends by itself).
    if os.geteuid() != 0:
        pytest.skip("needs root to make a network namespace")
    holder = await anyio.open_process(["unshare", "-n", "sleep", "30"])
    boot = BootProcess(_capsule_python(), {"PATH": "/usr/bin:/bin"})
    pidfile = tmp_path / "pid"
    try:
        with anyio.fail_after(10):
            while (fd := _network._open_netns(holder.pid)) is None:
                await anyio.sleep(0.01)
        try:
            await boot.start()  # its control socket is not one of the call's descriptors
            before = set(os.listdir("/proc/self/fd"))
            script = f"echo $$ > {pidfile}.tmp && mv {pidfile}.tmp {pidfile}; exec sleep 30"
            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(
                        functools.partial(
                            boot.run_in_netns, ["/bin/sh", "-c", script], netns=fd, data=""
                        )
                    )
                    while not pidfile.exists():
                        await anyio.sleep(0.01)
                    tool = int(pidfile.read_text())
                    tg.cancel_scope.cancel()
            gc.collect()  # a descriptor left to the collector warns here (an error)
            assert set(os.listdir("/proc/self/fd")) <= before
            with anyio.fail_after(5):  # killed, and reaped by the boot process
                while Path(f"/proc/{tool}").exists():
                    await anyio.sleep(0.01)
        finally:
            os.close(fd)
    finally:
        holder.kill()
        await holder.wait()
        await boot.aclose()


async def test_a_child_closed_before_its_status_came_is_reported_killed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The status comes from the boot process, which here never sends it: a socket pair
    # stands in for the boot process's end, since the real one cannot be made to stay
    # silent on demand. The child itself is real and killed. Once closed, the child
    # reads as killed: a wait returns at once instead of spinning on a status socket
    # that is gone, and no signal goes to a pid the boot process may have reaped.
    monkeypatch.setattr(_boot_process, "_ACLOSE_WAIT", 0.2)
    ours, boot_end = socket.socketpair()
    sleeper = await anyio.open_process(["sleep", "30"])
    child = BootChild(sleeper.pid, ours.detach(), None)
    try:
        with anyio.fail_after(10):
            await child.aclose()
            assert child.returncode == -signal.SIGKILL
            assert await child.wait() == -signal.SIGKILL
            assert await sleeper.wait() == -signal.SIGKILL  # killed (and reaped here)
    finally:
        boot_end.close()
        if sleeper.returncode is None:
            sleeper.kill()
            await sleeper.wait()


async def _network_to_attach(
    run_dir: Path,
) -> tuple[anyio.abc.Process, BootProcess, _network.CapsuleNetwork]:
    """A process in a network namespace of its own (``unshare -n sleep``), a boot process
    and a capsule network (its files in ``run_dir``) to attach to it; skips where this
    host cannot (not root, no pasta or nft)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make a network namespace")
    tools = _network.NetworkTools.detect(full_isolation=True)
    if not tools.available:
        pytest.skip(f"no capsule network here: {tools.reasons}")
    holder = await anyio.open_process(["unshare", "-n", "sleep", "30"])
    boot = BootProcess(_capsule_python(), {"PATH": "/usr/bin:/bin"})
    return holder, boot, _network.CapsuleNetwork(tools, run_dir)


async def test_a_network_closed_while_pasta_starts_ends_that_pasta(tmp_path: Path) -> None:
    # A destroy racing a boot closes the capsule's network while pasta is being started:
    # the pasta that appears afterwards must go at once, not be left with its holder.
    holder, boot, network = await _network_to_attach(tmp_path)
    started: list[BootChild] = []

    class Racing:  # the boot process, with the close landing while it forks the holder
        async def hold(
            self, argv: list[str], *, stderr: int, pass_fds: tuple[int, ...], nice: int = 0
        ) -> BootChild:
            await network.close()
            child = await boot.hold(argv, stderr=stderr, pass_fds=pass_fds, nice=nice)
            started.append(child)
            return child

    network.boot = Racing()  # type: ignore[assignment]
    try:
        with anyio.fail_after(10):
            while (fd := _network._open_netns(holder.pid)) is None:
                await anyio.sleep(0.01)
        try:
            with pytest.raises(RuntimeError, match="closed while pasta started"):
                await network._start_pasta(fd, 10)
        finally:
            os.close(fd)
        assert network.holder is None
        assert len(started) == 1
        assert started[0].returncode is not None  # killed and reaped, not left running
    finally:
        holder.kill()
        await holder.wait()
        await boot.aclose()


@pytest.mark.parametrize("holder", ["boot process", "python holder"])
async def test_a_background_pasta_is_niced_and_its_foreground_is_not(
    tmp_path: Path, holder: str
) -> None:
    # A warm spare's pasta starts at niceness 19 (its start-up is outside the capsule's
    # cgroups), whichever holder starts it; to_foreground() makes it 0. pasta's pid file
    # holds its pid inside its own pid namespace: the host's is found through its holder.
    netns_holder, boot, network = await _network_to_attach(tmp_path)
    network.boot = boot if holder == "boot process" else None
    network.background = True
    try:
        with anyio.fail_after(10):
            while (fd := _network._open_netns(netns_holder.pid)) is None:
                await anyio.sleep(0.01)
        try:
            await network._start_pasta(fd, 10)
        finally:
            os.close(fd)
        pid = network.pasta_pid()
        assert pid is not None
        # the process found is this network's pasta (its pid file is in tmp_path)
        assert str(tmp_path).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert int(network.pid_file.read_text()) != pid  # (the file has the inner pid)
        assert _nice(pid) == 19
        network.to_foreground()
        assert _nice(pid) == 0
        network.to_foreground()  # again: nothing to do
        assert _nice(pid) == 0
    finally:
        await network.close()
        netns_holder.kill()
        await netns_holder.wait()
        await boot.aclose()
    assert network.pasta_pid() is None  # closed: no pasta to name


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


async def test_a_dead_boot_child_is_not_reaped_while_its_cgroup_join_helper_runs(
    tmp_path: Path,
) -> None:
    # The helper writes the boot child's pid into the capsule's cgroups; were the child
    # reaped first, the pid could name a new process of the host, which the write would
    # move into the capsule's cgroups. A FIFO stands in for cgroup.procs: the helper
    # blocks opening it while its boot child fails (the plan has nothing to boot).
    fifo = tmp_path / "procs"
    os.mkfifo(fifo)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"cgroups": [str(fifo)]}))
    boot = BootProcess(_capsule_python(), {"PATH": "/usr/bin:/bin"})
    try:
        child = await boot.spawn(plan, network=False)
        with anyio.fail_after(10):
            assert await child.wait() != 0  # failed: the plan has nothing to boot
        assert child.returncode is not None  # the server has the status (closed its end)
        await anyio.sleep(0.3)  # (the old boot process reaped it at once)
        assert _state(child.pid) == "Z"  # a zombie still: its pid names nobody else
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the helper's open returns
        try:
            with anyio.fail_after(10):
                while _state(child.pid) is not None:
                    await anyio.sleep(0.01)  # reaped once the helper has ended
            assert os.read(reader, 64) == b""  # and the helper wrote no pid of the dead
        finally:
            os.close(reader)
            await child.aclose()
    finally:
        await boot.aclose()


def _state(pid: int) -> str | None:
    """The process's state letter, or None if there is no such process (reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _processes_with(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    if marker.encode() in fh.read():
                        found.append(int(pid))
            except OSError:
                continue
    return found


async def test_a_holder_killed_as_it_starts_takes_what_it_holds_with_it(tmp_path: Path) -> None:
    # A destroy racing a boot kills pasta's holder the moment it exists, possibly before
    # the holder's pid-namespace init has armed its parent-death signal: that init (and
    # pasta under it) must still go, not live on as orphans of the host's init.
    if os.geteuid() != 0:
        pytest.skip("needs root to make a pid namespace")
    marker = f"61.{os.getpid()}{id(tmp_path) % 1000}"  # a sleep no other test runs
    boot = BootProcess(_capsule_python(), {"PATH": "/usr/bin:/bin"})
    try:
        with (tmp_path / "err").open("wb") as err:
            for _ in range(100):
                child = await boot.hold(["/bin/sleep", marker], stderr=err.fileno())
                child.send_signal(signal.SIGKILL)
                await child.wait()
        await anyio.sleep(0.3)  # the kernel delivers parent-death signals asynchronously
        left = _processes_with(marker)
    finally:
        await boot.aclose()
        for pid in _processes_with(marker):
            os.kill(pid, signal.SIGKILL)
    assert left == []
