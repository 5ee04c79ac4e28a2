"""A capsule destroyed while operations on it are in flight: each operation ends soon,
whole or with a clear error, and nothing of it stays on either side.

In flight at once, through the SDK against the local server: a foreground command, an
exec stream pouring output, a download of a large file read slowly, an upload sent
slowly, a terminal being typed into. A DELETE lands at a sweep of points across their
life (from before any of them reached the agent to well into their transfers). Each
must then, within a bound:

- end whole (the command's exit, the download's every byte, the upload complete, the
  terminal's shell exited with its code), or
- raise a :class:`WrennError` that is not a server fault (``WrennInternalError``, a 500):
  a capsule going away is the capsule's state. A download must never end quietly short
  of its size, and a stream never without its exit.

The server logs no error for any of it. And after each point: this process's
descriptors (server and client both live here) and processes are back to what they
were, and the server still boots and runs capsules.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import attrs
import pytest

from tests.descriptors import fd_targets, settled_fds
from tests.localserver import FAST, local_http, new_capsule, sh, wait_status
from tests.test_local_destroy_sweep import (
    baseline_after_a_capsule,
    cgroups_of,
    settled_descendants,
)
from wrenn import AsyncCapsule, AsyncWrennClient, StreamExit, WrennError, WrennInternalError

pytestmark = pytest.mark.anyio

# every create boots cold, and nothing is made ahead that would blur what a capsule left
COLD = attrs.evolve(FAST, spares=0, ready_networks=0)
BIG = 48 << 20  # the download's size
CHUNK = 64 << 10
UPLOAD_CHUNKS = 200
NAMES = ("foreground", "stream", "download", "upload", "terminal")
ENDS_WITHIN = 20.0  # seconds each operation may take to end once the DELETE is sent


async def outcome(what: str, op: Callable[[], Awaitable[None]], ended: dict[str, str]) -> None:
    """Run ``op`` and record how it ended ("whole", or the error's class name); any
    exception that is not a WrennError, or that is a server fault, fails the test."""
    try:
        with anyio.fail_after(ENDS_WITHIN):
            await op()
    except WrennInternalError as exc:
        raise AssertionError(f"{what}: a destroy made a server fault: {exc!r}") from exc
    except WrennError as exc:
        ended[what] = type(exc).__name__
    else:
        ended[what] = "whole"


def operations(
    cap: AsyncCapsule, started: dict[str, anyio.Event]
) -> dict[str, Callable[[], Awaitable[None]]]:
    async def foreground() -> None:
        started["foreground"].set()
        result = await cap.commands.run("sleep 0.5; echo done")
        assert result.stdout == "done\n", result

    async def stream() -> None:
        async with cap.commands.stream(
            "head -c 20000000 /dev/zero | od -v | head -c 8000000"
        ) as run:
            seen_exit = False
            async for event in run:
                started["stream"].set()
                if isinstance(event, StreamExit):
                    seen_exit = True
            assert seen_exit, "a stream ended without its exit and without an error"

    async def download() -> None:
        got = 0
        async with cap.files.read_stream("/tmp/big.bin", chunk_size=CHUNK) as chunks:
            async for chunk in chunks:
                started["download"].set()
                got += len(chunk)
                await anyio.sleep(0.0005)
        assert got == BIG, f"a download ended quietly at {got} of {BIG} bytes"

    async def upload() -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(UPLOAD_CHUNKS):
                started["upload"].set()
                yield b"u" * CHUNK
                await anyio.sleep(0.002)

        await cap.files.write("/tmp/up.bin", chunks())

    async def terminal() -> None:
        async with cap.pty("/bin/sh") as term:
            started["terminal"].set()
            for i in range(40):
                await term.write(f"echo line-{i}\n")
                await anyio.sleep(0.01)
            await term.write("exit 3\n")
            assert await term.wait() == 3

    return {
        "foreground": foreground,
        "stream": stream,
        "download": download,
        "upload": upload,
        "terminal": terminal,
    }


async def test_operations_in_flight_end_soon_and_cleanly_when_their_capsule_is_destroyed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with local_http(options=COLD) as (server, http):
        if server.isolation != "full":
            pytest.skip("reduced isolation: the sweep's leftovers checks need full isolation")
        fds, processes = await baseline_after_a_capsule(http)
        targets = fd_targets()

        outcomes: list[dict[str, str]] = []
        for delay in (0.0, 0.002, 0.01, 0.03, 0.08, 0.15, 0.3, 0.6, 1.2):
            cid = await new_capsule(http)
            made = await sh(http, cid, f"head -c {BIG} /dev/urandom > /tmp/big.bin")
            assert made["exit_code"] == 0, made
            where = f"destroyed {delay * 1000:.0f} ms into the operations"
            ended: dict[str, str] = {}
            async with AsyncWrennClient(api_key=server.api_key, base_url=server.base_url) as c:
                cap = await c.connect(cid)
                started = {name: anyio.Event() for name in NAMES}
                ops = operations(cap, started)
                async with anyio.create_task_group() as tg:
                    for name, op in ops.items():
                        tg.start_soon(outcome, name, op, ended)
                    await anyio.sleep(delay)
                    sent = time.monotonic()
                    gone = await http.delete(f"/v1/capsules/{cid}")
                    assert gone.status_code in (202, 204), gone.text
                assert time.monotonic() - sent < ENDS_WITHIN, where
            assert set(ended) == set(ops), (where, ended)
            outcomes.append(ended)
            await wait_status(http, cid, "stopped")
            assert cgroups_of(cid) == [], where
            assert not (server.data_dir / "capsules" / cid).exists(), where
            assert await settled_descendants(processes) == set(), where
            assert await settled_fds(fds) <= fds, (where, fd_targets() - targets)
        # a destroy is the capsule's state, not a server fault: nothing logged as an error
        # (a stream the agent broke off used to end in "Error in ASGI Framework", 1011)
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == [], errors
        # a request the destroy broke off is answered with the capsule's state (409, 404),
        # not as an agent failure (502): the capsule went away, nothing failed
        assert not [o for o in outcomes if "WrennAgentError" in o.values()], outcomes
        # the sweep reached into the transfers: some of each ended cut short
        for name in ("stream", "download", "upload", "terminal"):
            assert any(o[name] != "whole" for o in outcomes), (name, outcomes)
        # and the server still boots and runs capsules
        cid = await new_capsule(http)
        assert (await sh(http, cid, "echo ok"))["stdout"] == "ok\n"
