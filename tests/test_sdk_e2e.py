"""The SDK's REST resources end to end against wrenn_local, under asyncio and trio."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

import wrenn_local
from tests.localserver import FAST
from tests.sync_facade import Api, open_client
from wrenn import (
    AsyncWrennClient,
    WrennAuthenticationError,
    WrennInvalidStateError,
    WrennNameTakenError,
    WrennNotFoundError,
    WrennValidationError,
    models,
)


@pytest.fixture
async def local() -> AsyncIterator[wrenn_local.LocalServer]:
    async with wrenn_local.serve(options=FAST) as server:
        yield server


async def until(client: AsyncWrennClient, capsule_id: str, status: str) -> models.Capsule:
    with anyio.fail_after(20):
        while (capsule := await client.capsules.get(capsule_id)).status != status:
            await anyio.sleep(0.02)
    return capsule


async def test_capsule_lifecycle(local: wrenn_local.LocalServer, api: Api) -> None:
    async with open_client(api, api_key=local.api_key, base_url=local.base_url) as client:
        created = await client.capsules.create(timeout_sec=600, metadata={"suite": "e2e"})
        assert created.status is models.CapsuleStatus.STARTING
        running = await until(client, created.id, "running")
        assert running.metadata["suite"] == "e2e"
        assert running.created_at is not None
        assert running.created_at.tzinfo is not None
        assert [c.id for c in await client.capsules.list()] == [created.id]
        await client.capsules.ping(created.id)
        assert (await client.capsules.pause(created.id)).status == "pausing"
        await until(client, created.id, "paused")
        with pytest.raises(WrennInvalidStateError):
            await client.capsules.ping(created.id)
        assert (await client.capsules.resume(created.id)).status == "resuming"
        await until(client, created.id, "running")
        with anyio.fail_after(10):
            while not (await client.capsules.metrics(created.id, range="5m")).points:
                await anyio.sleep(0.1)
        stats = await client.capsules.stats()
        assert stats.current.running_count == 1
        usage = await client.capsules.usage()
        assert usage.points
        gone = await client.capsules.destroy(created.id)
        assert gone is not None
        assert gone.status == "stopping"
        await until(client, created.id, "stopped")
        with pytest.raises(WrennNotFoundError):
            await client.capsules.get("cl-" + "0" * 25)
        with pytest.raises(WrennValidationError):
            await client.capsules.get("cl-short")


async def test_snapshots(local: wrenn_local.LocalServer, api: Api) -> None:
    async with open_client(api, api_key=local.api_key, base_url=local.base_url) as client:
        capsule = await client.capsules.create()
        await until(client, capsule.id, "running")
        pending = await client.snapshots.create(capsule.id)
        assert pending.name.startswith("template-")
        assert pending.capsule is not None
        assert pending.capsule.status == "snapshotting"
        template = await client.snapshots.wait(pending, timeout=30)
        assert template.type is models.TemplateType.SNAPSHOT
        assert not template.platform
        with pytest.raises(WrennNameTakenError):
            await client.snapshots.create(capsule.id, name=pending.name)
        bases = await client.snapshots.list(type="base")
        assert {"minimal", "minimal-ubuntu"} <= {t.name for t in bases}
        await client.snapshots.delete(pending.name)
        assert await client.snapshots.get(pending.name) is None


async def test_accounts_keys_and_hosts(local: wrenn_local.LocalServer, api: Api) -> None:
    async with open_client(api, base_url=local.base_url, api_key=None, token=None) as anon:
        await anon.auth.signup("dev@example.com", "long enough", "Dev")
        session = await anon.auth.login("dev@example.com", "long enough")
        assert session.token is not None
        with pytest.raises(WrennAuthenticationError):
            await anon.auth.login("dev@example.com", "wrong password")
    async with open_client(api, base_url=local.base_url, token=session.token) as user:
        key = await user.api_keys.create("laptop")
        assert key.key is not None
        assert [k.id for k in await user.api_keys.list()] == [key.id]
        hosts = await user.hosts.list()
        assert hosts[0].status is models.HostStatus.ONLINE
        local_host = await user.hosts.get(hosts[0].id)
        await user.hosts.add_tag(local_host.id, "fast")
        assert await user.hosts.tags(local_host.id) == ["fast"]
        await user.hosts.remove_tag(local_host.id, "fast")
        created = await user.hosts.create("byoc", provider="local-test")
        assert created.host.status == "pending"
        assert created.registration_token
        assert (await user.hosts.delete_preview(created.host.id)).capsule_ids == []
        await user.hosts.delete(created.host.id)
        # the new key works for capsule routes, in its own team
        async with open_client(api, base_url=local.base_url, api_key=key.key) as keyed:
            assert await keyed.capsules.list() == []
        await user.api_keys.delete(key.id)
        async with open_client(api, base_url=local.base_url, api_key=key.key) as revoked:
            with pytest.raises(WrennAuthenticationError):
                await revoked.capsules.list()


async def test_event_stream(local: wrenn_local.LocalServer, api: Api) -> None:
    kinds: list[str] = []
    async with (
        open_client(api, api_key=local.api_key, base_url=local.base_url) as client,
        anyio.create_task_group() as tg,
        client.events.stream() as events,
    ):

        async def act() -> None:
            capsule = await client.capsules.create()
            await until(client, capsule.id, "running")
            await client.capsules.destroy(capsule.id)

        tg.start_soon(act)
        with anyio.fail_after(20):
            async for event in events:
                kinds.append(event.event)
                if event.event == "capsule.destroy":
                    break
    assert kinds[0] == "connected"
    assert "capsule.create" in kinds
    assert "capsule.state.changed" in kinds


async def test_processes_and_files(local: wrenn_local.LocalServer, api: Api) -> None:
    async with open_client(api, api_key=local.api_key, base_url=local.base_url) as client:
        cid = (await client.capsules.create()).id
        await until(client, cid, "running")
        result = await client.processes.run(
            cid, "/bin/sh", args=["-c", "echo $A; exit 4"], envs={"A": "x y"}, cwd="/tmp"
        )
        assert (result.stdout, result.exit_code, result.ok) == ("x y\n", 4, False)
        raw = await client.processes.run(cid, "/bin/sh", args=["-c", "printf '\\377\\001'"])
        assert raw.stdout_bytes == b"\xff\x01"
        assert raw.stdout == "\ufffd\x01"
        bg = await client.processes.start(cid, "sleep", args=["60"], tag="nap")
        assert (bg.tag, bg.capsule_id) == ("nap", cid)
        assert "nap" in {p.tag for p in await client.processes.list(cid)}
        await client.processes.kill(cid, "nap", signal="SIGTERM")
        with pytest.raises(WrennNotFoundError):
            await client.processes.kill(cid, 999_999)
        await client.files.write(cid, "data/in.txt", "héllo")
        assert await client.files.read(cid, "~/data/in.txt") == "héllo".encode()
        entry = await client.files.make_dir(cid, "/tmp/a/b")
        assert entry.is_dir
        names = {e.path for e in await client.files.list(cid, "/home/wrenn-user", depth=2)}
        assert names == {"/home/wrenn-user/data", "/home/wrenn-user/data/in.txt"}
        await client.files.remove(cid, "data")
        with pytest.raises(WrennNotFoundError):
            await client.files.read(cid, "data/in.txt")
        with pytest.raises(WrennValidationError):
            await client.processes.run(cid, "true", timeout_sec=0)


async def test_exec_stream_and_attach(local: wrenn_local.LocalServer, api: Api) -> None:
    from wrenn import StreamExit, StreamStart, StreamStderr, StreamStdout

    async with open_client(api, api_key=local.api_key, base_url=local.base_url) as client:
        cid = (await client.capsules.create()).id
        await until(client, cid, "running")
        async with client.processes.stream(
            cid, "/bin/sh", args=["-c", "for i in 1 2 3; do echo $i; done; echo e >&2; exit 4"]
        ) as run:
            events = [event async for event in run]
        assert isinstance(events[0], StreamStart)
        out = "".join(e.data for e in events if isinstance(e, StreamStdout))
        assert out == "1\n2\n3\n"
        assert any(isinstance(e, StreamStderr) and e.data == "e\n" for e in events)
        assert events[-1] == StreamExit(4)
        assert run.exit_code == 4
        # the job ends only once attached to: attaching to a process that has ended is
        # "not found" by design, and a fixed sleep (0.3 s) lost that race to a loaded CI
        wait_for_go = "while [ ! -e /tmp/go ]; do sleep 0.02; done; echo hello; exit 2"
        await client.processes.start(cid, "/bin/sh", args=["-c", wait_for_go], tag="job")
        async with client.processes.attach(cid, "job") as attached:
            assert isinstance(await attached.__aiter__().__anext__(), StreamStart)
            await client.processes.run(cid, "touch", args=["/tmp/go"])
            assert await attached.wait() == 2
        with pytest.raises(WrennNotFoundError):
            async with client.processes.attach(cid, "nobody") as missing:
                await missing.wait()
        with pytest.raises(WrennNotFoundError):
            async with client.processes.stream("cl-" + "0" * 25, "true") as gone:
                await gone.wait()
        with pytest.raises(WrennValidationError):
            async with client.processes.stream("cl-bad", "true"):
                pass
    async with open_client(api, api_key="wrn_" + "0" * 32, base_url=local.base_url) as bad:
        with pytest.raises(WrennAuthenticationError):
            async with bad.processes.stream(cid, "true") as denied:
                await denied.wait()


async def test_a_stream_cut_short_is_never_a_finish(
    local: wrenn_local.LocalServer, api: Api
) -> None:
    from wrenn import WrennError

    async with open_client(api, api_key=local.api_key, base_url=local.base_url) as client:
        cid = (await client.capsules.create()).id
        await until(client, cid, "running")

        async def run_until_the_capsule_dies() -> None:
            async with client.processes.stream(cid, "sleep", args=["30"]) as run:
                async for event in run:
                    if event.type == "start":
                        await client.capsules.destroy(cid)  # the capsule dies mid-stream

        with anyio.fail_after(20), pytest.raises(WrennError):
            await run_until_the_capsule_dies()
