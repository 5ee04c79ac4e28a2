"""Waiting for a capsule to reach a status: polling with backoff, inside the caller's scope."""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

import anyio

from ._config import check_seconds
from ._exceptions import WrennCapsuleFailedError, WrennNotFoundError, WrennTimeoutError
from ._models import Capsule, CapsuleStatus
from ._resources import AsyncCapsules

__all__ = ["wait_for_status"]

FIRST_POLL: Final = 0.05
MAX_POLL: Final = 1.0


async def wait_for_status(
    capsules: AsyncCapsules,
    capsule_id: str,
    wanted: CapsuleStatus,
    *,
    timeout: float | None,
    missing_ok: bool = False,
    fail_on: Collection[CapsuleStatus] = (
        CapsuleStatus.ERROR,
        CapsuleStatus.STOPPED,
        CapsuleStatus.MISSING,
    ),
) -> Capsule | None:
    """Poll ``GET /v1/capsules/{id}`` until its status is ``wanted``.

    Polls start at 50 ms and double up to 1 s. Cancellation by the caller's scope is
    immediate. Returns the capsule (or None when ``missing_ok`` and it is gone).

    Raises:
        WrennTimeoutError: ``timeout`` seconds passed first.
        WrennCapsuleFailedError: the capsule reached one of ``fail_on`` instead.
    """
    limit = check_seconds(timeout)
    interval = FIRST_POLL
    with anyio.move_on_after(limit):
        while True:
            try:
                capsule = await capsules.get(capsule_id)
            except WrennNotFoundError:
                if missing_ok:
                    return None
                raise
            if capsule.status == wanted:
                return capsule
            if capsule.status in fail_on:
                raise WrennCapsuleFailedError(
                    f"capsule {capsule_id} is {capsule.status}, not {wanted}"
                )
            await anyio.sleep(interval)
            interval = min(interval * 2, MAX_POLL)
    raise WrennTimeoutError(f"capsule {capsule_id} did not become {wanted} within {limit:g} s")
