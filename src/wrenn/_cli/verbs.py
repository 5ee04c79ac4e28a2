"""The verbs that give a capsule a life longer than one command: ``create``, ``exec``,
``connect``, ``pause``, ``resume``, ``templates ls|rm|build``, ``url``, and the command
streaming that ``run`` and ``exec`` share."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from . import output
from .common import EXIT_ERROR, EXIT_TIMED_OUT, UsageError, emit

# The SDK is imported where a verb runs, not here: parsing arguments (`--help`) stays quick.
if TYPE_CHECKING:
    from .._capsule import AsyncCapsule
    from .._client import AsyncWrennClient

__all__ = ["EXIT_TIMED_OUT", "HANDLERS", "check_command", "stream_command"]


def check_command(args: argparse.Namespace) -> None:
    """``run``/``exec``: a command after ``--`` and well-formed ``--env``."""
    args.argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not args.argv:
        raise UsageError(f"nothing to run: wrenn {args.command} [options] -- CMD [ARGS...]")
    for item in args.env:
        key, sep, _ = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--env takes K=V, got {item!r}")
    if args.timeout is not None and not args.timeout > 0:
        raise UsageError("--timeout takes a positive number of seconds")


def check(args: argparse.Namespace) -> None:
    if args.command == "exec":
        check_command(args)
    elif args.command == "templates":
        if args.action == "rm" and not args.names:
            raise UsageError("wrenn templates rm NAME...")
        if args.action == "ls" and args.names:
            raise UsageError("wrenn templates ls takes no names")
        if args.action == "build":
            if args.file is None or len(args.names) != 1:
                raise UsageError("wrenn templates build -f RECIPE NAME")
            from .build import read_recipe

            args.recipe = read_recipe(args.file)
    elif args.command == "create":
        if args.keep and args.ttl is not None:
            raise UsageError("--keep and --ttl contradict each other")
        if args.ttl is not None and args.ttl <= 0:
            raise UsageError("--ttl takes a positive number of seconds")
    elif args.command == "url":
        if not 1 <= args.port <= 65535:
            raise UsageError(f"PORT must be 1-65535, got {args.port}")
        if not args.path.startswith("/"):
            raise UsageError(f"--path must start with '/', got {args.path!r}")
    elif args.command == "connect" and args.json:
        raise UsageError("connect is interactive; --json does not apply")


async def stream_command(cap: AsyncCapsule, args: argparse.Namespace) -> int:
    """Run ``args.argv`` in ``cap``: output live (collected into one JSON document under
    ``--json``); the command's exit code, or 124 after ``--timeout``."""
    import anyio

    from .._models.streams import StreamExit, StreamStderr, StreamStdout

    argv: list[str] = args.argv
    envs = dict(item.split("=", 1) for item in args.env)
    out: list[str] = []
    err: list[str] = []
    code: int | None = None
    timed_out = False
    with anyio.move_on_after(args.timeout if args.timeout else float("inf")) as scope:
        # through `exec` in a shell, as a shell runs it: a missing program exits 127
        shell_argv = ["-c", 'exec "$@"', "sh", *argv]
        async with cap.commands.stream("/bin/sh", args=shell_argv, envs=envs, cwd=args.cwd) as run:
            async for event in run:
                if isinstance(event, StreamStdout):
                    _deliver(args.json, out, sys.stdout, event.data, event.raw)
                elif isinstance(event, StreamStderr):
                    _deliver(args.json, err, sys.stderr, event.data, event.raw)
                elif isinstance(event, StreamExit):
                    break
        code = run.exit_code
    if scope.cancelled_caught:
        timed_out = True
        code = EXIT_TIMED_OUT
        if not args.json:
            sys.stderr.write(f"wrenn: the command did not finish within {args.timeout:g} s\n")
    if code is None:
        code = EXIT_ERROR
    elif code < 0 or code > 255:  # killed: -1 from the server; shells say 128+9
        code = 137 if code == -1 else EXIT_ERROR
    emit(
        args,
        {
            "capsule_id": cap.capsule_id,
            "exit_code": code,
            "stdout": "".join(out),
            "stderr": "".join(err),
            "timed_out": timed_out,
        },
        lambda: None,
    )
    return code


def _deliver(
    collect: bool, into: list[str], stream: Any, data: str, raw: bytes | None = None
) -> None:
    if collect:
        into.append(data)
        return
    # the exact bytes when the stream has binary output frames
    stream.buffer.write(data.encode() if raw is None else raw)
    stream.buffer.flush()


async def cmd_create(client: AsyncWrennClient, args: argparse.Namespace) -> int:
    ttl = 0 if args.keep else args.ttl
    async with (
        output.spinner("creating a capsule", quiet=args.json),
        client.capsule(
            template=args.template, vcpus=args.vcpus, memory_mb=args.memory_mb, timeout=ttl
        ) as cap,
    ):
        cap.detach()  # it outlives this command: `wrenn kill ID` ends it
        info = cap.info
    emit(
        args,
        {
            "id": info.id,
            "status": str(info.status),
            "template": info.template,
            "timeout_sec": info.timeout_sec,
        },
        lambda: sys.stdout.write(info.id + "\n"),
    )
    return 0


async def cmd_exec(client: AsyncWrennClient, args: argparse.Namespace) -> int:
    async with output.spinner(f"waiting for {args.capsule_id}", quiet=args.json):
        cap = await client.connect(args.capsule_id)
    return await stream_command(cap, args)


async def cmd_connect(client: AsyncWrennClient, args: argparse.Namespace) -> int:
    from .shell import attach

    async with output.spinner(f"waiting for {args.capsule_id}", quiet=False):
        cap = await client.connect(args.capsule_id)
    return await attach(cap, args.cmd)


async def cmd_pause(client: AsyncWrennClient, args: argparse.Namespace) -> int:
    return await _each(client, args, "pause", "paused")


async def cmd_resume(client: AsyncWrennClient, args: argparse.Namespace) -> int:
    return await _each(client, args, "resume", "resumed")


async def _each(client: AsyncWrennClient, args: argparse.Namespace, verb: str, done: str) -> int:
    from .._models.enums import CapsuleStatus
    from .._wait import wait_for_status

    finished = []
    async with output.spinner(f"{verb} {' '.join(args.capsule_ids)}", quiet=args.json):
        for capsule_id in args.capsule_ids:
            if verb == "pause":
                await client.capsules.pause(capsule_id)
                wanted = CapsuleStatus.PAUSED
            else:
                await client.capsules.resume(capsule_id)
                wanted = CapsuleStatus.RUNNING
            await wait_for_status(client.capsules, capsule_id, wanted, timeout=120)
            finished.append(capsule_id)
    emit(
        args,
        {done: finished},
        lambda: sys.stdout.write("".join(f"{i} {done}\n" for i in finished)),
    )
    return 0


async def cmd_templates(client: AsyncWrennClient, args: argparse.Namespace) -> int:
    if args.action == "build":
        from .build import cmd_build

        return await cmd_build(client, args)
    if args.action == "rm":
        for name in args.names:
            await client.snapshots.delete(name)
        emit(
            args,
            {"deleted": args.names},
            lambda: sys.stdout.write("".join(f"{n} deleted\n" for n in args.names)),
        )
        return 0
    templates = await client.snapshots.list()
    rows = [
        {
            "name": t.name,
            "type": str(t.type),
            "vcpus": t.vcpus,
            "memory_mb": t.memory_mb,
            "size_bytes": t.size_bytes,
            "platform": t.platform,
            "created_at": t.created_at.isoformat() if t.created_at else None,
        }
        for t in templates
    ]

    def human() -> None:
        cells = [
            [
                str(r["name"]),
                str(r["type"]),
                "-" if r["vcpus"] is None else str(r["vcpus"]),
                "-" if r["memory_mb"] is None else f"{r['memory_mb']} MiB",
                str(r["size_bytes"]),
            ]
            for r in rows
        ]
        headers = ("NAME", "TYPE", "VCPUS", "MEMORY", "BYTES")
        output.print_table(sys.stdout, headers, cells, width=200)

    emit(args, rows, human)
    return 0


async def cmd_url(client: AsyncWrennClient, args: argparse.Namespace) -> int:
    cap = await client.connect(args.capsule_id)
    link = await cap.browser_url(args.port, args.path)
    emit(
        args,
        {"capsule_id": cap.capsule_id, "port": args.port, "url": link},
        lambda: sys.stdout.write(link + "\n"),
    )
    return 0


HANDLERS: dict[str, Callable[[AsyncWrennClient, argparse.Namespace], Awaitable[int]]] = {
    "create": cmd_create,
    "exec": cmd_exec,
    "connect": cmd_connect,
    "pause": cmd_pause,
    "resume": cmd_resume,
    "templates": cmd_templates,
    "url": cmd_url,
}
