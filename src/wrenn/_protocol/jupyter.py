"""Sans-I/O pieces of the Jupyter kernel protocol (v5.3, JSON over the channels WebSocket).

:func:`execute_request` builds the message that runs a cell; :class:`CellReader` turns
the messages that come back into :data:`CodeOutput` items for that one cell and tells
when it is finished (``status: idle``). Messages of other requests — such as the tail of
an earlier cell that timed out — are ignored by ``parent_header.msg_id``.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any, Final

from .._exceptions import WrennProtocolError
from .._models.code import CodeOutput, CodeStderr, CodeStdout, ExecutionError, Result

__all__ = ["CellReader", "execute_request"]

PROTOCOL_VERSION: Final = "5.3"


def execute_request(code: str, *, session: str) -> tuple[str, str]:
    """The ``execute_request`` for ``code``: ``(msg_id, text frame)``."""
    msg_id = uuid.uuid4().hex
    now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    message = {
        "header": {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "username": "wrenn-sdk",
            "session": session,
            "date": now,
            "version": PROTOCOL_VERSION,
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
        "buffers": [],
        "channel": "shell",
    }
    return msg_id, json.dumps(message)


class CellReader:
    """Reads the kernel's answer to one ``execute_request``."""

    def __init__(self, msg_id: str) -> None:
        self.msg_id = msg_id
        self.done = False
        self.execution_count: int | None = None

    def feed(self, frame: str | bytes) -> list[CodeOutput]:
        """The outputs carried by one frame (usually zero or one)."""
        if self.done:
            return []
        try:
            message = json.loads(frame)
        except (ValueError, UnicodeDecodeError) as exc:
            raise WrennProtocolError("the kernel sent a frame that is not JSON") from exc
        if not isinstance(message, dict):
            raise WrennProtocolError("the kernel sent a frame that is not a JSON object")
        if not message:  # an empty object ends reading (as the official SDK)
            self.done = True
            return []
        parent = message.get("parent_header")
        if not isinstance(parent, dict) or parent.get("msg_id") != self.msg_id:
            return []
        header = message.get("header")
        kind = message.get("msg_type") or (
            header.get("msg_type") if isinstance(header, dict) else None
        )
        content = message.get("content")
        if not isinstance(content, dict):
            content = {}
        return self._handle(kind, content, message.get("channel"))

    def _handle(self, kind: Any, content: dict[str, Any], channel: Any) -> list[CodeOutput]:
        if kind == "stream":
            text = str(content.get("text", ""))
            if content.get("name") == "stderr":
                return [CodeStderr(text)]
            return [CodeStdout(text)]
        if kind == "execute_input":
            self._count(content)
            return []
        if kind == "execute_result":
            self._count(content)
            return [Result.from_bundle(_bundle(content), is_main_result=True)]
        if kind == "display_data":
            return [Result.from_bundle(_bundle(content))]
        if kind == "error":
            trace = content.get("traceback") or []
            return [
                ExecutionError(
                    name=str(content.get("ename", "")),
                    value=str(content.get("evalue", "")),
                    traceback="\n".join(str(line) for line in trace)
                    if isinstance(trace, list)
                    else str(trace),
                )
            ]
        if kind == "execute_reply" and content.get("status") == "aborted":
            return [
                ExecutionError(
                    "Aborted", "the kernel did not run this cell (an earlier one failed)"
                )
            ]
        if kind == "status" and content.get("execution_state") == "idle" and channel != "control":
            self.done = True
        return []

    def _count(self, content: dict[str, Any]) -> None:
        count = content.get("execution_count")
        if isinstance(count, int) and not isinstance(count, bool):
            self.execution_count = count


def _bundle(content: dict[str, Any]) -> dict[str, Any]:
    data = content.get("data")
    return data if isinstance(data, dict) else {}
