"""Stateful code execution against a real Jupyter Server in wrenn_local capsules
(template ``code-runner-beta``), through the async API and the sync one."""

from __future__ import annotations

import base64
import struct
import zlib

import anyio
import pytest

import wrenn_local
from tests.localserver import FAST
from wrenn import (
    AsyncCapsule,
    AsyncWrennClient,
    CodeStderr,
    CodeStdout,
    ExecutionError,
    Result,
    WrennConfigurationError,
    WrennValidationError,
)


def tiny_png() -> bytes:
    """A valid 1x1 PNG, built by hand (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


async def test_state_logs_errors_and_rich_outputs(client: AsyncWrennClient) -> None:
    async with client.capsule(template="code-runner-beta") as cap:
        first = await cap.run_code(
            "x = 21\nprint('hello')\nimport sys; print('warn', file=sys.stderr)"
        )
        # the kernel may flush a line in more than one message under load: the text is
        # what is promised, not the chunking
        assert "".join(first.logs.stdout) == "hello\n"
        assert "".join(first.logs.stderr) == "warn\n"
        assert first.results == []
        assert first.text is None
        assert first.error is None
        second = await cap.run_code("x * 2")
        assert second.text == "42"
        assert second.execution_count is not None
        assert second.execution_count > (first.execution_count or 0)
        assert (await cap.run_code("'hi'")).text == "'hi'"  # the repr, quotes kept
        failed = await cap.run_code("def f():\n    return 1 / 0\nf()")
        assert failed.error is not None
        assert (failed.error.name, failed.error.value) == ("ZeroDivisionError", "division by zero")
        assert "f()" in failed.error.traceback
        png = tiny_png()
        rich = await cap.run_code(
            "from IPython.display import HTML, SVG, Image, display\n"
            "import base64\n"
            "display(HTML('<b>bold</b>'))\n"
            'display(SVG(\'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>\'))\n'
            f"png = base64.b64decode({base64.b64encode(png).decode()!r})\n"
            "display(Image(data=png, format='png'))\n"
            "{'answer': 42}"
        )
        html, svg, image, main = rich.results
        assert html.html == "<b>bold</b>"
        assert html.is_main_result is False
        assert svg.svg is not None
        assert svg.svg.startswith("<svg")
        assert image.data("png") == png
        assert "png" in image.formats()
        assert main.is_main_result
        assert main.text == "{'answer': 42}"
        seen: list[object] = []
        out: list[str] = []
        err: list[str] = []

        def on_stdout(text: str) -> None:
            seen.append(text)
            out.append(text)

        def on_stderr(text: str) -> None:
            seen.append(text)
            err.append(text)

        done = await cap.run_code(
            "print('a'); import sys; print('b', file=sys.stderr); 7",
            on_stdout=on_stdout,
            on_stderr=on_stderr,
            on_result=seen.append,
        )
        # ipykernel buffers stdout and stderr apart and flushes each on its own timer:
        # the two streams' relative order is not kept, each one's own order is, and
        # under load a line may come in more than one message ('a', then '\n')
        assert "".join(out) == "a\n"
        assert "".join(err) == "b\n"
        assert isinstance(seen[-1], Result)  # the outputs first, then the result
        assert all(isinstance(item, str) for item in seen[:-1])
        assert done.text == "7"
        errors: list[ExecutionError] = []
        await cap.run_code("raise KeyError('k')", on_error=errors.append)
        assert [e.name for e in errors] == ["KeyError"]
        with pytest.raises(WrennValidationError):
            await cap.run_code("1", language="r")


async def test_streaming_a_cell(client: AsyncWrennClient) -> None:
    async with client.capsule(template="code-runner-beta") as cap:
        async with cap.code.stream(
            "import sys, time\n"
            "for i in range(3):\n"
            "    print(i, flush=True); time.sleep(0.05)\n"
            "print('oops', file=sys.stderr, flush=True)\n"
            "'end'"
        ) as run:
            items = [item async for item in run]
        stdout = "".join(i.text for i in items if isinstance(i, CodeStdout))
        assert stdout == "0\n1\n2\n"
        assert any(isinstance(i, CodeStderr) and "oops" in i.text for i in items)
        assert isinstance(items[-1], Result)
        assert items[-1].text == "'end'"
        assert run.execution.text == "'end'"


async def test_timeout_interrupts_and_contexts_are_separate(client: AsyncWrennClient) -> None:
    async with client.capsule(template="code-runner-beta") as cap:
        await cap.run_code("kept = 'default context'")
        slow = await cap.run_code("import time\ntime.sleep(60)", timeout=1)
        assert slow.timed_out
        assert slow.error is not None
        assert slow.error.name == "Timeout"
        # the runaway cell was interrupted: the next one does not wait 60 s behind it
        with anyio.fail_after(20):
            assert (await cap.run_code("kept")).text == "'default context'"
        other = await cap.create_code_context(cwd="/tmp/work")
        assert (await cap.run_code("import os; os.getcwd()", context=other)).text == "'/tmp/work'"
        missing = await cap.run_code("kept", context=other)
        assert missing.error is not None
        assert missing.error.name == "NameError"
        await cap.run_code("only_here = 1", context=other)
        assert (await cap.run_code("'only_here' in globals()")).text == "False"
        ids = [c.id for c in await cap.list_code_contexts()]
        assert other.id in ids
        await cap.restart_code_context(other)
        after = await cap.run_code("only_here", context=other)
        assert after.error is not None  # a restart loses the kernel's state
        await cap.remove_code_context(other)
        assert other.id not in [c.id for c in await cap.list_code_contexts()]
        assert (await cap.run_code("kept")).text == "'default context'"


@pytest.mark.async_only  # cancels an async scope
async def test_cancelling_a_cell_leaves_the_kernel_usable(client: AsyncWrennClient) -> None:
    async with client.capsule(template="code-runner-beta") as cap:
        await cap.run_code("n = 1")
        with anyio.move_on_after(1) as scope:
            await cap.run_code("import time\nwhile True: time.sleep(0.1)", timeout=120)
        assert scope.cancelled_caught
        with anyio.fail_after(20):
            assert (await cap.run_code("n + 1")).text == "2"
        async with cap.code.stream("for i in range(10**9): print(i)") as run:
            async for item in run:
                assert isinstance(item, CodeStdout)
                break  # leaving early interrupts the cell
        with anyio.fail_after(20):
            assert (await cap.run_code("n + 2")).text == "3"


@pytest.mark.async_only  # cancels an async scope
async def test_a_cell_cancelled_before_the_kernel_starts_it_is_still_interrupted(
    client: AsyncWrennClient,
) -> None:
    # An interrupt is spent on whatever the kernel runs when it arrives, and ignored
    # between cells; a cell cancelled before the kernel starts it still has to end. Here
    # it is queued behind one sent by another connection (a capsule object with no scope
    # opens one per cell) that takes an interrupt in its stride (so the kernel does not
    # abort the queue), and cancelled while it waits: the interrupt that cancelling sends
    # ends the other cell, then ours starts, and it loops for ever unless interrupted again.
    async with client.capsule(template="code-runner-beta") as cap:
        await cap.run_code("n = 1")
        other = await client.connect(cap.capsule_id)
        busy = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def keep_the_kernel_busy() -> None:
                await other.run_code(
                    "print('busy', flush=True)\nimport time\n"
                    "try:\n    time.sleep(5)\nexcept KeyboardInterrupt:\n    pass",
                    on_stdout=lambda _: busy.set(),
                )

            tg.start_soon(keep_the_kernel_busy)
            with anyio.fail_after(30):
                await busy.wait()
            with anyio.move_on_after(0.3) as scope:
                await cap.run_code("import time\nwhile True: time.sleep(0.05)", timeout=120)
            assert scope.cancelled_caught
        with anyio.fail_after(15):
            assert (await cap.run_code("n + 1")).text == "2"


async def test_a_capsule_without_jupyter_fails_at_once_and_says_what_to_do(
    client: AsyncWrennClient,
) -> None:
    async with client.capsule() as cap:  # the minimal template runs no Jupyter
        with anyio.fail_after(10):  # not the 30 s wait for a Jupyter that never comes
            with pytest.raises(WrennConfigurationError) as caught:
                await cap.run_code("1")
    assert 'template="code-runner-beta"' in caught.value.message
    assert cap.info.template in caught.value.message


@pytest.mark.async_only  # drives the official classes itself, async and sync
async def test_the_official_names(
    client: AsyncWrennClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wrenn import code_runner

    assert client.config.api_key is not None
    monkeypatch.setenv("WRENN_API_KEY", client.config.api_key.reveal())
    monkeypatch.setenv("WRENN_BASE_URL", client.base_url)
    async with await code_runner.AsyncCapsule.create(wait=True) as cap:
        assert isinstance(cap, AsyncCapsule)
        assert cap.info.template == code_runner.DEFAULT_TEMPLATE
        # no scope here: each cell opens its own kernel connection
        await cap.run_code("v = 5")
        assert (await cap.run_code("v * 3")).text == "15"

    def sync_side() -> str | None:
        with code_runner.Capsule(wait=True) as sync_cap:
            sync_cap.run_code("w = 6")
            with sync_cap.code.stream("print('s'); w * 7") as run:
                items = list(run)
            assert isinstance(items[0], CodeStdout)
            return run.execution.text

    assert await anyio.to_thread.run_sync(sync_side) == "42"


async def test_reduced_isolation_gives_each_capsule_its_own_jupyter() -> None:
    async with (
        wrenn_local.serve(options=FAST, force_reduced_isolation=True) as server,
        AsyncWrennClient(api_key=server.api_key, base_url=server.base_url) as client,
        client.capsule(template="code-runner-beta") as one,
        client.capsule(template="code-runner-beta") as two,
    ):
        await one.run_code("who = 'one'")
        await two.run_code("who = 'two'")
        assert (await one.run_code("who")).text == "'one'"
        assert (await two.run_code("who")).text == "'two'"
