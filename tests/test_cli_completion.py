"""``wrenn completion``: the bash script, sourced in a real bash, completes what the
command accepts; the zsh and fish scripts are checked by their shells when installed."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from wrenn._cli.parser import parser


def script(shell: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "wrenn", "completion", shell],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stderr == ""
    return done.stdout


def complete(text: str, line: str) -> list[str]:
    """What bash offers for ``line`` (the cursor at its end), as a user pressing Tab."""
    words = line.split(" ")
    program = text + (
        "COMP_WORDS=(" + " ".join(f"'{w}'" for w in words) + ")\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_wrenn_complete\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile"],
        input=program,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stderr == ""
    return sorted(w for w in done.stdout.splitlines() if w)


@pytest.fixture(scope="module")
def bash_script() -> str:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    return script("bash")


def test_bash_completes_every_verb_and_nested_verbs(bash_script: str) -> None:
    top = parser()
    (verbs,) = [a for a in top._actions if a.dest == "command"]
    assert verbs.choices is not None
    offered = complete(bash_script, "wrenn ")
    assert offered == sorted(verbs.choices)
    assert {"create", "exec", "shell", "local", "url", "completion"} <= set(offered)
    assert {"--version", "--debug", "--backend"} <= set(complete(bash_script, "wrenn -"))
    assert complete(bash_script, "wrenn lo") == ["local"]
    assert complete(bash_script, "wrenn local st") == ["start", "status", "stop"]
    assert complete(bash_script, "wrenn templates ") == ["build", "ls", "rm"]
    assert complete(bash_script, "wrenn completion ") == ["bash", "fish", "zsh"]


def test_bash_completes_options_and_skips_their_values(bash_script: str) -> None:
    assert complete(bash_script, "wrenn run --t") == ["--template", "--timeout", "--ttl"]
    assert complete(bash_script, "wrenn --backend ") == ["asyncio", "trio"]
    # the value of --backend is not taken for a command
    assert complete(bash_script, "wrenn --backend trio r") == ["reap", "resume", "run"]
    assert complete(bash_script, "wrenn create --template my-env --k") == ["--keep"]
    # wrenn local start takes the server's own options
    assert complete(bash_script, "wrenn local start --po") == ["--port"]
    assert complete(bash_script, "wrenn local start --port 0 --red") == ["--reduced-isolation"]
    assert complete(bash_script, "wrenn local start --re") == [
        "--ready-networks",
        "--reduced-isolation",
    ]
    # a value without choices, and a command line after --, complete file names
    assert complete(bash_script, "wrenn put -") == sorted(["-h", "--help", "--local", "--json"])
    assert complete(bash_script, "wrenn put ") == []
    assert complete(bash_script, "wrenn create --template ") == []
    assert complete(bash_script, "wrenn exec cl-x -- py") == []


def test_zsh_and_fish_scripts_parse() -> None:
    zsh = script("zsh")
    assert "bashcompinit" in zsh
    assert "complete -o default -F _wrenn_complete wrenn" in zsh
    fish = script("fish")
    lines = [line for line in fish.splitlines() if line and not line.startswith("#")]
    assert all(line.startswith("complete -c wrenn") for line in lines)
    assert any("-a 'serve start stop status'" in line for line in lines)
    for shell, text in (("zsh", zsh), ("fish", fish)):
        if shutil.which(shell) is None:
            continue  # only its syntax is checkable, and only where it is installed
        checked = subprocess.run(
            [shell, "-n"], input=text, capture_output=True, text=True, timeout=30
        )
        assert checked.returncode == 0, checked.stderr


def test_an_unknown_shell_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wrenn", "completion", "tcsh"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "invalid choice: 'tcsh'" in done.stderr
