"""Security of wrenn_local and of the SDK: credentials required everywhere, nothing secret
where it could leak, loopback by default."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

import wrenn_local
from tests.localserver import FAST, local_http, new_capsule
from wrenn import (
    AsyncWrennClient,
    WrennAuthenticationError,
    WrennError,
    WrennWebSocketClosedError,
)
from wrenn._transport.websocket import connect_websocket

SPEC = yaml.safe_load((Path(wrenn_local.__file__).parent / "openapi.yaml").read_text())
OPEN = {
    ("get", "/health"),
    ("get", "/openapi.yaml"),
    ("post", "/v1/auth/signup"),
    ("post", "/v1/auth/login"),
}


def documented() -> list[tuple[str, str]]:
    return [
        (method, path)
        for path, item in SPEC["paths"].items()
        for method in item
        if method in {"get", "post", "put", "delete", "patch"}
    ]


def fill(path: str, cid: str) -> str:
    values = {
        "id": cid,
        "selector": "1",
        "name": "x",
        "key_id": "key-" + "0" * 25,
        "host_id": "host-" + "0" * 25,
        "tag": "t",
        "port": "8000",
    }
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


async def test_every_route_requires_a_credential() -> None:
    async with local_http() as (_, http):
        cid = await new_capsule(http)
        checked = 0
        for method, path in documented():
            if (method, path) in OPEN:
                continue
            url = fill(path, cid)
            for prefix in ("", "/api"):
                for headers in ({"X-API-Key": ""}, {"X-API-Key": "wrn_" + "0" * 32}):
                    resp = await http.request(method.upper(), prefix + url, headers=headers)
                    assert resp.status_code == 401, (method, prefix + url, resp.status_code)
                    assert resp.json()["error"]["code"] == "unauthorized"
                    checked += 1
        assert checked > 100


@pytest.mark.parametrize("path", ["exec/stream", "processes/1/stream", "pty"])
async def test_every_websocket_requires_a_credential(path: str) -> None:
    """A WebSocket without a valid key gets the upgrade, then an in-band error and the
    close (PROTOCOL §2.2), before any byte of the capsule's."""
    async with local_http() as (server, http):
        cid = await new_capsule(http)
        url = server.base_url.replace("http://", "ws://") + f"/v1/capsules/{cid}/{path}"
        first = {"type": "start", "cmd": "/bin/sh", "args": ["-c", "echo LEAK"]}
        if path.startswith("processes"):
            first = {"type": "start"}
        for headers in ({}, {"X-API-Key": "wrn_" + "0" * 32}):
            async with connect_websocket(url, headers=headers) as ws:
                await ws.send_text(json.dumps(first))
                frames = []
                with anyio.fail_after(10):
                    try:
                        while True:
                            frames.append(json.loads(await ws.receive()))
                    except WrennWebSocketClosedError:
                        pass
            # the PTY endpoint also marks it fatal (as its other errors)
            assert [(f["type"], f["data"]) for f in frames] == [
                ("error", "authentication failed")
            ], frames


async def test_loopback_by_default_and_no_secret_in_health_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with wrenn_local.serve(options=FAST) as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        async with AsyncWrennClient(api_key=server.api_key, base_url=server.base_url) as client:
            health = (await client.http.get(server.base_url + "/health")).text
            assert server.api_key not in health
            async with client.capsule() as cap:
                await cap.commands.run("true")
            with pytest.raises(WrennError):
                await client.capsules.get("cl-" + "0" * 25)
        async with AsyncWrennClient(api_key="wrn_" + "f" * 32, base_url=server.base_url) as bad:
            with pytest.raises(WrennAuthenticationError) as info:
                await bad.capsules.list()
            assert "f" * 32 not in str(info.value)
            assert "f" * 32 not in repr(bad)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged, "the server and the SDK did log"
    for secret in (server.api_key, "f" * 32, server.api_key[4:]):
        assert secret not in logged


async def test_a_capsule_cannot_see_the_server_or_the_sdk_key() -> None:
    async with local_http() as (server, http):
        cid = await new_capsule(http)
        out = await http.post(
            f"/v1/capsules/{cid}/exec",
            json={
                "cmd": "/bin/sh",
                "args": ["-c", "env; cat /proc/1/environ 2>/dev/null; ps -eo args 2>/dev/null"],
            },
        )
        seen: dict[str, Any] = out.json()
        text = seen.get("stdout", "") + seen.get("stderr", "")
        assert server.api_key not in text
        assert server.api_key[4:] not in text


async def test_the_sdk_never_puts_a_credential_on_a_command_line() -> None:
    """Nothing the SDK runs in the capsule carries the key: it stays in headers."""
    async with (
        local_http() as (server, http),
        AsyncWrennClient(api_key=server.api_key, base_url=server.base_url) as client,
        client.capsule() as cap,
    ):
        sleeper = await cap.commands.run("sleep 30", background=True)
        processes = await cap.commands.list()
        assert all(server.api_key not in " ".join([p.cmd or "", *p.args]) for p in processes)
        await sleeper.kill()
        del http


async def test_near_misses_of_the_key_are_refused() -> None:
    """Keys are compared as SHA-256 digests in constant time (hmac.compare_digest); a test
    cannot measure timing reliably, so this checks that a key sharing all but its last
    character with the real one, or extending it, is refused like any other."""
    async with local_http() as (server, http):
        near = server.api_key[:-1] + ("0" if server.api_key[-1] != "0" else "1")
        for key in (near, "wrn_" + "0" * 32, server.api_key + "x"):
            resp = await http.get("/v1/capsules", headers={"X-API-Key": key})
            assert resp.status_code == 401
