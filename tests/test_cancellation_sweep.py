"""Cancel every kind of operation at many points; afterwards the client holds no task,
socket or file descriptor, and the server holds no capsule of ours.

The server runs in its own process here, so the descriptors counted are the client's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import anyio
import pytest

from tests.descriptors import open_fds
from tests.localserver import server_process
from wrenn import AsyncCapsule, AsyncWrennClient

Operation = Callable[[AsyncWrennClient], Awaitable[None]]


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, str]]:
    with server_process() as env:
        yield env


async def op_create(client: AsyncWrennClient) -> None:
    async with client.capsule():
        await anyio.sleep(5)


async def op_run(client: AsyncWrennClient) -> None:
    async with client.capsule() as cap:
        await cap.commands.run("sleep 5")


async def op_streamed_run(client: AsyncWrennClient) -> None:
    async with client.capsule() as cap:
        await cap.commands.run("while true; do echo x; sleep 0.01; done", on_stdout=print)


async def op_stream(client: AsyncWrennClient) -> None:
    async with client.capsule() as cap, cap.commands.stream("yes | head -c 50000000") as run:
        async for _ in run:
            await anyio.sleep(0.001)  # a slow consumer: backpressure is in play


async def op_pty(client: AsyncWrennClient) -> None:
    async with client.capsule() as cap, cap.pty() as term:
        await term.write(b"yes\n")
        async for _ in term:
            pass


async def op_upload(client: AsyncWrennClient) -> None:
    async with client.capsule() as cap:

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(400):
                yield b"z" * 262144
                await anyio.sleep(0.001)

        await cap.files.write("big", chunks())


async def op_download(client: AsyncWrennClient) -> None:
    async with client.capsule() as cap:
        await cap.commands.run("head -c 50000000 /dev/zero > big")
        async with cap.files.read_stream("big") as chunks:
            async for _ in chunks:
                await anyio.sleep(0.001)


async def op_map(client: AsyncWrennClient) -> None:
    async def job(cap: AsyncCapsule, n: int) -> None:
        await cap.commands.run("sleep 5")

    await client.map(job, range(4), concurrency=4)


OPERATIONS = [op_create, op_run, op_streamed_run, op_stream, op_pty, op_upload, op_download, op_map]


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda f: f.__name__[3:])
async def test_cancel_anywhere(server: dict[str, str], operation: Operation) -> None:
    baseline_fds = open_fds()
    baseline_tasks = len(anyio.get_running_tasks())
    client = AsyncWrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"])
    async with client:
        for delay in (0.0, 0.02, 0.15, 0.6, 1.2):
            with anyio.move_on_after(delay):
                await operation(client)
        with anyio.fail_after(20):  # the server finishes the destroys it was asked for
            while [c for c in await client.capsules.list() if c.status != "stopping"]:
                await anyio.sleep(0.1)
    await anyio.sleep(0.1)
    assert len(anyio.get_running_tasks()) <= baseline_tasks
    assert open_fds() <= baseline_fds


async def test_cancel_cells_anywhere(server: dict[str, str]) -> None:
    """Cancel cells (and the streaming of one) at many points; the kernel stays usable,
    and leaving the scope closes the kernel connection it held."""
    baseline_fds = open_fds()
    baseline_tasks = len(anyio.get_running_tasks())
    client = AsyncWrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"])
    async with client, client.capsule(template="code-runner-beta") as cap:
        await cap.run_code("count = 0")
        for delay in (0.0, 0.005, 0.02, 0.1, 0.4):
            with anyio.move_on_after(delay):
                await cap.run_code("import time\ncount += 1\ntime.sleep(30)")
            with anyio.move_on_after(delay):
                async with cap.code.stream("while True: print('x')") as run:
                    async for _ in run:
                        await anyio.sleep(0.001)
            with anyio.fail_after(20):
                assert (await cap.run_code("'alive'")).text == "'alive'"
    await anyio.sleep(0.1)
    assert len(anyio.get_running_tasks()) <= baseline_tasks
    assert open_fds() <= baseline_fds
