"""The capsule boot path (issue 20): disk images copied from a template, bytecode agent,
readiness from the inherited listener, boot failures reported at once."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.localserver import local_http, new_capsule, sh, wait_status
from wrenn_local import _sandbox
from wrenn_local._inside import boot


async def test_disk_images_are_copies_no_capsule_shares_or_writes_the_template() -> None:
    async with local_http() as (server, http):
        if server.isolation != "full":
            return  # reduced isolation: no disk image
        a = await new_capsule(http, disk_size_mb=64)
        info = (await http.get(f"/v1/capsules/{a}")).json()
        if info["metadata"]["disk_limit"] != "enforced":
            return  # this host refuses loop mounts (said in metadata)
        template = server.data_dir / "boot-cache" / "disk-64.img"
        before = template.stat()
        b = await new_capsule(http, disk_size_mb=64)
        out = await sh(http, a, "echo secret-of-a > $HOME/mine && sync && cat $HOME/mine")
        assert out["stdout"].strip() == "secret-of-a", out
        out = await sh(http, b, "cat $HOME/mine 2>&1; ls $HOME")
        assert "secret-of-a" not in out["stdout"], out  # b's disk is not a's
        images = [server.data_dir / "capsules" / cid / "disk.img" for cid in (a, b)]
        inodes = {(p.stat().st_dev, p.stat().st_ino) for p in [*images, template]}
        assert len(inodes) == 3  # three files: no hard link, no shared image
        after = template.stat()
        assert (after.st_mtime_ns, after.st_blocks) == (before.st_mtime_ns, before.st_blocks)
        # each image is its own quota: a fills its disk, b still has room
        out = await sh(http, a, "dd if=/dev/zero of=$HOME/big bs=1M count=100 2>&1; echo rc=$?")
        assert "No space left on device" in out["stdout"], out
        out = await sh(http, b, "dd if=/dev/zero of=$HOME/ok bs=1M count=8 2>&1; echo rc=$?")
        assert "rc=0" in out["stdout"], out


async def test_the_agent_runs_from_bytecode_under_its_own_name() -> None:
    async with local_http() as (server, http):
        if server.isolation != "full":
            return  # reduced isolation runs the agent's source
        cid = await new_capsule(http)
        out = await sh(
            http,
            cid,
            "tr '\\0' ' ' < /proc/1/cmdline; echo; tr '\\0' ' ' < /proc/2/cmdline; echo;"
            " head -c 4 /run/wrenn/agent.py | od -An -tx1",
        )
        assert "/run/wrenn/agent.py" in out["stdout"], out
        magic = out["stdout"].strip().splitlines()[-1].split()
        assert magic[2:4] == ["0d", "0a"], out  # a .pyc header, not source text
        # and nothing of the host's paths: not the cache, not the data directory
        assert str(server.data_dir) not in out["stdout"], out


async def test_an_agent_that_dies_before_ready_fails_the_boot_with_its_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A configuration the agent cannot read: the only way to make the real agent die
    # at start-up from outside (its code is the product under test).
    real = _sandbox.Sandbox._agent_config

    def broken(self: _sandbox.Sandbox) -> dict[str, Any]:
        config = real(self)
        config["uid"] = "not-a-number"  # int() fails as the agent reads it
        return config

    monkeypatch.setattr(_sandbox.Sandbox, "_agent_config", broken)
    caplog.set_level(logging.WARNING, logger="wrenn_local")
    async with local_http() as (_, http):
        resp = await http.post("/v1/capsules", json={})
        assert resp.status_code == 202, resp.text
        cid = resp.json()["id"]
        # well before the 30 s readiness timeout: the boot sees the agent go
        await wait_status(http, cid, "error", timeout=15)
    failed = [r.getMessage() for r in caplog.records if "failed to start" in r.getMessage()]
    assert failed, caplog.text
    assert "capsule failed to boot" in failed[0], failed
    assert "ValueError" in failed[0], failed


def test_bytecode_is_compiled_once_and_keyed_by_its_source(tmp_path: Path) -> None:
    source = tmp_path / "prog.py"
    source.write_text("print('one')\n")
    python = sys.executable
    cache = tmp_path / "cache"
    first = _sandbox.compiled(source, python, cache, "/inside/prog.py")
    assert first is not None
    assert first.read_bytes()[2:4] == b"\r\n"
    assert _sandbox.compiled(source, python, cache, "/inside/prog.py") == first
    source.write_text("print('two')\n")
    os.utime(source, ns=(1, 1))  # another mtime: the source changed
    second = _sandbox.compiled(source, python, cache, "/inside/prog.py")
    assert second is not None
    assert second != first


# Inside a capsule, as its user and as its root (sudo): write the agent's bytecode (the
# compile cache's file), remount it writable, find the cache, the template image or the
# data directory in the mount table, and write through a loop device.
TAMPER = r"""
for f in /run/wrenn/agent.py /run/wrenn/agent.json; do
  (printf 'x' >> $f) 2>/dev/null && echo "wrote $f"
  (truncate -s 0 $f) 2>/dev/null && echo "truncated $f"
done
mount -o remount,rw /run/wrenn/agent.py 2>/dev/null && echo remounted
mount -o remount,rw,bind /run/wrenn/agent.py 2>/dev/null && echo remounted-bind
grep -E 'boot-cache|disk-[0-9]+\.img|DATA' /proc/self/mountinfo && echo found-in-mountinfo
for d in /dev/loop*; do
  [ -e "$d" ] && (printf x | dd of=$d conv=notrunc 2>/dev/null) && echo "wrote $d"
done
find / -xdev \( -name 'disk-*.img' -o -name 'boot-cache' \) 2>/dev/null | grep . && echo found-cache
echo done
"""


async def test_a_capsule_cannot_write_the_compile_cache_or_the_template() -> None:
    async with local_http() as (server, http):
        if server.isolation != "full":
            return  # reduced isolation: no compile cache, no disk image
        cid = await new_capsule(http, disk_size_mb=64)
        cache = server.data_dir / "boot-cache"
        files = sorted(p for p in cache.iterdir() if p.is_file())
        assert any(p.suffix == ".pyc" for p in files), files  # the agent's bytecode

        def digests() -> dict[str, str]:
            return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

        before = digests()
        script = TAMPER.replace("DATA", re.escape(str(server.data_dir)))
        for as_root in (False, True):
            quoted = "'" + script.replace("'", "'\"'\"'") + "'"
            got = await sh(http, cid, f"sudo -n sh -c {quoted}" if as_root else script)
            lines = got["stdout"].splitlines()
            assert lines[-1:] == ["done"], got  # the script ran to its end
            assert lines == ["done"], (as_root, got)  # and none of the attempts worked
        assert digests() == before
        assert (cache.stat().st_mode & 0o077) == 0  # the cache is root's alone
        # the next capsule boots from the same cache and runs commands
        other = await new_capsule(http, disk_size_mb=64)
        assert (await sh(http, other, "echo ok"))["stdout"] == "ok\n"


def test_a_user_namespace_that_cannot_be_made_fails_the_boot_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # boot.py's helper says on a pipe when it has unshared (no polling): if it cannot,
    # its exit ends the wait at once, with the reason
    class NoUserNamespaces:
        # mocked: a kernel refusing user namespaces (a sysctl) is not a per-test setting
        def unshare(self, flags: int) -> int:
            ctypes.set_errno(errno.EPERM)
            return -1

    monkeypatch.setattr(boot, "_libc", NoUserNamespaces())
    with pytest.raises(OSError, match="could not make the namespace"):
        boot.make_user_namespace(2**31, 65536)


def _cgroup_dirs(capsule_id: str) -> list[Path]:
    root = Path("/sys/fs/cgroup")
    found = [root / "wrenn-local" / capsule_id, *root.glob(f"*/wrenn-local/{capsule_id}")]
    return [path for path in found if path.exists()]


@pytest.mark.parametrize("point", ["before its cgroups", "after its cgroups"])
async def test_a_destroy_racing_a_boot_leaves_no_cgroup(
    point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The boot is held inside its plan (a worker thread, where cgroups are made) until
    # the destroy has been answered: a real client cannot time its DELETE into that
    # window every time, so the window is held open.
    import threading

    entered, destroyed = threading.Event(), threading.Event()
    held_at: list[list[Path]] = []
    original = _sandbox.Sandbox._command

    def held(self: _sandbox.Sandbox) -> Any:
        if point == "before its cgroups":
            entered.set()
            destroyed.wait(20)
        command = original(self)
        held_at.append(_cgroup_dirs(self.spec.capsule_id))
        if point == "after its cgroups":
            entered.set()
            destroyed.wait(20)
        return command

    monkeypatch.setattr(_sandbox.Sandbox, "_command", held)
    async with local_http() as (server, http):
        if server.isolation != "full":
            pytest.skip("reduced isolation makes no cgroups")
        resp = await http.post("/v1/capsules", json={})
        assert resp.status_code == 202, resp.text
        cid = resp.json()["id"]
        assert await anyio.to_thread.run_sync(entered.wait, 20)
        gone = await http.delete(f"/v1/capsules/{cid}")
        destroyed.set()
        assert gone.status_code in (202, 204), gone.text
        await wait_status(http, cid, "stopped")
        assert held_at
        assert held_at[0], "the boot made its cgroups"
        assert _cgroup_dirs(cid) == []
        assert not (server.data_dir / "capsules" / cid).exists()


async def test_a_traced_boot_records_each_phase_in_the_order_it_happens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # WRENN_LOCAL_BOOT_TRACE (benchmarks/boot.py's phases row) is read once, when the
    # server's module loads: set here the way that reading sets it
    trace = tmp_path / "trace.jsonl"
    monkeypatch.setattr(_sandbox, "_TRACE", str(trace))
    async with local_http() as (server, http):
        if server.isolation != "full":
            pytest.skip("boot.py's phases are those of a full-isolation boot")
        await new_capsule(http, disk_size_mb=64)
        info = (await http.get("/health")).json()
    (phases,) = [json.loads(line) for line in trace.read_text().splitlines()]
    order = ["start", "prepared", "spawned", "ready"]
    assert [phases[k] for k in order] == sorted(phases[k] for k in order), phases
    inside = ["boot_started", "boot_userns", "boot_disk", "boot_overlays", "boot_mounted"]
    inside.append("boot_exec")
    assert [phases[k] for k in inside] == sorted(phases[k] for k in inside), phases
    assert phases["start"] <= phases["boot_started"], phases
    assert phases["boot_exec"] <= phases["ready"], phases
    if info.get("network") == "on":  # the filter and pasta, attached while boot runs
        for step in ("network_filter", "network_pasta_spawned"):
            assert phases["network_netns"] <= phases[step] <= phases["network"], phases
        assert phases["network_pasta_spawned"] <= phases["network_pasta"] <= phases["ready"]


def test_the_cgroup_join_helper_writes_no_pid_once_its_parent_is_gone(tmp_path: Path) -> None:
    # A boot killed while its helper waits to join the cgroups: its pid, once reaped,
    # may be a new process's, which the write would move into the capsule's cgroups
    # (killed with them). The helper must check its parent is alive before each write.
    # A FIFO stands in for the first cgroup.procs file: opening it blocks the helper
    # until the test opens the other end, after the parent has gone.
    fifo, regular = tmp_path / "procs-1", tmp_path / "procs-2"
    os.mkfifo(fifo)
    regular.touch()
    booter = os.fork()
    if booter == 0:  # the boot child: starts the helper and dies at once
        try:
            boot.join_cgroups([str(fifo), str(regular)])
        finally:
            os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(booter, 0)[1]) == 0  # gone, and reaped
    reader = os.open(fifo, os.O_RDONLY)  # the helper's open returns now
    try:
        written = b""
        while chunk := os.read(reader, 64):  # until the helper closes it (or exits)
            written += chunk
    finally:
        os.close(reader)
    assert written == b""
    assert regular.read_text() == ""


def test_the_cgroup_join_helper_writes_its_parents_pid(tmp_path: Path) -> None:
    procs = [tmp_path / "procs-1", tmp_path / "procs-2"]
    for path in procs:
        path.touch()
    helper = boot.join_cgroups([str(path) for path in procs])
    boot.joined(helper)
    assert [path.read_text() for path in procs] == [str(os.getpid())] * 2
