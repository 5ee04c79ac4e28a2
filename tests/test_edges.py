"""The edges of a scope, attacked: interrupts and exceptions leave every scope bare, an
exception raised after a deadline is not swallowed, work started by a call ends with
the call, and ``timeout`` means one thing.

Real local server, real sockets, both backends; the sync facade where it has its own
code path (the portal), and whole processes where only a real interpreter can show it.
"""

from __future__ import annotations

import _thread
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

import wrenn_local
from tests.localserver import FAST, server_process
from wrenn import (
    AsyncCapsule,
    AsyncWrennClient,
    StreamExit,
    StreamStderr,
    WrennAgentError,
    WrennClient,
    WrennCommandTimeoutError,
    WrennError,
    WrennTimeoutError,
    WrennValidationError,
)

BOUND = 30


@pytest.fixture
async def aclient() -> AsyncIterator[AsyncWrennClient]:
    async with (
        wrenn_local.serve(options=FAST) as server,
        AsyncWrennClient(api_key=server.api_key, base_url=server.base_url) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, str]]:
    with server_process() as env:
        yield env


async def _ours(cap: AsyncCapsule, needle: str) -> list[int]:
    """pids of processes in the capsule whose command line mentions ``needle``."""
    listed = await cap.commands.list()
    return [p.pid for p in listed if needle in " ".join([p.cmd or "", *p.args])]


async def _gone(cap: AsyncCapsule, needle: str) -> bool:
    with anyio.move_on_after(10):
        while await _ours(cap, needle):
            await anyio.sleep(0.1)
        return True
    return False


async def _capsules(client: AsyncWrennClient) -> list[str]:
    """Capsules not on their way out (destroy answers at once; stopping follows)."""
    listed = await client.capsules.list()
    return [c.id for c in listed if str(c.status) not in ("stopping", "stopped")]


# --- interrupts and exceptions leave bare ----------------------------------------------


class Boom(Exception):
    pass


def _asyncio_reraises(anyio_backend: object, exc_type: type[BaseException]) -> None:
    """asyncio's Task re-raises KeyboardInterrupt and SystemExit out of the event loop
    itself (``Task.__step``), so one raised inside a coroutine also surfaces as a stray
    loop-level error in the test runner — asyncio's behaviour, not the scope's. Real
    Ctrl-C is covered through the sync API and whole processes below; under trio the
    scopes are tested with these exceptions directly."""
    backend = anyio_backend[0] if isinstance(anyio_backend, tuple) else anyio_backend
    if backend == "asyncio" and not issubclass(exc_type, Exception):
        pytest.skip("asyncio re-raises KeyboardInterrupt/SystemExit out of its loop")


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, Boom])
@pytest.mark.parametrize("keepalive", [False, True])
async def test_interrupts_and_errors_leave_a_capsule_scope_bare(
    aclient: AsyncWrennClient, exc_type: type[BaseException], keepalive: bool, anyio_backend: object
) -> None:
    _asyncio_reraises(anyio_backend, exc_type)
    raised = exc_type(3)
    with pytest.raises(exc_type) as caught:
        async with aclient.capsule(keepalive=keepalive) as cap:
            cid = cap.capsule_id
            raise raised
    assert caught.value is raised  # not a group, not a replacement
    assert cid not in await _capsules(aclient)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, Boom])
async def test_interrupts_and_errors_leave_stream_and_pty_blocks_bare(
    aclient: AsyncWrennClient, exc_type: type[BaseException], anyio_backend: object
) -> None:
    _asyncio_reraises(anyio_backend, exc_type)
    async with aclient.capsule() as cap:
        raised = exc_type()
        with pytest.raises(exc_type) as caught:
            async with cap.commands.stream("sleep 30") as run:
                await run.wait_started()
                raise raised
        assert caught.value is raised
        with pytest.raises(exc_type) as caught:
            async with cap.pty("/bin/sh"):
                raise raised
        assert caught.value is raised


async def test_an_error_after_the_deadline_is_not_swallowed(aclient: AsyncWrennClient) -> None:
    """A user's exception raised once an enclosing deadline has passed reaches the caller
    (it used to vanish: the scope's exit raised the cancellation instead, and
    move_on_after swallowed that)."""
    for scope in ("capsule", "stream", "pty"):
        with pytest.raises(Boom), anyio.CancelScope() as outer:

            def deadline_passes_then_raise(outer: anyio.CancelScope = outer) -> None:
                outer.deadline = anyio.current_time()  # passed, no checkpoint since
                raise Boom

            async with aclient.capsule(keepalive=True) as cap:
                if scope == "capsule":
                    deadline_passes_then_raise()
                if scope == "stream":
                    async with cap.commands.stream("sleep 30"):
                        deadline_passes_then_raise()
                async with cap.pty("/bin/sh"):
                    deadline_passes_then_raise()


# --- work started by a call belongs to the call ----------------------------------------


async def test_a_cancelled_run_ends_its_command(aclient: AsyncWrennClient) -> None:
    async with aclient.capsule() as cap:
        with anyio.move_on_after(1):
            await cap.commands.run("sleep 301")
        assert await _gone(cap, "sleep 301")
        with pytest.raises(TimeoutError):  # the caller's own fail_after
            with anyio.fail_after(1):
                await cap.commands.run("sleep 302", args=None)
        assert await _gone(cap, "sleep 302")
        # a program with arguments (no shell) is ended the same way
        with anyio.move_on_after(1):
            await cap.commands.run("sleep", args=["303"])
        assert await _gone(cap, "303")


async def test_a_failing_callback_ends_its_command(aclient: AsyncWrennClient) -> None:
    def bad(_: str) -> None:
        raise Boom

    async with aclient.capsule() as cap:
        with pytest.raises(Boom):
            await cap.commands.run("echo go; sleep 304", on_stdout=bad)
        assert await _gone(cap, "sleep 304")


async def test_timeout_is_a_deadline_that_ends_the_command(aclient: AsyncWrennClient) -> None:
    async with aclient.capsule() as cap:
        with pytest.raises(WrennCommandTimeoutError) as caught:
            await cap.commands.run("sleep 305", timeout=0.5)
        # a TimeoutError, and what official programs catch (the server's 502)
        assert issubclass(type(caught.value), TimeoutError)
        assert issubclass(type(caught.value), WrennTimeoutError)
        assert issubclass(type(caught.value), WrennAgentError)
        assert await _gone(cap, "sleep 305")
        with pytest.raises(WrennCommandTimeoutError):
            await cap.commands.run("echo x; sleep 306", timeout=0.5, on_stdout=lambda _: None)
        assert await _gone(cap, "sleep 306")
        # fractions and None are fine
        assert (await cap.commands.run("echo ok", timeout=None)).stdout == "ok\n"
        assert (await cap.commands.run("echo ok", timeout=2.5)).stdout == "ok\n"
        # the command's own output, exit code and $0 are unchanged by the marker
        result = await cap.commands.run('echo "$0"; nosuchcommand')
        assert result.stdout == "/bin/sh\n"  # as under the official SDK's plain sh -c
        assert result.exit_code == 127
        assert (await cap.commands.run("printf", args=["%s-%s", "a b", "c"])).stdout == "a b-c"


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "5", True])
async def test_bad_timeouts_are_refused_before_anything_runs(
    aclient: AsyncWrennClient, bad: object
) -> None:
    async with aclient.capsule() as cap:
        with pytest.raises(WrennValidationError, match="timeout") as caught:
            await cap.commands.run("true", timeout=bad)  # type: ignore[call-overload]
        assert isinstance(caught.value, ValueError)


async def test_a_program_that_cannot_run_fails_with_127_or_126_on_every_path(
    aclient: AsyncWrennClient,
) -> None:
    # Wrenn's envd starts every command through ``sh`` (``exec``): a missing program is a
    # command that exits 127, one that cannot be executed 126, with the reason on its
    # stderr. The local server does the same, so code written against the cloud sees
    # one behaviour whichever way it runs the command (it used to be a 400 here when
    # the program was given with ``args``, and a WrennAgentError with callbacks).
    async with aclient.capsule() as cap:
        await cap.files.write("/tmp/plain.txt", "not a program\n")
        for program, code in (("no-such-program", 127), ("/tmp/plain.txt", 126)):
            errors: list[str] = []
            results = [
                await cap.commands.run(program, args=["x"]),
                await cap.commands.run(program, args=["x"], on_stderr=errors.append),
            ]
            for result in results:
                assert result.exit_code == code, result
                assert result.stdout == ""
                assert program in result.stderr
            assert program in "".join(errors)
            events = []
            async with cap.commands.stream(program, args=["x"]) as run:
                events = [event async for event in run]
            assert isinstance(events[-1], StreamExit)
            assert events[-1].exit_code == code
            assert any(isinstance(e, StreamStderr) and program in e.data for e in events)
            # started in the background it is a process too (that ends at once)
            handle = await cap.commands.run(program, args=["x"], background=True)
            assert handle.pid > 0
        # the stand-in's shell prints the name, never runs it: no injection through it
        hostile = "/no/such; touch /tmp/pwned-1 $(touch /tmp/pwned-2) `touch /tmp/pwned-3`"
        result = await cap.commands.run(hostile, args=[])
        assert result.exit_code == 127
        assert hostile in result.stderr
        assert not (await cap.commands.run("ls /tmp | grep pwned || true")).stdout
        # a program that runs is unchanged, and a missing cwd is still the call's error
        assert (await cap.commands.run("printf", args=["ok"])).stdout == "ok"
        with pytest.raises(WrennError, match="does not exist"):
            await cap.commands.run("true", args=[], cwd="/no/such/dir")


async def test_leaving_a_stream_early_ends_its_command(aclient: AsyncWrennClient) -> None:
    async with aclient.capsule() as cap:
        async with cap.commands.stream("while true; do echo tick; sleep 0.1; done") as run:
            async for _ in run:
                break  # left early, before the loop ends
        assert await _gone(cap, "echo tick")
        # left before its first event was even read
        async with cap.commands.stream("sleep 307"):
            pass
        assert await _gone(cap, "sleep 307")
        # a background command is left alone, and so is attaching to it
        handle = await cap.commands.run("sleep 308", background=True)
        async with cap.commands.connect(handle.pid) as attached:
            async for _ in attached:
                break
        assert await _ours(cap, "sleep 308") == [handle.pid]


async def test_leaving_a_terminal_ends_its_process_unless_detached(
    aclient: AsyncWrennClient,
) -> None:
    async with aclient.capsule() as cap:
        async with cap.pty("/bin/sh") as term:
            pid = term.pid
        with anyio.fail_after(10):
            while pid in [p.pid for p in await cap.commands.list()]:
                await anyio.sleep(0.1)
        async with cap.pty("/bin/sh") as kept:
            kept.detach()
        assert kept.pid in [p.pid for p in await cap.commands.list()]
        async with cap.pty_connect(kept.tag or "") as again:
            pass  # a reattached terminal is not ours to end
        assert kept.pid in [p.pid for p in await cap.commands.list()]
        async with cap.pty_connect(kept.tag or "") as again:
            await again.kill()
            assert await again.wait() == -1


# --- the sync facade: the portal passes interrupts through ----------------------------


def _alive(client: WrennClient) -> list[str]:
    listed = client.capsules.list()
    return [c.id for c in listed if str(c.status) not in ("stopping", "stopped")]


def _client(server: dict[str, str]) -> WrennClient:
    return WrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"])


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, Boom])
def test_sync_scopes_let_interrupts_out_bare(
    server: dict[str, str], exc_type: type[BaseException]
) -> None:
    with _client(server) as client:
        raised = exc_type()
        with pytest.raises(exc_type) as caught, client.capsule() as cap:
            cid = cap.capsule_id
            raise raised
        assert caught.value is raised
        assert cid not in _alive(client)
        # the client is still usable, and so is a stream block after an interrupt
        with client.capsule() as cap:
            with pytest.raises(exc_type), cap.commands.stream("sleep 30"):
                raise exc_type()
            assert cap.commands.run("echo still").stdout == "still\n"


def test_ctrl_c_while_a_capsule_is_created_destroys_it(server: dict[str, str]) -> None:
    with _client(server) as client:
        before = {c.id for c in client.capsules.list()}
        timer = threading.Timer(0.3, _thread.interrupt_main)  # Ctrl-C mid-creation
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt), client.capsule(template="code-runner-beta"):
                pytest.fail("the block must not run")
        finally:
            timer.cancel()
        left = [c for c in _alive(client) if c not in before]
        assert left == []
        with client.capsule() as cap:  # still usable
            assert cap.commands.run("echo ok").stdout == "ok\n"


# --- whole processes -------------------------------------------------------------------

PROGRAM = textwrap.dedent(
    """
    import os, sys, time
    from wrenn import WrennClient
    with WrennClient() as client, client.capsule() as cap:
        print(cap.capsule_id, flush=True)
        if sys.argv[1] == "exit":
            sys.exit(3)
        print("running", flush=True)
        cap.commands.run("sleep 300", timeout=None)
    """
)


def _spawn(server: dict[str, str], mode: str) -> subprocess.Popen[str]:
    env = {**os.environ, **server}
    return subprocess.Popen(
        [sys.executable, "-c", PROGRAM, mode],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sys_exit_inside_a_capsule_block_exits_with_its_code(server: dict[str, str]) -> None:
    proc = _spawn(server, "exit")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    cid = out.split()[0]
    with _client(server) as client:
        assert cid not in _alive(client)


def test_sigint_during_a_sync_run_is_a_bare_keyboard_interrupt(server: dict[str, str]) -> None:
    proc = _spawn(server, "run")
    assert proc.stdout is not None
    cid = proc.stdout.readline().split()[0]
    assert proc.stdout.readline().strip() == "running"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (130, -signal.SIGINT), err
    assert "ExceptionGroup" not in err
    assert err.rstrip().endswith("KeyboardInterrupt")
    with _client(server) as client:
        assert cid not in _alive(client)
