"""Capsule cgroups shared between servers on one machine (wrenn_local/_cgroups.py)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from wrenn_local import _cgroups


def test_a_group_is_made_while_another_server_removes_the_shared_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every server on the machine puts its capsules under one `wrenn-local` parent, and a
    # server that stops removes that parent once it is empty, whoever made it. A second
    # server booting a capsule at that moment must still get its group. The cgroup
    # filesystem is stood in for by a directory (no root needed; the race is in the
    # directory operations): a thread plays the stopping server, removing the parent as
    # fast as it can, while this one makes and removes capsule groups. Without a retry,
    # several hundred of the 2,000 creations fail with FileNotFoundError here.
    monkeypatch.setattr(_cgroups, "CGROUP_ROOT", tmp_path)
    (tmp_path / "freezer").mkdir()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave the two threads finely
    stop = threading.Event()

    def other_server_stopping() -> None:
        while not stop.is_set():
            _cgroups.remove_cgroup_parents()

    remover = threading.Thread(target=other_server_stopping)
    remover.start()
    made = 0
    try:
        for i in range(2000):
            group = _cgroups.CgroupSet(1, frozenset({"freezer"}), f"capsule-{i}")
            group.create(vcpus=1, memory_mb=64)
            assert (tmp_path / "freezer" / "wrenn-local" / f"capsule-{i}").is_dir()
            made += 1
            group.remove()
            assert not group.made
    finally:
        stop.set()
        remover.join()
        sys.setswitchinterval(interval)
    assert made == 2000
