"""Calls at their edges, against the real local server, through the async API (asyncio
and trio) and the sync API (the ``client`` fixture): limits that cannot work are refused
before anything runs (a limiter of 0 used to wait forever), a job's or a callback's own
exception comes out bare (not in an ``ExceptionGroup``), ``make_dir`` knows ``~``, ``/``
and ``.``, a background start left before its answer ends what it started, waiting for a
background process that has ended says why it cannot, and text that UTF-8 cannot carry
(lone surrogates, as ``os.fsdecode`` makes) is refused by name instead of failing deep in
the HTTP layer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from wrenn import (
    AsyncCapsule,
    AsyncWrennClient,
    WrennConflictError,
    WrennNotFoundError,
    WrennTimeoutError,
    WrennValidationError,
)

SURROGATE = "bad-\udcff-name"  # what os.fsdecode(b"bad-\xff-name") gives


async def test_limits_that_cannot_work_are_refused_at_once(client: AsyncWrennClient) -> None:
    async with client.capsule() as cap:
        with anyio.fail_after(20):  # concurrency=0 used to wait forever
            for bad in (0, -1, 1.5, True, None):
                with pytest.raises(WrennValidationError, match="concurrency"):
                    await cap.files.write_many({"a.txt": b"a"}, concurrency=bad)  # type: ignore[arg-type]
        assert not await cap.files.exists("a.txt")  # nothing was written

    async def job(cap: AsyncCapsule, item: int) -> int:
        return item

    for kw in ({"concurrency": 1.5}, {"concurrency": 0}, {"retries": -1}, {"retries": 0.5}):
        with pytest.raises(WrennValidationError, match=next(iter(kw))):
            await client.map(job, [1], **kw)


class Boom(Exception):
    pass


async def test_a_jobs_own_exception_comes_out_bare(client: AsyncWrennClient) -> None:
    async def job(cap: AsyncCapsule, item: int) -> int:
        return item

    def progress(done: int, total: int) -> None:
        raise Boom("from on_progress")

    with pytest.raises(Boom, match="from on_progress"):
        await client.map(job, [1, 2], concurrency=2, on_progress=progress)
    assert await _running(client) == []  # the jobs' capsules went with it

    async def chunks() -> AsyncIterator[bytes]:
        yield b"first"
        raise Boom("from a chunk source")

    async with client.capsule() as cap:
        with pytest.raises(Boom, match="from a chunk source"):
            await cap.files.write_many({"x.bin": chunks(), "y.txt": b"y"})


async def _running(client: AsyncWrennClient) -> list[str]:
    return [c.id for c in await client.capsules.list() if c.status not in ("stopped", "stopping")]


async def test_make_dir_knows_paths_that_name_no_entry(client: AsyncWrennClient) -> None:
    async with client.capsule() as cap:
        for path in ("~", "/", ".", "/tmp/.", "/tmp/", "~/", "/tmp/../tmp"):
            entry = await cap.files.make_dir(path)  # exists: fine
            assert entry.is_dir, path
        await cap.files.write("f.txt", "x")
        # (the local server answers 400 here, the SDK's own check 409: either says why)
        with pytest.raises((WrennConflictError, WrennValidationError), match="not a directory"):
            await cap.files.make_dir("f.txt")
        with pytest.raises(WrennConflictError):
            await cap.files.make_dir("~", exist_ok=False)
        made = await cap.files.make_dir("new/dir")
        assert made.is_dir
        assert made.name == "dir"


async def test_a_background_start_left_early_ends_what_it_started(
    client: AsyncWrennClient,
) -> None:
    async with client.capsule() as cap:
        kept = []
        timed_out = 0
        for i in range(12):
            tag = None if i % 2 else f"mine-{i}"
            try:
                handle = await cap.commands.run(
                    "sleep 100", background=True, timeout=0.0005 * (i + 1), tag=tag
                )
            except WrennTimeoutError:
                timed_out += 1
                continue
            kept.append(handle.pid)
        assert timed_out  # (a start takes milliseconds: the shortest deadlines pass first)
        with anyio.fail_after(15):
            while True:
                sleeps = [
                    p.pid for p in await cap.commands.list() if "sleep 100" in " ".join(p.args)
                ]
                if sorted(sleeps) == sorted(kept):
                    break  # only the processes whose start returned a handle are left
                await anyio.sleep(0.1)
        # and cancelled the same way, by an enclosing scope
        for delay in (0.0005, 0.002, 0.005):
            with anyio.move_on_after(delay):
                handle = await cap.commands.run("sleep 100", background=True)
                kept.append(handle.pid)
        with anyio.fail_after(15):
            while True:
                sleeps = [
                    p.pid for p in await cap.commands.list() if "sleep 100" in " ".join(p.args)
                ]
                if sorted(sleeps) == sorted(kept):
                    break
                await anyio.sleep(0.1)


async def test_waiting_for_a_background_process_that_ended_says_why_it_cannot(
    client: AsyncWrennClient,
) -> None:
    async with client.capsule() as cap:
        running = await cap.commands.run("sleep 0.5; exit 3", background=True)
        assert await running.wait() == 3  # waited for while it runs: its exit code
        done = await cap.commands.run("true", background=True)
        with anyio.fail_after(10):
            while any(p.pid == done.pid for p in await cap.commands.list()):
                await anyio.sleep(0.05)
        with pytest.raises(WrennNotFoundError, match="not running") as info:
            await done.wait()
        assert "foreground" in str(info.value)


async def test_arguments_that_cannot_go_on_the_wire_are_refused_by_name(
    client: AsyncWrennClient,
) -> None:
    async with client.capsule() as cap:
        run: Any = cap.commands.run
        with pytest.raises(WrennValidationError, match="args must be a list"):
            await run("echo", args="abc")  # used to run `echo a b c`
        with pytest.raises(WrennValidationError, match="args must be a list"):
            await run("echo", args="abc", on_stdout=print)
        cases: list[tuple[str, dict[str, Any]]] = [
            ("cmd", {"cmd": f"echo {SURROGATE}"}),
            ("args", {"cmd": "echo", "args": ["ok", SURROGATE]}),
            ("envs", {"cmd": "true", "envs": {"K": SURROGATE}}),
            ("cwd", {"cmd": "true", "cwd": f"/tmp/{SURROGATE}"}),
        ]
        for what, kw in cases:
            for extra in ({}, {"background": True}, {"on_stdout": print}):
                with pytest.raises(WrennValidationError, match=what):
                    await run(**kw, **extra)
        with pytest.raises(WrennValidationError, match="path"):
            await cap.files.write(f"/tmp/{SURROGATE}", b"x")
        with pytest.raises(WrennValidationError, match="path"):
            await cap.files.read(f"/tmp/{SURROGATE}")
        with pytest.raises(WrennValidationError, match="data"):
            await cap.files.write("/tmp/ok.txt", SURROGATE)
        async with cap.pty() as term:
            with pytest.raises(WrennValidationError, match="terminal write"):
                await term.write(SURROGATE)
        assert (await cap.commands.run("echo fine")).stdout == "fine\n"  # nothing broke


COUNT_SLEEPS = (
    "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done"
    " | grep -c '^sleep 43[0-9][0-9] $' || true"
)


async def _sleeps(cap: AsyncCapsule) -> int:
    return int((await cap.commands.run(COUNT_SLEEPS)).stdout.strip() or 0)


async def test_leaving_a_terminal_ends_the_jobs_its_shell_started(
    client: AsyncWrennClient,
) -> None:
    # An interactive shell puts each job in a process group of its own: ending the
    # shell's group alone left them running after the block.
    async with client.capsule() as cap:
        async with cap.pty() as term:
            await term.write("sleep 4301 & sleep 4302\n")  # a background and a foreground job
            with anyio.fail_after(10):
                while await _sleeps(cap) != 2:
                    await anyio.sleep(0.1)
        with anyio.fail_after(10):
            while await _sleeps(cap):
                await anyio.sleep(0.1)
        # detached: the terminal and its jobs keep running
        async with cap.pty() as term:
            await term.write("sleep 4303\n")
            with anyio.fail_after(10):
                while await _sleeps(cap) != 1:
                    await anyio.sleep(0.1)
            term.detach()
        await anyio.sleep(0.5)
        assert await _sleeps(cap) == 1
