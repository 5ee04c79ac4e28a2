"""``client.processes``: run commands in a capsule, list and kill its processes (PROTOCOL §6, §8).

These are the raw REST calls; ``cmd`` is executed directly (no shell) with ``args``.
"""

from __future__ import annotations

import base64
import binascii
import builtins
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Final, Literal, final

from .._converter import structure, structure_list
from .._exceptions import WrennProtocolError, WrennValidationError
from .._http import HTTPTransport, api_path, response_json
from .._models import BackgroundProcess, CommandResult, ProcessInfo

if TYPE_CHECKING:
    from .streams import ExecStream

__all__ = ["AsyncProcesses"]

DEFAULT_COMMAND_TIMEOUT: Final = 30
HTTP_SLACK: Final = 10.0  # the HTTP deadline exceeds the command's own by this much
NO_LIMIT: Final = 86400.0  # "no timeout": a day, so a lost connection still ends the call


def _exec_body(
    cmd: str,
    args: Sequence[str] | None,
    envs: Mapping[str, str] | None,
    cwd: str | None,
) -> dict[str, Any]:
    if not isinstance(cmd, str) or not cmd:
        raise WrennValidationError("cmd must be a non-empty string")
    body: dict[str, Any] = {"cmd": cmd}
    if args is not None:
        if isinstance(args, str) or not all(isinstance(a, str) for a in args):
            raise WrennValidationError("args must be a sequence of strings")
        body["args"] = list(args)
    if envs is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in envs.items()):
            raise WrennValidationError("envs must map strings to strings")
        body["envs"] = dict(envs)
    if cwd is not None:
        body["cwd"] = cwd
    return body


def decode_output(data: Any) -> CommandResult:
    """Turn an exec answer into a :class:`CommandResult` (exact bytes kept for base64)."""
    if not isinstance(data, dict):
        raise WrennProtocolError("exec answer is not a JSON object")
    stdout, stderr = data.get("stdout") or "", data.get("stderr") or ""
    if not isinstance(stdout, str) or not isinstance(stderr, str):
        raise WrennProtocolError("exec answer has non-text output")
    if data.get("encoding") == "base64":
        try:
            out_b, err_b = base64.b64decode(stdout), base64.b64decode(stderr)
        except (binascii.Error, ValueError) as exc:
            raise WrennProtocolError("exec answer has invalid base64 output") from exc
        stdout = out_b.decode("utf-8", errors="replace")
        stderr = err_b.decode("utf-8", errors="replace")
    else:
        out_b, err_b = stdout.encode(), stderr.encode()
    code = data.get("exit_code")
    duration = data.get("duration_ms")
    return CommandResult(
        stdout=stdout,
        stderr=stderr,
        exit_code=code if isinstance(code, int) and not isinstance(code, bool) else -1,
        duration_ms=duration if isinstance(duration, int) else None,
        stdout_bytes=out_b,
        stderr_bytes=err_b,
    )


@final
class AsyncProcesses:
    """Reached as ``client.processes``."""

    def __init__(self, http: HTTPTransport) -> None:
        self._http = http

    async def run(
        self,
        capsule_id: str,
        cmd: str,
        *,
        args: Sequence[str] | None = None,
        envs: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout_sec: int | None = DEFAULT_COMMAND_TIMEOUT,
    ) -> CommandResult:
        """``POST /v1/capsules/{id}/exec``: run a command and wait for it to finish.

        ``timeout_sec`` bounds the command in the capsule (the server kills it and answers
        :class:`WrennAgentError`); the HTTP call is bounded ``10`` s beyond that. The call
        is never retried once it may have reached the server (the command could run
        twice). Cancelling it abandons the answer; the command may still run to its end.
        ``timeout_sec=None`` sends no limit (the server's own applies) and waits as long
        as the command runs.
        """
        if timeout_sec is not None and (
            not isinstance(timeout_sec, int) or isinstance(timeout_sec, bool) or timeout_sec < 1
        ):
            raise WrennValidationError("timeout_sec must be a positive integer")
        body = _exec_body(cmd, args, envs, cwd)
        if timeout_sec is not None:
            body["timeout_sec"] = timeout_sec
        resp = await self._http.request(
            "POST",
            api_path("capsules", capsule_id, "exec"),
            json_body=body,
            timeout=NO_LIMIT if timeout_sec is None else timeout_sec + HTTP_SLACK,
        )
        return decode_output(response_json(resp, what="exec"))

    async def start(
        self,
        capsule_id: str,
        cmd: str,
        *,
        args: Sequence[str] | None = None,
        envs: Mapping[str, str] | None = None,
        cwd: str | None = None,
        tag: str | None = None,
        timeout: float | None = None,
    ) -> BackgroundProcess:
        """Start a command in the background; returns its pid and tag at once."""
        body = _exec_body(cmd, args, envs, cwd)
        body["background"] = True
        if tag is not None:
            if not isinstance(tag, str) or not tag or "/" in tag:
                raise WrennValidationError("tag must be a non-empty string without '/'")
            body["tag"] = tag
        resp = await self._http.request(
            "POST", api_path("capsules", capsule_id, "exec"), json_body=body, timeout=timeout
        )
        return structure(response_json(resp, what="background exec"), BackgroundProcess)

    async def list(
        self, capsule_id: str, *, timeout: float | None = None
    ) -> builtins.list[ProcessInfo]:
        """``GET /v1/capsules/{id}/processes``: every process the capsule tracks."""
        resp = await self._http.request(
            "GET", api_path("capsules", capsule_id, "processes"), timeout=timeout
        )
        data = response_json(resp, what="process list")
        if not isinstance(data, dict):
            raise WrennProtocolError("process list is not a JSON object")
        return structure_list(data.get("processes") or [], ProcessInfo)

    def stream(
        self,
        capsule_id: str,
        cmd: str,
        *,
        args: Sequence[str] | None = None,
        envs: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> AbstractAsyncContextManager[ExecStream]:
        """Run a command and stream its output over a WebSocket::

            async with client.processes.stream(cid, "/bin/sh", args=["-c", "make"]) as run:
                async for event in run:
                    ...

        ``cmd`` runs without a shell. Leaving the block closes the stream; a process that
        is still running keeps running (kill it by pid if it should not). Raises
        :class:`WrennConnectionError` if the stream ends before the process exits.
        """
        from .streams import exec_path, open_stream, start_frame

        return open_stream(self._http, exec_path(capsule_id), start_frame(cmd, args, envs, cwd))

    def attach(
        self, capsule_id: str, selector: int | str
    ) -> AbstractAsyncContextManager[ExecStream]:
        """Stream a running process's output from now on (no replay), by pid or tag."""
        from .streams import attach_path, open_stream

        return open_stream(self._http, attach_path(capsule_id, selector), None)

    async def kill(
        self,
        capsule_id: str,
        selector: int | str,
        *,
        signal: Literal["SIGKILL", "SIGTERM"] = "SIGKILL",
        timeout: float | None = None,
    ) -> None:
        """Signal a process by pid or tag. Unknown ones raise :class:`WrennNotFoundError`."""
        if signal not in ("SIGKILL", "SIGTERM"):
            raise WrennValidationError("signal must be 'SIGKILL' or 'SIGTERM'")
        await self._http.request(
            "DELETE",
            api_path("capsules", capsule_id, "processes", str(selector)),
            params={"signal": signal} if signal == "SIGTERM" else None,
            timeout=timeout,
        )
