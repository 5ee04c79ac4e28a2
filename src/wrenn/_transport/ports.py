"""Reaching a port inside a capsule through the port proxy (PROTOCOL §13).

The proxy routes by host name: ``{port}-{capsule_id}.{proxy domain}``. When the proxy
domain is an IP address or ``localhost`` (a local server) there is no DNS for such names,
so the connection goes to the domain itself with that name in the ``Host`` header.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from .._config import ClientConfig

__all__ = ["port_endpoint"]


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
        return f"{scheme}://{config.proxy_domain}{path}", headers
    return f"{scheme}://{virtual_host}{path}", headers


def _needs_host_header(domain: str) -> bool:
    host = urlsplit(f"//{domain}").hostname or ""
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
