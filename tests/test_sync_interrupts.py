"""Ctrl-C in the sync facade's narrowest windows (wrenn._sync.portal): while a client's
event loop is starting, as a call is handed to the loop, as a finished result crosses
back — and a stream left open when the program ends. Each window is a few bytecodes
wide, so a real signal lands in it only now and then (a tester's sweep of real SIGINTs
hit each one within a few hundred tries); the tests put the ``KeyboardInterrupt``
exactly there instead, by wrapping the step that precedes the window, which is what a
signal arriving at that moment does. What they check is the real thing: threads,
remote processes and capsules on a real local server.
"""

from __future__ import annotations

import _thread
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

import wrenn._sync.portal as portal
from tests.localserver import server_process
from tests.test_exit import EXIT_BOUND, live, run_program
from wrenn import Capsule, WrennClient
from wrenn._capsule import AsyncCapsule

pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="KeyboardInterrupt is delivered to the main thread",
)


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, str]]:
    with server_process() as env:
        yield env


def _portal_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("wrenn-") and "portal" in t.name]


def _settled(check: Callable[[], bool], within: float = 10.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.02)
    return check()


def test_ctrl_c_while_the_loop_starts_leaves_no_thread(
    server: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first client of a process imports the loop's backend as its thread starts (tens
    # of ms): a Ctrl-C then used to leave the loop running and wait 60 s for it.
    real_run = anyio.run

    def slow_run(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.5)  # as a first import of the backend would
        return real_run(*args, **kwargs)

    monkeypatch.setattr(anyio, "run", slow_run)  # (the portal thread's loop)
    before = set(_portal_threads())
    timer = threading.Timer(0.1, _thread.interrupt_main)
    started = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        WrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"])
    timer.join()
    assert time.monotonic() - started < 5  # not the 60 s join
    assert _settled(lambda: set(_portal_threads()) <= before), _portal_threads()


def test_ctrl_c_as_a_call_is_handed_over_cancels_it(
    server: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hand-over writes a byte to wake the loop; the loop thread runs while the caller
    # is in that send, so a Ctrl-C is often raised just as it returns, before the caller
    # waits. The call must still be cancelled, not left running in the loop.
    ran: list[str] = []

    async def work() -> None:
        try:
            await anyio.sleep(1)
            ran.append("finished")
        except anyio.get_cancelled_exc_class():
            ran.append("cancelled")
            raise

    with WrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"]) as c:
        runner = c._runner
        real_submit = runner._submit
        interrupted: list[bool] = []

        def submit(job: Any, task: Any = None) -> None:
            real_submit(job, task)
            if task is not None and not interrupted:
                interrupted.append(True)
                raise KeyboardInterrupt  # as a signal arriving as the send returns

        monkeypatch.setattr(runner, "_submit", submit)
        with pytest.raises(KeyboardInterrupt):
            runner.call(work)
        assert _settled(lambda: bool(ran), within=5)
        assert ran == ["cancelled"]
        monkeypatch.undo()
        # and the same window for a stream's command: it is ended in the capsule
        with c.capsule() as cap:
            interrupted.clear()
            monkeypatch.setattr(runner, "_submit", submit)
            with pytest.raises(KeyboardInterrupt), cap.commands.stream("sleep 600 # marked"):
                pass
            monkeypatch.undo()

            def ended() -> bool:
                return not [p for p in cap.commands.list() if "marked" in " ".join(p.args)]

            assert _settled(ended), cap.commands.list()
            assert cap.commands.run("echo usable").stdout == "usable\n"


def test_ctrl_c_as_a_created_capsule_crosses_back_destroys_it(
    server: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Capsule() (the official SDK's way): the create finished in the loop just as Ctrl-C
    # came; the capsule must not be left running on the server.
    real_wait = portal.PortalRunner._wait
    interrupted: list[bool] = []

    def wait(self: portal.PortalRunner, task: Any, *, launch: bool = False) -> Any:
        result = real_wait(self, task, launch=launch)
        if isinstance(result, AsyncCapsule) and not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt  # as a signal arriving as the result crosses
        return result

    before = live(server)
    monkeypatch.setattr(portal.PortalRunner, "_wait", wait)
    with pytest.raises(KeyboardInterrupt):
        Capsule(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"], wait=True)
    monkeypatch.undo()
    assert interrupted
    assert _settled(lambda: live(server) <= before), live(server) - before


@pytest.mark.parametrize("held", ["stream", "pty"])
def test_a_stream_or_terminal_left_open_at_exit_ends_quietly(
    server: dict[str, str], held: str
) -> None:
    # The exit hook closes the client (destroying the capsule); the stream's generator,
    # collected afterwards, must not print "Exception ignored" for a closed client.
    hold = (
        "events = iter(cap.commands.stream('sleep 600'))\nnext(events)\n"
        if held == "stream"
        else "term = cap.pty().__enter__()\n"
    )
    code = "import wrenn\ncap = wrenn.Capsule(wait=True)\n" + hold + "print('ends')\n"
    done, took = run_program(server, code)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ends\n"
    assert "Exception ignored" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert took < EXIT_BOUND
