"""The official SDK's ``wrenn.commands`` module: results, handles and stream events.

``StreamStartEvent`` and friends are this SDK's stream events (``.type`` is the same
string). ``StreamErrorEvent`` exists for imports only: an in-band error raises the
matching :class:`wrenn.WrennError` instead of arriving as an event.
"""

from __future__ import annotations

from wrenn import (
    AsyncCommands,
    CommandHandle,
    CommandResult,
    Commands,
    ProcessInfo,
    StreamErrorEvent,
    StreamEvent,
    StreamExitEvent,
    StreamStartEvent,
    StreamStderrEvent,
    StreamStdoutEvent,
)
from wrenn.exceptions import handle_response

__all__ = [
    "AsyncCommands",
    "CommandHandle",
    "CommandResult",
    "Commands",
    "ProcessInfo",
    "StreamErrorEvent",
    "StreamEvent",
    "StreamExitEvent",
    "StreamStartEvent",
    "StreamStderrEvent",
    "StreamStdoutEvent",
    "handle_response",
]
