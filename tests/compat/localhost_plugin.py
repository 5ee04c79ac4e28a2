"""A pytest plugin for the official suites run by ``nox -s official_suites``.

The official SDK (and ours) reach capsule ports as ``{port}-{id}.{proxy domain}``; against
wrenn_local that is ``*.localhost``, which is loopback (RFC 6761) but unknown to plain
glibc. This resolves such names the way wildcard DNS does for the cloud. It also declares
the suites' ``integration`` marker. Nothing else: the official test files run unchanged.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

_getaddrinfo = socket.getaddrinfo


def _resolve_localhost_names(host: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str) and name.endswith(".localhost"):
        host = "127.0.0.1"
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _resolve_localhost_names


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs a live server")
