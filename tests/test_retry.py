from __future__ import annotations

import datetime as dt
import random

import pytest

from wrenn._transport.retry import RetryPolicy, parse_retry_after


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("3", 3.0),
        ("0.5", 0.5),
        ("-4", 0.0),
        ("nan", None),
        ("99999", 120.0),
        ("soon", None),
    ],
)
def test_parse_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:07 GMT", now=now) == 7.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0


def test_full_jitter_bounds_and_retry_after_floor() -> None:
    policy = RetryPolicy(5, base=0.25, cap=2.0, rng=random.Random(7))
    for attempt in range(8):
        ceiling = min(2.0, 0.25 * 2**attempt)
        samples = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.8  # the full range is used
    assert all(policy.delay(0, retry_after=3.0) >= 3.0 for _ in range(50))


def test_which_statuses_retry() -> None:
    assert RetryPolicy.may_retry_status("POST", 429, idempotent=False)
    assert not RetryPolicy.may_retry_status("POST", 503, idempotent=False)
    assert RetryPolicy.may_retry_status("GET", 503, idempotent=True)
    assert not RetryPolicy.may_retry_status("GET", 500, idempotent=True)
    assert not RetryPolicy.may_retry_status("GET", 404, idempotent=True)
