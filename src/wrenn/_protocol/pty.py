"""The PTY message protocol (PROTOCOL §9): frames to send, and what a received text
frame means. No I/O: the terminal session feeds messages in and acts on the result.

Output travels as binary frames; control frames are JSON text: ``started`` (tag, pid),
``exit``, ``error`` (``fatal`` ends the session), ``ping`` (answer with ``pong``), and
``output`` with base64 data from 0.2-era servers.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from .._exceptions import WrennError, WrennValidationError
from .exec_stream import in_band_error

__all__ = [
    "KILL",
    "PONG",
    "PtyControl",
    "connect_frame",
    "error_of",
    "kind_of",
    "parse_control",
    "resize_frame",
    "start_frame",
]

KILL: Final = '{"type":"kill"}'
PONG: Final = '{"type":"pong"}'


MAX_SIZE: Final = 0xFFFF  # a terminal's winsize holds each of cols and rows in 16 bits


def check_size(cols: int, rows: int) -> None:
    """Refuse a terminal size no terminal can have (before it is sent: the server would
    end the session over it)."""
    for value in (cols, rows):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SIZE:
            raise WrennValidationError(
                f"cols and rows must be 1 to {MAX_SIZE} (whole numbers), not {cols!r}x{rows!r}"
            )


def start_frame(
    cmd: str,
    *,
    args: Sequence[str] | None,
    cols: int,
    rows: int,
    envs: Mapping[str, str] | None,
    cwd: str | None,
) -> str:
    """The first frame of a new terminal."""
    check_size(cols, rows)
    frame: dict[str, Any] = {"type": "start", "cmd": cmd, "cols": cols, "rows": rows}
    if args:
        frame["args"] = list(args)
    if envs:
        frame["envs"] = dict(envs)
    if cwd:
        frame["cwd"] = cwd
    return json.dumps(frame)


def connect_frame(tag: str) -> str:
    """The first frame of a reattach to a running terminal."""
    return json.dumps({"type": "connect", "tag": tag})


def resize_frame(cols: int, rows: int) -> str:
    check_size(cols, rows)
    return json.dumps({"type": "resize", "cols": cols, "rows": rows})


@attrs.frozen
class PtyControl:
    """What a text frame says. ``kind`` is ``started``, ``exit``, ``ping``, ``output``
    (``data`` holds decoded bytes) or ``other`` (ignored)."""

    kind: str
    tag: str | None = None
    pid: int | None = None
    exit_code: int | None = None
    data: bytes = b""


def parse_control(text: str) -> PtyControl:
    """Decode one text frame; an ``error`` frame raises its mapped :class:`WrennError`
    when it is fatal, or before ``started`` (``fatal_always``)."""
    frame = _json(text)
    kind = frame.get("type") or "ping"
    if kind == "started":
        pid = frame.get("pid")
        tag = frame.get("tag")
        return PtyControl(
            "started",
            tag=tag if isinstance(tag, str) else None,
            pid=pid if isinstance(pid, int) else None,
        )
    if kind == "exit":
        code = frame.get("exit_code")
        return PtyControl("exit", exit_code=code if isinstance(code, int) else -1)
    if kind == "ping":
        return PtyControl("ping")
    if kind == "error":
        return PtyControl("fatal" if frame.get("fatal") else "error", data=_error_text(frame))
    if kind == "output" and isinstance(frame.get("data"), str):  # 0.2-era servers
        try:
            return PtyControl("output", data=base64.b64decode(frame["data"]))
        except (binascii.Error, ValueError):
            return PtyControl("other")
    return PtyControl("other")


def kind_of(text: str) -> str:
    """The ``type`` a text frame names (``ping`` when it names none)."""
    return str(_json(text).get("type") or "ping")


def error_of(control: PtyControl) -> WrennError:
    """The exception an ``error``/``fatal`` control stands for."""
    return in_band_error(control.data.decode("utf-8", errors="replace") or "pty error")


def _error_text(frame: Mapping[str, Any]) -> bytes:
    return str(frame.get("data") or "pty error").encode()


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
