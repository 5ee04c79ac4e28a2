"""The sync API at the edges of a program: interpreter exit, and inside a running loop.

Each scenario is a real program in a subprocess (with a timeout, so a hang fails the
test instead of the suite) against a real local server in a process of its own; what
is left on the server afterwards is checked with a second client.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Literal

import pytest

from tests.localserver import server_process
from wrenn import WrennClient

EXIT_BOUND = 10.0  # seconds a program may take to exit, clean-up included


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, str]]:
    with server_process() as env:
        yield env


def live(server: dict[str, str]) -> set[str]:
    """Capsules that are neither stopped nor being stopped."""
    with WrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]) as c:
        return {c.id for c in c.capsules.list() if c.status not in ("stopping", "stopped")}


def run_program(
    server: dict[str, str], code: str, *, warnings: bool = True, **env: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    args = [sys.executable]
    if warnings:
        args += ["-W", "always::ResourceWarning"]
    started = time.monotonic()
    done = subprocess.run(
        [*args, "-c", code],
        env={**os.environ, **server, **env},
        capture_output=True,
        text=True,
        timeout=EXIT_BOUND * 3,
    )
    return done, time.monotonic() - started


def test_a_global_client_does_not_hold_the_interpreter(server: dict[str, str]) -> None:
    done, took = run_program(server, "from wrenn import WrennClient\nc = WrennClient()\n")
    assert done.returncode == 0, done.stderr
    assert took < EXIT_BOUND
    assert "ResourceWarning" in done.stderr
    assert "was not closed" in done.stderr


def test_a_closed_client_exits_without_a_warning(server: dict[str, str]) -> None:
    code = "from wrenn import WrennClient\nwith WrennClient() as c:\n    c.capsules.list()\n"
    done, took = run_program(server, code)
    assert done.returncode == 0, done.stderr
    assert "ResourceWarning" not in done.stderr
    assert took < EXIT_BOUND


@pytest.mark.parametrize("destroy", [True, False], ids=["destroyed", "left"])
def test_the_official_habit_without_with_leaves_no_capsule(
    server: dict[str, str], destroy: bool
) -> None:
    before = live(server)
    code = (
        "from wrenn import Capsule\n"
        "cap = Capsule(wait=True)\n"
        "print(cap.capsule_id)\n"
        "assert cap.commands.run('true').exit_code == 0\n"
    ) + ("cap.destroy()\n" if destroy else "")
    done, took = run_program(server, code)
    assert done.returncode == 0, done.stderr
    assert took < EXIT_BOUND
    created = done.stdout.split()[0]
    assert created not in live(server)
    assert live(server) == before
    assert f"capsule {created} destroyed" in done.stderr


def test_a_detached_official_capsule_is_kept(server: dict[str, str]) -> None:
    code = (
        "from wrenn import Capsule\ncap = Capsule(wait=True)\ncap.detach()\nprint(cap.capsule_id)\n"
    )
    done, _ = run_program(server, code)
    assert done.returncode == 0, done.stderr
    kept = done.stdout.split()[0]
    try:
        assert kept in live(server)
    finally:
        with WrennClient(
            api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]
        ) as client:
            client.capsules.destroy(kept)


def test_connect_without_close_exits_and_leaves_the_capsule(server: dict[str, str]) -> None:
    key, url = server["WRENN_API_KEY"], server["WRENN_BASE_URL"]
    with WrennClient(api_key=key, base_url=url) as c, c.capsule() as cap:
        code = "import os\nfrom wrenn import Capsule\ncap = Capsule.connect(os.environ['CID'])\n"
        done, took = run_program(server, code, CID=cap.capsule_id)
        assert done.returncode == 0, done.stderr
        assert took < EXIT_BOUND
        assert cap.capsule_id in live(server)  # connected to, not created: not destroyed


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_an_uncaught_error_keeps_its_exit_code_and_cleans_up(
    server: dict[str, str], backend: str
) -> None:
    before = live(server)
    code = (
        "from wrenn import WrennClient\n"
        f"client = WrennClient(backend={backend!r})\n"
        "scope = client.capsule()\n"
        "cap = scope.__enter__()\n"
        "print(cap.capsule_id, flush=True)\n"
        "raise LookupError('boom')\n"
    )
    done, took = run_program(server, code)
    assert done.returncode == 1
    assert "LookupError: boom" in done.stderr
    assert took < EXIT_BOUND
    assert done.stdout.split()[0] not in live(server)
    assert live(server) == before


def test_sys_exit_keeps_its_code(server: dict[str, str]) -> None:
    code = "import sys\nfrom wrenn import WrennClient\nc = WrennClient()\nsys.exit(7)\n"
    done, took = run_program(server, code)
    assert done.returncode == 7
    assert took < EXIT_BOUND


LOOP_PROGRAM = """
import {loop}
from wrenn import WrennClient

def sync_work():
    with WrennClient(backend={backend!r}) as client:
        with client.capsule() as cap:
            return cap.commands.run("echo hi").stdout.strip()

async def main():
    print(sync_work())

{runner}
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_the_sync_api_works_inside_a_running_loop(
    server: dict[str, str], backend: str, loop: Literal["asyncio", "trio"]
) -> None:
    runner = "trio.run(main)" if loop == "trio" else "asyncio.run(main())"
    code = LOOP_PROGRAM.format(loop=loop, backend=backend, runner=runner)
    done, took = run_program(server, code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hi"
    assert took < EXIT_BOUND
