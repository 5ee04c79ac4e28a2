from __future__ import annotations

import datetime as dt
import json
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wrenn import WrennProtocolError, models
from wrenn._models.enums import LenientStrEnum
from wrenn._resources.converter import structure, unstructure

MODELS = [getattr(models, name) for name in models.__all__ if attrs.has(getattr(models, name))]

aware = st.datetimes(
    min_value=dt.datetime(1971, 1, 1),
    max_value=dt.datetime(2200, 1, 1),
    timezones=st.builds(
        dt.timezone,
        st.timedeltas(min_value=dt.timedelta(hours=-12), max_value=dt.timedelta(hours=12)).map(
            lambda d: dt.timedelta(minutes=int(d.total_seconds() // 60))
        ),
    ),
)
st.register_type_strategy(dt.datetime, aware)
st.register_type_strategy(float, st.floats(allow_nan=False, allow_infinity=False))
for enum_cls in LenientStrEnum.__subclasses__():
    st.register_type_strategy(
        enum_cls,
        st.one_of(st.sampled_from(list(enum_cls)), st.text(min_size=1).map(enum_cls)),
    )


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_round_trip_through_json(cls: type[Any], data: st.DataObject) -> None:
    obj = data.draw(st.builds(cls))
    wire = json.loads(json.dumps(unstructure(obj)))
    assert structure(wire, cls) == obj


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        max_leaves=20,
    )
)
@settings(max_examples=200, deadline=None)
def test_random_json_never_raises_a_foreign_exception(value: object) -> None:
    for cls in MODELS:
        try:
            structure(value, cls)
        except WrennProtocolError:
            pass


def test_unknown_status_does_not_fail_the_response() -> None:
    capsule = structure(
        {"id": "cl-1", "status": "hibernating-v3", "brand_new_field": {}}, models.Capsule
    )
    assert capsule.status == "hibernating-v3"
    assert not capsule.status.is_known
    assert structure({"id": "cl-1", "status": "running"}, models.Capsule).status is (
        models.CapsuleStatus.RUNNING
    )


def test_wire_example_from_the_protocol() -> None:
    wire = {
        "id": "cl-0k3p",
        "status": "running",
        "template": "minimal-ubuntu",
        "vcpus": 1,
        "memory_mb": 512,
        "timeout_sec": 0,
        "created_at": "2026-05-20T10:00:00Z",
        "started_at": "2026-05-20T10:00:02+02:00",
        "last_active_at": None,
        "last_updated": "2026-05-20T10:00:02Z",
        "metadata": {"kernel_version": "6.1"},
        "disk_size_mb": 5120,
        "disk_used_mb": 312,
        "guest_ip": "10.0.0.2",
    }
    c = structure(wire, models.Capsule)
    assert c.created_at == dt.datetime(2026, 5, 20, 10, tzinfo=dt.UTC)
    assert c.started_at is not None
    assert c.started_at.utcoffset() == dt.timedelta(hours=2)
    assert c.last_active_at is None
    assert c.metadata == {"kernel_version": "6.1"}


def test_null_for_a_defaulted_field_means_the_default() -> None:
    entry = structure(
        {"name": "a", "path": "/a", "type": "unknown", "size": None, "symlink_target": None},
        models.FileEntry,
    )
    assert entry.size == 0
    assert entry.type == "unknown"


def test_renamed_wire_fields() -> None:
    m = structure(
        {
            "sandbox_id": "cl-1",
            "range": "10m",
            "points": [{"timestamp_unix": 1716200000, "cpu_pct": 3.2}],
        },
        models.CapsuleMetrics,
    )
    assert m.capsule_id == "cl-1"
    assert m.points[0].timestamp.year == 2024
    u = structure({"from": "2026-01-01", "to": "2026-01-31", "points": []}, models.CapsuleUsage)
    assert u.from_ == dt.date(2026, 1, 1)
    assert unstructure(u)["from"] == "2026-01-01"
    ev = structure(
        {"event": "capsule.create", "sandbox": {"id": "cl-1", "status": "starting"}}, models.Event
    )
    assert ev.capsule is not None
    assert ev.capsule.id == "cl-1"


def test_secrets_stay_out_of_model_reprs() -> None:
    key = models.APIKey(id="key-1", key_prefix="wrn_ab12cd", key="wrn_" + "f" * 32)
    assert "ffffffff" not in repr(key)
    session = models.Session(user_id="usr-1", token="eyJ.secret.sig")
    assert "secret" not in repr(session)
    host = models.CreatedHost(host=models.Host(id="host-1"), registration_token="a" * 64)
    assert "a" * 64 not in repr(host)


def test_models_are_frozen() -> None:
    c = models.Capsule(id="cl-1", status=models.CapsuleStatus.RUNNING)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        c.id = "x"  # type: ignore[misc]


def test_model_dump_keys_and_values_as_the_official_pydantic_models_give_them() -> None:
    # before: model_dump() keyed CapsuleMetrics by capsule_id and SSEEvent by capsule
    # (official: sandbox_id, sandbox); mode="json" kept enum members and keyed
    # UsageResponse by "from" (official: plain strings, "from_" unless by_alias=True);
    # model_dump_json() was not compact; a model_dump() keyed by field name did not
    # validate back
    metrics = models.CapsuleMetrics.model_validate(
        {"sandbox_id": "cl-1", "range": "10m", "points": []}
    )
    assert metrics.model_dump() == {"sandbox_id": "cl-1", "range": "10m", "points": []}
    dumped = metrics.model_dump(mode="json")
    assert type(dumped["range"]) is str
    usage = models.UsageResponse.model_validate({"from": "2026-01-01", "to": "2026-01-02"})
    assert usage.model_dump()["from_"] == dt.date(2026, 1, 1)
    assert usage.model_dump(mode="json") == {
        "from_": "2026-01-01",
        "to": "2026-01-02",
        "points": [],
    }
    assert usage.model_dump(by_alias=True)["from"] == dt.date(2026, 1, 1)
    assert models.UsageResponse.model_validate(usage.model_dump(mode="json")) == usage
    assert models.UsageResponse.model_validate(usage.model_dump(by_alias=True)) == usage
    event = models.SSEEvent.model_validate(
        {"event": "capsule.create", "sandbox": {"id": "cl-1", "status": "running"}}
    )
    assert event.model_dump()["sandbox"]["id"] == "cl-1"
    capsule = models.Capsule.model_validate(
        {"id": "cl-1", "status": "running", "created_at": "2026-01-01T10:00:00Z"}
    )
    as_json = capsule.model_dump(mode="json")
    assert (type(as_json["status"]), as_json["created_at"]) == (str, "2026-01-01T10:00:00Z")
    assert "error" not in event.model_dump(exclude_none=True)
    assert "started_at" not in event.model_dump(exclude_none=True)["sandbox"]
    assert capsule.model_dump_json().startswith('{"id":"cl-1","status":"running",')
    assert json.loads(capsule.model_dump_json(indent=2)) == as_json


def test_models_validate_when_only_wrenn_models_is_imported() -> None:
    # before: KeyError 'structure' (the converter registers itself, and a bare
    # ``from wrenn.models import Capsule`` did not import it)
    import subprocess
    import sys

    code = (
        "from wrenn.models import Capsule\n"
        "c = Capsule.model_validate({'id': 'cl-1', 'status': 'running'})\n"
        "print(c.id, c.status, c.model_dump(mode='json')['status'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "cl-1 running running\n"


def test_a_pending_snapshot_reads_as_the_template_the_official_sdk_returned() -> None:
    # The official create_snapshot() returns a Template (parsed from the capsule the
    # server answers): programs reading its template fields keep working on ours.
    source = models.Capsule(
        id="cl-1", status=models.CapsuleStatus.SNAPSHOTTING, vcpus=2, memory_mb=1024
    )
    pending = models.PendingSnapshot(name="snap-1", capsule=source)
    assert pending.type == models.TemplateType.SNAPSHOT
    assert (pending.vcpus, pending.memory_mb) == (2, 1024)
    assert (pending.size_bytes, pending.created_at, pending.platform) == (0, None, False)
    assert (pending.protected, pending.metadata) == (False, {})
    assert "type" not in pending.model_dump()  # the dump stays the model's own fields
    done = models.Template(
        name="snap-1", type=models.TemplateType.SNAPSHOT, vcpus=4, memory_mb=512, size_bytes=9
    )
    finished = models.PendingSnapshot(name="snap-1", capsule=source, template=done)
    assert (finished.vcpus, finished.memory_mb, finished.size_bytes) == (4, 512, 9)
