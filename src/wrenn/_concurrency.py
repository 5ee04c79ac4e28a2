"""Task groups for a scope's own helper tasks, with the body's exception kept bare.

A scope such as a capsule or a WebSocket runs helper tasks (a reader, a keepalive) in a
task group of its own. Two things go wrong with a plain task group, and
:func:`helper_tasks` prevents both:

* the body's exception leaves wrapped in an ``ExceptionGroup`` (anyio wraps what a
  group's host raises alongside its tasks), so ``except ValueError`` or
  ``except KeyboardInterrupt`` around the scope misses it;
* when an enclosing deadline has already passed, leaving the group raises the
  cancellation, which replaces the body's exception; ``move_on_after`` then swallows
  it, and the caller's error vanishes as if the block had only timed out.

Here the helpers are cancelled as soon as the body ends, and the body's exception
(``KeyboardInterrupt``, ``SystemExit`` and cancellation included) is raised again, as
it was, once they are gone.

:func:`jobs` is the other shape: a task group of equal jobs (a fan-out, several file
writes) whose first failure ends the others and comes out bare, as the job raised it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc

from ._exceptions import WrennValidationError

__all__ = ["check_concurrency", "helper_tasks", "jobs"]


@asynccontextmanager
async def helper_tasks() -> AsyncIterator[anyio.abc.TaskGroup]:
    """A task group whose tasks serve the body and end with it (see the module)."""
    body_exc: BaseException | None = None
    try:
        async with anyio.create_task_group() as tg:
            try:
                yield tg
            except BaseException as exc:  # raised again below, bare
                body_exc = exc
            finally:
                tg.cancel_scope.cancel()
    except BaseException:
        if body_exc is None:
            raise
        # Leaving the group failed as well (an enclosing scope was cancelled, or a
        # helper failed): the body's own exception is the one the caller must see.
    if body_exc is not None:
        raise body_exc


@asynccontextmanager
async def jobs() -> AsyncIterator[anyio.abc.TaskGroup]:
    """A task group of jobs: the first exception a job (or the body) raises cancels the
    rest and comes out as it was raised, not wrapped in an ``ExceptionGroup`` (so
    ``except ValueError`` around a fan-out sees a callback's ``ValueError``). Of several
    at once, a real error wins over a cancellation; the others are dropped."""
    group: BaseExceptionGroup[BaseException] | None = None
    try:
        async with anyio.create_task_group() as tg:
            yield tg
    except BaseExceptionGroup as exc:
        if type(exc) not in (BaseExceptionGroup, ExceptionGroup):
            raise  # a group of the SDK's own making (WrennFanOutError): as it is
        group = exc
    if group is not None:  # (outside the handler: the job's exception keeps its context)
        cancelled = anyio.get_cancelled_exc_class()
        real = [e for e in group.exceptions if not isinstance(e, cancelled)]
        raise (real or list(group.exceptions))[0]


def check_concurrency(concurrency: object) -> None:
    """Refuse a ``concurrency`` that is not an int of 1 or more (a limiter of 0 would
    wait forever)."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise WrennValidationError(f"concurrency must be an int of 1 or more, not {concurrency!r}")
