"""The host's process tree (wrenn_local/_proc.py): children with and without the
kernel's children file, and descendants, read from real processes."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import anyio
import pytest

from wrenn_local import _proc

# a shell with two children, one of which has a child of its own
_TREE = "sleep 30 & sh -c 'sleep 30 & wait' & echo up; wait"


async def test_children_and_descendants_of_a_real_tree() -> None:
    async with await anyio.open_process(["/bin/sh", "-c", _TREE]) as shell:
        assert shell.stdout is not None
        assert b"up" in await shell.stdout.receive()
        try:
            with anyio.fail_after(10):
                while len(_proc.descendants(shell.pid)) < 4:  # the grandchild forks late
                    await anyio.sleep(0.01)
            kids = sorted(_proc.children(shell.pid))
            assert len(kids) == 2
            # the kernel's file and the scan of every ppid agree
            assert sorted(_proc.parents()[shell.pid]) == kids
            tree = _proc.descendants(shell.pid)
            assert tree[0] == shell.pid
            assert len(tree) == len(set(tree)) == 4
            assert set(kids) < set(tree)
            assert _proc.descendants(shell.pid, kids[0])[:1] == [kids[0]]  # roots first
        finally:
            for pid in reversed(_proc.descendants(shell.pid)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    assert _proc.children(shell.pid) == []  # gone: none, and no error
    assert _proc.descendants(shell.pid) == [shell.pid]  # a root is always itself


def test_without_the_kernels_children_file_the_scan_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A kernel built without CONFIG_PROC_CHILDREN has no such file: a mock, because this
    # kernel has it and it cannot be taken away.
    real = Path.read_text

    def no_children_file(path: Path, *args: object, **kwargs: object) -> str:
        if path.name == "children":
            raise FileNotFoundError(path)
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", no_children_file)
    assert os.getpid() in _proc.children(os.getppid())
