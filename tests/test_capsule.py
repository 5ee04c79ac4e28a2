"""Capsule scopes end to end against wrenn_local: commands, files, lifecycle, cancellation."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import wrenn_local
from tests.sync_facade import Api
from wrenn import (
    AsyncPtySession,
    AsyncWrennClient,
    CommandExitError,
    StreamExit,
    StreamStdout,
    WrennError,
    WrennNotFoundError,
    WrennTimeoutError,
    WrennValidationError,
)


async def live(client: AsyncWrennClient) -> list[str]:
    return [c.id for c in await client.capsules.list() if c.status != "stopping"]


async def test_scope_runs_commands_and_destroys_on_exit(client: AsyncWrennClient) -> None:
    async with client.capsule(metadata={"t": "scope"}) as cap:
        assert cap.info.status == "running"
        result = await cap.commands.run("echo $((6*7)); echo warn >&2")
        assert (result.stdout, result.stderr, result.exit_code) == ("42\n", "warn\n", 0)
        literal = await cap.commands.run("echo", args=["$HOME", "a b"])
        assert literal.stdout == "$HOME a b\n"
        with pytest.raises(CommandExitError) as info:
            await cap.commands.run("exit 3", check=True)
        assert info.value.result.exit_code == 3
        seen: list[str] = []
        streamed = await cap.commands.run(
            "for i in 1 2 3; do echo $i; sleep 0.05; done", on_stdout=seen.append
        )
        assert "".join(seen) == streamed.stdout == "1\n2\n3\n"
        async with cap.commands.stream("echo a; echo b") as run:
            events = [e async for e in run]
        assert "".join(e.data for e in events if isinstance(e, StreamStdout)) == "a\nb\n"
        assert events[-1] == StreamExit(0)
        handle = await cap.commands.run("sleep 0.2; exit 5", background=True, tag="bg")
        assert handle.tag == "bg"
        assert await handle.wait() == 5
        sleeper = await cap.commands.run("sleep 60", background=True)
        assert sleeper.pid in [p.pid for p in await cap.commands.list()]
        await sleeper.kill()
        capsule_id = cap.capsule_id
    assert capsule_id not in await live(client)


async def test_streamed_run_timeout_kills_the_command(client: AsyncWrennClient) -> None:
    async with client.capsule() as cap:
        with pytest.raises(WrennTimeoutError):
            await cap.commands.run("echo start; sleep 30", timeout=1, on_stdout=lambda _: None)
        with anyio.fail_after(5):
            while any(p.args and "sleep 30" in " ".join(p.args) for p in await cap.commands.list()):
                await anyio.sleep(0.05)


async def test_files(client: AsyncWrennClient) -> None:
    async with client.capsule() as cap:
        await cap.files.write("notes/a.txt", "héllo")
        assert await cap.files.read("notes/a.txt") == "héllo"
        assert await cap.files.read("notes/a.txt", format="bytes") == "héllo".encode()
        assert [e.name for e in await cap.files.list("notes")] == ["a.txt"]
        assert await cap.files.exists("notes/a.txt")
        assert await cap.files.exists("notes")
        assert not await cap.files.exists("notes/missing")
        first = await cap.files.make_dir("/tmp/x/y")
        again = await cap.files.make_dir("/tmp/x/y")
        assert first.path == again.path
        await cap.files.remove("notes")
        assert not await cap.files.exists("notes/a.txt")


async def test_lifecycle_detach_and_connect(client: AsyncWrennClient) -> None:
    async with client.capsule() as cap:
        await cap.pause(wait=True)
        assert cap.info.status == "paused"
        await cap.resume(wait=True)
        assert await cap.is_running()
        cap.detach()
        kept = cap.capsule_id
        assert cap.get_url(8080).startswith(f"http://8080-{kept}.")
    assert kept in await live(client)
    again = await client.connect(kept)
    await again.pause(wait=True)
    resumed = await client.connect(kept)  # a paused capsule is resumed on connect
    assert resumed.info.status == "running"
    await resumed.destroy(wait=True)
    assert kept not in await live(client)


async def test_an_error_in_the_block_still_destroys(client: AsyncWrennClient) -> None:
    with pytest.raises(KeyError):
        async with client.capsule() as cap:
            raise KeyError("user bug")
    assert cap.capsule_id not in await live(client)


@pytest.mark.async_only  # cancels async scopes
@pytest.mark.parametrize("delay", [0.0, 0.003, 0.01, 0.05, 0.2])
async def test_cancellation_while_creating_leaves_no_capsule(
    client: AsyncWrennClient, delay: float
) -> None:
    with anyio.move_on_after(delay):
        async with client.capsule() as cap:
            await cap.commands.run("sleep 30")
    # anything created is destroyed; give the server a moment to finish the destroy
    with anyio.move_on_after(10):
        while await live(client):
            await anyio.sleep(0.05)
    left = [(c.id, c.status) for c in await client.capsules.list()]
    assert not [c for c in left if c[1] != "stopping"], left


@pytest.mark.async_only  # cancels async scopes
async def test_cancellation_mid_stream_kills_the_run(client: AsyncWrennClient) -> None:
    async with client.capsule() as cap:
        with anyio.move_on_after(0.5):
            await cap.commands.run("echo go; sleep 30", on_stdout=lambda _: None)
        with anyio.fail_after(5):
            while [p for p in await cap.commands.list() if "sleep 30" in " ".join(p.args)]:
                await anyio.sleep(0.05)


async def test_fan_out_in_one_task_group(client: AsyncWrennClient) -> None:
    results: dict[int, str] = {}

    async def job(i: int) -> None:
        async with client.capsule() as cap:
            results[i] = (await cap.commands.run(f"echo {i}")).stdout.strip()

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(job, i)
    assert results == {i: str(i) for i in range(6)}
    assert await live(client) == []


async def test_waiting_reports_failed_capsules(client: AsyncWrennClient) -> None:
    async with client.capsule() as cap:
        await client.capsules.destroy(cap.capsule_id)
        with pytest.raises(WrennError):
            await cap.wait_ready(timeout=5)


async def _until(term: AsyncPtySession, needle: bytes) -> bytes:
    seen = b""
    with anyio.fail_after(10):
        async for data in term.output():
            seen += data
            if needle in seen:
                return seen
    raise AssertionError(f"{needle!r} never came; got {seen!r}")


async def test_pty_session(client: AsyncWrennClient) -> None:
    from wrenn import WrennNotFoundError

    async with client.capsule() as cap:
        async with cap.pty(cols=100, rows=30, envs={"PS1": "$ "}) as term:
            assert term.tag is not None
            assert term.tag.startswith("pty-")
            assert term.pid is not None
            await term.write("echo $((7*6))\n")
            await _until(term, b"42")
            await term.resize(120, 40)
            await term.write(b"stty size\n")
            await _until(term, b"40 120")
            tag = term.tag
            term.detach()  # keep the shell for the reattach below
        async with cap.pty_connect(tag) as again:  # the shell outlived the first socket
            await again.write("exit 7\n")
            assert await again.wait() == 7
        async with cap.pty("/bin/sh") as doomed:
            await doomed.kill()
            assert await doomed.wait() == -1
        with pytest.raises(WrennNotFoundError):
            async with cap.pty_connect(tag) as gone:
                await gone.wait()


BAD_SIZES: list[tuple[object, object]] = [
    (70000, 24),
    (80, 65536),
    (0, 24),
    (80, -1),
    (True, 24),
    (80, False),
    (1.5, 24),
    ("80", 24),
]


async def test_terminal_sizes_outside_1_to_65535_are_refused(client: AsyncWrennClient) -> None:
    # before: pty(cols=70000) failed as "WrennAgentError: error", and resize(65536, 10)
    # returned normally, then the server ended the session (close 1011)
    async with client.capsule() as cap:
        for cols, rows in BAD_SIZES:
            with pytest.raises(WrennValidationError, match="cols and rows must be 1 to 65535"):
                async with cap.pty("/bin/sh", cols=cols, rows=rows):  # type: ignore[arg-type]
                    raise AssertionError("started")
        async with cap.pty("/bin/sh", cols=65535, rows=1, envs={"PS1": ""}) as term:
            for cols, rows in BAD_SIZES:
                with pytest.raises(WrennValidationError, match="cols and rows must be 1 to 65535"):
                    await term.resize(cols, rows)  # type: ignore[arg-type]
            await term.write("stty size\n")
            await _until(term, b"1 65535")
            await term.resize(65535, 65535)
            await term.write("stty size; exit 4\n")
            await _until(term, b"65535 65535")
            assert await term.wait() == 4  # the session outlived every refused size


async def test_terminal_write_takes_str_or_bytes_only(client: AsyncWrennClient) -> None:
    # before: write(5) sent bytes(5), five NUL bytes, into the terminal
    import array

    async with client.capsule() as cap, cap.pty("/bin/sh", envs={"PS1": ""}) as term:
        for bad in (5, None, 1.5, True, ["echo"]):
            with pytest.raises(WrennValidationError, match="str or bytes"):
                await term.write(bad)  # type: ignore[arg-type]
        await term.write(bytearray(b"echo a"))
        await term.write(memoryview(b"xxbyy")[2:3])
        await term.write(memoryview(array.array("B", b"c\n")))
        await _until(term, b"abc")
        await term.write("exit 5\n")
        assert await term.wait() == 5


class _AsyncItems:
    """An async iterator over some items that needs no closing."""

    def __init__(self, *items: object) -> None:
        self._items = iter(items)

    def __aiter__(self) -> _AsyncItems:
        return self

    async def __anext__(self) -> object:
        await anyio.lowlevel.checkpoint()
        try:
            return next(self._items)
        except StopIteration:
            raise StopAsyncIteration from None


async def test_writes_from_text_or_non_bytes_chunks_say_what_to_pass(
    client: AsyncWrennClient, api: Api, tmp_path: Path
) -> None:
    # before: the async API raised a raw TypeError for each (the sync one already said
    # "upload chunks must be bytes, not ..."). Text chunks are taken as UTF-8, as the
    # official SDK's upload_stream takes them.
    async def generated(*items: object) -> AsyncIterator[object]:
        for item in items:
            yield item

    # (the sync facade hands the sync API a plain iterator over an async one, which it
    # cannot close: an async generator left open there would warn when collected)
    chunks = generated if api == "async" else _AsyncItems

    text_file = tmp_path / "t.txt"
    text_file.write_text("text")
    async with client.capsule() as cap:
        with pytest.raises(WrennValidationError, match="binary mode"):
            await cap.files.write("a.txt", io.StringIO("t"))  # type: ignore[arg-type]
        with text_file.open() as fh, pytest.raises(WrennValidationError, match="binary mode"):
            await cap.files.write("a.txt", fh)  # type: ignore[arg-type]
        for items, kind in (
            ((5,), "int"),
            ((b"ok", None), "NoneType"),
            (("ok", 1.5), "float"),
        ):
            with pytest.raises(
                WrennValidationError, match=f"upload chunks must be bytes or str, not {kind}"
            ):
                await cap.files.write("a.txt", chunks(*items))  # type: ignore[arg-type]
        assert not await cap.files.exists("a.txt")  # nothing half-written is kept
        await cap.files.write("a.txt", chunks(b"o", bytearray(b"k"), memoryview(b"!")))  # type: ignore[arg-type]
        assert await cap.files.read("a.txt") == "ok!"
        await cap.files.upload_stream("t.txt", chunks(b"h", "\u00e9", "", "llo"))  # type: ignore[arg-type]
        assert await cap.files.read("t.txt") == "h\u00e9llo"


async def test_network_takes_a_real_bool(client: AsyncWrennClient) -> None:
    # before: network="no" was sent as bool("no"), a capsule WITH network
    odd: list[object] = ["no", "false", 0, 1, []]
    for bad in odd:
        with pytest.raises(WrennValidationError, match="network must be True, False or None"):
            async with client.capsule(network=bad):  # type: ignore[arg-type]
                raise AssertionError("created")
        with pytest.raises(WrennValidationError, match="network must be True, False or None"):
            await client.capsules.create(network=bad)  # type: ignore[arg-type]
    assert await live(client) == []  # refused before any request


async def test_a_process_is_selected_by_a_pid_or_a_tag_only(client: AsyncWrennClient) -> None:
    # before: kill(None), kill(True), kill(1.5) went out as /processes/None, /True, /1.5
    odd: list[Any] = [None, True, False, 1.5, 0, -1, "", b"tag", ["t"]]
    match = "pid .* or its tag"
    async with client.capsule() as cap:
        cid = cap.capsule_id
        for bad in odd:
            with pytest.raises(WrennValidationError, match=match):
                await cap.commands.kill(bad)
            with pytest.raises(WrennValidationError, match=match):
                cap.commands.connect(bad)
            with pytest.raises(WrennValidationError, match=match):
                await client.processes.kill(cid, bad)
            with pytest.raises(WrennValidationError, match=match):
                await client.processes.terminate(cid, bad)
            with pytest.raises(WrennValidationError, match=match):
                client.processes.attach(cid, bad)
        await cap.commands.run("sleep 100", background=True, tag="sleeper")
        await cap.commands.kill("sleeper")  # a tag still selects
        with pytest.raises(WrennNotFoundError):
            await cap.commands.kill(999_999)  # and a pid goes to the server


async def test_map_runs_each_item_in_its_own_capsule(client: AsyncWrennClient) -> None:
    from wrenn import AsyncCapsule

    peak = 0
    running = 0
    progress: list[tuple[int, int]] = []

    async def square(cap: AsyncCapsule, n: int) -> int:
        nonlocal peak, running
        running += 1
        peak = max(peak, running)
        try:
            out = await cap.commands.run(f"echo $(({n}*{n})); hostname")
            return int(out.stdout.split()[0])
        finally:
            running -= 1

    results = await client.map(
        square,
        range(8),
        concurrency=3,
        creation_rate=50,
        on_progress=lambda done, total: progress.append((done, total)),
    )
    assert results == [n * n for n in range(8)]
    assert peak <= 3
    assert progress[-1] == (8, 8)
    assert await live(client) == []


async def test_map_failures(client: AsyncWrennClient) -> None:
    from wrenn import AsyncCapsule, WrennFanOutError

    async def picky(cap: AsyncCapsule, n: int) -> int:
        if n % 3 == 0:
            raise ValueError(f"no {n}")
        return n

    with pytest.raises(WrennFanOutError) as info:
        await client.map(picky, range(5), concurrency=5)
    assert [str(e) for e in info.value.exceptions] == ["no 0", "no 3"]
    assert isinstance(info.value, ExceptionGroup)
    mixed = await client.map(picky, range(4), return_exceptions=True)
    assert [type(r).__name__ for r in mixed] == ["ValueError", "int", "int", "ValueError"]
    assert await live(client) == []


@pytest.mark.async_only  # cancels async scopes
async def test_cancelling_map_destroys_every_capsule(client: AsyncWrennClient) -> None:
    from wrenn import AsyncCapsule

    async def slow(cap: AsyncCapsule, n: int) -> None:
        await cap.commands.run("sleep 30")

    with anyio.move_on_after(1.5):
        await client.map(slow, range(6), concurrency=6)
    with anyio.fail_after(10):
        while await live(client):
            await anyio.sleep(0.05)


async def test_streaming_files(client: AsyncWrennClient) -> None:
    import io
    import os

    from wrenn import WrennNotFoundError

    async with client.capsule() as cap:
        big = os.urandom(9 * 1024 * 1024)  # over the one-request threshold: streamed
        await cap.files.write("big.bin", big)
        await cap.files.write("from-file.bin", io.BytesIO(b"abc" * 100_000))

        async def generated() -> AsyncIterator[bytes]:
            for i in range(5):
                yield f"part {i}\n".encode()

        await cap.files.write("gen.txt", generated())
        got = bytearray()
        async with cap.files.read_stream("big.bin", chunk_size=65536) as chunks:
            async for chunk in chunks:
                got += chunk
        assert bytes(got) == big
        assert await cap.files.read("from-file.bin", format="bytes") == b"abc" * 100_000
        assert await cap.files.read("gen.txt") == "".join(f"part {i}\n" for i in range(5))
        async with cap.files.read_stream("big.bin") as chunks:
            async for _ in chunks:
                break  # leaving early is fine
        with pytest.raises(WrennNotFoundError):
            async with cap.files.read_stream("nope.bin"):
                pass
        await cap.files.write_many({f"many/{i}.txt": str(i) for i in range(12)}, concurrency=4)
        assert len(await cap.files.list("many")) == 12


async def test_pool_reuses_warm_capsules(client: AsyncWrennClient) -> None:
    from wrenn import AsyncCapsule

    async def where(cap: AsyncCapsule, n: int) -> str:
        await cap.commands.run(f"echo {n} >> ~/log")
        return cap.capsule_id

    async with client.pool(2) as pool:
        used = await pool.map(where, range(10))
        assert set(used) == {c.capsule_id for c in pool.capsules}
        lines = [(await c.files.read("log")).split() for c in pool.capsules]
        assert sorted(int(x) for part in lines for x in part) == list(range(10))
    assert await live(client) == []


async def test_keepalive_beats_the_ttl(client: AsyncWrennClient) -> None:
    async with client.capsule(timeout=1, keepalive=0.3) as cap:
        await anyio.sleep(2.5)  # well past the 1 s TTL without any call of ours
        assert await cap.is_running()
    async with client.capsule(timeout=1) as cap:
        with anyio.fail_after(10):
            while (await cap.get_info()).status != "paused":
                await anyio.sleep(0.1)


@pytest.mark.async_only  # the async class's own constructors
async def test_official_constructors(
    client: AsyncWrennClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wrenn import AsyncCapsule, StreamStdoutEvent

    monkeypatch.setenv("WRENN_API_KEY", client.config.api_key.reveal())  # type: ignore[union-attr]
    monkeypatch.setenv("WRENN_BASE_URL", client.base_url)
    async with await AsyncCapsule.create(wait=True) as cap:
        assert (await cap.commands.run("echo official")).stdout == "official\n"
        assert cap.capsule_id in [c.id for c in await AsyncCapsule.list()]
        again = await AsyncCapsule.connect(cap.capsule_id)
        await cap.files.write("x", b"1")
        assert await again.files.read_bytes("x") == b"1"
        await again.aclose()
        assert StreamStdoutEvent is StreamStdout
    assert cap.capsule_id not in await live(client)


async def test_fan_out_over_64_capsules(client: AsyncWrennClient) -> None:
    from wrenn import AsyncCapsule

    async def checksum(cap: AsyncCapsule, n: int) -> tuple[str, str]:
        result = await cap.commands.run(
            f"seq 1 {1000 + n} | sha256sum | cut -c1-12; hostname", check=True
        )
        digest, host = result.stdout.split()
        return digest, host

    results = await client.map(checksum, range(64), concurrency=32)
    assert len({host for _, host in results}) == 64  # 64 different capsules
    assert len({digest for digest, _ in results}) == 64  # each did its own work
    with anyio.fail_after(20):
        while await live(client):
            await anyio.sleep(0.1)


async def test_map_retries_when_the_server_is_full() -> None:
    from wrenn import AsyncCapsule, WrennFanOutError, WrennUnavailableError
    from wrenn_local import ServerOptions

    full_at_two = ServerOptions(
        min_timeout_sec=1, reaper_interval=0.2, sample_interval=0.2, max_capsules=2
    )
    async with (
        wrenn_local.serve(options=full_at_two) as server,
        AsyncWrennClient(api_key=server.api_key, base_url=server.base_url) as c,
    ):

        async def job(cap: AsyncCapsule, n: int) -> int:
            await cap.commands.run("sleep 0.3")
            return n

        # 5 jobs at once against room for 2: the rest get 503 and retry until served
        assert await c.map(job, range(5), concurrency=5, retries=30) == list(range(5))
        with pytest.raises(WrennFanOutError) as info:
            await c.map(job, range(5), concurrency=5, retries=0)
        assert any(isinstance(e, WrennUnavailableError) for e in info.value.exceptions)


async def test_snapshot_from_a_capsule(client: AsyncWrennClient) -> None:
    async with client.capsule() as cap:
        await cap.files.write("state.txt", "saved")
        pending = await cap.create_snapshot("from-cap")
        template = await client.snapshots.wait(pending, timeout=30)
        assert template.name == "from-cap"
    async with client.capsule(template="from-cap") as clone:
        assert await clone.files.read("state.txt") == "saved"
