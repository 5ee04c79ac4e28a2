"""The cancellation matrix: every public async operation, cancelled at seeded points.

For each point an operation runs under ``move_on_after(delay)`` with a delay drawn from a
seeded generator (log-uniform from 0 to 1.5 s, plus exact zeros), so a failure names the
seed that reproduces it. After each point nothing the operation started may remain:
no process of a foreground call in the capsule; after the whole run no capsule on the
server, and no task, file descriptor or thread in the client beyond the baseline.

The default run takes a sample (``SAMPLE`` points per operation); the ``slow`` marker
runs ``WRENN_MATRIX_POINTS`` points per backend (default 1,000), through
``python -m nox -s slow``.
"""

from __future__ import annotations

import math
import os
import random
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import aclosing
from typing import Any

import anyio
import pytest

from tests.descriptors import open_fds
from tests.localserver import server_process
from wrenn import AsyncCapsule, AsyncWrennClient

SAMPLE = 2
POINTS = int(os.environ.get("WRENN_MATRIX_POINTS", "1000"))

InCapsule = Callable[[AsyncCapsule, str], Awaitable[Any]]
Scoped = Callable[[AsyncWrennClient, str], Awaitable[Any]]


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, str]]:
    with server_process() as env:
        yield env


def delays(seed: int, count: int) -> list[float]:
    rng = random.Random(seed)
    out = [0.0]
    while len(out) < count:
        out.append(math.exp(rng.uniform(math.log(0.001), math.log(1.5))))
    return out[:count]


# --- operations inside one capsule: each marks its process with `token` ------------------


async def run_plain(cap: AsyncCapsule, token: str) -> None:
    await cap.commands.run(f"sleep 3 # {token}")


async def run_program(cap: AsyncCapsule, token: str) -> None:
    await cap.commands.run("sh", args=["-c", f"sleep 3 # {token}"])


async def run_streamed(cap: AsyncCapsule, token: str) -> None:
    await cap.commands.run(
        f"while true; do echo {token}; sleep 0.01; done", on_stdout=lambda _: None
    )


async def run_with_deadline(cap: AsyncCapsule, token: str) -> None:
    try:
        await cap.commands.run(f"sleep 3 # {token}", timeout=0.05)
    except TimeoutError:
        pass


async def stream_block(cap: AsyncCapsule, token: str) -> None:
    async with cap.commands.stream(f"yes {token} | head -c 20000000") as run:
        async for _ in run:
            await anyio.sleep(0.001)  # a slow consumer: backpressure in play


async def pty_block(cap: AsyncCapsule, token: str) -> None:
    async with cap.pty("/bin/sh", args=["-c", f"echo ready; sleep 3; : {token}"]) as term:
        async for _ in term:
            pass


async def upload(cap: AsyncCapsule, token: str) -> None:
    async def chunks() -> AsyncGenerator[bytes, None]:
        for _ in range(40):
            yield b"z" * 262144
            await anyio.sleep(0.001)

    async with aclosing(chunks()) as body:  # ours to close when the write is cancelled
        await cap.files.write(f"up-{token}", body)


async def download(cap: AsyncCapsule, token: str) -> None:
    async with cap.files.read_stream("big") as chunks:
        async for _ in chunks:
            await anyio.sleep(0.001)


async def small_calls(cap: AsyncCapsule, token: str) -> None:
    await cap.files.write(f"small-{token}", token)
    await cap.files.read(f"small-{token}")
    await cap.commands.list()
    await cap.get_info()


IN_CAPSULE: list[InCapsule] = [
    run_plain,
    run_program,
    run_streamed,
    run_with_deadline,
    stream_block,
    pty_block,
    upload,
    download,
    small_calls,
]


# --- operations that own capsules ---------------------------------------------------------


async def capsule_scope(client: AsyncWrennClient, token: str) -> None:
    async with client.capsule(metadata={"matrix": token}, keepalive=True) as cap:
        await cap.commands.run("sleep 3")


async def fan_out(client: AsyncWrennClient, token: str) -> None:
    async def job(cap: AsyncCapsule, n: int) -> None:
        await cap.commands.run(f"sleep 3 # {token}")

    await client.map(job, range(3), concurrency=3)


async def pool(client: AsyncWrennClient, token: str) -> None:
    async with client.pool(2) as warm:
        await warm.map(lambda cap, n: cap.commands.run("sleep 3"), range(4))


SCOPED: list[Scoped] = [capsule_scope, fan_out, pool]


# --- the checks -----------------------------------------------------------------------------


async def leftovers(cap: AsyncCapsule, token: str) -> list[str]:
    """Processes of the point still listed, after a short grace for the kernel to reap."""
    with anyio.move_on_after(3):
        while True:
            left = [
                " ".join([p.cmd or "", *p.args])
                for p in await cap.commands.list()
                if token in " ".join([p.cmd or "", *p.args])
            ]
            if not left:
                return []
            await anyio.sleep(0.05)
    return left


async def live_capsules(client: AsyncWrennClient) -> list[str]:
    listed = await client.capsules.list()
    return [c.id for c in listed if str(c.status) not in ("stopping", "stopped")]


async def sweep(server: dict[str, str], seed: int, per_op: int, scoped_per_op: int) -> None:
    baseline = (open_fds(), len(anyio.get_running_tasks()), threading.active_count())
    client = AsyncWrennClient(api_key=server["WRENN_API_KEY"], base_url=server["WRENN_BASE_URL"])
    async with client:
        before = set(await live_capsules(client))
        async with client.capsule() as cap:
            await cap.commands.run("head -c 20000000 /dev/zero > big")
            for n, op in enumerate(IN_CAPSULE):
                for i, delay in enumerate(delays(seed * 1000 + n, per_op)):
                    token = f"m{seed}x{n}x{i}"
                    with anyio.move_on_after(delay):
                        await op(cap, token)
                    left = await leftovers(cap, token)
                    assert left == [], f"seed={seed} {op.__name__} delay={delay:.4f}: {left}"
        for n, scoped in enumerate(SCOPED):
            for i, delay in enumerate(delays(seed * 1000 + 100 + n, scoped_per_op)):
                with anyio.move_on_after(delay):
                    await scoped(client, f"s{seed}x{n}x{i}")
        with anyio.fail_after(30):  # destroys answer at once; stopping follows
            while set(await live_capsules(client)) - before:
                await anyio.sleep(0.1)
    await anyio.sleep(0.2)
    after = (open_fds(), len(anyio.get_running_tasks()), threading.active_count())
    assert after[0] <= baseline[0], f"file descriptors {baseline[0]} -> {after[0]}"
    assert after[1] <= baseline[1], f"tasks {baseline[1]} -> {after[1]}"
    assert after[2] <= baseline[2] + 1, f"threads {baseline[2]} -> {after[2]}"  # anyio's pool


async def test_cancellation_matrix_sample(server: dict[str, str], anyio_backend: Any) -> None:
    await sweep(
        server, seed=7 if anyio_backend[0] == "asyncio" else 8, per_op=SAMPLE, scoped_per_op=1
    )


@pytest.mark.slow
@pytest.mark.timeout(3600)
async def test_cancellation_matrix_full(server: dict[str, str], anyio_backend: Any) -> None:
    """``POINTS`` points per backend: three quarters inside a capsule, the rest on scopes
    that own capsules (those cost a capsule each)."""
    per_op = max(1, (POINTS * 3 // 4) // len(IN_CAPSULE))
    scoped = max(1, (POINTS - per_op * len(IN_CAPSULE)) // len(SCOPED))
    await sweep(
        server,
        seed=int(os.environ.get("WRENN_MATRIX_SEED", "1")),
        per_op=per_op,
        scoped_per_op=scoped,
    )
