"""wrenn_local files API and isolation, driven by plain httpx."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import httpx

from tests.localserver import local_http, new_capsule, sh


def multipart(path: str, data: bytes, *, file_first: bool = False) -> tuple[bytes, str]:
    boundary = secrets.token_hex(16)
    path_part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\n{path}\r\n'
    ).encode()
    file_part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="upload"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    file_part += data + b"\r\n"
    parts = file_part + path_part if file_first else path_part + file_part
    return parts + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


async def write(
    http: httpx.AsyncClient, cid: str, path: str, data: bytes, **kw: bool
) -> httpx.Response:
    body, ctype = multipart(path, data, **kw)
    return await http.post(
        f"/v1/capsules/{cid}/files/write", content=body, headers={"Content-Type": ctype}
    )


async def read(http: httpx.AsyncClient, cid: str, path: str) -> httpx.Response:
    return await http.post(f"/v1/capsules/{cid}/files/read", json={"path": path})


async def test_write_read_list_mkdir_remove() -> None:
    async with local_http() as (_, http):
        cid = await new_capsule(http)
        assert (await write(http, cid, "notes/a.txt", b"hello")).status_code == 204
        assert (
            await write(http, cid, "/tmp/deep/b.bin", bytes(range(256)), file_first=True)
        ).status_code == 204
        assert (await read(http, cid, "/home/wrenn-user/notes/a.txt")).content == b"hello"
        assert (await read(http, cid, "~/notes/a.txt")).content == b"hello"
        assert (await read(http, cid, "/tmp/deep/b.bin")).content == bytes(range(256))
        # written files belong to the capsule user, as commands see them
        assert (await sh(http, cid, "stat -c %U notes/a.txt"))["stdout"] == "wrenn-user\n"
        listing = (
            await http.post(
                f"/v1/capsules/{cid}/files/list", json={"path": "/home/wrenn-user", "depth": 2}
            )
        ).json()
        entries = {e["path"]: e for e in listing["entries"]}
        assert set(entries) == {"/home/wrenn-user/notes", "/home/wrenn-user/notes/a.txt"}
        entry = entries["/home/wrenn-user/notes/a.txt"]
        assert (entry["name"], entry["type"], entry["size"]) == ("a.txt", "file", 5)
        assert entry["permissions"] == "-rw-r--r--"
        assert entry["owner"] == "wrenn-user"
        assert isinstance(entry["modified_at"], int)
        assert entry["mode"] == 0o644
        assert entries["/home/wrenn-user/notes"]["type"] == "directory"
        shallow = (
            await http.post(
                f"/v1/capsules/{cid}/files/list", json={"path": "/home/wrenn-user", "depth": 0}
            )
        ).json()
        assert [e["name"] for e in shallow["entries"]] == ["notes"]
        await sh(http, cid, "ln -s notes/a.txt link")
        linked = (
            await http.post(f"/v1/capsules/{cid}/files/list", json={"path": "/home/wrenn-user"})
        ).json()["entries"]
        link = next(e for e in linked if e["name"] == "link")
        assert (link["type"], link["symlink_target"]) == ("file", "notes/a.txt")
        made = await http.post(f"/v1/capsules/{cid}/files/mkdir", json={"path": "/tmp/x/y/z"})
        assert made.status_code == 200
        assert made.json()["entry"]["type"] == "directory"
        again = await http.post(f"/v1/capsules/{cid}/files/mkdir", json={"path": "/tmp/x/y/z"})
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "conflict"
        assert "already_exists" in again.json()["error"]["message"]
        assert (
            await http.post(f"/v1/capsules/{cid}/files/mkdir", json={"path": "/tmp/deep/b.bin"})
        ).status_code == 400
        assert (
            await http.post(f"/v1/capsules/{cid}/files/remove", json={"path": "/tmp/x"})
        ).status_code == 204
        assert (await sh(http, cid, "test -e /tmp/x; echo $?"))["stdout"] == "1\n"


async def test_missing_paths_and_bad_requests() -> None:
    async with local_http() as (_, http):
        cid = await new_capsule(http)
        for op, body in (
            ("read", {"path": "/nope"}),
            ("list", {"path": "/nope"}),
            ("remove", {"path": "/nope"}),
            ("stream/read", {"path": "/nope"}),
        ):
            resp = await http.post(f"/v1/capsules/{cid}/files/{op}", json=body)
            assert (resp.status_code, resp.json()["error"]["code"]) == (404, "not_found"), op
        assert (await read(http, cid, "/tmp")).status_code == 400  # a directory
        assert (
            await http.post(f"/v1/capsules/{cid}/files/list", json={"path": "/etc/hostname"})
        ).status_code == 400
        assert (await http.post(f"/v1/capsules/{cid}/files/read", json={})).status_code == 400
        plain = await http.post(
            f"/v1/capsules/{cid}/files/write", content=b"x", headers={"Content-Type": "text/plain"}
        )
        assert plain.json()["error"]["message"] == "expected multipart/form-data"
        empty_path, ctype = multipart("", b"data")
        no_path = await http.post(
            f"/v1/capsules/{cid}/files/write", content=empty_path, headers={"Content-Type": ctype}
        )
        assert no_path.status_code == 400


async def test_upload_limit_and_streaming_of_any_size() -> None:
    async with local_http() as (_, http):
        cid = await new_capsule(http)
        size = 101 * 1024 * 1024
        boundary = "b" * 32
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\n/tmp/big'
            f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="upload.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        block = os.urandom(1 << 20)

        async def body() -> AsyncIterator[bytes]:
            yield head
            for _ in range(size // len(block)):
                yield block
            yield tail

        ctype = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        too_big = await http.post(f"/v1/capsules/{cid}/files/write", content=body(), headers=ctype)
        assert (too_big.status_code, too_big.json()["error"]["code"]) == (413, "too_large")
        assert (await sh(http, cid, "ls /tmp"))["stdout"] == ""  # nothing half-written
        streamed = await http.post(
            f"/v1/capsules/{cid}/files/stream/write", content=body(), headers=ctype
        )
        assert streamed.status_code == 204
        expected = size // len(block) * len(block)
        total = 0
        async with http.stream(
            "POST", f"/v1/capsules/{cid}/files/stream/read", json={"path": "/tmp/big"}
        ) as resp:
            assert resp.status_code == 200
            async for chunk in resp.aiter_bytes():
                assert chunk == block[total % len(block) : total % len(block) + len(chunk)]
                total += len(chunk)
        assert total == expected


async def test_capsules_are_isolated_from_each_other_and_the_host() -> None:
    async with local_http() as (server, http):
        a, b = await new_capsule(http), await new_capsule(http)
        await write(http, a, "/home/wrenn-user/secret", b"only a")
        # the files API has the capsule user's rights: /etc is the capsule's own, and
        # not writable by its user (tests/test_local_security.py attacks this)
        etc = await write(http, a, "/etc/wrenn-test", b"written over /etc")
        assert etc.status_code == (403 if server.isolation == "full" else 204)
        assert (await read(http, b, "/home/wrenn-user/secret")).status_code == 404
        assert (await read(http, b, "/etc/wrenn-test")).status_code == 404
        assert not os.path.exists("/etc/wrenn-test")  # the host's /etc is untouched
        # processes: B cannot see A's
        await sh(http, a, "sleep 60", background=True)
        ps_b = await sh(http, b, "ls /proc | grep -c '^[0-9]'")
        ps_a = await sh(http, a, "ls /proc | grep -c '^[0-9]'")
        assert int(ps_a["stdout"]) > int(ps_b["stdout"]) or server.isolation == "reduced"
        if server.isolation == "full":
            # network: each capsule has its own loopback, so both can use port 8000
            serve = "python3 -m http.server 8000 --bind 127.0.0.1 --directory /tmp"
            for cid in (a, b):
                await sh(http, cid, serve, background=True)
            probe = (
                'python3 -c "import urllib.request,time\nfor _ in range(50):\n try:\n'
                "  print(urllib.request.urlopen('http://127.0.0.1:8000/').status); break\n"
                ' except OSError: time.sleep(0.1)"'
            )
            assert (await sh(http, a, probe))["stdout"] == "200\n"
            assert (await sh(http, b, probe))["stdout"] == "200\n"
            # the server's data directory and host secrets are not visible
            assert (await read(http, a, str(server.data_dir))).status_code == 404
            shadow = await read(http, a, "/etc/shadow")
            assert b"$" not in shadow.content  # no password hashes from the host
            assert (await sh(http, a, "ls /root /work 2>&1; true"))["stdout"].count("No such") >= 1


async def test_paths_cannot_escape_the_capsule() -> None:
    async with local_http() as (server, http):
        cid = await new_capsule(http)
        await sh(http, cid, "ln -s / rootlink; ln -s ../../../../.. up")
        marker = server.data_dir / "host-marker"
        marker.write_text("host only")
        for path in (
            str(marker),
            "/../../../../" + str(marker),
            "rootlink" + str(marker),
            "up" + str(marker),
            "/proc/1/root" + str(marker),
            "/proc/self/root" + str(marker),
        ):
            resp = await read(http, cid, path)
            assert resp.status_code in (400, 403, 404), (path, resp.status_code)
            assert b"host only" not in resp.content
        body, ctype = multipart("../../../../../../" + str(server.data_dir / "planted"), b"x")
        await http.post(
            f"/v1/capsules/{cid}/files/write", content=body, headers={"Content-Type": ctype}
        )
        assert not (server.data_dir / "planted").exists()


async def test_writes_are_bounded_in_time_when_the_client_vanishes() -> None:
    async with local_http() as (server, http):
        cid = await new_capsule(http)
        body, ctype = multipart("/tmp/partial", b"")
        head = body[: body.index(b"\r\n\r\n", body.index(b'name="file"')) + 4]
        host, port = server.host, server.port
        request = (
            f"POST /v1/capsules/{cid}/files/stream/write HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"X-API-Key: {server.api_key}\r\nContent-Type: {ctype}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
        chunk = head + b"x" * 65536
        # A real client socket that sends part of an upload, then hangs up.
        async with await anyio.connect_tcp(host, port) as sock:
            await sock.send(request)
            for _ in range(20):
                await sock.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                chunk = b"x" * 65536
            with anyio.fail_after(10):  # the upload is really under way before we vanish
                while ".part" not in (await sh(http, cid, "ls -A /tmp"))["stdout"]:
                    await anyio.sleep(0.05)
        # an aborted upload leaves no file behind (the server notices the disconnect
        # asynchronously, so allow it a bounded moment)
        with anyio.fail_after(10):
            while (await sh(http, cid, "ls -A /tmp"))["stdout"] != "":
                await anyio.sleep(0.1)
