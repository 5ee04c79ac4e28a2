"""``capsule.commands``: run, stream, attach, list and kill processes in one capsule."""

from __future__ import annotations

import abc
import builtins
import inspect
import math
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Final, Literal, final, overload

import anyio
import anyio.abc
import attrs

from ._config import check_seconds
from ._exceptions import (
    CommandExitError,
    WrennAgentError,
    WrennAPIError,
    WrennCommandTimeoutError,
    WrennError,
    WrennNotFoundError,
)
from ._models import CommandResult, ProcessInfo
from ._models.base import DataclassShaped, dataclass_view
from ._models.streams import StreamEvent, StreamStderr, StreamStdout
from ._protocol.exec_stream import check_args
from ._resources import AsyncProcesses
from ._resources.scoped import ScopedIterable
from ._resources.streams import AsyncExecStream, process_selector
from ._text import wire_text

__all__ = [
    "AsyncCommands",
    "CommandHandle",
    "ScopedIterable",
    "StreamErrorEvent",
    "StreamHandle",
]

OutputCallback = Callable[[str], Awaitable[None] | None]
DEFAULT_TIMEOUT: Final = 30.0
# The server's own kill timer is a backstop behind the client's deadline: this much later.
SERVER_TIMER_SLACK: Final = 5
# With no client deadline the server still wants a number (0 would mean its default 30 s).
NO_SERVER_LIMIT: Final = 30 * 24 * 3600
# Ending a process the call started: SIGTERM, this long to go, then SIGKILL; all bounded.
TERMINATE_GRACE: Final = 1.0
TERMINATE_BOUND: Final = 5.0


def _argv(cmd: str, args: Sequence[str] | None) -> tuple[str, list[str]]:
    """Without ``args`` the command line goes through ``/bin/sh -c`` (as the official SDK)."""
    wire_text(cmd, "cmd")
    if args is None:
        return "/bin/sh", ["-c", cmd]
    return cmd, check_args(args)


def _marked_argv(cmd: str, args: Sequence[str] | None, marker: str) -> tuple[str, list[str]]:
    """The command with ``marker`` in its argument list, so that the call can find and
    end it in the capsule's process list if it is left before the answer (a foreground
    exec has no tag). The marker is the shell's ``$1``; the command runs as before:
    a command line through ``sh -c``, a program with arguments by ``exec``."""
    wire_text(cmd, "cmd")
    if args is None:
        return "/bin/sh", ["-c", cmd, "/bin/sh", marker]  # $0 as under a plain sh -c
    return "/bin/sh", ["-c", 'shift; exec "$@"', "sh", marker, cmd, *check_args(args)]


def server_timer(deadline: float) -> int:
    """The server-side kill timer sent with a command: the deadline rounded up, plus slack."""
    if math.isinf(deadline):
        return NO_SERVER_LIMIT
    return math.ceil(deadline) + SERVER_TIMER_SLACK


def raise_if_server_timed_out(exc: WrennAgentError, deadline: float) -> None:
    """Raise :class:`WrennTimeoutError` when ``exc`` says the server's backstop timer
    (:func:`server_timer`) ended the command before the call's own deadline did."""
    if "timed out" in str(exc).lower():
        raise WrennCommandTimeoutError(
            f"command did not finish within {deadline:g} s (ended by the server)"
        ) from exc


async def end_process(
    processes: AsyncProcesses, capsule_id: str, selector: int | str | None
) -> None:
    """End a process a call started (shielded from cancellation, at most 5 s); errors are
    swallowed: the capsule may be gone, or the process already ended."""
    if selector is None:
        return
    with anyio.CancelScope(shield=True), anyio.move_on_after(TERMINATE_BOUND):
        try:
            await processes.terminate(capsule_id, selector, grace=TERMINATE_GRACE)
        except WrennError:
            pass


async def _end_marked(processes: AsyncProcesses, capsule_id: str, marker: str) -> None:
    """End the foreground process carrying ``marker`` in its arguments."""
    await _end_found(processes, capsule_id, lambda p: marker in p.args)


async def _end_tagged(processes: AsyncProcesses, capsule_id: str, tag: str) -> None:
    """End the background process with ``tag`` that a start left early may have started."""
    await _end_found(processes, capsule_id, lambda p: p.tag == tag)


async def _end_found(
    processes: AsyncProcesses, capsule_id: str, match: Callable[[ProcessInfo], bool]
) -> None:
    """End the processes ``match`` picks from the capsule's list, looked for a few times
    (the request that started one may still be on its way), shielded and bounded."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(TERMINATE_BOUND):
        for _ in range(4):
            try:
                found = [p.pid for p in await processes.list(capsule_id) if match(p)]
            except WrennError:
                return
            if found:
                for pid in found:
                    await end_process(processes, capsule_id, pid)
                return
            await anyio.sleep(0.15)


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


StreamHandle = ScopedIterable[AsyncExecStream, StreamEvent]


@final
@dataclass_view("pid", "tag", "capsule_id")
@attrs.frozen
class CommandHandle(DataclassShaped, abc.ABC):
    """A background process: its ``pid`` and ``tag``, and ways to follow or stop it.

    (An ABC only so that the sync handle is registered as one: a background run returns
    a ``CommandHandle`` in both APIs, as in the official SDK, whose name it keeps.)
    """

    pid: int
    tag: str
    capsule_id: str
    _processes: AsyncProcesses | None = attrs.field(
        default=None, repr=False, eq=False, alias="_processes"
    )

    def _require(self) -> AsyncProcesses:
        if self._processes is None:
            raise WrennError("this handle was built by hand: get one from commands.run()")
        return self._processes

    def stream(self) -> AbstractAsyncContextManager[AsyncExecStream]:
        """Its output from now on (no replay of earlier output), then ``exit``. Leaving
        the block leaves the process running (it was started in the background)."""
        return self._require().attach(self.capsule_id, self.tag)

    async def wait(self) -> int:
        """Wait for the process to end; return its exit code (-1 when killed).

        Wait while it runs: servers keep no exit code of a background process that has
        ended, so waiting for one that already ended raises
        :class:`WrennNotFoundError` (saying so). To get the exit code of a command that
        may be quick, run it in the foreground or follow it from its start (``stream``).
        """
        try:
            async with self.stream() as run:
                return await run.wait()
        except WrennNotFoundError:
            raise WrennNotFoundError(
                f"process {self.pid} (tag {self.tag!r}) is not running: it has ended, and"
                " servers keep no exit code of an ended background process; wait() while"
                " it runs, or run it in the foreground to get its exit code"
            ) from None

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
        timeout: float | None = ...,
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
        timeout: float | None = ...,
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
        timeout: float | None = DEFAULT_TIMEOUT,
        tag: str | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        check: bool = False,
    ) -> CommandResult | CommandHandle:
        """Run a command and wait for it (or, with ``background=True``, start it).

        Without ``args``, ``cmd`` is a shell command line (``/bin/sh -c cmd``); with
        ``args`` it is the program, run without a shell. ``on_stdout``/``on_stderr``
        (plain or async callables) get the output as it arrives; the command then streams
        over a WebSocket. ``check=True`` raises :class:`CommandExitError` on a non-zero
        exit.

        ``timeout`` (seconds, or ``None`` for no limit) is a deadline over the whole
        call: when it passes, the command is ended in the capsule and
        :class:`WrennTimeoutError` (a ``TimeoutError``) is raised. The server is also
        given a kill timer a little later than the deadline, as a backstop.

        The command belongs to the call: if the call is left before the command ends —
        cancellation, an enclosing deadline, Ctrl-C in the sync API, an exception from a
        callback — the command is ended in the capsule (SIGTERM, then SIGKILL after 1 s;
        shielded, at most 5 s) before the exception goes on unchanged. A background
        command (``background=True``) is not waited for and is left running; ``timeout``
        bounds only its start, and a start left before its answer (timeout,
        cancellation, a broken connection) ends the process if it did start.
        """
        deadline = check_seconds(timeout)
        if background:
            program, argv = _argv(cmd, args)
            # A tag of our own when none is given (the server's form, ``proc-`` and 8 hex
            # digits): a start that is left before its answer may have started the
            # process, and that tag finds it to end it.
            chosen = tag if tag is not None else f"proc-{secrets.token_hex(4)}"
            try:
                started = await self._processes.start(
                    self._capsule_id,
                    program,
                    args=argv,
                    envs=envs,
                    cwd=cwd,
                    tag=chosen,
                    timeout=None if math.isinf(deadline) else deadline,
                )
            except WrennAPIError:
                raise  # answered: nothing was started
            except BaseException:  # a timeout, a cancellation, a broken connection
                await _end_tagged(self._processes, self._capsule_id, chosen)
                raise
            return CommandHandle(
                pid=started.pid,
                tag=started.tag,
                capsule_id=self._capsule_id,
                _processes=self._processes,
            )
        if on_stdout is None and on_stderr is None:
            result = await self._run_plain(cmd, args, envs, cwd, deadline)
        else:
            program, argv = _argv(cmd, args)
            result = await self._run_streamed(
                program, argv, envs, cwd, deadline, on_stdout, on_stderr
            )
        if check and result.exit_code != 0:
            raise CommandExitError(result)
        return result

    async def _run_plain(
        self,
        cmd: str,
        args: Sequence[str] | None,
        envs: Mapping[str, str] | None,
        cwd: str | None,
        deadline: float,
    ) -> CommandResult:
        marker = f"wrenn-run-{secrets.token_hex(8)}"
        program, argv = _marked_argv(cmd, args, marker)
        result: CommandResult | None = None
        try:
            with anyio.move_on_after(deadline):
                result = await self._processes.run(
                    self._capsule_id,
                    program,
                    args=argv,
                    envs=envs,
                    cwd=cwd,
                    timeout_sec=server_timer(deadline),
                    timeout=math.inf,  # the deadline above bounds the call
                )
        except WrennAgentError as exc:
            raise_if_server_timed_out(exc, deadline)
            raise
        except BaseException:
            await _end_marked(self._processes, self._capsule_id, marker)
            raise
        if result is None:
            await _end_marked(self._processes, self._capsule_id, marker)
            raise WrennCommandTimeoutError(f"command did not finish within {deadline:g} s (ended)")
        return result

    async def _run_streamed(
        self,
        program: str,
        argv: list[str],
        envs: Mapping[str, str] | None,
        cwd: str | None,
        deadline: float,
        on_stdout: OutputCallback | None,
        on_stderr: OutputCallback | None,
    ) -> CommandResult:
        out: builtins.list[str] = []
        err: builtins.list[str] = []
        # the exact bytes, when the stream has binary output frames (None: it has not)
        out_raw: builtins.list[bytes] | None = []
        err_raw: builtins.list[bytes] | None = []
        started = anyio.current_time()
        code: int | None = None
        with anyio.move_on_after(deadline) as scope:
            async with self._stream(program, argv, envs, cwd) as run:
                if not run.binary_frames:
                    out_raw = err_raw = None
                async for event in run:
                    if isinstance(event, StreamStdout):
                        out.append(event.data)
                        if out_raw is not None and event.raw is not None:
                            out_raw.append(event.raw)
                        await _call(on_stdout, event.data)
                    elif isinstance(event, StreamStderr):
                        err.append(event.data)
                        if err_raw is not None and event.raw is not None:
                            err_raw.append(event.raw)
                        await _call(on_stderr, event.data)
                code = run.exit_code
        if scope.cancelled_caught and code is None:
            raise WrennCommandTimeoutError(f"command did not finish within {deadline:g} s (ended)")
        stdout, stderr = "".join(out), "".join(err)
        return CommandResult(
            stdout=stdout,
            stderr=stderr,
            exit_code=-1 if code is None else code,
            duration_ms=int((anyio.current_time() - started) * 1000),
            stdout_bytes=stdout.encode() if out_raw is None else b"".join(out_raw),
            stderr_bytes=stderr.encode() if err_raw is None else b"".join(err_raw),
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
        ends before ``exit`` raises. The command belongs to the block: leaving it before
        the command exited (``break``, an exception, cancellation, a deadline) ends the
        command in the capsule (SIGTERM, then SIGKILL after 1 s; shielded, at most 5 s).
        To leave a command running, start it with ``run(..., background=True)`` and
        follow it with ``connect``. Output is buffered up to a bound while you do not
        read, then the server is slowed down.
        """
        program, argv = _argv(cmd, args)
        return StreamHandle(lambda: self._stream(program, argv, envs, cwd), self._owner)

    def _stream(
        self,
        program: str,
        argv: builtins.list[str],
        envs: Mapping[str, str] | None,
        cwd: str | None,
    ) -> AbstractAsyncContextManager[AsyncExecStream]:
        async def end(pid: int) -> None:
            await end_process(self._processes, self._capsule_id, pid)

        return self._processes._stream_owned(
            self._capsule_id, program, args=argv, envs=envs, cwd=cwd, on_early_exit=end
        )

    def connect(self, selector: int | str) -> StreamHandle:
        """Follow a running process by pid or tag (output from now on); enter it or
        iterate it directly, like :meth:`stream`. Leaving leaves the process running."""
        process_selector(selector)  # at the call, not when the stream opens
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
