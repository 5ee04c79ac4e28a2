"""REST calls straight through the connection pool (``HTTPTransport._send_direct``).

Plain requests skip httpx's client layers for their per-call cost; what reaches the
server must be what httpx would have sent, and what comes back must read the same. Each
check sends the same call both ways to a real HTTP/1.1 server (FakeAPI on a socket):
through the pool, and through a transport handed in (which goes through httpx).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging

import anyio
import anyio.abc
import httpx2 as httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from tests.fakeapi import FakeAPI
from tests.tcp import serve_tcp
from wrenn import WrennError
from wrenn._config import ClientConfig
from wrenn._transport.errors import _chain
from wrenn._transport.http import HTTPTransport, api_path


def _config(base_url: str, api_key: str = "wrn_test_key", timeout: float = 10) -> ClientConfig:
    return ClientConfig.resolve(
        api_key=api_key,
        token=None,
        base_url=base_url,
        proxy_domain=None,
        timeout=timeout,
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


# --- failures: the same WrennError either way, and never the key ------------------------

SECRET_KEY = "wrn_" + "5ecret" * 6
GARBAGE_ANSWERS = {
    "close": b"",  # closed without a word
    "half-head": b"HTTP/1.1 200 OK\r\ncontent-ty",
    "truncated-body": b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{",
    "not-http": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "bad-length": b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n{}",
    "bad-chunk": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    "bad-gzip": b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: 4\r\n\r\nnope",
    "401": b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\n{}",
    "500": b'HTTP/1.1 500 Oops\r\ncontent-length: 16\r\n\r\n{"message":"no"}',
    "stall": None,  # never answers: the call's deadline
}


@pytest.mark.parametrize("answer", list(GARBAGE_ANSWERS))
async def test_failures_map_to_the_same_error_without_the_key(
    answer: str, caplog: pytest.LogCaptureFixture
) -> None:
    raw = GARBAGE_ANSWERS[answer]

    async def peer(stream: anyio.abc.SocketStream) -> None:
        got = b""
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
            while b"\r\n\r\n" not in got:
                got += await stream.receive()
            if raw is None:
                await anyio.sleep(30)
            else:
                await stream.send(raw)

    caplog.set_level(logging.DEBUG)
    async with serve_tcp(peer) as port:
        config = _config(f"http://127.0.0.1:{port}", SECRET_KEY, timeout=1.0)
        errors: list[BaseException] = []
        for http in (
            HTTPTransport(config),
            HTTPTransport(config, transport=httpx.AsyncHTTPTransport()),
        ):
            try:
                with anyio.fail_after(10):
                    await http.request("GET", api_path("capsules"))
            except WrennError as exc:
                errors.append(exc)
            finally:
                await http.aclose()
    assert len(errors) == 2, errors
    direct, through_httpx = errors
    assert type(direct) is type(through_httpx), (direct, through_httpx)
    for error in errors:
        chain = list(_chain(error))
        assert not any(SECRET_KEY[4:16] in str(e) + repr(e) for e in chain), chain
    assert SECRET_KEY[4:16] not in caplog.text
