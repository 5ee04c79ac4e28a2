"""REST calls straight through the connection pool (``HTTPTransport._send_direct``).

Plain requests skip httpx's client layers for their per-call cost; what reaches the
server must be what httpx would have sent, and what comes back must read the same. Each
check sends the same call both ways to a real HTTP/1.1 server (FakeAPI on a socket):
through the pool, and through a transport handed in (which goes through httpx).
"""

from __future__ import annotations

import gzip
import json

import httpx2 as httpx
from starlette.requests import Request
from starlette.responses import Response

from tests.fakeapi import FakeAPI
from wrenn._config import ClientConfig
from wrenn._transport.http import HTTPTransport


def _config(base_url: str) -> ClientConfig:
    return ClientConfig.resolve(
        api_key="wrn_test_key",
        token=None,
        base_url=base_url,
        proxy_domain=None,
        timeout=10,
        connect_timeout=5,
        max_retries=0,
        environ={},
    )


def _both(base_url: str) -> tuple[HTTPTransport, HTTPTransport]:
    direct = HTTPTransport(_config(base_url))
    through_httpx = HTTPTransport(_config(base_url), transport=httpx.AsyncHTTPTransport())
    assert direct._pool is not None  # the fast path is in use
    assert through_httpx._pool is None
    return direct, through_httpx


async def test_same_request_on_the_wire(fake_api: FakeAPI) -> None:
    fake_api.answer("POST", "/v1/things/a", body={"ok": True})
    fake_api.answer("DELETE", "/v1/things/x", status=204)
    fake_api.answer("GET", "/v1/things", body=[1, "é"])
    for transport in _both(fake_api.base_url):
        try:
            resp = await transport.request(
                "POST", "/v1/things/a", json_body={"cmd": "é", "n": [1, 2]}
            )
            assert resp.json() == {"ok": True}
            assert (await transport.request("DELETE", "/v1/things/x")).status_code == 204
            got = await transport.request("GET", "/v1/things", headers={"Accept": "text/plain"})
            assert got.json() == [1, "é"]
            assert got.headers["content-type"] == "application/json"
        finally:
            await transport.aclose()
    direct, via_httpx = fake_api.seen[:3], fake_api.seen[3:]
    for ours, theirs in zip(direct, via_httpx, strict=True):
        assert (ours.method, ours.raw_path, ours.body) == (
            theirs.method,
            theirs.raw_path,
            theirs.body,
        )
        assert ours.headers == theirs.headers
    assert direct[0].json() == {"cmd": "é", "n": [1, 2]}
    assert direct[2].headers["accept"] == "text/plain"  # a caller's header replaces the default


async def test_compressed_answer_is_decoded(fake_api: FakeAPI) -> None:
    body = json.dumps({"stdout": "x" * 5000}).encode()

    async def gzipped(_: Request) -> Response:
        return Response(
            gzip.compress(body),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    fake_api.on("POST", "/v1/zipped", gzipped)
    for transport in _both(fake_api.base_url):
        try:
            resp = await transport.request("POST", "/v1/zipped", json_body={})
            assert resp.content == body
        finally:
            await transport.aclose()


async def test_params_still_go_through_httpx(fake_api: FakeAPI) -> None:
    fake_api.answer("GET", "/v1/list", body={"n": 1})
    direct, _ = _both(fake_api.base_url)
    try:
        resp = await direct.request("GET", "/v1/list", params={"range": "5m"})
        assert resp.json() == {"n": 1}
    finally:
        await direct.aclose()
    assert fake_api.seen[-1].query == {"range": "5m"}
