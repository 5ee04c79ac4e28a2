"""Attacks on wrenn_local from inside a capsule and from other accounts (issue 17).

Each test attacks one protection and fails if the attack works. Tests that need full
isolation (root, bubblewrap, overlayfs) are skipped under reduced isolation, which does
not claim these protections (docs/design/security.md).
"""

from __future__ import annotations

import os
import secrets

import anyio
import httpx
import pytest

from tests.localserver import local_http, new_capsule, sh
from tests.test_local_files import multipart


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
            await sh(http, cid, "pkill -KILL -f files-worker; true")
            assert (await read(http, cid, "/tmp/mine")).content == b"ok"
    finally:
        os.unlink(hidden)
