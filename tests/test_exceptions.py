from __future__ import annotations

import json
import pickle

import pytest

import wrenn
from wrenn import exceptions as E
from wrenn._exceptions import error_from_response


def body(code: str, message: str = "m", **extra: object) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, **extra}}).encode()


@pytest.mark.parametrize(
    ("code", "status", "cls"),
    [
        ("invalid_request", 400, E.WrennValidationError),
        ("unauthorized", 401, E.WrennAuthenticationError),
        ("forbidden", 403, E.WrennForbiddenError),
        ("not_found", 404, E.WrennNotFoundError),
        ("conflict", 409, E.WrennConflictError),
        ("invalid_state", 409, E.WrennInvalidStateError),
        ("template_name_taken", 409, E.WrennNameTakenError),
        ("name_reserved", 409, E.WrennNameTakenError),
        ("has_active_sandboxes", 409, E.WrennHostHasCapsulesError),
        ("too_large", 413, E.WrennTooLargeError),
        ("internal_error", 500, E.WrennInternalError),
        ("agent_error", 502, E.WrennAgentError),
        ("agent_error", 501, E.WrennAgentError),
        ("host_unavailable", 503, E.WrennHostUnavailableError),
        ("no_hosts_available", 503, E.WrennUnavailableError),
    ],
)
def test_maps_by_code_first(code: str, status: int, cls: type[E.WrennError]) -> None:
    err = error_from_response(status, body(code, "capsule not found"))
    assert type(err) is cls
    assert (err.code, err.message, err.status_code) == (code, "capsule not found", status)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, E.WrennValidationError),
        (401, E.WrennAuthenticationError),
        (404, E.WrennNotFoundError),
        (409, E.WrennConflictError),
        (413, E.WrennTooLargeError),
        (429, E.WrennRateLimitError),
        (503, E.WrennUnavailableError),
        (504, E.WrennInternalError),
        (418, E.WrennAPIError),
    ],
)
def test_unknown_code_falls_back_to_status(status: int, cls: type[E.WrennError]) -> None:
    err = error_from_response(status, body("some_new_code"))
    assert type(err) is cls
    assert err.code == "some_new_code"


@pytest.mark.parametrize(
    "raw",
    [
        b"404 page not found",
        b"",
        b"[1, 2]",
        b'"just a string"',
        b"{not json",
        b'{"error": 5}',
        b'{"error": {"code": 7, "message": ["x"]}}',
        b"\xff\xfe\x00garbage",
        b"<html>" + b"x" * 5000,
    ],
)
def test_odd_bodies_never_crash(raw: bytes) -> None:
    err = error_from_response(404, raw)
    assert isinstance(err, E.WrennNotFoundError)
    assert err.status_code == 404
    assert len(err.message) < 400


def test_host_has_capsules_reads_ids_inside_and_outside_error() -> None:
    inside = error_from_response(409, body("has_active_sandboxes", sandbox_ids=["cl-a", "cl-b"]))
    assert isinstance(inside, E.WrennHostHasCapsulesError)
    assert inside.capsule_ids == ["cl-a", "cl-b"]
    outside = json.dumps(
        {"error": {"code": "host_has_capsules", "message": "busy"}, "capsule_ids": ["cl-c"]}
    ).encode()
    err = error_from_response(409, outside)
    assert isinstance(err, E.WrennHostHasCapsulesError)
    assert err.capsule_ids == ["cl-c"]


def test_rate_limit_carries_retry_after() -> None:
    err = error_from_response(429, b"slow down", retry_after=2.5)
    assert isinstance(err, E.WrennRateLimitError)
    assert err.retry_after == 2.5


def test_tree() -> None:
    for name in E.__all__:
        cls = getattr(E, name)
        assert issubclass(cls, wrenn.WrennError), name
        assert cls.__module__ == "wrenn.exceptions"
    assert issubclass(E.WrennTimeoutError, TimeoutError)
    assert issubclass(E.WrennConfigurationError, ValueError)


def test_str_repr_and_pickle() -> None:
    err = error_from_response(409, body("invalid_state", "capsule is not running"))
    assert str(err) == "capsule is not running"  # the message alone, as official
    assert repr(err) == (
        "WrennInvalidStateError(code='invalid_state', message='capsule is not running',"
        " status_code=409)"
    )
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is type(err)
    assert (again.code, again.message, again.status_code) == (err.code, err.message, 409)
    hosts = pickle.loads(
        pickle.dumps(E.WrennHostHasCapsulesError("x", status_code=409, capsule_ids=("cl-1",)))
    )
    assert hosts.capsule_ids == ["cl-1"]
    with pytest.warns(DeprecationWarning, match="sandbox_ids"):
        assert hosts.sandbox_ids == ["cl-1"]


def test_the_official_constructor_and_builtin_bases() -> None:
    err = E.WrennNotFoundError("not_found", "no such capsule", 404)
    assert (err.code, err.message, err.status_code, str(err)) == (
        "not_found",
        "no such capsule",
        404,
        "no such capsule",
    )
    assert E.WrennError("just a message").message == "just a message"
    assert E.WrennError("just a message").code == "error"
    hosts = E.WrennHostHasCapsulesError("host_has_capsules", "busy", 409, ["cl-1"])
    assert hosts.capsule_ids == ["cl-1"]  # a list, as official (was a tuple: == [...] failed)
    assert issubclass(E.WrennCapsuleFailedError, RuntimeError)
    assert issubclass(E.WrennValidationError, ValueError)
