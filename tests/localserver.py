"""Helpers for tests that drive wrenn_local with plain httpx (never the SDK)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx

import wrenn_local
from wrenn_local import ServerOptions

# Test servers opt in to sign-up (off by default: anyone reaching the port could sign up).
FAST = ServerOptions(min_timeout_sec=1, reaper_interval=0.2, sample_interval=0.2, allow_signup=True)


@asynccontextmanager
async def local_http(**kw: Any) -> AsyncIterator[tuple[wrenn_local.LocalServer, httpx.AsyncClient]]:
    options = kw.pop("options", FAST)
    async with (
        wrenn_local.serve(options=options, **kw) as server,
        httpx.AsyncClient(
            base_url=server.base_url, headers={"X-API-Key": server.api_key}, timeout=30
        ) as http,
    ):
        yield server, http


async def wait_status(
    http: httpx.AsyncClient, capsule_id: str, status: str, timeout: float = 20
) -> dict[str, Any]:
    with anyio.fail_after(timeout):
        while True:
            resp = await http.get(f"/v1/capsules/{capsule_id}")
            body: dict[str, Any] = resp.json()
            if body.get("status") == status:
                return body
            await anyio.sleep(0.02)


async def new_capsule(http: httpx.AsyncClient, **body: Any) -> str:
    resp = await http.post("/v1/capsules", json=body)
    assert resp.status_code == 202, resp.text
    capsule_id: str = resp.json()["id"]
    await wait_status(http, capsule_id, "running")
    return capsule_id


async def sh(http: httpx.AsyncClient, capsule_id: str, script: str, **extra: Any) -> dict[str, Any]:
    resp = await http.post(
        f"/v1/capsules/{capsule_id}/exec", json={"cmd": "/bin/sh", "args": ["-c", script], **extra}
    )
    assert resp.status_code == (202 if extra.get("background") else 200), resp.text
    body: dict[str, Any] = resp.json()
    return body


server_process = wrenn_local.server_process  # the server in a process of its own
