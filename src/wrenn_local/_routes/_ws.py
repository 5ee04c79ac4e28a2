"""WebSocket plumbing shared by the exec, attach and PTY routes (PROTOCOL §2.2, §7.2).

Authentication follows §2.2: valid header credentials are checked before the upgrade;
missing or invalid ones still get the 101, then the first frame must be
``{"type": "auth", "token": <JWT>}`` within 5 s, else an in-band error and a close. A
malformed capsule ID is refused before the upgrade with the JSON 400.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring as _encode_text  # the C encoder where built
from typing import Any, Final

import anyio
from starlette.websockets import WebSocket, WebSocketDisconnect

from .._accounts import Principal
from .._agent_client import AgentFailure
from .._capsules import CapsuleRecord
from .._errors import ApiError, error_response
from .._ids import is_valid
from ._http import accounts_of, agent_broke_off, authenticate, capsules_of

try:  # optional (the `fast` extra): frames encode several times faster
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None  # type: ignore[assignment]

__all__ = [
    "BINARY_OUTPUT",
    "binary_offer",
    "broken_off",
    "dumps",
    "dumps_text",
    "end",
    "end_quietly",
    "not_running",
    "open_capsule",
    "receive_json",
    "send_frame",
]

AUTH_DEADLINE: Final = 5.0
BINARY_OUTPUT: Final = "wrenn.output.v1"
"""The subprotocol a client offers for binary output frames on exec and attach streams:
each stdout/stderr chunk is one binary message, a tag byte (1 stdout, 2 stderr) and the
raw bytes; every other frame stays JSON text. Clients that do not offer it get JSON."""


def dumps(value: Any) -> str:
    """Compact JSON text, with orjson when installed (the stdlib for what it refuses)."""
    if _orjson is not None:
        try:
            return _orjson.dumps(value).decode()
        except TypeError:  # orjson.JSONEncodeError: e.g. a lone surrogate
            pass
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def dumps_text(text: str) -> str:
    """``text`` as a JSON string (an output frame's ``data``), by the faster encoder for
    it: orjson is 4-15x faster on text with few escapes, but slower than the stdlib's C
    encoder where they are dense (``yes`` output: every other character a newline).
    The first 512 characters decide (counting the whole text would cost what it saves)."""
    if _orjson is not None and text.count("\n", 0, 512) * 5 < min(len(text), 512):
        try:
            return _orjson.dumps(text).decode()
        except TypeError:  # orjson.JSONEncodeError: e.g. a lone surrogate
            pass
    return _encode_text(text)


async def send_frame(ws: WebSocket, message: dict[str, Any]) -> None:
    """One JSON text frame."""
    await ws.send_text(dumps(message))


def binary_offer(ws: WebSocket) -> str | None:
    """The binary output subprotocol, if the client offered it and this server takes it."""
    if not ws.app.state.options.binary_frames:
        return None
    offered = ws.scope.get("subprotocols") or ()
    return BINARY_OUTPUT if BINARY_OUTPUT in offered else None


async def receive_json(ws: WebSocket) -> dict[str, Any] | None:
    """The next text frame as a JSON object (None for anything unparseable or binary)."""
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


async def open_capsule(
    ws: WebSocket, *, fatal: bool, subprotocol: str | None = None
) -> tuple[Principal, CapsuleRecord] | None:
    """Authenticate and find the running capsule; on failure answer as §2.2 and §7.2 say.
    ``subprotocol`` (one the client offered) is accepted with the upgrade."""
    capsule_id = ws.path_params["id"]
    if not is_valid("cl", capsule_id):
        await ws.send_denial_response(
            error_response(ApiError(400, "invalid_request", "invalid capsule ID"))
        )
        return None
    accounts = accounts_of(ws)
    try:
        principal = authenticate(accounts, ws, "key_or_jwt")
    except ApiError:
        principal = None
    await ws.accept(subprotocol=subprotocol)
    extra = {"fatal": True} if fatal else {}
    if principal is None:
        token = None
        with anyio.move_on_after(AUTH_DEADLINE):
            first = await receive_json(ws)
            if first and first.get("type") == "auth" and isinstance(first.get("token"), str):
                token = first["token"]
        try:
            if token is None:
                raise ApiError(401, "unauthorized", "authentication failed")
            user = accounts.check_jwt(token)
            principal = Principal(team_id=user.team_id, kind="user", actor_id=user.id, user=user)
        except ApiError:
            await end(ws, {"type": "error", "data": "authentication failed", **extra})
            return None
    try:
        record = capsules_of(ws).get(principal, capsule_id)
    except ApiError:
        await end(ws, {"type": "error", "data": "capsule not found", **extra})
        return None
    if record.status != "running" or record.sandbox is None:
        await end(
            ws,
            {"type": "error", "data": not_running(record), **extra},
        )
        return None
    return principal, record


def not_running(record: CapsuleRecord) -> str:
    """The error frame's text for a capsule that is not running (the SDKs map it)."""
    return f"capsule is not running (status: {record.status})"


def broken_off(record: CapsuleRecord, failure: AgentFailure | None, message: str) -> str:
    """What to tell a client whose stream the agent broke off (``failure``, or the
    stream's end without one): if the capsule is no longer running (destroyed or paused
    under the stream), its state, as a stream opened then would have been told: that is
    what happened, not an agent failure. Otherwise ``message``."""
    generic = failure is None or agent_broke_off(failure)
    return not_running(record) if generic and record.status != "running" else message


async def end(ws: WebSocket, message: dict[str, Any], code: int = 1000) -> None:
    try:
        await send_frame(ws, message)
        await ws.close(code)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass


async def end_quietly(ws: WebSocket) -> None:
    try:
        await ws.close(1000)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
