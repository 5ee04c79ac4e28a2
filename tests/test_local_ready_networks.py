"""Ready networks (wrenn_local/_ready_networks.py), attacked on a real local server.

A cold boot joins a network namespace made, filtered and connected ahead. What must hold:
the namespace is the host's (no capsule root can reconfigure it), its filter was in place
before pasta connected it and is the one the host's addresses call for now, no namespace
ever serves two capsules, and none outlives its capsule, its idle time or the server.

The server runs in this process: the tests read its pool to wait for a ready network and
to learn its namespace; every create, command and destroy crosses the wire. Traffic goes
only to loopback and the package registries' resolver.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import attrs
import pytest

import wrenn_local
from tests.localserver import FAST, local_http, new_capsule, sh, wait_status
from wrenn_local import _network, _ready_networks
from wrenn_local._boot_process import BootChild, BootProcess
from wrenn_local._proc import descendants
from wrenn_local._ready_networks import ReadyNetworks

# no warm spares: every create boots cold, and each cold boot may take a ready network
COLD = attrs.evolve(FAST, spares=0, ready_networks=1)


def pool(server: wrenn_local.LocalServer) -> ReadyNetworks:
    networks = server.capsules.ready_networks
    if networks is None:
        pytest.skip("no ready networks here (full isolation, pasta and nft are needed)")
    return networks


async def filled(server: wrenn_local.LocalServer, timeout: float = 20) -> tuple[int, int]:
    """Wait until a network is ready: its namespace's inode and its pasta's pid."""
    networks = pool(server)
    with anyio.fail_after(timeout):
        while not networks.ready:
            await anyio.sleep(0.01)
    ready = networks.ready[0]
    pid = ready.network.pasta_pid()
    assert pid is not None
    return os.fstat(ready.netns).st_ino, pid


def netns_of(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def capsule_netns(server: wrenn_local.LocalServer, cid: str) -> int:
    sandbox = server.capsules.capsules[cid].sandbox
    assert sandbox is not None
    assert sandbox.process is not None
    return netns_of(sandbox.process.pid)


def nice_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def gone(pid: int, timeout: float = 10) -> None:
    with anyio.fail_after(timeout):
        while alive(pid):
            await anyio.sleep(0.02)


def ruleset_in(pid: int) -> str:
    return subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", "nft", "list", "ruleset"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout


async def test_a_cold_boot_joins_a_ready_network_once_and_it_works() -> None:
    async with local_http(options=COLD) as (server, http):
        first = await new_capsule(http)  # asks the pool first: it starts filling
        netns, pasta = await filled(server)
        assert nice_of(pasta) == 19  # not claimed yet: off the CPU owned capsules use
        second = await new_capsule(http)
        assert capsule_netns(server, second) == netns  # the ready one, joined
        assert capsule_netns(server, first) != netns
        assert nice_of(pasta) == 0  # claimed: as any capsule's pasta
        record = server.capsules.capsules[second]
        assert record.metadata["network"] == "on"
        sandbox = record.sandbox
        assert sandbox is not None
        assert sandbox.network is not None
        assert sandbox.network.pasta_pid() == pasta
        # the filter is in it, and the network works: the resolver pasta forwards to
        boot = sandbox.process
        assert boot is not None
        assert "table inet wrenn_capsule" in ruleset_in(boot.pid)
        out = await sh(http, second, "getent hosts pypi.org", timeout=20)
        assert out["exit_code"] == 0, out
        # never handed out twice: the refill is another namespace, and a third capsule
        # gets that one, not the second's
        refill, _ = await filled(server)
        assert refill != netns
        third = await new_capsule(http)
        assert capsule_netns(server, third) == refill
        # the capsule owns it now: its destroy ends the pasta (and the namespace)
        assert (await http.delete(f"/v1/capsules/{second}")).status_code == 202
        await wait_status(http, second, "stopped")
        await gone(pasta)


async def test_a_ready_network_cannot_be_reconfigured_from_inside() -> None:
    # made by the boot process (host root): the host's user namespace owns it, as it owns
    # any capsule's, so no root of the capsule's user namespace has CAP_NET_ADMIN over it
    async with local_http(options=COLD) as (server, http):
        await new_capsule(http)
        netns, _ = await filled(server)
        cid = await new_capsule(http)
        assert capsule_netns(server, cid) == netns
        sandbox = server.capsules.capsules[cid].sandbox
        assert sandbox is not None
        assert sandbox.process is not None
        pid = sandbox.process.pid
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            owner = fcntl.ioctl(fd, 0xB701)  # NS_GET_USERNS
        finally:
            os.close(fd)
        try:
            assert os.fstat(owner).st_ino == os.stat("/proc/self/ns/user").st_ino
        finally:
            os.close(owner)
        before = ruleset_in(pid)
        attack = (
            "if sudo -n true 2>/dev/null; then S='sudo -n'; else S=; fi; "
            "$S nft flush ruleset; $S ip route del default; $S ip link set eth0 down; "
            "unshare -r nft flush ruleset; unshare -r ip route del default; true"
        )
        await sh(http, cid, attack, timeout=20)
        assert ruleset_in(pid) == before
        # and no process of the capsule holds a descriptor of a namespace: the one the
        # boot was handed was closed before anything of the capsule started (read from
        # the host: every process of the capsule, the agent and its workers among them)
        processes = descendants(pid)
        assert processes
        for process in processes:
            with contextlib.suppress(FileNotFoundError):
                for entry in os.listdir(f"/proc/{process}/fd"):
                    with contextlib.suppress(FileNotFoundError):
                        link = os.readlink(f"/proc/{process}/fd/{entry}")
                        assert not link.startswith("net:"), (process, link)


async def test_a_network_filtered_for_old_host_addresses_is_not_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Mocked: the host gaining an address (one outside every range the filter blocks
    # anyway, which would merge into its range). Adding a real one would change the host's
    # network under every other test; the pool only reads host_addresses().
    async with local_http(options=COLD) as (server, http):
        await new_capsule(http)
        netns, pasta = await filled(server)
        real = _network.host_addresses

        def more(*, networks: bool = False) -> list[str]:
            return [*real(networks=networks), "198.20.0.9"]

        monkeypatch.setattr(_network, "host_addresses", more)
        monkeypatch.setattr(_ready_networks, "host_addresses", more)
        cid = await new_capsule(http)
        assert capsule_netns(server, cid) != netns  # the stale one was not joined
        sandbox = server.capsules.capsules[cid].sandbox
        assert sandbox is not None
        assert sandbox.process is not None
        assert "198.20.0.9" in ruleset_in(sandbox.process.pid)  # its own, made now
        await gone(pasta)  # and the stale one was closed
        # the refill is filtered for the addresses the host has now
        await filled(server)
        assert "198.20.0.9" in (pool(server).ready[0].network.rules or "")


async def test_ready_networks_close_when_idle_and_at_shutdown() -> None:
    options = attrs.evolve(COLD, spare_idle=2.0)
    async with local_http(options=options) as (server, http):
        directory = server.data_dir / "networks"
        await new_capsule(http)
        _, pasta = await filled(server)
        assert len(list(directory.iterdir())) == 1
        await gone(pasta, timeout=10)  # no claim for spare_idle seconds: closed
        assert len(pool(server)) == 0
        with anyio.fail_after(5):
            while list(directory.iterdir()):
                await anyio.sleep(0.02)
        await new_capsule(http)  # a claim fills the pool again
        _, pasta = await filled(server)
    assert not alive(pasta)  # the server's shutdown closed it
    assert not directory.exists() or not list(directory.iterdir())


async def test_a_create_destroyed_while_booting_on_a_ready_network_leaves_no_pasta() -> None:
    # The boot is cancelled at once after it took the network: the network is the
    # capsule's, so the destroy must end its pasta whether or not the boot got further.
    async with local_http(options=COLD) as (server, http):
        await new_capsule(http)
        for _ in range(3):
            netns, pasta = await filled(server)
            resp = await http.post("/v1/capsules", json={})
            assert resp.status_code == 202, resp.text
            cid = resp.json()["id"]
            assert (await http.delete(f"/v1/capsules/{cid}")).status_code == 202
            await wait_status(http, cid, "stopped")
            if pool(server).ready and os.fstat(pool(server).ready[0].netns).st_ino == netns:
                continue  # the destroy came before the claim: the pool still has it
            await gone(pasta)


async def test_no_refill_runs_while_a_cold_boot_is_under_way() -> None:
    # A refill started by a claim would compete for the CPU with the very boot that
    # claimed: the pool makes none until every boot that asked has ended.
    async with local_http(options=COLD) as (server, http):
        networks = pool(server)
        await new_capsule(http)
        await filled(server)
        networks.boot_started()  # a boot under way (as Sandbox.start brackets one)
        claimed = networks.claim()  # its claim empties the pool...
        assert claimed is not None
        try:
            await anyio.sleep(0.5)
            assert len(networks) == 0  # ...and nothing is made while it runs
            networks.boot_ended()
            await filled(server)  # made once it has ended
        finally:
            await claimed.aclose()  # (claimed by no capsule: the test's to close)


@pytest.mark.parametrize(
    "error",
    [
        # what an offline host or a refused fork would give
        OSError("refused"),
        # an error no real step of making a network raises today (a later change's bug,
        # say): the filler is a task of the server's task group; were it to let the
        # error out, the server would end, and every capsule with it
        LookupError("a bug"),
    ],
    ids=["refused", "unexpected"],
)
async def test_a_failing_refill_neither_ends_the_server_nor_is_retried_at_every_create(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    # Mocked: a boot process that cannot make a namespace (breaking it for real would
    # break the server too).
    tries: list[int] = []

    async def failing(self: BootProcess) -> BootChild:
        tries.append(1)
        raise error

    monkeypatch.setattr(BootProcess, "network_namespace", failing)
    async with local_http(options=COLD) as (server, http):
        pool(server)
        for _ in range(3):  # each boots with its own network, which works
            cid = await new_capsule(http)
            assert server.capsules.capsules[cid].metadata["network"] == "on"
            out = await sh(http, cid, "echo alive", timeout=20)
            assert out["stdout"] == "alive\n", out
            await anyio.sleep(0.2)  # time for a refill to be tried
        assert tries == [1]  # tried once, then left alone for spare_idle seconds
        assert len(pool(server)) == 0
    warned = [r for r in caplog.records if r.name == "wrenn_local.networks"]
    assert len(warned) == 1, caplog.records  # said once, not at every create
    assert str(error) in warned[0].getMessage()
    # the traceback of an error nobody expected, and only of that
    assert bool(warned[0].exc_info) is isinstance(error, LookupError)


async def test_without_ready_networks_each_boot_makes_its_own() -> None:
    async with local_http(options=attrs.evolve(COLD, ready_networks=0)) as (server, http):
        assert server.capsules.ready_networks is None
        first = await new_capsule(http)
        second = await new_capsule(http)
        assert capsule_netns(server, first) != capsule_netns(server, second)
        out = await sh(http, second, "getent hosts pypi.org", timeout=20)
        if server.capsules.support.network.available:
            assert out["exit_code"] == 0, out


def test_the_number_of_ready_networks_comes_from_the_flag() -> None:
    from wrenn_local._cli import parser, ready_networks_of

    args = parser().parse_args(["serve", "--ready-networks", "0"])
    assert args.ready_networks == 0
    assert parser().parse_args(["serve"]).ready_networks is None
    assert wrenn_local.ServerOptions().ready_networks == 2
    serve = ["serve", "--port", "0"]
    assert ready_networks_of(parser().parse_args(serve), 2) == 2
    assert ready_networks_of(parser().parse_args([*serve, "--ready-networks", "3"]), 2) == 3
    with pytest.raises(ValueError, match="0 or more"):
        ready_networks_of(parser().parse_args([*serve, "--ready-networks", "-1"]), 2)


def test_a_negative_number_of_ready_networks_is_refused_before_serving(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from wrenn_local._cli import EXIT_ERROR, main

    assert main(["serve", "--port", "0", "--ready-networks", "-1"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "ready networks must be 0 or more" in err
    assert "Traceback" not in err


def test_a_boot_child_joins_the_namespace_it_is_handed_and_keeps_no_descriptor_of_it(
    tmp_path: Path,
) -> None:
    """boot.py's ``join_netns``: setns into the passed namespace, the descriptor closed
    before anything of the capsule runs. Checked on boot.py's own request handling, with
    its ``main`` replaced by a probe: no capsule is needed to see the namespace joined."""
    script = tmp_path / "probe.py"
    script.write_text(
        "import os, sys\n"
        f"sys.path.insert(0, {str(Path(wrenn_local.__file__).parent / '_inside')!r})\n"
        "import boot\n"
        "def main(plan):\n"
        "    fds = []\n"
        "    for n in os.listdir('/proc/self/fd'):\n"
        "        try:\n"
        "            fds.append(os.readlink(f'/proc/self/fd/{n}'))\n"
        "        except OSError:\n"
        "            pass  # the directory listdir had open\n"
        "    inode = os.stat('/proc/self/ns/net').st_ino\n"
        "    os.write(1, (str(inode) + ' ' + ' '.join(fds) + chr(10)).encode())\n"
        "boot.main = main\n"
        "ns = os.open(sys.argv[1], os.O_RDONLY)\n"
        "os.dup2(ns, 9)\n"
        "request = {'plan': 'x', 'network': False, 'join_netns': 9, 'fds': [1, 9]}\n"
        "pid, gate = boot._start_child(request, [os.dup(1), ns])\n"
        "os.waitpid(pid, 0)\n"
    )
    if os.geteuid() != 0:
        pytest.skip("joining a network namespace needs root")
    ns_holder = subprocess.Popen(["unshare", "-n", "sleep", "30"])
    try:
        deadline = time.monotonic() + 5
        while netns_of(ns_holder.pid) == netns_of(os.getpid()):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        out = subprocess.run(
            [sys.executable, "-I", "-S", str(script), f"/proc/{ns_holder.pid}/ns/net"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        inode, *fds = out.stdout.split()
        assert int(inode) == netns_of(ns_holder.pid), out  # joined, not made
        assert int(inode) != netns_of(os.getpid()), out
        assert not [fd for fd in fds if fd.startswith("net:")], out
    finally:
        ns_holder.kill()
        ns_holder.wait()
