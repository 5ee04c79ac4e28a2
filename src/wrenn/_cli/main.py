"""The ``wrenn`` command line: capsules from a terminal or a script.

Every command talks to the server named by ``WRENN_BASE_URL`` / ``WRENN_API_KEY``, or,
with ``--local``, to an embedded local server that lives as long as the command (``wrenn
demo`` always uses one). Expected failures print one line on stderr and exit 1 (2 for
usage errors, 130 after Ctrl-C); ``--json`` prints machine-readable output instead of
tables. ``wrenn run`` exits with the command's own exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from .._client import AsyncWrennClient
from .._exceptions import WrennConfigurationError, WrennError
from .._models.streams import StreamExit, StreamStderr, StreamStdout
from . import output

__all__ = ["main"]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad command-line input (exit 2)."""


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="wrenn", description="Work with Wrenn capsules from the command line."
    )
    top.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument(
            "--local", action="store_true", help="use an embedded local server for this command"
        )
        p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    local = sub.add_parser("local", help="the embedded local server")
    local_sub = local.add_subparsers(dest="local_command", required=True, metavar="COMMAND")
    serve = local_sub.add_parser("serve", help="run the local Wrenn server until Ctrl-C")
    serve.add_argument("rest", nargs=argparse.REMAINDER, help="options of python -m wrenn_local")

    run = command("run", "run a command in a fresh capsule, streaming its output")
    run.add_argument("--template", default=None)
    run.add_argument("--env", action="append", default=[], metavar="K=V")
    run.add_argument("--cwd", default=None)
    run.add_argument("--timeout", type=int, default=None, help="capsule TTL in seconds")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")

    shell = command("shell", "an interactive terminal in a capsule (a fresh one by default)")
    shell.add_argument("capsule_id", nargs="?", default=None)
    shell.add_argument("--template", default=None)
    shell.add_argument("--cmd", default="/bin/bash", help="program to run (default /bin/bash)")

    command("ls", "list capsules")
    kill = command("kill", "destroy capsules")
    kill.add_argument("capsule_ids", nargs="+", metavar="ID")
    reap = command(
        "reap",
        "find capsules whose program on this host is gone (dry run; --yes destroys them)",
    )
    reap.add_argument("--yes", action="store_true", help="destroy them (default: only list)")
    reap.add_argument(
        "--other-hosts",
        action="store_true",
        help="also take capsules created on other hosts (their programs cannot be checked)",
    )
    put = command("put", "upload a file: wrenn put LOCAL ID:PATH")
    put.add_argument("source")
    put.add_argument("target", metavar="ID:PATH")
    get = command("get", "download a file: wrenn get ID:PATH LOCAL")
    get.add_argument("source", metavar="ID:PATH")
    get.add_argument("target")
    snap = command("snapshot", "snapshot a capsule into a template")
    snap.add_argument("capsule_id", metavar="ID")
    snap.add_argument("name")
    demo = sub.add_parser("demo", help="fan a job out over capsules on an embedded server")
    demo.add_argument("--capsules", type=int, default=4, help="how many capsules (default 4)")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "local":
        import wrenn_local

        return wrenn_local.main(["serve", *args.rest])
    try:
        code: int = anyio.run(dispatch, args, backend=args.backend)
    except BaseException as exc:
        return _report(exc)
    return code


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _report(exc: BaseException) -> int:
    """One line on stderr and the exit code for an expected failure; anything else (a
    bug) keeps its traceback."""
    leaves = _leaves(exc)
    for kind, code in ((KeyboardInterrupt, EXIT_INTERRUPTED), (UsageError, EXIT_USAGE)):
        if any(isinstance(leaf, kind) for leaf in leaves):
            found = next(leaf for leaf in leaves if isinstance(leaf, kind))
            sys.stderr.write(
                "wrenn: interrupted\n" if code == EXIT_INTERRUPTED else f"wrenn: {found}\n"
            )
            return code
    errors = [leaf for leaf in leaves if isinstance(leaf, WrennError)]
    if errors and len(errors) == len(leaves):
        sys.stderr.write(f"wrenn: error: {errors[0]}\n")
        return EXIT_ERROR
    raise exc


async def dispatch(args: argparse.Namespace) -> int:
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
    }
    check_arguments(args)  # bad input fails before any server is started or reached
    async with target(local=args.local) as client:
        return await handlers[args.command](client, args)


def check_arguments(args: argparse.Namespace) -> None:
    if args.command == "run":
        args.argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not args.argv:
            raise UsageError("nothing to run: wrenn run [options] -- CMD [ARGS...]")
        for item in args.env:
            key, sep, _ = item.partition("=")
            if not sep or not key:
                raise UsageError(f"--env takes K=V, got {item!r}")
    elif args.command == "put":
        _split_target(args.target)
        if not Path(args.source).is_file():
            raise UsageError(f"{args.source} is not a file")
    elif args.command == "get":
        _split_target(args.source)
    elif args.command == "shell" and args.json:
        raise UsageError("shell is interactive; --json does not apply")


@asynccontextmanager
async def target(*, local: bool) -> AsyncIterator[AsyncWrennClient]:
    """A client for the configured server, or for an embedded one (``--local``)."""
    if not local:
        try:
            client = AsyncWrennClient()
            client.config.auth_headers()  # fail now, with the variable named
        except WrennConfigurationError as exc:
            raise UsageError(f"{exc} (or pass --local for an embedded server)") from None
        async with client:
            yield client
        return
    try:
        import wrenn_local
    except ImportError:
        raise UsageError("--local needs the local server: pip install 'wrenn[local]'") from None
    async with (
        wrenn_local.serve() as server,
        AsyncWrennClient(api_key=server.api_key, base_url=server.base_url) as client,
    ):
        yield client


def _out(args: argparse.Namespace, data: Any, human: Callable[[], object]) -> None:
    if args.json:
        sys.stdout.write(json.dumps(data, default=str) + "\n")
    else:
        human()


def _split_target(text: str) -> tuple[str, str]:
    capsule_id, sep, path = text.partition(":")
    if not sep or not capsule_id or not path:
        raise UsageError(f"expected ID:PATH, got {text!r}")
    return capsule_id, path


# --- commands ------------------------------------------------------------------------------


async def cmd_run(client: AsyncWrennClient, args: argparse.Namespace) -> int:
    argv = args.argv
    envs = dict(item.split("=", 1) for item in args.env)
    stdout = sys.stdout.buffer
    stderr = sys.stderr.buffer
    async with client.capsule(template=args.template, timeout=args.timeout) as cap:
        async with cap.commands.stream(argv[0], args=argv[1:], envs=envs, cwd=args.cwd) as run:
            async for event in run:
                if isinstance(event, StreamStdout):
                    stdout.write(event.data.encode())
                    stdout.flush()
                elif isinstance(event, StreamStderr):
                    stderr.write(event.data.encode())
                    stderr.flush()
                elif isinstance(event, StreamExit):
                    break
        code = run.exit_code if run.exit_code is not None else EXIT_ERROR
    if args.json:
        sys.stdout.write(json.dumps({"capsule_id": cap.capsule_id, "exit_code": code}) + "\n")
    return code if 0 <= code <= 255 else EXIT_ERROR


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
    _out(args, rows, human)
    return 0


async def cmd_kill(client: AsyncWrennClient, args: argparse.Namespace) -> int:
    done = []
    for capsule_id in args.capsule_ids:
        await client.capsules.destroy(capsule_id)
        done.append(capsule_id)
    _out(
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

    _out(args, {"destroyed" if args.yes else "would_destroy": rows}, human)
    return 0


async def cmd_put(client: AsyncWrennClient, args: argparse.Namespace) -> int:
    capsule_id, path = _split_target(args.target)
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
    _out(
        args,
        {"capsule_id": capsule_id, "path": path, "bytes": size},
        lambda: sys.stdout.write(f"{source} -> {capsule_id}:{path} ({size} bytes)\n"),
    )
    return 0


async def cmd_get(client: AsyncWrennClient, args: argparse.Namespace) -> int:
    capsule_id, path = _split_target(args.source)
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
    _out(
        args,
        {"capsule_id": capsule_id, "path": path, "bytes": total, "file": str(target_path)},
        lambda: sys.stdout.write(f"{capsule_id}:{path} -> {target_path} ({total} bytes)\n"),
    )
    return 0


async def cmd_snapshot(client: AsyncWrennClient, args: argparse.Namespace) -> int:
    pending = await client.snapshots.create(args.capsule_id, name=args.name)
    template = await client.snapshots.wait(pending, timeout=600)
    _out(
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
