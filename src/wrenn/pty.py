"""The official SDK's ``wrenn.pty`` module: terminal sessions and their events.

Iterating a session yields :class:`PtyEvent` objects as in the official SDK;
``term.output()`` yields the output bytes only.
"""

from __future__ import annotations

from wrenn import AsyncPtySession, PtyEvent, PtyEventType, PtySession

__all__ = ["AsyncPtySession", "PtyEvent", "PtyEventType", "PtySession"]
