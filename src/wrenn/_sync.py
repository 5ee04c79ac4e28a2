"""The synchronous API: the async core driven through one blocking portal per client.

``WrennClient`` starts a portal thread (asyncio by default, trio on request) and runs every
call of the async core in it; nothing here re-implements the protocol. Usable from any
thread, from several at once, and from a thread that already runs an event loop
(Jupyter). Ctrl-C during a call cancels that call cleanly; the client stays usable.
Closing the client closes every capsule scope before the portal stops.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, BinaryIO, Literal, TypeVar, final, overload

import anyio

from ._capsule import AsyncCapsule
from ._client import AsyncWrennClient
from ._commands import AsyncCommands, CommandHandle
from ._files import AsyncCapsuleFiles
from ._git import AsyncGit, GitBranch, GitStatus
from ._models import Capsule as CapsuleInfo
from ._models import CommandResult, FileEntry, PendingSnapshot, ProcessInfo
from ._portal import Backend, PortalRunner
from ._pty import AsyncPtySession
from ._resources.streams import ExecStream
from ._stream_protocol import StreamEvent

__all__ = [
    "Capsule",
    "CapsuleFiles",
    "Commands",
    "Git",
    "PtySession",
    "Stream",
    "SyncCommandHandle",
    "WrennClient",
]

T = TypeVar("T")
R = TypeVar("R")
SyncData = str | bytes | bytearray | memoryview | BinaryIO


@final
class Stream:
    """A command's output stream. Use ``with cap.commands.stream(...) as run: for event in
    run`` or simply ``for event in cap.commands.stream(...)`` (the connection closes when
    the loop ends or is left). Iteration fetches events in batches."""

    def __init__(self, runner: PortalRunner, factory: Callable[[], Any]) -> None:
        self._runner = runner
        self._factory = factory
        self._async: ExecStream | None = None
        self._cm: Any = None

    def __enter__(self) -> Stream:
        self._cm = self._runner.enter(self._factory)
        self._async = self._cm.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        cm, self._cm = self._cm, None
        if cm is not None:
            cm.__exit__(*exc)

    def _stream(self) -> ExecStream:
        assert self._async is not None, "not entered"
        return self._async

    def __iter__(self) -> Iterator[StreamEvent]:
        if self._async is not None:
            yield from self._runner.iterate(self._async)
            return
        with self:
            yield from self._runner.iterate(self._stream())

    @property
    def pid(self) -> int | None:
        return self._async.pid if self._async else None

    @property
    def exit_code(self) -> int | None:
        return self._async.exit_code if self._async else None

    def wait(self) -> int:
        """Read the rest of the stream; return the exit code."""
        if self._async is not None:
            return self._runner.call(self._async.wait)
        with self:
            return self._runner.call(self._stream().wait)


@final
class SyncCommandHandle:
    """A background process (sync form of :class:`wrenn.CommandHandle`)."""

    def __init__(self, runner: PortalRunner, handle: CommandHandle) -> None:
        self._runner = runner
        self._handle = handle
        self.pid = handle.pid
        self.tag = handle.tag
        self.capsule_id = handle.capsule_id

    def wait(self) -> int:
        return self._runner.call(self._handle.wait)

    def kill(self, *, signal: Literal["SIGKILL", "SIGTERM"] = "SIGKILL") -> None:
        self._runner.call(self._handle.kill, signal=signal)

    def stream(self) -> Stream:
        return Stream(self._runner, self._handle.stream)


@final
class Commands:
    """``capsule.commands`` for synchronous code (same names and arguments as async)."""

    def __init__(self, runner: PortalRunner, commands: AsyncCommands) -> None:
        self._runner = runner
        self._async = commands

    @overload
    def run(
        self,
        cmd: str,
        *,
        args: Sequence[str] | None = ...,
        background: Literal[False] = ...,
        envs: Mapping[str, str] | None = ...,
        cwd: str | None = ...,
        timeout: int = ...,
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
        timeout: int = ...,
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
        timeout: int = 30,
        tag: str | None = None,
        on_stdout: Callable[[str], Any] | None = None,
        on_stderr: Callable[[str], Any] | None = None,
        check: bool = False,
    ) -> CommandResult | SyncCommandHandle:
        """See :meth:`wrenn.AsyncCommands.run`. Callbacks run in the portal thread."""

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

    def stream(
        self,
        cmd: str,
        *,
        args: Sequence[str] | None = None,
        envs: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Stream:
        return Stream(self._runner, lambda: self._async.stream(cmd, args=args, envs=envs, cwd=cwd))

    def connect(self, selector: int | str) -> Stream:
        return Stream(self._runner, lambda: self._async.connect(selector))

    def list(self) -> builtins.list[ProcessInfo]:
        return self._runner.call(self._async.list)

    def kill(
        self, selector: int | str, *, signal: Literal["SIGKILL", "SIGTERM"] = "SIGKILL"
    ) -> None:
        self._runner.call(self._async.kill, selector, signal=signal)


@final
class CapsuleFiles:
    """``capsule.files`` for synchronous code."""

    def __init__(self, runner: PortalRunner, files: AsyncCapsuleFiles) -> None:
        self._runner = runner
        self._async = files

    @overload
    def read(self, path: str, *, format: Literal["text"] = ...) -> str: ...

    @overload
    def read(self, path: str, *, format: Literal["bytes"]) -> bytes: ...

    def read(self, path: str, *, format: Literal["text", "bytes"] = "text") -> str | bytes:
        data = self._runner.call(self._async.read_bytes, path)
        if format == "bytes":
            return data
        return data.decode("utf-8", errors="replace")

    def read_bytes(self, path: str) -> bytes:
        return self._runner.call(self._async.read_bytes, path)

    def write(self, path: str, data: SyncData) -> None:
        self._runner.call(self._async.write, path, data)

    def list(self, path: str = ".", *, depth: int = 1) -> builtins.list[FileEntry]:
        return self._runner.call(self._async.list, path, depth=depth)

    def make_dir(self, path: str, *, exist_ok: bool = True) -> FileEntry:
        return self._runner.call(self._async.make_dir, path, exist_ok=exist_ok)

    def remove(self, path: str) -> None:
        self._runner.call(self._async.remove, path)

    def exists(self, path: str) -> bool:
        return self._runner.call(self._async.exists, path)

    def write_many(self, files: Mapping[str, SyncData], *, concurrency: int = 8) -> None:
        self._runner.call(self._async.write_many, files, concurrency=concurrency)

    @contextmanager
    def read_stream(self, path: str, *, chunk_size: int = 256 * 1024) -> Iterator[Iterator[bytes]]:
        """``with cap.files.read_stream(p) as chunks: for chunk in chunks`` (constant memory)."""
        with self._runner.enter(lambda: self._async.read_stream(path, chunk_size=chunk_size)) as it:
            yield self._runner.iterate(it)


@final
class Git:
    """``capsule.git`` for synchronous code (same methods and arguments as
    :class:`wrenn.AsyncGit`; credentials are handled the same way)."""

    def __init__(self, runner: PortalRunner, git: AsyncGit) -> None:
        self._runner = runner
        self._async = git

    def clone(
        self,
        url: str,
        dest: str | None = None,
        *,
        branch: str | None = None,
        depth: int | None = None,
        username: str | None = None,
        password: str | None = None,
        cwd: str | None = None,
        timeout: int = 300,
    ) -> CommandResult:
        return self._runner.call(
            lambda: self._async.clone(
                url,
                dest,
                branch=branch,
                depth=depth,
                username=username,
                password=password,
                cwd=cwd,
                timeout=timeout,
            )
        )

    def init(
        self,
        path: str = ".",
        *,
        bare: bool = False,
        initial_branch: str | None = None,
        cwd: str | None = None,
    ) -> CommandResult:
        return self._runner.call(
            lambda: self._async.init(path, bare=bare, initial_branch=initial_branch, cwd=cwd)
        )

    def status(self, *, cwd: str | None = None) -> GitStatus:
        return self._runner.call(lambda: self._async.status(cwd=cwd))

    def add(
        self, paths: Sequence[str] | None = None, *, all: bool = False, cwd: str | None = None
    ) -> CommandResult:
        return self._runner.call(lambda: self._async.add(paths, all=all, cwd=cwd))

    def commit(
        self,
        message: str,
        *,
        allow_empty: bool = False,
        author_name: str | None = None,
        author_email: str | None = None,
        cwd: str | None = None,
    ) -> CommandResult:
        return self._runner.call(
            lambda: self._async.commit(
                message,
                allow_empty=allow_empty,
                author_name=author_name,
                author_email=author_email,
                cwd=cwd,
            )
        )

    def branches(self, *, cwd: str | None = None) -> builtins.list[GitBranch]:
        return self._runner.call(lambda: self._async.branches(cwd=cwd))

    def create_branch(
        self, name: str, *, start_point: str | None = None, cwd: str | None = None
    ) -> CommandResult:
        return self._runner.call(
            lambda: self._async.create_branch(name, start_point=start_point, cwd=cwd)
        )

    def checkout_branch(self, name: str, *, cwd: str | None = None) -> CommandResult:
        return self._runner.call(lambda: self._async.checkout_branch(name, cwd=cwd))

    def delete_branch(
        self, name: str, *, force: bool = False, cwd: str | None = None
    ) -> CommandResult:
        return self._runner.call(lambda: self._async.delete_branch(name, force=force, cwd=cwd))

    def push(
        self,
        remote: str = "origin",
        branch: str | None = None,
        *,
        force: bool = False,
        set_upstream: bool = False,
        username: str | None = None,
        password: str | None = None,
        cwd: str | None = None,
        timeout: int = 60,
    ) -> CommandResult:
        return self._runner.call(
            lambda: self._async.push(
                remote,
                branch,
                force=force,
                set_upstream=set_upstream,
                username=username,
                password=password,
                cwd=cwd,
                timeout=timeout,
            )
        )

    def pull(
        self,
        remote: str = "origin",
        branch: str | None = None,
        *,
        rebase: bool = False,
        ff_only: bool = False,
        username: str | None = None,
        password: str | None = None,
        cwd: str | None = None,
        timeout: int = 60,
    ) -> CommandResult:
        return self._runner.call(
            lambda: self._async.pull(
                remote,
                branch,
                rebase=rebase,
                ff_only=ff_only,
                username=username,
                password=password,
                cwd=cwd,
                timeout=timeout,
            )
        )

    def remote_add(
        self, name: str, url: str, *, fetch: bool = False, cwd: str | None = None
    ) -> CommandResult:
        return self._runner.call(lambda: self._async.remote_add(name, url, fetch=fetch, cwd=cwd))

    def remote_get(self, name: str = "origin", *, cwd: str | None = None) -> str | None:
        return self._runner.call(lambda: self._async.remote_get(name, cwd=cwd))

    def set_config(
        self,
        key: str,
        value: str,
        *,
        scope: Literal["local", "global", "system"] = "local",
        cwd: str | None = None,
    ) -> CommandResult:
        return self._runner.call(lambda: self._async.set_config(key, value, scope=scope, cwd=cwd))

    def get_config(
        self,
        key: str,
        *,
        scope: Literal["local", "global", "system"] = "local",
        cwd: str | None = None,
    ) -> str | None:
        return self._runner.call(lambda: self._async.get_config(key, scope=scope, cwd=cwd))

    def configure_user(
        self,
        name: str,
        email: str,
        *,
        scope: Literal["local", "global", "system"] = "global",
        cwd: str | None = None,
    ) -> None:
        return self._runner.call(
            lambda: self._async.configure_user(name, email, scope=scope, cwd=cwd)
        )

    def reset(
        self,
        *,
        mode: Literal["soft", "mixed", "hard", "merge", "keep"] | None = None,
        ref: str | None = None,
        paths: Sequence[str] | None = None,
        cwd: str | None = None,
    ) -> CommandResult:
        return self._runner.call(
            lambda: self._async.reset(mode=mode, ref=ref, paths=paths, cwd=cwd)
        )

    def restore(
        self,
        paths: Sequence[str],
        *,
        staged: bool = False,
        worktree: bool = False,
        source: str | None = None,
        cwd: str | None = None,
    ) -> CommandResult:
        return self._runner.call(
            lambda: self._async.restore(
                paths, staged=staged, worktree=worktree, source=source, cwd=cwd
            )
        )


@final
class PtySession:
    """A terminal for synchronous code; iterate it for output bytes (batched)."""

    def __init__(self, runner: PortalRunner, session: AsyncPtySession) -> None:
        self._runner = runner
        self._async = session

    @property
    def tag(self) -> str | None:
        return self._async.tag

    @property
    def pid(self) -> int | None:
        return self._async.pid

    @property
    def exit_code(self) -> int | None:
        return self._async.exit_code

    def write(self, data: bytes | str) -> None:
        self._runner.call(self._async.write, data)

    def resize(self, cols: int, rows: int) -> None:
        self._runner.call(self._async.resize, cols, rows)

    def kill(self) -> None:
        self._runner.call(self._async.kill)

    def __iter__(self) -> Iterator[bytes]:
        return self._runner.iterate(self._async)

    def wait(self) -> int:
        return self._runner.call(self._async.wait)


@final
class Capsule:
    """A capsule for synchronous code. Get one from ``with client.capsule() as cap``, or
    the official SDK's way: ``with Capsule(wait=True) as cap`` (a client of its own)."""

    def __init__(
        self,
        template: str | None = None,
        vcpus: int | None = None,
        memory_mb: int | None = None,
        timeout: int | None = None,
        *,
        wait: bool = False,
        api_key: str | None = None,
        base_url: str | None = None,
        backend: Backend = "asyncio",
    ) -> None:
        """Create a capsule with a client of its own (it performs I/O, as in the official
        SDK). ``with Capsule(...) as cap`` destroys it and closes that client at the end."""
        client = WrennClient(api_key=api_key, base_url=base_url, backend=backend)
        try:
            acap = client._runner.call(
                AsyncCapsule.create,
                template,
                vcpus,
                memory_mb,
                timeout,
                wait=wait,
                api_key=api_key,
                base_url=base_url,
            )
        except BaseException:
            client.close()
            raise
        self._setup(client._runner, acap, owner=client)

    def _setup(self, runner: PortalRunner, acap: AsyncCapsule, owner: WrennClient | None) -> None:
        self._runner = runner
        self._async = acap
        self._owner = owner
        self.commands = Commands(runner, acap.commands)
        self.files = CapsuleFiles(runner, acap.files)
        self.git = Git(runner, acap.git)

    @classmethod
    def _wrap(cls, runner: PortalRunner, acap: AsyncCapsule) -> Capsule:
        self = cls.__new__(cls)
        self._setup(runner, acap, owner=None)
        return self

    @classmethod
    def create(
        cls,
        template: str | None = None,
        vcpus: int | None = None,
        memory_mb: int | None = None,
        timeout: int | None = None,
        *,
        wait: bool = False,
        api_key: str | None = None,
        base_url: str | None = None,
    ) -> Capsule:
        return cls(
            template, vcpus, memory_mb, timeout, wait=wait, api_key=api_key, base_url=base_url
        )

    @classmethod
    def connect(
        cls, capsule_id: str, *, api_key: str | None = None, base_url: str | None = None
    ) -> Capsule:
        client = WrennClient(api_key=api_key, base_url=base_url)
        try:
            acap = client._runner.call(client._async.connect, capsule_id)
        except BaseException:
            client.close()
            raise
        self = cls.__new__(cls)
        self._setup(client._runner, acap, owner=client)
        return self

    @property
    def capsule_id(self) -> str:
        return self._async.capsule_id

    @property
    def info(self) -> CapsuleInfo:
        return self._async.info

    def __repr__(self) -> str:
        return f"<Capsule {self.capsule_id} {self.info.status}>"

    def get_info(self) -> CapsuleInfo:
        return self._runner.call(self._async.get_info)

    def is_running(self) -> bool:
        return self._runner.call(self._async.is_running)

    def wait_ready(self, timeout: float = 60.0) -> CapsuleInfo:
        return self._runner.call(self._async.wait_ready, timeout)

    def ping(self) -> None:
        self._runner.call(self._async.ping)

    def pause(self, *, wait: bool = True, timeout: float = 60.0) -> CapsuleInfo:
        return self._runner.call(self._async.pause, wait=wait, timeout=timeout)

    def resume(self, *, wait: bool = True, timeout: float = 60.0) -> CapsuleInfo:
        return self._runner.call(self._async.resume, wait=wait, timeout=timeout)

    def destroy(self, *, wait: bool = True, timeout: float = 60.0) -> None:
        self._runner.call(self._async.destroy, wait=wait, timeout=timeout)

    def create_snapshot(self, name: str | None = None) -> PendingSnapshot:
        return self._runner.call(self._async.create_snapshot, name)

    def get_url(self, port: int) -> str:
        return self._async.get_url(port)

    def detach(self) -> None:
        self._async.detach()

    @contextmanager
    def pty(
        self,
        cmd: str = "/bin/bash",
        *,
        args: Sequence[str] | None = None,
        cols: int = 80,
        rows: int = 24,
        envs: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Iterator[PtySession]:
        with self._runner.enter(
            lambda: self._async.pty(cmd, args=args, cols=cols, rows=rows, envs=envs, cwd=cwd)
        ) as session:
            yield PtySession(self._runner, session)

    @contextmanager
    def pty_connect(self, tag: str) -> Iterator[PtySession]:
        with self._runner.enter(lambda: self._async.pty_connect(tag)) as session:
            yield PtySession(self._runner, session)

    def __enter__(self) -> Capsule:
        return self

    def __exit__(self, *exc: Any) -> None:
        """For a capsule made by ``Capsule(...)``/``connect``: destroy it (unless detached)
        and close its client."""
        if self._owner is not None:
            try:
                self._runner.call(self._async.__aexit__, None, None, None)
            finally:
                self._owner.close()


@final
class WrennClient:
    """The synchronous client; same arguments as :class:`AsyncWrennClient`, plus
    ``backend`` (``"asyncio"`` or ``"trio"``) for the portal's event loop."""

    def __init__(
        self,
        api_key: str | None = None,
        token: str | None = None,
        base_url: str | None = None,
        proxy_domain: str | None = None,
        timeout: float = 30.0,
        *,
        connect_timeout: float = 10.0,
        max_retries: int = 3,
        backend: Backend = "asyncio",
    ) -> None:
        self._runner = PortalRunner(backend)

        async def make() -> AsyncWrennClient:
            return AsyncWrennClient(
                api_key=api_key,
                token=token,
                base_url=base_url,
                proxy_domain=proxy_domain,
                timeout=timeout,
                connect_timeout=connect_timeout,
                max_retries=max_retries,
            )

        try:
            self._async = self._runner.call(make)
        except BaseException:
            self._runner.close()
            raise
        self._open_scopes: list[Any] = []

    def __repr__(self) -> str:
        return repr(self._async).replace("AsyncWrennClient", "WrennClient")

    @property
    def base_url(self) -> str:
        return self._async.base_url

    def close(self) -> None:
        """Close every open capsule scope, then the HTTP client, then the portal."""
        try:
            while self._open_scopes:
                self._open_scopes.pop().__exit__(None, None, None)
            self._runner.call(self._async.aclose)
        finally:
            self._runner.close()

    def __enter__(self) -> WrennClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def capsule(
        self,
        *,
        template: str | None = None,
        vcpus: int | None = None,
        memory_mb: int | None = None,
        disk_size_mb: int | None = None,
        timeout: int | None = None,
        metadata: Mapping[str, str] | None = None,
        ready_timeout: float = 60.0,
        keepalive: bool | float = False,
    ) -> Iterator[Capsule]:
        """See :meth:`AsyncWrennClient.capsule`: created for the block, destroyed after."""
        scope = self._runner.enter(
            lambda: self._async.capsule(
                template=template,
                vcpus=vcpus,
                memory_mb=memory_mb,
                disk_size_mb=disk_size_mb,
                timeout=timeout,
                metadata=metadata,
                ready_timeout=ready_timeout,
                keepalive=keepalive,
            )
        )
        acap = scope.__enter__()
        self._open_scopes.append(scope)
        try:
            yield Capsule._wrap(self._runner, acap)
        finally:
            if scope in self._open_scopes:
                self._open_scopes.remove(scope)
                scope.__exit__(None, None, None)

    def connect(self, capsule_id: str, *, ready_timeout: float = 60.0) -> Capsule:
        acap = self._runner.call(self._async.connect, capsule_id, ready_timeout=ready_timeout)
        return Capsule._wrap(self._runner, acap)

    def map(
        self,
        fn: Callable[[Capsule, T], R],
        items: Iterable[T],
        *,
        concurrency: int = 8,
        capsule: Mapping[str, Any] | None = None,
        creation_rate: float | None = None,
        retries: int = 0,
        return_exceptions: bool = False,
        on_progress: Callable[[int, int], Any] | None = None,
    ) -> builtins.list[Any]:
        """See :meth:`AsyncWrennClient.map`; ``fn`` is a plain function, run in worker
        threads (one per job in flight), given a sync :class:`Capsule`."""
        runner = self._runner

        async def job(acap: AsyncCapsule, item: T) -> R:
            return await anyio.to_thread.run_sync(
                fn, Capsule._wrap(runner, acap), item, abandon_on_cancel=True
            )

        return self._runner.call(
            self._async.map,
            job,
            items,
            concurrency=concurrency,
            capsule=capsule,
            creation_rate=creation_rate,
            retries=retries,
            return_exceptions=return_exceptions,
            on_progress=on_progress,
        )
