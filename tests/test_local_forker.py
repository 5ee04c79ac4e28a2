"""wrenn_local's forker: children that die with the server are forked from a thread that
outlives them.

bubblewrap's ``--die-with-parent`` is a parent-death signal, which Linux sends when the
*thread* that forked the child exits. trio starts processes from worker threads that
exit after an idle timeout (10 s): a capsule booted from one was SIGKILLed about 10 s
after that thread last had work (``test_pasta_outlives_the_thread_that_spawned_it[trio]``
failed about one run in three that way).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import anyio
import pytest

from wrenn_local import _forker
from wrenn_local._forker import open_child

pytestmark = pytest.mark.anyio

# a child that asks for SIGKILL when its parent (thread) dies, as bubblewrap does
DIES_WITH_PARENT = (
    "import ctypes, signal, sys, time\n"
    "ctypes.CDLL(None).prctl(1, signal.SIGKILL)\n"  # PR_SET_PDEATHSIG
    "sys.stdout.write('ready\\n'); sys.stdout.flush()\n"
    "time.sleep(60)\n"
)


@pytest.fixture
def short_idle() -> Iterator[float]:
    """The forker's thread gives up after 0.3 s without work or children (5 s otherwise)."""
    before = _forker._forker.idle_seconds
    _forker._forker.idle_seconds = 0.3
    try:
        yield 0.3
    finally:
        _forker._forker.idle_seconds = before


def test_a_parent_death_signal_follows_the_thread_that_forked() -> None:
    # why the forker exists: a thread that forks and exits takes such a child with it
    # (trio forks from worker threads that exit when idle). If this ever stops holding,
    # the forker is no longer needed.
    children: list[subprocess.Popen[bytes]] = []

    def fork() -> None:
        children.append(subprocess.Popen([sys.executable, "-I", "-c", DIES_WITH_PARENT], stdout=-1))
        assert children[0].stdout is not None
        children[0].stdout.readline()  # the signal is asked for

    thread = threading.Thread(target=fork)
    thread.start()
    thread.join()
    assert children[0].wait(timeout=10) == -signal.SIGKILL
    assert children[0].stdout is not None
    children[0].stdout.close()


async def test_a_child_that_dies_with_its_parent_outlives_idle_threads(short_idle: float) -> None:
    child = await open_child([sys.executable, "-I", "-c", DIES_WITH_PARENT])
    try:
        await anyio.sleep(short_idle * 5 + 0.5)  # any idle thread has given up by now
        with anyio.move_on_after(0.3):  # a killed child would be reaped here at once
            await child.wait()
        assert child.returncode is None, "the child was killed with an idle thread"
        forker = _forker._forker.thread()
        assert forker is not None
        assert forker.is_alive()
        assert forker is not threading.current_thread()
    finally:
        child.send_signal(signal.SIGKILL)
        with anyio.fail_after(5):
            assert await child.wait() == -signal.SIGKILL


async def test_the_forker_thread_ends_once_its_children_are_reaped(short_idle: float) -> None:
    child = await open_child(["sleep", "30"])
    thread = _forker._forker.thread()
    assert thread is not None
    assert thread.is_alive()
    await anyio.sleep(short_idle * 5 + 0.5)
    assert thread.is_alive(), "the thread left a child it forked"
    child.send_signal(signal.SIGKILL)
    assert await child.wait() == -signal.SIGKILL
    with anyio.fail_after(5):
        while thread.is_alive():
            await anyio.sleep(0.05)
    assert _forker._forker.thread() is None


async def test_many_tasks_wait_for_one_child_and_read_its_stderr() -> None:
    child = await open_child(
        [sys.executable, "-I", "-c", "import sys, time; time.sleep(0.3); sys.exit('boom')"],
        stderr=-1,
    )
    codes: list[int] = []

    async def waiter() -> None:
        codes.append(await child.wait())

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(waiter)
    assert codes == [1] * 5
    assert child.stderr is not None
    assert b"boom" in await child.stderr.receive()
    await child.stderr.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await child.stderr.receive()


async def test_a_cancelled_wait_leaves_the_child_to_the_next_waiter() -> None:
    child = await open_child(["sleep", "30"])
    with anyio.move_on_after(0.1) as scope:
        await child.wait()
    assert scope.cancelled_caught
    assert child.returncode is None
    child.send_signal(signal.SIGTERM)
    with anyio.fail_after(5):
        assert await child.wait() == -signal.SIGTERM
    child.send_signal(signal.SIGKILL)  # reaped: left alone, no error


async def test_a_failed_fork_raises_in_the_caller() -> None:
    with pytest.raises(FileNotFoundError):
        await open_child(["/nonexistent/program"])
