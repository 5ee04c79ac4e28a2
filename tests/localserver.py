"""Helpers for tests that drive wrenn_local with plain httpx (never the SDK)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import httpx

import wrenn_local
from wrenn_local import ServerOptions

# Test servers opt in to sign-up (off by default: anyone reaching the port could sign up).
# One spare per boot key, as before spares grew with bursts: a test server booting dozens
# of spares in the background would load the suite. The pool's sizing (and the default
# of 64) is attacked in tests/test_local_spares.py. One ready network (default 2): every
# test server's second cold boot joins one, so the network tests see both kinds; ready
# networks themselves are attacked in tests/test_local_ready_networks.py.
FAST = ServerOptions(
    min_timeout_sec=1,
    reaper_interval=0.2,
    sample_interval=0.2,
    allow_signup=True,
    spares=1,
    ready_networks=1,
)


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


@contextmanager
def server_to_kill() -> Iterator[tuple[subprocess.Popen[str], httpx.Client, str]]:
    """A ``python -m wrenn_local serve`` process with a running capsule: the process, a
    client of it and the capsule's id. Leaving the block SIGKILLs the server, which
    then cleans nothing up itself."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "wrenn_local", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        env = dict(proc.stdout.readline().strip().split("=", 1) for _ in range(2))
        with httpx.Client(
            base_url=env["WRENN_BASE_URL"], headers={"X-API-Key": env["WRENN_API_KEY"]}, timeout=30
        ) as http:
            created = http.post("/v1/capsules", json={})
            assert created.status_code == 202, created.text
            cid = created.json()["id"]
            deadline = time.monotonic() + 30
            while http.get(f"/v1/capsules/{cid}").json()["status"] != "running":
                assert time.monotonic() < deadline, "the capsule did not start"
                time.sleep(0.05)
            yield proc, http, cid
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
