"""When to retry a request, and how long to wait before the next attempt."""

from __future__ import annotations

import datetime as dt
import email.utils
import random
from typing import Final

__all__ = ["IDEMPOTENT_METHODS", "RetryPolicy", "parse_retry_after"]

IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Statuses worth another attempt: 429 always (the server refused before acting),
# 503/504 only for idempotent requests (the server may have acted before failing).
RETRY_ANY_METHOD: Final = frozenset({429})
RETRY_IDEMPOTENT: Final = frozenset({503, 504})
MAX_RETRY_AFTER: Final = 120.0


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class RetryPolicy:
    """Exponential backoff with full jitter, honouring the server's ``Retry-After``.

    ``delay(n)`` for the n-th retry (0-based) is uniform in
    ``[0, min(cap, base * 2**n)]``; a ``Retry-After`` hint raises it to at least the hint.
    """

    def __init__(
        self,
        max_retries: int,
        *,
        base: float = 0.25,
        cap: float = 8.0,
        rng: random.Random | None = None,
    ) -> None:
        self.max_retries = max_retries
        self.base = base
        self.cap = cap
        self._rng = rng or random.Random()

    def delay(self, retry_index: int, retry_after: float | None = None) -> float:
        ceiling = min(self.cap, self.base * (2**retry_index))
        wait = self._rng.uniform(0.0, ceiling)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return wait

    @staticmethod
    def may_retry_status(method: str, status: int, *, idempotent: bool) -> bool:
        if status in RETRY_ANY_METHOD:
            return True
        return idempotent and status in RETRY_IDEMPOTENT
