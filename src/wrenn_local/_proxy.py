"""The capsule port proxy (PROTOCOL §13): ``{port}-{capsule_id}.{domain}`` → that port.

An ASGI wrapper in front of the API: a request whose Host header (port removed) matches
``^(\\d+)-(cl-[0-9a-z]+)\\.`` never reaches the API router. It is forwarded through the
capsule agent's TCP relay to ``127.0.0.1:{port}`` inside the capsule's own network
namespace, so two capsules serving the same port are each reached.

* HTTP: the request is re-sent as HTTP/1.1 (``Connection: close``), the answer is parsed
  with h11 and streamed back; bodies stream both ways in constant memory.
* WebSocket: a wsproto client handshake upstream first (so failures answer as HTTP), then
  the client is accepted and messages are relayed both ways until either side closes. A
  message from the capsule is joined before it is sent on (ASGI sends whole messages):
  one larger than :data:`WS_MESSAGE_MAX` closes the connection with 1009 instead of
  piling up in the server.
* Auth: an ``X-API-Key`` of the capsule's team is required unless the server was started
  with ``proxy_auth=False`` (the v0.1.5 behaviour). The key and any ``Authorization``
  and ``Proxy-Authorization`` header are removed before the request enters the capsule:
  code in the VM never sees the team's credential.
* Browser links (``_port_links.py``): a ``?wrenn_token=`` issued by the API is accepted
  once and traded for a cookie bound to that capsule and port, with a redirect to the
  same URL without the token; the cookie then stands for the key. Neither ever reaches
  the capsule.
* Errors are ``text/plain`` as in the protocol: 400 invalid port / capsule ID, 401, 404
  capsule not found, 409 not running, 502 proxy error.
"""

from __future__ import annotations

import re
from typing import Any, Final

import anyio
import h11
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from ._accounts import Accounts
from ._agent_client import AgentFailure, TcpRelay
from ._capsules import CapsuleManager
from ._ids import is_valid
from ._port_links import PortLinks, split_query, without_cookie

__all__ = ["PortProxy"]

HOST_RE: Final = re.compile(r"^(\d+)-(cl-[0-9a-z]+)\.")
HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"te",
        b"trailer",
        b"x-api-key",
        b"authorization",
        b"proxy-authorization",
        b"content-length",
    }
)

ASGIApp = Any

# The largest WebSocket message relayed from a capsule to a client: what hypercorn takes
# from a client by default (``websocket_max_message_size``). A capsule's service could
# otherwise send one message that never ends, joined in the server's memory.
WS_MESSAGE_MAX: Final = 16 * 1024 * 1024


class ProxyError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class PortProxy:
    def __init__(
        self,
        app: ASGIApp,
        *,
        capsules: CapsuleManager,
        accounts: Accounts,
        require_key: bool,
        links: PortLinks | None = None,
    ) -> None:
        self.app = app
        self.capsules = capsules
        self.accounts = accounts
        self.require_key = require_key
        self.links = links or PortLinks()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            target = self._target(scope)
            if target is not None:
                if scope["type"] == "http":
                    await self._http(scope, receive, send, target)
                else:
                    await self._websocket(scope, receive, send, target)
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _target(scope: dict[str, Any]) -> tuple[str, str] | None:
        host = ""
        for name, value in scope.get("headers", []):
            if name == b"host":
                host = value.decode("latin-1")
                break
        host = host.rsplit(":", 1)[0] if not host.startswith("[") else host
        match = HOST_RE.match(host)
        return (match.group(1), match.group(2)) if match else None

    def _resolve(self, scope: dict[str, Any], port_text: str, capsule_id: str) -> tuple[int, Any]:
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ProxyError(400, "invalid port")
        if not is_valid("cl", capsule_id):
            raise ProxyError(400, "invalid capsule ID")
        record = self.capsules.capsules.get(capsule_id)
        if self.require_key:
            key = dict(scope.get("headers", [])).get(b"x-api-key")
            found = self.accounts.check_key(key.decode("latin-1")) if key else None
            cookies = [v for k, v in scope.get("headers", []) if k == b"cookie"]
            if found is None and not self.links.cookie_opens(cookies, capsule_id, port):
                raise ProxyError(401, "X-API-Key or a browser link (wrenn url ID PORT) required")
            if found is not None and record is not None and record.team_id != found.team_id:
                record = None
        if record is None or record.status in ("stopped", "error"):
            raise ProxyError(404, "capsule not found")
        if record.status != "running" or record.sandbox is None:
            raise ProxyError(409, f"capsule is not running (status: {record.status})")
        return port, record

    async def _trade(
        self, scope: dict[str, Any], send: Any, target: tuple[str, str], query: bytes, token: str
    ) -> None:
        """A browser link: a valid token (once) becomes a cookie for this capsule and port,
        and the browser is sent to the same URL without the token."""
        port_text, capsule_id = target
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ProxyError(400, "invalid port")
        if not is_valid("cl", capsule_id):
            raise ProxyError(400, "invalid capsule ID")
        headers = [(b"cache-control", b"no-store"), (b"referrer-policy", b"no-referrer")]
        if self.require_key:
            cookies = [v for k, v in scope.get("headers", []) if k == b"cookie"]
            if self.links.redeem(token, capsule_id, port):
                secure = scope.get("scheme") in ("https", "wss")
                cookie = self.links.cookie(capsule_id, port, secure=secure)
                headers.append((b"set-cookie", cookie.encode()))
            elif not self.links.cookie_opens(cookies, capsule_id, port):
                raise ProxyError(
                    401, "this link has expired or was used already: ask for a new one"
                )
        path = scope.get("raw_path") or scope["path"].encode()
        location = path + (b"?" + query if query else b"")
        headers += [(b"location", location), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 303, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    # --- HTTP -----------------------------------------------------------------------

    async def _http(
        self, scope: dict[str, Any], receive: Any, send: Any, target: tuple[str, str]
    ) -> None:
        try:
            query, token = split_query(scope.get("query_string", b""))
            if token is not None:
                await self._trade(scope, send, target, query, token)
                return
            port, record = self._resolve(scope, *target)
            async with record.sandbox.agent.connect(port) as relay:
                added = record.sandbox.port_headers.get(port, [])
                await self._forward_http(_for_capsule(scope), receive, send, relay, added)
        except ProxyError as exc:
            await _plain(send, exc.status, exc.text)
        except AgentFailure as exc:
            await _plain(send, 502, f"proxy error: {exc.message}")

    async def _forward_http(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        relay: TcpRelay,
        added: list[tuple[bytes, bytes]],
    ) -> None:
        conn = h11.Connection(h11.CLIENT)
        path = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            path += b"?" + scope["query_string"]
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP]
        headers += added  # the server's own credential for this port (Jupyter's token)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:  # keep the client's framing when it gave one
            headers.append((b"content-length", length))
        elif scope["method"] not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            headers.append((b"transfer-encoding", b"chunked"))
        headers.append((b"connection", b"close"))
        await relay.send(
            conn.send(h11.Request(method=scope["method"], target=path, headers=headers))
        )

        async def upload() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body = message.get("body", b"")
                if body:
                    await relay.send(conn.send(h11.Data(data=body)))
                if not message.get("more_body"):
                    await relay.send(conn.send(h11.EndOfMessage()))
                    return

        started = False
        async with anyio.create_task_group() as tg:
            tg.start_soon(upload)
            while True:
                try:
                    event = conn.next_event()
                except h11.ProtocolError:
                    break  # not HTTP: a 502 if nothing was sent yet, else the body ends
                if event is h11.NEED_DATA:
                    data = await relay.receive()
                    conn.receive_data(b"" if data is None else data)
                    continue
                if isinstance(event, h11.Response):
                    started = True
                    out = [
                        (k, v)
                        for k, v in event.headers
                        if k.lower() not in HOP_BY_HOP or k.lower() == b"content-length"
                    ]
                    await send(
                        {"type": "http.response.start", "status": event.status_code, "headers": out}
                    )
                elif isinstance(event, h11.Data):
                    await send(
                        {"type": "http.response.body", "body": bytes(event.data), "more_body": True}
                    )
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
            tg.cancel_scope.cancel()
        if not started:
            await _plain(send, 502, "proxy error: no HTTP response from the service")
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    # --- WebSocket ----------------------------------------------------------------------

    async def _websocket(
        self, scope: dict[str, Any], receive: Any, send: Any, target: tuple[str, str]
    ) -> None:
        await receive()  # websocket.connect
        try:
            port, record = self._resolve(scope, *target)
            async with record.sandbox.agent.connect(port) as relay:
                added = record.sandbox.port_headers.get(port, [])
                await self._relay_ws(_for_capsule(scope), receive, send, relay, added)
        except ProxyError as exc:
            await _deny(send, exc.status, exc.text)
        except AgentFailure as exc:
            await _deny(send, 502, f"proxy error: {exc.message}")

    async def _relay_ws(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        relay: TcpRelay,
        added: list[tuple[bytes, bytes]],
    ) -> None:
        upstream = WSConnection(ConnectionType.CLIENT)
        path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            path += "?" + scope["query_string"].decode("latin-1")
        host = dict(scope["headers"]).get(b"host", b"localhost").decode("latin-1")
        skip = HOP_BY_HOP | {
            b"host",
            b"sec-websocket-key",
            b"sec-websocket-version",
            b"sec-websocket-extensions",
        }
        extra = [(k, v) for k, v in scope["headers"] if k.lower() not in skip] + added
        await relay.send(upstream.send(Request(host=host, target=path, extra_headers=extra)))
        pending = []
        while True:
            data = await relay.receive()
            if data is None:
                raise ProxyError(502, "proxy error: upstream closed during the handshake")
            upstream.receive_data(data)
            events = list(upstream.events())
            if any(isinstance(e, RejectConnection) for e in events):
                raise ProxyError(502, "proxy error: upstream refused the WebSocket")
            accepted = [i for i, e in enumerate(events) if isinstance(e, AcceptConnection)]
            if accepted:
                pending = events[accepted[0] + 1 :]
                break
        await send({"type": "websocket.accept"})

        # wsproto hands a message over in pieces as its bytes arrive; ASGI sends whole
        # messages, so the pieces are joined first, up to WS_MESSAGE_MAX.
        parts: list[Any] = []
        joined = 0

        async def to_client(events: list[Any]) -> bool:
            nonlocal joined
            for event in events:
                if isinstance(event, TextMessage | BytesMessage):
                    parts.append(event.data)
                    joined += len(event.data)
                    if joined > WS_MESSAGE_MAX:  # 1009: message too big
                        parts.clear()
                        await send({"type": "websocket.close", "code": 1009})
                        return False
                    if not event.message_finished:
                        continue
                    joined = 0
                    if isinstance(event, TextMessage):
                        message: dict[str, Any] = {"type": "websocket.send", "text": "".join(parts)}
                    else:
                        message = {"type": "websocket.send", "bytes": b"".join(parts)}
                    parts.clear()
                    await send(message)
                elif isinstance(event, Ping):
                    await relay.send(upstream.send(event.response()))
                elif isinstance(event, CloseConnection):
                    await send({"type": "websocket.close", "code": event.code})
                    return False
            return True

        async def downstream() -> None:
            if not await to_client(pending):
                return
            while True:
                data = await relay.receive()
                if data is None:
                    await send({"type": "websocket.close", "code": 1011})
                    return
                upstream.receive_data(data)
                if not await to_client(list(upstream.events())):
                    return

        async def upstream_pump() -> None:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    code = message.get("code", 1000)
                    await relay.send(upstream.send(CloseConnection(code=code)))
                    return
                if message.get("text") is not None:
                    data = upstream.send(TextMessage(data=message["text"]))
                else:
                    data = upstream.send(BytesMessage(data=message.get("bytes") or b""))
                await relay.send(data)

        async with anyio.create_task_group() as tg:

            async def run(part: Any) -> None:
                try:
                    await part()
                except Exception:
                    pass
                tg.cancel_scope.cancel()

            tg.start_soon(run, downstream)
            tg.start_soon(run, upstream_pump)


def _for_capsule(scope: dict[str, Any]) -> dict[str, Any]:
    """The request as the capsule sees it: no link token in the query, no link cookie."""
    headers = []
    for name, value in scope["headers"]:
        if name == b"cookie":
            value = without_cookie(value)
            if not value:
                continue
        headers.append((name, value))
    query, _ = split_query(scope.get("query_string", b""))
    return {**scope, "headers": headers, "query_string": query}


async def _plain(send: Any, status: int, text: str) -> None:
    body = (text + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _deny(send: Any, status: int, text: str) -> None:
    body = (text + "\n").encode()
    await send(
        {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body})
