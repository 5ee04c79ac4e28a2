"""The grammar of the ``wrenn`` command: every command, its options and its help.

This module imports nothing but ``argparse`` and ``wrenn``'s version, and each command's
parser is made only when that command is named (or the whole tree is walked, as
``wrenn completion`` does): ``wrenn --help`` lists every command but builds none of their
parsers, and ``wrenn exec …`` builds only ``exec``'s. Making a parser is not free
(``argparse`` looks up translations of its headings on disk for each one), and a user
waits for it on every command.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, ItemsView, ValuesView
from typing import Any

from .._version import __version__
from .common import EXIT_TIMED_OUT

__all__ = ["SHELLS", "parser", "serve_parser"]

SHELLS = ("bash", "zsh", "fish")

EPILOG = """\
examples:
  wrenn local start                      a local server in the background
  ID=$(wrenn create)                     a capsule that stays; prints its ID
  wrenn exec $ID -- python3 -c 'print(42)'
  wrenn put data.csv $ID:data.csv        wrenn get $ID:out.txt .
  wrenn shell $ID                        your terminal in it (Ctrl-D ends)
  wrenn snapshot $ID my-env              wrenn create --template my-env
  wrenn url $ID 8000                     a link to port 8000 for your browser
  wrenn kill $ID                         wrenn local stop
  wrenn run --local -- uname -a          a throwaway capsule for one command

environment:
  WRENN_BASE_URL      the server (default https://app.wrenn.dev/api)
  WRENN_API_KEY       its API key (WRENN_TOKEN: a user token instead)
  WRENN_PROXY_DOMAIN  domain of the capsule port proxy (default: from the base URL)
  with neither WRENN_BASE_URL nor WRENN_API_KEY set, commands use the server of
  `wrenn local start`; --local uses it too, or else an embedded one for the command.

exit codes: a command's own code (run, exec, shell; 127: no such program), 1 for an
error, 2 for a usage error, 124 after --timeout, 130 after Ctrl-C, 143 after SIGTERM.
"""

LOCAL_DESCRIPTION = """\
The embedded local server in the foreground (`serve`) or in the background (`start`,
`stop`, `status`).

A background server records its address, API key and pid in a state file, readable by
its owner only (0600, in a 0700 directory): `$XDG_RUNTIME_DIR/wrenn/local.json`, or
`~/.local/state/wrenn/local.json` where there is no runtime directory. Other commands
find it there when neither `WRENN_BASE_URL` nor `WRENN_API_KEY` is set (or with
`--local`). The server removes the file when it stops; a file whose process is gone
is ignored and removed.
"""

Build = Callable[[argparse.ArgumentParser], None]


def _columns() -> int:
    """The terminal's width, read as ``shutil.get_terminal_size`` reads it (``COLUMNS``,
    then stdout's terminal, else 80): ``argparse`` imports shutil for it, and shutil
    with what it imports costs a ``wrenn`` command more than all of its own parsing."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


class Formatter(argparse.HelpFormatter):
    """``argparse``'s formatter, its width found without importing shutil."""

    def __init__(self, prog: str, *args: Any, **kwargs: Any) -> None:
        if len(args) < 3 and kwargs.get("width") is None:
            kwargs["width"] = _columns() - 2
        super().__init__(prog, *args, **kwargs)


class RawFormatter(Formatter, argparse.RawDescriptionHelpFormatter):
    """:class:`Formatter` that keeps the description's and epilog's lines as written."""


class _Parsers(dict[str, argparse.ArgumentParser | None]):
    """Sub-command name → its parser, made (and kept) when first looked up; ``None``
    stands for one not made yet. ``argparse`` reads this as the sub-commands' choices."""

    def __init__(self, make: Callable[[str], argparse.ArgumentParser]) -> None:
        super().__init__()
        self._make = make

    def __getitem__(self, name: str) -> argparse.ArgumentParser:
        made = super().__getitem__(name)
        if made is None:
            made = self._make(name)
            super().__setitem__(name, made)
        return made

    def get(self, name: str, default: object = None) -> object:  # type: ignore[override]
        if name not in self:
            return default
        return self[name]

    def values(self) -> ValuesView[argparse.ArgumentParser]:  # type: ignore[override]
        return {name: self[name] for name in self}.values()

    def items(self) -> ItemsView[str, argparse.ArgumentParser]:  # type: ignore[override]
        return {name: self[name] for name in self}.items()


class Commands:
    """The sub-commands of a parser, each built by its ``build`` function only when the
    command is parsed, its help is asked for, or the tree is walked.

    Where ``argparse``'s internals are not the ones this relies on (a future Python),
    every parser is made at once, as ``add_parser`` does: slower, never wrong.
    """

    def __init__(
        self, action: argparse._SubParsersAction[argparse.ArgumentParser], *, lazy: bool = True
    ) -> None:
        self._action = action
        self._pending: dict[str, tuple[dict[str, Any], Build]] = {}
        self._lazy = (
            lazy
            and isinstance(getattr(action, "_name_parser_map", None), dict)
            and isinstance(getattr(action, "_choices_actions", None), list)
            and hasattr(action, "_ChoicesPseudoAction")
            and hasattr(action, "_parser_class")
            and isinstance(getattr(action, "_prog_prefix", None), str)
            and not action._name_parser_map
        )
        self._parsers = _Parsers(self._make)
        if self._lazy:
            # None stands for a parser not made yet; every lookup returns a parser
            action._name_parser_map = self._parsers  # type: ignore[assignment]
            action.choices = self._parsers  # type: ignore[assignment]

    def add(self, name: str, help: str, build: Build | None = None, **options: Any) -> None:
        """Sub-command ``name`` with ``help`` in the list of commands; ``options`` go to
        its ``ArgumentParser``; ``build`` adds its arguments."""
        build = build or _nothing
        if not self._lazy:
            options.setdefault("formatter_class", Formatter)
            build(self._action.add_parser(name, help=help, **options))
            return
        pseudo = self._action._ChoicesPseudoAction(name, (), help)
        self._action._choices_actions.append(pseudo)
        self._pending[name] = (options, build)
        self._parsers[name] = None

    def _make(self, name: str) -> argparse.ArgumentParser:
        options, build = self._pending.pop(name)
        options.setdefault("formatter_class", Formatter)
        made = self._action._parser_class(prog=f"{self._action._prog_prefix} {name}", **options)
        build(made)
        return made


def _nothing(_: argparse.ArgumentParser) -> None:
    pass


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _server_options(p: argparse.ArgumentParser) -> None:
    """``--local`` and ``--json``: every command that talks to a server has them."""
    p.add_argument(
        "--local",
        action="store_true",
        help="use the background local server, or an embedded one for this command",
    )
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")


def _command_options(p: argparse.ArgumentParser) -> None:
    """The options of a command run in a capsule (``run``, ``exec``)."""
    p.add_argument("--env", action="append", default=[], metavar="K=V", help="set a variable")
    p.add_argument("--cwd", default=None, help="working directory in the capsule")
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help=f"stop the command after S seconds (exit {EXIT_TIMED_OUT})",
    )
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")


def _run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--template", default=None)
    p.add_argument(
        "--ttl", type=int, default=None, metavar="S", help="capsule inactivity TTL in seconds"
    )
    _command_options(p)


def _shell(p: argparse.ArgumentParser) -> None:
    p.add_argument("capsule_id", nargs="?", default=None)
    p.add_argument("--template", default=None)
    p.add_argument("--cmd", default="/bin/bash", help="program to run (default /bin/bash)")


def _ids(p: argparse.ArgumentParser) -> None:
    p.add_argument("capsule_ids", nargs="+", metavar="ID")


def _reap(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yes", action="store_true", help="destroy them (default: only list)")
    p.add_argument(
        "--other-hosts",
        action="store_true",
        help="also take capsules created on other hosts (their programs cannot be checked)",
    )


def _put(p: argparse.ArgumentParser) -> None:
    p.add_argument("source")
    p.add_argument("target", metavar="ID:PATH")


def _get(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="ID:PATH")
    p.add_argument("target")


def _snapshot(p: argparse.ArgumentParser) -> None:
    p.add_argument("capsule_id", metavar="ID")
    p.add_argument("name")


def _create(p: argparse.ArgumentParser) -> None:
    p.add_argument("--template", default=None, help="template or snapshot name")
    p.add_argument("--vcpus", type=int, default=None)
    p.add_argument("--memory-mb", type=int, default=None)
    p.add_argument("--ttl", type=int, default=None, metavar="S", help="pause after S idle seconds")
    p.add_argument("--keep", action="store_true", help="never pause it for inactivity")


def _exec(p: argparse.ArgumentParser) -> None:
    p.add_argument("capsule_id", metavar="ID")
    _command_options(p)


def _connect(p: argparse.ArgumentParser) -> None:
    p.add_argument("capsule_id", metavar="ID")
    p.add_argument("--cmd", default="/bin/bash", help="program to run (default /bin/bash)")


def _url(p: argparse.ArgumentParser) -> None:
    p.add_argument("capsule_id", metavar="ID")
    p.add_argument("port", type=int, metavar="PORT")
    p.add_argument("--path", default="/", help="path to open (default /)")


def _templates(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("ls", "rm", "build"))
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument(
        "-f", "--file", default=None, metavar="RECIPE", help="build: the recipe (- for stdin)"
    )
    p.add_argument(
        "--from", dest="base", default=None, metavar="TEMPLATE", help="build: base template"
    )


def _local(p: argparse.ArgumentParser) -> None:
    """``wrenn local serve|start|stop|status`` (the serve options are wrenn_local's own)."""
    sub = p.add_subparsers(dest="local_command", required=True, metavar="COMMAND")
    sub.add_parser(
        "serve",
        formatter_class=Formatter,
        add_help=False,  # --help goes to the server's own parser, which has the options
        help="run the local server until Ctrl-C: [--port 8080] [--host H] [--api-key K] "
        "[--data-dir D] [--reduced-isolation] [--env]  (see wrenn local serve --help)",
    )
    begin = sub.add_parser(
        "start",
        formatter_class=Formatter,
        help="start a local server in the background; other commands find it",
        description="Start a local server in the background (any free port unless --port)"
        " and return once it accepts connections. Takes every option of"
        ' `wrenn local serve`. `eval "$(wrenn local start --env)"` also exports its'
        " variables into your shell.",
    )
    begin.add_argument("--env", action="store_true", help="print `export` lines for eval")
    begin.add_argument("--json", action="store_true", help="machine-readable output")
    end = sub.add_parser(
        "stop", formatter_class=Formatter, help="stop the background server and its capsules"
    )
    end.add_argument("--json", action="store_true", help="machine-readable output")
    status = sub.add_parser(
        "status",
        formatter_class=Formatter,
        help="is a background server running, and where (exit 3 if not)",
    )
    status.add_argument("--env", action="store_true", help="print `export` lines for eval")
    status.add_argument("--json", action="store_true", help="machine-readable output")


def _completion(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=SHELLS)


def _demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--capsules", type=_count, default=4, help="how many capsules (default 4)")


def _talking(build: Build) -> Build:
    """``build``, after the options of a command that talks to a server."""

    def both(p: argparse.ArgumentParser) -> None:
        _server_options(p)
        build(p)

    return both


# name, help, its arguments; the description of each is its help
SERVER_COMMANDS: tuple[tuple[str, str, Build], ...] = (
    ("run", "run a command in a fresh capsule, streaming its output", _run),
    ("shell", "an interactive terminal in a capsule (a fresh one by default)", _shell),
    ("ls", "list capsules", _nothing),
    ("kill", "destroy capsules", _ids),
    (
        "reap",
        "find capsules whose program on this host is gone (dry run; --yes destroys them)",
        _reap,
    ),
    ("put", "upload a file: wrenn put LOCAL ID:PATH", _put),
    ("get", "download a file: wrenn get ID:PATH LOCAL", _get),
    ("snapshot", "snapshot a capsule into a template", _snapshot),
    ("create", "create a capsule that outlives the command; prints its ID", _create),
    ("exec", "run a command in an existing capsule: wrenn exec ID -- CMD [ARGS...]", _exec),
    ("connect", "your terminal in an existing capsule (wrenn shell ID)", _connect),
    ("pause", "pause capsules", _ids),
    ("resume", "resume paused capsules", _ids),
    ("url", "a link to a capsule's port that a browser can open: wrenn url ID PORT", _url),
    ("templates", "templates and snapshots: ls, rm NAME..., build -f RECIPE NAME", _templates),
)


def parser(*, lazy: bool = True) -> argparse.ArgumentParser:
    """The whole command line, its sub-commands made on first use (``lazy=False``: all
    at once, as where ``argparse`` differs from what :class:`Commands` relies on)."""
    top = argparse.ArgumentParser(
        prog="wrenn",
        description="Work with Wrenn capsules from the command line.",
        epilog=EPILOG,
        formatter_class=RawFormatter,
    )
    top.add_argument("--version", action="version", version=f"wrenn {__version__}")
    top.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="event loop to run on (trio needs the trio extra)",
    )
    top.add_argument("--debug", action="store_true", help="show tracebacks of failures")
    commands = Commands(
        top.add_subparsers(dest="command", required=True, metavar="COMMAND"), lazy=lazy
    )
    commands.add(
        "local",
        "the local server: serve in the foreground, or start/stop one in the background",
        _local,
        description=LOCAL_DESCRIPTION,
        formatter_class=RawFormatter,
    )
    for name, text, build in SERVER_COMMANDS:
        commands.add(name, text, _talking(build), description=text)
    commands.add(
        "completion",
        "print a shell completion script: wrenn completion bash|zsh|fish",
        _completion,
        description='Print a completion script. bash: eval "$(wrenn completion bash)" in '
        '~/.bashrc; zsh: eval "$(wrenn completion zsh)" in ~/.zshrc; fish: wrenn completion '
        "fish > ~/.config/fish/completions/wrenn.fish",
    )
    commands.add("demo", "fan a job out over capsules on an embedded server", _demo)
    return top


def serve_parser() -> argparse.ArgumentParser | None:
    """The options of ``wrenn local serve`` (wrenn_local's own), if it is installed."""
    try:
        from wrenn_local import add_serve_arguments
    except ImportError:
        return None
    serve = argparse.ArgumentParser(add_help=False)
    add_serve_arguments(serve)
    return serve
