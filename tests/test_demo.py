"""The README's first command runs this demo: it must succeed and leave nothing behind."""

from __future__ import annotations

import io

from wrenn._cli.demo import run_demo


async def test_demo_runs_to_a_clean_end() -> None:
    out = io.StringIO()
    assert await run_demo(capsules=3, out=out) == 0, out.getvalue()
    text = out.getvalue()
    assert "3/3 capsules succeeded" in text
    assert "0 capsules left on the server" in text
    assert text.count("destroyed") == 3
