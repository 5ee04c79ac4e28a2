"""Browser links to a capsule's port: a signed, one-use, short-lived token in the URL that
the local proxy trades for a cookie bound to that capsule and port.

The browser is played by a plain httpx client that follows redirects and keeps cookies;
only name resolution is done for it (a browser resolves ``*.localhost`` to loopback
itself, this machine's resolver may not), the URL, Host header and cookie jar keep the
``{port}-{id}.localhost`` name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

import wrenn_local
from tests.fakeapi import FakeAPI
from tests.localserver import FAST, local_http, new_capsule
from tests.test_local_proxy import ECHO_HTTP, ECHO_WS, start_service
from wrenn import AsyncWrennClient, WrennAuthenticationError, WrennNotFoundError
from wrenn._transport.websocket import connect_websocket
from wrenn_local import ServerOptions

pytestmark = pytest.mark.anyio


class Loopback(httpx.AsyncBaseTransport):
    """Connect to 127.0.0.1 whatever the URL's host is (what a browser does for
    ``*.localhost``); the request keeps its name in ``Host``."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # a copy: the client reads cookies off the original request's URL
        direct = httpx.Request(
            request.method,
            request.url.copy_with(host="127.0.0.1"),
            headers=request.headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        return await self._inner.handle_async_request(direct)

    async def aclose(self) -> None:
        await self._inner.aclose()


@asynccontextmanager
async def browser() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=Loopback(), follow_redirects=True, timeout=30) as client:
        yield client


async def link(http: httpx.AsyncClient, cid: str, port: int) -> str:
    resp = await http.post(f"/v1/capsules/{cid}/ports/{port}/browser-token")
    assert resp.status_code == 200, resp.text
    url: str = resp.json()["url"]
    return url


PROBE = (
    'python3 -c "import socket,time\nfor _ in range(100):\n try:\n'
    "  socket.create_connection(('127.0.0.1',8000)).close(); break\n"
    ' except OSError: time.sleep(0.05)"'
)


def echo(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    got: dict[str, Any] = resp.json()
    return got


async def test_a_browser_link_opens_the_port_and_the_capsule_never_sees_token_or_cookie() -> None:
    async with (
        wrenn_local.serve(options=FAST) as server,
        AsyncWrennClient(api_key=server.api_key, base_url=server.base_url) as client,
        client.capsule() as cap,
    ):
        await cap.files.write("/tmp/svc.py", ECHO_HTTP)
        await cap.commands.run("python3 /tmp/svc.py 8000 A", background=True)
        await cap.commands.run(PROBE)
        url = await cap.browser_url(8000, "/page?x=1")
        assert url.startswith(cap.get_url(8000) + "/page?x=1&wrenn_token=")
        token = url.rpartition("wrenn_token=")[2]
        async with browser() as web:
            first = await web.get(url)
            seen = echo(first)
            # one redirect, to the same URL without the token, that sets the cookie
            (hop,) = first.history
            assert hop.status_code == 303
            assert hop.headers["location"] == "/page?x=1"
            cookie = hop.headers["set-cookie"]
            assert "HttpOnly" in cookie
            assert "SameSite=Strict" in cookie
            assert "domain=" not in cookie.lower()  # host-only: this capsule port's name
            assert hop.headers["referrer-policy"] == "no-referrer"
            assert (seen["path"], seen["name"]) == ("/page?x=1", "A")
            # the capsule sees neither the token nor the cookie, nor the team's key
            assert token not in first.text
            assert "wrenn_port" not in first.text
            assert server.api_key not in first.text
            # the cookie opens the port again without any token; the capsule's own
            # cookies pass through, ours is removed
            web.cookies.set("app", "1", domain=f"8000-{cap.capsule_id}.localhost")
            again = echo(await web.get(cap.get_url(8000) + "/again"))
            assert again["path"] == "/again"
            assert again["headers"].get("cookie") == "app=1"
        # a token is good for one trade only: a second browser gets nothing from it
        async with browser() as other:
            replay = await other.get(url)
            assert replay.status_code == 401
            assert "expired or was used" in replay.text


async def test_links_and_cookies_open_only_their_own_capsule_and_port() -> None:
    async with local_http(options=ServerOptions(**{**_fast(), "browser_link_seconds": 3})) as (
        server,
        http,
    ):
        a, b = await new_capsule(http), await new_capsule(http)
        for cid in (a, b):
            await start_service(http, cid, ECHO_HTTP, "8000", cid)
            await start_service(http, cid, ECHO_HTTP, "8001", cid)

        def at(port: int, cid: str, query: str = "") -> str:
            return f"http://{port}-{cid}.localhost:{server.port}/{query}"

        async def refused(url: str, cookie: str | None = None) -> None:
            async with browser() as web:
                headers = {"Cookie": cookie} if cookie else {}
                resp = await web.get(url, headers=headers)
                assert resp.status_code == 401, (url, resp.status_code, resp.text)

        token_a = (await link(http, a, 8000)).rpartition("=")[2]
        # a token for port 8000 of A opens neither port 8001 of A nor port 8000 of B
        await refused(at(8001, a, f"?wrenn_token={token_a}"))
        await refused(at(8000, b, f"?wrenn_token={token_a}"))
        # tampered: another expiry with the same MAC, a MAC changed by one digit
        expires, _, mac = token_a.partition(".")
        await refused(at(8000, a, f"?wrenn_token={int(expires) + 3600}.{mac}"))
        flipped = mac[:-1] + ("0" if mac[-1] != "0" else "1")
        await refused(at(8000, a, f"?wrenn_token={expires}.{flipped}"))
        await refused(at(8000, a, "?wrenn_token=garbage"))
        # no token, no cookie, no key
        await refused(at(8000, a))

        # the valid token works, and its cookie opens nothing but port 8000 of A
        async with browser() as web:
            assert echo(await web.get(at(8000, a, f"?wrenn_token={token_a}")))["name"] == a
            (jar_cookie,) = [c for c in web.cookies.jar if c.name == "wrenn_port"]
            value = f"wrenn_port={jar_cookie.value}"
        await refused(at(8001, a), value)
        await refused(at(8000, b), value)
        async with browser() as web:
            assert echo(await web.get(at(8000, a), headers={"Cookie": value}))["name"] == a

        # another team cannot get a link to A, nor use one of its own on A
        account = {"email": "other@x.io", "password": "long enough", "name": "O"}
        assert (await http.post("/v1/auth/signup", json=account)).status_code == 201
        jwt = (await http.post("/v1/auth/login", json=account)).json()["token"]
        other = {"Authorization": f"Bearer {jwt}"}
        http.headers.pop("X-API-Key")
        foreign = await http.post(f"/v1/capsules/{a}/ports/8000/browser-token", headers=other)
        assert foreign.status_code == 404
        theirs = await http.post("/v1/capsules", json={}, headers=other)
        assert theirs.status_code == 202
        c = theirs.json()["id"]
        mine = await http.post(f"/v1/capsules/{c}/ports/8000/browser-token", headers=other)
        await refused(at(8000, a, "?wrenn_token=" + mine.json()["token"]))
        http.headers["X-API-Key"] = server.api_key

        # an expired token is refused (this server's links live 3 seconds)
        stale = (await link(http, a, 8000)).rpartition("=")[2]
        await anyio.sleep(3.5)
        await refused(at(8000, a, f"?wrenn_token={stale}"))


def _fast() -> dict[str, Any]:
    return {
        "min_timeout_sec": FAST.min_timeout_sec,
        "reaper_interval": FAST.reaper_interval,
        "sample_interval": FAST.sample_interval,
        "allow_signup": True,
    }


async def test_browser_url_without_the_extension_is_the_plain_url(fake_api: FakeAPI) -> None:
    """Against a server without browser links, ``browser_url`` is ``get_url`` plus the
    path. A fake peer stands in for the cloud (a real local server has the route): it
    answers an unknown path with Go's plain ``404 page not found``, or with 405."""
    cid = "cl-" + "0" * 24 + "1"
    fake_api.answer("GET", f"/v1/capsules/{cid}", 200, {"id": cid, "status": "running"})
    async with AsyncWrennClient(api_key="wrn_" + "0" * 32, base_url=fake_api.base_url) as client:
        cap = await client.connect(cid)
        assert await cap.browser_url(8000, "/x") == cap.get_url(8000) + "/x"
        path = f"/v1/capsules/{cid}/ports/8000/browser-token"
        fake_api.answer("POST", path, 405)
        assert await cap.browser_url(8000) == cap.get_url(8000) + "/"
        # a JSON "not found" from a server that has the route stays an error
        fake_api.answer("POST", path, 404, {"error": {"code": "not_found", "message": "gone"}})
        with pytest.raises(WrennNotFoundError):
            await cap.browser_url(8000)


async def test_the_cookie_opens_the_ports_websockets_too() -> None:
    """A page opened through a link keeps working when it opens a WebSocket (Jupyter
    does): the browser sends the cookie with the upgrade, and no key."""
    async with local_http() as (server, http):
        cid = await new_capsule(http)
        await start_service(http, cid, ECHO_WS, "8765")
        async with browser() as web:
            # the trade alone: this service answers only WebSockets
            traded = await web.get(await link(http, cid, 8765), follow_redirects=False)
            assert traded.status_code == 303
            (cookie,) = [c for c in web.cookies.jar if c.name == "wrenn_port"]
        url = server.base_url.replace("http://", "ws://") + "/chat"
        name = f"8765-{cid}.localhost:{server.port}"
        headers = {"Host": name, "Cookie": f"wrenn_port={cookie.value}"}
        async with connect_websocket(url, headers=headers) as ws:
            await ws.send_text("shout")
            with anyio.fail_after(10):
                assert await ws.receive() == "SHOUT"
        for refused in (
            {"Host": name},  # no cookie, no key
            {**headers, "Host": f"8766-{cid}.localhost:{server.port}"},  # another port
        ):
            with pytest.raises(WrennAuthenticationError) as caught:
                async with connect_websocket(url, headers=refused):
                    pass
            assert caught.value.status_code == 401
