"""Liveness: a peer that vanishes without FIN or RST is noticed within a bound.

A real local server (its own process) behind the fault proxy of tests/faults.py: once
the stream is open the proxy black-holes the connection (bytes swallowed both ways, no
FIN, no RST — what a vanished host or a dead NAT entry looks like). Every WebSocket the
SDK holds must then fail with WrennConnectionError within ping interval + ping timeout,
and the event stream within its idle bound; a healthy idle stream must stay open across
several ping intervals. Short intervals are set explicitly: the default (20 s) is long
enough that ordinary short streams never ping.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from tests.faults import FaultProxy, fault_proxy
from tests.localserver import server_process
from wrenn import AsyncWrennClient, StreamExit, StreamStdout, WrennConnectionError
from wrenn._config import ClientConfig
from wrenn._exceptions import WrennConfigurationError

INTERVAL = 0.3
TIMEOUT = 0.5
BOUND = 15  # the test fails (instead of hanging) past this


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, str]]:
    with server_process() as env:
        yield env


@pytest.fixture
async def setup(server: dict[str, str]) -> AsyncIterator[tuple[AsyncWrennClient, str]]:
    """A direct client with a running capsule, and a proxy in front of the same server."""
    key, base = server["WRENN_API_KEY"], server["WRENN_BASE_URL"]
    async with AsyncWrennClient(api_key=key, base_url=base) as direct, direct.capsule() as cap:
        yield direct, cap.capsule_id


@pytest.fixture
async def proxy(server: dict[str, str]) -> AsyncIterator[FaultProxy]:
    async with fault_proxy(port_of(server), server["WRENN_API_KEY"]) as proxy:
        yield proxy


def through(proxy: FaultProxy, ping_interval: float | None = INTERVAL) -> AsyncWrennClient:
    return AsyncWrennClient(
        api_key=proxy.api_key,
        base_url=proxy.base_url,
        ping_interval=ping_interval,
        ping_timeout=TIMEOUT,
    )


def port_of(server: dict[str, str]) -> int:
    return int(server["WRENN_BASE_URL"].rsplit(":", 1)[1])


async def test_a_silent_exec_stream_fails_within_the_bound(
    proxy: FaultProxy, setup: tuple[AsyncWrennClient, str]
) -> None:
    _, cid = setup
    async with through(proxy) as client:
        cap = await client.connect(cid)
        with anyio.fail_after(BOUND):
            async with cap.commands.stream("sleep 60") as run:
                await anext(run)  # started
                proxy.silence_all()
                began = time.monotonic()
                with pytest.raises(WrennConnectionError, match="did not answer a ping"):
                    async for _ in run:
                        pass
                took = time.monotonic() - began
    assert took < INTERVAL + TIMEOUT + 2


async def test_a_silent_terminal_fails_within_the_bound(
    proxy: FaultProxy, setup: tuple[AsyncWrennClient, str]
) -> None:
    _, cid = setup
    async with through(proxy) as client:
        cap = await client.connect(cid)
        with anyio.fail_after(BOUND):
            async with cap.pty("/bin/sh") as term:
                proxy.silence_all()
                with pytest.raises(WrennConnectionError, match="did not answer a ping"):
                    async for _ in term:
                        pass


async def test_a_healthy_idle_stream_stays_open_across_pings(
    proxy: FaultProxy, setup: tuple[AsyncWrennClient, str]
) -> None:
    _, cid = setup
    async with through(proxy) as client:
        cap = await client.connect(cid)
        with anyio.fail_after(BOUND):
            async with cap.commands.stream("sleep 2; echo done") as run:
                events = [event async for event in run]
                latency = run._ws.statistics().ping_latency
    assert [e.data for e in events if isinstance(e, StreamStdout)] == ["done\n"]
    assert isinstance(events[-1], StreamExit)
    assert events[-1].exit_code == 0
    assert latency is not None  # it did ping (2 s idle, 0.3 s interval), and got answers


async def test_none_turns_liveness_off(
    proxy: FaultProxy, setup: tuple[AsyncWrennClient, str]
) -> None:
    _, cid = setup
    async with through(proxy, ping_interval=None) as client:
        cap = await client.connect(cid)
        with anyio.fail_after(BOUND):
            async with cap.commands.stream("sleep 60") as run:
                await anext(run)
                proxy.silence_all()
                with anyio.move_on_after(INTERVAL + TIMEOUT + 1) as waited:
                    await anext(run)  # nothing tells it the peer is gone
                assert waited.cancelled_caught
                assert run._ws.statistics().ping_latency is None


async def test_a_silent_event_stream_fails_after_its_idle_bound(proxy: FaultProxy) -> None:
    async with through(proxy) as client:
        with anyio.fail_after(BOUND):
            async with client.events.stream(idle_timeout=1.0) as events:
                proxy.silence_all()
                began = time.monotonic()
                with pytest.raises(WrennConnectionError, match="nothing received"):
                    async for _ in events:
                        pass
                assert time.monotonic() - began < 4


@pytest.mark.parametrize(("interval", "timeout"), [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.0)])
def test_liveness_settings_are_checked(interval: float, timeout: float) -> None:
    with pytest.raises(WrennConfigurationError):
        ClientConfig.resolve(
            api_key="wrn_x",
            token=None,
            base_url=None,
            proxy_domain=None,
            timeout=30.0,
            connect_timeout=10.0,
            max_retries=3,
            ping_interval=interval,
            ping_timeout=timeout,
        )


def test_liveness_is_on_by_default_and_long_enough_for_short_streams() -> None:
    config = AsyncWrennClient(api_key="wrn_x").config
    assert config.ping_interval is not None
    assert config.ping_interval >= 15
    assert config.ping_timeout > 0
