"""Fan-out: run ``fn(capsule, item)`` for many items, each in its own capsule scope."""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, TypeVar, cast

import anyio

from ._capsule import AsyncCapsule, capsule_scope
from ._concurrency import check_concurrency, jobs
from ._exceptions import (
    WrennCapsuleFailedError,
    WrennConnectionError,
    WrennFanOutError,
    WrennRateLimitError,
    WrennTimeoutError,
    WrennUnavailableError,
    WrennValidationError,
)
from ._session import Session

__all__ = ["fan_out"]

T = TypeVar("T")
R = TypeVar("R")

TRANSIENT: Final = (
    WrennRateLimitError,
    WrennUnavailableError,
    WrennConnectionError,
    WrennTimeoutError,
    WrennCapsuleFailedError,
)


class _Pacer:
    """At most ``rate`` capsule creations per second, shared by every job of one map."""

    def __init__(self, rate: float | None) -> None:
        self._gap = 0.0 if not rate else 1.0 / rate
        self._next = 0.0
        self._lock = anyio.Lock()

    async def wait(self) -> None:
        if not self._gap:
            return
        async with self._lock:
            now = anyio.current_time()
            if self._next > now:
                await anyio.sleep(self._next - now)
            self._next = max(now, self._next) + self._gap

    async def back_off(self, seconds: float) -> None:
        async with self._lock:  # a 429 slows every job down, not just the one that saw it
            self._next = max(self._next, anyio.current_time() + seconds)


async def fan_out(
    session: Session,
    fn: Callable[[AsyncCapsule, T], Awaitable[R]],
    items: Iterable[T],
    *,
    concurrency: int,
    capsule: Mapping[str, Any] | None,
    creation_rate: float | None,
    retries: int,
    return_exceptions: bool,
    on_progress: Callable[[int, int], Any] | None,
) -> list[R | BaseException]:
    todo = list(items)
    check_concurrency(concurrency)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise WrennValidationError(f"retries must be an int of 0 or more, not {retries!r}")
    if creation_rate is not None and not (creation_rate > 0 and math.isfinite(creation_rate)):
        raise WrennValidationError(
            f"creation_rate must be a positive number of capsules per second, not {creation_rate!r}"
        )
    options = dict(capsule or {})
    limiter = anyio.CapacityLimiter(concurrency)
    pacer = _Pacer(creation_rate)
    results: list[R | BaseException | None] = [None] * len(todo)
    failed: list[tuple[int, Exception]] = []
    done = 0

    async def job(index: int, item: T) -> None:
        nonlocal done
        attempt = 0
        async with limiter:
            while True:
                await pacer.wait()
                try:
                    async with capsule_scope(session, **options) as cap:
                        results[index] = await fn(cap, item)
                    break
                except TRANSIENT as exc:
                    if attempt >= retries:
                        results[index] = exc
                        failed.append((index, exc))
                        break
                    hint = getattr(exc, "retry_after", None)
                    wait = hint if hint is not None else random.uniform(0, 0.5 * 2**attempt)
                    if isinstance(exc, WrennRateLimitError):
                        await pacer.back_off(wait)
                    else:
                        await anyio.sleep(wait)
                    attempt += 1
                except Exception as exc:
                    results[index] = exc
                    failed.append((index, exc))
                    break
        done += 1
        if on_progress is not None:
            on_progress(done, len(todo))

    async with jobs() as tg:  # a failing on_progress comes out as it is
        for index, item in enumerate(todo):
            tg.start_soon(job, index, item)
    if failed and not return_exceptions:
        failed.sort(key=lambda pair: pair[0])
        raise WrennFanOutError(
            f"{len(failed)} of {len(todo)} jobs failed", [exc for _, exc in failed]
        )
    return cast("list[R | BaseException]", results)
