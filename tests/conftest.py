from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.fakeapi import FakeAPI
from wrenn_local._asgi import serve_asgi

# Every async test runs under asyncio (debug mode) and trio.
BACKENDS = [
    pytest.param(("asyncio", {"debug": True}), id="asyncio"),
    pytest.param(("trio", {}), id="trio"),
]


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeAPI]:
    """A scriptable Wrenn-shaped HTTP server on a real loopback socket."""
    api = FakeAPI()
    async with serve_asgi(api) as (host, port):
        api.base_url = f"http://{host}:{port}"
        yield api
