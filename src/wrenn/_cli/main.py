"""The ``wrenn`` command line: capsules from a terminal or a script.

Every command talks to the server named by ``WRENN_BASE_URL`` / ``WRENN_API_KEY``; when
neither is set, to the background server of ``wrenn local start``; with ``--local``, to
that background server or else an embedded one that lives as long as the command
(``wrenn demo`` always uses one). Expected failures print one line on stderr and exit 1
(2 for usage errors, 130 after Ctrl-C, 143 after SIGTERM); ``--debug`` adds the
traceback. ``--json`` prints exactly one JSON document on stdout. ``wrenn run`` and
``wrenn exec`` exit with the command's own exit code.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from .._exceptions import WrennConfigurationError, WrennConnectionError, WrennError
from . import output, verbs
from .common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    UsageError,
    emit,
    split_target,
)

__all__ = ["main"]

from .parser import parser

# The SDK and anyio, and what only some commands use, are imported once the arguments are
# parsed: `wrenn --help`, `wrenn --version` and usage errors answer without loading them.
if TYPE_CHECKING:
    from .._client import AsyncWrennClient


def main(argv: list[str] | None = None) -> int:
    top = parser()
    args, extra = top.parse_known_args(argv)
    forwarded = args.command == "local" and args.local_command in ("serve", "start")
    if extra and args.command == "templates" and not any(e.startswith("-") for e in extra):
        args.names += extra  # names after options: `templates build -f RECIPE NAME`
        extra = []
    if extra and not forwarded:
        top.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "completion":
        from .completion import script
        from .parser import serve_parser

        sys.stdout.write(script(args.shell, top, serve_parser()))
        return 0
    if args.command == "local" and args.local_command == "serve":
        try:
            import wrenn_local
        except ImportError:
            sys.stderr.write("wrenn: the local server needs: pip install 'wrenn[local]'\n")
            return EXIT_USAGE
        return wrenn_local.main(["serve", *extra], prog="wrenn local")
    import anyio

    try:
        code: int = anyio.run(_until_terminated, args, extra, backend=args.backend)
    except BaseException as exc:
        return _report(exc, debug=args.debug)
    return code


class Terminated(WrennError):
    """SIGTERM or SIGHUP arrived: the command was cancelled and cleaned up (exit 143)."""


async def _until_terminated(args: argparse.Namespace, extra: list[str]) -> int:
    """The command, cancelled (so capsules and an embedded server are cleaned up) when
    SIGTERM or SIGHUP arrives, as Ctrl-C already does."""
    import signal
    import threading

    import anyio

    if threading.current_thread() is not threading.main_thread():
        # signals reach only the main thread (the CLI driven from a program's thread)
        return await dispatch(args, extra)
    result: list[int] = []
    terminated = False
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGHUP) as signals:
        async with anyio.create_task_group() as tg:

            async def body() -> None:
                result.append(await dispatch(args, extra))
                tg.cancel_scope.cancel()

            tg.start_soon(body)
            async for _ in signals:
                terminated = True
                tg.cancel_scope.cancel()
                break
    if terminated and not result:
        raise Terminated("terminated")
    return result[0]


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _report(exc: BaseException, *, debug: bool = False) -> int:
    """One line on stderr and the exit code for an expected failure (``--debug``: the
    traceback first); anything else (a bug) keeps its traceback."""
    leaves = _leaves(exc)
    expected = [leaf for leaf in leaves if isinstance(leaf, WrennError | OSError)]
    if debug and expected:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    for kind, code, text in (
        (KeyboardInterrupt, EXIT_INTERRUPTED, "interrupted"),
        (Terminated, EXIT_TERMINATED, "terminated"),
    ):
        if any(isinstance(leaf, kind) for leaf in leaves):
            sys.stderr.write(f"wrenn: {text}\n")
            return code
    usage = [leaf for leaf in leaves if isinstance(leaf, UsageError)]
    if usage:
        sys.stderr.write(f"wrenn: {usage[0].message}\n")
        return EXIT_USAGE
    if expected and len(expected) == len(leaves):
        sys.stderr.write(f"wrenn: error: {_describe(expected[0])}\n")
        return EXIT_ERROR
    raise exc


def _describe(exc: BaseException) -> str:
    from .local import LocalServerError

    if isinstance(exc, LocalServerError):
        return exc.message
    if isinstance(exc, WrennError):
        return _cli_words(str(exc))
    assert isinstance(exc, OSError)
    if exc.errno == errno.EPIPE:
        return "output closed"
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


def _cli_words(text: str) -> str:
    """A message written for Python callers, told in command-line terms."""
    for python, shell in (
        ("pass api_key= (or token=) or set the", "set"),
        ("pass api_key= or set", "set"),
        ("pass api_key=", "set WRENN_API_KEY"),
        (" or pass base_url=", ""),
    ):
        text = text.replace(python, shell)
    return text


async def dispatch(args: argparse.Namespace, extra: list[str] | None = None) -> int:
    if args.command == "local":
        from . import local

        return await local.dispatch(args, extra or [])
    if args.command == "demo":
        from .demo import run_demo

        return await run_demo(capsules=args.capsules)
    handlers: dict[str, Callable[[AsyncWrennClient, argparse.Namespace], Awaitable[int]]] = {
        "run": cmd_run,
        "ls": cmd_ls,
        "kill": cmd_kill,
        "reap": cmd_reap,
        "put": cmd_put,
        "get": cmd_get,
        "snapshot": cmd_snapshot,
        "shell": cmd_shell,
        **verbs.HANDLERS,
    }
    check_arguments(args)  # bad input fails before any server is started or reached
    async with target(local=args.local, lasting=args.command == "create") as client:
        return await handlers[args.command](client, args)


def check_arguments(args: argparse.Namespace) -> None:
    from pathlib import Path

    if args.command == "run":
        verbs.check_command(args)
    elif args.command == "put":
        split_target(args.target)
        if not Path(args.source).is_file():
            raise UsageError(f"{args.source} is not a file")
    elif args.command == "get":
        split_target(args.source)
        folder = Path(args.target)
        folder = folder if folder.is_dir() else folder.parent
        if not folder.is_dir():
            raise UsageError(f"{folder} is not a directory")
    elif args.command == "shell" and args.json:
        raise UsageError("shell is interactive; --json does not apply")
    verbs.check(args)


KILL_WAIT = 60.0  # seconds `wrenn kill` waits for each capsule to be stopped

NO_SERVER = (
    "no server: start a local one with `wrenn local start`, pass --local for one that "
    "lasts this command, or set WRENN_API_KEY (and WRENN_BASE_URL) for a Wrenn server"
)


@asynccontextmanager
async def target(*, local: bool, lasting: bool = False) -> AsyncIterator[AsyncWrennClient]:
    """A client for the configured server; with neither variable set, for the background
    local server; with ``--local``, for that one or else an embedded one."""
    from .._client import AsyncWrennClient
    from .local import running

    configured = any(os.environ.get(v) for v in ("WRENN_BASE_URL", "WRENN_API_KEY"))
    background = running() if local or not configured else None
    if background is not None:
        async with AsyncWrennClient(
            api_key=background.api_key,
            base_url=background.base_url,
            proxy_domain=background.proxy_domain or None,
        ) as client:
            try:
                yield client
            except WrennConnectionError as exc:
                raise WrennConnectionError(
                    f"{exc.message}; is the local server still up? (wrenn local status)"
                ) from exc
        return
    if not local:
        try:
            client = AsyncWrennClient()
            client.config.auth_headers()  # fail now, with the variable named
        except WrennConfigurationError as exc:
            if exc.message.startswith("no credentials"):
                raise UsageError(NO_SERVER) from None
            raise UsageError(_cli_words(exc.message)) from None
        async with client:
            yield client
        return
    if lasting:
        raise UsageError(
            "a capsule on an embedded server ends with the command: "
            "start a background server first (wrenn local start)"
        )
    try:
        import wrenn_local
    except ImportError:
        raise UsageError("--local needs the local server: pip install 'wrenn[local]'") from None
    async with (
        wrenn_local.serve() as server,
        AsyncWrennClient(
            api_key=server.api_key, base_url=server.base_url, proxy_domain=server.proxy_domain
        ) as client,
    ):
        yield client


# --- commands ------------------------------------------------------------------------------


async def cmd_run(client: AsyncWrennClient, args: argparse.Namespace) -> int:
    async with output.spinner("starting a capsule", quiet=args.json) as spin:
        try:
            async with client.capsule(template=args.template, timeout=args.ttl) as cap:
                spin.stop()  # the command's own output follows
                return await verbs.stream_command(cap, args)
        finally:
            spin.resume("cleaning up")


async def cmd_ls(client: AsyncWrennClient, args: argparse.Namespace) -> int:
    capsules = await client.capsules.list()

    def human() -> None:
        if not capsules:
            sys.stdout.write("no capsules\n")
            return
        headers = ("ID", "STATUS", "TEMPLATE", "VCPUS", "MEMORY", "CREATED")
        cells = [
            [
                c.id,
                str(c.status),
                c.template or "-",
                str(c.vcpus),
                f"{c.memory_mb} MiB",
                c.created_at.strftime("%Y-%m-%d %H:%M:%S") if c.created_at else "-",
            ]
            for c in capsules
        ]
        output.print_table(sys.stdout, headers, cells, width=200)

    rows = [
        {
            "id": c.id,
            "status": str(c.status),
            "template": c.template,
            "vcpus": c.vcpus,
            "memory_mb": c.memory_mb,
            "created_at": c.created_at.isoformat() if c.created_at else None,
        }
        for c in capsules
    ]
    emit(args, rows, human)
    return 0


async def cmd_kill(client: AsyncWrennClient, args: argparse.Namespace) -> int:
    """Destroy each capsule and wait until it is stopped (or gone): "destroyed" means it."""
    from .._models.enums import CapsuleStatus
    from .._wait import wait_for_status

    done = []
    async with output.spinner(f"destroying {' '.join(args.capsule_ids)}", quiet=args.json):
        for capsule_id in args.capsule_ids:
            await client.capsules.destroy(capsule_id)
            await wait_for_status(
                client.capsules,
                capsule_id,
                CapsuleStatus.STOPPED,
                timeout=KILL_WAIT,
                missing_ok=True,
                fail_on=(CapsuleStatus.ERROR,),
            )
            done.append(capsule_id)
    emit(
        args,
        {"destroyed": done},
        lambda: sys.stdout.write("".join(f"{i} destroyed\n" for i in done)),
    )
    return 0


async def cmd_reap(client: AsyncWrennClient, args: argparse.Namespace) -> int:
    found = await client.capsules.reap(dry_run=not args.yes, other_hosts=args.other_hosts)
    rows = [
        {
            "id": c.id,
            "status": str(c.status),
            "host": c.metadata.get("wrenn.owner.host"),
            "pid": c.metadata.get("wrenn.owner.pid"),
            "created_at": c.created_at.isoformat() if c.created_at else None,
        }
        for c in found
    ]

    def human() -> None:
        if not rows:
            sys.stdout.write("no orphaned capsules\n")
            return
        verb = "destroyed" if args.yes else "would destroy (run again with --yes)"
        headers = ("ID", "STATUS", "OWNER HOST", "OWNER PID", "CREATED")
        cells = [
            [str(r[k] or "-") for k in ("id", "status", "host", "pid", "created_at")] for r in rows
        ]
        output.print_table(sys.stdout, headers, cells, width=200)
        sys.stdout.write(f"{len(rows)} capsule(s): {verb}\n")

    emit(args, {"destroyed" if args.yes else "would_destroy": rows}, human)
    return 0


async def cmd_put(client: AsyncWrennClient, args: argparse.Namespace) -> int:
    import anyio

    capsule_id, path = split_target(args.target)
    source = anyio.Path(args.source)
    if not await source.is_file():
        raise UsageError(f"{source} is not a file")
    size = (await source.stat()).st_size
    cap = await client.connect(capsule_id)
    progress = output.progress(f"put {source.name}", args.json)
    async with await anyio.open_file(source, "rb") as f:
        with progress:
            task = progress.add_task("put", total=size)

            async def chunks() -> AsyncIterator[bytes]:
                while chunk := await f.read(1024 * 1024):
                    progress.advance(task, len(chunk))
                    yield chunk

            await cap.files.write(path, chunks())
    emit(
        args,
        {"capsule_id": capsule_id, "path": path, "bytes": size},
        lambda: sys.stdout.write(f"{source} -> {capsule_id}:{path} ({size} bytes)\n"),
    )
    return 0


async def cmd_get(client: AsyncWrennClient, args: argparse.Namespace) -> int:
    from pathlib import Path

    import anyio

    capsule_id, path = split_target(args.source)
    cap = await client.connect(capsule_id)
    target_path = anyio.Path(args.target)
    if await target_path.is_dir():
        target_path = target_path / Path(path).name
    partial = target_path.with_name(target_path.name + ".part")
    progress = output.progress(f"get {Path(path).name}", args.json)
    total = 0
    try:
        async with await anyio.open_file(partial, "wb") as f:
            with progress:
                task = progress.add_task("get", total=None)
                async with cap.files.read_stream(path, chunk_size=1024 * 1024) as chunks:
                    async for chunk in chunks:
                        await f.write(chunk)
                        total += len(chunk)
                        progress.advance(task, len(chunk))
        await partial.replace(target_path)  # only a complete download takes the name
    finally:
        with anyio.CancelScope(shield=True):
            await partial.unlink(missing_ok=True)
    emit(
        args,
        {"capsule_id": capsule_id, "path": path, "bytes": total, "file": str(target_path)},
        lambda: sys.stdout.write(f"{capsule_id}:{path} -> {target_path} ({total} bytes)\n"),
    )
    return 0


async def cmd_snapshot(client: AsyncWrennClient, args: argparse.Namespace) -> int:
    async with output.spinner(f"snapshot {args.name}", quiet=args.json):
        pending = await client.snapshots.create(args.capsule_id, name=args.name)
        template = await client.snapshots.wait(pending, timeout=600)
    emit(
        args,
        {"name": template.name, "size_bytes": template.size_bytes},
        lambda: sys.stdout.write(f"snapshot {template.name} ready ({template.size_bytes} bytes)\n"),
    )
    return 0


async def cmd_shell(client: AsyncWrennClient, args: argparse.Namespace) -> int:
    from .shell import attach

    if args.capsule_id is None:
        async with client.capsule(template=args.template) as cap:
            return await attach(cap, args.cmd)
    cap = await client.connect(args.capsule_id)
    return await attach(cap, args.cmd)
