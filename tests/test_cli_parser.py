"""The command line's grammar (wrenn._cli.parser): sub-command parsers are made only when
needed, and what a user sees or gets parsed is exactly what the parsers made all at once
give (the fallback where ``argparse``'s internals differ)."""

from __future__ import annotations

import argparse
import io
from contextlib import redirect_stderr, redirect_stdout

import pytest

from wrenn._cli.parser import Formatter, parser


def commands(top: argparse.ArgumentParser) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    (action,) = [a for a in top._actions if isinstance(a, argparse._SubParsersAction)]
    return action


def made(top: argparse.ArgumentParser) -> set[str]:
    """The sub-commands whose parser exists (dict's own view: looking would make them)."""
    choices = commands(top).choices
    assert isinstance(choices, dict)
    return {name for name, p in dict.items(choices) if p is not None}


def outcome(top: argparse.ArgumentParser, argv: list[str]) -> tuple[object, str, str]:
    """What parsing ``argv`` gives: the namespace and the leftovers, or the exit code;
    and what was printed."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            args, extra = top.parse_known_args(argv)
            result: object = (sorted(vars(args).items()), extra)
        except SystemExit as exc:
            result = ("exit", exc.code)
    return result, out.getvalue(), err.getvalue()


ARGVS = [
    ["--help"],
    ["--version"],
    [],
    ["bogus"],
    ["--backend", "trio", "--debug", "ls", "--json"],
    ["--back", "trio", "ls"],  # an abbreviated top-level option, then the command
    ["run", "--template", "t", "--ttl", "5", "--env", "A=1", "--", "echo", "hi"],
    ["run", "--ttl", "soon"],
    ["exec", "ID", "--timeout", "2.5", "--cwd", "/tmp", "--", "ls", "-l"],
    ["exec", "--help"],
    ["shell"],
    ["shell", "ID", "--cmd", "sh"],
    ["kill", "a", "b"],
    ["kill"],
    ["reap", "--yes", "--other-hosts"],
    ["put", "f.txt", "ID:f.txt"],
    ["get", "ID:f.txt", "."],
    ["snapshot", "ID", "name"],
    ["create", "--vcpus", "2", "--memory-mb", "512", "--keep", "--local"],
    ["connect", "ID"],
    ["pause", "a"],
    ["resume", "a", "b"],
    ["url", "ID", "8000", "--path", "/x"],
    ["url", "ID", "port"],
    ["templates", "build", "-f", "recipe", "name", "--from", "base"],
    ["templates", "nope"],
    ["local", "start", "--env", "--port", "0"],
    ["local", "status", "--json"],
    ["local", "serve", "--port", "9"],
    ["local", "--help"],
    ["local"],
    ["completion", "zsh"],
    ["completion", "tcsh"],
    ["demo", "--capsules", "3"],
    ["demo", "--capsules", "0"],
    ["ls", "--help"],
]


@pytest.mark.parametrize("argv", ARGVS, ids=" ".join)
def test_parsing_is_what_parsers_made_at_once_give(argv: list[str]) -> None:
    assert outcome(parser(), argv) == outcome(parser(lazy=False), argv)


def test_help_lists_every_command_and_makes_none() -> None:
    top = parser()
    assert made(top) == set()
    text = top.format_help()
    assert made(top) == set()
    eager = parser(lazy=False)
    assert text == eager.format_help()
    names = list(commands(top).choices or ())
    assert names == list(commands(eager).choices or ())
    for name in names:
        assert f"\n    {name} " in text
    assert {"local", "run", "exec", "templates", "completion", "demo"} <= set(names)


def test_parsing_makes_only_the_named_command() -> None:
    top = parser()
    args = top.parse_args(["exec", "ID", "--", "true"])
    assert (args.command, args.capsule_id, args.argv[-1]) == ("exec", "ID", "true")
    assert made(top) == {"exec"}
    top.parse_args(["exec", "OTHER", "--", "true"])  # made once, kept
    assert made(top) == {"exec"}


def test_each_command_help_is_the_same_as_made_at_once() -> None:
    lazy, eager = commands(parser()).choices, commands(parser(lazy=False)).choices
    assert isinstance(lazy, dict)
    assert isinstance(eager, dict)
    for name, p in eager.items():
        assert lazy[name].format_help() == p.format_help(), name
        assert lazy.get(name) is lazy[name]
    assert lazy.get("bogus") is None
    assert [n for n, _ in lazy.items()] == list(eager)
    assert all(isinstance(p, argparse.ArgumentParser) for p in lazy.values())


@pytest.mark.parametrize(
    ("environ", "expected"),
    [({"COLUMNS": "50"}, 48), ({"COLUMNS": "junk"}, None), ({"COLUMNS": "-3"}, None)],
)
def test_the_help_width_is_read_as_shutil_reads_it(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], expected: int | None
) -> None:
    import shutil

    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    width = Formatter("wrenn")._width
    assert width == shutil.get_terminal_size().columns - 2
    if expected is not None:
        assert width == expected
    assert Formatter("wrenn", width=33)._width == 33
