"""Warm spares (wrenn_local/_spares.py), attacked over real sockets on a real local server.

The server runs in this process: the tests read its spare pool only to wait until a
spare is booted and to learn its id; every claim, list and command crosses the wire.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx
import pytest

import wrenn_local
from tests.localserver import FAST, local_http, new_capsule, sh, wait_status
from wrenn_local._cli import parser, spares_of

SPARES = attrs.evolve(FAST, spares=1)


async def ready_spare(server: wrenn_local.LocalServer, timeout: float = 30) -> str:
    """The id of a booted spare (waits for one)."""
    with anyio.fail_after(timeout):
        while True:
            ready = [s for s in server.capsules.spares.spares if s.ready_at is not None]
            if ready:
                return ready[0].capsule_id
            await anyio.sleep(0.02)


async def warm(server: wrenn_local.LocalServer, http: httpx.AsyncClient, **body: Any) -> str:
    """Two creates of one key (destroyed again) earn it a spare; its id."""
    for _ in range(2):
        cid = await new_capsule(http, **body)
        assert (await http.delete(f"/v1/capsules/{cid}")).status_code == 202
    return await ready_spare(server)


async def test_a_claimed_spare_is_a_capsule_like_any_other_and_never_reused() -> None:
    async with local_http(options=SPARES) as (server, http):
        cold = await new_capsule(http)
        cold_info = (await http.get(f"/v1/capsules/{cold}")).json()
        spare = await warm(server, http)
        # invisible to the account: neither listed nor found
        assert spare not in {c["id"] for c in (await http.get("/v1/capsules")).json()}
        assert (await http.get(f"/v1/capsules/{spare}")).status_code == 404
        seen: list[dict[str, Any]] = []
        async with anyio.create_task_group() as tg:  # the events a cold create sends

            async def listen() -> None:
                async with http.stream("GET", "/v1/events/stream") as resp:
                    async for line in resp.aiter_lines():
                        if line.startswith("data: "):
                            seen.append(json.loads(line[6:]))
                            # (the warm-up capsules' destroys may still be reporting)
                            last = seen[-1]
                            mine = last.get("resource", {}).get("id") == spare
                            if last["event"] == "capsule.state.changed" and mine:
                                tg.cancel_scope.cancel()

            tg.start_soon(listen)
            with anyio.fail_after(10):
                while not seen:
                    await anyio.sleep(0.01)
            created = await http.post("/v1/capsules", json={"metadata": {"job": "a"}})
            assert created.status_code == 202, created.text
            with anyio.fail_after(10):
                await anyio.sleep_forever()
        claimed = created.json()
        assert claimed["id"] == spare
        create = next(
            e for e in seen if e["event"] == "capsule.create" and e["sandbox"]["id"] == spare
        )
        assert create["outcome"] == "success"
        assert seen[-1]["metadata"] == {"from": "starting", "to": "running"}
        assert seen[-1]["resource"]["id"] == spare
        assert claimed["status"] == "running"
        info = (await http.get(f"/v1/capsules/{spare}")).json()
        assert info["metadata"] == {**cold_info["metadata"], "job": "a"}
        assert info["started_at"] == info["created_at"]
        assert spare in {c["id"] for c in (await http.get("/v1/capsules")).json()}
        # the agent inside knows its id; state written here must not reach the next one
        out = await sh(http, spare, "echo $WRENN_SANDBOX_ID; echo secret > ~/left; touch /tmp/x")
        assert out["stdout"] == f"{spare}\n"
        await sh(http, spare, "sleep 300 &", background=True)
        # pause, resume and destroy act on it as on a cold capsule
        assert (await http.post(f"/v1/capsules/{spare}/pause")).status_code == 202
        await wait_status(http, spare, "paused")
        assert (await http.post(f"/v1/capsules/{spare}/resume")).status_code == 202
        await wait_status(http, spare, "running")
        assert (await http.delete(f"/v1/capsules/{spare}")).status_code == 202
        await wait_status(http, spare, "stopped")
        refill = await ready_spare(server)
        assert refill != spare
        assert (await http.post("/v1/capsules", json={})).json()["id"] == refill
        out = await sh(http, refill, "cat ~/left /tmp/x 2>&1; echo $WRENN_SANDBOX_ID")
        assert "secret" not in out["stdout"]
        assert out["stdout"].endswith(f"{refill}\n")
        assert not (server.data_dir / "capsules" / spare).exists()


async def test_concurrent_creates_never_share_a_spare() -> None:
    async with local_http(options=SPARES) as (server, http):
        spare = await warm(server, http)
        ids: list[str] = []

        async def create() -> None:
            resp = await http.post("/v1/capsules", json={})
            assert resp.status_code == 202, resp.text
            ids.append(resp.json()["id"])

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(create)
        assert len(set(ids)) == 4
        assert ids.count(spare) == 1
        for cid in ids:
            await wait_status(http, cid, "running")
            await sh(http, cid, f"echo {cid} > ~/mine")
        for cid in ids:  # four sandboxes: each sees only what it wrote itself
            assert (await sh(http, cid, "cat ~/mine"))["stdout"] == f"{cid}\n"


async def test_a_private_templates_spare_never_goes_to_another_team() -> None:
    async with local_http(options=SPARES) as (server, http):
        source = await new_capsule(http)
        await sh(http, source, "echo team-a > ~/owner")
        assert (
            await http.post("/v1/snapshots", json={"sandbox_id": source, "name": "priv"})
        ).status_code == 202
        with anyio.fail_after(20):
            while "priv" not in {t["name"] for t in (await http.get("/v1/snapshots")).json()}:
                await anyio.sleep(0.05)
        spare = await warm(server, http, template="priv")
        account = {"email": "b@x.io", "password": "long enough", "name": "B"}
        assert (await http.post("/v1/auth/signup", json=account)).status_code == 201
        token = (await http.post("/v1/auth/login", json=account)).json()["token"]
        async with httpx.AsyncClient(
            base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as other:
            # team B cannot name team A's template, even while its spare is ready
            assert (await other.post("/v1/capsules", json={"template": "priv"})).status_code == 404
            # nor get a spare of it through a template of its own of the same name
            mine = await new_capsule(other)
            await sh(other, mine, "echo team-b > ~/owner")
            await other.post("/v1/snapshots", json={"sandbox_id": mine, "name": "priv"})
            with anyio.fail_after(20):
                while "priv" not in {t["name"] for t in (await other.get("/v1/snapshots")).json()}:
                    await anyio.sleep(0.05)
            got = await other.post("/v1/capsules", json={"template": "priv"})
            assert got.status_code == 202
            assert got.json()["id"] != spare
            await wait_status(other, got.json()["id"], "running")
            out = await sh(other, got.json()["id"], "cat ~/owner")
            assert out["stdout"] == "team-b\n"
            assert spare not in {c["id"] for c in (await other.get("/v1/capsules")).json()}
        # team A still gets its own spare, with its own file
        assert (await http.post("/v1/capsules", json={"template": "priv"})).json()["id"] == spare
        assert (await sh(http, spare, "cat ~/owner"))["stdout"] == "team-a\n"


async def test_a_spare_whose_agent_died_is_discarded_and_the_create_boots_cold() -> None:
    async with local_http(options=SPARES) as (server, http):
        spare = await warm(server, http)
        (found,) = [s for s in server.capsules.spares.spares if s.capsule_id == spare]
        assert found.sandbox.process is not None
        # what an out-of-memory kill or a crash does to a waiting spare
        os.kill(found.sandbox.process.pid, signal.SIGKILL)
        await anyio.sleep(0.2)
        created = await http.post("/v1/capsules", json={})
        assert created.status_code == 202
        cid = created.json()["id"]
        assert cid != spare
        await wait_status(http, cid, "running")
        with anyio.fail_after(10):
            while (server.data_dir / "capsules" / spare).exists():
                await anyio.sleep(0.05)


async def test_spares_are_off_with_zero_and_stop_when_idle() -> None:
    async with local_http(options=attrs.evolve(FAST, spares=0)) as (server, http):
        for _ in range(3):
            await http.delete(f"/v1/capsules/{await new_capsule(http)}")
        await anyio.sleep(0.3)
        assert len(server.capsules.spares) == 0
    async with local_http(options=attrs.evolve(FAST, spares=1, spare_idle=0.5)) as (server, http):
        spare = await warm(server, http)
        with anyio.fail_after(10):  # stopped, then its files removed
            while len(server.capsules.spares) or (server.data_dir / "capsules" / spare).exists():
                await anyio.sleep(0.05)


async def test_spares_never_make_a_users_create_fail_at_capacity() -> None:
    async with local_http(options=attrs.evolve(FAST, spares=1, max_capsules=3)) as (server, http):
        kept = [await new_capsule(http), await new_capsule(http)]
        await ready_spare(server)  # two creates of one key: a spare takes the third place
        other = await http.post("/v1/capsules", json={"memory_mb": 256})  # another key
        assert other.status_code == 202, other.text
        await wait_status(http, other.json()["id"], "running")
        assert [s for s in server.capsules.spares.spares if s.key.memory_mb == 512] == []
        full = await http.post("/v1/capsules", json={})
        assert full.status_code == 503  # claimed capsules still count against the limit
        assert len(kept) == 2


async def test_shutdown_leaves_no_spare_process_cgroup_mount_or_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with local_http(options=SPARES, data_dir=data) as (server, http):
        spare = await warm(server, http)
        assert (await http.post("/v1/capsules", json={})).json()["id"] == spare
        ready = await ready_spare(server)  # the refill, booted: one ready as the server goes
        # and one booting: the second create of another key starts its spare's boot
        for _ in range(2):
            assert (await http.post("/v1/capsules", json={"memory_mb": 256})).status_code == 202
        spares = [s.capsule_id for s in server.capsules.spares.spares]
        assert ready in spares
        assert len(spares) == 2
    for cid in [spare, *spares]:
        assert not (data / "capsules" / cid).exists()
        leftovers = await anyio.run_process(["pgrep", "-f", cid], check=False)
        assert leftovers.stdout.strip() == b""
        assert not any(Path("/sys/fs/cgroup").glob(f"*/wrenn-local/{cid}"))
        assert not any(Path("/sys/fs/cgroup").glob(f"wrenn-local/{cid}"))
    assert str(data) not in Path("/proc/mounts").read_text()


def test_the_number_of_spares_comes_from_the_flag_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    serve = ["serve", "--port", "0"]
    monkeypatch.delenv("WRENN_LOCAL_SPARES", raising=False)
    assert spares_of(parser().parse_args(serve)) == 1
    assert spares_of(parser().parse_args([*serve, "--spares", "0"])) == 0
    monkeypatch.setenv("WRENN_LOCAL_SPARES", "3")
    assert spares_of(parser().parse_args(serve)) == 3
    assert spares_of(parser().parse_args([*serve, "--spares", "2"])) == 2
    monkeypatch.setenv("WRENN_LOCAL_SPARES", "many")
    with pytest.raises(ValueError, match="WRENN_LOCAL_SPARES"):
        spares_of(parser().parse_args(serve))
    with pytest.raises(ValueError, match="0 or more"):
        spares_of(parser().parse_args([*serve, "--spares", "-1"]))
