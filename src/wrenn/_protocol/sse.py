"""A sans-I/O parser for ``text/event-stream`` (bytes in, messages out).

Follows the WHATWG rules the Wrenn stream needs: lines end in LF, CRLF or CR; ``data:``
lines of one message are joined with LF; ``event:``, ``id:`` and ``retry:`` are kept;
lines starting with ``:`` are comments (keepalives); a blank line dispatches.
A line longer than ``max_line`` is a protocol error rather than unbounded memory.
"""

from __future__ import annotations

import attrs

from .._exceptions import WrennProtocolError

__all__ = ["SSEMessage", "SSEParser"]


@attrs.frozen
class SSEMessage:
    data: str
    event: str = "message"
    id: str | None = None
    retry_ms: int | None = None


class SSEParser:
    def __init__(self, *, max_line: int = 1 << 20) -> None:
        self._buffer = bytearray()
        self._max_line = max_line
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        """Add bytes; return the messages they completed (possibly none)."""
        out: list[SSEMessage] = []
        buf = self._buffer
        buf += chunk
        start = 0
        n = len(buf)
        i = 0
        while i < n:
            b = buf[i]
            if b == 0x0A and self._pending_cr and i == start:
                # the LF of a CRLF split across feeds, or right after a CR line end
                self._pending_cr = False
                start = i + 1
                i += 1
                continue
            self._pending_cr = False
            if b in (0x0A, 0x0D):
                line = bytes(buf[start:i])
                if b == 0x0D:
                    if i + 1 < n and buf[i + 1] == 0x0A:
                        i += 1
                    elif i + 1 == n:
                        self._pending_cr = True
                msg = self._line(line)
                if msg is not None:
                    out.append(msg)
                start = i + 1
            i += 1
        del buf[:start]
        if len(buf) > self._max_line:
            raise WrennProtocolError(f"event-stream line longer than {self._max_line} bytes")
        return out

    def _line(self, raw: bytes) -> SSEMessage | None:
        if not raw:
            return self._dispatch()
        line = raw.decode("utf-8", errors="replace")
        if line.startswith(":"):
            return None
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self._id = value
        elif field == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> SSEMessage | None:
        if not self._data:
            self._event = ""
            return None
        msg = SSEMessage(
            data="\n".join(self._data),
            event=self._event or "message",
            id=self._id,
            retry_ms=self._retry,
        )
        self._data = []
        self._event = ""
        return msg
