"""Deprecated: the official SDK's e2b-style ``wrenn.sandbox`` module. Use ``wrenn``.

``Sandbox`` is :class:`wrenn.Capsule` (a ``FutureWarning`` on first use).
"""

from __future__ import annotations

from typing import Any

from wrenn import (
    Capsule,
    StreamErrorEvent,
    StreamEvent,
    StreamExitEvent,
    StreamStartEvent,
    StreamStderrEvent,
    StreamStdoutEvent,
)

__all__ = [
    "Capsule",
    "StreamErrorEvent",
    "StreamEvent",
    "StreamExitEvent",
    "StreamStartEvent",
    "StreamStderrEvent",
    "StreamStdoutEvent",
]


def __getattr__(name: str) -> Any:
    if name == "Sandbox":
        import warnings

        warnings.warn("'Sandbox' is deprecated, use 'Capsule' instead", FutureWarning, stacklevel=2)
        return Capsule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
