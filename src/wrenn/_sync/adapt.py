"""Generic adapters from the async core to the sync facade.

A sync class is a :class:`Facet` over one async object; most of its methods are
declared as ``name = blocking(AsyncThing.name)``, which makes a method with the same
parameters and docstring that runs the async one through the client's portal. Nothing
of the behaviour is written twice, and the type checker sees the real signatures.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from .portal import PortalRunner

__all__ = ["Facet", "blocking"]

A = TypeVar("A")
P = ParamSpec("P")
T = TypeVar("T")


class Facet(Generic[A]):
    """A sync view of one async object, driven through a :class:`PortalRunner`."""

    __slots__ = ("_async", "_runner")

    def __init__(self, runner: PortalRunner, target: A) -> None:
        self._runner = runner
        self._async = target


def blocking(
    method: Callable[Concatenate[Any, P], Awaitable[T]],
) -> Callable[Concatenate[Facet[Any], P], T]:
    """The sync form of an async method: the same parameters, run in the portal.

    Ctrl-C while it waits cancels the async call and re-raises ``KeyboardInterrupt``
    (see :meth:`PortalRunner.call`).
    """
    name = method.__name__

    @functools.wraps(method)
    def run(self: Facet[Any], /, *args: P.args, **kwargs: P.kwargs) -> T:
        result: T = self._runner.call(getattr(self._async, name), *args, **kwargs)
        return result

    return run
