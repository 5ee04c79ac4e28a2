"""Attacks on wrenn_local from inside a capsule and from other accounts (issue 17).

Each test attacks one protection and fails if the attack works. Tests that need full
isolation (root, bubblewrap, overlayfs) are skipped under reduced isolation, which does
not claim these protections (docs/design/security.md).
"""

from __future__ import annotations

import math
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from shlex import quote as shell_quote

import anyio
import httpx
import pytest

from tests.localserver import local_http, new_capsule, server_process, sh
from tests.test_local_files import multipart
from wrenn_local import ServerOptions


def full_only(server: object) -> None:
    if getattr(server, "isolation", None) != "full":
        pytest.skip("reduced isolation does not hide the server from capsule code")


async def read(http: httpx.AsyncClient, cid: str, path: str) -> httpx.Response:
    return await http.post(f"/v1/capsules/{cid}/files/read", json={"path": path})


async def test_server_environment_argv_and_paths_are_not_readable_inside(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "wrenn-secret-" + secrets.token_hex(8)
    monkeypatch.setenv("WRENN_TEST_SERVER_SECRET", secret)
    async with local_http() as (server, http):
        full_only(server)
        cid = await new_capsule(http)
        await sh(http, cid, "sleep 30", background=True)
        leaks = [secret, str(server.data_dir)]
        # through the files API, every process's environment and command line
        listing = await http.post(f"/v1/capsules/{cid}/files/list", json={"path": "/proc"})
        pids = [e["name"] for e in listing.json()["entries"] if e["name"].isdigit()]
        assert "1" in pids
        for pid in pids:
            for name in ("environ", "cmdline", "mountinfo"):
                resp = await read(http, cid, f"/proc/{pid}/{name}")
                for leak in leaks:
                    assert leak.encode() not in resp.content, (pid, name)
        # through a command: everything a process of the capsule can read about the others
        out = await sh(
            http,
            cid,
            "cat /proc/*/environ /proc/*/cmdline /proc/self/mountinfo /proc/1/mountinfo"
            " /run/wrenn/* 2>/dev/null; env; true",
        )
        for leak in leaks:
            assert leak not in out["stdout"]


async def test_files_api_has_only_the_capsule_users_rights() -> None:
    # a host file under /etc that other accounts may not read
    hidden = f"/etc/wrenn-sec-{secrets.token_hex(4)}"
    fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    os.write(fd, b"root only")
    os.close(fd)
    try:
        async with local_http() as (server, http):
            full_only(server)
            cid = await new_capsule(http)
            assert (await read(http, cid, hidden)).status_code == 404  # never copied in
            assert "root only" not in (await sh(http, cid, f"cat {hidden}; true"))["stdout"]
            # symlinks planted by capsule code towards what only root may read or write
            await sh(
                http,
                cid,
                "ln -s /etc/shadow ~/shadow; ln -s /proc/1/environ ~/env; ln -s /etc ~/etc;"
                " ln -s /run/wrenn ~/run; ln -s /root ~/rootdir; mkfifo ~/fifo",
            )
            for path in ("~/shadow", "~/env", "/etc/shadow", "/proc/1/environ"):
                resp = await read(http, cid, path)
                assert resp.status_code == 403, (path, resp.status_code)
            for path in ("~/etc/passwd", "~/run/agent.json", "~/rootdir/x", "/etc/planted"):
                body, ctype = multipart(path, b"planted")
                resp = await http.post(
                    f"/v1/capsules/{cid}/files/write",
                    content=body,
                    headers={"Content-Type": ctype},
                )
                assert resp.status_code == 403, (path, resp.status_code)
            for path in ("~/rootdir/sub", "~/etc/sub"):
                resp = await http.post(f"/v1/capsules/{cid}/files/mkdir", json={"path": path})
                assert resp.status_code == 403, (path, resp.status_code)
            resp = await http.post(f"/v1/capsules/{cid}/files/remove", json={"path": "/etc/hosts"})
            assert resp.status_code == 403
            check = await sh(http, cid, "grep -c wrenn-user /etc/passwd; ls /etc/planted 2>&1")
            assert check["stdout"].startswith("1\n")
            assert "No such" in check["stdout"]
            assert (
                b"planted"
                not in (server.data_dir / "capsules" / cid / "run" / "agent.json").read_bytes()
            )
            # a FIFO planted by capsule code does not stall the files API
            with anyio.fail_after(5):
                assert (await read(http, cid, "~/fifo")).status_code == 400
            # what the user may do, the files API does, and files belong to the user
            assert (await sh(http, cid, "true"))["exit_code"] == 0
            body, ctype = multipart("/tmp/mine", b"ok")
            resp = await http.post(
                f"/v1/capsules/{cid}/files/write", content=body, headers={"Content-Type": ctype}
            )
            assert resp.status_code == 204
            assert (await sh(http, cid, "stat -c %U /tmp/mine"))["stdout"] == "wrenn-user\n"
            # killing the worker (capsule code may: same user) does not break the files API
            for _ in range(3):
                await sh(http, cid, "pkill -KILL -f files-worker; true")
                async with anyio.create_task_group() as tg:
                    for _ in range(4):
                        tg.start_soon(_reads_ok, http, cid, "/tmp/mine")
    finally:
        os.unlink(hidden)


async def _reads_ok(http: httpx.AsyncClient, cid: str, path: str) -> None:
    assert (await read(http, cid, path)).content == b"ok"


async def test_requests_under_other_names_are_refused() -> None:
    """DNS rebinding: a page under the attacker's name reaches 127.0.0.1 with its own
    Host; a cross-site page sends its Origin. Both are refused before any route."""
    async with local_http() as (server, http):
        cid = await new_capsule(http)
        for headers in (
            {"Host": "evil.example"},
            {"Host": f"evil.example:{server.port}"},
            {"Host": f"8000-{cid}.evil.example:{server.port}"},
            {"Origin": "http://evil.example"},
            {"Origin": f"http://localhost.evil.example:{server.port}"},
            {"Origin": "null"},
        ):
            resp = await http.get("/v1/capsules", headers=headers)
            assert resp.status_code == 403, headers
            resp = await http.post(
                f"/v1/capsules/{cid}/exec", json={"cmd": "/bin/true"}, headers=headers
            )
            assert resp.status_code == 403, headers
        for headers in (
            {"Host": f"localhost:{server.port}"},
            {"Host": f"127.0.0.1:{server.port}"},
            {"Origin": f"http://localhost:{server.port}"},
            {"Origin": f"http://127.0.0.1:{server.port}"},
        ):
            assert (await http.get("/v1/capsules", headers=headers)).status_code == 200
        # a WebSocket from a foreign page never upgrades
        async with await anyio.connect_tcp(server.host, server.port) as sock:
            await sock.send(
                (
                    f"GET /v1/capsules/{cid}/exec/stream HTTP/1.1\r\n"
                    f"Host: {server.host}:{server.port}\r\nOrigin: http://evil.example\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    f"X-API-Key: {server.api_key}\r\n\r\n"
                ).encode()
            )
            with anyio.fail_after(5):
                answer = await sock.receive()
            assert answer.startswith(b"HTTP/1.1 403"), answer[:40]


async def test_signup_is_off_unless_asked_for() -> None:
    body = {"email": "x@y.io", "password": "long enough", "name": "X"}
    async with local_http(options=ServerOptions()) as (_, http):
        resp = await http.post("/v1/auth/signup", json=body)
        assert (resp.status_code, resp.json()["error"]["code"]) == (403, "forbidden")
        assert (await http.post("/v1/auth/login", json=body)).status_code == 401
    async with local_http(options=ServerOptions(allow_signup=True)) as (_, http):
        assert (await http.post("/v1/auth/signup", json=body)).status_code == 201


async def test_a_login_flood_neither_stalls_the_server_nor_goes_unthrottled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each PBKDF2 takes ~0.1 s: on the event loop, ten of them would stall every tenant
    # for a second. The hash is spied on (the server runs in this process) to prove none
    # runs on the event loop's thread; how long /health waits meanwhile is a figure for
    # benchmarks/login_flood.py, not an assertion here.
    from wrenn_local import _accounts

    hashed_on: list[threading.Thread] = []
    real_hash = _accounts.Accounts._hash

    def spy(self: _accounts.Accounts, password: str, salt: bytes) -> bytes:
        hashed_on.append(threading.current_thread())
        return real_hash(self, password, salt)

    monkeypatch.setattr(_accounts.Accounts, "_hash", spy)
    loop_thread = threading.current_thread()
    async with (
        local_http(options=ServerOptions(allow_signup=True)) as (server, http),
        httpx.AsyncClient(base_url=server.base_url) as probe,
    ):
        body = {"email": "x@y.io", "password": "long enough", "name": "X"}
        started = time.monotonic()
        assert (await http.post("/v1/auth/signup", json=body)).status_code == 201
        statuses: list[int] = []
        healthy: list[int] = []

        async def login() -> None:
            resp = await http.post("/v1/auth/login", json={**body, "password": "wrong guess"})
            statuses.append(resp.status_code)

        async def health() -> None:
            await anyio.sleep(0.1)  # the flood is under way
            for _ in range(10):
                healthy.append((await probe.get("/health")).status_code)
                await anyio.sleep(0.02)

        async with anyio.create_task_group() as tg:
            for _ in range(60):
                tg.start_soon(login)
            tg.start_soon(health)
        elapsed = time.monotonic() - started
        assert healthy == [200] * 10
        assert hashed_on, "the spy saw no hash"
        assert loop_thread not in hashed_on  # every PBKDF2 ran in a worker thread
        # The throttle lets a burst through at once, then one attempt per interval: the
        # sign-up and the log-ins it let through are at most the burst plus what refilled
        # while they ran (a loaded machine stretches that time, not the rule)
        options = ServerOptions()
        allowed = options.auth_burst + math.floor(elapsed / options.auth_interval)
        assert len(hashed_on) <= allowed
        assert statuses.count(401) == len(hashed_on) - 1  # each hash but the sign-up's
        assert statuses.count(429) >= 40  # most of the sixty were throttled
        assert set(statuses) == {401, 429}


def test_the_api_key_comes_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "wrn_" + secrets.token_hex(16)
    key_file = tmp_path / "key"
    key_file.write_text(key + "\n")
    with server_process("--api-key-file", str(key_file)) as env:
        assert env["WRENN_API_KEY"] == key
        resp = httpx.get(env["WRENN_BASE_URL"] + "/v1/capsules", headers={"X-API-Key": key})
        assert resp.status_code == 200
    other = "wrn_" + secrets.token_hex(16)
    monkeypatch.setenv("WRENN_LOCAL_API_KEY", other)
    with server_process() as env:
        assert env["WRENN_API_KEY"] == other


async def test_refused_uploads_answer_4xx_and_leave_no_half_read_connection() -> None:
    """Uploads of 300 KiB refused for every reason: a 4xx (never 500), and the
    connection is either closed or clean for the next request."""
    async with local_http() as (server, http):
        cid = await new_capsule(http)
        await sh(http, cid, "mkdir -p ~/dir")
        data = os.urandom(300 * 1024)
        cases: list[tuple[str, str, bytes, str, int]] = []
        for path, status in (("~/dir", 400), ("/etc/x", 403), ("/root/x", 403)):
            body, ctype = multipart(path, data)
            cases.append((f"/v1/capsules/{cid}/files/write", ctype, body, path, status))
        body, ctype = multipart("~/ok", data)
        cases.append(("/v1/capsules/cl-" + "0" * 25 + "/files/write", ctype, body, "", 404))
        cases.append((f"/v1/capsules/{cid}/files/write", "text/plain", data, "", 400))
        cases.append((f"/v1/capsules/{cid}/files/write", ctype, b"--x\r\n" + data, "", 400))
        cases.append((f"/v1/capsules/{cid}/files/write", ctype, body, "wrong key", 401))
        for url, ctype, body, path, status in cases:
            if server.isolation != "full" and status == 403:
                continue
            key = "wrn_" + "0" * 32 if status == 401 else server.api_key
            async with httpx.AsyncClient(
                base_url=server.base_url, headers={"X-API-Key": key}, timeout=30
            ) as client:
                resp = await client.post(url, content=body, headers={"Content-Type": ctype})
                assert resp.status_code == status, (url, path, resp.status_code, resp.text)
                # the same client again: a fresh or a clean connection either way
                assert (await client.get("/health")).status_code == 200


async def test_file_data_before_the_path_field_is_bounded_on_the_host() -> None:
    """A streamed upload (no size limit of its own) whose file part comes before the
    path field: that data waits in a temporary file on the host, outside every capsule's
    disk limit. Past 100 MiB the upload is refused (413), so an account cannot fill the
    host's disk with data that never reaches a capsule."""
    mib = b"\0" * (1 << 20)
    boundary = secrets.token_hex(16)
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        'filename="upload"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    tail = (
        f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\n'
        f"/tmp/late\r\n--{boundary}--\r\n"
    ).encode()

    async def body() -> AsyncIterator[bytes]:
        yield head
        for _ in range(150):
            yield mib
        yield tail

    async with local_http() as (_, http):
        cid = await new_capsule(http)
        resp = await http.post(
            f"/v1/capsules/{cid}/files/stream/write",
            content=body(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            timeout=120,
        )
        assert resp.status_code == 413, (resp.status_code, resp.text[:200])
        assert "path field" in resp.json()["error"]["message"]
        # a small file before its path is still written (the order stays free)
        body_bytes, ctype = multipart("/tmp/small", b"small", file_first=True)
        resp = await http.post(
            f"/v1/capsules/{cid}/files/stream/write",
            content=body_bytes,
            headers={"Content-Type": ctype},
        )
        assert resp.status_code == 204, resp.text
        assert (await read(http, cid, "/tmp/small")).content == b"small"


async def test_quick_ones_hosts_names_proxy_headers_and_non_http_ports() -> None:
    async with local_http() as (server, http):
        full_only(server)
        cid = await new_capsule(http)
        # file names of 236 to 255 bytes are writable, as for a shell
        for length in (236, 255):
            name = "n" * length
            body, ctype = multipart(f"/tmp/{name}", b"long")
            resp = await http.post(
                f"/v1/capsules/{cid}/files/write", content=body, headers={"Content-Type": ctype}
            )
            assert resp.status_code == 204, (length, resp.text)
            assert (await read(http, cid, f"/tmp/{name}")).content == b"long"
        # the port proxy strips every credential header before the capsule
        echo = (
            "import http.server as h\n"
            "class E(h.BaseHTTPRequestHandler):\n"
            " def do_GET(s):\n"
            "  b=str(s.headers).encode(); s.send_response(200)\n"
            "  s.send_header('Content-Length',str(len(b))); s.end_headers(); s.wfile.write(b)\n"
            "h.HTTPServer(('127.0.0.1',8000),E).serve_forever()\n"
        )
        garbage = (
            "import socket\ns=socket.create_server(('127.0.0.1',8001))\n"
            "while True:\n c,_=s.accept(); c.recv(65536); c.sendall(b'SSH-2.0-nope\\r\\n\\0\\1');"
            " c.close()\n"
        )
        for script in (echo, garbage):
            await sh(http, cid, f"python3 -c {shell_quote(script)}", background=True)
        await sh(http, cid, "sleep 1")
        proxy = {"X-API-Key": server.api_key}
        resp = await http.get(
            "/",
            headers={
                **proxy,
                "Host": f"8000-{cid}.localhost:{server.port}",
                "Authorization": "Bearer team-secret",
                "Proxy-Authorization": "Basic team-secret",
            },
        )
        assert resp.status_code == 200, resp.text
        assert "team-secret" not in resp.text
        assert server.api_key not in resp.text
        resp = await http.get("/", headers={**proxy, "Host": f"8001-{cid}.localhost:{server.port}"})
        assert resp.status_code == 502, resp.text
    # hosts: a team sees the shared local host and its own, never another team's
    async with local_http() as (server, http):
        jwts = []
        for email in ("a@x.io", "b@x.io"):
            account = {"email": email, "password": "long enough", "name": "U"}
            assert (await http.post("/v1/auth/signup", json=account)).status_code == 201
            login = await http.post("/v1/auth/login", json=account)
            jwts.append({"Authorization": f"Bearer {login.json()['token']}"})
        a, b = jwts
        made = await http.post("/v1/hosts", json={"type": "byoc"}, headers=a)
        host_id = made.json()["host"]["id"]
        listed_b = (await http.get("/v1/hosts", headers=b)).json()
        assert host_id not in {h["id"] for h in listed_b}
        assert len(listed_b) == 1  # the local host
        for method, path in (
            ("GET", f"/v1/hosts/{host_id}"),
            ("GET", f"/v1/hosts/{host_id}/tags"),
            ("DELETE", f"/v1/hosts/{host_id}"),
        ):
            assert (await http.request(method, path, headers=b)).status_code == 404
        team_a = (await http.get(f"/v1/hosts/{host_id}", headers=a)).json()["team_id"]
        foreign = await http.post("/v1/hosts", json={"type": "byoc", "team_id": team_a}, headers=b)
        assert foreign.status_code == 403
        # the shared local host: one team's tags are neither seen nor removed by another
        local_id = listed_b[0]["id"]
        tags = f"/v1/hosts/{local_id}/tags"
        assert (await http.post(tags, json={"tag": "a-only"}, headers=a)).status_code == 204
        assert (await http.post(tags, json={"tag": "b-only"}, headers=b)).status_code == 204
        assert (await http.delete(f"{tags}/a-only", headers=b)).status_code == 204
        assert (await http.get(tags, headers=a)).json() == ["a-only"]
        assert (await http.get(tags, headers=b)).json() == ["b-only"]
