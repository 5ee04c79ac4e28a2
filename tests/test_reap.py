"""Capsules cannot outlive a crashed program unnoticed: owner metadata and ``reap``.

Real programs in subprocesses create capsules against a real local server (its own
process); one is SIGKILLed (no clean-up of any kind runs), one stays alive. ``reap``
must find and destroy exactly the orphan.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.abc
import pytest

from tests.localserver import server_process
from wrenn import AsyncWrennClient, WrennClient
from wrenn._cli.main import main as cli_main
from wrenn._owner import OWNER_PREFIX, Owner, owner_is_gone, with_owner

HOLDER = """
import time
from wrenn import WrennClient
client = WrennClient()
scope = client.capsule()
cap = scope.__enter__()
print(cap.capsule_id, flush=True)
time.sleep(600)
"""


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, str]]:
    with server_process() as env:
        yield env


@pytest.fixture
async def client(server: dict[str, str]) -> AsyncIterator[AsyncWrennClient]:
    async with AsyncWrennClient(
        api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]
    ) as c:
        yield c


async def live_ids(client: AsyncWrennClient) -> set[str]:
    return {c.id for c in await client.capsules.list() if c.status not in ("stopping",)}


async def start_holder(server: dict[str, str]) -> tuple[anyio.abc.Process, str]:
    """A program that creates a capsule in a scope and then just waits."""
    proc = await anyio.open_process(
        [sys.executable, "-c", HOLDER], env={**os.environ, **server}, stderr=None
    )
    assert proc.stdout is not None
    line = b""
    with anyio.fail_after(30):
        while not line.endswith(b"\n"):
            line += await proc.stdout.receive()
    return proc, line.decode().strip()


async def test_reap_destroys_exactly_the_capsule_of_a_killed_program(
    server: dict[str, str], client: AsyncWrennClient
) -> None:
    killed, orphan = await start_holder(server)
    alive, kept = await start_holder(server)
    try:
        async with client.capsule() as mine:  # this (live) process's own capsule
            killed.send_signal(signal.SIGKILL)  # no exit hook, no finally: nothing cleans up
            await killed.wait()
            assert orphan in await live_ids(client)

            would = await client.capsules.reap(dry_run=True)
            assert [c.id for c in would] == [orphan]
            assert orphan in await live_ids(client)  # a dry run destroys nothing

            reaped = await client.capsules.reap()
            assert [c.id for c in reaped] == [orphan]
            left = await live_ids(client)
            assert orphan not in left
            assert {kept, mine.capsule_id} <= left
            assert await client.capsules.reap(dry_run=True) == []
    finally:
        alive.kill()
        await alive.wait()
        await client.capsules.destroy(kept)


async def test_owner_keys_are_recorded_next_to_the_users(client: AsyncWrennClient) -> None:
    async with client.capsule(metadata={"team": "infra", OWNER_PREFIX + "client": "mine"}) as cap:
        meta = (await cap.get_info()).metadata
    assert meta["team"] == "infra"
    assert meta[OWNER_PREFIX + "client"] == "mine"  # the user's key is never overwritten
    assert meta[OWNER_PREFIX + "pid"] == str(os.getpid())
    assert meta[OWNER_PREFIX + "host"] == socket.gethostname()[:64]
    owner = Owner.from_metadata(meta)
    assert owner is not None
    assert owner_is_gone(owner) is False


async def test_capsules_of_other_hosts_are_left_unless_asked(client: AsyncWrennClient) -> None:
    foreign = {OWNER_PREFIX + "host": "some-other-host", OWNER_PREFIX + "pid": "1"}
    async with client.capsule(metadata=foreign) as cap:
        assert cap.capsule_id not in [c.id for c in await client.capsules.reap(dry_run=True)]
        asked = await client.capsules.reap(dry_run=True, other_hosts=True)
        assert cap.capsule_id in [c.id for c in asked]


def test_owner_keys_never_push_user_metadata_over_the_limit() -> None:
    owner = Owner(client="c", host="h", pid=1, started="5")
    full = {f"k{i}": "v" for i in range(18)}
    assert with_owner(full, owner) == full  # no room for all four: none added
    assert with_owner(None, owner) == owner.metadata()
    long_host = with_owner({}, Owner(client="c", host="h" * 100, pid=1))
    assert long_host is not None
    assert long_host[OWNER_PREFIX + "host"] == "h" * 64


def test_a_reused_pid_is_not_taken_for_the_owner() -> None:
    me = Owner.current()
    if me.started is None:
        pytest.skip("process start times are read from /proc (Linux)")
    assert owner_is_gone(me) is False
    assert owner_is_gone(Owner(client="c", host=me.host, pid=me.pid, started="1")) is True


async def test_the_cli_dry_run_lists_without_destroying(
    server: dict[str, str], client: AsyncWrennClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    killed, orphan = await start_holder(server)
    killed.send_signal(signal.SIGKILL)
    await killed.wait()
    for key, value in server.items():
        monkeypatch.setenv(key, value)
    try:
        code, out = await run_cli(["reap", "--json"])
        assert code == 0
        assert [row["id"] for row in json.loads(out)["would_destroy"]] == [orphan]
        assert orphan in await live_ids(client)

        code, out = await run_cli(["reap"])
        assert code == 0
        assert orphan in out
        assert "--yes" in out
        assert orphan in await live_ids(client)

        code, out = await run_cli(["reap", "--yes", "--json"])
        assert code == 0
        assert [row["id"] for row in json.loads(out)["destroyed"]] == [orphan]
        assert orphan not in await live_ids(client)
    finally:
        await client.capsules.destroy(orphan)


async def run_cli(argv: list[str]) -> tuple[int, str]:
    """The CLI runs its own event loop: in a worker thread, with stdout captured."""
    import contextlib
    import io

    buffer = io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(buffer):
            return cli_main(argv)

    code = await anyio.to_thread.run_sync(run)
    return code, buffer.getvalue()


def test_the_sync_client_reaps_too(server: dict[str, str]) -> None:
    with WrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]) as c:
        assert c.capsules.reap(dry_run=True) == []
