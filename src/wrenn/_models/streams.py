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
    """A chunk of the process's standard output.

    ``data`` is text (invalid UTF-8 becomes U+FFFD; a character split between chunks is
    whole in one of them). ``raw`` holds the exact bytes when the stream uses binary
    output frames (see ``binary_frames`` on the client), else None.
    """

    data: str
    type: str = "stdout"
    raw: bytes | None = attrs.field(default=None, kw_only=True, repr=False)


@attrs.frozen
class StreamStderr:
    """A chunk of the process's standard error; ``data`` and ``raw`` as for stdout."""

    data: str
    type: str = "stderr"
    raw: bytes | None = attrs.field(default=None, kw_only=True, repr=False)


@attrs.frozen
class StreamExit:
    """The process ended; ``exit_code`` is -1 when it was killed by a signal."""

    exit_code: int
    type: str = "exit"


StreamEvent = StreamStart | StreamStdout | StreamStderr | StreamExit
