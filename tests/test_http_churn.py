"""Cancellation churn through the SDK's transport must never wedge its connection pool.

httpx 0.28.1 fails this (connections stay "busy" forever after cancelled requests, see
docs/design/dependencies.md and benchmarks/http_churn.py); httpx2 passes. The SDK
cancels requests routinely (deadlines, task groups), so this guards the choice.
"""

from __future__ import annotations

import random

import anyio
import pytest
from starlette.requests import Request
from starlette.responses import Response

from tests.fakeapi import FakeAPI, reply
from wrenn._config import ClientConfig
from wrenn._transport.http import HTTPTransport, api_path

KEY = "wrn_0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(("pool_size", "body"), [(2, 0), (4, 0), (2, 512 * 1024)])
async def test_pool_survives_random_cancellation(
    fake_api: FakeAPI, pool_size: int, body: int
) -> None:
    # body: a POST that large is cancelled while its body is being written, too
    rng = random.Random(pool_size)
    method = "POST" if body else "GET"

    async def jittery(request: Request) -> Response:
        assert len(await request.body()) == body
        await anyio.sleep(rng.random() * 0.004)
        return reply(200, [])

    fake_api.on(method, "/v1/capsules", jittery)
    config = ClientConfig.resolve(
        api_key=KEY,
        token=None,
        base_url=fake_api.base_url,
        proxy_domain=None,
        timeout=5.0,
        connect_timeout=2.0,
        max_retries=0,
        environ={},
    )
    http = HTTPTransport(config, max_connections=pool_size)
    assert http._pool is not None  # these requests take the direct path (_send_direct)
    content = b"x" * body or None
    outcomes = {"ok": 0, "cancelled": 0}
    limiter = anyio.Semaphore(8)

    async def one(n: int) -> None:
        # every fourth request has no deadline, so some complete however loaded the
        # machine is; the others are cancelled at a random point (or complete in time)
        deadline = None if n % 4 == 0 else rng.random() * 0.06
        async with limiter:
            with anyio.move_on_after(deadline) as scope:
                await http.request(method, api_path("capsules"), content=content, idempotent=True)
                outcomes["ok"] += 1
            if scope.cancelled_caught:
                outcomes["cancelled"] += 1

    try:
        async with anyio.create_task_group() as tg:
            for n in range(600):
                tg.start_soon(one, n)
        assert outcomes["ok"] > 0
        assert outcomes["cancelled"] > 0
        pool = http.client._transport._pool  # type: ignore[attr-defined]
        busy = [c for c in pool.connections if not c.is_idle() and not c.is_closed()]
        assert busy == [], f"connections left busy after churn: {busy}"
        with anyio.fail_after(10):
            for _ in range(20):
                await http.request(method, api_path("capsules"), content=content, timeout=2)
    finally:
        await http.aclose()
