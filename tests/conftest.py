from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest

import wrenn_local
from tests.fakeapi import FakeAPI
from tests.localserver import FAST
from tests.sync_facade import APIS, Api, open_client
from wrenn import AsyncWrennClient
from wrenn_local._asgi import serve_asgi

# Ctrl-C tests deliver SIGINT (``_thread.interrupt_main``, ``os.kill``) to this process and
# to programs it starts. A shell without job control starts a background job (``pytest
# … &``) with SIGINT ignored, and Python then installs no handler: the signals would do
# nothing, here and in every child (an ignored signal stays ignored across exec).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Scenarios marked ``async_only`` (they cancel async scopes, or use async-only
    constructors) are not run through the sync API; see tests/sync_facade.py."""
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        api = callspec.params.get("api") if callspec is not None else None
        if api == "sync" and item.get_closest_marker("async_only"):
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture(params=APIS)
def api(request: pytest.FixtureRequest) -> Api:
    """``"async"`` or ``"sync"``: which public API an end-to-end scenario goes through."""
    value: Api = request.param
    return value


@pytest.fixture
async def client(api: Api) -> AsyncIterator[AsyncWrennClient]:
    """A local server for the test, and the async client of it — or (``api == "sync"``)
    the sync client behind an async face (tests/sync_facade.py)."""
    async with (
        wrenn_local.serve(options=FAST) as server,
        open_client(api, api_key=server.api_key, base_url=server.base_url) as c,
    ):
        yield c
