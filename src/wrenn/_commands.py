"""``capsule.commands``: run, stream, attach, list and kill processes in one capsule."""

from __future__ import annotations

import builtins
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Final, Literal, final, overload

import anyio
import attrs

from ._exceptions import CommandExitError, WrennError, WrennTimeoutError
from ._models import CommandResult, ProcessInfo
from ._models.streams import StreamStderr, StreamStdout
from ._resources import AsyncProcesses
from ._resources.streams import AsyncExecStream

__all__ = ["AsyncCommandHandle", "AsyncCommands"]

OutputCallback = Callable[[str], Awaitable[None] | None]
DEFAULT_TIMEOUT: Final = 30


def _argv(cmd: str, args: Sequence[str] | None) -> tuple[str, list[str]]:
    """Without ``args`` the command line goes through ``/bin/sh -c`` (as the official SDK)."""
    if args is None:
        return "/bin/sh", ["-c", cmd]
    return cmd, list(args)


async def _call(callback: OutputCallback | None, data: str) -> None:
    if callback is None:
        return
    result = callback(data)
    if inspect.isawaitable(result):
        await result


@final
@attrs.frozen
class AsyncCommandHandle:
    """A background process: its ``pid`` and ``tag``, and ways to follow or stop it."""

    pid: int
    tag: str
    capsule_id: str
    _processes: AsyncProcesses = attrs.field(repr=False, alias="_processes")

    def stream(self) -> AbstractAsyncContextManager[AsyncExecStream]:
        """Its output from now on (no replay of earlier output), then ``exit``."""
        return self._processes.attach(self.capsule_id, self.tag)

    async def wait(self) -> int:
        """Wait for the process to end; return its exit code (-1 when killed)."""
        async with self.stream() as run:
            return await run.wait()

    async def kill(self, *, signal: Literal["SIGKILL", "SIGTERM"] = "SIGKILL") -> None:
        await self._processes.kill(self.capsule_id, self.tag, signal=signal)


@final
class AsyncCommands:
    """Reached as ``capsule.commands``."""

    def __init__(self, processes: AsyncProcesses, capsule_id: str) -> None:
        self._processes = processes
        self._capsule_id = capsule_id

    @overload
    async def run(
        self,
        cmd: str,
        *,
        args: Sequence[str] | None = ...,
        background: Literal[False] = ...,
        envs: Mapping[str, str] | None = ...,
        cwd: str | None = ...,
        timeout: int = ...,
        tag: str | None = ...,
        on_stdout: OutputCallback | None = ...,
        on_stderr: OutputCallback | None = ...,
        check: bool = ...,
    ) -> CommandResult: ...

    @overload
    async def run(
        self,
        cmd: str,
        *,
        args: Sequence[str] | None = ...,
        background: Literal[True],
        envs: Mapping[str, str] | None = ...,
        cwd: str | None = ...,
        timeout: int = ...,
        tag: str | None = ...,
        on_stdout: OutputCallback | None = ...,
        on_stderr: OutputCallback | None = ...,
        check: bool = ...,
    ) -> AsyncCommandHandle: ...

    async def run(
        self,
        cmd: str,
        *,
        args: Sequence[str] | None = None,
        background: bool = False,
        envs: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: int = DEFAULT_TIMEOUT,
        tag: str | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        check: bool = False,
    ) -> CommandResult | AsyncCommandHandle:
        """Run a command and wait for it (or, with ``background=True``, start it).

        Without ``args``, ``cmd`` is a shell command line (``/bin/sh -c cmd``); with
        ``args`` it is the program, run without a shell. ``timeout`` bounds the command:
        it is killed and :class:`WrennTimeoutError` (streaming) or :class:`WrennAgentError`
        (plain) is raised. ``on_stdout``/``on_stderr`` (plain or async callables) get the
        output as it arrives; the command then streams over a WebSocket. ``check=True``
        raises :class:`CommandExitError` on a non-zero exit.

        Cancellation abandons the wait; the command may keep running in the capsule
        (streamed runs are killed on cancellation, plain ones cannot be reached).
        """
        program, argv = _argv(cmd, args)
        if background:
            started = await self._processes.start(
                self._capsule_id, program, args=argv, envs=envs, cwd=cwd, tag=tag
            )
            return AsyncCommandHandle(
                pid=started.pid,
                tag=started.tag,
                capsule_id=self._capsule_id,
                _processes=self._processes,
            )
        if on_stdout is None and on_stderr is None:
            result = await self._processes.run(
                self._capsule_id, program, args=argv, envs=envs, cwd=cwd, timeout_sec=timeout
            )
        else:
            result = await self._run_streamed(
                program, argv, envs, cwd, timeout, on_stdout, on_stderr
            )
        if check and result.exit_code != 0:
            raise CommandExitError(result)
        return result

    async def _run_streamed(
        self,
        program: str,
        argv: list[str],
        envs: Mapping[str, str] | None,
        cwd: str | None,
        timeout: int,
        on_stdout: OutputCallback | None,
        on_stderr: OutputCallback | None,
    ) -> CommandResult:
        out: builtins.list[str] = []
        err: builtins.list[str] = []
        started = anyio.current_time()
        pid: int | None = None
        try:
            with anyio.fail_after(timeout):
                async with self._processes.stream(
                    self._capsule_id, program, args=argv, envs=envs, cwd=cwd
                ) as run:
                    async for event in run:
                        pid = run.pid
                        if isinstance(event, StreamStdout):
                            out.append(event.data)
                            await _call(on_stdout, event.data)
                        elif isinstance(event, StreamStderr):
                            err.append(event.data)
                            await _call(on_stderr, event.data)
                    code = run.exit_code
        except BaseException as exc:
            if pid is not None and run.exit_code is None:  # do not leave it running
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    try:
                        await self._processes.kill(self._capsule_id, pid)
                    except WrennError:
                        pass
            if isinstance(exc, TimeoutError) and not isinstance(exc, WrennError):
                raise WrennTimeoutError(f"command did not finish within {timeout} s") from exc
            raise
        stdout, stderr = "".join(out), "".join(err)
        return CommandResult(
            stdout=stdout,
            stderr=stderr,
            exit_code=-1 if code is None else code,
            duration_ms=int((anyio.current_time() - started) * 1000),
            stdout_bytes=stdout.encode(),
            stderr_bytes=stderr.encode(),
        )

    def stream(
        self,
        cmd: str,
        *,
        args: Sequence[str] | None = None,
        envs: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> AbstractAsyncContextManager[AsyncExecStream]:
        """``async with cap.commands.stream("make") as run: async for event in run``.

        Events are StreamStart, StreamStdout, StreamStderr, then StreamExit; a stream that
        ends before ``exit`` raises. Leaving the block early detaches (the process keeps
        running); output is buffered up to a bound, then the server is slowed down.
        """
        program, argv = _argv(cmd, args)
        return self._processes.stream(self._capsule_id, program, args=argv, envs=envs, cwd=cwd)

    def connect(self, selector: int | str) -> AbstractAsyncContextManager[AsyncExecStream]:
        """Follow a running process by pid or tag (output from now on)."""
        return self._processes.attach(self._capsule_id, selector)

    async def list(self) -> builtins.list[ProcessInfo]:
        return await self._processes.list(self._capsule_id)

    async def kill(
        self, selector: int | str, *, signal: Literal["SIGKILL", "SIGTERM"] = "SIGKILL"
    ) -> None:
        """Signal a process by pid or tag; unknown ones raise :class:`WrennNotFoundError`."""
        await self._processes.kill(self._capsule_id, selector, signal=signal)
