"""The synchronous API, end to end, with the server in its own process."""

from __future__ import annotations

import _thread
import asyncio
import inspect
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

import pytest

import wrenn
import wrenn.code_runner
from tests.localserver import server_process
from wrenn import (
    AsyncCapsule,
    AsyncCapsuleFiles,
    AsyncCommands,
    AsyncPtySession,
    AsyncWrennClient,
    Capsule,
    StreamExit,
    StreamStdout,
    WrennClient,
)
from wrenn._resources.accounts import AsyncAPIKeys, AsyncAuth
from wrenn._resources.capsules import AsyncCapsules
from wrenn._resources.events import AsyncEvents
from wrenn._resources.files import AsyncFiles
from wrenn._resources.hosts import AsyncHosts
from wrenn._resources.processes import AsyncProcesses
from wrenn._resources.snapshots import AsyncSnapshots
from wrenn._sync import resources as _sync_resources

Backend = Literal["asyncio", "trio"]
BACKENDS: list[Backend] = ["asyncio", "trio"]


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, str]]:
    with server_process() as env:
        yield env


def client_for(server: dict[str, str], backend: Backend = "asyncio") -> WrennClient:
    return WrennClient(
        api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"], backend=backend
    )


def live(server: dict[str, str]) -> list[str]:
    """Capsules that are neither stopped nor being stopped (destroy is asynchronous)."""
    with client_for(server) as client:
        found = client._runner.call(client._async.capsules.list)
    return [c.id for c in found if c.status != "stopping"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_same_scenarios_through_the_sync_api(server: dict[str, str], backend: Backend) -> None:
    with client_for(server, backend) as client, client.capsule() as cap:
        assert cap.commands.run("echo $((2+3))").stdout == "5\n"
        handle = cap.commands.run("sleep 0.2; exit 4", background=True)
        assert handle.wait() == 4
        events = list(cap.commands.stream("seq 1 500"))  # plain iteration opens and closes
        assert events[-1] == StreamExit(0)
        out = "".join(e.data for e in events if isinstance(e, StreamStdout))
        assert out.split() == [str(i) for i in range(1, 501)]
        with cap.commands.stream("echo a; exit 2") as run:
            assert [type(e).__name__ for e in run][-1] == "StreamExit"
        assert run.exit_code == 2
        cap.files.write("f.txt", "sync")
        assert cap.files.read("f.txt") == "sync"
        assert cap.files.exists("f.txt")
        assert [e.name for e in cap.files.list()] == ["f.txt"]
        with cap.files.read_stream("f.txt") as chunks:
            assert b"".join(chunks) == b"sync"
        with cap.pty("/bin/sh") as term:
            term.write("echo pty-ok; exit 3\n")
            seen = b"".join(term.output())
            assert b"pty-ok" in seen
            assert term.exit_code == 3
        cap.pause(wait=True)
        cap.resume(wait=True)
        assert cap.is_running()
        kept = cap.capsule_id
    assert kept not in live(server)


def test_official_sync_forms(server: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WRENN_API_KEY", server["WRENN_API_KEY"])
    monkeypatch.setenv("WRENN_BASE_URL", server["WRENN_BASE_URL"])
    with Capsule(wait=True) as cap:
        assert cap.commands.run("echo official").stdout == "official\n"
        other = Capsule.connect(cap.capsule_id)
        other.detach()  # a connected capsule is left running when its block ends
        with other:
            assert other.files.exists("/tmp")
        capsule_id = cap.capsule_id
    assert capsule_id not in live(server)


def test_many_threads_share_one_client(server: dict[str, str]) -> None:
    with client_for(server) as client, client.capsule() as cap:
        results: dict[int, str] = {}
        errors: list[BaseException] = []

        def worker(i: int) -> None:
            try:
                results[i] = cap.commands.run(f"echo {i}").stdout.strip()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert results == {i: str(i) for i in range(12)}


def test_ctrl_c_cancels_the_call_and_the_client_stays_usable(server: dict[str, str]) -> None:
    with client_for(server) as client, client.capsule() as cap:
        timer = threading.Timer(0.5, _thread.interrupt_main)
        timer.start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            cap.commands.run("echo go; sleep 30", on_stdout=lambda _: None)
        assert time.monotonic() - started < 10
        # the streamed command was killed when its call was cancelled
        deadline = time.monotonic() + 10
        while any("sleep 30" in " ".join(p.args) for p in cap.commands.list()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert cap.commands.run("echo still fine").stdout == "still fine\n"


def test_usable_from_inside_a_running_event_loop(server: dict[str, str]) -> None:
    async def notebook_cell() -> str:
        # Jupyter runs cells inside an asyncio loop; the sync client must not care.
        with client_for(server) as client, client.capsule() as cap:
            return cap.commands.run("echo from-a-loop").stdout

    assert asyncio.run(notebook_cell()) == "from-a-loop\n"


def test_sync_map(server: dict[str, str]) -> None:
    with client_for(server) as client:

        def job(cap: Capsule, n: int) -> int:
            return int(cap.commands.run(f"echo $(({n}*{n}))").stdout)

        assert client.map(job, range(5), concurrency=3) == [0, 1, 4, 9, 16]


def _public(cls: type) -> dict[str, inspect.Signature]:
    """Public methods (classmethods included) and their signatures."""
    out = {}
    for name in vars(cls):
        value = getattr(cls, name)
        if name.startswith("_") or isinstance(value, property) or not callable(value):
            continue
        if isinstance(inspect.getattr_static(cls, name), property):
            continue
        out[name] = inspect.signature(value)
    return out


# Names the sync surface spells differently, or that only make sense in async code.
RENAMED = {"aclose": "close"}
ASYNC_ONLY = {"take_ready"}  # the batching hook the sync iterators use


@pytest.mark.parametrize(
    ("sync_cls", "async_cls"),
    [
        (WrennClient, AsyncWrennClient),
        (wrenn.Capsule, AsyncCapsule),
        (wrenn.Commands, AsyncCommands),
        (wrenn.SyncCommandHandle, wrenn.CommandHandle),
        (wrenn.ExecStream, wrenn.AsyncExecStream),
        (wrenn.CapsuleFiles, AsyncCapsuleFiles),
        (wrenn.PtySession, AsyncPtySession),
        (wrenn.Git, wrenn.AsyncGit),
        (wrenn.CapsulePool, wrenn.AsyncCapsulePool),
        (wrenn.CodeRunner, wrenn.AsyncCodeRunner),
        (wrenn.CodeRun, wrenn.AsyncCodeRun),
        (_sync_resources.Capsules, AsyncCapsules),
        (_sync_resources.Snapshots, AsyncSnapshots),
        (_sync_resources.Events, AsyncEvents),
        (_sync_resources.Auth, AsyncAuth),
        (_sync_resources.APIKeys, AsyncAPIKeys),
        (_sync_resources.Hosts, AsyncHosts),
        (_sync_resources.Processes, AsyncProcesses),
        (_sync_resources.Files, AsyncFiles),
    ],
    ids=lambda cls: cls.__name__,
)
def test_sync_and_async_surfaces_match(sync_cls: type, async_cls: type) -> None:
    sync_methods = _public(sync_cls)
    async_methods = {RENAMED.get(n, n): sig for n, sig in _public(async_cls).items()}
    missing = set(async_methods) - set(sync_methods) - ASYNC_ONLY
    assert missing == set(), f"{sync_cls.__name__} lacks {sorted(missing)}"
    for name in set(async_methods) & set(sync_methods):
        a = [p for p in async_methods[name].parameters if p not in ("self", "cls")]
        s = [p for p in sync_methods[name].parameters if p not in ("self", "cls")]
        assert [p for p in s if p != "backend"] == a, name


# The classes users construct themselves: the sync constructor takes exactly what its
# async counterpart does (the client's ``__init__``; the capsule's official ``create``),
# plus ``backend``. Other sync classes are handed out by the SDK, never constructed.
@pytest.mark.parametrize(
    ("sync_ctor", "async_ctor"),
    [
        (WrennClient.__init__, AsyncWrennClient.__init__),
        (wrenn.Capsule.__init__, AsyncCapsule.create),
        (wrenn.Capsule.create, AsyncCapsule.create),
        (wrenn.Capsule.connect, AsyncCapsule.connect),
        (wrenn.Capsule.list, AsyncCapsule.list),
        (wrenn.code_runner.Capsule.__init__, wrenn.code_runner.AsyncCapsule.create),
    ],
    ids=lambda fn: fn.__qualname__,
)
def test_constructors_take_the_same_arguments(sync_ctor: Any, async_ctor: Any) -> None:
    def shape(fn: Any) -> list[tuple[str, Any, Any]]:
        return [
            (p.name, p.kind, p.default)
            for p in inspect.signature(fn).parameters.values()
            if p.name not in ("self", "cls", "backend")
        ]

    assert shape(sync_ctor) == shape(async_ctor)


def test_every_async_resource_has_its_sync_facet() -> None:
    client = WrennClient(api_key="k" * 20, base_url="http://127.0.0.1:9")
    try:
        for name, value in vars(client._async).items():
            if name.startswith("_") or not type(value).__name__.startswith("Async"):
                continue
            facet = getattr(client, name)
            assert type(facet).__name__ == type(value).__name__.removeprefix("Async"), name
            assert facet._async is value
    finally:
        client.close()


def test_git_through_the_sync_api(server: dict[str, str]) -> None:
    with client_for(server) as client, client.capsule() as cap:
        cap.git.init("/tmp/remote.git", bare=True, initial_branch="main")
        cap.git.configure_user("Ada", "ada@example.com")
        cap.git.clone("file:///tmp/remote.git", "work")
        cap.files.write("work/a.txt", "x")
        cap.git.add(cwd="work")
        cap.git.commit("first", cwd="work")
        cap.git.push("origin", "main", set_upstream=True, cwd="work")
        status = cap.git.status(cwd="work")
        assert status.is_clean
        assert status.upstream == "origin/main"
        assert [b.name for b in cap.git.branches(cwd="work")] == ["main"]


def test_sync_pool_and_streamed_uploads(server: dict[str, str]) -> None:
    with client_for(server, "trio") as client:
        with client.pool(2) as pool:

            def where(cap: Capsule, n: int) -> str:
                cap.commands.run(f"echo {n} >> ~/log")
                return cap.capsule_id

            used = pool.map(where, range(6))
            assert set(used) == {c.capsule_id for c in pool.capsules}
            with pool.acquire() as cap:
                cap.files.write("gen.bin", (bytes([i]) * 1000 for i in range(50)))
                assert cap.files.read_bytes("gen.bin") == b"".join(
                    bytes([i]) * 1000 for i in range(50)
                )
                with pytest.raises(wrenn.WrennValidationError, match="or str, not int"):
                    cap.files.upload_stream("bad.bin", iter([b"ok", 5]))  # type: ignore[arg-type]
                assert not cap.files.exists("bad.bin")  # bad input loses nothing, writes nothing
                with pytest.raises(wrenn.WrennValidationError, match="not int"):
                    cap.files.write("bad.bin", 42)  # type: ignore[arg-type]
            kept = [c.capsule_id for c in pool.capsules]
        assert not set(kept) & set(live(server))


def test_closing_the_client_ends_scopes_other_threads_hold(server: dict[str, str]) -> None:
    client = client_for(server)
    inside = threading.Event()
    release = threading.Event()
    seen: list[str] = []

    def holder() -> None:
        with client.capsule() as cap:
            seen.append(cap.capsule_id)
            inside.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    assert inside.wait(60)
    client.close()  # the capsule scope is closed (capsule destroyed) before the portal stops
    assert seen[0] not in live(server)
    release.set()
    thread.join(10)
    assert not thread.is_alive()
    with pytest.raises(wrenn.WrennError, match="closed"):
        client.capsules.list()


def test_sync_event_stream(server: dict[str, str]) -> None:
    with client_for(server) as client, client.events.stream() as events:
        first = next(events)
        assert first.event == "connected"
        created = client.capsules.create()
        for event in events:
            if event.event == "capsule.create":
                break
        client.capsules.destroy(created.id)


def test_class_or_instance_methods_match() -> None:
    """``destroy``/``pause``/``resume``/``get_info``: both forms, sync and async alike."""
    for name in ("destroy", "pause", "resume", "get_info"):
        sync_dual = inspect.getattr_static(wrenn.Capsule, name)
        async_dual = inspect.getattr_static(AsyncCapsule, name)
        for form in ("instance_function", "class_function"):
            s = [p for p in inspect.signature(getattr(sync_dual, form)).parameters if p != "self"]
            a = [p for p in inspect.signature(getattr(async_dual, form)).parameters if p != "self"]
            assert [p for p in s if p != "backend"] == a, (name, form)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_in_a_cell_interrupts_the_kernel_and_keeps_its_state(
    server: dict[str, str], backend: Backend
) -> None:
    # Ctrl-C while a sync run_code waits: the KeyboardInterrupt reaches the caller, the
    # kernel is interrupted (the endless cell stops), and the kernel's state survives.
    with client_for(server, backend) as client, client.capsule(template="code-runner-beta") as cap:
        cap.run_code("n = 1")
        timer = threading.Timer(1.0, _thread.interrupt_main)
        timer.start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            cap.run_code("import time\nwhile True: time.sleep(0.05)", timeout=120)
        timer.join()
        assert time.monotonic() - started < 15  # the interrupt's bounded settle, not 120 s
        # the loop was interrupted: the next cell runs at once, with the state kept
        assert cap.run_code("n + 1", timeout=20).text == "2"
