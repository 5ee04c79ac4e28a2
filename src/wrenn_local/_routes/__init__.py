"""The HTTP and WebSocket routes, one module per section of PROTOCOL.md.

=================  ==========================================================
``capsules``       lifecycle, ping, metrics, stats, usage (§5)
``processes``      exec, exec stream, process list, kill, attach (§6–§8)
``pty``            the PTY WebSocket (§9)
``files``          upload, download, list, mkdir, remove (§10)
``snapshots``      snapshots and templates (§11)
``events``         the server-sent event stream (§12)
``accounts``       sign-up, log-in, API keys (§15.1, §15.2)
``hosts``          hosts, tokens, tags (§15.3)
``health``         ``/health`` (outside ``/v1``)
=================  ==========================================================

``_http`` (authentication, bodies, error envelopes) and ``_ws`` (WebSocket
authentication and closing) are the plumbing they share.
"""

from __future__ import annotations

from starlette.routing import Route, WebSocketRoute

from . import accounts, capsules, events, files, health, hosts, processes, pty, snapshots

__all__ = ["http_routes", "utility_routes", "websocket_routes"]


def http_routes() -> list[Route]:
    """Every HTTP route under ``/v1`` (served under ``/api`` as well)."""
    return [
        *capsules.routes(),
        *processes.routes(),
        *files.routes(),
        *snapshots.routes(),
        *accounts.routes(),
        *hosts.routes(),
        *events.routes(),
    ]


def websocket_routes() -> list[WebSocketRoute]:
    """Every WebSocket route under ``/v1`` (served under ``/api`` as well)."""
    return [*processes.websocket_routes(), *pty.websocket_routes()]


def utility_routes() -> list[Route]:
    """Routes outside ``/v1`` and ``/api``."""
    return health.routes()
