"""The exec-stream message protocol as a state machine: messages in, typed events out.

No I/O and no awaits (the h11/wsproto style): the WebSocket layer feeds each message to
:meth:`ExecStreamProtocol.receive` and calls :meth:`ExecStreamProtocol.ended` when the
connection ends. In-band errors become exceptions of the one tree (an
``authentication failed`` frame is a :class:`WrennAuthenticationError`), and a stream
that ends before its ``exit`` frame is an error, never a finish.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import Any, Final

from .._exceptions import (
    WrennAgentError,
    WrennAuthenticationError,
    WrennConnectionError,
    WrennError,
    WrennInvalidStateError,
    WrennNotFoundError,
    WrennProtocolError,
    WrennValidationError,
)
from .._models.streams import StreamEvent, StreamExit, StreamStart, StreamStderr, StreamStdout
from .._text import wire_text

try:  # optional, `pip install 'wrenn[fast]'`: output frames decode 5-8x faster
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None  # type: ignore[assignment]

__all__ = [
    "BINARY_OUTPUT",
    "ExecStreamProtocol",
    "decode_frame",
    "exec_request",
    "in_band_error",
    "start_frame",
]

BINARY_OUTPUT: Final = "wrenn.output.v1"
"""The WebSocket subprotocol a client offers for binary output frames. A server that
accepts it sends each stdout/stderr chunk as one binary message: a tag byte (1 stdout,
2 stderr) and the raw bytes. Every other frame stays JSON text."""
_STDOUT_TAG: Final = 1
_STDERR_TAG: Final = 2


def decode_frame(message: str) -> Any:
    """One JSON frame. Output frames are mostly one long escaped string, where the
    stdlib decoder spends most of a stream's client CPU; orjson, when installed, does
    it several times faster. What orjson refuses and the stdlib accepts (a lone
    surrogate escape) is decoded by the stdlib, so both give the same events.

    Raises:
        ValueError: the message is not JSON.
    """
    if _orjson is not None:
        try:
            return _orjson.loads(message)
        except _orjson.JSONDecodeError:
            pass
    return json.loads(message)


_NOT_FOUND: Final = (
    "sandbox not found",
    "process not found",
    "capsule not found",
    "pty session not found",
)


def in_band_error(text: str) -> WrennError:
    """The exception for an in-band ``{"type": "error", "data": text}`` frame."""
    lowered = text.lower()
    if "authentication failed" in lowered:
        return WrennAuthenticationError("unauthorized", text, 401)
    if lowered in _NOT_FOUND or lowered.endswith("not found"):
        return WrennNotFoundError("not_found", text, 404)
    if "is not running" in lowered:
        return WrennInvalidStateError("invalid_state", text, 409)
    if lowered.startswith(("first message must", "connect requires", "args must", "cols and")):
        return WrennValidationError("invalid_request", text, 400)
    return WrennAgentError("agent_error", text, 502)


class State(Enum):
    WAITING = "waiting"  # nothing yet
    RUNNING = "running"  # start seen
    EXITED = "exited"  # exit seen: the stream is complete
    FAILED = "failed"


class ExecStreamProtocol:
    """One exec or attach stream. ``exit_code`` is set once ``exit`` arrived.

    ``binary``: the server accepted :data:`BINARY_OUTPUT`, so output arrives as binary
    messages, turned into text here (a character split between two chunks stays whole).
    """

    def __init__(self, *, binary: bool = False) -> None:
        self.state = State.WAITING
        self.pid: int | None = None
        self.exit_code: int | None = None
        self.binary = binary
        self._out = _utf8() if binary else None
        self._err = _utf8() if binary else None

    def receive(self, message: str | bytes) -> StreamEvent | None:
        """Parse one message. Returns an event, or None for frames to ignore.

        Raises:
            WrennError: an in-band error frame (mapped by its text), or a malformed frame.
        """
        if self.state in (State.EXITED, State.FAILED):
            return None
        if isinstance(message, bytes):
            if not self.binary:  # output the caller would never see: not a silent loss
                self.state = State.FAILED
                raise WrennProtocolError(
                    "exec stream sent a binary message without the binary output subprotocol"
                )
            return self._output(message)
        try:
            frame = decode_frame(message)
        except ValueError as exc:
            self.state = State.FAILED
            raise WrennProtocolError("exec stream frame is not JSON") from exc
        if not isinstance(frame, dict):
            return None
        kind = frame.get("type")
        if kind == "start":
            pid = frame.get("pid")
            self.pid = pid if isinstance(pid, int) and not isinstance(pid, bool) else None
            self.state = State.RUNNING
            return StreamStart(pid=self.pid)
        if kind in ("stdout", "stderr"):
            data = frame.get("data")
            text = data if isinstance(data, str) else ""
            return StreamStdout(text) if kind == "stdout" else StreamStderr(text)
        if kind == "exit":
            code = frame.get("exit_code")
            self.exit_code = code if isinstance(code, int) and not isinstance(code, bool) else -1
            self.state = State.EXITED
            return StreamExit(self.exit_code)
        if kind == "error":
            self.state = State.FAILED
            data = frame.get("data")
            raise in_band_error(data if isinstance(data, str) else "stream error")
        return None  # unknown frame types are ignored, for forward compatibility

    def _output(self, message: bytes) -> StreamEvent | None:
        """A binary output message: its tag byte, then the chunk's raw bytes. An empty
        message or an unknown tag is an error: output would be lost without a word (a
        new kind of binary message comes with a new subprotocol version, never in v1)."""
        tag = message[0] if message else None
        raw = message[1:]
        if tag == _STDOUT_TAG and self._out is not None:
            return StreamStdout(self._out.decode(raw), raw=raw)
        if tag == _STDERR_TAG and self._err is not None:
            return StreamStderr(self._err.decode(raw), raw=raw)
        self.state = State.FAILED
        what = "an empty binary message" if tag is None else f"a binary message tagged {tag}"
        raise WrennProtocolError(f"exec stream sent {what} ({BINARY_OUTPUT} has 1 and 2)")

    def ended(self, close_code: int | None, reason: str = "") -> None:
        """The connection is gone. Fine after ``exit``; an error before it."""
        if self.state is State.EXITED:
            return
        self.state = State.FAILED
        detail = f" (close code {close_code})" if close_code is not None else ""
        raise WrennConnectionError(
            f"the stream ended before the process exited{detail}"
            + (f": {reason}" if reason else "")
        )


def _utf8() -> codecs.IncrementalDecoder:
    return codecs.getincrementaldecoder("utf-8")(errors="replace")


def exec_request(
    cmd: str,
    args: Sequence[str] | None,
    envs: Mapping[str, str] | None,
    cwd: str | None,
) -> dict[str, Any]:
    """The body of an exec request (REST or the stream's ``start`` frame), checked."""
    if not isinstance(cmd, str) or not cmd:
        raise WrennValidationError("cmd must be a non-empty string")
    body: dict[str, Any] = {"cmd": wire_text(cmd, "cmd")}
    if args is not None:
        body["args"] = check_args(args)
    if envs is not None:
        if not isinstance(envs, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in envs.items()
        ):
            raise WrennValidationError("envs must map strings to strings")
        body["envs"] = {
            wire_text(k, "an envs name"): wire_text(v, f"envs[{k!r}]") for k, v in envs.items()
        }
    if cwd is not None:
        body["cwd"] = wire_text(cwd, "cwd")
    return body


def check_args(args: object) -> list[str]:
    """``args`` as a list of strings (a ``str`` is refused: it would be split into
    characters)."""
    if isinstance(args, str | bytes) or not isinstance(args, Iterable):
        raise WrennValidationError(
            f"args must be a list of strings, not {type(args).__name__} (for a shell command"
            " line, pass it as cmd without args)"
        )
    items = list(args)
    for i, item in enumerate(items):
        wire_text(item, f"args[{i}]")
    return items


def start_frame(
    cmd: str,
    args: Sequence[str] | None,
    envs: Mapping[str, str] | None,
    cwd: str | None,
) -> dict[str, Any]:
    """The first frame of an exec stream."""
    return {"type": "start", **exec_request(cmd, args, envs, cwd)}
