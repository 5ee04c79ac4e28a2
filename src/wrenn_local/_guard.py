"""Host and Origin checks in front of everything (DNS rebinding, cross-site requests).

A web page can make a browser send requests to ``127.0.0.1:8080`` under a DNS name the
attacker controls (*DNS rebinding*): the browser then treats the local server as the
attacker's own origin. Such a request carries the attacker's name in ``Host``. Cross-site
requests carry the page's ``Origin``. So every HTTP request and WebSocket is refused
(403) unless its ``Host`` — and its ``Origin``, when there is one — names:

* an IP address literal (a rebinding needs a DNS name, so an address cannot be one);
* ``localhost`` or any name under ``.localhost`` (the capsule port proxy's domain, which
  resolvers keep on loopback, RFC 6761);
* a name given in ``allowed_hosts`` (``--allowed-host``), or any name under it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

__all__ = ["HostGuard", "host_allowed"]

ASGIApp = Any


def _strip_port(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        return host[1:end] if end > 0 else host
    if host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    return host.rstrip(".")


def host_allowed(host: str, names: Iterable[str]) -> bool:
    """Whether a Host header's name (port removed) is one this server answers to."""
    name = _strip_port(host)
    if not name:
        return False
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    for allowed in ("localhost", *names):
        allowed = allowed.lower().rstrip(".")
        if allowed and (name == allowed or name.endswith("." + allowed)):
            return True
    return False


class HostGuard:
    """Refuses requests whose Host or Origin is not this server's (see the module doc)."""

    def __init__(self, app: ASGIApp, *, allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.names = tuple(allowed_hosts)

    def _refusal(self, scope: dict[str, Any]) -> str | None:
        host = origin = None
        for name, value in scope.get("headers", []):
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"origin":
                origin = value.decode("latin-1")
        if host is None or not host_allowed(host, self.names):
            return "Host is not this server"
        if origin is not None:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https", "ws", "wss") or not host_allowed(
                parts.netloc, self.names
            ):
                return "Origin is not this server"
        return None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        refusal = self._refusal(scope) if scope["type"] in ("http", "websocket") else None
        if refusal is None:
            await self.app(scope, receive, send)
            return
        body = b'{"error":{"code":"forbidden","message":"' + refusal.encode() + b'"}}'
        if scope["type"] == "websocket":
            # refused before the upgrade: the client gets a plain HTTP 403
            await send({"type": "websocket.close", "code": 1008})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
