"""A capsule destroyed at any point of its cold boot leaves nothing on the host: no
process (bubblewrap, the agent, pasta), no cgroup, no loop device on its disk image, no
directory, no descriptor held by the server (its id range's lock, its network namespace,
sockets to its agent).

The points are reached by time: a DELETE after a sweep of delays across a whole cold
boot, whose duration is measured first on this machine. Spares and ready networks are off
so that every create boots cold and makes its own network, and nothing the server makes
ahead blurs what a capsule left.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio
import attrs
import httpx
import pytest

import wrenn_local
from tests.descriptors import open_fds, settled_fds
from tests.localserver import FAST, local_http, new_capsule, sh, wait_status

pytestmark = pytest.mark.anyio

COLD = attrs.evolve(FAST, spares=0, ready_networks=0)


def descendants(pid: int) -> set[str]:
    """Processes under ``pid``, each as ``pid command``."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents.setdefault(int(stat.rpartition(")")[2].split()[1]), []).append(int(entry))
    found: set[str] = set()
    todo = list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        found.add(f"{child} {command.decode(errors='replace')[:160]}")
        todo += parents.get(child, [])
    return found


def loops_on(directory: Path) -> list[str]:
    """Loop devices whose backing file is under ``directory``."""
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            if backing.read_text().strip().startswith(f"{directory}/"):
                found.append(backing.parent.parent.name)
        except OSError:
            continue
    return found


def cgroups_of(capsule_id: str) -> list[Path]:
    root = Path("/sys/fs/cgroup")
    found = [root / "wrenn-local" / capsule_id, *root.glob(f"*/wrenn-local/{capsule_id}")]
    return [path for path in found if path.exists()]


async def settled_descendants(baseline: set[str], within: float = 10.0) -> set[str]:
    with anyio.move_on_after(within):
        while descendants(os.getpid()) - baseline:
            await anyio.sleep(0.05)
    return descendants(os.getpid()) - baseline


async def baseline_after_a_capsule(http: httpx.AsyncClient) -> tuple[int, set[str]]:
    """One whole capsule made and destroyed first (caches made: disk template, compiled
    agent), then this process's open descriptors and processes: what a sweep compares to."""
    cid = await new_capsule(http)
    await http.delete(f"/v1/capsules/{cid}")
    await wait_status(http, cid, "stopped")
    await anyio.sleep(0.2)
    return open_fds(), descendants(os.getpid())


async def destroy_leaving_nothing(
    http: httpx.AsyncClient,
    server: wrenn_local.LocalServer,
    cid: str,
    where: str,
    baseline: tuple[int, set[str]],
) -> None:
    """DELETE ``cid``, wait until it is stopped, and check that nothing of it stays:
    directory, cgroups, loop devices, processes, the server's descriptors (back to
    ``baseline``: open descriptors, processes under this one)."""
    gone = await http.delete(f"/v1/capsules/{cid}")
    assert gone.status_code in (202, 204), gone.text
    await wait_status(http, cid, "stopped")
    directory = server.data_dir / "capsules" / cid
    assert not directory.exists(), where
    assert cgroups_of(cid) == [], where
    assert loops_on(directory) == [], where
    fds, processes = baseline
    assert await settled_descendants(processes) == set(), where
    assert await settled_fds(fds) <= fds, where


async def test_a_capsule_destroyed_anywhere_in_its_boot_leaves_nothing() -> None:
    async with local_http(options=COLD) as (server, http):
        if server.isolation != "full":
            pytest.skip("reduced isolation: no cgroups, disk image or network to leave")

        async def create() -> str:
            resp = await http.post("/v1/capsules", json={})
            assert resp.status_code == 202, resp.text
            return str(resp.json()["id"])

        # one whole boot first: caches (disk template, compiled agent) made, and timed
        cid = await create()
        await wait_status(http, cid, "running")
        await http.delete(f"/v1/capsules/{cid}")
        await wait_status(http, cid, "stopped")
        started = time.monotonic()
        cid = await create()
        await wait_status(http, cid, "running")
        boot_s = time.monotonic() - started
        # what the checks below look for is there while a capsule runs (they can fail)
        assert loops_on(server.data_dir / "capsules" / cid)
        assert cgroups_of(cid)
        assert len(descendants(os.getpid())) > 1  # the boot process, and this capsule
        await http.delete(f"/v1/capsules/{cid}")
        await wait_status(http, cid, "stopped")
        await anyio.sleep(0.2)
        fds, processes = open_fds(), descendants(os.getpid())

        delays = [0.0, 0.001, 0.005] + [boot_s * k / 10 for k in range(1, 14)]
        interrupted = 0
        for delay in delays:
            cid = await create()
            await anyio.sleep(delay)
            status = (await http.get(f"/v1/capsules/{cid}")).json()["status"]
            interrupted += status != "running"
            where = f"destroyed {delay * 1000:.0f} ms after its create"
            await destroy_leaving_nothing(http, server, cid, where, (fds, processes))
        assert interrupted >= 3, "the sweep reached into the boot"
        # and the server still boots capsules, with nothing of those left in the way
        cid = await create()
        await wait_status(http, cid, "running")


async def test_a_capsule_destroyed_anywhere_in_its_snapshot_leaves_no_half_template() -> None:
    """A DELETE at many points of a snapshot (the capsule frozen, its files being
    copied): the snapshot ends either whole (listed, and a capsule boots from it with
    the files) or not at all (not listed, its name free again, no layer directory
    left), and the capsule's processes and cgroups go as in any destroy."""
    async with local_http(options=COLD) as (server, http):
        if server.isolation != "full":
            pytest.skip("reduced isolation: no cgroups to leave")
        templates = server.data_dir / "templates"

        async def snapshot_then_destroy(name: str, delay: float | None) -> float:
            cid = await new_capsule(http)
            made = await sh(http, cid, "mkdir -p ~/many && cd ~/many && seq 1 400 | xargs touch")
            assert made["exit_code"] == 0, made
            started = time.monotonic()
            resp = await http.post("/v1/snapshots", json={"sandbox_id": cid, "name": name})
            assert resp.status_code in (201, 202), resp.text
            if delay is not None:
                await anyio.sleep(delay)
                gone = await http.delete(f"/v1/capsules/{cid}")
                assert gone.status_code in (202, 204), gone.text
                await wait_status(http, cid, "stopped")
            else:
                await wait_status(http, cid, "running")
            took = time.monotonic() - started
            await http.delete(f"/v1/capsules/{cid}")
            await wait_status(http, cid, "stopped")
            assert cgroups_of(cid) == []
            return took

        snapshot_s = await snapshot_then_destroy("whole", None)
        listed = {t["name"] for t in (await http.get("/v1/snapshots?type=snapshot")).json()}
        assert "whole" in listed
        cid = await new_capsule(http, template="whole")
        assert (await sh(http, cid, "ls ~/many | wc -l"))["stdout"].strip() == "400"
        await http.delete(f"/v1/capsules/{cid}")
        outcomes = []
        for k, delay in enumerate([0.0, 0.002] + [snapshot_s * i / 6 for i in range(1, 8)]):
            name = f"cut-{k}"
            await snapshot_then_destroy(name, delay)
            # the snapshot's own task may still be finishing: it ends one way or the other
            with anyio.fail_after(20):
                while True:
                    found = {t["name"]: t for t in (await http.get("/v1/snapshots")).json()}
                    if name not in found or found[name].get("size_bytes") is not None:
                        break
                    await anyio.sleep(0.05)
            where = f"destroyed {delay * 1000:.0f} ms into its snapshot"
            if name in found:
                outcomes.append("whole")
                cid = await new_capsule(http, template=name)
                counted = await sh(http, cid, "ls ~/many | wc -l")
                assert counted["stdout"].strip() == "400", where
                await http.delete(f"/v1/capsules/{cid}")
            else:
                outcomes.append("none")
                assert not list(templates.glob(f"*-{name}")), where
                # the name is free again: the request gets as far as the missing capsule
                nobody = "cl-" + "0" * 25
                again = await http.post("/v1/snapshots", json={"sandbox_id": nobody, "name": name})
                assert again.status_code == 404, f"{where}: {again.text}"
        assert "none" in outcomes, outcomes  # some destroys landed inside a snapshot


async def test_a_capsule_destroyed_anywhere_in_a_pause_or_resume_leaves_nothing() -> None:
    """A DELETE at many points of a pause and of a resume (its processes being frozen or
    thawed): the capsule stops, and none of its processes (frozen ones included),
    cgroups, loop devices or directories stay."""
    async with local_http(options=COLD) as (server, http):
        if server.isolation != "full":
            pytest.skip("reduced isolation: no cgroups to leave")
        fds, processes = await baseline_after_a_capsule(http)
        for action in ("pause", "resume"):
            for delay in (0.0, 0.001, 0.003, 0.01, 0.03, 0.1):
                cid = await new_capsule(http)
                await sh(http, cid, "sleep 600 & sleep 600 &", background=True)
                if action == "resume":
                    resp = await http.post(f"/v1/capsules/{cid}/pause")
                    assert resp.status_code in (200, 202), resp.text
                    await wait_status(http, cid, "paused")
                resp = await http.post(f"/v1/capsules/{cid}/{action}")
                assert resp.status_code in (200, 202), resp.text
                await anyio.sleep(delay)
                where = f"destroyed {delay * 1000:.0f} ms into a {action}"
                await destroy_leaving_nothing(http, server, cid, where, (fds, processes))
        cid = await new_capsule(http)  # and the server still boots capsules
