"""Every Python block of docs/*.md runs, against a local server, as the README's do.

Complete programs run as written. Fragments (an ``await`` at the top, names that the
surrounding prose introduces) run inside a small harness that gives them those names:
``client`` (entered), ``cap`` (a capsule of the template the fragment needs), ``job``
and ``items``; a test file (docs/testing.md) runs under
pytest with the project's plugin and the one helper it mentions, ``my_agent``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

import wrenn_local

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCKS = [
    (f"{page.name}-{i}", code)
    for page in sorted(DOCS.glob("*.md"))
    for i, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), re.S))
]

FRAGMENT = """\
import anyio
from wrenn import AsyncWrennClient


async def job(cap, item):
    return (await cap.commands.run(f"echo {{item}}")).stdout.strip()


items = ["a", "b"]


async def _doc() -> None:
    async with AsyncWrennClient() as client:
{body}


anyio.run(_doc)
"""

TEST_FILE_HELPERS = """
class my_agent:  # the docs' stand-in for the user's own code
    @staticmethod
    async def run(cap):
        await cap.files.write("report.md", "total: 3")
"""


def test_the_docs_have_python_blocks() -> None:
    assert len(BLOCKS) >= 7


def program(code: str) -> str:
    """A program for ``python -c``, or (a test file) the text of a pytest module."""
    if "def test_" in code:
        return code + TEST_FILE_HELPERS
    if not re.search(r"^(import|from) \w", code, re.M):  # a fragment: names from the prose
        if re.search(r"\bcap\b", code) and "as cap" not in code:  # the prose's capsule
            template = "code-runner-beta" if "run_code" in code else "minimal-ubuntu"
            code = f'async with client.capsule(template="{template}") as cap:\n' + (
                textwrap.indent(code, " " * 4)
            )
        return FRAGMENT.format(body=textwrap.indent(code, " " * 8))
    return code


@pytest.mark.parametrize("code", [c for _, c in BLOCKS], ids=[name for name, _ in BLOCKS])
def test_block_runs(code: str, tmp_path: Path) -> None:
    # a server in a process of its own: the blocks do not depend on the test's backend
    source = program(code)
    with wrenn_local.server_process() as server:
        if "def test_" in code:
            path = tmp_path / "test_from_docs.py"
            path.write_text(source)
            argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", str(path)]
        else:
            argv = [sys.executable, "-c", source]
        result = subprocess.run(
            argv,
            env={**os.environ, **server},
            capture_output=True,
            text=True,
            timeout=180,
            cwd=tmp_path,
        )
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        assert "Traceback" not in result.stderr
        # A destroy answers "stopping" at once and the server stops the capsule after
        # (a Jupyter kernel may take seconds): every capsule must be gone, in bounded time.
        deadline = time.monotonic() + 30
        while left := httpx.get(
            server["WRENN_BASE_URL"] + "/v1/capsules",
            headers={"X-API-Key": server["WRENN_API_KEY"]},
        ).json():
            assert all(c["status"] == "stopping" for c in left), left
            assert time.monotonic() < deadline, f"still stopping after 30 s: {left}"
            time.sleep(0.1)
