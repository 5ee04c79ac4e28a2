"""``wrenn local`` and the verbs that keep a capsule, driven as a user drives them: the
``wrenn`` command in subprocesses, a background server found through its state file
(under a temporary ``XDG_RUNTIME_DIR``), and failures read off stderr and exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from tests.fakeapi import FakeAPI, reply, sleep_then


def clean_env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("WRENN_")}
    return {**base, **extra}


def wrenn(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wrenn", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def background(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A ``wrenn local start`` server; yields the environment that finds it."""
    env = clean_env(XDG_RUNTIME_DIR=str(tmp_path_factory.mktemp("runtime")))
    started = wrenn("local", "start", "--json", env=env)
    assert started.returncode == 0, started.stderr
    try:
        yield env
    finally:
        stopped = wrenn("local", "stop", env=env)
        assert stopped.returncode == 0, stopped.stderr


def test_serve_takes_the_documented_options_and_prints_exports(tmp_path: Path) -> None:
    with subprocess.Popen(
        [
            *(sys.executable, "-m", "wrenn", "local", "serve", "--port", "0", "--env"),
            *("--api-key", "wrn_" + "ab" * 16, "--data-dir", str(tmp_path / "d")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=clean_env(),
    ) as proc:
        serve_and_stop(proc)


def serve_and_stop(proc: subprocess.Popen[str]) -> None:
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(3)]
        assert lines[0].startswith("export WRENN_BASE_URL=http://127.0.0.1:")
        assert lines[1] == "export WRENN_API_KEY=wrn_" + "ab" * 16
        port = lines[0].rsplit(":", 1)[1]
        assert lines[2] == f"export WRENN_PROXY_DOMAIN=localhost:{port}"
        # what eval would do with them
        shell = subprocess.run(
            ["sh", "-c", 'eval "$0"; echo "$WRENN_BASE_URL"', "\n".join(lines)],
            capture_output=True,
            text=True,
            check=True,
        )
        assert shell.stdout.strip() == f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


def test_a_busy_port_is_one_clear_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = wrenn("local", "serve", "--port", str(port), env=clean_env(), timeout=60)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if " INFO " not in line]
    assert lines == [
        f"wrenn local: port {port} on 127.0.0.1 is already in use; "
        "choose another with --port N (--port 0: any free port)"
    ], done.stderr


def test_start_records_a_private_state_file(background: dict[str, str]) -> None:
    state = Path(background["XDG_RUNTIME_DIR"]) / "wrenn" / "local.json"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.parent.stat().st_mode) == 0o700
    key = json.loads(state.read_text())["api_key"]
    status = wrenn("local", "status", env=background)
    assert status.returncode == 0
    assert "base_url" in status.stdout
    assert key not in status.stdout  # the key is shown only by --env
    assert f"WRENN_API_KEY={key}" in wrenn("local", "status", "--env", env=background).stdout
    again = wrenn("local", "start", env=background)
    assert again.returncode == 0
    assert "already running" in again.stdout


def test_a_capsule_that_lives_between_commands(background: dict[str, str]) -> None:
    made = wrenn("create", env=background)
    assert made.returncode == 0, made.stderr
    cid = made.stdout.strip()
    assert cid.startswith("cl-")
    assert made.stderr == ""  # no spinner off a terminal
    listed = wrenn("ls", "--local", "--json", env=background)
    assert [c["id"] for c in json.loads(listed.stdout)] == [cid]
    ran = wrenn("exec", cid, "--", "sh", "-c", "echo hi; echo oops >&2; exit 4", env=background)
    assert (ran.returncode, ran.stdout, ran.stderr) == (4, "hi\n", "oops\n")
    pure = wrenn("exec", "--json", cid, "--", "sh", "-c", "echo out; echo err >&2", env=background)
    assert json.loads(pure.stdout) == {
        "capsule_id": cid,
        "exit_code": 0,
        "stdout": "out\n",
        "stderr": "err\n",
        "timed_out": False,
    }
    missing = wrenn("exec", cid, "--", "no-such-program", env=background)
    assert missing.returncode == 127
    slow = wrenn("exec", "--timeout", "0.5", cid, "--", "sleep", "30", env=background)
    assert slow.returncode == 124
    assert "did not finish within 0.5 s" in slow.stderr
    assert wrenn("pause", cid, env=background).stdout == f"{cid} paused\n"
    assert json.loads(wrenn("ls", "--json", env=background).stdout)[0]["status"] == "paused"
    assert wrenn("resume", cid, env=background).stdout == f"{cid} resumed\n"
    snap = wrenn("snapshot", cid, "kept", env=background)
    assert snap.returncode == 0, snap.stderr
    names = [
        t["name"] for t in json.loads(wrenn("templates", "ls", "--json", env=background).stdout)
    ]
    assert "kept" in names
    assert "minimal-ubuntu" in names
    assert wrenn("templates", "rm", "kept", env=background).returncode == 0
    assert wrenn("kill", cid, env=background).returncode == 0
    assert json.loads(wrenn("ls", "--json", env=background).stdout) == []


def test_url_prints_a_link_the_proxy_takes(background: dict[str, str]) -> None:
    """``wrenn url ID PORT``: a link whose token the port proxy trades for a cookie
    (the whole browser flow: tests/test_port_links.py)."""
    cid = wrenn("create", env=background).stdout.strip()
    try:
        printed = wrenn("url", cid, "8000", "--path", "/app", env=background)
        assert printed.returncode == 0, printed.stderr
        url = printed.stdout.strip()
        assert url.startswith(f"http://8000-{cid}.localhost:")
        assert "/app?wrenn_token=" in url
        name = url.split("/")[2]
        port = name.rpartition(":")[2]
        # what a browser does with the name: loopback, the name as Host
        answer = httpx.get(
            f"http://127.0.0.1:{port}" + url.partition(name)[2], headers={"Host": name}
        )
        assert answer.status_code == 303
        assert answer.headers["location"] == "/app"
        assert answer.headers["set-cookie"].startswith("wrenn_port=")
        as_json = json.loads(wrenn("url", "--json", cid, "8000", env=background).stdout)
        assert (as_json["capsule_id"], as_json["port"]) == (cid, 8000)
        assert "wrenn_token=" in as_json["url"]
        assert wrenn("url", cid, "70000", env=background).returncode == 2
        gone = wrenn("url", "cl-" + "0" * 25, "8000", env=background)
        assert (gone.returncode, gone.stderr.startswith("wrenn: error: capsule not found")) == (
            1,
            True,
        )
    finally:
        wrenn("kill", cid, env=background)


def test_failures_are_one_line_and_debug_shows_the_traceback(
    background: dict[str, str], tmp_path: Path
) -> None:
    nowhere = wrenn("get", "cl-x:f", "/nonexistent/x", env=background)
    assert (nowhere.returncode, nowhere.stderr) == (2, "wrenn: /nonexistent is not a directory\n")
    gone = "cl-" + "0" * 25
    failed = wrenn("exec", gone, "--", "true", env=background)
    assert failed.returncode == 1
    assert failed.stderr.startswith("wrenn: error: capsule not found")
    assert len(failed.stderr.splitlines()) == 1
    debug = wrenn("--debug", "exec", gone, "--", "true", env=background)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    assert debug.stderr.splitlines()[-1] == failed.stderr.strip()
    assert wrenn("create", "--keep", "--ttl", "5", env=background).returncode == 2
    assert wrenn("demo", "--capsules", "-1", env=background).returncode == 2
    assert wrenn("ls", "--bogus", env=background).returncode == 2
    version = wrenn("--version", env=background)
    assert version.returncode == 0
    assert version.stdout.startswith("wrenn ")
    helped = wrenn("--help", env=background).stdout
    assert "examples:" in helped
    assert "WRENN_BASE_URL" in helped


def test_without_a_server_the_command_says_how_to_get_one(tmp_path: Path) -> None:
    env = clean_env(XDG_RUNTIME_DIR=str(tmp_path))
    done = wrenn("ls", env=env)
    assert done.returncode == 2
    assert "wrenn local start" in done.stderr
    assert "WRENN_API_KEY" in done.stderr
    assert "api_key=" not in done.stderr
    # messages written for Python callers are told in command-line terms
    bad_url = wrenn(
        "ls", env=clean_env(WRENN_BASE_URL="http://u:p@127.0.0.1:9", WRENN_API_KEY="wrn_0000")
    )
    assert bad_url.returncode == 2
    assert "must not carry credentials; set WRENN_API_KEY" in bad_url.stderr
    assert "=" not in bad_url.stderr.partition("credentials")[2]
    assert wrenn("create", "--local", env=env).returncode == 2  # would die with the command
    status = wrenn("local", "status", env=env)
    assert status.returncode == 3
    assert wrenn("local", "stop", env=env).returncode == 0


def test_sigterm_cleans_up_like_ctrl_c(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = clean_env(XDG_RUNTIME_DIR=str(tmp_path), TMPDIR=str(scratch))
    with subprocess.Popen(
        [sys.executable, "-m", "wrenn", "run", "--local", "--", "sh", "-c", "echo up; sleep 60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        terminate_and_check(proc, scratch)


def terminate_and_check(proc: subprocess.Popen[str], scratch: Path) -> None:
    assert proc.stdout is not None
    assert proc.stdout.readline() == "up\n"
    # the embedded server's data directory, and the base template its capsules boot
    # from, kept for the next server on purpose (wrenn_local/_shared_base.py)
    bases = f"wrenn-base-{os.getuid()}"

    def left() -> list[str]:
        return sorted(p.name for p in scratch.iterdir() if p.name != bases)

    assert left()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1] == "wrenn: terminated"
    deadline = time.monotonic() + 5
    while left() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left() == []
    # one whole base, no half-made one
    assert [p.name.startswith(".") for p in (scratch / bases).iterdir()] == [False]


def on_a_terminal(env: dict[str, str], *args: str) -> str:
    """What ``wrenn ARGS`` writes to a terminal (stdout and stderr both); then stops
    any background server it started."""
    import pty

    pid, master = pty.fork()
    if pid == 0:
        os.execve(sys.executable, [sys.executable, "-m", "wrenn", *args], env)
    seen = b""
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        os.close(master)
        wrenn("local", "stop", env=env)
    return seen.decode()


def test_json_on_a_terminal_is_one_document_and_no_spinner(tmp_path: Path) -> None:
    text = on_a_terminal(clean_env(XDG_RUNTIME_DIR=str(tmp_path)), "local", "start", "--json")
    assert "starting the local server" not in text
    assert "\x1b" not in text
    assert json.loads(text)["started"] is True


async def test_a_spinner_shows_a_long_wait_on_a_terminal_only(
    fake_api: FakeAPI, tmp_path: Path
) -> None:
    # A scripted peer: a real server cannot be made to take a second to answer, every
    # time, and the spinner shows only after half a second.
    cid = "cl-8nxizn9ygtczplsnn9jve38be"
    capsule = {"id": cid, "template": "minimal-ubuntu", "vcpus": 1, "memory_mb": 512}

    async def slow_destroy(_: object) -> object:
        return await sleep_then(1.2, reply(202, {**capsule, "status": "stopping"}))

    fake_api.on("DELETE", f"/v1/capsules/{cid}", slow_destroy)  # type: ignore[arg-type]
    fake_api.answer("GET", f"/v1/capsules/{cid}", 200, {**capsule, "status": "stopped"})
    env = clean_env(
        XDG_RUNTIME_DIR=str(tmp_path), WRENN_BASE_URL=fake_api.base_url, WRENN_API_KEY="wrn_x"
    )
    text = await anyio.to_thread.run_sync(on_a_terminal, env, "kill", cid)
    assert f"destroying {cid}" in text  # the destroy took more than half a second
    assert "\r\x1b[K" in text  # and its line was wiped before the result
    assert text.endswith(f"{cid} destroyed\r\n")
    assert fake_api.count("GET", f"/v1/capsules/{cid}") == 1  # kill waited for "stopped"
