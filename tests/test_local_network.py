"""A capsule's outbound network (issue 18): the registries reachable, the host not.

Traffic from these tests goes only to loopback and the package registries (PyPI and the
Debian mirror). The private-range and link-local blocks are proved by reading the
capsule's nftables filter and routes from the host side, never by sending to them.
Everything here needs full isolation and pasta; it is skipped otherwise, with the reason
the server gives.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx
import pytest

from tests.localserver import FAST, local_http, new_capsule, server_process, sh, wait_status
from wrenn import AsyncWrennClient
from wrenn_local import LocalServer, _network
from wrenn_local._network import DNS_FORWARDER, host_addresses

# the ranges issue 18 names: nothing in them may be reachable from a capsule
MUST_BLOCK = (
    "127.0.0.0/8",
    "::1/128",
    "169.254.0.0/16",
    "169.254.169.254/32",
    "fe80::/10",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
    # never on the public internet, yet a LAN or tunnel may use them: site-local, and
    # every IPv6 form that embeds an IPv4 address (IPv4-compatible, local-use NAT64,
    # 6to4, Teredo). (Not the documentation ranges as such: the registries this machine
    # reaches are at 203.0.113.80. The host's own LAN, whatever its range, is blocked as
    # the network of one of its addresses: host_addresses(networks=True).)
    "192.88.99.0/24",
    "::a00:1/128",
    "64:ff9b:1::/48",
    "2002::/16",
    "2001::/32",
    "fec0::/10",
)
RESOLVE = "import socket; print(socket.getaddrinfo('pypi.org', 443)[0][4][0])"


async def networked(server: LocalServer, http: httpx.AsyncClient) -> None:
    health = (await http.get("/health")).json()
    if server.isolation != "full" or health.get("network") != "on":
        pytest.skip(f"no capsule network here: {health.get('network_reasons')}")


def boot_pid(server: LocalServer, cid: str) -> int:
    sandbox = server.capsules.capsules[cid].sandbox
    assert sandbox is not None
    assert sandbox.process is not None
    return sandbox.process.pid


def in_netns(pid: int, *argv: str) -> str:
    """Run a host program in a capsule's network namespace (from the host side)."""
    return subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", *argv],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout


def owner_userns(pid: int) -> int:
    """The inode of the user namespace owning ``pid``'s network namespace."""
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        owner = fcntl.ioctl(fd, 0xB701)  # NS_GET_USERNS: a descriptor of the owner
    finally:
        os.close(fd)
    try:
        return os.fstat(owner).st_ino
    finally:
        os.close(owner)


def pasta_pids() -> dict[int, list[str]]:
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = [a.decode() for a in fh.read().split(b"\0") if a]
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) in ("pasta", "pasta.avx2"):
            found[int(entry)] = argv
    return found


def blocked_sets(ruleset: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for body in re.findall(r"elements = \{([^}]*)\}", ruleset):
        items = [item.strip() for item in body.replace("\n", " ").split(",")]
        nets.extend(ipaddress.ip_network(item, strict=False) for item in items if item)
    return nets


def covered(net: str, nets: list[Any]) -> bool:
    wanted = ipaddress.ip_network(net)
    return any(n.version == wanted.version and wanted.subnet_of(n) for n in nets)


async def test_the_registries_are_reachable_and_named() -> None:
    async with local_http() as (server, http):
        await networked(server, http)
        cid = await new_capsule(http)
        meta = (await http.get(f"/v1/capsules/{cid}")).json()["metadata"]
        assert meta["network"] == "on"
        out = await sh(http, cid, f'python3 -c "{RESOLVE}"', timeout=20)
        assert out["exit_code"] == 0, out
        ipaddress.ip_address(out["stdout"].strip())  # DNS answered through the forwarder
        out = await sh(
            http,
            cid,
            "cd /tmp && timeout 60 python3 -m pip download --isolated --no-deps --no-cache-dir"
            " --cert /etc/ssl/certs/ca-certificates.crt --index-url https://pypi.org/simple"
            " -d dl six >/dev/null && ls dl",
            timeout=70,
        )
        assert out["exit_code"] == 0, out["stderr"][-800:]
        assert re.search(r"^six-.*\.whl$", out["stdout"], re.M), out


async def test_apt_get_download_of_a_debian_package() -> None:
    async with local_http() as (server, http):
        await networked(server, http)
        cid = await new_capsule(http)
        # as the capsule's user: apt's state and cache in /tmp, the capsule's own sources
        opts = (
            "-o Dir::State=/tmp/apt -o Dir::Cache=/tmp/apt -o Dir::State::status=/dev/null"
            " -o Debug::NoLocking=1 -q"
        )
        out = await sh(
            http,
            cid,
            "cat /etc/apt/sources.list.d/* >/dev/null && "
            "mkdir -p /tmp/apt/lists/partial /tmp/apt/archives/partial /tmp/get && cd /tmp/get"
            f" && timeout 90 apt-get {opts} update >/dev/null"
            f" && timeout 60 apt-get {opts} download hello >/dev/null && ls",
            timeout=160,
        )
        assert out["exit_code"] == 0, out["stderr"][-800:]
        assert re.search(r"^hello_.*\.deb$", out["stdout"], re.M), out


async def test_the_hosts_loopback_and_the_servers_port_are_unreachable() -> None:
    async with local_http() as (server, http):
        await networked(server, http)
        cid = await new_capsule(http)
        with socket.create_server(("127.0.0.1", 0)) as listener:
            port = listener.getsockname()[1]
            probe = (
                "import socket\n"
                f"for port in ({port}, {server.port}):\n"
                "    s = socket.socket(); s.settimeout(3)\n"
                "    print(port, s.connect_ex(('127.0.0.1', port)))\n"
            )
            out = await sh(http, cid, f"python3 -c {_quote(probe)}", timeout=20)
            listener.settimeout(0.5)
            with pytest.raises(TimeoutError):
                listener.accept()  # nothing of the capsule arrived at the host's listener
        assert out["exit_code"] == 0, out
        results = dict(line.split() for line in out["stdout"].splitlines())
        # refused: the capsule's loopback is its own, and no port leads to the host's
        assert results == {str(port): "111", str(server.port): "111"}, out
        # pasta maps neither the gateway to the host's loopback nor host ports inside
        pid = boot_pid(server, cid)
        mine = [argv for argv in pasta_pids().values() if argv]
        assert mine, "no pasta for the capsule"
        for argv in mine:
            joined = " ".join(argv)
            assert "--no-map-gw" in argv
            for flag in ("-t none", "-u none", "-T none", "-U none"):
                assert flag in joined, (flag, joined)
        assert in_netns(pid, "ip", "-br", "link").count("\n") <= 2  # lo and pasta's tap


async def test_private_link_local_and_host_addresses_are_filtered() -> None:
    async with local_http() as (server, http):
        await networked(server, http)
        cid = await new_capsule(http)
        pid = boot_pid(server, cid)
        # the capsule's network namespace is not the host's
        assert os.stat(f"/proc/{pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
        ruleset = in_netns(pid, "nft", "list", "ruleset")
        nets = blocked_sets(ruleset)
        for net in MUST_BLOCK:
            assert covered(net, nets), (net, ruleset)
        for address in host_addresses():
            assert covered(address.split("%")[0], nets), (address, ruleset)
        # the network each host address is on: the host's LAN and its gateway (this
        # machine's is 192.0.2.0/24, a documentation range, gateway 192.0.2.1)
        lans = host_addresses(networks=True)
        assert len(lans) == len(host_addresses())
        for network in lans:
            assert covered(str(ipaddress.ip_network(network, strict=False)), nets), network
        for line in in_netns(pid, "ip", "-4", "route").splitlines():
            if line.startswith("default via"):  # the gateway pasta copied from the host
                assert covered(line.split()[2], nets), (line, ruleset)
        assert "hook output" in ruleset
        assert "policy accept" in ruleset
        assert re.search(r"ip daddr @blocked4 reject", ruleset), ruleset
        assert re.search(r"ip6 daddr @blocked6 reject", ruleset), ruleset
        # the one exception: the DNS forwarder, UDP port 53 only, before the rejects
        allow = re.search(rf"ip daddr {re.escape(DNS_FORWARDER)} udp dport 53 accept", ruleset)
        assert allow is not None
        assert allow.start() < ruleset.index("@blocked4 reject")
        resolv = await sh(http, cid, "cat /etc/resolv.conf")
        assert resolv["stdout"].split()[:2] == ["nameserver", DNS_FORWARDER]
        # routes: the default route and the host's own subnet, nothing else
        routes = in_netns(pid, "ip", "-4", "route").splitlines()
        assert any(r.startswith("default via") for r in routes), routes


# The attack below: a snapshot whose /usr/bin/python3 is the capsule's own code. It is the
# interpreter of the next capsule's agent, so capsule code runs from the first moment of
# that capsule's boot, before the capsule is running.
TEMPLATE_AGENT = (
    'real=$(readlink -f /usr/bin/python3) && rm /usr/bin/python3 && printf "%s\\n" '
    "'#!/bin/sh' 'cat /proc/sys/kernel/hostname >> /tmp/template-agent-ran' "
    '"exec $real \\"\\$@\\"" > /usr/bin/python3 && chmod 755 /usr/bin/python3'
)


async def test_no_capsule_is_connected_before_its_filter_even_with_a_template_agent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Capsule code can run before its capsule is running (a snapshot replaces the
    agent's interpreter), so the namespace must never be connected (pasta) before its
    filter is loaded: pasta and nft were started at once, leaving a window with a route
    to the host's network and no filter. Checked from the host at the moment pasta
    starts, with ``nft list ruleset`` (no traffic)."""
    loaded: list[bool] = []
    rulesets: list[str] = []
    load_filter, start_pasta = (
        _network.CapsuleNetwork._load_filter,
        _network.CapsuleNetwork._start_pasta,
    )

    async def filter_then_note(self: _network.CapsuleNetwork, fd: int) -> None:
        await load_filter(self, fd)
        loaded.append(True)

    async def pasta_after_check(self: _network.CapsuleNetwork, fd: int, timeout: float) -> None:
        done = bool(loaded)  # the filter was in place as pasta started
        loaded.clear()

        def listed() -> str:
            argv = ["nsenter", f"--net=/proc/self/fd/{fd}", "nft", "list", "ruleset"]
            return subprocess.run(
                argv, capture_output=True, text=True, timeout=10, pass_fds=(fd,)
            ).stdout

        rulesets.append(listed() if done else "")
        await start_pasta(self, fd, timeout)

    monkeypatch.setattr(_network.CapsuleNetwork, "_load_filter", filter_then_note)
    monkeypatch.setattr(_network.CapsuleNetwork, "_start_pasta", pasta_after_check)
    async with local_http() as (server, http):
        await networked(server, http)
        source = await new_capsule(http)
        out = await sh(http, source, f"sudo sh -c {shlex.quote(TEMPLATE_AGENT)}")
        assert out["exit_code"] == 0, out
        name = f"agent-{os.getpid()}"
        made = await http.post("/v1/snapshots", json={"sandbox_id": source, "name": name})
        assert made.status_code == 202, made.text
        with anyio.fail_after(60):
            while name not in {t["name"] for t in (await http.get("/v1/snapshots")).json()}:
                await anyio.sleep(0.1)
        cid = await new_capsule(http, template=name)
        ran = await sh(http, cid, "cat /tmp/template-agent-ran")
        assert cid[:28] in ran["stdout"].split(), ran  # the premise: capsule code booted it
    # both capsules' pasta started (and any ready network's: made the same way, ahead)
    assert len(rulesets) >= 2, rulesets
    for ruleset in rulesets:
        assert "table inet wrenn_capsule" in ruleset, rulesets
        assert "@blocked4 reject" in ruleset


async def test_the_filter_cannot_be_changed_from_inside() -> None:
    async with local_http() as (server, http):
        await networked(server, http)
        cid = await new_capsule(http)
        pid = boot_pid(server, cid)
        before = in_netns(pid, "nft", "list", "ruleset")
        # the namespace belongs to the server's (the host's) user namespace: no root of a
        # capsule user namespace (sudo inside, or `unshare -r`) holds CAP_NET_ADMIN over it
        assert owner_userns(pid) == os.stat("/proc/self/ns/user").st_ino
        # as root of the capsule where sudo works (a capsule user namespace), else as its user
        attack = (
            "if sudo -n true 2>/dev/null; then S='sudo -n'; else S=; fi; "
            "$S nft flush ruleset; $S nft delete table inet wrenn_capsule; "
            "$S ip route del default; $S ip link set eth0 down; "
            "$S ip route add 10.0.0.0/8 dev lo; "
            "unshare -r nft flush ruleset; unshare -r ip route del default; true"
        )
        await sh(http, cid, attack, timeout=20)
        assert in_netns(pid, "nft", "list", "ruleset") == before
        assert "default via" in in_netns(pid, "ip", "-4", "route")


async def test_a_capsule_created_without_network_has_none() -> None:
    async with local_http() as (server, http):
        await networked(server, http)
        cid = await new_capsule(http, network=False)
        meta = (await http.get(f"/v1/capsules/{cid}")).json()["metadata"]
        assert meta["network"] == "off"
        out = await sh(http, cid, f'ip -br link; timeout 10 python3 -c "{RESOLVE}"', timeout=20)
        assert out["exit_code"] != 0  # no interface but loopback: DNS fails, nothing leaves
        assert out["stdout"].split()[0] == "lo", out
        assert out["stdout"].count("\n") == 1, out
        bad = await http.post("/v1/capsules", json={"network": "yes"})
        assert bad.status_code == 400


async def test_a_server_without_network_says_why() -> None:
    options = attrs.evolve(FAST, network=False)
    async with local_http(options=options) as (server, http):
        if server.isolation != "full":
            pytest.skip("reduced isolation: capsules share the host's network")
        health = (await http.get("/health")).json()
        assert health["network"] == "off"
        assert "turned off" in " ".join(health["network_reasons"])
        cid = await new_capsule(http)
        meta = (await http.get(f"/v1/capsules/{cid}")).json()["metadata"]
        assert meta["network"] == "off"
        assert "turned off" in meta["network_reasons"]
        out = await sh(http, cid, "ip -br link")
        assert out["stdout"].split()[0] == "lo", out
        assert out["stdout"].count("\n") == 1, out


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _children(pid: int) -> set[int]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        for kid in kids.get(todo.pop(), []):
            out.add(kid)
            todo.append(kid)
    return out


@pytest.mark.parametrize("how", ["destroy", "sigterm", "sigkill"])
def test_no_pasta_outlives_its_capsule_or_the_server(how: str) -> None:
    with (
        server_process() as env,
        httpx.Client(
            base_url=env["WRENN_BASE_URL"], headers={"X-API-Key": env["WRENN_API_KEY"]}, timeout=30
        ) as http,
    ):
        if http.get("/health").json().get("network") != "on":
            pytest.skip("no capsule network here")
        server_pid = _server_pid(env)
        cid = http.post("/v1/capsules", json={}).json()["id"]
        deadline = time.monotonic() + 20
        while http.get(f"/v1/capsules/{cid}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # the capsule's own: the one holding its network namespace (a ready network's
        # pasta, made for the next cold boot, is the server's child too)
        ours = pastas_of_netns(_capsule_netns(http, server_pid, cid)) & _children(server_pid)
        assert ours, "the capsule's pasta was not found"
        if how == "destroy":
            assert http.delete(f"/v1/capsules/{cid}").status_code in (200, 202, 204)
        else:
            ours |= set(pasta_pids()) & _children(server_pid)  # ready networks' go too
            os.kill(server_pid, signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
        deadline = time.monotonic() + 15
        while ours & set(pasta_pids()):
            assert time.monotonic() < deadline, f"pasta left running after {how}"
            time.sleep(0.05)


def _capsule_netns(http: httpx.Client, server_pid: int, cid: str) -> str:
    """The ``net:[inode]`` of the capsule's namespace, read from its agent (the server's
    descendant running ``agent.py`` whose configuration names the capsule)."""
    for pid in _children(server_pid):
        try:
            if b"agent.py" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            config = Path(f"/proc/{pid}/root/run/wrenn/agent.json").read_text()
            if json.loads(config)["env"]["WRENN_SANDBOX_ID"] == cid:
                return os.readlink(f"/proc/{pid}/ns/net")
        except (OSError, ValueError, KeyError):
            continue
    raise AssertionError(f"the agent of {cid} was not found")


def pastas_of_netns(netns: str) -> set[int]:
    """The pastas holding a descriptor of the network namespace ``netns``."""
    found = set()
    for pid in pasta_pids():
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == netns:
                        found.add(pid)
    return found


def _server_pid(env: dict[str, str]) -> int:
    port = int(env["WRENN_BASE_URL"].rsplit(":", 1)[1])
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True)
    match = re.search(r"pid=(\d+)", out.stdout)
    assert match, out.stdout
    return int(match.group(1))


async def test_the_sdk_asks_for_a_capsule_without_network(client: AsyncWrennClient) -> None:
    # sent only when given, so requests to the cloud are unchanged
    quiet = await client.capsules.create(network=False)
    default = await client.capsules.create()
    try:
        with anyio.fail_after(20):
            while (await client.capsules.get(quiet.id)).status != "running":
                await anyio.sleep(0.05)
        assert (await client.capsules.get(quiet.id)).metadata["network"] == "off"
        meta = (await client.capsules.get(default.id)).metadata
        assert meta["network"] == ("off" if "network_reasons" in meta else "on")
    finally:
        await client.capsules.destroy(quiet.id)
        await client.capsules.destroy(default.id)


OFFLINE = """
import json, anyio, httpx, wrenn_local
from tests.localserver import FAST, new_capsule, sh
async def main():
    async with wrenn_local.serve(options=FAST) as server, httpx.AsyncClient(
        base_url=server.base_url, headers={"X-API-Key": server.api_key}, timeout=30
    ) as http:
        health = (await http.get("/health")).json()
        cid = await new_capsule(http)
        meta = (await http.get(f"/v1/capsules/{cid}")).json()["metadata"]
        out = await sh(http, cid, "echo offline-ok; ip -br link")
        print(json.dumps({"health": health, "meta": meta, "out": out["stdout"]}))
anyio.run(main)
"""


def test_an_offline_host_still_runs_capsules_and_says_why_there_is_no_network() -> None:
    # a host with no interface but loopback: the server and the test client run together
    # in a fresh network namespace (nothing is sent anywhere)
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for an offline network namespace")
    result = subprocess.run(
        [
            "unshare",
            "-n",
            "sh",
            "-c",
            'ip link set lo up && exec "$0" -c "$1"',
            sys.executable,
            OFFLINE,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 0, result.stderr[-1500:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if report["health"]["isolation"] != "full" or report["health"]["network"] != "on":
        pytest.skip(f"no capsule network here: {report['health']['network_reasons']}")
    assert report["meta"]["network"] == "off"
    assert "interface" in report["meta"]["network_reasons"], report["meta"]
    assert report["out"].split()[:2] == ["offline-ok", "lo"], report


async def test_pause_keeps_the_network_and_resume_uses_it() -> None:
    async with local_http() as (server, http):
        await networked(server, http)
        cid = await new_capsule(http)
        before = set(pasta_pids()) & _children(os.getpid())
        assert before, "the capsule's pasta was not found"
        assert (await http.post(f"/v1/capsules/{cid}/pause")).status_code in (200, 202)
        await wait_status(http, cid, "paused")
        assert before <= set(pasta_pids())  # pasta is outside the capsule's cgroup
        assert (await http.post(f"/v1/capsules/{cid}/resume")).status_code in (200, 202)
        await wait_status(http, cid, "running")
        out = await sh(http, cid, f'python3 -c "{RESOLVE}"', timeout=20)
        assert out["exit_code"] == 0, out


async def test_pasta_outlives_the_thread_that_spawned_it(anyio_backend_name: str) -> None:
    # trio spawns processes from worker threads, which exit after 10 s idle: a lifetime
    # tied to the spawning thread (a parent-death signal) would cut the network then
    if anyio_backend_name != "trio":
        pytest.skip("asyncio spawns from the event loop's own thread")
    async with local_http() as (server, http):
        await networked(server, http)
        cid = await new_capsule(http)
        ours = set(pasta_pids()) & _children(os.getpid())
        assert ours, "the capsule's pasta was not found"
        await anyio.sleep(12)  # past trio's idle-thread timeout (10 s)
        assert ours <= set(pasta_pids())
        out = await sh(http, cid, f'python3 -c "{RESOLVE}"', timeout=20)
        assert out["exit_code"] == 0, out


def test_the_no_network_flag_of_serve() -> None:
    with server_process("--no-network") as env:
        health = httpx.get(env["WRENN_BASE_URL"] + "/health", timeout=10).json()
    assert health["network"] == "off"
    assert any("turned off" in reason for reason in health["network_reasons"]), health


async def test_a_capsule_scope_without_network(client: AsyncWrennClient) -> None:
    # `client.capsule(network=False)` (and the sync client's, through the facade) reaches
    # the server as the create field; the default scope sends nothing and gets the default
    async with client.capsule(network=False) as quiet:
        assert quiet.info.metadata["network"] == "off"
        out = await quiet.commands.run("cat /proc/net/dev | tail -n +3 | cut -d: -f1")
        assert out.stdout.split() == ["lo"]


def _ip_addresses() -> list[str]:
    out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True)
    links = json.loads(out.stdout)
    return [a["local"].split("%")[0] for x in links for a in x.get("addr_info", []) if "local" in a]


def test_the_filter_names_every_address_ip_lists_read_without_ip() -> None:
    # the addresses the filter blocks are read from netlink directly (no process per
    # capsule): every one ``ip`` lists, and no other
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's ip to compare with")
    assert sorted(_network._netlink_addresses()) == sorted(_ip_addresses())
    assert sorted(host_addresses()) == sorted(_ip_addresses())


def test_the_hosts_networks_are_the_same_from_netlink_and_from_ip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's ip")
    out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True)
    listed = [
        (a["local"].split("%")[0], a["prefixlen"])
        for x in json.loads(out.stdout)
        for a in x.get("addr_info", [])
        if "local" in a
    ]
    from_netlink = host_addresses(networks=True)
    assert sorted(from_netlink) == sorted(_network._on_link(a, p) for a, p in listed)
    # a LAN is blocked whole; a network wider than one, by its address alone
    assert _network._on_link("192.0.2.2", 24) == "192.0.2.2/24"
    assert _network._on_link("203.0.113.9", 8) == "203.0.113.9/32"
    assert _network._on_link("2001:db8::5", 64) == "2001:db8::5/64"
    assert _network._on_link("2001:db8::5", 16) == "2001:db8::5/128"

    def refused(*, networks: bool = False) -> list[str]:
        # mocked: a host (a container's seccomp policy) that refuses netlink sockets
        raise PermissionError("netlink refused")

    monkeypatch.setattr(_network, "_netlink_addresses", refused)
    assert sorted(host_addresses(networks=True)) == sorted(from_netlink)


def test_the_hosts_addresses_come_from_ip_where_netlink_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's ip")

    def refused(*, networks: bool = False) -> list[str]:
        # mocked: a host (a container's seccomp policy) that refuses netlink sockets
        raise PermissionError("netlink refused")

    monkeypatch.setattr(_network, "_netlink_addresses", refused)
    assert sorted(host_addresses()) == sorted(_ip_addresses())


def test_the_filter_follows_the_hosts_addresses_through_its_cache() -> None:
    # the ruleset is made once per set of host addresses: a new address is in the next one
    # (addresses outside every blocked range: a covered one is merged into its range)
    first = _network.ruleset(["100.128.0.7"])
    assert _network.ruleset(["100.128.0.7"]) == first
    second = _network.ruleset(["100.128.0.7", "198.20.0.9", "2a0f::9"])
    assert "198.20.0.9" not in first
    for address in ("100.128.0.7", "198.20.0.9", "2a0f::9"):
        assert address in second


def test_pasta_is_started_as_the_build_it_would_pick_itself(tmp_path: Path) -> None:
    # pasta started as "pasta" on a CPU with AVX2 executes pasta.avx2 at once: the server
    # starts that build directly where it is there and the CPU has AVX2, else "pasta".
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    flags = next((x for x in lines if x.startswith("flags")), "")  # (none on some arches)
    has_avx2 = "avx2" in flags.split()
    pasta = tmp_path / "pasta"
    pasta.write_text("#!/bin/sh\n")
    pasta.chmod(0o755)
    assert _network._pasta_build(str(pasta)) == str(pasta)  # no pasta.avx2 beside it
    fast = tmp_path / "pasta.avx2"
    fast.write_text("#!/bin/sh\n")
    fast.chmod(0o644)
    assert _network._pasta_build(str(pasta)) == str(pasta)  # not executable
    fast.chmod(0o755)
    assert _network._pasta_build(str(pasta)) == str(fast if has_avx2 else pasta)
    installed = shutil.which("pasta")
    if installed is not None:
        tools = _network.NetworkTools.detect(full_isolation=True)
        assert tools.pasta == _network._pasta_build(installed)
        assert os.path.basename(tools.pasta or "") in ("pasta", "pasta.avx2")
