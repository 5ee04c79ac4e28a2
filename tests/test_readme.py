"""Every Python example of the README runs as written, against the local server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import wrenn_local

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
# complete programs: the async ones run themselves under asyncio and trio; the sync
# ones use WrennClient() directly
RUNNABLE = [b for b in BLOCKS if "anyio.run(" in b or "with WrennClient()" in b]


def test_the_readme_has_runnable_examples() -> None:
    assert len(RUNNABLE) >= 3


@pytest.mark.parametrize("code", RUNNABLE, ids=[f"example-{i}" for i in range(len(RUNNABLE))])
async def test_example_runs(code: str) -> None:
    async with wrenn_local.serve() as server:
        env = {**os.environ, **server.environ()}
        import anyio

        result = await anyio.to_thread.run_sync(
            lambda: subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
            )
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
        left = [
            c for c in server.capsules.capsules.values() if c.status not in ("stopped", "stopping")
        ]
        assert left == []
