"""The SDK on a bad network: a fault-injecting TCP proxy between it and a real wrenn_local.

Every test is bounded (``fail_after``): a stream that hangs fails the test instead of
the suite. "Ran once" is checked on the server's side, through a direct client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.abc
import pytest

from tests.faults import NO_FAULT, Fault, FaultProxy, fault_proxy
from tests.localserver import server_process
from wrenn import (
    AsyncWrennClient,
    StreamExit,
    WrennConnectionError,
    WrennError,
    WrennTimeoutError,
)

BOUND = 20  # seconds any single faulty operation may take before the test fails


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, str]]:
    """The server in its own process: only the SDK and the proxy share the test's loop."""
    with server_process() as env:
        yield env


@pytest.fixture
async def setup(
    server: dict[str, str],
) -> AsyncIterator[tuple[AsyncWrennClient, FaultProxy, str]]:
    """A direct client, a proxy in front of the same server, and a running capsule."""
    key, base = server["WRENN_API_KEY"], server["WRENN_BASE_URL"]
    async with (
        AsyncWrennClient(api_key=key, base_url=base) as direct,
        fault_proxy(int(base.rsplit(":", 1)[1]), key) as proxy,
        direct.capsule() as cap,
    ):
        yield direct, proxy, cap.capsule_id


def faulty(proxy: FaultProxy, *, max_retries: int = 3, timeout: float = 30.0) -> AsyncWrennClient:
    return AsyncWrennClient(
        api_key=proxy.api_key, base_url=proxy.base_url, max_retries=max_retries, timeout=timeout
    )


async def runs_of(direct: AsyncWrennClient, cid: str) -> int:
    out = await direct.processes.run(cid, "/bin/sh", args=["-c", "cat ~/ran 2>/dev/null | wc -l"])
    return int(out.stdout)


async def test_idempotent_calls_retry_through_resets(
    setup: tuple[AsyncWrennClient, FaultProxy, str],
) -> None:
    _, proxy, cid = setup
    proxy.fault = Fault(reset_down_after=0)  # every connection dies before any answer
    async with faulty(proxy, max_retries=5) as client:
        with anyio.fail_after(BOUND), pytest.raises(WrennConnectionError):
            await client.capsules.get(cid)
        broken_so_far = proxy.connections
        assert broken_so_far >= 2  # it did retry

        async def heal() -> None:
            await anyio.sleep(0.3)
            proxy.fault = NO_FAULT

        async with anyio.create_task_group() as tg:
            proxy.fault = Fault(reset_down_after=0)
            tg.start_soon(heal)
            with anyio.fail_after(BOUND):
                got = await client.capsules.get(cid)  # retried until the network healed
        assert got.id == cid


@pytest.mark.parametrize(
    "fault",
    [
        Fault(reset_down_after=1),  # the answer is cut at its first byte
        Fault(close_down_after=20),  # the answer is truncated
        Fault(reset_up_after=40),  # the request itself is cut
    ],
    ids=["reset-answer", "truncated-answer", "reset-request"],
)
async def test_a_command_is_never_run_twice(
    setup: tuple[AsyncWrennClient, FaultProxy, str], fault: Fault
) -> None:
    direct, proxy, cid = setup
    proxy.fault = fault
    async with faulty(proxy, max_retries=5) as client:
        with anyio.fail_after(BOUND), pytest.raises(WrennConnectionError):
            await client.processes.run(cid, "/bin/sh", args=["-c", "echo x >> ~/ran"])
    await anyio.sleep(0.3)  # a command that did reach the server has finished by now
    assert await runs_of(direct, cid) <= 1
    assert proxy.connections == 1  # one attempt: a POST that may have arrived is not resent


@pytest.mark.parametrize(
    "fault",
    [
        Fault(reset_down_after=3000),
        Fault(close_down_after=3000),
        Fault(half_close_down_after=3000),
    ],
    ids=["reset", "truncated", "half-closed"],
)
async def test_streams_fail_loudly_and_never_hang(
    setup: tuple[AsyncWrennClient, FaultProxy, str], fault: Fault
) -> None:
    _, proxy, cid = setup
    proxy.fault = fault
    seen: list[object] = []
    async with faulty(proxy) as client:

        async def consume() -> None:
            async with client.processes.stream(cid, "seq", args=["1", "200000"]) as run:
                async for event in run:
                    seen.append(event)  # noqa: PERF401 - kept even when the stream breaks

        with anyio.fail_after(BOUND), pytest.raises(WrennError):
            await consume()
    assert seen, "the stream had started"
    assert not any(isinstance(e, StreamExit) for e in seen)  # no exit it did not see


async def test_slow_links_still_deliver_everything(
    setup: tuple[AsyncWrennClient, FaultProxy, str],
) -> None:
    _, proxy, cid = setup
    proxy.fault = Fault(latency=0.02, bandwidth=512 * 1024)
    async with faulty(proxy) as client:
        data = bytes(range(256)) * 1024  # 256 KiB
        with anyio.fail_after(BOUND):
            await client.files.write(cid, "slow.bin", data)
            assert await client.files.read(cid, "slow.bin") == data
            async with client.processes.stream(cid, "seq", args=["1", "5000"]) as run:
                assert await run.wait() == 0


async def test_deadlines_hold_on_a_slow_server(
    setup: tuple[AsyncWrennClient, FaultProxy, str],
) -> None:
    _, proxy, cid = setup
    proxy.fault = Fault(latency=3.0)
    async with faulty(proxy, timeout=0.5, max_retries=0) as client:
        started = anyio.current_time()
        with pytest.raises(WrennTimeoutError):
            await client.capsules.get(cid)
        assert anyio.current_time() - started < 3.0  # the deadline, not the latency, ended it


async def test_a_terminal_survives_a_dropped_connection(
    setup: tuple[AsyncWrennClient, FaultProxy, str],
) -> None:
    direct, proxy, cid = setup
    cap = await direct.connect(cid)
    async with faulty(proxy) as client:
        through_proxy = await client.connect(cid)
        tags: list[str | None] = []

        async def type_then_drop() -> None:
            async with through_proxy.pty("/bin/sh", envs={"PS1": "$ "}) as term:
                tags.append(term.tag)
                await term.write("export MARK=kept\necho ready\n")
                async for chunk in term.output():
                    if b"ready" in chunk:
                        proxy.reset_all()  # the network drops under the terminal

        with anyio.fail_after(BOUND):
            with pytest.raises(WrennError):
                await type_then_drop()
            (tag,) = tags
            assert tag is not None
            async with cap.pty_connect(tag) as again:  # reattach by tag
                await again.write("echo $MARK; exit 3\n")
                seen = b""
                async for chunk in again.output():
                    seen += chunk
                assert b"kept" in seen
                assert again.exit_code == 3


async def test_server_restart_mid_stream(tmp_path: object) -> None:
    """The server process dies under an open stream, then comes back on the same port."""
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    key = "wrn_" + "ab" * 16
    command = [sys.executable, "-m", "wrenn_local", "serve", "--port", str(port), "--api-key", key]

    async def start() -> anyio.abc.Process:
        proc = await anyio.open_process(command, stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        with anyio.fail_after(30):
            got = b""
            while got.count(b"\n") < 2:
                got += await proc.stdout.receive()
        return proc

    first = await start()
    try:
        async with AsyncWrennClient(api_key=key, base_url=f"http://127.0.0.1:{port}") as client:
            cid = (await client.capsules.create()).id
            with anyio.fail_after(20):
                while (await client.capsules.get(cid)).status != "running":
                    await anyio.sleep(0.05)

            async def kill_under_the_stream() -> None:
                async with client.processes.stream(cid, "sleep", args=["60"]) as run:
                    async for event in run:
                        if event.type == "start":
                            first.send_signal(signal.SIGKILL)

            with anyio.fail_after(BOUND), pytest.raises(WrennError):
                await kill_under_the_stream()
            await first.wait()
            second = await start()
            try:
                with anyio.fail_after(BOUND):
                    assert await client.capsules.list() == []  # a fresh server, reached again
            finally:
                second.send_signal(signal.SIGTERM)
                with anyio.fail_after(30):
                    await second.wait()
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
