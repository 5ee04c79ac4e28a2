"""The server's UNIX stream to an agent (``wrenn_local._unix_stream``) against the race
that makes anyio 4.16's own UNIX stream log ``InvalidStateError`` on asyncio: a receive
cancelled in the loop iteration in which its socket becomes readable.

Real sockets; the error shows only in asyncio's log, which is read here."""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.abc
import pytest

from wrenn_local._unix_stream import UnixStream, connect_unix

Connect = Callable[[str], Awaitable[anyio.abc.ByteStream]]


async def cancelled_receives_racing_data(connect: Connect, path: Path, rounds: int) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    try:
        for _ in range(rounds):
            stream = await connect(str(path))
            peer, _ = listener.accept()
            with peer:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(stream.receive)
                    await anyio.wait_all_tasks_blocked()
                    peer.send(b"x")  # readable now: the reader callback is due...
                    await anyio.lowlevel.checkpoint()
                    tg.cancel_scope.cancel()  # ...and the receive is cancelled
                await anyio.sleep(0.001)  # the loop runs what was due
                await stream.aclose()
    finally:
        listener.close()


async def test_a_cancelled_receive_racing_data_logs_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        await cancelled_receives_racing_data(connect_unix, tmp_path / "s", 50)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


async def test_the_stream_reads_writes_and_closes(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    with listener:
        stream = await connect_unix(path)
        peer, _ = listener.accept()
        with peer:
            big = bytes(range(256)) * 8192  # 2 MiB: more than a socket buffer holds
            received = bytearray()

            async def drain() -> None:
                while len(received) < len(big):
                    received.extend(await anyio.to_thread.run_sync(peer.recv, 1 << 20))

            async with anyio.create_task_group() as tg:
                tg.start_soon(drain)
                await stream.send(big)
            assert bytes(received) == big
            peer.sendall(b"answer")
            assert await stream.receive() == b"answer"
            await stream.send_eof()
            assert peer.recv(10) == b""  # the peer sees our end of file
            peer.close()
            with pytest.raises(anyio.EndOfStream):
                await stream.receive()
        await stream.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await stream.receive()


async def test_closing_wakes_a_waiting_receive(tmp_path: Path) -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with right:
        stream = UnixStream(left)
        async with anyio.create_task_group() as tg:

            async def waiting() -> None:
                with pytest.raises(anyio.ClosedResourceError):
                    await stream.receive()

            tg.start_soon(waiting)
            await anyio.wait_all_tasks_blocked()
            await stream.aclose()


async def test_nobody_listening_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):  # noqa: PT011 - the server turns any into "unreachable"
        await connect_unix(str(tmp_path / "nobody"))


async def test_connects_beyond_a_full_backlog_are_retried_not_broken(tmp_path: Path) -> None:
    # Many streams at once (1,000 exec streams) overflow the agent's listen backlog; a
    # non-blocking UNIX connect then fails with EAGAIN and is *not* in progress, so it
    # must be tried again: taken as connected, its first send fails with ENOTCONN.
    path = str(tmp_path / "s")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    listener.setblocking(False)
    count = 8
    answered: list[bytes] = []

    async def client(i: int) -> None:
        stream = await connect_unix(path)
        await stream.send(b"%d" % i)
        answered.append(await stream.receive())
        await stream.aclose()

    async def answer(peer: UnixStream) -> None:
        await peer.send(b"ok " + await peer.receive())
        await peer.aclose()

    with listener:
        async with anyio.create_task_group() as tg:
            for i in range(count):
                tg.start_soon(client, i)
            await anyio.sleep(0.05)  # every client has tried: the backlog is full
            served = 0
            while served < count:
                try:
                    peer, _ = listener.accept()
                except BlockingIOError:
                    await anyio.wait_readable(listener)
                    continue
                tg.start_soon(answer, UnixStream(peer))
                served += 1
    assert sorted(answered) == sorted(b"ok %d" % i for i in range(count))
