"""Commands for synchronous code: ``cap.commands``, output streams, background handles."""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, final, overload

from .._commands import (
    AsyncCommands,
    CommandHandle,
    _end_marked,
    _marked_argv,
    raise_if_server_timed_out,
    server_timer,
)
from .._config import check_seconds
from .._exceptions import (
    CommandExitError,
    WrennAgentError,
    WrennCommandTimeoutError,
    WrennError,
    WrennNotFoundError,
    WrennTimeoutError,
)
from .._models import CommandResult
from .._models.base import DataclassShaped, dataclass_view
from .._models.streams import StreamEvent
from .._resources.streams import AsyncExecStream, process_selector
from .adapt import Facet, blocking
from .portal import PortalRunner

__all__ = ["Commands", "ExecStream", "SyncCommandHandle"]


@final
class ExecStream:
    """A command's output stream for synchronous code.

    ``with cap.commands.stream(...) as run: for event in run`` or simply
    ``for event in cap.commands.stream(...)`` (the connection closes when the loop ends or
    is left). Each ``next`` that finds nothing buffered crosses into the portal once and
    brings back every event already received (up to 256), so the per-event cost is a
    list pop. While nothing is read the bounded buffer fills and the server is slowed
    down (backpressure), nothing is dropped. Ctrl-C during a wait cancels it and closes
    the stream when the block is left.
    """

    def __init__(
        self,
        runner: PortalRunner,
        factory: Callable[[], Any],
        quiet: tuple[type[WrennError], ...] = (),
    ) -> None:
        self._runner = runner
        self._factory = factory
        self._quiet = quiet  # errors that end plain iteration as an empty stream
        self._async: AsyncExecStream | None = None
        self._cm: Any = None

    def __enter__(self) -> ExecStream:
        if self._cm is not None:
            raise WrennError("this stream is already open: enter it once (with ... as run)")
        cm = self._runner.enter(self._factory)
        self._async = cm.__enter__()
        self._cm = cm
        return self

    def __exit__(self, *exc: Any) -> None:
        cm, self._cm = self._cm, None
        if cm is not None:
            cm.__exit__(*exc)

    def __iter__(self) -> Iterator[StreamEvent]:
        if self._async is not None:
            yield from self._runner.iterate(self._async)
            return
        try:
            with self as opened:
                yield from opened._events()
        except WrennError as exc:
            if not isinstance(exc, self._quiet):
                raise

    def _events(self) -> Iterator[StreamEvent]:
        assert self._async is not None, "not open"
        return self._runner.iterate(self._async)

    @property
    def pid(self) -> int | None:
        return self._async.pid if self._async else None

    @property
    def exit_code(self) -> int | None:
        return self._async.exit_code if self._async else None

    @property
    def binary_frames(self) -> bool:
        """Whether the server accepted binary output frames (events carry ``raw``)."""
        return self._async.binary_frames if self._async else False

    def wait(self) -> int:
        """Read the rest of the stream; return the exit code."""
        if self._async is not None:
            return self._runner.call(self._async.wait)
        with self as opened:
            return opened._wait_open()

    def wait_started(self) -> int | None:
        """The process's pid once the server reported it (None if the stream ended
        first); events read meanwhile are kept for iteration. Only while open."""
        if self._async is None:
            raise WrennError("open the stream first: with cap.commands.stream(...) as run")
        return self._runner.call(self._async.wait_started)

    def stop(self) -> None:
        """Detach: ask the server to stop streaming (the process keeps running). Only
        meaningful while the stream is open."""
        if self._async is not None:
            self._runner.call(self._async.stop)

    def _wait_open(self) -> int:
        assert self._async is not None, "not open"
        return self._runner.call(self._async.wait)


@final
@dataclass_view("pid", "tag", "capsule_id", types={"pid": int, "tag": str, "capsule_id": str})
class SyncCommandHandle(Facet[CommandHandle], DataclassShaped):
    """A background process (sync form of :class:`wrenn.CommandHandle`, and registered
    as one: ``isinstance(handle, wrenn.CommandHandle)`` holds, as in the official SDK)."""

    __slots__ = ("capsule_id", "pid", "tag")

    def __init__(self, runner: PortalRunner, handle: CommandHandle) -> None:
        super().__init__(runner, handle)
        self.pid = handle.pid
        self.tag = handle.tag
        self.capsule_id = handle.capsule_id

    def __repr__(self) -> str:  # the official SDK's (dataclass) form
        return f"CommandHandle(pid={self.pid!r}, tag={self.tag!r}, capsule_id={self.capsule_id!r})"

    def __eq__(self, other: object) -> bool:
        # equal to the handle of the same process built as the official dataclass was
        # (``CommandHandle(pid, tag, capsule_id)``), sync or async
        if not isinstance(other, CommandHandle):
            return NotImplemented
        return (self.pid, self.tag, self.capsule_id) == (other.pid, other.tag, other.capsule_id)

    def __hash__(self) -> int:
        return hash((self.pid, self.tag, self.capsule_id))

    wait = blocking(CommandHandle.wait)
    kill = blocking(CommandHandle.kill)

    def stream(self) -> ExecStream:
        """Attach to the process's output from now on."""
        return ExecStream(self._runner, self._async.stream)


CommandHandle.register(SyncCommandHandle)  # a background run returns a CommandHandle


@final
class Commands(Facet[AsyncCommands]):
    """``capsule.commands`` for synchronous code (same names and arguments as async)."""

    __slots__ = ()

    @overload
    def run(
        self,
        cmd: str,
        *,
        args: Sequence[str] | None = ...,
        background: Literal[False] = ...,
        envs: Mapping[str, str] | None = ...,
        cwd: str | None = ...,
        timeout: float | None = ...,
        tag: str | None = ...,
        on_stdout: Callable[[str], Any] | None = ...,
        on_stderr: Callable[[str], Any] | None = ...,
        check: bool = ...,
    ) -> CommandResult: ...

    @overload
    def run(
        self,
        cmd: str,
        *,
        args: Sequence[str] | None = ...,
        background: Literal[True],
        envs: Mapping[str, str] | None = ...,
        cwd: str | None = ...,
        timeout: float | None = ...,
        tag: str | None = ...,
        on_stdout: Callable[[str], Any] | None = ...,
        on_stderr: Callable[[str], Any] | None = ...,
        check: bool = ...,
    ) -> SyncCommandHandle: ...

    def run(
        self,
        cmd: str,
        *,
        args: Sequence[str] | None = None,
        background: bool = False,
        envs: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = 30.0,
        tag: str | None = None,
        on_stdout: Callable[[str], Any] | None = None,
        on_stderr: Callable[[str], Any] | None = None,
        check: bool = False,
    ) -> CommandResult | SyncCommandHandle:
        """See :meth:`wrenn.AsyncCommands.run`. Callbacks run in the portal thread: keep
        them short (a slow callback slows the stream down, nothing is dropped). Ctrl-C
        cancels the call; a streamed command is killed.

        A foreground command without callbacks is one HTTP call, made blocking in the
        calling thread over plain http (no hand-over to the portal's loop); its
        promises are the async ones: the deadline, the command ended in the capsule when
        the call is left early (Ctrl-C included), the same errors."""
        if not background and on_stdout is None and on_stderr is None:
            done = self._run_here(cmd, args, envs, cwd, timeout)
            if done is not None:
                if check and done.exit_code != 0:
                    raise CommandExitError(done)
                return done

        async def run() -> CommandResult | CommandHandle:
            # `background` is a plain bool here, which none of the overloads take alone
            return await self._async.run(  # type: ignore[call-overload,misc,no-any-return]
                cmd,
                args=args,
                background=background,
                envs=envs,
                cwd=cwd,
                timeout=timeout,
                tag=tag,
                on_stdout=on_stdout,
                on_stderr=on_stderr,
                check=check,
            )

        result = self._runner.call(run)
        if isinstance(result, CommandHandle):
            return SyncCommandHandle(self._runner, result)
        assert isinstance(result, CommandResult)
        return result

    def _run_here(
        self,
        cmd: str,
        args: Sequence[str] | None,
        envs: Mapping[str, str] | None,
        cwd: str | None,
        timeout: float | None,
    ) -> CommandResult | None:
        """A foreground run in this thread (see ``AsyncCommands._run_plain``, whose
        steps these are); ``None`` when the transport has no blocking path."""
        deadline = check_seconds(timeout)
        commands = self._async
        processes, capsule_id = commands._processes, commands._capsule_id
        marker = f"wrenn-run-{secrets.token_hex(8)}"
        program, argv = _marked_argv(cmd, args, marker)
        end = time.monotonic() + deadline
        try:
            return processes._run_blocking(
                capsule_id,
                program,
                args=argv,
                envs=envs,
                cwd=cwd,
                timeout_sec=server_timer(deadline),
                timeout=None if math.isinf(deadline) else deadline,
            )
        except WrennAgentError as exc:
            raise_if_server_timed_out(exc, deadline)
            raise
        except WrennTimeoutError as exc:
            self._end_marked(marker)
            if time.monotonic() < end:  # not the call's deadline (e.g. connecting timed out)
                raise
            raise WrennCommandTimeoutError(
                f"command did not finish within {deadline:g} s (ended)"
            ) from exc
        except BaseException:  # Ctrl-C, a broken connection: the command belongs to the call
            self._end_marked(marker)
            raise

    def _end_marked(self, marker: str) -> None:
        """End the command carrying ``marker`` (through the portal, bounded)."""
        try:
            self._runner.call(_end_marked, self._async._processes, self._async._capsule_id, marker)
        except WrennError:
            pass  # the client is closed: nothing left to end it with

    def stream(
        self,
        cmd: str,
        args: Sequence[str] | None = None,
        *,
        envs: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> ExecStream:
        """Run ``cmd`` (through the shell unless ``args`` is given) and stream its output."""
        return ExecStream(
            self._runner, lambda: self._async.stream(cmd, args=args, envs=envs, cwd=cwd)
        )

    def connect(self, selector: int | str) -> ExecStream:
        """Attach to a running process's output by pid or tag."""
        process_selector(selector)  # at the call, not when the stream opens
        return ExecStream(
            self._runner,
            lambda: self._async.connect(selector),
            quiet=(WrennNotFoundError,),  # iterated directly: a process that is gone is empty
        )

    list = blocking(AsyncCommands.list)
    kill = blocking(AsyncCommands.kill)
