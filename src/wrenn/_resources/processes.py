"""``client.processes``: run commands in a capsule, list and kill its processes (PROTOCOL §6, §8).

These are the raw REST calls; ``cmd`` is executed directly (no shell) with ``args``.
"""

from __future__ import annotations

import base64
import binascii
import builtins
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final, Literal, final

import anyio

from .._config import CLIENT_DEFAULT, Timeout
from .._exceptions import WrennNotFoundError, WrennProtocolError, WrennValidationError
from .._models import BackgroundProcess, CommandResult, ProcessInfo
from .._protocol.exec_stream import exec_request, start_frame
from .._transport.http import HTTPTransport, api_path, response_json
from .converter import structure, structure_list
from .streams import AsyncExecStream, attach_path, exec_path, open_stream, process_selector

__all__ = ["AsyncProcesses"]

DEFAULT_COMMAND_TIMEOUT: Final = 30
HTTP_SLACK: Final = 10.0  # the HTTP deadline exceeds the command's own by this much
NO_LIMIT: Final = 86400.0  # "no timeout": a day, so a lost connection still ends the call


def _run_body(
    cmd: str,
    args: Sequence[str] | None,
    envs: Mapping[str, str] | None,
    cwd: str | None,
    timeout_sec: int | None,
) -> dict[str, Any]:
    """The body of a foreground ``exec`` (``timeout_sec`` checked)."""
    if timeout_sec is not None and (
        not isinstance(timeout_sec, int) or isinstance(timeout_sec, bool) or timeout_sec < 1
    ):
        raise WrennValidationError("timeout_sec must be a positive integer")
    body = exec_request(cmd, args, envs, cwd)
    if timeout_sec is not None:
        body["timeout_sec"] = timeout_sec
    return body


def _run_timeout(timeout_sec: int | None, timeout: Timeout) -> Timeout:
    """The HTTP deadline of a foreground ``exec``: by default the command's own plus slack."""
    if timeout is not CLIENT_DEFAULT:
        return timeout
    return NO_LIMIT if timeout_sec is None else timeout_sec + HTTP_SLACK


def _selects(process: ProcessInfo, selector: int | str) -> bool:
    return process.pid == selector or (process.tag is not None and process.tag == selector)


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
        timeout: Timeout = CLIENT_DEFAULT,
    ) -> CommandResult:
        """``POST /v1/capsules/{id}/exec``: run a command and wait for it to finish.

        ``timeout_sec`` bounds the command in the capsule (the server kills it and answers
        :class:`WrennAgentError`); ``timeout_sec=None`` sends no limit (the server's own
        applies). The HTTP call is bounded by ``timeout`` (by default 10 s beyond
        ``timeout_sec``, a day without it; ``None`` for no limit). The call is never
        retried once it may have reached the server (the command could run twice).
        Cancelling it abandons the answer; the command may still run to its end
        (``capsule.commands.run`` ends it).
        """
        resp = await self._http.request(
            "POST",
            api_path("capsules", capsule_id, "exec"),
            json_body=_run_body(cmd, args, envs, cwd, timeout_sec),
            timeout=_run_timeout(timeout_sec, timeout),
        )
        return decode_output(response_json(resp, what="exec"))

    def _run_blocking(
        self,
        capsule_id: str,
        cmd: str,
        *,
        args: Sequence[str] | None = None,
        envs: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout_sec: int | None = DEFAULT_COMMAND_TIMEOUT,
        timeout: Timeout = CLIENT_DEFAULT,
    ) -> CommandResult | None:
        """:meth:`run` done blocking in the calling thread, for the sync API (see
        ``HTTPTransport.request_blocking``); ``None`` when the transport cannot (then
        :meth:`run` through the portal is the way)."""
        resp = self._http.request_blocking(
            "POST",
            api_path("capsules", capsule_id, "exec"),
            json_body=_run_body(cmd, args, envs, cwd, timeout_sec),
            timeout=_run_timeout(timeout_sec, timeout),
        )
        return None if resp is None else decode_output(response_json(resp, what="exec"))

    async def start(
        self,
        capsule_id: str,
        cmd: str,
        *,
        args: Sequence[str] | None = None,
        envs: Mapping[str, str] | None = None,
        cwd: str | None = None,
        tag: str | None = None,
        timeout: Timeout = CLIENT_DEFAULT,
    ) -> BackgroundProcess:
        """Start a command in the background; returns its pid and tag at once."""
        body = exec_request(cmd, args, envs, cwd)
        body["background"] = True
        if tag is not None:
            if not isinstance(tag, str) or not tag or "/" in tag:
                raise WrennValidationError("tag must be a non-empty string without '/'")
            body["tag"] = tag
        resp = await self._http.request(
            "POST", api_path("capsules", capsule_id, "exec"), json_body=body, timeout=timeout
        )
        return structure(response_json(resp, what="background exec"), BackgroundProcess)

    async def terminate(self, capsule_id: str, selector: int | str, *, grace: float = 1.0) -> None:
        """End a process: SIGTERM, up to ``grace`` seconds for it to go, then SIGKILL.

        A process that is already gone (or never started) is fine. Not bounded by
        itself; callers shield and bound it (``capsule.commands`` does).
        """
        try:
            await self.kill(capsule_id, selector, signal="SIGTERM")  # checks the selector
        except WrennNotFoundError:
            return
        with anyio.move_on_after(grace):
            # polling: the process list is the only way to see a process end from here
            while any(_selects(p, selector) for p in await self.list(capsule_id)):  # noqa: ASYNC110
                await anyio.sleep(min(0.1, grace))
            return
        try:
            await self.kill(capsule_id, selector, signal="SIGKILL")
        except WrennNotFoundError:
            pass

    async def list(
        self, capsule_id: str, *, timeout: Timeout = CLIENT_DEFAULT
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
    ) -> AbstractAsyncContextManager[AsyncExecStream]:
        """Run a command and stream its output over a WebSocket::

            async with client.processes.stream(cid, "/bin/sh", args=["-c", "make"]) as run:
                async for event in run:
                    ...

        ``cmd`` runs without a shell. Leaving the block closes the stream; a process that
        is still running keeps running (kill it by pid if it should not). Raises
        :class:`WrennConnectionError` if the stream ends before the process exits.
        """
        return open_stream(self._http, exec_path(capsule_id), start_frame(cmd, args, envs, cwd))

    def _stream_owned(
        self,
        capsule_id: str,
        cmd: str,
        *,
        args: Sequence[str] | None,
        envs: Mapping[str, str] | None,
        cwd: str | None,
        on_early_exit: Callable[[int], Awaitable[None]],
    ) -> AbstractAsyncContextManager[AsyncExecStream]:
        """Like :meth:`stream`, for a caller that owns the process: leaving the block
        before it exited (entry included) awaits ``on_early_exit(pid)``."""
        return open_stream(
            self._http,
            exec_path(capsule_id),
            start_frame(cmd, args, envs, cwd),
            on_early_exit=on_early_exit,
        )

    def attach(
        self, capsule_id: str, selector: int | str
    ) -> AbstractAsyncContextManager[AsyncExecStream]:
        """Stream a running process's output from now on (no replay), by pid or tag."""
        return open_stream(self._http, attach_path(capsule_id, selector), None)

    async def kill(
        self,
        capsule_id: str,
        selector: int | str,
        *,
        signal: Literal["SIGKILL", "SIGTERM"] = "SIGKILL",
        timeout: Timeout = CLIENT_DEFAULT,
    ) -> None:
        """Signal a process by pid or tag. Unknown ones raise :class:`WrennNotFoundError`."""
        if signal not in ("SIGKILL", "SIGTERM"):
            raise WrennValidationError("signal must be 'SIGKILL' or 'SIGTERM'")
        segment = process_selector(selector)
        await self._http.request(
            "DELETE",
            api_path("capsules", capsule_id, "processes", segment),
            params={"signal": signal} if signal == "SIGTERM" else None,
            timeout=timeout,
        )
