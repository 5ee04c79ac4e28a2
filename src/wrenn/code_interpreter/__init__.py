"""Deprecated: the old name of :mod:`wrenn.code_runner` (importing it warns once)."""

from __future__ import annotations

import warnings

from ..code_runner import DEFAULT_KERNEL as DEFAULT_KERNEL
from ..code_runner import DEFAULT_TEMPLATE as DEFAULT_TEMPLATE
from ..code_runner import AsyncCapsule as AsyncCapsule
from ..code_runner import Capsule as Capsule
from ..code_runner import Execution as Execution
from ..code_runner import ExecutionError as ExecutionError
from ..code_runner import Logs as Logs
from ..code_runner import Result as Result

__all__ = [
    "DEFAULT_KERNEL",
    "DEFAULT_TEMPLATE",
    "AsyncCapsule",
    "Capsule",
    "Execution",
    "ExecutionError",
    "Logs",
    "Result",
]


def __getattr__(name: str) -> type:
    """``Sandbox``: the official SDK's deprecated alias of :class:`Capsule`."""
    if name == "Sandbox":
        warnings.warn("'Sandbox' is deprecated, use 'Capsule' instead", FutureWarning, stacklevel=2)
        return Capsule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


warnings.warn(
    "wrenn.code_interpreter is deprecated; use wrenn.code_runner",
    FutureWarning,
    stacklevel=2,
)
