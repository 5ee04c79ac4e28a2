"""The official SDK's shapes over our API, end to end against wrenn_local: streams and
downloads iterated directly, PTY events and session blocks, class-level lifecycle calls,
the official constructors and defaults. (Names and signatures: test_official_surface.py.)
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import cast

import anyio
import pytest

import wrenn
from tests.localserver import server_process
from wrenn import AsyncCapsule, AsyncWrennClient, Capsule, StreamExit, StreamStdout, WrennClient
from wrenn.models import Status
from wrenn.pty import PtyEventType


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, str]]:
    with server_process() as env:
        yield env


async def test_directly_iterated_streams_in_a_capsule_scope(server: dict[str, str]) -> None:
    client = AsyncWrennClient(server["WRENN_API_KEY"], server["WRENN_BASE_URL"])
    async with client, client.capsule() as cap:
        events = [e async for e in cap.commands.stream("echo hi; exit 3")]
        assert isinstance(events[-1], StreamExit)
        assert events[-1].exit_code == 3
        assert "".join(e.data for e in events if isinstance(e, StreamStdout)) == "hi\n"
        quick = await cap.commands.run("echo quick", background=True)
        with anyio.fail_after(10):
            while quick.pid in [p.pid for p in await cap.commands.list()]:
                await anyio.sleep(0.1)
        # iterated directly, a process that is gone is an empty stream (official SDK) ...
        assert [e async for e in cap.commands.connect(quick.pid)] == []
        # ... entered, it is an error
        with pytest.raises(wrenn.WrennNotFoundError):
            async with cap.commands.connect(quick.pid) as run:
                await run.wait()
        await cap.files.write("d.bin", b"x" * 300_000)
        chunks = [c async for c in cap.files.download_stream("d.bin")]
        assert b"".join(chunks) == b"x" * 300_000
        async with cap.pty("/bin/sh", None, 80, 24) as term:
            await term.write("echo pty-$((6*7)); exit 4\n")
            seen = [e async for e in term]
        assert seen[-1].type is PtyEventType.exit
        assert seen[-1].exit_code == 4
        assert b"pty-42" in b"".join(e.data for e in seen if isinstance(e.data, bytes))
        async with cap.pty("/bin/sh") as term, term:  # the session's own block kills
            tag = term.tag
        assert tag is not None
        with anyio.fail_after(10):
            while tag in [p.tag for p in await cap.commands.list()]:
                await anyio.sleep(0.1)


async def test_the_official_async_forms(server: dict[str, str]) -> None:
    # a server process of its own: streams are left early here, and hypercorn under trio
    # (the in-process server of this backend) can fail a connection closed mid-send
    key, url = server["WRENN_API_KEY"], server["WRENN_BASE_URL"]
    async with await AsyncCapsule.create(wait=True, api_key=key, base_url=url) as cap:
        events = [e async for e in cap.commands.stream("echo", ["official"])]
        assert [e.data for e in events if isinstance(e, StreamStdout)] == ["official\n"]
        with anyio.fail_after(10):
            async for _ in cap.commands.stream("for i in 1 2 3; do echo $i; sleep 1; done"):
                break  # left early: the capsule's block closes it
        capsule_id = cap.capsule_id
        paused = await AsyncCapsule.pause(capsule_id, wait=True, api_key=key, base_url=url)
        assert paused.status == Status.paused
        await cap.resume(wait=True)
        assert (await cap.get_info()).status is Status.running
    info = await AsyncCapsule.get_info(capsule_id, api_key=key, base_url=url)
    assert info.status in (Status.stopping, Status.stopped, Status.missing)
    # no block at all: a directly iterated stream runs in the iterating task
    bare = await AsyncCapsule.create(wait=True, api_key=key, base_url=url)
    try:
        assert [e.type async for e in bare.commands.stream("true")][-1] == "exit"
        stream = bare.commands.stream("for i in 1 2 3; do echo $i; sleep 1; done")
        async for _ in stream:
            break
        await stream.aclose()
    finally:
        await bare.destroy()
        await bare.aclose()


def test_the_official_sync_forms(server: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WRENN_API_KEY", server["WRENN_API_KEY"])
    monkeypatch.setenv("WRENN_BASE_URL", server["WRENN_BASE_URL"])
    with Capsule(wait=True) as cap:
        events = list(cap.commands.stream("echo hi"))
        assert isinstance(events[-1], StreamExit)
        cap.files.write("/tmp/d.bin", b"abc" * 1000)
        assert b"".join(cap.files.download_stream("/tmp/d.bin")) == b"abc" * 1000
        handle = cap.commands.run("sleep 30", background=True, timeout=None)
        assert isinstance(cast("object", handle), wrenn.CommandHandle)  # as in the official SDK
        # before: <wrenn._sync.commands.SyncCommandHandle object at 0x...>
        assert repr(handle) == (
            f"CommandHandle(pid={handle.pid}, tag={handle.tag!r}, capsule_id={cap.capsule_id!r})"
        )
        cap.commands.kill(handle.pid)
        with cap.pty("/bin/sh") as term:
            term.write(b"exit 5\n")
            kinds = [e.type for e in term]
        assert kinds[-1] == "exit"
        assert term.exit_code == 5
        capsule_id = cap.capsule_id
        assert Capsule.pause(capsule_id, wait=True).status == Status.paused
        Capsule.resume(capsule_id, wait=True)
        assert cap.is_running()
    Capsule.destroy(capsule_id, wait=True)  # already destroyed by the block: still fine
    assert Capsule.get_info(capsule_id).status in (Status.stopped, Status.missing)
    with WrennClient(server["WRENN_API_KEY"], server["WRENN_BASE_URL"]) as client:
        for event in client.events.stream():
            assert event.event == "connected"
            break


def test_a_client_timeout_in_phases_as_the_official_sdk_takes_it(server: dict[str, str]) -> None:
    # The official WrennClient takes ``timeout: httpx.Timeout | float | None``; ours
    # used to refuse the Timeout (WrennConfigurationError). httpx2's Timeout is the same
    # shape (httpx itself need not be installed), and any object with the four phases
    # is taken alike. Its connect phase bounds connecting, the longest other phase a call.
    import httpx2

    with WrennClient(
        server["WRENN_API_KEY"], server["WRENN_BASE_URL"], timeout=httpx2.Timeout(20.0, connect=4.0)
    ) as client:
        assert (client.config.timeout, client.config.connect_timeout) == (20.0, 4.0)
        with client.capsule() as cap:
            assert cap.commands.run("echo phased").stdout == "phased\n"


def test_an_official_program_catches_a_runs_timeout_as_an_agent_error(
    server: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under the official SDK a foreground run past its timeout is the server's 502,
    # WrennAgentError; ours raises WrennCommandTimeoutError, which is that too.
    monkeypatch.setenv("WRENN_API_KEY", server["WRENN_API_KEY"])
    monkeypatch.setenv("WRENN_BASE_URL", server["WRENN_BASE_URL"])
    from wrenn.exceptions import WrennAgentError

    caught: list[Exception] = []
    with Capsule(wait=True) as cap:
        try:
            cap.commands.run("sleep 30", timeout=1)
        except WrennAgentError as exc:
            caught.append(exc)
        assert cap.commands.run("echo after").stdout == "after\n"
    assert len(caught) == 1
    assert isinstance(caught[0], TimeoutError)


def test_an_api_errors_message_is_the_servers_text_as_official(server: dict[str, str]) -> None:
    # Official programs compare e.message with the server's text ("capsule not found");
    # ours kept the request in the message. Now .message is the text and str() adds the
    # request (which a traceback shows).
    from wrenn.exceptions import WrennNotFoundError

    with (
        WrennClient(server["WRENN_API_KEY"], server["WRENN_BASE_URL"]) as client,
        pytest.raises(WrennNotFoundError) as caught,
    ):
        client.capsules.get("cl-" + "0" * 25)
    err = caught.value
    assert err.message == "capsule not found"
    assert err.request.startswith("GET /v1/capsules/cl-")
    assert str(err) == f"capsule not found ({err.request})"


def test_deprecated_aliases_warn() -> None:
    with pytest.warns(FutureWarning, match="Sandbox"):
        assert wrenn.Sandbox is Capsule
    with pytest.warns(FutureWarning, match="WrennHostHasSandboxesError"):
        alias = wrenn.WrennHostHasSandboxesError
    assert alias is wrenn.WrennHostHasCapsulesError
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from wrenn.exceptions import GitError  # lazy, no warning

    assert issubclass(GitError, wrenn.WrennError)


async def test_a_command_line_and_a_terminal_as_official_programs_see_them(
    server: dict[str, str],
) -> None:
    # before: the shell's $0 was "sh" (its messages read "sh: 1: ..."), official "/bin/sh";
    # a terminal's iteration did not yield the ``started`` event the official SDK yields
    # first (ours read it on opening)
    client = AsyncWrennClient(server["WRENN_API_KEY"], server["WRENN_BASE_URL"])
    async with client, client.capsule() as cap:
        result = await cap.commands.run("echo $0; /no/such/prog")
        assert result.stdout == "/bin/sh\n"
        assert result.stderr == "/bin/sh: 1: /no/such/prog: not found\n"
        assert result.exit_code == 127
        async with cap.pty("/bin/sh") as term:
            await term.write(b"exit 2\n")
            seen = [e async for e in term]
        assert seen[0].type is PtyEventType.started
        assert (seen[0].tag, seen[0].pid) == (term.tag, term.pid)
        assert seen[0].tag is not None
        assert [e.type for e in seen[1:]].count(PtyEventType.started) == 0
        assert seen[-1].exit_code == 2
        async with cap.pty("/bin/sh") as term:  # read otherwise first: not yielded late
            await term.write(b"echo hi; exit 0\n")
            assert b"hi" in b"".join([c async for c in term.output()])
            assert [e async for e in term] == []


def test_sync_terminal_events_begin_with_started(
    server: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WRENN_API_KEY", server["WRENN_API_KEY"])
    monkeypatch.setenv("WRENN_BASE_URL", server["WRENN_BASE_URL"])
    with Capsule(wait=True) as cap:
        assert cap.commands.run("echo $0").stdout == "/bin/sh\n"
        with cap.pty("/bin/sh") as term:
            term.write(b"echo out; exit 3\n")
            kinds = [e.type for e in term]
        assert kinds[0] == "started"
        assert kinds[-1] == "exit"
        assert "output" in kinds


def test_results_read_as_the_official_dataclasses(
    server: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The official CommandResult, CommandHandle, ProcessInfo, GitStatus, FileStatus,
    # GitBranch and the code runner's models are @dataclass: programs serialise them
    # with dataclasses.asdict (json.dumps(asdict(result))). Ours are attrs classes, and
    # asdict raised TypeError; a hand-built CommandHandle never equalled a returned one.
    import dataclasses
    import json

    from wrenn.code_runner.models import Execution, ExecutionError, Logs, Result

    monkeypatch.setenv("WRENN_API_KEY", server["WRENN_API_KEY"])
    monkeypatch.setenv("WRENN_BASE_URL", server["WRENN_BASE_URL"])
    with Capsule(wait=True) as cap:
        result = cap.commands.run("printf hi")
        assert dataclasses.is_dataclass(result)
        as_dict = dataclasses.asdict(result)
        assert as_dict == {
            "stdout": "hi",
            "stderr": "",
            "exit_code": 0,
            "duration_ms": result.duration_ms,
        }
        json.dumps(as_dict)  # only the official fields: no bytes
        assert dataclasses.replace(result, exit_code=3).exit_code == 3
        handle = cap.commands.run("sleep 30", background=True)
        assert dataclasses.asdict(handle) == {
            "pid": handle.pid,
            "tag": handle.tag,
            "capsule_id": cap.capsule_id,
        }
        assert handle == wrenn.CommandHandle(handle.pid, handle.tag, cap.capsule_id)
        [process] = [p for p in cap.commands.list() if p.tag == handle.tag]
        assert dataclasses.asdict(process)["pid"] == handle.pid
        cap.commands.kill(handle.pid)
        cap.git.init("/tmp/repo", initial_branch="main")
        cap.files.write("/tmp/repo/a.txt", "a")
        status = dataclasses.asdict(cap.git.status(cwd="/tmp/repo"))
        assert status["branch"] == "main"
        assert status["files"] == [
            {"path": "a.txt", "index_status": "?", "work_tree_status": "?", "renamed_from": None}
        ]
        assert [dataclasses.astuple(b) for b in cap.git.branches(cwd="/tmp/repo")] == []
    execution = Execution(
        results=[Result(text="2", is_main_result=True)],
        logs=Logs(stdout=["x\n"]),
        error=ExecutionError("ZeroDivisionError", "division by zero"),
    )
    dumped = dataclasses.asdict(execution)
    assert dumped["logs"] == {"stdout": ["x\n"], "stderr": []}
    assert dumped["results"][0]["text"] == "2"
    assert dumped["error"]["name"] == "ZeroDivisionError"
    assert [f.name for f in dataclasses.fields(Result)][-2:] == ["extra", "is_main_result"]


async def test_an_async_handle_equals_the_official_dataclass_form(server: dict[str, str]) -> None:
    import dataclasses

    client = AsyncWrennClient(server["WRENN_API_KEY"], server["WRENN_BASE_URL"])
    async with client, client.capsule() as cap:
        handle = await cap.commands.run("sleep 30", background=True)
        assert handle == wrenn.CommandHandle(handle.pid, handle.tag, cap.capsule_id)
        assert dataclasses.asdict(handle) == {
            "pid": handle.pid,
            "tag": handle.tag,
            "capsule_id": cap.capsule_id,
        }
        result = await cap.commands.run("echo x")
        assert dataclasses.asdict(result)["stdout"] == "x\n"
        await cap.commands.kill(handle.pid)


async def test_a_listing_of_depth_zero_is_one_level_as_official(server: dict[str, str]) -> None:
    # The official SDK sends depth=0 and servers take it as 1 (PROTOCOL §10); ours
    # refused it before any request (WrennValidationError "depth must be ... >= 1").
    client = AsyncWrennClient(server["WRENN_API_KEY"], server["WRENN_BASE_URL"])
    async with client, client.capsule() as cap:
        await cap.files.write("/tmp/d/sub/f.txt", "x")
        await cap.files.write("/tmp/d/g.txt", "y")
        flat = [e.path for e in await cap.files.list("/tmp/d", depth=0)]
        assert flat == [e.path for e in await cap.files.list("/tmp/d")]
        assert sorted(flat) == ["/tmp/d/g.txt", "/tmp/d/sub"]
        with pytest.raises(wrenn.WrennValidationError):
            await cap.files.list("/tmp/d", depth=-1)
