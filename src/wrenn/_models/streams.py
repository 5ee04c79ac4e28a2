"""The events of an exec stream: start, output and exit."""

from __future__ import annotations

import attrs

__all__ = ["StreamEvent", "StreamExit", "StreamStart", "StreamStderr", "StreamStdout"]


@attrs.frozen
class StreamStart:
    """The process started (``pid`` is None when the server did not say)."""

    pid: int | None = None
    type: str = "start"


@attrs.frozen
class StreamStdout:
    data: str
    type: str = "stdout"


@attrs.frozen
class StreamStderr:
    data: str
    type: str = "stderr"


@attrs.frozen
class StreamExit:
    """The process ended; ``exit_code`` is -1 when it was killed by a signal."""

    exit_code: int
    type: str = "exit"


StreamEvent = StreamStart | StreamStdout | StreamStderr | StreamExit
