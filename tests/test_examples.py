"""Every script in examples/ runs to a clean end against a local server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.localserver import server_process

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXPECT = {
    "hello.py": "read back: ship it",
    "fan_out.py": "job 3: ValueError('job 3 is broken on purpose')",
    "sync_script.py": "pool: ['0', '1', '4', '9']",
    "code_runner.py": "another context shares no state: False",
    "terminal.py": "exit code: 7",
    "git_workflow.py": "branch main tracking origin/main, clean: True",
}


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, str]]:
    with server_process() as env:
        yield env


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECT)


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_example_runs(server: dict[str, str], name: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WRENN_")} | server
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert EXPECT[name] in done.stdout, done.stdout[-3000:]
