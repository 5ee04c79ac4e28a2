"""wrenn_local snapshots, metrics, TTL auto-pause, events, and the serve process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from tests.localserver import local_http, new_capsule, sh, wait_status
from wrenn import AsyncWrennClient, WrennError, WrennInternalError, WrennValidationError
from wrenn_local import _rootfs


async def test_snapshot_round_trip() -> None:
    async with local_http() as (_, http):
        cid = await new_capsule(http, vcpus=2, memory_mb=256)
        await sh(http, cid, "echo kept > ~/state.txt; mkdir -p ~/proj && echo x > ~/proj/a")
        started = await http.post("/v1/snapshots", json={"sandbox_id": cid, "name": "snap-a"})
        assert started.status_code == 202
        assert started.json()["status"] == "snapshotting"
        await wait_status(http, cid, "running")
        with anyio.fail_after(20):
            while True:
                names = [t["name"] for t in (await http.get("/v1/snapshots?type=snapshot")).json()]
                if "snap-a" in names:
                    break
                await anyio.sleep(0.05)
        templates = {t["name"]: t for t in (await http.get("/v1/snapshots")).json()}
        snap = templates["snap-a"]
        assert (snap["type"], snap["platform"], snap["vcpus"], snap["memory_mb"]) == (
            "snapshot",
            False,
            2,
            256,
        )
        assert snap["size_bytes"] > 0
        assert templates["minimal-ubuntu"]["platform"] is True
        assert [t["name"] for t in (await http.get("/v1/snapshots?type=base")).json()] == [
            "minimal-ubuntu",
            "minimal",
        ] or {"minimal", "minimal-ubuntu"} <= set(templates)
        taken = await http.post("/v1/snapshots", json={"sandbox_id": cid, "name": "snap-a"})
        assert (taken.status_code, taken.json()["error"]["code"]) == (409, "template_name_taken")
        reserved = await http.post("/v1/snapshots", json={"sandbox_id": cid, "name": "minimal"})
        assert reserved.json()["error"]["code"] == "name_reserved"
        assert (
            await http.post("/v1/snapshots", json={"sandbox_id": cid, "name": "-bad"})
        ).status_code == 400
        # a capsule made from the snapshot has its files and its sizes
        clone = await new_capsule(http, template="snap-a")
        info = (await http.get(f"/v1/capsules/{clone}")).json()
        assert (info["template"], info["vcpus"], info["memory_mb"]) == ("snap-a", 2, 256)
        assert (await sh(http, clone, "cat ~/state.txt ~/proj/a"))["stdout"] == "kept\nx\n"
        # snapshot of a snapshot keeps both generations of changes
        await sh(http, clone, "echo second > ~/second.txt; rm ~/proj/a")
        await http.post("/v1/snapshots", json={"sandbox_id": clone, "name": "snap-b"})
        await wait_status(http, clone, "running")
        with anyio.fail_after(20):
            while "snap-b" not in [t["name"] for t in (await http.get("/v1/snapshots")).json()]:
                await anyio.sleep(0.05)
        third = await new_capsule(http, template="snap-b")
        out = await sh(http, third, "cat ~/state.txt ~/second.txt; test -e ~/proj/a; echo $?")
        assert out["stdout"] == "kept\nsecond\n1\n"
        # a paused source stays paused
        await http.post(f"/v1/capsules/{third}/pause")
        await wait_status(http, third, "paused")
        await http.post("/v1/snapshots", json={"sandbox_id": third, "name": "snap-c"})
        await wait_status(http, third, "paused")
        assert (await http.delete("/v1/snapshots/minimal")).status_code == 403
        assert (await http.delete("/v1/snapshots/nothing")).status_code == 404
        assert (await http.delete("/v1/snapshots/snap-a")).status_code == 204
        assert "snap-a" not in [t["name"] for t in (await http.get("/v1/snapshots")).json()]


async def test_capsule_from_a_snapshot_being_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot's template is listed and bootable only once it is written whole.

    The snapshot's copy and its size measurement are held on events, so the test sees
    each stage in turn: while the files are copied, and after they are copied but before
    the size is known, creating a capsule from it answers 409 and it is not listed.
    """
    copying, measuring = threading.Event(), threading.Event()
    real_copy, real_du = _rootfs.copy_layers, _rootfs.du

    def slow_copy(*args: object) -> None:
        assert copying.wait(30)
        real_copy(*args)  # type: ignore[arg-type]

    def slow_du(path: Path) -> int:
        assert measuring.wait(30)
        return real_du(path)

    # where the snapshot task looks them up
    monkeypatch.setattr("wrenn_local._capsules.copy_layers", slow_copy)
    monkeypatch.setattr("wrenn_local._capsules.du", slow_du)

    async def listed(http: httpx.AsyncClient) -> dict[str, dict[str, object]]:
        return {t["name"]: t for t in (await http.get("/v1/snapshots")).json()}

    async with local_http() as (_, http):
        try:
            cid = await new_capsule(http)
            await sh(http, cid, "echo kept > ~/state.txt")
            started = await http.post("/v1/snapshots", json={"sandbox_id": cid, "name": "slow"})
            assert started.status_code == 202
            early = await http.post("/v1/capsules", json={"template": "slow"})
            assert (early.status_code, early.json()["error"]["code"]) == (409, "conflict")
            assert "slow" not in await listed(http)
            copying.set()
            await wait_status(http, cid, "running")  # copied; the size is not known yet
            assert "slow" not in await listed(http)
            later = await http.post("/v1/capsules", json={"template": "slow"})
            assert (later.status_code, later.json()["error"]["code"]) == (409, "conflict")
            measuring.set()
            with anyio.fail_after(20):
                while "slow" not in (templates := await listed(http)):
                    await anyio.sleep(0.02)
            assert isinstance(size := templates["slow"]["size_bytes"], int)
            assert size > 0
            clone = await new_capsule(http, template="slow")
            assert (await sh(http, clone, "cat ~/state.txt"))["stdout"] == "kept\n"
        finally:
            copying.set()
            measuring.set()


async def test_metrics_stats_usage() -> None:
    async with local_http() as (_, http):
        cid = await new_capsule(http)
        await sh(http, cid, "head -c 3000000 /dev/urandom > ~/blob")
        await sh(http, cid, "timeout 2 sh -c 'while :; do :; done'", background=True)
        with anyio.fail_after(15):
            while True:
                points = (await http.get(f"/v1/capsules/{cid}/metrics")).json()["points"]
                if (
                    len(points) >= 3
                    and any(p["cpu_pct"] > 0 for p in points)
                    and any(p["disk_bytes"] > 2_000_000 for p in points)
                ):
                    break
                await anyio.sleep(0.2)
        assert all(p["mem_bytes"] > 0 for p in points)
        assert all(0 <= p["cpu_pct"] <= 100 for p in points)
        assert (await http.get(f"/v1/capsules/{cid}/metrics?range=3m")).status_code == 400
        body = (await http.get(f"/v1/capsules/{cid}/metrics?range=24h")).json()
        assert (body["sandbox_id"], body["range"]) == (cid, "24h")
        stats = (await http.get("/v1/capsules/stats")).json()
        assert stats["current"] == {
            "running_count": 1,
            "vcpus_reserved": 1,
            "memory_mb_reserved": 512,
        }
        assert stats["peaks"]["running_count"] >= 1
        usage = (await http.get("/v1/capsules/usage")).json()
        assert len(usage["points"]) == 30
        assert usage["points"][-1]["cpu_minutes"] > 0
        assert (
            await http.get("/v1/capsules/usage?from=2026-01-10&to=2026-01-01")
        ).status_code == 400
        await http.delete(f"/v1/capsules/{cid}")
        await wait_status(http, cid, "stopped")
        assert (await http.get(f"/v1/capsules/{cid}/metrics")).status_code == 404


async def test_ttl_auto_pause_and_ping() -> None:
    async with local_http() as (_, http):
        cid = await new_capsule(http, timeout_sec=1)
        assert (await http.get(f"/v1/capsules/{cid}")).json()["timeout_sec"] == 1
        for _ in range(6):  # pings keep it running past its TTL
            assert (await http.post(f"/v1/capsules/{cid}/ping")).status_code == 204
            await anyio.sleep(0.4)
        assert (await http.get(f"/v1/capsules/{cid}")).json()["status"] == "running"
        await wait_status(http, cid, "paused", timeout=10)
        assert (await http.post(f"/v1/capsules/{cid}/ping")).status_code == 409


async def test_event_stream() -> None:
    async with local_http() as (server, http):
        seen: list[dict[str, object]] = []
        async with anyio.create_task_group() as tg:

            async def listen() -> None:
                async with http.stream("GET", "/v1/events/stream") as resp:
                    assert resp.headers["content-type"].startswith("text/event-stream")
                    async for line in resp.aiter_lines():
                        if line.startswith("data: "):
                            seen.append(json.loads(line[6:]))
                            kinds = [e["event"] for e in seen]
                            if "capsule.destroy" in kinds:
                                tg.cancel_scope.cancel()

            tg.start_soon(listen)
            await anyio.sleep(0.2)
            cid = await new_capsule(http)
            await http.delete(f"/v1/capsules/{cid}")
            with anyio.fail_after(10):
                await anyio.sleep_forever()
        kinds = [e["event"] for e in seen]
        assert kinds[0] == "connected"
        assert "capsule.create" in kinds
        changed = [e for e in seen if e["event"] == "capsule.state.changed"]
        assert {"from": "starting", "to": "running"} in [e["metadata"] for e in changed]
        create = next(e for e in seen if e["event"] == "capsule.create")
        assert create["outcome"] == "success"
        assert create["sandbox"]["id"] == cid  # type: ignore[index]
        assert server.api_key not in json.dumps(seen)


def test_serve_process_prints_two_lines_and_cleans_up_on_sigterm(tmp_path: Path) -> None:
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wrenn_local",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        _check_serve_process(proc, tmp_path)


def _check_serve_process(proc: subprocess.Popen[str], tmp_path: Path) -> None:
    try:
        assert proc.stdout is not None
        first, second = proc.stdout.readline().strip(), proc.stdout.readline().strip()
        assert first.startswith("WRENN_BASE_URL=http://127.0.0.1:")
        assert second.startswith("WRENN_API_KEY=wrn_")
        base, key = first.split("=", 1)[1], second.split("=", 1)[1]
        with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30) as http:
            cid = http.post("/v1/capsules", json={}).json()["id"]
            deadline = time.monotonic() + 20
            while (status := http.get(f"/v1/capsules/{cid}").json()["status"]) != "running":
                assert time.monotonic() < deadline, status
                time.sleep(0.05)
            http.post(
                f"/v1/capsules/{cid}/exec",
                json={"cmd": "sleep", "args": ["300"], "background": True},
            )
        capsule_dir = tmp_path / "data" / "capsules" / cid
        assert capsule_dir.exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not capsule_dir.exists()
        leftovers = subprocess.run(["pgrep", "-f", cid], capture_output=True, text=True)
        assert leftovers.stdout.strip() == ""
        mounts = Path("/proc/mounts").read_text()
        assert str(tmp_path) not in mounts
        assert not any(Path("/sys/fs/cgroup").glob(f"*/wrenn-local/{cid}"))
        assert not any(Path("/sys/fs/cgroup").glob(f"wrenn-local/{cid}"))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_refuses_to_start_twice_on_one_port() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "wrenn_local", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as first:
        _check_second_server_fails(first)


def _check_second_server_fails(first: subprocess.Popen[str]) -> None:
    try:
        assert first.stdout is not None
        port = first.stdout.readline().strip().rsplit(":", 1)[1]
        second = subprocess.run(
            [sys.executable, "-m", "wrenn_local", "serve", "--port", port],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode != 0
        assert second.stdout == ""
    finally:
        first.send_signal(signal.SIGINT)
        assert first.wait(30) == 0


async def test_destroying_a_capsule_while_it_boots_its_code_runner_is_quick() -> None:
    """A code-runner capsule waits for Jupyter while it boots; a destroy in that window
    used to wait behind the whole readiness wait (and the server's shutdown with it)."""
    async with local_http() as (_, http):
        resp = await http.post("/v1/capsules", json={"template": "code-runner-beta"})
        assert resp.status_code in (200, 201, 202), resp.text
        capsule_id = resp.json()["id"]
        await anyio.sleep(0.3)  # booting: the sandbox is up, Jupyter is not yet
        assert (await http.delete(f"/v1/capsules/{capsule_id}")).status_code in (200, 202, 204)
        with anyio.fail_after(10):
            while (await http.get(f"/v1/capsules/{capsule_id}")).json().get("status") != (
                "stopped"
            ):
                await anyio.sleep(0.1)


async def test_a_write_cut_short_by_a_destroy_is_the_capsules_state_not_a_server_error() -> None:
    # The destroy ends the capsule's agent under the upload: the server used to answer
    # 500 (an internal error) for what is the capsule's state (409, not running).
    async with local_http() as (server, http):
        cid = await new_capsule(http)
        async with AsyncWrennClient(api_key=server.api_key, base_url=server.base_url) as c:
            started = anyio.Event()

            async def chunks() -> AsyncIterator[bytes]:
                for i in range(400):
                    if i == 5:
                        started.set()
                    yield b"x" * 65536
                    await anyio.sleep(0.01)

            async def destroy() -> None:
                await started.wait()
                await http.delete(f"/v1/capsules/{cid}")

            errors: list[WrennError] = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(destroy)
                try:
                    await c.files.write_stream(cid, "/tmp/big.bin", chunks())
                except WrennError as exc:
                    errors.append(exc)
            assert errors, "the write went through a destroy"
            assert not isinstance(errors[0], WrennInternalError), errors[0]
            # and a whole-file write given chunks says to stream them
            with pytest.raises(WrennValidationError, match="write_stream"):
                await c.files.write(cid, "/tmp/x", chunks())  # type: ignore[arg-type]
