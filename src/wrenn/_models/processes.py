"""Command execution and processes (PROTOCOL §6, §8)."""

from __future__ import annotations

import attrs

from .base import DataclassShaped, WireModel, dataclass_view

__all__ = ["BackgroundProcess", "CommandResult", "ProcessInfo"]


@dataclass_view("stdout", "stderr", "exit_code", "duration_ms")
@attrs.frozen
class CommandResult(WireModel, DataclassShaped):
    """The outcome of a foreground command.

    ``stdout`` and ``stderr`` are text; when the output was not valid UTF-8 the server
    sends base64 and the exact bytes are kept in ``stdout_bytes`` / ``stderr_bytes``
    (the text then has U+FFFD where bytes could not be decoded). ``exit_code`` is -1
    when the process was killed by a signal.
    """

    stdout: str
    stderr: str
    exit_code: int
    duration_ms: int | None = None
    stdout_bytes: bytes = attrs.field(default=b"", repr=False)
    stderr_bytes: bytes = attrs.field(default=b"", repr=False)

    @property
    def ok(self) -> bool:
        """True when the command exited with status 0."""
        return self.exit_code == 0


@attrs.frozen
class BackgroundProcess(WireModel):
    """A process started with ``background=True``: its pid and tag."""

    pid: int
    tag: str
    capsule_id: str = ""
    cmd: str = ""


@dataclass_view()
@attrs.frozen
class ProcessInfo(WireModel, DataclassShaped):
    """A process the capsule is tracking (background, exec stream, PTY, ...)."""

    pid: int
    tag: str | None = None
    cmd: str | None = None
    args: list[str] = attrs.field(factory=list)
