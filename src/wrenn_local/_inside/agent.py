"""The in-capsule agent: the local analogue of Wrenn's envd.

It runs inside a capsule's namespaces as the capsule's first process, listens on a Unix
socket, and carries out every operation that touches the capsule's inside: commands,
processes, files. It uses only the standard library, because it runs under the system
Python of the capsule's root filesystem, not the server's environment.

Wire format, both directions: frames of ``>I`` payload length, one kind byte, payload.
Kinds: ``J`` a JSON object, ``O`` stdout bytes, ``E`` stderr bytes, ``I`` input bytes,
``D`` file data, ``Z`` end of data, ``X`` abort (the sender gave up on the operation).
Each connection carries one operation: the first frame is the request (``J``), the rest
depends on the operation (the ``op_*`` methods of :class:`Agent`).

Paths: when the agent's root is ``/`` (full isolation) the kernel resolves every path
inside the capsule's own mount namespace. In reduced isolation the agent maps absolute
paths under a host directory and resolves each component itself, refusing any step
that would leave that directory.
"""

from __future__ import annotations

import sys

# The agent speaks no TLS: without this, ``import asyncio`` loads ``ssl`` and OpenSSL's
# libraries at every capsule boot (~9 ms of its start-up); asyncio does without them.
sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]

# What the agent imports at start is what every capsule boot pays for, before the agent
# answers. Modules only some requests need are imported where they are used, on first
# use (``ctypes``: libffi; ``shutil``: bz2 and lzma; ``termios``). No ``secrets``
# either: it loads OpenSSL's libcrypto (via ``hmac``) for what ``os.urandom`` gives.
# tests/test_local_agent_start.py checks that a booted agent has none of them loaded.
import contextlib
import errno
import fcntl
import grp
import math
import os
import pwd
import signal
import socket
import stat
import struct
import time

# not ``typing`` itself (its import is a boot cost): mypy reads the block below
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _json_codec() -> tuple[Callable[[object], str], Callable[[bytes | str], Any]]:
    """``(dumps, loads)`` on the C accelerator ``_json`` alone, without the ``json``
    package: its decoder compiles regular expressions at import, so ``import json``
    loads ``re`` (~2.5 ms of CPU at every boot, for what the agent does not need).
    ``dumps`` is ``json.dumps(obj, separators=(",", ":"))``, ``loads`` is ``json.loads``
    for what the agent's peers send (bytes as strict UTF-8: no BOM, no UTF-16 or 32,
    which none of them sends); invalid JSON raises ``ValueError`` (the C scanner's own
    ``JSONDecodeError``: ``json`` loads then). Fail safe: on a Python whose ``_json``
    differs in any way, the ``json`` package's own functions."""
    try:
        import _json

        make_encoder, escape = _json.make_encoder, _json.encode_basestring_ascii

        def refuse(obj: object) -> None:
            raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")

        def dumps(obj: object) -> str:
            # a fresh ``markers`` at each call: json.dumps' check for circular references
            encode = make_encoder({}, refuse, escape, None, ":", ",", False, False, True)
            return "".join(encode(obj, 0))

        class Context:  # what the scanner reads of a JSONDecoder
            def __init__(self) -> None:
                self.strict = True
                self.object_hook = self.object_pairs_hook = None
                self.parse_float, self.parse_int = float, int
                constants = {"-Infinity": -math.inf, "Infinity": math.inf, "NaN": math.nan}
                self.parse_constant = constants.__getitem__

        context: Any = Context()
        scan = _json.make_scanner(context)

        def loads(data: bytes | str) -> Any:
            text = data.decode() if isinstance(data, bytes | bytearray) else data
            at, size = 0, len(text)
            while at < size and text[at] in " \t\n\r":
                at += 1
            try:
                obj, at = scan(text, at)
            except StopIteration as exc:
                raise ValueError(f"Expecting value: char {exc.value}") from None
            while at < size and text[at] in " \t\n\r":
                at += 1
            if at != size:
                raise ValueError(f"Extra data: char {at}")
            return obj

        sample = {"a": [1, -2.5, '\u00e9\n"', None, True, {}], "b": {"c": []}}
        if loads(dumps(sample)) != sample or dumps(sample) != _SAMPLE_JSON:
            raise ValueError("this Python's _json is not the one expected")
        return dumps, loads
    except Exception:
        import json

        def json_dumps(obj: object) -> str:
            return json.dumps(obj, separators=(",", ":"))

        return json_dumps, json.loads


_SAMPLE_JSON = '{"a":[1,-2.5,"\\u00e9\\n\\"",null,true,{}],"b":{"c":[]}}'
dumps, loads = _json_codec()


def _import_asyncio_with_logging_and_inspect_deferred() -> None:
    """``import asyncio`` without importing ``logging``, ``inspect``, ``traceback``,
    ``locale`` or ``typing`` (with what only they load: ``ast``, ``dis``, ``linecache``,
    ``tokenize``, ``textwrap`` and ``re``; ~8 ms of CPU at every boot, for modules
    asyncio touches only when something goes wrong, in debug mode, for text-mode pipes
    or for annotations).

    While asyncio imports, each is a stand-in. ``logging``'s ``getLogger`` gives loggers
    that load the real module on first use (an asyncio warning, say) and hand over to
    the real logger of that name. ``inspect``, ``traceback`` and ``locale`` load on the
    first use of any attribute (``asyncio.iscoroutinefunction``, ``ensure_future`` of an
    awaitable that is not a coroutine; a traceback formatted for a log record; a
    subprocess with text-mode pipes). ``typing`` is only read at import, by annotations
    evaluated where asyncio defines its functions (``Optional[float]``) and ``@final``:
    its stand-in gives ``final`` (which returns its argument, as the real one does at
    run time), ``TYPE_CHECKING`` (False) and, for any other name, a placeholder that
    takes any subscript (what an annotation does with it); annotations are never
    evaluated again. Asyncio's modules keep the stand-ins, which forward every attribute
    to the real module; the stand-ins leave ``sys.modules`` as soon as asyncio is in, so
    any later ``import`` of them is the real module. Fail safe: a module loaded already
    is left alone, and if a stand-in breaks this Python's asyncio in any way, asyncio is
    imported the normal way.
    """
    if "asyncio" in sys.modules:
        return

    def real(name: str) -> Any:
        if type(sys.modules.get(name)) in stand_in_types:
            del sys.modules[name]
        return __import__(name)  # the real one, on first use only

    def dropped(*args: object, **kwargs: object) -> None:
        pass

    class Logger:
        def __init__(self, name: str | None) -> None:
            self._name = name

        def __getattr__(self, attr: str) -> Any:
            # Until something imports logging nobody can have configured it: its default
            # (level WARNING, no handler) drops debug and info records, so these do too
            # (the loop's "Using selector" at start, say) without loading it.
            current = sys.modules.get("logging")
            if attr in ("debug", "info") and (current is None or type(current) is StandIn):
                return dropped
            return getattr(real("logging").getLogger(self._name), attr)

    class StandIn(type(sys)):  # type: ignore[misc]
        # read at import time (asyncio.futures: ``logging.DEBUG - 1``): fixed numbers
        DEBUG, INFO, WARNING, ERROR, CRITICAL = 10, 20, 30, 40, 50

        def getLogger(self, name: str | None = None) -> Logger:
            return Logger(name)

        def __getattr__(self, attr: str) -> Any:
            return getattr(real("logging"), attr)

    def extract_stack(f: Any = None, limit: int | None = None) -> Any:
        # traceback.extract_stack() starts from its caller's frame: this function's
        # caller's, not this function's (a debug loop's "created at" stays asyncio's)
        return real("traceback").extract_stack(sys._getframe(1) if f is None else f, limit)

    class Deferred(type(sys)):  # type: ignore[misc]
        def __getattr__(self, attr: str) -> Any:
            forward = FORWARDED.get((self.__name__, attr))
            if forward is not None and sys.modules.get(self.__name__) is self:
                return forward
            return getattr(real(self.__name__), attr)

    class Annotation:
        """What an annotation made of ``typing`` names evaluates to, while asyncio loads."""

        def __getitem__(self, item: object) -> Annotation:
            return self

    class Annotations(type(sys)):  # type: ignore[misc]
        TYPE_CHECKING = False

        @staticmethod
        def final(f: Any) -> Any:
            with contextlib.suppress(AttributeError, TypeError):
                f.__final__ = True  # as the real one marks it
            return f

        def __getattr__(self, attr: str) -> Any:
            if attr.startswith("__"):  # module machinery (``__path__``, ``__spec__``)
                raise AttributeError(attr)
            return Annotation()

    # Functions asyncio's C accelerator ``_asyncio`` takes from a module when it loads
    # (``traceback.extract_stack``, for debug mode's source tracebacks): while asyncio
    # imports, each is a function that loads the real module when called.
    FORWARDED = {("traceback", "extract_stack"): extract_stack}
    stand_in_types = (StandIn, Deferred, Annotations)
    stand_ins = (
        StandIn("logging"),
        Deferred("inspect"),
        Deferred("traceback"),
        Deferred("linecache"),
        Deferred("locale"),
        Annotations("typing"),
    )
    accelerated = "_asyncio" in sys.modules  # (loaded before: not by the attempt below)
    placed = []
    for stand_in in stand_ins:
        if stand_in.__name__ not in sys.modules:
            sys.modules[stand_in.__name__] = stand_in
            placed.append(stand_in)
    try:
        import asyncio  # noqa: F401 - the first import, with the stand-ins
    except Exception:
        for name in [n for n in sys.modules if n.startswith(("asyncio", "concurrent"))]:
            del sys.modules[name]  # the plain import below starts afresh
        if not accelerated:
            # ``_asyncio``, loaded by the failed attempt, holds that attempt's classes
            # (CancelledError, Future) and cannot be loaded afresh on every Python
            # (3.11's is single-phase): the plain import takes asyncio's pure-Python
            # futures and tasks instead, slower but consistent
            sys.modules["_asyncio"] = None  # type: ignore[assignment]
    finally:
        for stand_in in placed:
            if sys.modules.get(stand_in.__name__) is stand_in:
                del sys.modules[stand_in.__name__]


_import_asyncio_with_logging_and_inspect_deferred()

import asyncio  # after the call above: imported by it, or (if it failed) here

HEADER = struct.Struct(">IB")
MAX_FRAME = 8 << 20
CHUNK = 64 * 1024
FILE_CHUNK = 256 * 1024  # file reads: fewer, larger frames for bulk bytes
# Output chunks waiting for one reader of a process (exec, attach, pty): at most 1 MiB.
# When a reader's queue is full the pump stops reading the pipe, so a process whose
# output nobody reads blocks on write instead of growing the agent's memory.
QUEUED_CHUNKS = 16
# A files/list answer holds at most this many entries and walks for at most this long.
LIST_MAX_ENTRIES = 10_000
LIST_SECONDS = 5.0


# Filesystem errors that are the caller's doing map to client errors, not agent failures.
ERRNO_CODES = {
    errno.ENOENT: "not_found",
    errno.ENAMETOOLONG: "invalid_request",
    errno.ENOTDIR: "invalid_request",
    errno.EISDIR: "invalid_request",
    errno.ELOOP: "invalid_request",
    errno.EINVAL: "invalid_request",
    errno.EEXIST: "conflict",
    errno.ENOTEMPTY: "conflict",
    errno.EACCES: "forbidden",
    errno.EPERM: "forbidden",
    errno.EROFS: "forbidden",
}


class AgentError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- framing ---------------------------------------------------------------------------


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes] | None:
    try:
        head = await reader.readexactly(HEADER.size)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length, kind = HEADER.unpack(head)
    if length > MAX_FRAME:
        raise AgentError("invalid_request", "frame too large")
    try:
        payload = await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return kind, payload


def frame(kind: bytes, payload: bytes) -> bytes:
    return HEADER.pack(len(payload), kind[0]) + payload


def jframe(obj: dict[str, Any]) -> bytes:
    return frame(b"J", dumps(obj).encode())


# --- configuration ---------------------------------------------------------------------


class Config:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.root: str = raw.get("root", "/")
        self.user: str = raw.get("user", "wrenn-user")
        self.uid: int = int(raw.get("uid", os.getuid()))
        self.gid: int = int(raw.get("gid", os.getgid()))
        self.home: str = raw.get("home", "/home/wrenn-user")
        self.env: dict[str, str] = dict(raw.get("env", {}))
        self.switch_user: bool = bool(raw.get("switch_user", False))
        # capsule port -> host port, when capsules share the host's network (reduced)
        self.ports: dict[int, int] = {int(k): int(v) for k, v in raw.get("ports", {}).items()}
        self.sudo: str = raw.get("sudo", "")  # the sudo socket's path (full isolation)

    def host_path(self, path: str, *, must_exist: bool = False) -> str:
        """Map a path the user gave to a path the agent can open."""
        if not path:
            raise AgentError("invalid_request", "path is required")
        if "\0" in path:
            raise AgentError("invalid_request", "path contains a NUL byte")
        if path == "~" or path.startswith("~/"):
            path = self.home + path[1:]
        if not path.startswith("/"):
            path = self.home.rstrip("/") + "/" + path
        if self.root == "/":
            return os.path.normpath(path) if path != "//" else "/"
        return resolve_in_root(self.root, path, must_exist=must_exist)

    def inner_path(self, host: str) -> str:
        if self.root == "/":
            return host
        rel = os.path.relpath(host, self.root)
        return "/" if rel == "." else "/" + rel


def resolve_in_root(root: str, path: str, *, must_exist: bool = False) -> str:
    """Resolve ``path`` as if ``root`` were ``/``: ``..`` and symlinks cannot leave it."""
    parts = [p for p in path.split("/") if p and p != "."]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 40:
                raise AgentError("invalid_request", "too many levels of symbolic links")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        resolved.append(part)
    result = os.path.join(root, *resolved)
    if must_exist and not os.path.lexists(result):
        raise AgentError("not_found", f"path not found: {path}")
    return result


# --- processes -------------------------------------------------------------------------


def session_members(sid: int) -> list[int]:
    """Every process of session ``sid`` but its leader (from ``/proc``: the session is the
    fourth field after the command name of ``/proc/PID/stat``)."""
    found: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for name in entries:
        if not name.isdigit() or int(name) == sid:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()  # state, ppid, pgrp, session, ...
        if len(fields) > 3 and fields[3] == str(sid).encode():
            found.append(int(name))
    return found


class Proc:
    def __init__(self, pid: int, tag: str, cmd: str, args: list[str], pty: bool) -> None:
        self.pid = pid
        self.tag = tag
        self.cmd = cmd
        self.args = args
        self.pty = pty
        self.exit_code: int | None = None
        self.done = asyncio.Event()
        self.subscribers: set[asyncio.Queue[tuple[bytes, bytes] | None]] = set()
        self.master_fd: int | None = None
        self.process: asyncio.subprocess.Process | None = None

    async def publish(self, kind: bytes, data: bytes) -> None:
        """Queue output for every reader; waits while one of them is full (backpressure)."""
        for queue in list(self.subscribers):
            if queue in self.subscribers:
                await queue.put((kind, data))

    def subscribe(self) -> asyncio.Queue[tuple[bytes, bytes] | None]:
        queue: asyncio.Queue[tuple[bytes, bytes] | None] = asyncio.Queue(QUEUED_CHUNKS + 1)
        self.subscribers.add(queue)
        if self.exit_code is not None:
            queue.put_nowait(None)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[tuple[bytes, bytes] | None]) -> None:
        """Drop a reader, and what it left unread (so a pump waiting on it moves on)."""
        self.subscribers.discard(queue)
        while not queue.empty():
            queue.get_nowait()

    async def finish(self, code: int) -> None:
        self.exit_code = code
        self.done.set()
        for queue in list(self.subscribers):
            if queue in self.subscribers:
                await queue.put(None)


# errno of a program that cannot be started: the exit status and message of a shell's
# ``exec`` of it (what the command then fails with, as under envd)
_NOT_RUNNABLE = {
    errno.ENOENT: (127, "not found"),
    errno.ENOTDIR: (127, "not found"),
    errno.EACCES: (126, "Permission denied"),
    errno.ENOEXEC: (126, "Exec format error"),
    errno.EISDIR: (126, "Is a directory"),
}
_FAIL_SCRIPT = 'printf "%s\\n" "$1" >&2; exit "$2"'


def exit_code_of(returncode: int) -> int:
    return -1 if returncode < 0 else returncode


class Agent:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.procs: dict[int, Proc] = {}
        self.by_tag: dict[str, Proc] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.files: FilesWorker | None = None  # file operations as the capsule user
        self.spawner: Spawner | None = None  # commands as the capsule user (fast path)

    def _background(self, coro: Any) -> None:
        """Run ``coro`` as a task the agent keeps a reference to until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- environment

    def _env(self, extra: dict[str, str] | None) -> dict[str, str]:
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": self._home_for_process(),
            "USER": self.config.user,
            "LOGNAME": self.config.user,
            "LANG": "C.UTF-8",
            **self.config.env,
        }
        if extra:
            env.update({str(k): str(v) for k, v in extra.items()})
        return env

    def _home_for_process(self) -> str:
        return self.config.host_path(self.config.home)

    def _cwd(self, cwd: str | None) -> str:
        target = self.config.host_path(cwd or self.config.home)
        if not os.path.isdir(target):
            raise AgentError("invalid_request", f"cwd '{cwd}' does not exist")
        return target

    def _user_kwargs(self) -> dict[str, Any]:
        if not self.config.switch_user:
            return {}
        return {"user": self.config.uid, "group": self.config.gid, "extra_groups": []}

    def _new_tag(self, prefix: str) -> str:
        while True:
            tag = f"{prefix}-{os.urandom(4).hex()}"
            if tag not in self.by_tag:
                return tag

    def _register(self, proc: Proc) -> None:
        self.procs[proc.pid] = proc
        self.by_tag[proc.tag] = proc

    def _forget_later(self, proc: Proc) -> None:
        async def forget() -> None:
            await asyncio.sleep(0.5)
            self.procs.pop(proc.pid, None)
            if self.by_tag.get(proc.tag) is proc:
                del self.by_tag[proc.tag]

        self._background(forget())

    def find(self, selector: str) -> Proc:
        proc = self.procs.get(int(selector)) if selector.isdigit() else self.by_tag.get(selector)
        if proc is None or proc.exit_code is not None:
            raise AgentError("not_found", "process not found")
        return proc

    async def spawn(self, req: dict[str, Any], *, tag_prefix: str = "proc") -> Proc:
        cmd = req.get("cmd") or ""
        if not cmd:
            raise AgentError("invalid_request", "cmd is required")
        args = [str(a) for a in req.get("args") or []]
        env = self._env(req.get("envs"))
        cwd = self._cwd(req.get("cwd"))
        tag = req.get("tag") or self._new_tag(tag_prefix)
        if tag in self.by_tag and self.by_tag[tag].exit_code is None:
            raise AgentError("conflict", f"a running process already has tag {tag!r}")
        if self.spawner is not None:
            spawned = await self._spawn_as_user(self.spawner, tag, cmd, args, env, cwd)
            if spawned is not None:
                return spawned
        load_libc()  # for oom_first, in the child: no import after fork
        argv = [cmd, *args]
        for attempt in range(2):
            try:
                process = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    cwd=cwd,
                    env=env,
                    start_new_session=True,
                    preexec_fn=oom_first,
                    **self._user_kwargs(),
                )
                break
            except OSError as exc:
                if attempt or exc.errno not in _NOT_RUNNABLE:
                    raise AgentError(
                        "agent_error", f"failed to start {cmd}: {exc.strerror}"
                    ) from None
                # As Wrenn's envd, which starts every command through ``sh`` (``exec``):
                # a program that cannot be run is a command that fails, 127 (not found)
                # or 126 (not executable), with the reason on its standard error.
                code, reason = _NOT_RUNNABLE[exc.errno]
                argv = ["/bin/sh", "-c", _FAIL_SCRIPT, "sh", f"{cmd}: {reason}", str(code)]
        proc = Proc(process.pid, tag, cmd, args, pty=False)
        proc.process = process
        self._register(proc)
        self._background(self._pump(proc, process))
        return proc

    async def _spawn_as_user(
        self, spawner: Spawner, tag: str, cmd: str, args: list[str], env: dict[str, str], cwd: str
    ) -> Proc | None:
        """Start a command through the spawner; None: take the direct path instead."""
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            pid, exited = await spawner.spawn([cmd, *args], env, cwd, out_w, err_w)
        except SpawnerUnavailable:
            os.close(out_r)
            os.close(err_r)
            return None
        finally:
            os.close(out_w)
            os.close(err_w)
        proc = Proc(pid, tag, cmd, args, pty=False)
        self._register(proc)
        self._background(self._pump_spawned(proc, out_r, err_r, spawner, exited))
        return proc

    async def _pump_spawned(
        self, proc: Proc, out_fd: int, err_fd: int, spawner: Spawner, exited: asyncio.Future[int]
    ) -> None:
        loop = asyncio.get_running_loop()

        async def copy(fd: int, kind: bytes) -> None:
            os.set_blocking(fd, False)
            readable = asyncio.Event()
            loop.add_reader(fd, readable.set)
            try:
                while True:
                    try:
                        data = os.read(fd, CHUNK)
                    except BlockingIOError:
                        readable.clear()
                        await readable.wait()
                        continue
                    if not data:
                        return
                    await proc.publish(kind, data)
            finally:
                loop.remove_reader(fd)
                os.close(fd)

        await asyncio.gather(copy(out_fd, b"O"), copy(err_fd, b"E"))
        code = await spawner.exit_status(exited)
        await proc.finish(exit_code_of(code))
        self._forget_later(proc)

    async def _pump(self, proc: Proc, process: asyncio.subprocess.Process) -> None:
        async def copy(stream: asyncio.StreamReader | None, kind: bytes) -> None:
            if stream is None:
                return
            while True:
                data = await stream.read(CHUNK)
                if not data:
                    return
                await proc.publish(kind, data)

        await asyncio.gather(copy(process.stdout, b"O"), copy(process.stderr, b"E"))
        code = await process.wait()
        await proc.finish(exit_code_of(code))
        self._forget_later(proc)

    async def spawn_pty(self, req: dict[str, Any]) -> Proc:
        import shutil
        import termios  # here, not in child_setup: no import after fork

        load_libc()
        cmd = req.get("cmd") or "/bin/bash"
        if not shutil.which(cmd, path=self._env(None)["PATH"]) and not os.path.exists(cmd):
            raise AgentError("invalid_request", f"executable not found: {cmd}")
        args = [str(a) for a in req.get("args") or []]
        cols = winsize_dimension(req.get("cols")) or 80
        rows = winsize_dimension(req.get("rows")) or 24
        env = self._env(req.get("envs"))
        env.setdefault("TERM", "xterm-256color")
        cwd = self._cwd(req.get("cwd"))
        master, slave = os.openpty()
        set_winsize(slave, rows, cols)

        def child_setup() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            oom_first()

        try:
            process = await asyncio.create_subprocess_exec(
                cmd,
                *args,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=cwd,
                env=env,
                start_new_session=True,
                preexec_fn=child_setup,
                **self._user_kwargs(),
            )
        except OSError as exc:
            os.close(master)
            os.close(slave)
            raise AgentError("invalid_request", f"failed to start pty: {exc.strerror}") from None
        os.close(slave)
        os.set_blocking(master, False)
        proc = Proc(process.pid, self._new_tag("pty"), cmd, args, pty=True)
        proc.master_fd = master
        proc.process = process
        self._register(proc)
        self._background(self._pump_pty(proc, process, master))
        return proc

    async def _pump_pty(self, proc: Proc, process: asyncio.subprocess.Process, master: int) -> None:
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(master, readable.set)
        try:
            while True:
                await readable.wait()
                readable.clear()
                try:
                    data = os.read(master, CHUNK)
                except BlockingIOError:
                    continue
                except OSError:  # EIO: the last holder of the slave side closed it
                    break
                if not data:
                    break
                await proc.publish(b"O", data)
        finally:
            loop.remove_reader(master)
        code = await process.wait()
        with contextlib.suppress(OSError):
            os.close(master)
        proc.master_fd = None
        await proc.finish(exit_code_of(code))
        self._forget_later(proc)

    def signal(self, proc: Proc, signum: int) -> None:
        # A terminal's shell puts each job in a process group of its own, in its session
        # (job control): the group of the shell alone would miss them.
        members = session_members(proc.pid) if proc.pty else []
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signum)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signum)
        for pid in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)

    # -- operations

    async def op_exec(self, req: dict[str, Any], reader: Any, writer: Any) -> None:
        proc = await self.spawn(req)
        if req.get("background"):
            writer.write(jframe({"pid": proc.pid, "tag": proc.tag}))
            return
        queue = proc.subscribe()
        writer.write(jframe({"pid": proc.pid, "tag": proc.tag}))
        timeout = req.get("timeout")
        deadline = None if not timeout else time.monotonic() + float(timeout)
        # The process belongs to this connection: the server closing it (its client went
        # away) kills the process; only a ``detach`` frame (exec stream "stop") leaves it.
        detach = asyncio.ensure_future(_detached_or_gone(reader))
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    self.signal(proc, signal.SIGKILL)
                    writer.write(jframe({"error": "timeout", "message": "command timed out"}))
                    return
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {getter, detach}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                if getter not in done:
                    getter.cancel()
                    if detach in done:
                        return
                    continue
                item = getter.result()
                if item is None:
                    writer.write(jframe({"exit_code": proc.exit_code}))
                    return
                writer.write(frame(*item))
                await writer.drain()
        finally:
            proc.unsubscribe(queue)
            kept = detach.done() and not detach.cancelled() and detach.result()
            detach.cancel()
            if not kept and proc.exit_code is None:
                self.signal(proc, signal.SIGKILL)

    async def op_attach(self, req: dict[str, Any], reader: Any, writer: Any) -> None:
        proc = self.find(str(req.get("selector", "")))
        queue = proc.subscribe()
        writer.write(jframe({"pid": proc.pid, "tag": proc.tag}))
        await self._relay(proc, queue, reader, writer, interactive=False)

    async def op_pty_start(self, req: dict[str, Any], reader: Any, writer: Any) -> None:
        proc = await self.spawn_pty(req)
        queue = proc.subscribe()
        writer.write(jframe({"pid": proc.pid, "tag": proc.tag}))
        await self._relay(proc, queue, reader, writer, interactive=True)

    async def op_pty_connect(self, req: dict[str, Any], reader: Any, writer: Any) -> None:
        proc = self.find(str(req.get("tag", "")))
        if not proc.pty:
            raise AgentError("not_found", "no pty session with that tag")
        queue = proc.subscribe()
        writer.write(jframe({"pid": proc.pid, "tag": proc.tag}))
        await self._relay(proc, queue, reader, writer, interactive=True)

    async def _relay(
        self,
        proc: Proc,
        queue: asyncio.Queue[tuple[bytes, bytes] | None],
        reader: Any,
        writer: Any,
        *,
        interactive: bool,
    ) -> None:
        async def inbound() -> None:
            while True:
                got = await read_frame(reader)
                if got is None:
                    return
                kind, payload = got
                if not interactive:
                    continue
                if kind == ord("I") and proc.master_fd is not None:
                    await write_all(proc.master_fd, payload)
                elif kind == ord("J"):
                    msg = loads(payload)
                    if msg.get("type") == "resize" and proc.master_fd is not None:
                        rows = winsize_dimension(msg.get("rows"))
                        cols = winsize_dimension(msg.get("cols"))
                        if rows and cols:  # a resize without two sizes is dropped
                            set_winsize(proc.master_fd, rows, cols)
                            with contextlib.suppress(ProcessLookupError):
                                os.killpg(proc.pid, signal.SIGWINCH)
                    elif msg.get("type") == "kill":
                        self.signal(proc, signal.SIGKILL)

        inbound_task = asyncio.ensure_future(inbound())
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {getter, inbound_task}, return_when=asyncio.FIRST_COMPLETED
                )
                if getter not in done:
                    getter.cancel()
                    return  # the client detached
                item = getter.result()
                if item is None:
                    writer.write(jframe({"exit_code": proc.exit_code}))
                    await writer.drain()
                    return
                writer.write(frame(*item))
                await writer.drain()
        finally:
            proc.unsubscribe(queue)
            inbound_task.cancel()

    async def op_ps(self, req: dict[str, Any], reader: Any, writer: Any) -> None:
        listed = [
            {"pid": p.pid, "tag": p.tag, "cmd": p.cmd, "args": p.args}
            for p in self.procs.values()
            if p.exit_code is None
        ]
        writer.write(jframe({"processes": listed}))

    async def op_kill(self, req: dict[str, Any], reader: Any, writer: Any) -> None:
        proc = self.find(str(req.get("selector", "")))
        signum = signal.SIGTERM if req.get("signal") == "SIGTERM" else signal.SIGKILL
        self.signal(proc, signum)
        writer.write(jframe({"ok": True}))

    # -- files

    def _entry(self, host: str, name: str | None = None) -> dict[str, Any]:
        st = os.lstat(host)
        kind = "file"
        target = None
        mode = st.st_mode
        if stat.S_ISLNK(mode):
            target_raw = os.readlink(host)
            try:
                real = (
                    os.stat(host)
                    if self.config.root == "/"
                    else os.stat(resolve_in_root(self.config.root, self.config.inner_path(host)))
                )
                kind = "directory" if stat.S_ISDIR(real.st_mode) else "file"
                mode = real.st_mode
            except (OSError, AgentError):
                kind = "unknown"
            target = target_raw
        elif stat.S_ISDIR(mode):
            kind = "directory"
        elif not stat.S_ISREG(mode):
            kind = "unknown"
        return {
            "name": name if name is not None else os.path.basename(host.rstrip("/")) or "/",
            "path": self.config.inner_path(host),
            "type": kind,
            "size": st.st_size,
            "mode": stat.S_IMODE(mode),
            "permissions": stat.filemode(st.st_mode),
            "owner": _user_name(st.st_uid),
            "group": _group_name(st.st_gid),
            "modified_at": int(st.st_mtime),
            "symlink_target": target,
        }

    def _chown(self, host: str) -> None:
        if self.config.switch_user:
            with contextlib.suppress(OSError):
                os.lchown(host, self.config.uid, self.config.gid)

    def _makedirs(self, host_dir: str) -> None:
        missing = []
        current = host_dir
        while not os.path.exists(current):
            missing.append(current)
            parent = os.path.dirname(current)
            if parent == current:
                break
            current = parent
        for path in reversed(missing):
            try:
                os.mkdir(path, 0o755)
            except FileExistsError:
                continue
            self._chown(path)

    async def op_read(self, req: dict[str, Any], reader: Any, writer: Any) -> None:
        host = self.config.host_path(str(req.get("path", "")), must_exist=True)
        try:
            nofollow = os.O_NOFOLLOW if self.config.root != "/" else 0
            # O_NONBLOCK: a FIFO planted by capsule code must not stall the open
            fd = os.open(host, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | nofollow)
        except FileNotFoundError:
            raise AgentError("not_found", f"file not found: {req.get('path')}") from None
        except IsADirectoryError:
            raise AgentError("invalid_request", "path is a directory") from None
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            os.close(fd)
            raise AgentError("invalid_request", "path is a directory")
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise AgentError("invalid_request", "not a regular file")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", buffering=0) as fh:
            writer.write(jframe({"size": st.st_size}))
            while True:
                data = fh.read(FILE_CHUNK)
                if not data:
                    break
                writer.write(frame(b"D", data))
                await writer.drain()
        writer.write(frame(b"Z", b""))

    async def op_write(self, req: dict[str, Any], reader: Any, writer: Any) -> None:
        host = self.config.host_path(str(req.get("path", "")))
        if os.path.isdir(host):
            raise AgentError("invalid_request", "path is a directory")
        self._makedirs(os.path.dirname(host))
        # a short name beside the target: a 255-byte file name must still be writable
        tmp = os.path.join(os.path.dirname(host), f".wrenn-{os.urandom(4).hex()}.part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        ok = False
        try:
            # the file can be written: the server may send its data now (a refusal came
            # as an error frame before any data was sent)
            writer.write(jframe({"ready": True}))
            with os.fdopen(fd, "wb", buffering=0) as fh:
                while True:
                    got = await read_frame(reader)
                    if got is None:
                        return  # the server went away: nothing is written
                    kind, payload = got
                    if kind == ord("Z"):
                        break
                    if kind == ord("X"):  # the upload failed on the server's side
                        fh.close()
                        os.unlink(tmp)
                        ok = True  # nothing left to clean up
                        writer.write(jframe({"aborted": True}))
                        return
                    if kind == ord("D"):
                        fh.write(payload)
            self._chown(tmp)
            os.replace(tmp, host)
            ok = True
        finally:
            if not ok:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        writer.write(jframe({"ok": True}))

    async def op_list(self, req: dict[str, Any], reader: Any, writer: Any) -> None:
        host = self.config.host_path(str(req.get("path", "")), must_exist=True)
        if not os.path.exists(host):
            raise AgentError("not_found", f"path not found: {req.get('path')}")
        if not os.path.isdir(host):
            raise AgentError("invalid_request", "path is not a directory")
        depth = max(int(req.get("depth") or 1), 1)
        entries: list[dict[str, Any]] = []
        deadline = time.monotonic() + LIST_SECONDS

        # Bounded in entries and time, and walked in a thread: a huge or deep tree
        # planted by capsule code neither ties up the agent nor fills its memory.
        def walk(directory: str, level: int) -> None:
            try:
                names = sorted(os.listdir(directory))
            except OSError:
                return
            for name in names:
                if len(entries) >= LIST_MAX_ENTRIES:
                    raise AgentError(
                        "invalid_request",
                        f"listing stopped at {LIST_MAX_ENTRIES} entries: "
                        "list with a smaller depth, or a deeper path",
                    )
                if time.monotonic() > deadline:
                    raise AgentError(
                        "invalid_request",
                        f"listing took longer than {LIST_SECONDS:g} s: "
                        "list with a smaller depth, or a deeper path",
                    )
                full = os.path.join(directory, name)
                try:
                    entry = self._entry(full, name)
                except OSError:
                    continue
                entries.append(entry)
                if level < depth and os.path.isdir(full) and not os.path.islink(full):
                    walk(full, level + 1)

        await asyncio.get_running_loop().run_in_executor(None, walk, host, 1)
        writer.write(jframe({"entries": entries}))

    async def op_stat(self, req: dict[str, Any], reader: Any, writer: Any) -> None:
        host = self.config.host_path(str(req.get("path", "")))
        if not os.path.lexists(host):
            raise AgentError("not_found", f"path not found: {req.get('path')}")
        writer.write(jframe({"entry": self._entry(host)}))

    async def op_mkdir(self, req: dict[str, Any], reader: Any, writer: Any) -> None:
        path = str(req.get("path", ""))
        host = self.config.host_path(path)
        if os.path.isdir(host):
            raise AgentError("conflict", f"already_exists: directory already exists: {path}")
        if os.path.lexists(host):
            raise AgentError("invalid_request", f"path exists and is not a directory: {path}")
        self._makedirs(host)
        writer.write(jframe({"entry": self._entry(host)}))

    async def op_remove(self, req: dict[str, Any], reader: Any, writer: Any) -> None:
        path = str(req.get("path", ""))
        host = self.config.host_path(path)
        if self.config.inner_path(host) == "/":
            raise AgentError("invalid_request", "refusing to remove /")
        if not os.path.lexists(host):
            raise AgentError("not_found", f"path not found: {path}")
        if os.path.isdir(host) and not os.path.islink(host):
            import shutil

            shutil.rmtree(host)
        else:
            os.unlink(host)
        writer.write(jframe({"ok": True}))

    async def op_ping(self, req: dict[str, Any], reader: Any, writer: Any) -> None:
        writer.write(jframe({"ok": True, "pid": os.getpid()}))

    async def op_connect(self, req: dict[str, Any], reader: Any, writer: Any) -> None:
        """Relay bytes to a TCP port inside the capsule's network namespace."""
        port = int(req.get("port", 0))
        try:
            up_reader, up_writer = await asyncio.open_connection(
                "127.0.0.1", self.config.ports.get(port, port)
            )
        except OSError as exc:
            raise AgentError("agent_error", f"connect to port {port}: {exc.strerror}") from None
        writer.write(jframe({"ok": True}))
        upstream = up_writer.get_extra_info("socket")

        def quick_ack() -> None:
            # Servers that leave Nagle on (Jupyter's tornado does) would wait for our
            # delayed ACK (40 ms) before each small write; ACK at once instead. Linux
            # resets the flag after use, so it is set before every read.
            if upstream is not None and hasattr(socket, "TCP_QUICKACK"):
                with contextlib.suppress(OSError):
                    upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

        async def down() -> None:
            while True:
                quick_ack()
                data = await up_reader.read(CHUNK)
                if not data:
                    break
                writer.write(frame(b"D", data))
                await writer.drain()
            writer.write(frame(b"Z", b""))

        async def up() -> None:
            while (got := await read_frame(reader)) is not None:
                kind, payload = got
                if kind == ord("Z"):
                    break
                up_writer.write(payload)
                await up_writer.drain()
            with contextlib.suppress(OSError):
                up_writer.write_eof()

        tasks = [asyncio.ensure_future(down()), asyncio.ensure_future(up())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            await tasks[0]
        finally:
            for task in tasks:
                task.cancel()
            up_writer.close()

    async def serve_connection(self, conn: socket.socket) -> None:
        """One connection: its first frame read exactly, then the operation.

        File operations are handed to the files worker, which runs as the capsule's user
        with no capabilities: the connection's descriptor and its request travel over a
        socket pair, so the worker answers the server directly.
        """
        loop = asyncio.get_running_loop()
        try:
            head = await recv_exactly(loop, conn, HEADER.size)
            length, kind = HEADER.unpack(head) if head else (0, 0)
            fits = head is not None and length <= MAX_FRAME
            payload = await recv_exactly(loop, conn, length) if fits else None
        except OSError:
            payload = None
        if payload is None:
            conn.close()
            return
        if self.files is not None and kind == ord("J") and _op_of(payload) in FILE_OPS:
            try:
                await self.files.hand_over(conn, payload)
                return
            except OSError:
                pass  # answered below, never done as root instead
            finally:
                conn.close()
            return
        reader, writer = await asyncio.open_unix_connection(sock=conn, limit=MAX_FRAME)
        await self.dispatch(kind, payload, reader, writer)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            got = await read_frame(reader)
        except AgentError:
            got = None
        if got is None:
            writer.close()
            return
        await self.dispatch(got[0], got[1], reader, writer)

    async def dispatch(
        self, kind: int, payload: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            try:
                request = loads(payload) if kind == ord("J") else None
                if not isinstance(request, dict):
                    raise AgentError("invalid_request", "first frame must be a JSON object")
                handler = getattr(self, "op_" + str(request.get("op", "")), None)
                if handler is None:
                    raise AgentError("invalid_request", f"unknown op {request.get('op')!r}")
                await handler(request, reader, writer)
            except AgentError as exc:
                writer.write(jframe({"error": exc.code, "message": exc.message}))
            except PermissionError as exc:
                writer.write(jframe({"error": "forbidden", "message": str(exc.strerror)}))
            except OSError as exc:
                code = ERRNO_CODES.get(exc.errno or 0, "agent_error")
                writer.write(jframe({"error": code, "message": str(exc.strerror or exc)}))
            except (ValueError, TypeError, KeyError) as exc:
                writer.write(jframe({"error": "invalid_request", "message": f"bad request: {exc}"}))
            except Exception as exc:  # an agent bug must not look like a dropped connection
                writer.write(jframe({"error": "agent_error", "message": f"{type(exc).__name__}"}))
            await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


FILE_OPS = frozenset({"read", "write", "list", "stat", "mkdir", "remove"})
HANDOFF_MAX = 64 * 1024  # a file operation's request (a path and a few fields)


_LIBC: Any = None  # libc through ctypes, for prctl: loaded by load_libc()
PR_SET_DUMPABLE = 4


def load_libc() -> None:
    """(In the agent, before it starts a command.) Load libc for :func:`oom_first`, which
    runs in the child between fork and exec, where nothing may be imported."""
    global _LIBC
    if _LIBC is None:
        import ctypes

        _LIBC = ctypes.CDLL(None, use_errno=True)


def _command_oom_score() -> bytes:
    """100 (as envd) when the agent is out of the OOM killer's reach (-1000, set by
    boot.py); else 1000, which puts any command above the agent within the capsule's
    memory limit."""
    try:
        with open("/proc/self/oom_score_adj") as fh:
            return b"100" if fh.read().strip() == "-1000" else b"1000"
    except OSError:
        return b"1000"


COMMAND_OOM_SCORE = _command_oom_score()


def oom_first() -> None:
    """In a child before ``exec``: the OOM killer picks it before the agent. Raising
    one's own score needs no privilege, but after the switch to the capsule's user
    ``/proc/self`` belongs to root until ``exec``, unless made dumpable again."""
    _LIBC.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    with contextlib.suppress(OSError):
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
        try:
            os.write(fd, COMMAND_OOM_SCORE)
        finally:
            os.close(fd)


async def _detached_or_gone(reader: asyncio.StreamReader) -> bool:
    """Wait for the server's word on a running exec: ``True`` for a ``detach`` frame,
    ``False`` when the connection closed (or sent anything else: never a detach)."""
    try:
        got = await read_frame(reader)
    except AgentError:
        return False
    if got is None or got[0] != ord("J"):
        return False
    try:
        return bool(loads(got[1]).get("type") == "detach")
    except (ValueError, AttributeError):
        return False


def _op_of(payload: bytes) -> str | None:
    try:
        request = loads(payload)
    except ValueError:
        return None
    return str(request.get("op")) if isinstance(request, dict) else None


async def recv_exactly(
    loop: asyncio.AbstractEventLoop, conn: socket.socket, n: int
) -> bytes | None:
    """Exactly ``n`` bytes (never more: the rest stays in the socket), or None at EOF."""
    buf = bytearray()
    while len(buf) < n:
        chunk = await loop.sock_recv(conn, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class FilesWorker:
    """The process that carries out file operations as the capsule's user.

    It is this program again (``--files-worker``), started as ``wrenn-user`` with no
    supplementary groups and no capabilities, so the files API can do exactly what a
    shell in the capsule could: root-only files, symlinks planted towards them and
    directories the user cannot write are refused by the kernel. If capsule code kills
    it (it may: same user), the next file operation starts a new one.
    """

    def __init__(self, config: Config, config_path: str) -> None:
        self.config = config
        self.config_path = config_path
        self.channel: socket.socket | None = None
        self.process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._handing = asyncio.Lock()  # one hand-over and its acknowledgement at a time

    async def _ensure(self) -> socket.socket:
        async with self._lock:
            if (
                self.channel is not None
                and self.process is not None
                and self.process.returncode is None
            ):
                return self.channel
            if self.channel is not None:
                self.channel.close()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                self.process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-I",
                    "-S",  # stdlib only, as the agent (_sandbox.py): no site-packages scan
                    os.path.abspath(__file__),
                    "--files-worker",
                    str(theirs.fileno()),
                    self.config_path,
                    stdin=asyncio.subprocess.DEVNULL,
                    pass_fds=(theirs.fileno(),),
                    env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                    cwd="/",
                    start_new_session=True,
                    user=self.config.uid,
                    group=self.config.gid,
                    extra_groups=[],
                )
            finally:
                theirs.close()
            ours.setblocking(False)
            self.channel = ours
            return ours

    async def hand_over(self, conn: socket.socket, request: bytes) -> None:
        """Give the connection to the worker; returns once the worker has taken it.

        The worker acknowledges each connection: one that dies with connections still
        queued (capsule code may kill it) loses none, they are given to its successor.
        """
        if len(request) > HANDOFF_MAX:
            raise OSError(errno.EMSGSIZE, "request too large")
        loop = asyncio.get_running_loop()
        async with self._handing:
            for attempt in range(2):
                channel = await self._ensure()
                try:
                    socket.send_fds(channel, [request], [conn.fileno()])
                    ack = await asyncio.wait_for(loop.sock_recv(channel, 16), 10)
                    if ack:
                        return
                except (OSError, asyncio.TimeoutError):  # noqa: UP041 (older capsule Pythons)
                    pass
                if attempt:
                    raise OSError(errno.EPIPE, "the files worker is not answering")
                if self.process is not None and self.process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        self.process.kill()
                    await self.process.wait()


async def files_worker_main(fd: int, config_path: str) -> None:
    """The files worker: serve each connection handed over by the agent, as this user."""
    with open(config_path) as fh:
        raw = loads(fh.read())
    agent = Agent(Config({**raw, "switch_user": False}))
    channel = socket.socket(fileno=fd)
    channel.setblocking(False)
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    loop.add_reader(channel.fileno(), readable.set)
    while True:
        await readable.wait()
        try:
            request, fds, _flags, _addr = socket.recv_fds(channel, HANDOFF_MAX, 1)
        except BlockingIOError:
            readable.clear()
            continue
        except OSError:
            return
        if not request and not fds:
            return  # the agent is gone
        if not fds:
            continue
        with contextlib.suppress(OSError):
            channel.send(b"k")  # taken (the agent waits for this before letting go)
        agent._background(_serve_handed(agent, socket.socket(fileno=fds[0]), request))


async def _serve_handed(agent: Agent, conn: socket.socket, request: bytes) -> None:
    try:
        reader, writer = await asyncio.open_unix_connection(sock=conn, limit=MAX_FRAME)
    except OSError:
        conn.close()
        return
    await agent.dispatch(ord("J"), request, reader, writer)


async def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            await asyncio.sleep(0.005)
            continue
        view = view[written:]


def winsize_dimension(value: object) -> int:
    """A terminal's rows or cols as the kernel's ``winsize`` holds them: an int clamped to
    1..65535 (a peer's 70000 must not end the terminal, or the agent), 0 for a value that
    is no int at all (the caller's default, or a resize to drop)."""
    if isinstance(value, bool) or not isinstance(value, int) or value == 0:
        return 0
    return min(max(value, 1), 0xFFFF)


def set_winsize(fd: int, rows: int, cols: int) -> None:
    import termios

    rows, cols = winsize_dimension(rows) or 1, winsize_dimension(cols) or 1
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def watch_children_with_pidfds() -> None:
    """(In the running loop.) Python 3.11 watches each child with a thread of its own
    (1,000 streams, 1,000 threads); a pidfd per child is watched by the event loop
    instead. 3.12 does this by itself; without pidfds (Linux < 5.3) the default stays."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)


async def main(socket_path: str, config_path: str) -> None:
    watch_children_with_pidfds()
    with open(config_path) as fh:
        config = Config(loads(fh.read()))
    agent = Agent(config)
    if config.switch_user:
        agent.files = FilesWorker(config, config_path)
        if Spawner.usable():
            agent.spawner = Spawner(config.uid, config.gid)
    if socket_path.startswith("fd:"):  # a listening socket made by the server
        listener = socket.socket(fileno=int(socket_path[3:]))
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(socket_path)
        os.chmod(socket_path, 0o600)
        listener.listen(64)
    listener.setblocking(False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Not loop.add_signal_handler: it asks inspect whether the callback is a coroutine
    # function, and that import alone would undo the deferral above at every boot. Nor
    # signal.signal: it turns the old handler into an enum member, and for a function
    # (SIGINT's) the failed lookup formats a repr that imports inspect too. A handler run
    # by Python between bytecodes hands the stop to the loop, waking it.
    import _signal  # type: ignore[import-not-found]  # (CPython's C module, no stubs)

    def on_signal(signum: int, frame: object) -> None:
        loop.call_soon_threadsafe(stop.set)

    for signum in (signal.SIGTERM, signal.SIGINT):
        _signal.signal(signum, on_signal)

    async def accept() -> None:
        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError:
                await asyncio.sleep(0.01)
                continue
            agent._background(agent.serve_connection(conn))

    acceptor = asyncio.ensure_future(accept())
    if config.sudo and config.switch_user:
        agent._background(serve_sudo(config.sudo))
    await stop.wait()
    acceptor.cancel()
    listener.close()
    for proc in list(agent.procs.values()):
        agent.signal(proc, signal.SIGKILL)
    if agent.files is not None and agent.files.process is not None:
        with contextlib.suppress(ProcessLookupError):
            agent.files.process.kill()
    if agent.spawner is not None:
        agent.spawner.close()


# --- sudo ------------------------------------------------------------------------------
# The capsule's /usr/bin/sudo (_inside/sudo.py) is not setuid: it sends its request and
# its standard descriptors here, and the agent (root of the capsule's user namespace,
# never host root) runs the command. Only processes of this capsule may ask: the peer
# must be visible in the capsule's pid namespace (SO_PEERCRED gives pid 0 otherwise).

SUDO_REQUEST_MAX = 1 << 20
SUDO_SIGNALS = {1, 2, 3, 10, 12, 15}  # HUP INT QUIT USR1 USR2 TERM, passed on


async def serve_sudo(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o666)  # every user of the capsule may use sudo, as on the cloud
    listener.listen(16)
    listener.setblocking(False)
    loop = asyncio.get_running_loop()
    sessions: set[asyncio.Task[None]] = set()
    while True:
        try:
            conn, _ = await loop.sock_accept(listener)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        task = loop.create_task(_sudo_session(conn))
        sessions.add(task)
        task.add_done_callback(sessions.discard)


async def _sudo_session(conn: socket.socket) -> None:
    fds: list[int] = []
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        pid, _uid, _gid = struct.unpack("3i", creds)
        if pid <= 0:
            conn.sendall(b'{"error": "refused: the caller is not a process of this capsule"}\n')
            return
        conn.setblocking(False)
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(conn.fileno(), ready)
        try:
            await asyncio.wait_for(readable, 30)
        finally:
            loop.remove_reader(conn.fileno())
        data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 8)
        if len(fds) != 4 or len(data) < 4:
            raise ValueError("malformed request")
        size = struct.unpack(">I", data[:4])[0]
        if size > SUDO_REQUEST_MAX:
            raise ValueError("request too large")
        data = data[4:]
        while len(data) < size:
            chunk = await asyncio.wait_for(loop.sock_recv(conn, size - len(data)), 30)
            if not chunk:
                return
            data += chunk
        request = loads(data)
        await _sudo_run(conn, request, fds)
    except (OSError, ValueError, KeyError, TypeError, asyncio.TimeoutError) as exc:  # noqa: UP041
        with contextlib.suppress(OSError):
            conn.setblocking(True)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            conn.sendall(dumps({"error": reason or type(exc).__name__}).encode() + b"\n")
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        conn.close()


async def _sudo_run(conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
    loop = asyncio.get_running_loop()
    path, argv = str(request["path"]), [str(a) for a in request["argv"]]
    env = {str(k): str(v) for k, v in dict(request["env"]).items()}
    try:
        user = pwd.getpwnam(str(request["user"]))
    except KeyError:
        raise ValueError(f"unknown user {request['user']}") from None
    gid = user.pw_gid
    if request.get("group"):
        try:
            gid = grp.getgrnam(str(request["group"])).gr_gid
        except KeyError:
            raise ValueError(f"unknown group {request['group']}") from None
    cwd = f"/proc/self/fd/{fds[3]}"  # the caller's working directory, whatever its path
    if request.get("chdir"):
        cwd = os.path.join(cwd, str(request["chdir"]))
    load_libc()  # for oom_first, in the child: no import after fork
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            executable=path,
            stdin=fds[0],
            stdout=fds[1],
            stderr=fds[2],
            cwd=cwd,
            env=env,
            start_new_session=True,
            user=user.pw_uid,
            group=gid,
            extra_groups=os.getgrouplist(user.pw_name, gid),
            # the commands' OOM score, as every other command: not the agent's (inherited
            # otherwise: -1000 where boot could set it, so a root memory hog never died)
            preexec_fn=oom_first,
        )
    except FileNotFoundError:
        raise ValueError(f"{argv[0]}: command not found") from None
    except PermissionError:
        raise ValueError(f"{argv[0]}: permission denied") from None
    for fd in fds:  # the command holds them now; the caller must see EOF when it exits
        os.close(fd)
    fds.clear()

    async def watch() -> None:
        buffer = b""
        while True:
            chunk = await loop.sock_recv(conn, 4096)
            if not chunk:  # the caller is gone (killed): so is its command
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    signum = int(loads(line)["signal"])
                    if signum in SUDO_SIGNALS:
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(process.pid, signum)

    watcher = loop.create_task(watch())
    code = await process.wait()
    watcher.cancel()
    with contextlib.suppress(OSError):
        conn.setblocking(True)
        status = code if code >= 0 else 128 - code
        conn.sendall(dumps({"exit": status}).encode() + b"\n")


# --- spawner ---------------------------------------------------------------------------
# ``Popen`` with ``user=``/``group=``/``extra_groups=`` (or a ``preexec_fn``) cannot use
# CPython's vfork fast path: every command as the capsule user paid a full fork of the
# agent. The spawner is a fork of the agent that dropped to the capsule user once (no
# supplementary groups, no capabilities, not dumpable: capsule code can neither trace it
# nor take its descriptors) and raised its OOM score to the commands' (inherited by every
# child, so no code has to run between fork and exec). The agent sends it each command
# over a socket pair (argv, env and cwd as JSON, stdout/stderr pipes by SCM_RIGHTS); it
# starts the command with the fast path and answers with the pid and a pidfd, then the
# exit status when it reaps the child. The agent keeps every power it has over the
# command (root of the capsule's user namespace: ``killpg`` reaches the whole group).
# Whatever the spawner does (it may be killed or stopped by capsule code, same user), the
# agent never waits on it for long: a spawner that does not answer is killed, the command
# takes the direct path and the next one starts a new spawner.

SPAWN_REPLY_SECONDS = 10.0
SPAWN_CHECK_SECONDS = 0.25  # how often a spawner that has not answered yet is looked at
SPAWN_MESSAGE_MAX = 200 * 1024  # argv + env of one command; larger ones go direct


class SpawnerUnavailable(Exception):
    """The spawner could not start this command: the caller takes the direct path."""


class Spawner:
    """The agent's side of the spawner (see the section comment above)."""

    def __init__(self, uid: int, gid: int) -> None:
        self.uid = uid
        self.gid = gid
        self.pid: int | None = None
        self.channel: socket.socket | None = None
        self._pidfd: int | None = None
        self._next = 0
        self._replies: dict[
            int, asyncio.Future[tuple[dict[str, Any], asyncio.Future[int] | None]]
        ] = {}
        self._exits: dict[int, tuple[asyncio.Future[int], int | None]] = {}

    @staticmethod
    def usable() -> bool:
        return hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")

    def _start(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the spawner process
            code = 1
            try:
                spawner_main(theirs.fileno(), self.uid, self.gid)
                code = 0
            finally:
                os._exit(code)
        theirs.close()
        ours.setblocking(False)
        self.pid, self.channel = pid, ours
        self._pidfd = os.pidfd_open(pid)
        asyncio.get_running_loop().add_reader(ours.fileno(), self._readable, ours)
        return ours

    def _readable(self, channel: socket.socket) -> None:
        """(A loop callback.) Take every message waiting on the channel."""
        while self.channel is channel:
            try:
                data, fds, _flags, _addr = socket.recv_fds(channel, 4096, 1)
            except BlockingIOError:
                return
            except OSError:
                break
            if not data:
                for fd in fds:
                    os.close(fd)
                break  # the spawner is gone
            try:
                if not self._take(loads(data), fds):
                    break
            except (ValueError, TypeError, KeyError, AttributeError):
                for fd in fds:
                    os.close(fd)
        self._gone(channel)

    def _take(self, msg: dict[str, Any], fds: list[int]) -> bool:
        """One message of the spawner: an exit status, or the answer to a request."""
        if "exit" in msg:
            waiter = self._exits.pop(int(msg["exit"]), None)
            if waiter is not None:
                if waiter[1] is not None:
                    os.close(waiter[1])
                if not waiter[0].done():
                    waiter[0].set_result(int(msg["code"]))
            return True
        exited: asyncio.Future[int] | None = None
        if "pid" in msg and int(msg["pid"]) in (0, 1, os.getpid()):
            return False  # not a pid it could have started: never trusted again
        if "pid" in msg:  # registered here, before any exit record can be read
            exited = asyncio.get_running_loop().create_future()
            self._exits[int(msg["pid"])] = (exited, fds[0] if fds else None)
        else:
            for fd in fds:
                os.close(fd)
        reply = self._replies.pop(int(msg.get("id", -1)), None)
        if reply is not None and not reply.done():
            reply.set_result((msg, exited))
        return True

    def _gone(self, channel: socket.socket) -> None:
        """The spawner died or was stopped: drop it (the next command starts another)."""
        if self.channel is not channel:
            return
        self.channel = None
        loop = asyncio.get_running_loop()
        # the loop forgets the descriptor before it is closed: the next spawner's channel
        # may get the same number
        loop.remove_reader(channel.fileno())
        channel.close()
        for reply in self._replies.values():
            if not reply.done():
                reply.set_exception(SpawnerUnavailable())
        self._replies.clear()
        if self._pidfd is not None and self.pid is not None:
            pidfd, pid, self._pidfd = self._pidfd, self.pid, None
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)

            def reaped() -> None:  # our own child: reaped once it is gone
                loop.remove_reader(pidfd)
                os.close(pidfd)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)

            loop.add_reader(pidfd, reaped)
        # Commands it started run on; their exit status died with it. Each one's pidfd
        # says when it ends (-1: the status is lost, as for a killed command).
        exits, self._exits = self._exits, {}
        for future, child_fd in exits.values():
            if child_fd is None:
                future.set_result(-1)
                continue

            def ended(future: asyncio.Future[int] = future, fd: int = child_fd) -> None:
                loop.remove_reader(fd)
                os.close(fd)
                if not future.done():
                    future.set_result(-1)

            loop.add_reader(child_fd, ended)

    async def spawn(
        self, argv: list[str], env: dict[str, str], cwd: str, out: int, err: int
    ) -> tuple[int, asyncio.Future[int]]:
        """Start ``argv`` as the capsule user: its pid and a future of its exit status.

        Raises :class:`SpawnerUnavailable` (the command was not started: take the direct
        path) when the spawner cannot be started or reached, or could not start the
        command; :class:`AgentError` when it went away (killed or stopped by capsule
        code) after it was sent the command, which may then be running.
        """
        message = dumps({"id": self._next, "argv": argv, "env": env, "cwd": cwd}).encode()
        if len(message) > SPAWN_MESSAGE_MAX:
            raise SpawnerUnavailable()
        loop = asyncio.get_running_loop()
        try:
            channel = self.channel if self.channel is not None else self._start()
        except OSError:
            raise SpawnerUnavailable() from None
        ident, self._next = self._next, self._next + 1
        reply: asyncio.Future[tuple[dict[str, Any], asyncio.Future[int] | None]]
        reply = loop.create_future()
        self._replies[ident] = reply
        deadline = loop.time() + SPAWN_REPLY_SECONDS
        try:
            while True:
                try:
                    socket.send_fds(channel, [message], [out, err])
                    break
                except BlockingIOError:  # a spawner that reads nothing (stopped)
                    if loop.time() > deadline or self._stopped():
                        raise asyncio.TimeoutError() from None  # noqa: UP041
                    await asyncio.sleep(0.005)
        except (OSError, asyncio.TimeoutError):  # noqa: UP041 (older capsule Pythons)
            self._replies.pop(ident, None)
            self._gone(channel)
            raise SpawnerUnavailable() from None  # not sent: the direct path may start it
        # Sent: from here on the command may be running even if no answer comes (the
        # spawner killed just after starting it), so it is never started a second time.
        try:
            while True:
                # capsule code may stop it (same user): not answering for a while and
                # stopped, or not answering at all, it is replaced
                step = min(SPAWN_CHECK_SECONDS, deadline - loop.time())
                if step <= 0 or (not reply.done() and self._stopped()):
                    raise asyncio.TimeoutError()  # noqa: UP041
                await asyncio.wait((reply,), timeout=step)  # leaves it pending on timeout
                if reply.done():
                    msg, exited = reply.result()  # SpawnerUnavailable: the spawner is gone
                    break
        except (SpawnerUnavailable, asyncio.TimeoutError):  # noqa: UP041
            self._replies.pop(ident, None)
            self._gone(channel)
            raise AgentError(
                "agent_error", "the command's starter went away before reporting it started"
            ) from None
        if exited is None:  # it could not start it: the direct path gives the same error
            raise SpawnerUnavailable()
        return int(msg["pid"]), exited

    async def exit_status(self, exited: asyncio.Future[int]) -> int:
        """The exit status of a command it started; should the spawner be stopped before
        reporting it, the spawner is replaced (and the status is -1, see :meth:`_gone`)."""
        while not exited.done():
            await asyncio.wait((exited,), timeout=4 * SPAWN_CHECK_SECONDS)
            if not exited.done() and self.channel is not None and self._stopped():
                self._gone(self.channel)
        return exited.result()

    def _stopped(self) -> bool:
        """Whether the spawner is stopped (SIGSTOP, or traced): it will not answer."""
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state in (b"T", b"t")

    def close(self) -> None:
        if self.channel is not None:
            self._gone(self.channel)


def spawner_main(fd: int, uid: int, gid: int) -> None:
    """The spawner process (forked from the agent): drop to the capsule user, then start
    each command it is sent with ``Popen``'s fast path and report its exit status."""
    import select
    import subprocess

    signal.set_wakeup_fd(-1)  # the agent's loop owns that descriptor, not us
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)
    os.closerange(3, fd)
    os.closerange(fd + 1, 1 << 20)
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "wb", buffering=0) as fh:
        fh.write(COMMAND_OOM_SCORE)  # inherited by every command
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)  # for good: capabilities and dumpable go with it
    os.chdir("/")
    channel = socket.socket(fileno=fd)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    devnull = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    running: dict[int, subprocess.Popen[bytes]] = {}
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    poller.register(wake_r, select.POLLIN)

    def send(obj: dict[str, Any], fds: list[int] | None = None) -> None:
        socket.send_fds(channel, [dumps(obj).encode()], fds or [])

    def close(fds: list[int]) -> None:
        for got in fds:
            with contextlib.suppress(OSError):
                os.close(got)
        fds.clear()

    def reap() -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            popen = running.pop(pid, None)
            if popen is not None:
                popen.returncode = code  # so Popen never reaps (or waits for) it itself
            send({"exit": pid, "code": code})

    def start(request: dict[str, Any], fds: list[int]) -> None:
        """Start one command; closes ``fds`` before answering (a spawner stopped after its
        answer must hold no end of the command's pipes)."""
        try:
            popen = subprocess.Popen(
                [str(a) for a in request["argv"]],
                stdin=devnull,
                stdout=fds[0],
                stderr=fds[1],
                cwd=str(request["cwd"]),
                env={str(k): str(v) for k, v in dict(request["env"]).items()},
                start_new_session=True,
            )
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            close(fds)
            send({"id": request.get("id"), "error": type(exc).__name__})
            return
        close(fds)
        running[popen.pid] = popen
        pidfd = os.pidfd_open(popen.pid)
        try:
            send({"id": request.get("id"), "pid": popen.pid}, [pidfd])
        finally:
            os.close(pidfd)

    while True:
        for ready, _events in poller.poll():
            if ready == wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
                reap()
                continue
            try:
                data, fds, _flags, _addr = socket.recv_fds(channel, SPAWN_MESSAGE_MAX, 2)
            except BlockingIOError:
                continue
            if not data and not fds:
                return  # the agent is gone
            try:
                request = loads(data)
            except ValueError:
                request = None
            if isinstance(request, dict) and len(fds) == 2:
                start(request, fds)
            else:
                close(fds)


if __name__ == "__main__":
    if sys.argv[1] == "--files-worker":
        asyncio.run(files_worker_main(int(sys.argv[2]), sys.argv[3]))
    else:
        asyncio.run(main(sys.argv[1], sys.argv[2]))
