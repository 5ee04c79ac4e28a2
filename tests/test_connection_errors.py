"""A connection error says which URL it tried, where that URL came from, and what went
wrong in our words; the foreign exception stays reachable as ``__cause__``."""

from __future__ import annotations

import socket

import pytest

from wrenn import AsyncWrennClient
from wrenn._config import ClientConfig
from wrenn._transport.errors import map_transport_errors
from wrenn._transport.http import httpx
from wrenn.exceptions import WrennConnectionError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.anyio
async def test_a_refused_connection_names_the_url_and_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there any more
    monkeypatch.setenv("WRENN_BASE_URL", url)
    async with AsyncWrennClient(api_key="wrn_12345678", max_retries=0) as client:
        with pytest.raises(WrennConnectionError) as caught:
            await client.capsules.list()
    message = caught.value.message
    assert message == (
        f"cannot connect to {url} (from WRENN_BASE_URL): connection refused "
        "(is the server running on that port?) (GET /v1/capsules)"
    )
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert "ConnectError" not in message


def test_where_the_url_came_from() -> None:
    def origin(base_url: str | None, environ: dict[str, str]) -> str:
        config = ClientConfig.resolve(
            api_key=None,
            token=None,
            base_url=base_url,
            proxy_domain=None,
            timeout=1,
            connect_timeout=1,
            max_retries=0,
            environ=environ,
        )
        return config.describe_server()

    assert origin(None, {}) == (
        "https://app.wrenn.dev/api (the default; set WRENN_BASE_URL for another server)"
    )
    assert origin(None, {"WRENN_BASE_URL": "http://h:1"}) == "http://h:1 (from WRENN_BASE_URL)"
    assert (
        origin("http://a:2", {"WRENN_BASE_URL": "http://h:1"}) == "http://a:2 (given as base_url)"
    )


def test_an_unknown_host_is_said_in_words() -> None:
    with (
        pytest.raises(WrennConnectionError) as caught,
        map_transport_errors("GET /v1/capsules", server="http://nowhere:1 (x)"),
    ):
        try:
            raise socket.gaierror(-2, "Name or service not known")
        except socket.gaierror as exc:
            raise httpx.ConnectError(str(exc)) from exc
    assert caught.value.message == (
        "cannot connect to http://nowhere:1 (x): its host name does not resolve (GET /v1/capsules)"
    )
