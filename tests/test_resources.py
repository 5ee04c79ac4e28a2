"""Every REST resource method: what goes on the wire and what comes back.

The peer is the scriptable FakeAPI on a real socket; the real protocol end to end is
exercised against wrenn_local in its own tests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.fakeapi import FakeAPI
from wrenn import (
    AsyncWrennClient,
    WrennConfigurationError,
    WrennHostHasCapsulesError,
    WrennValidationError,
    models,
)

KEY = "wrn_0123456789abcdef0123456789abcdef"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c3ItMSJ9.c2ln"
CID = "cl-8nxizn9ygtczplsnn9jve38be"
CAPSULE = {
    "id": CID,
    "status": "running",
    "template": "minimal-ubuntu",
    "vcpus": 1,
    "memory_mb": 512,
    "timeout_sec": 0,
    "created_at": "2026-05-20T10:00:00Z",
}
TEMPLATE = {
    "name": "snap-1",
    "type": "snapshot",
    "size_bytes": 10,
    "created_at": "2026-05-20T10:00:00Z",
    "platform": False,
}
HOST = {"id": "host-1", "type": "byoc", "status": "online", "created_at": "2026-05-20T10:00:00Z"}

Call = Callable[[AsyncWrennClient], Awaitable[Any]]

CASES: list[
    tuple[str, Call, str, str, dict[str, str] | None, Any, int, Any, str, Callable[[Any], bool]]
] = [
    # id, call, method, path, query, sent-json, status, answer, auth, check
    (
        "create-empty",
        lambda c: c.capsules.create(),
        "POST",
        "/v1/capsules",
        None,
        {},
        202,
        {**CAPSULE, "status": "starting"},
        "key",
        lambda r: r.status == "starting",
    ),
    (
        "create-full",
        lambda c: c.capsules.create(
            template="minimal", vcpus=2, memory_mb=1024, timeout_sec=120, metadata={"job": "a"}
        ),
        "POST",
        "/v1/capsules",
        None,
        {
            "template": "minimal",
            "vcpus": 2,
            "memory_mb": 1024,
            "timeout_sec": 120,
            "metadata": {"job": "a"},
        },
        202,
        CAPSULE,
        "key",
        lambda r: r.id == CID,
    ),
    (
        "list",
        lambda c: c.capsules.list(),
        "GET",
        "/v1/capsules",
        None,
        None,
        200,
        [CAPSULE],
        "key",
        lambda r: [x.id for x in r] == [CID],
    ),
    (
        "get",
        lambda c: c.capsules.get(CID),
        "GET",
        f"/v1/capsules/{CID}",
        None,
        None,
        200,
        {**CAPSULE, "disk_used_mb": 312},
        "key",
        lambda r: r.disk_used_mb == 312,
    ),
    (
        "destroy-202",
        lambda c: c.capsules.destroy(CID),
        "DELETE",
        f"/v1/capsules/{CID}",
        None,
        None,
        202,
        {**CAPSULE, "status": "stopping"},
        "key",
        lambda r: r is not None and r.status == "stopping",
    ),
    (
        "destroy-204",
        lambda c: c.capsules.destroy(CID),
        "DELETE",
        f"/v1/capsules/{CID}",
        None,
        None,
        204,
        None,
        "key",
        lambda r: r is None,
    ),
    (
        "pause",
        lambda c: c.capsules.pause(CID),
        "POST",
        f"/v1/capsules/{CID}/pause",
        None,
        {},
        202,
        {**CAPSULE, "status": "pausing"},
        "key",
        lambda r: r.status == "pausing",
    ),
    (
        "resume",
        lambda c: c.capsules.resume(CID),
        "POST",
        f"/v1/capsules/{CID}/resume",
        None,
        {},
        202,
        {**CAPSULE, "status": "resuming"},
        "key",
        lambda r: r.status == "resuming",
    ),
    (
        "ping",
        lambda c: c.capsules.ping(CID),
        "POST",
        f"/v1/capsules/{CID}/ping",
        None,
        {},
        204,
        None,
        "key",
        lambda r: r is None,
    ),
    (
        "metrics",
        lambda c: c.capsules.metrics(CID, range="1h"),
        "GET",
        f"/v1/capsules/{CID}/metrics",
        {"range": "1h"},
        None,
        200,
        {
            "sandbox_id": CID,
            "range": "1h",
            "points": [{"timestamp_unix": 1, "cpu_pct": 2.5, "mem_bytes": 3, "disk_bytes": 4}],
        },
        "key",
        lambda r: r.capsule_id == CID and r.points[0].cpu_pct == 2.5,
    ),
    (
        "stats",
        lambda c: c.capsules.stats(range="24h"),
        "GET",
        "/v1/capsules/stats",
        {"range": "24h"},
        None,
        200,
        {
            "range": "24h",
            "current": {"running_count": 2, "vcpus_reserved": 2, "memory_mb_reserved": 1024},
            "peaks": {"running_count": 3, "vcpus": 3, "memory_mb": 2048},
            "series": {
                "labels": ["2026-05-20T10:00:00Z"],
                "running": [2],
                "vcpus": [2],
                "memory_mb": [1024],
            },
        },
        "key",
        lambda r: r.current.running_count == 2 and r.series.labels[0].year == 2026,
    ),
    (
        "usage",
        lambda c: c.capsules.usage(from_=dt.date(2026, 5, 1), to="2026-05-20"),
        "GET",
        "/v1/capsules/usage",
        {"from": "2026-05-01", "to": "2026-05-20"},
        None,
        200,
        {
            "from": "2026-05-01",
            "to": "2026-05-20",
            "points": [{"date": "2026-05-01", "cpu_minutes": 1.5, "ram_mb_minutes": 768}],
        },
        "key",
        lambda r: r.points[0].cpu_minutes == 1.5,
    ),
    (
        "snapshot-create",
        lambda c: c.snapshots.create(CID, name="snap-1"),
        "POST",
        "/v1/snapshots",
        None,
        {"sandbox_id": CID, "name": "snap-1"},
        202,
        {**CAPSULE, "status": "snapshotting"},
        "key",
        lambda r: r.name == "snap-1" and r.capsule.status == "snapshotting",
    ),
    (
        "snapshot-create-old-server",
        lambda c: c.snapshots.create(CID, name="snap-1"),
        "POST",
        "/v1/snapshots",
        None,
        {"sandbox_id": CID, "name": "snap-1"},
        201,
        TEMPLATE,
        "key",
        lambda r: r.template is not None and r.template.type == "snapshot",
    ),
    (
        "snapshot-list",
        lambda c: c.snapshots.list(type="snapshot"),
        "GET",
        "/v1/snapshots",
        {"type": "snapshot"},
        None,
        200,
        [TEMPLATE],
        "key",
        lambda r: r[0].name == "snap-1",
    ),
    (
        "snapshot-delete",
        lambda c: c.snapshots.delete("snap-1"),
        "DELETE",
        "/v1/snapshots/snap-1",
        None,
        None,
        204,
        None,
        "key",
        lambda r: r is None,
    ),
    (
        "signup",
        lambda c: c.auth.signup("a@b.c", "password1", "Ann"),
        "POST",
        "/v1/auth/signup",
        None,
        {"email": "a@b.c", "password": "password1", "name": "Ann"},
        201,
        {"message": "Account created"},
        "none",
        lambda r: r.message == "Account created",
    ),
    (
        "login",
        lambda c: c.auth.login("a@b.c", "password1"),
        "POST",
        "/v1/auth/login",
        None,
        {"email": "a@b.c", "password": "password1"},
        200,
        {"token": JWT, "user_id": "usr-1", "team_id": "team-1", "email": "a@b.c", "name": "Ann"},
        "none",
        lambda r: r.token == JWT and r.user_id == "usr-1",
    ),
    (
        "api-key-create",
        lambda c: c.api_keys.create("ci"),
        "POST",
        "/v1/api-keys",
        None,
        {"name": "ci"},
        201,
        {
            "id": "key-1",
            "name": "ci",
            "key_prefix": "wrn_ab12cd",
            "key": "wrn_" + "a" * 32,
            "created_at": "2026-05-20T10:00:00Z",
        },
        "bearer",
        lambda r: r.key == "wrn_" + "a" * 32,
    ),
    (
        "api-key-list",
        lambda c: c.api_keys.list(),
        "GET",
        "/v1/api-keys",
        None,
        None,
        200,
        [{"id": "key-1", "name": "ci", "last_used": None}],
        "bearer",
        lambda r: r[0].key is None,
    ),
    (
        "api-key-delete",
        lambda c: c.api_keys.delete("key-1"),
        "DELETE",
        "/v1/api-keys/key-1",
        None,
        None,
        204,
        None,
        "bearer",
        lambda r: r is None,
    ),
    (
        "host-create",
        lambda c: c.hosts.create("byoc", provider="aws"),
        "POST",
        "/v1/hosts",
        None,
        {"type": "byoc", "provider": "aws"},
        201,
        {"host": HOST, "registration_token": "f" * 64},
        "bearer",
        lambda r: r.host.id == "host-1" and r.registration_token == "f" * 64,
    ),
    (
        "host-list",
        lambda c: c.hosts.list(),
        "GET",
        "/v1/hosts",
        None,
        None,
        200,
        [HOST],
        "bearer",
        lambda r: r[0].status == "online",
    ),
    (
        "host-get",
        lambda c: c.hosts.get("host-1"),
        "GET",
        "/v1/hosts/host-1",
        None,
        None,
        200,
        HOST,
        "bearer",
        lambda r: r.type == "byoc",
    ),
    (
        "host-delete-force",
        lambda c: c.hosts.delete("host-1", force=True),
        "DELETE",
        "/v1/hosts/host-1",
        {"force": "true"},
        None,
        204,
        None,
        "bearer",
        lambda r: r is None,
    ),
    (
        "host-preview",
        lambda c: c.hosts.delete_preview("host-1"),
        "GET",
        "/v1/hosts/host-1/delete-preview",
        None,
        None,
        200,
        {"host": HOST, "sandbox_ids": [CID]},
        "bearer",
        lambda r: r.capsule_ids == [CID],
    ),
    (
        "host-token",
        lambda c: c.hosts.regenerate_token("host-1"),
        "POST",
        "/v1/hosts/host-1/token",
        None,
        {},
        201,
        {"host": HOST, "registration_token": "e" * 64},
        "bearer",
        lambda r: r.registration_token == "e" * 64,
    ),
    (
        "host-tags",
        lambda c: c.hosts.tags("host-1"),
        "GET",
        "/v1/hosts/host-1/tags",
        None,
        None,
        200,
        ["gpu", "eu"],
        "bearer",
        lambda r: r == ["gpu", "eu"],
    ),
    (
        "host-tag-add",
        lambda c: c.hosts.add_tag("host-1", "gpu"),
        "POST",
        "/v1/hosts/host-1/tags",
        None,
        {"tag": "gpu"},
        204,
        None,
        "bearer",
        lambda r: r is None,
    ),
    (
        "host-tag-remove",
        lambda c: c.hosts.remove_tag("host-1", "gpu"),
        "DELETE",
        "/v1/hosts/host-1/tags/gpu",
        None,
        None,
        204,
        None,
        "bearer",
        lambda r: r is None,
    ),
]


@pytest.mark.parametrize(
    ("call", "method", "path", "query", "sent", "status", "answer", "auth", "check"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
async def test_resource_call(
    fake_api: FakeAPI,
    call: Call,
    method: str,
    path: str,
    query: dict[str, str] | None,
    sent: Any,
    status: int,
    answer: Any,
    auth: str,
    check: Callable[[Any], bool],
) -> None:
    fake_api.answer(method, path, status, answer)
    async with AsyncWrennClient(api_key=KEY, token=JWT, base_url=fake_api.base_url) as c:
        result = await call(c)
    assert check(result), result
    (seen,) = fake_api.seen
    assert (seen.method, seen.path) == (method, path)
    assert seen.query == (query or {})
    if sent is not None:
        assert seen.json() == sent
    headers = seen.headers
    if auth == "key":
        assert headers["x-api-key"] == KEY
        assert "authorization" not in headers
    elif auth == "bearer":
        assert headers["authorization"] == f"Bearer {JWT}"
        assert "x-api-key" not in headers
    else:
        assert "x-api-key" not in headers
        assert "authorization" not in headers
    assert headers["user-agent"].startswith("wrenn-python/")


async def test_base_url_with_api_prefix(fake_api: FakeAPI) -> None:
    fake_api.answer("GET", "/api/v1/capsules", 200, [])
    async with AsyncWrennClient(api_key=KEY, base_url=fake_api.base_url + "/api/") as c:
        assert await c.capsules.list() == []


async def test_snapshot_without_name_gets_a_known_name(fake_api: FakeAPI) -> None:
    fake_api.answer("POST", "/v1/snapshots", 202, {**CAPSULE, "status": "snapshotting"})
    async with AsyncWrennClient(api_key=KEY, base_url=fake_api.base_url) as c:
        pending = await c.snapshots.create(CID)
    assert pending.name.startswith("template-")
    assert fake_api.seen[0].json()["name"] == pending.name


async def test_snapshot_wait_polls_until_the_template_appears(fake_api: FakeAPI) -> None:
    fake_api.sequence("GET", "/v1/snapshots", (200, [], {}), (200, [], {}), (200, [TEMPLATE], {}))
    async with AsyncWrennClient(api_key=KEY, base_url=fake_api.base_url) as c:
        template = await c.snapshots.wait("snap-1", poll_interval=0.01)
    assert template.name == "snap-1"
    assert fake_api.count("GET", "/v1/snapshots") == 3


async def test_host_delete_with_capsules(fake_api: FakeAPI) -> None:
    fake_api.answer(
        "DELETE",
        "/v1/hosts/host-1",
        409,
        {"error": {"code": "has_active_sandboxes", "message": "busy", "sandbox_ids": [CID]}},
    )
    async with AsyncWrennClient(token=JWT, base_url=fake_api.base_url) as c:
        with pytest.raises(WrennHostHasCapsulesError) as info:
            await c.hosts.delete("host-1")
    assert info.value.capsule_ids == [CID]


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.capsules.create(template="bad name"),
        lambda c: c.capsules.create(vcpus=0),
        lambda c: c.capsules.create(memory_mb=True),
        lambda c: c.capsules.create(metadata={"bad key": "x"}),
        lambda c: c.capsules.create(metadata={"k": "v" * 65}),
        lambda c: c.capsules.metrics(CID, range="3m"),
        lambda c: c.capsules.stats(range="7d"),
        lambda c: c.capsules.usage(from_="2026-02-30"),
        lambda c: c.capsules.usage(from_="2026-05-02", to="2026-05-01"),
        lambda c: c.snapshots.create(CID, name="-bad"),
        lambda c: c.snapshots.list(type="custom"),
        lambda c: c.auth.signup("nope", "password1", "Ann"),
        lambda c: c.auth.signup("a@b.c", "short", "Ann"),
        lambda c: c.hosts.create("cloud"),
    ],
)
async def test_bad_input_is_refused_before_any_io(fake_api: FakeAPI, call: Call) -> None:
    async with AsyncWrennClient(api_key=KEY, token=JWT, base_url=fake_api.base_url) as c:
        with pytest.raises(WrennValidationError):
            await call(c)
    assert fake_api.seen == []


async def test_bearer_routes_name_the_token_variable(
    fake_api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WRENN_TOKEN", raising=False)
    async with AsyncWrennClient(api_key=KEY, base_url=fake_api.base_url) as c:
        with pytest.raises(WrennConfigurationError, match="WRENN_TOKEN"):
            await c.hosts.list()
    assert fake_api.seen == []


def test_unknown_host_status_is_kept() -> None:
    from wrenn._resources.converter import structure

    host = structure({**HOST, "status": "quarantined"}, models.Host)
    assert host.status == "quarantined"
