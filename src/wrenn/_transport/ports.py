"""Reaching a port inside a capsule through the port proxy (PROTOCOL §13).

The proxy routes by host name: ``{port}-{capsule_id}.{proxy domain}``. When the proxy
domain is an IP address or ``localhost`` (a local server) there is no DNS for such names,
so the connection goes to the domain itself with that name in the ``Host`` header.
"""

from __future__ import annotations

import ipaddress
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, final
from urllib.parse import urlsplit

from .._config import ClientConfig
from .http import HTTPTransport, httpx

# wsproto is loaded with the first WebSocket, not with the SDK.
if TYPE_CHECKING:
    from .websocket import WebSocket

__all__ = ["CapsulePort", "port_endpoint"]


@final
class CapsulePort:
    """One port of one capsule, reached through the port proxy with the client's
    credentials and TLS context: plain HTTP requests and WebSockets."""

    def __init__(self, http: HTTPTransport, capsule_id: str, port: int) -> None:
        self._http = http
        self.capsule_id = capsule_id
        self.port = port

    def __repr__(self) -> str:
        return f"<CapsulePort {self.port} of {self.capsule_id}>"

    def describe(self, method: str, path: str) -> str:
        """``METHOD path on port N of ID``, for error messages."""
        return f"{method} {path} on port {self.port} of {self.capsule_id}"

    async def request(
        self, method: str, path: str, *, json_body: Any = None, timeout: float
    ) -> httpx.Response:
        """One attempt; error statuses are returned, transport failures raised mapped."""
        url, headers = port_endpoint(self._http.config, self.capsule_id, self.port, path)
        return await self._http.send(
            method, url, headers=headers, json_body=json_body, timeout=timeout
        )

    def websocket(
        self, path: str, *, open_timeout: float
    ) -> AbstractAsyncContextManager[WebSocket]:
        """A WebSocket to ``path`` on the port, for the duration of a block."""
        url, headers = port_endpoint(
            self._http.config, self.capsule_id, self.port, path, websocket=True
        )
        return self._http.websocket(url, headers=headers, open_timeout=open_timeout)


def port_endpoint(
    config: ClientConfig, capsule_id: str, port: int, path: str, *, websocket: bool = False
) -> tuple[str, dict[str, str]]:
    """``(url, headers)`` for ``path`` on ``port`` of a capsule, credentials included."""
    secure = config.base_url.startswith("https://")
    scheme = ("wss" if secure else "ws") if websocket else ("https" if secure else "http")
    virtual_host = f"{port}-{capsule_id}.{config.proxy_domain}"
    headers = config.auth_headers()
    if _needs_host_header(config.proxy_domain):
        headers["Host"] = virtual_host
        return f"{scheme}://{_loopback(config.proxy_domain)}{path}", headers
    return f"{scheme}://{virtual_host}{path}", headers


def _loopback(domain: str) -> str:
    """``localhost[:port]`` as ``127.0.0.1[:port]``: resolved here, not by the system
    (whose ``localhost`` may be IPv6 first while a local server listens on IPv4)."""
    parts = urlsplit(f"//{domain}")
    if parts.hostname != "localhost":
        return domain
    return f"127.0.0.1:{parts.port}" if parts.port else "127.0.0.1"


def _needs_host_header(domain: str) -> bool:
    host = urlsplit(f"//{domain}").hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
