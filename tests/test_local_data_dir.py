"""A server's hold on its data directory (``_data_dir.py``): a second server cannot take
a live one's, and what a killed server left in the temporary directory is reaped."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import wrenn_local
from tests.localserver import local_http, new_capsule, server_to_kill, sh
from wrenn_local._data_dir import DataDirInUse, hold_data_dir, reap_abandoned_temp_dirs


def _cgroup_dirs(capsule_id: str) -> list[Path]:
    root = Path("/sys/fs/cgroup")
    found = [root / "wrenn-local" / capsule_id, *root.glob(f"*/wrenn-local/{capsule_id}")]
    return [path for path in found if path.exists()]


async def test_a_second_server_on_a_live_servers_data_dir_refuses_and_harms_nothing(
    tmp_path: Path,
) -> None:
    async with local_http(data_dir=tmp_path) as (_, http):
        cid = await new_capsule(http)
        # the attack: a second server on the same directory would reap the first one's
        # capsules as a killed predecessor's, and share its files
        with pytest.raises(DataDirInUse) as refused:
            async with local_http(data_dir=tmp_path):
                pass
        assert f"pid {os.getpid()}" in str(refused.value)
        assert "data directory of its own" in str(refused.value)
        assert (await sh(http, cid, "echo alive"))["stdout"] == "alive\n"
    async with local_http(data_dir=tmp_path) as (_, http):  # free again once it stopped
        assert (await http.get("/v1/capsules")).json() == []


def test_the_lock_appears_only_locked_and_a_dead_holder_frees_it(tmp_path: Path) -> None:
    held = hold_data_dir(tmp_path)
    try:
        assert (tmp_path / "server.lock").read_text() == f"{os.getpid()}\n"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["server.lock"]  # no partial
        with pytest.raises(DataDirInUse):
            hold_data_dir(tmp_path)
    finally:
        os.close(held)
    again = hold_data_dir(tmp_path)  # the holder let go (or died): taken over
    os.close(again)


def test_the_command_line_says_so_in_one_line(tmp_path: Path) -> None:
    held = hold_data_dir(tmp_path)
    try:
        argv = [sys.executable, "-m", "wrenn_local", "serve", "--data-dir", str(tmp_path)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    finally:
        os.close(held)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("python -m wrenn_local: data directory ")
    assert f"in use by another wrenn_local server (pid {os.getpid()})" in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


def _temp_dir(name: str) -> Path:
    path = Path(tempfile.gettempdir()) / f"wrenn-local-{name}-{os.getpid()}-{time.time_ns()}"
    (path / "capsules").mkdir(parents=True)
    return path


def test_only_abandoned_temporary_dirs_of_this_user_are_reaped(tmp_path: Path) -> None:
    live, dead, unlocked, foreign = (_temp_dir(n) for n in ("live", "dead", "nolock", "foreign"))
    link = Path(tempfile.gettempdir()) / f"wrenn-local-link-{os.getpid()}-{time.time_ns()}"
    target = tmp_path / "target"
    (target / "capsules").mkdir(parents=True)
    os.close(hold_data_dir(target))  # a lock nobody holds, reachable only through a link
    link.symlink_to(target)
    holding = hold_data_dir(live)
    os.close(hold_data_dir(dead))
    os.close(hold_data_dir(foreign))
    os.chown(foreign, 65534, 65534)  # another user's directory (the tests run as root)
    try:
        removed = reap_abandoned_temp_dirs()
        assert dead in removed
        assert not dead.exists()
        for kept in (live, unlocked, foreign, link):
            assert kept not in removed
            assert kept.exists()
        assert (target / "capsules").exists()
    finally:
        os.close(holding)
        link.unlink()
        for path in (live, dead, unlocked, foreign):
            subprocess.run(["rm", "-rf", str(path)], check=True)


def test_a_killed_servers_temporary_dir_and_capsules_are_reaped_by_the_next() -> None:
    with server_to_kill() as (proc, http, cid):
        isolation = http.get("/health").json()["isolation"]
        locks = Path(tempfile.gettempdir()).glob("wrenn-local-*/server.lock")
        (mine,) = [p.parent for p in locks if p.read_text().strip() == str(proc.pid)]
        assert (mine / "capsules" / cid).is_dir()
    assert mine.exists()
    with wrenn_local.server_process():  # the next server, anywhere, reaps it as it starts
        deadline = time.monotonic() + 30
        while mine.exists():
            assert time.monotonic() < deadline, f"{mine} was not reaped"
            time.sleep(0.05)
    if isolation == "full":
        assert _cgroup_dirs(cid) == []
