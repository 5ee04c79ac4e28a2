"""``wrenn templates build -f RECIPE NAME``: a template from a Dockerfile-like recipe.

A recipe is a text file of instructions, one a line (a line ending in ``\\`` goes on
with the next; ``#`` starts a comment line)::

    # a comment line
    FROM code-runner-beta
    ENV GREETING=hello
    WORKDIR /home/wrenn-user/app
    RUN echo "$GREETING" > greeting.txt

``FROM`` names the base template (else the server's default); ``ENV`` (``KEY=VALUE`` or
``KEY VALUE``) is seen by later RUN steps; ``WORKDIR`` is created and later steps run
there. Comments are whole lines, as in a Dockerfile.

The build drives a capsule through the SDK, so it works against any Wrenn server: a
capsule of the base template, each ``RUN`` step through ``/bin/sh -c`` with its output
streamed, then a snapshot of the capsule under NAME. A step that exits non-zero stops the
build with its number and the tail of its output; the capsule is destroyed whatever
happens, and no template is written unless every step succeeded. ``ENV`` and
``WORKDIR`` apply to the build's later steps only: a capsule made from the template
starts with the usual environment and directory.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO, final

import attrs

from .._client import AsyncWrennClient
from .._exceptions import WrennError
from .._models.capsules import Template
from .._models.streams import StreamExit, StreamStderr, StreamStdout
from .common import UsageError, emit

__all__ = [
    "BuildStep",
    "Recipe",
    "TemplateBuildError",
    "build_template",
    "cmd_build",
    "parse_recipe",
    "read_recipe",
]

KINDS = ("FROM", "RUN", "ENV", "WORKDIR")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
TAIL_BYTES = 4096  # the output kept for the report of a failed step
SNAPSHOT_TIMEOUT = 600.0


@final
class TemplateBuildError(WrennError):
    """A step of a template build failed; the message names it and ends with its output."""

    default_code = "template_build_failed"


@final
@attrs.frozen
class BuildStep:
    """One instruction of a recipe: its number among all steps, kind and argument."""

    number: int
    kind: str
    text: str
    line: int

    def __str__(self) -> str:
        return f"{self.kind} {self.text}"


@final
@attrs.frozen
class Recipe:
    """A parsed recipe: the base template (``FROM``, or None) and the other steps."""

    base: str | None
    steps: tuple[BuildStep, ...]


def _logical_lines(source: str) -> list[tuple[int, str]]:
    lines: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(source.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].rstrip())
            continue
        pending.append(stripped)
        lines.append((start, " ".join(p for p in pending if p)))
        pending = []
    if pending:
        lines.append((start, " ".join(p for p in pending if p)))
    return lines


def parse_recipe(source: str, *, where: str = "recipe") -> Recipe:
    """Parse a recipe's text; :class:`UsageError` names the line of a mistake."""
    base: str | None = None
    steps: list[BuildStep] = []
    for line, text in _logical_lines(source):
        kind, _, argument = text.partition(" ")
        kind = kind.upper()
        argument = argument.strip()
        if kind not in KINDS:
            raise UsageError(
                f"{where}:{line}: unknown instruction {kind!r} (use {', '.join(KINDS)})"
            )
        if not argument:
            raise UsageError(f"{where}:{line}: {kind} needs an argument")
        if kind == "FROM":
            if base is not None or steps:
                raise UsageError(f"{where}:{line}: FROM must come once, before the other steps")
            base = argument
            continue
        if kind == "ENV":
            _env_pair(argument, f"{where}:{line}")
        steps.append(BuildStep(len(steps) + 1, kind, argument, line))
    if not any(step.kind == "RUN" for step in steps):
        raise UsageError(f"{where}: a recipe needs at least one RUN step")
    return Recipe(base, tuple(steps))


def read_recipe(path: str) -> Recipe:
    """The recipe in the file ``path`` (``-``: standard input)."""
    if path == "-":
        return parse_recipe(sys.stdin.read(), where="<stdin>")
    try:
        source = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the recipe {path}: {exc}") from None
    return parse_recipe(source, where=path)


def _env_pair(argument: str, where: str) -> tuple[str, str]:
    if "=" in argument.split(" ", 1)[0]:
        key, _, value = argument.partition("=")
    else:
        key, _, value = argument.partition(" ")
    key, value = key.strip(), value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    if not _ENV_NAME.match(key):
        raise UsageError(f"{where}: ENV needs NAME=VALUE, got {argument!r}")
    return key, value


def _tail(chunks: list[str]) -> str:
    text = "".join(chunks)
    if len(text) > TAIL_BYTES:
        text = "…" + text[-TAIL_BYTES:]
    return text.rstrip("\n")


async def build_template(
    client: AsyncWrennClient,
    recipe: Recipe,
    name: str,
    *,
    base: str | None = None,
    progress: Callable[[str], object] = lambda line: None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> Template:
    """Build the template ``name`` from ``recipe`` (see the module's text); return it.

    ``base`` (else the recipe's ``FROM``, else the server's default template) is the
    template the build capsule starts from. ``progress`` gets one line per step; a
    step's output goes to ``out`` and ``err`` as it comes (nowhere when None). Raises
    :class:`TemplateBuildError` for a failed step, after destroying the capsule.
    """
    if await client.snapshots.get(name) is not None:
        raise TemplateBuildError(f"a template called {name!r} exists already")
    start = base or recipe.base
    total = len(recipe.steps)
    envs: dict[str, str] = {}
    cwd: str | None = None
    progress(f"capsule from {start or 'the default template'}")
    async with client.capsule(template=start) as cap:
        for step in recipe.steps:
            progress(f"step {step.number}/{total}: {step}")
            if step.kind == "ENV":
                key, value = _env_pair(step.text, f"step {step.number}")
                envs[key] = value
                continue
            if step.kind == "WORKDIR":  # made, then its absolute path printed
                args = ["-c", 'mkdir -p -- "$1" && cd -- "$1" && pwd', "sh", step.text]
            else:
                args = ["-c", step.text]
            collected: list[str] = []
            printed: list[str] = []  # stdout alone: WORKDIR's path
            async with cap.commands.stream("/bin/sh", args=args, envs=envs, cwd=cwd) as run:
                async for event in run:
                    if isinstance(event, StreamStdout | StreamStderr):
                        collected.append(event.data)
                        if isinstance(event, StreamStdout) and len(printed) < 64:
                            printed.append(event.data)
                        del collected[: max(0, len(collected) - 256)]
                        target = out if isinstance(event, StreamStdout) else err
                        if target is not None and step.kind == "RUN":
                            target.write(event.data)
                            target.flush()
                    elif isinstance(event, StreamExit):
                        break
            code = run.exit_code
            if code != 0:
                output_text = _tail(collected)
                shown = f":\n{output_text}" if output_text else " (no output)"
                raise TemplateBuildError(
                    f"step {step.number}/{total} ({step}, line {step.line}) failed "
                    f"with exit code {code}{shown}"
                )
            if step.kind == "WORKDIR":
                lines = "".join(printed).strip().splitlines()
                cwd = lines[-1] if lines else step.text
        progress(f"snapshot {name}")
        pending = await client.snapshots.create(cap.capsule_id, name=name)
        return await client.snapshots.wait(pending, timeout=SNAPSHOT_TIMEOUT)


async def cmd_build(client: AsyncWrennClient, args: argparse.Namespace) -> int:
    """``wrenn templates build -f RECIPE NAME``: a progress line per step on stderr, the
    steps' output as it comes (all on stderr under ``--json``), then the template."""
    recipe: Recipe = args.recipe
    (name,) = args.names
    started = time.monotonic()

    def progress(line: str) -> None:
        sys.stderr.write(f"wrenn: {line} ({time.monotonic() - started:.1f} s)\n")
        sys.stderr.flush()

    template = await build_template(
        client,
        recipe,
        name,
        base=args.base,
        progress=progress,
        out=sys.stderr if args.json else sys.stdout,
        err=sys.stderr,
    )
    emit(
        args,
        {"name": template.name, "size_bytes": template.size_bytes, "steps": len(recipe.steps)},
        lambda: sys.stdout.write(
            f"template {template.name} ready ({len(recipe.steps)} steps, "
            f"{template.size_bytes} bytes, {time.monotonic() - started:.1f} s)\n"
        ),
    )
    return 0
