"""Fixtures for testing code that uses wrenn, offline, against an embedded local server.

Installed with the package as a pytest plugin (entry point ``pytest11: wrenn``). It only
defines fixtures, so it does nothing until a test asks for one; the first such test
starts one local server for the whole session (in its own process, with the ``local``
extra installed) and every test gets fresh clients and capsules on it::

    async def test_my_agent(wrenn_capsule):          # asyncio and trio (anyio plugin)
        result = await wrenn_capsule.commands.run("echo hi")
        assert result.stdout == "hi\\n"

    def test_my_script(wrenn_sync_capsule):           # plain synchronous code
        assert wrenn_sync_capsule.commands.run("echo hi").stdout == "hi\\n"

    def test_code_reading_the_environment(wrenn_env):  # WRENN_* set for the test
        ...

Async fixtures need an async test runner; with anyio's plugin mark the tests
``@pytest.mark.anyio`` (or set ``anyio_mode = "auto"``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

# pytest loads this module at start-up in every project that installed wrenn: it imports
# the SDK only inside the fixtures, so a test run that uses none of them pays nothing.
if TYPE_CHECKING:
    from ._capsule import AsyncCapsule
    from ._client import AsyncWrennClient
    from ._sync.client import Capsule, WrennClient

__all__ = [
    "LocalServerInfo",
    "wrenn_capsule",
    "wrenn_client",
    "wrenn_env",
    "wrenn_local_server",
    "wrenn_sync_capsule",
    "wrenn_sync_client",
]


@dataclasses.dataclass(frozen=True, slots=True)
class LocalServerInfo:
    """Where the session's local server listens. ``api_key`` is a throwaway local key."""

    base_url: str
    api_key: str = dataclasses.field(repr=False)


@pytest.fixture(scope="session")
def wrenn_local_server() -> Iterator[LocalServerInfo]:
    """One embedded local Wrenn server for the test session, in its own process; every
    capsule it holds is destroyed when the session ends."""
    try:
        import wrenn_local
    except ImportError:
        pytest.skip("the wrenn fixtures need the local server: pip install 'wrenn[local]'")
    with wrenn_local.server_process() as env:
        yield LocalServerInfo(env["WRENN_BASE_URL"], env["WRENN_API_KEY"])


@pytest.fixture
def wrenn_env(
    wrenn_local_server: LocalServerInfo, monkeypatch: pytest.MonkeyPatch
) -> LocalServerInfo:
    """``WRENN_BASE_URL`` and ``WRENN_API_KEY`` of the local server, set for this test
    (for code that builds its own clients, such as ``wrenn.Capsule()``)."""
    monkeypatch.setenv("WRENN_BASE_URL", wrenn_local_server.base_url)
    monkeypatch.setenv("WRENN_API_KEY", wrenn_local_server.api_key)
    return wrenn_local_server


@pytest.fixture
async def wrenn_client(wrenn_local_server: LocalServerInfo) -> AsyncIterator[AsyncWrennClient]:
    """An async client of the local server (closed after the test)."""
    from ._client import AsyncWrennClient

    async with AsyncWrennClient(
        api_key=wrenn_local_server.api_key, base_url=wrenn_local_server.base_url
    ) as client:
        yield client


@pytest.fixture
async def wrenn_capsule(wrenn_client: AsyncWrennClient) -> AsyncIterator[AsyncCapsule]:
    """A throwaway capsule, destroyed after the test."""
    async with wrenn_client.capsule() as capsule:
        yield capsule


@pytest.fixture
def wrenn_sync_client(wrenn_local_server: LocalServerInfo) -> Iterator[WrennClient]:
    """A sync client of the local server (closed after the test)."""
    from ._sync.client import WrennClient

    with WrennClient(
        api_key=wrenn_local_server.api_key, base_url=wrenn_local_server.base_url
    ) as client:
        yield client


@pytest.fixture
def wrenn_sync_capsule(wrenn_sync_client: WrennClient) -> Iterator[Capsule]:
    """A throwaway capsule for synchronous tests, destroyed after the test."""
    with wrenn_sync_client.capsule() as capsule:
        yield capsule
