"""The HTTP transport against real loopback peers: retries, idempotency, deadlines,
error mapping and cancellation."""

from __future__ import annotations

import logging
import math
from urllib.parse import quote

import anyio
import anyio.abc
import pytest

from tests.fakeapi import FakeAPI, reply, sleep_then
from tests.rawserver import raw_server
from wrenn import (
    AsyncWrennClient,
    WrennConnectionError,
    WrennInvalidStateError,
    WrennNotFoundError,
    WrennProtocolError,
    WrennRateLimitError,
    WrennTimeoutError,
    WrennUnavailableError,
    WrennValidationError,
)
from wrenn._transport.http import api_path

KEY = "wrn_0123456789abcdef0123456789abcdef"
CAPSULE = {"id": "cl-0000000000000000000000001", "status": "running"}
FAST = {"max_retries": 3}


def client(base_url: str, **kw: object) -> AsyncWrennClient:
    c = AsyncWrennClient(api_key=KEY, base_url=base_url, **kw)  # type: ignore[arg-type]
    c._session.http.retry.base = (
        0.01  # keep backoff short in tests; the policy itself is unit-tested
    )
    return c


async def test_get_retries_503_then_succeeds(fake_api: FakeAPI) -> None:
    path = "/v1/capsules/cl-1"
    fake_api.sequence(
        "GET",
        path,
        (503, {"error": {"code": "no_hosts_available", "message": "busy"}}, {}),
        (503, "upstream", {}),
        (200, CAPSULE, {}),
    )
    async with client(fake_api.base_url) as c:
        capsule = await c.capsules.get("cl-1")
    assert capsule.id == CAPSULE["id"]
    assert fake_api.count("GET", path) == 3


async def test_retries_give_up_with_the_last_error(fake_api: FakeAPI) -> None:
    fake_api.answer(
        "GET",
        "/v1/capsules",
        503,
        {"error": {"code": "no_hosts_available", "message": "try later"}},
    )
    async with client(fake_api.base_url, max_retries=2) as c:
        with pytest.raises(WrennUnavailableError, match="try later"):
            await c.capsules.list()
    assert fake_api.count("GET", "/v1/capsules") == 3


async def test_post_is_not_retried_on_503(fake_api: FakeAPI) -> None:
    fake_api.answer(
        "POST", "/v1/capsules", 503, {"error": {"code": "no_hosts_available", "message": "x"}}
    )
    async with client(fake_api.base_url) as c:
        with pytest.raises(WrennUnavailableError):
            await c.capsules.create()
    assert fake_api.count("POST", "/v1/capsules") == 1


async def test_429_is_retried_for_post_and_honours_retry_after(fake_api: FakeAPI) -> None:
    fake_api.sequence(
        "POST",
        "/v1/capsules",
        (429, "slow down", {"Retry-After": "0.3"}),
        (202, {**CAPSULE, "status": "starting"}, {}),
    )
    async with client(fake_api.base_url) as c:
        start = anyio.current_time()
        capsule = await c.capsules.create(template="minimal")
        waited = anyio.current_time() - start
    assert capsule.status == "starting"
    assert fake_api.count("POST", "/v1/capsules") == 2
    assert waited >= 0.3


async def test_429_exhausted_carries_retry_after(fake_api: FakeAPI) -> None:
    fake_api.answer("GET", "/v1/capsules", 429, "nope", Retry_After="0")
    async with client(fake_api.base_url, max_retries=1) as c:
        with pytest.raises(WrennRateLimitError) as info:
            await c.capsules.list()
    assert info.value.retry_after == 0.0


async def test_errors_are_mapped_with_context(fake_api: FakeAPI) -> None:
    fake_api.answer(
        "POST",
        "/v1/capsules/cl-1/pause",
        409,
        {"error": {"code": "invalid_state", "message": "capsule is not running"}},
    )
    async with client(fake_api.base_url) as c:
        with pytest.raises(WrennInvalidStateError) as info:
            await c.capsules.pause("cl-1")
    assert info.value.status_code == 409
    assert "POST /v1/capsules/cl-1/pause" in str(info.value)


async def test_plain_text_404_from_the_router(fake_api: FakeAPI) -> None:
    async with client(fake_api.base_url) as c:
        with pytest.raises(WrennNotFoundError, match="404 page not found"):
            await c.capsules.get("cl-missing")


async def test_bad_json_becomes_protocol_error(fake_api: FakeAPI) -> None:
    fake_api.answer("GET", "/v1/capsules", 200, b"{not json")
    fake_api.answer("GET", "/v1/capsules/cl-1", 200, [1, 2, 3])
    async with client(fake_api.base_url) as c:
        with pytest.raises(WrennProtocolError) as info:
            await c.capsules.list()
        assert info.value.__cause__ is not None
        with pytest.raises(WrennProtocolError):
            await c.capsules.get("cl-1")


async def test_deadline_bounds_the_whole_call(fake_api: FakeAPI) -> None:
    async def slow(_: object) -> object:
        return await sleep_then(5, reply(200, []))

    fake_api.on("GET", "/v1/capsules", slow)  # type: ignore[arg-type]
    async with client(fake_api.base_url, timeout=0.3) as c:
        start = anyio.current_time()
        with pytest.raises(WrennTimeoutError) as info:
            await c.capsules.list()
        assert anyio.current_time() - start < 2
        assert isinstance(info.value, TimeoutError)
        # a per-call deadline overrides the client's
        with pytest.raises(WrennTimeoutError):
            await c.capsules.list(timeout=0.1)


async def test_connection_refused_is_a_wrenn_error() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()  # nothing listens there any more
    async with client(f"http://127.0.0.1:{port}", max_retries=1) as c:
        with pytest.raises(WrennConnectionError) as info:
            await c.capsules.create()
    assert info.value.__cause__ is not None


async def test_dropped_post_is_never_sent_twice() -> None:
    async with raw_server(["close", "ok"]) as server:
        async with client(f"http://127.0.0.1:{server.port}") as c:
            with pytest.raises(WrennConnectionError):
                await c.capsules.create()
        assert server.requests == 1


async def test_dropped_get_is_retried() -> None:
    async with raw_server(["close", "truncate", "ok"]) as server:
        async with client(f"http://127.0.0.1:{server.port}") as c:
            resp = await c._session.http.request("GET", api_path("capsules"))
        assert resp.json() == {"ok": True}
        assert server.requests == 3


async def test_truncated_post_answer_is_a_connection_error_not_a_retry() -> None:
    async with raw_server(["truncate", "ok"]) as server:
        async with client(f"http://127.0.0.1:{server.port}") as c:
            with pytest.raises(WrennConnectionError):
                await c.capsules.resume("cl-1")
        assert server.requests == 1


@pytest.mark.parametrize("bad", ["", "../../snapshots", "cl-1/pause", "a?b=c", "x#y"])
async def test_ids_cannot_change_the_route(fake_api: FakeAPI, bad: str) -> None:
    async with client(fake_api.base_url) as c:
        if not bad:
            with pytest.raises(WrennValidationError):
                await c.capsules.get(bad)
            return
        with pytest.raises(WrennNotFoundError):
            await c.capsules.get(bad)
    (seen,) = fake_api.seen
    assert seen.raw_path == b"/v1/capsules/" + quote(bad, safe="").encode()  # one segment


async def test_cancelled_call_leaves_the_client_usable(fake_api: FakeAPI) -> None:
    async def slow(_: object) -> object:
        return await sleep_then(10, reply(200, []))

    fake_api.on("GET", "/v1/capsules/slow", slow)  # type: ignore[arg-type]
    fake_api.answer("GET", "/v1/capsules", 200, [CAPSULE])
    async with client(fake_api.base_url) as c:
        for _ in range(5):
            with anyio.move_on_after(0.05) as scope:
                await c.capsules.get("slow")
            assert scope.cancelled_caught
        assert [x.id for x in await c.capsules.list()] == [CAPSULE["id"]]


async def test_no_credentials_fails_before_any_io(
    fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WRENN_API_KEY", raising=False)
    monkeypatch.delenv("WRENN_TOKEN", raising=False)
    async with AsyncWrennClient(base_url=fake_api.base_url) as c:
        with pytest.raises(ValueError, match="WRENN_API_KEY"):
            await c.capsules.list()
    assert fake_api.seen == []


async def test_secrets_never_reach_logs_or_errors(
    fake_api: FakeAPI, caplog: pytest.LogCaptureFixture
) -> None:
    fake_api.answer(
        "GET",
        "/v1/capsules",
        401,
        {"error": {"code": "unauthorized", "message": "invalid API key"}},
    )
    fake_api.sequence("GET", "/v1/capsules/cl-1", (503, "x", {}), (200, CAPSULE, {}))
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    async with client(fake_api.base_url) as c:
        texts.append(repr(c))
        await c.capsules.get("cl-1")
        try:
            await c.capsules.list()
        except Exception as exc:
            texts += [str(exc), repr(exc), repr(exc.__cause__)]
    assert fake_api.seen[0].headers["x-api-key"] == KEY  # it was sent...
    texts += [r.getMessage() for r in caplog.records]
    assert caplog.records  # ...logging ran...
    assert all(KEY not in t for t in texts)  # ...and the key shows nowhere


async def test_nan_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="timeout"):
        AsyncWrennClient(api_key=KEY, timeout=math.nan)


async def test_tls_is_verified_by_default() -> None:
    """A server whose certificate comes from an unknown CA is refused; trusting that CA
    (``verify=<SSLContext>``) lets the same call through."""
    import ssl

    import trustme

    from tests.tcp import serve_tcp

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)

    async def answer(stream: anyio.abc.SocketStream) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            try:
                request += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return
        body = b"[]"
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        await stream.send(head.encode() + b"\r\nConnection: close\r\n\r\n" + body)

    async with serve_tcp(answer, tls=server_ctx) as port:
        url = f"https://127.0.0.1:{port}"
        async with AsyncWrennClient(api_key=KEY, base_url=url, max_retries=0) as default:
            with pytest.raises(WrennConnectionError, match=r"(?i)certificate|ssl|tls"):
                await default.capsules.list()
        async with AsyncWrennClient(api_key=KEY, base_url=url, verify=trusted) as trusting:
            assert await trusting.capsules.list() == []


# A connect or pool timeout needs a peer that drops SYNs or a pool held elsewhere; loopback
# never drops SYNs and tests may not reach any other address, so these two scenarios use
# httpx2's MockTransport to raise exactly the timeouts the real transport raises.
@pytest.mark.parametrize("kind", ["ConnectTimeout", "PoolTimeout"])
async def test_connect_and_pool_timeouts_are_retried(kind: str) -> None:
    from wrenn._transport.http import httpx

    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) == 1:
            raise getattr(httpx, kind)("no connection", request=request)
        return httpx.Response(200, json=CAPSULE)

    transport = httpx.MockTransport(handler)
    async with client("http://capsules.test", http_transport=transport) as c:
        # a POST too: the body never left, so it cannot run twice
        assert (await c.capsules.create()).id == CAPSULE["id"]
        assert (await c.capsules.get(CAPSULE["id"])).id == CAPSULE["id"]
    assert calls == ["POST", "POST", "GET"]


async def test_read_timeout_of_a_post_is_not_retried() -> None:
    from wrenn._transport.http import httpx

    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        raise httpx.ReadTimeout("silent server", request=request)

    async with client("http://capsules.test", http_transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(WrennTimeoutError):
            await c.capsules.create()
    assert calls == ["POST"]
