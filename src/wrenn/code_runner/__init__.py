"""The code runner under the official SDK's names.

Every capsule of this SDK has ``run_code`` (and ``capsule.code``); this module only
changes the defaults, as the official ``wrenn.code_runner`` does: capsules made here use
the ``code-runner-beta`` template and the ``wrenn`` kernel unless told otherwise::

    from wrenn.code_runner import Capsule

    with Capsule(wait=True) as cap:
        print(cap.run_code("1 + 1").text)
"""

from __future__ import annotations

from .._code import DEFAULT_KERNEL as DEFAULT_KERNEL
from .._code import DEFAULT_TEMPLATE as DEFAULT_TEMPLATE
from .._models.code import Execution as Execution
from .._models.code import ExecutionError as ExecutionError
from .._models.code import Logs as Logs
from .._models.code import Result as Result
from .async_capsule import AsyncCapsule as AsyncCapsule
from .capsule import Capsule as Capsule

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
        import warnings

        warnings.warn("'Sandbox' is deprecated, use 'Capsule' instead", FutureWarning, stacklevel=2)
        return Capsule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
