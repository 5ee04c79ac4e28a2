"""Binary output frames on exec and attach streams (the ``wrenn.output.v1`` subprotocol).

Our client offers the subprotocol; wrenn_local accepts it and sends stdout/stderr as
binary messages (a tag byte, then the raw bytes). A server that does not accept it — the
cloud, an older wrenn_local, here a real wrenn_local started with ``binary_frames=False``
— keeps JSON text, and the client falls back without a word. Both ends are checked with
a peer of the other side that is not ours (the `websockets` library).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import attrs
import pytest
from websockets.sync.client import connect

import wrenn_local
from tests.localserver import FAST, local_http, new_capsule
from tests.sync_facade import Api, open_client
from wrenn import (
    AsyncWrennClient,
    StreamEvent,
    StreamExit,
    StreamStart,
    StreamStderr,
    StreamStdout,
)
from wrenn._config import ClientConfig
from wrenn._protocol.exec_stream import BINARY_OUTPUT, ExecStreamProtocol

# NUL, bytes that are not UTF-8, and a UTF-8 character: what JSON text cannot carry as is.
SCRIPT = r"printf 'a\000b\377\376c\342\202\254\n'; printf 'e\000\377' >&2; exit 3"
OUT = b"a\x00b\xff\xfec\xe2\x82\xac\n"
ERR = b"e\x00\xff"
BIG = 3 * 1024 * 1024  # many agent chunks, several client reads

REFUSING = attrs.evolve(FAST, binary_frames=False)


@pytest.fixture
async def refusing() -> AsyncIterator[wrenn_local.LocalServer]:
    """A real wrenn_local that ignores the offer (as the cloud does)."""
    async with wrenn_local.serve(options=REFUSING) as server:
        yield server


def _joined(events: list[StreamEvent]) -> tuple[str, str, bytes | None, bytes | None]:
    out = [e for e in events if isinstance(e, StreamStdout)]
    err = [e for e in events if isinstance(e, StreamStderr)]
    raw_out = None if any(e.raw is None for e in out) else b"".join(e.raw or b"" for e in out)
    raw_err = None if any(e.raw is None for e in err) else b"".join(e.raw or b"" for e in err)
    return "".join(e.data for e in out), "".join(e.data for e in err), raw_out, raw_err


async def test_accepted_offer_carries_exact_bytes(client: AsyncWrennClient) -> None:
    async with client.capsule() as cap:
        async with cap.commands.stream(SCRIPT) as run:
            events = [event async for event in run]
            assert run.binary_frames
        assert isinstance(events[0], StreamStart)
        assert events[-1] == StreamExit(3)
        text_out, text_err, raw_out, raw_err = _joined(events)
        assert (raw_out, raw_err) == (OUT, ERR)
        # the text is what the JSON wire gives: invalid bytes replaced, the euro sign whole
        assert text_out == OUT.decode("utf-8", "replace")
        assert text_err == ERR.decode("utf-8", "replace")
        # a command run with callbacks goes through the stream: its bytes are exact too
        seen: list[str] = []
        result = await cap.commands.run(SCRIPT, on_stdout=seen.append)
        assert (result.stdout_bytes, result.stderr_bytes, result.exit_code) == (OUT, ERR, 3)
        assert "".join(seen) == result.stdout == OUT.decode("utf-8", "replace")


async def test_large_binary_output_is_exact(client: AsyncWrennClient) -> None:
    async with client.capsule() as cap:
        await cap.commands.run(f"head -c {BIG} /dev/urandom > /tmp/r")
        expected = await cap.files.read("/tmp/r", format="bytes")
        async with cap.commands.stream("cat /tmp/r") as run:
            events = [event async for event in run]
            assert run.binary_frames
        _, _, raw_out, _ = _joined(events)
        assert raw_out == expected
        assert len(expected) == BIG


async def test_refused_offer_falls_back_to_json(
    refusing: wrenn_local.LocalServer, api: Api
) -> None:
    async with (
        open_client(api, api_key=refusing.api_key, base_url=refusing.base_url) as client,
        client.capsule() as cap,
    ):
        async with cap.commands.stream(SCRIPT) as run:
            events = [event async for event in run]
            assert not run.binary_frames
        text_out, text_err, raw_out, raw_err = _joined(events)
        assert (raw_out, raw_err) == (None, None)
        assert (text_out, text_err) == (
            OUT.decode("utf-8", "replace"),
            ERR.decode("utf-8", "replace"),
        )
        assert events[-1] == StreamExit(3)
        result = await cap.commands.run(SCRIPT, on_stdout=lambda _: None)
        assert result.stdout == OUT.decode("utf-8", "replace")
        assert result.stdout_bytes == result.stdout.encode()  # JSON text: lossy, as documented


async def test_same_events_either_way(refusing: wrenn_local.LocalServer) -> None:
    """The two wires give the same text, exit code and event kinds, for stdout and
    stderr interleaved, on an accepting and on a refusing server."""
    script = "for i in $(seq 1 200); do echo out$i; echo err$i >&2; done; exit 5"
    results = []
    async with wrenn_local.serve(options=FAST) as accepting:
        for server in (accepting, refusing):
            async with (
                AsyncWrennClient(api_key=server.api_key, base_url=server.base_url) as c,
                c.capsule() as cap,
                cap.commands.stream(script) as run,
            ):
                results.append((run.binary_frames, [event async for event in run]))
    (binary_a, events_a), (binary_b, events_b) = results
    assert binary_a
    assert not binary_b
    assert _joined(events_a)[:2] == _joined(events_b)[:2]
    assert _joined(events_a)[0].count("\n") == 200
    assert events_a[-1] == events_b[-1] == StreamExit(5)


async def test_client_can_turn_the_offer_off(api: Api) -> None:
    async with (
        wrenn_local.serve(options=FAST) as server,
        open_client(
            api, api_key=server.api_key, base_url=server.base_url, binary_frames=False
        ) as client,
        client.capsule() as cap,
    ):
        async with cap.commands.stream(SCRIPT) as run:
            events = [event async for event in run]
            assert not run.binary_frames
        assert _joined(events)[2] is None


async def test_attach_stream_is_binary_too(client: AsyncWrennClient) -> None:
    async with client.capsule() as cap:
        await cap.commands.run(r"sleep 0.5; printf 'x\000\377'; exit 2", background=True, tag="job")
        async with cap.commands.connect("job") as run:
            events = [event async for event in run]
            assert run.binary_frames
        assert _joined(events)[2] == b"x\x00\xff"
        assert events[-1] == StreamExit(2)


# --- the server, seen by an independent client (the `websockets` library) ---------------


def _raw_frames(url: str, key: str, offer: list[str] | None) -> tuple[str | None, list[Any]]:
    with connect(
        url,
        additional_headers={"X-API-Key": key},
        subprotocols=offer,  # type: ignore[arg-type]
        max_size=None,
    ) as ws:
        ws.send(json.dumps({"type": "start", "cmd": "/bin/sh", "args": ["-c", SCRIPT]}))
        frames: list[Any] = []
        while True:
            message = ws.recv(timeout=20)
            frames.append(message)
            if isinstance(message, str) and json.loads(message)["type"] in ("exit", "error"):
                return ws.subprotocol, frames


async def test_server_sends_tagged_binary_only_when_offered() -> None:
    async with local_http() as (server, http):
        cid = await new_capsule(http)
        url = server.base_url.replace("http://", "ws://") + f"/v1/capsules/{cid}/exec/stream"
        chosen, frames = await anyio.to_thread.run_sync(
            _raw_frames, url, server.api_key, [BINARY_OUTPUT]
        )
        assert chosen == BINARY_OUTPUT
        binary = [f for f in frames if isinstance(f, bytes)]
        assert b"".join(f[1:] for f in binary if f[0] == 1) == OUT
        assert b"".join(f[1:] for f in binary if f[0] == 2) == ERR
        text = [json.loads(f) for f in frames if isinstance(f, str)]
        assert [f["type"] for f in text] == ["start", "exit"]  # control stays JSON
        # no offer (the official SDK) or an offer of something else: JSON text only
        for offer in (None, ["something.else"]):
            chosen, frames = await anyio.to_thread.run_sync(_raw_frames, url, server.api_key, offer)
            assert chosen is None
            assert all(isinstance(f, str) for f in frames)
            kinds = [json.loads(f)["type"] for f in frames]
            assert kinds[0] == "start"
            assert kinds[-1] == "exit"
            assert "stdout" in kinds
            assert "stderr" in kinds


# --- the protocol machine and the configuration, without I/O ----------------------------


def test_protocol_decodes_split_characters() -> None:
    proto = ExecStreamProtocol(binary=True)
    proto.receive('{"type":"start","pid":7}')
    euro = "€".encode()
    first = proto.receive(b"\x01a" + euro[:1])
    second = proto.receive(b"\x01" + euro[1:] + b"\xff")
    assert isinstance(first, StreamStdout)
    assert isinstance(second, StreamStdout)
    assert (first.data, first.raw) == ("a", b"a" + euro[:1])
    assert (second.data, second.raw) == ("€\ufffd", euro[1:] + b"\xff")
    assert proto.receive(b"\x02") == StreamStderr("", raw=b"")
    # malformed binary messages: see tests/test_binary_hostile.py


def test_binary_frames_setting() -> None:
    def resolve(env: dict[str, str], value: bool | None = None) -> bool:
        return ClientConfig.resolve(
            api_key="k",
            token=None,
            base_url="http://127.0.0.1:1",
            proxy_domain=None,
            timeout=1,
            connect_timeout=1,
            max_retries=0,
            environ=env,
            binary_frames=value,
        ).binary_frames

    assert resolve({}) is True
    for off in ("0", "false", "No", " off "):
        assert resolve({"WRENN_BINARY_FRAMES": off}) is False
    assert resolve({"WRENN_BINARY_FRAMES": "1"}) is True
    assert resolve({"WRENN_BINARY_FRAMES": "0"}, True) is True
    assert resolve({}, False) is False


def test_server_frames_encode_the_same_with_or_without_orjson(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from wrenn_local._routes import _ws

    values: list[dict[str, Any]] = [
        {"type": "stdout", "data": 'a\x00b\ufffd€\n"\\'},
        {"type": "exit", "exit_code": -1},
        {"type": "error", "data": "lone \udc80 surrogate"},  # orjson refuses: the stdlib
    ]
    texts = ["y\n" * 5000, 'a log line, é €\t"q"\n' * 500, "\x00\x1f", "x" * 9000]
    fast = [_ws.dumps(v) for v in values] + [_ws.dumps_text(t) for t in texts]
    monkeypatch.setattr(_ws, "_orjson", None)
    plain = [_ws.dumps(v) for v in values] + [_ws.dumps_text(t) for t in texts]
    assert fast == plain
    assert [json.loads(text) for text in plain] == [*values, *texts]


async def test_cli_exec_writes_the_exact_bytes() -> None:
    async with (
        wrenn_local.serve(options=FAST) as server,
        AsyncWrennClient(api_key=server.api_key, base_url=server.base_url) as client,
        client.capsule() as cap,
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith("WRENN_")}
        env.update(WRENN_BASE_URL=server.base_url, WRENN_API_KEY=server.api_key)
        done = await anyio.run_process(
            [sys.executable, "-m", "wrenn", "exec", cap.capsule_id, "--", "sh", "-c", SCRIPT],
            env=env,
            check=False,
        )
        assert (done.returncode, done.stdout, done.stderr) == (3, OUT, ERR)
