"""One meaning of ``timeout``: every public ``timeout`` parameter, enumerated.

A call's ``timeout`` is float seconds or ``None`` (no limit): a deadline over the whole
call. REST resource calls default to the client's own timeout (``CLIENT_DEFAULT``). The
few parameters that keep another meaning because the official 0.3.0 API fixes it are
listed below, each with its reason; the test fails on any other shape, and on a listed
exception that no longer exists.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator

import pytest

import wrenn
import wrenn.code_runner
from wrenn import WrennValidationError
from wrenn._config import CLIENT_DEFAULT, check_seconds
from wrenn._resources import accounts, capsules, events, files, hosts, processes, snapshots
from wrenn._sync import resources as sync_resources

DEADLINE = "float | None"  # seconds, or None for no limit
REST = "Timeout"  # seconds, None for no limit, or CLIENT_DEFAULT (the client's timeout)

# name -> why it is not a call's deadline
OFFICIAL_MEANINGS = {
    "AsyncWrennClient.__init__(timeout)": "the client's default per call (None: 30 s), official",
    "WrennClient.__init__(timeout)": "the client's default per call (None: 30 s), official",
    "AsyncWrennClient.capsule(timeout)": "the capsule's inactivity TTL in seconds, official",
    "WrennClient.capsule(timeout)": "the capsule's inactivity TTL in seconds, official",
    "AsyncCapsule.create(timeout)": "the capsule's inactivity TTL in seconds, official",
    "Capsule.__init__(timeout)": "the capsule's inactivity TTL in seconds, official",
    "Capsule.create(timeout)": "the capsule's inactivity TTL in seconds, official",
    "code_runner.AsyncCapsule.create(timeout)": "the inactivity TTL, official",
    "code_runner.Capsule.__init__(timeout)": "the inactivity TTL, official",
    "code_runner.Capsule.create(timeout)": "the inactivity TTL, official",
    "AsyncWrennClient.__init__(connect_timeout)": "a client setting: positive seconds",
    "WrennClient.__init__(connect_timeout)": "a client setting: positive seconds",
    "AsyncWrennClient.__init__(ping_timeout)": "a client setting: positive seconds",
    "WrennClient.__init__(ping_timeout)": "a client setting: positive seconds",
    "ClientConfig.__init__(timeout)": "the resolved configuration: positive seconds",
    "ClientConfig.__init__(connect_timeout)": "the resolved configuration: positive seconds",
    "ClientConfig.__init__(ping_timeout)": "the resolved configuration: positive seconds",
    "ClientConfig.resolve(timeout)": "the resolved configuration: positive seconds",
    "ClientConfig.resolve(connect_timeout)": "the resolved configuration: positive seconds",
    "ClientConfig.resolve(ping_timeout)": "the resolved configuration: positive seconds",
    "AsyncCodeRun.__init__(timeout)": "built by the SDK with an already checked deadline",
}


def _classes() -> Iterator[tuple[str, type]]:
    for name in wrenn.__all__:
        obj = getattr(wrenn, name)
        if inspect.isclass(obj) and not issubclass(obj, BaseException):
            yield name, obj
    for name in ("AsyncCapsule", "Capsule"):
        yield f"code_runner.{name}", getattr(wrenn.code_runner, name)
    for module in (accounts, capsules, events, files, hosts, processes, snapshots):
        for name in module.__all__:
            yield name, getattr(module, name)
    for name in dir(sync_resources):
        obj = getattr(sync_resources, name)
        if inspect.isclass(obj) and obj.__module__ == sync_resources.__name__:
            yield f"sync.{name}", obj


def timeout_parameters() -> dict[str, str]:
    found: dict[str, str] = {}
    for label, cls in _classes():
        for attr in dir(cls):
            if attr.startswith("_") and attr != "__init__":
                continue
            value = getattr(cls, attr, None)
            if not callable(value) or inspect.isclass(value):
                continue
            try:
                signature = inspect.signature(value)
            except (TypeError, ValueError):
                continue
            for param in signature.parameters.values():
                if param.name == "timeout" or param.name.endswith("_timeout"):
                    found[f"{label}.{attr}({param.name})"] = str(param.annotation)
    return found


def test_every_public_timeout_is_a_deadline_in_seconds_or_none() -> None:
    found = timeout_parameters()
    assert len(found) > 100  # the walk reaches the whole surface
    odd = {
        name: annotation
        for name, annotation in found.items()
        if annotation not in (DEADLINE, REST) and name not in OFFICIAL_MEANINGS
    }
    assert odd == {}, "a timeout must be `float | None` (or `Timeout` on REST calls)"


def test_sync_rest_calls_default_to_the_clients_timeout_like_their_async_twins() -> None:
    """A sync facet written by hand must not turn the client's default into None (which
    means no limit): its timeouts have the same shape as the async call's."""
    found = timeout_parameters()
    differ = {
        name: (annotation, found.get("Async" + name.removeprefix("sync.")))
        for name, annotation in found.items()
        if name.startswith("sync.")
        and found.get("Async" + name.removeprefix("sync.")) not in (None, annotation)
    }
    assert differ == {}


def test_every_listed_exception_still_exists() -> None:
    assert set(OFFICIAL_MEANINGS) <= set(timeout_parameters())


@pytest.mark.parametrize("bad", [0, -1.5, float("nan"), "5", True])
def test_bad_seconds_are_refused_with_what_to_do(bad: object) -> None:
    with pytest.raises(WrennValidationError, match="positive number of seconds or None") as e:
        check_seconds(bad)  # type: ignore[arg-type]
    assert isinstance(e.value, ValueError)


def test_none_is_no_limit_and_the_default_is_the_clients() -> None:
    assert check_seconds(None) == math.inf
    assert check_seconds(2) == 2.0
    config = wrenn.ClientConfig.resolve(
        api_key="k" * 20,
        token=None,
        base_url="http://127.0.0.1:9",
        proxy_domain=None,
        timeout=12.5,
        connect_timeout=1,
        max_retries=0,
    )
    assert config.deadline(CLIENT_DEFAULT) == 12.5
    assert config.deadline(None) == math.inf
    assert config.deadline(0.25) == 0.25
