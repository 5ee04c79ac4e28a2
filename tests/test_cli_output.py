"""The command line's output with and without rich (the ``cli`` extra)."""

from __future__ import annotations

import io

import pytest

from wrenn._cli import output


def test_plain_table_without_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output, "has_rich", lambda: False)
    out = io.StringIO()
    output.print_table(out, ["ID", "STATUS"], [["cl-1", "running"], ["cl-22", "paused"]])
    assert out.getvalue().splitlines() == [
        "ID     STATUS",
        "cl-1   running",
        "cl-22  paused",
    ]


def test_rich_table_never_cuts_ids_on_a_pipe() -> None:
    pytest.importorskip("rich")
    out = io.StringIO()
    long_id = "cl-" + "x" * 120
    output.print_table(out, ["ID"], [[long_id]], width=200)
    assert long_id in out.getvalue()


def test_no_progress_and_no_live_view_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    assert output.live_view(out) is None
    with output.progress("put x", quiet=False) as bar:  # pytest's stderr is not a TTY
        task = bar.add_task("put", total=10)
        bar.advance(task, 5)
    monkeypatch.setattr(output, "has_rich", lambda: False)
    assert isinstance(output.progress("put x", quiet=False), type(output.progress("", True)))


def test_has_rich_is_false_when_rich_is_blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "rich", None)
    assert output.has_rich() is False
