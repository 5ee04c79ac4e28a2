"""A stopping capsule's processes end in the background (``Sandbox.stop``): its cgroup gets
the lowest CPU weight before the kill and its pasta the highest niceness, so that freeing
their memory does not take CPU from the capsules still in use; and if they have not
ended after ``ENDING_IN_BACKGROUND_SECONDS``, the default weight comes back so that the
stop still ends soon. Either way the capsule leaves nothing behind.

What is looked at is the real thing, read from the host while the DELETE runs: the
capsule's ``cpu.weight`` file and pasta's niceness in ``/proc``, each polled by a thread
until it is gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import attrs
import pytest

import wrenn_local
from tests.localserver import FAST, local_http, new_capsule, wait_status
from tests.test_local_destroy_sweep import cgroups_of, descendants
from wrenn_local import _cgroups, _network

pytestmark = pytest.mark.anyio

# every create boots cold and makes its own network: its pasta is found by its capsule id
COLD = attrs.evolve(FAST, spares=0, ready_networks=0)


@contextmanager
def watched(read: Callable[[], str]) -> Iterator[list[str]]:
    """Every distinct value ``read`` gives, in order, until it raises ``OSError`` (the
    file is gone) or the block has ended and 10 s more have passed."""
    seen: list[str] = []
    done = threading.Event()

    def poll() -> None:
        deadline: float | None = None
        while deadline is None or time.monotonic() < deadline:
            try:
                value = read()
            except OSError:
                return
            if not seen or seen[-1] != value:
                seen.append(value)
            if deadline is None and done.is_set():
                deadline = time.monotonic() + 10
            time.sleep(0.0002)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join(15)


def pasta_of(capsule_id: str) -> int:
    for line in descendants(os.getpid()):
        pid = line.split(" ", 1)[0]
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"pasta" in argv[0] and any(f"/{capsule_id}/".encode() in arg for arg in argv):
            return int(pid)
    raise AssertionError(f"no pasta of {capsule_id}")


def niceness(pid: int) -> Callable[[], str]:
    def read() -> str:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        if fields[0] == "Z":
            raise FileNotFoundError(pid)  # ended (a zombie until its parent reaps it)
        return fields[16]  # nice: field 19 of stat, the 17th after the command

    return read


async def ended(pid: int, within: float = 10.0) -> bool:
    with anyio.move_on_after(within):
        while True:
            try:
                niceness(pid)()
            except OSError:
                return True
            await anyio.sleep(0.01)
    return False


def weight_of(capsule_id: str) -> Callable[[], str]:
    """The capsule's CPU weight as the kernel has it: v2 ``cpu.weight``, v1 ``cpu.shares``."""
    root = _cgroups.CGROUP_ROOT
    if (root / "cgroup.controllers").exists():
        path = root / "wrenn-local" / capsule_id / "cpu.weight"
    else:
        path = root / "cpu" / "wrenn-local" / capsule_id / "cpu.shares"
    return lambda: path.read_text().strip()


V2 = (_cgroups.CGROUP_ROOT / "cgroup.controllers").exists()
LOWEST, DEFAULT = (w[0 if V2 else 1] for w in (_cgroups.BACKGROUND_WEIGHT, _cgroups.DEFAULT_WEIGHT))


def full_with_network(server: wrenn_local.LocalServer, capsule_id: str) -> None:
    if server.isolation != "full":
        pytest.skip("reduced isolation: no cgroups and no network of its own")
    try:
        weight_of(capsule_id)()
    except OSError:
        pytest.skip("no cpu controller on this host: capsules have no CPU weight")


async def test_a_destroyed_capsule_ends_in_the_background_and_leaves_nothing() -> None:
    async with local_http(options=COLD) as (server, http):
        cid = await new_capsule(http)
        full_with_network(server, cid)
        pasta = pasta_of(cid)
        assert niceness(pasta)() == "0"  # an owned capsule's pasta runs as any process
        assert weight_of(cid)() == DEFAULT
        with watched(weight_of(cid)) as weights, watched(niceness(pasta)) as nice:
            gone = await http.delete(f"/v1/capsules/{cid}")
            assert gone.status_code in (202, 204), gone.text
            await wait_status(http, cid, "stopped")
        assert weights[:2] == [DEFAULT, LOWEST], weights
        assert nice[:2] == ["0", "19"], nice
        assert cgroups_of(cid) == []
        assert await ended(pasta)
        assert not (server.data_dir / "capsules" / cid).exists()


async def test_a_network_whose_pasta_does_not_end_in_time_gives_it_niceness_0_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # pasta cannot be made to outlive SIGKILL for a second, so the deadline is made
    # zero: the close finds it not ended yet, as on a host too busy to run it.
    monkeypatch.setattr(_network, "ENDING_IN_BACKGROUND_SECONDS", 0.0)
    async with local_http(options=COLD) as (server, http):
        cid = await new_capsule(http)
        full_with_network(server, cid)
        pasta = pasta_of(cid)
        with watched(niceness(pasta)) as nice:
            gone = await http.delete(f"/v1/capsules/{cid}")
            assert gone.status_code in (202, 204), gone.text
            await wait_status(http, cid, "stopped")
        assert nice[0] == "0", nice
        assert nice[-1] == "0", nice
        assert await ended(pasta)
        assert cgroups_of(cid) == []


def test_a_removal_gives_processes_that_have_not_ended_the_default_weight_back() -> None:
    """The cgroup's side: processes killed but not ended by ``background_until`` get
    the default weight back while the removal waits for them. Kept from ending by the
    v1 freezer (a frozen process cannot die until thawed: what a capsule's processes
    look like to the removal on a host too busy to run them)."""
    version, controllers = _cgroups.detect_cgroups()
    if os.geteuid() != 0 or version != 1 or not {"cpu", "freezer"} <= controllers:
        pytest.skip("needs root and cgroup v1's cpu and freezer (v2 lets a frozen process die)")
    name = f"test-stop-{os.getpid()}-{time.time_ns()}"
    group = _cgroups.CgroupSet(version, controllers, name)
    weight = _cgroups.CGROUP_ROOT / "cpu" / "wrenn-local" / name / "cpu.shares"
    freezer = _cgroups.CGROUP_ROOT / "freezer" / "wrenn-local" / name
    child = subprocess.Popen(["sleep", "60"])
    try:
        for procs in group.create(vcpus=1, memory_mb=256, background=True):
            Path(procs).write_text(str(child.pid))
        assert weight.read_text().strip() == LOWEST
        (freezer / "freezer.state").write_text("FROZEN")
        removal = threading.Thread(
            target=group.remove, kwargs={"background_until": time.monotonic() + 0.2}
        )
        removal.start()
        deadline = time.monotonic() + 4  # (the removal gives up after REMOVE_SECONDS)
        while weight.read_text().strip() != DEFAULT and time.monotonic() < deadline:
            time.sleep(0.01)
        assert weight.read_text().strip() == DEFAULT
        assert removal.is_alive()  # still waiting for the process, which is still there
        assert child.poll() is None
        (freezer / "freezer.state").write_text("THAWED")
        removal.join(10)
        assert not removal.is_alive()
        assert child.wait(10) == -signal.SIGKILL  # the removal killed it
        assert not group.made
        assert not weight.parent.exists()
    finally:
        child.kill()
        child.wait()
        with contextlib.suppress(OSError):
            (freezer / "freezer.state").write_text("THAWED")
        group.remove()
