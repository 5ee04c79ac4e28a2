"""wrenn_local: an embedded local Wrenn server (work in progress).

It speaks the Wrenn wire protocol over real HTTP and WebSocket and never imports the
``wrenn`` SDK: the wire is the only contract between them.
"""

from __future__ import annotations

__all__: list[str] = []
