"""``wrenn_local.serve()`` cancelled at any point of its start (or of its stop) leaves
nothing behind: no temporary data directory, no child process (the boot process), no
open descriptor (the data directory's lock, the shared base's lock, sockets), and the
cancellation itself comes out as a cancellation.

The points are reached by time: a sweep of delays across the whole start, whose
duration is measured first on this machine, so the sweep lands in every phase (making
the data directory, detecting the host, starting the boot process, holding the shared
base, binding, serving) whatever the machine's speed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import wrenn_local
from wrenn_local._data_dir import TEMP_PREFIX

pytestmark = pytest.mark.anyio


def open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def children() -> set[str]:
    """This process's children, each as ``pid state command``."""
    me = str(os.getpid())
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if fields[1] == me:
            with contextlib.suppress(OSError):
                command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
                found.add(f"{entry} {fields[0]} {command.decode(errors='replace')[:200]}")
    return found


class TempDirs(list[str]):
    """The temporary data directories this process's servers made (other test processes
    make theirs in the same place meanwhile: a listing of it would count theirs)."""

    def __call__(self) -> set[str]:
        """Those that still exist."""
        return {path for path in self if os.path.exists(path)}


@pytest.fixture
def temp_dirs(monkeypatch: pytest.MonkeyPatch) -> TempDirs:
    made = TempDirs()
    real = tempfile.mkdtemp

    def spy(*args: Any, **kwargs: Any) -> str:
        path: str = real(*args, **kwargs)
        if os.path.basename(path).startswith(TEMP_PREFIX):
            made.append(path)
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", spy)
    return made


async def settle_fds(before: set[int]) -> set[int]:
    """Descriptors opened since ``before`` that stay open (a worker thread may be a
    moment from closing one it used)."""
    for _ in range(50):
        extra = open_fds() - before
        if not extra:
            return extra
        await anyio.sleep(0.02)
    return {fd for fd in extra if os.path.exists(f"/proc/self/fd/{fd}")}


async def test_serve_cancelled_anywhere_in_its_start_leaves_nothing(
    temp_dirs: TempDirs,
) -> None:
    # how long a start takes here (the first one also makes the shared base if needed)
    started = time.monotonic()
    async with wrenn_local.serve():
        start_s = time.monotonic() - started
    async with wrenn_local.serve():
        pass
    fds, kids = open_fds(), children()
    delays = [0.0, 0.0005, 0.002] + [start_s * k / 12 for k in range(1, 16)]
    entered = 0
    for delay in delays:
        with anyio.move_on_after(delay) as scope:
            async with wrenn_local.serve():
                entered += 1
                await anyio.sleep_forever()
        assert scope.cancelled_caught, f"cancelled after {delay * 1000:.1f} ms"
        assert await settle_fds(fds) == set(), f"after {delay * 1000:.1f} ms"
        assert children() - kids == set(), f"after {delay * 1000:.1f} ms"
        assert temp_dirs() == set(), f"after {delay * 1000:.1f} ms"
    assert entered < len(delays)  # some cancels landed inside the start, not after it
    assert len(temp_dirs) >= len(delays)  # (the spy saw every server's directory)


async def test_serve_cancelled_while_stopping_still_stops_everything(
    temp_dirs: TempDirs,
) -> None:
    fds, kids = open_fds(), children()
    for delay in (0.0, 0.001, 0.005, 0.02):
        with anyio.CancelScope() as outer:
            async with wrenn_local.serve():
                outer.cancel()  # the stop runs with the scope already cancelled
                await anyio.sleep(delay)
        assert outer.cancelled_caught
        assert await settle_fds(fds) == set()
        assert children() - kids == set()
        assert temp_dirs() == set()


@pytest.mark.parametrize("how", ["left", "cancelled"])
async def test_a_server_left_while_capsules_boot_stops_them_all(
    how: str, temp_dirs: TempDirs
) -> None:
    """Leaving ``serve()`` (normally, or by a cancellation from outside) while capsules
    are booting, at many points of their boots: every capsule's processes, cgroups and
    loop devices go with the server, and its exit is bounded."""
    import httpx

    fds, kids = open_fds(), children()
    for delay in (0.0, 0.02, 0.08, 0.2, 0.4):
        where = f"{how} {delay * 1000:.0f} ms after three creates"
        ids: list[str] = []
        data_dir = None
        with anyio.fail_after(30):  # the exit is bounded
            with anyio.CancelScope() as outer:
                async with (
                    wrenn_local.serve() as server,
                    httpx.AsyncClient(
                        base_url=server.base_url, headers={"X-API-Key": server.api_key}
                    ) as http,
                ):
                    data_dir = server.data_dir
                    for _ in range(3):
                        resp = await http.post("/v1/capsules", json={})
                        assert resp.status_code == 202, resp.text
                        ids.append(resp.json()["id"])
                    await anyio.sleep(delay)
                    if how == "cancelled":
                        outer.cancel()
                        await anyio.sleep_forever()
        assert outer.cancelled_caught == (how == "cancelled")
        assert data_dir is not None
        assert not data_dir.exists(), where
        cgroups = Path("/sys/fs/cgroup")
        for cid in ids:
            left = [cgroups / "wrenn-local" / cid, *cgroups.glob(f"*/wrenn-local/{cid}")]
            assert [p for p in left if p.exists()] == [], where
        loops = [
            b.parent.parent.name
            for b in Path("/sys/block").glob("loop*/loop/backing_file")
            if b.read_text().startswith(f"{data_dir}/")
        ]
        assert loops == [], where
        assert await settle_fds(fds) == set(), where
        assert children() - kids == set(), where
        assert temp_dirs() == set(), where
