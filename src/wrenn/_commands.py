"""``capsule.commands``: run, stream, attach, list and kill processes in one capsule."""

from __future__ import annotations

import abc
import builtins
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Final, Literal, final, overload

import anyio
import anyio.abc
import attrs

from ._exceptions import WrennError, WrennNotFoundError, WrennTimeoutError
from ._models import CommandResult, ProcessInfo
from ._resources import AsyncProcesses
from ._resources.scoped import ScopedIterable
from ._resources.streams import ExecStream
from ._stream_protocol import StreamEvent, StreamStderr, StreamStdout

__all__ = [
    "AsyncCommands",
    "CommandExitError",
    "CommandHandle",
    "ScopedIterable",
    "StreamErrorEvent",
    "StreamHandle",
]


OutputCallback = Callable[[str], Awaitable[None] | None]
DEFAULT_TIMEOUT: Final = 30


class CommandExitError(WrennError):
    """A command run with ``check=True`` exited with a non-zero status (see ``result``)."""

    default_code = "command_failed"

    def __init__(self, result: CommandResult) -> None:
        tail = result.stderr.strip()[-200:]
        super().__init__(
            f"command exited with status {result.exit_code}" + (f": {tail}" if tail else "")
        )
        self.result = result


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


@attrs.frozen
class StreamErrorEvent:
    """The official SDK's in-band error event. This SDK never yields it: an in-band
    error raises the matching :class:`WrennError` instead (the class exists so that
    code importing it keeps working)."""

    data: str = ""
    type: str = "error"


StreamHandle = ScopedIterable[ExecStream, StreamEvent]


@final
@attrs.frozen
class CommandHandle(abc.ABC):
    """A background process: its ``pid`` and ``tag``, and ways to follow or stop it.

    (An ABC only so that the sync handle is registered as one: a background run returns
    a ``CommandHandle`` in both APIs, as in the official SDK.)
    """

    pid: int
    tag: str
    capsule_id: str
    _processes: AsyncProcesses | None = attrs.field(default=None, repr=False, alias="_processes")

    def _require(self) -> AsyncProcesses:
        if self._processes is None:
            raise WrennError("this handle was built by hand: get one from commands.run()")
        return self._processes

    def stream(self) -> AbstractAsyncContextManager[ExecStream]:
        """Its output from now on (no replay of earlier output), then ``exit``."""
        return self._require().attach(self.capsule_id, self.tag)

    async def wait(self) -> int:
        """Wait for the process to end; return its exit code (-1 when killed)."""
        async with self.stream() as run:
            return await run.wait()

    async def kill(self, *, signal: Literal["SIGKILL", "SIGTERM"] = "SIGKILL") -> None:
        await self._require().kill(self.capsule_id, self.tag, signal=signal)


@final
class AsyncCommands:
    """Reached as ``capsule.commands``."""

    def __init__(
        self,
        processes: AsyncProcesses,
        capsule_id: str,
        owner: Callable[[], anyio.abc.TaskGroup | None] = lambda: None,
    ) -> None:
        self._processes = processes
        self._capsule_id = capsule_id
        self._owner = owner  # the task group of the capsule's scope, if any

    @overload
    async def run(
        self,
        cmd: str,
        *,
        args: Sequence[str] | None = ...,
        background: Literal[False] = ...,
        envs: Mapping[str, str] | None = ...,
        cwd: str | None = ...,
        timeout: int | None = ...,
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
        timeout: int | None = ...,
        tag: str | None = ...,
        on_stdout: OutputCallback | None = ...,
        on_stderr: OutputCallback | None = ...,
        check: bool = ...,
    ) -> CommandHandle: ...

    async def run(
        self,
        cmd: str,
        *,
        args: Sequence[str] | None = None,
        background: bool = False,
        envs: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: int | None = DEFAULT_TIMEOUT,
        tag: str | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        check: bool = False,
    ) -> CommandResult | CommandHandle:
        """Run a command and wait for it (or, with ``background=True``, start it).

        Without ``args``, ``cmd`` is a shell command line (``/bin/sh -c cmd``); with
        ``args`` it is the program, run without a shell. ``timeout`` bounds the command:
        it is killed and :class:`WrennTimeoutError` (streaming) or :class:`WrennAgentError`
        (plain) is raised. ``on_stdout``/``on_stderr`` (plain or async callables) get the
        output as it arrives; the command then streams over a WebSocket. ``check=True``
        raises :class:`CommandExitError` on a non-zero exit. ``timeout=None`` sets no
        limit.

        Cancellation abandons the wait; the command may keep running in the capsule
        (streamed runs are killed on cancellation, plain ones cannot be reached).
        """
        program, argv = _argv(cmd, args)
        if background:
            started = await self._processes.start(
                self._capsule_id, program, args=argv, envs=envs, cwd=cwd, tag=tag
            )
            return CommandHandle(
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
        timeout: int | None,
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
        args: Sequence[str] | None = None,
        *,
        envs: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> StreamHandle:
        """``async with cap.commands.stream("make") as run: async for event in run``
        (or ``async for event in cap.commands.stream("make")``; see :class:`StreamHandle`).

        Events are StreamStart, StreamStdout, StreamStderr, then StreamExit; a stream that
        ends before ``exit`` raises. Leaving the block early detaches (the process keeps
        running); output is buffered up to a bound, then the server is slowed down.
        """
        program, argv = _argv(cmd, args)
        return StreamHandle(
            lambda: self._processes.stream(
                self._capsule_id, program, args=argv, envs=envs, cwd=cwd
            ),
            self._owner,
        )

    def connect(self, selector: int | str) -> StreamHandle:
        """Follow a running process by pid or tag (output from now on); enter it or
        iterate it directly, like :meth:`stream`."""
        return StreamHandle(
            lambda: self._processes.attach(self._capsule_id, selector),
            self._owner,
            # iterated directly (the official form), a process that is gone is an empty
            # stream, as in the official SDK; `async with` raises WrennNotFoundError
            quiet=(WrennNotFoundError,),
        )

    async def list(self) -> builtins.list[ProcessInfo]:
        return await self._processes.list(self._capsule_id)

    async def kill(
        self, selector: int | str, *, signal: Literal["SIGKILL", "SIGTERM"] = "SIGKILL"
    ) -> None:
        """Signal a process by pid or tag; unknown ones raise :class:`WrennNotFoundError`."""
        await self._processes.kill(self._capsule_id, selector, signal=signal)
