"""git inside a capsule, against wrenn_local."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import wrenn_local
from tests.localserver import FAST
from tests.sync_facade import Api, open_client
from wrenn import (
    AsyncCapsule,
    GitAuthError,
    GitCommandError,
)
from wrenn._git import parse_status

AUTH_SERVER = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", 8123), H).serve_forever()
"""


@pytest.fixture
async def cap(api: Api) -> AsyncIterator[AsyncCapsule]:
    """A capsule through the async API, or through the sync one behind an async face."""
    async with (
        wrenn_local.serve(options=FAST) as server,
        open_client(api, api_key=server.api_key, base_url=server.base_url) as client,
        client.capsule() as capsule,
    ):
        yield capsule


async def test_a_whole_workflow(cap: AsyncCapsule) -> None:
    await cap.git.init("/tmp/remote.git", bare=True, initial_branch="main")
    await cap.git.configure_user("Ada", "ada@example.com")
    await cap.git.clone("file:///tmp/remote.git", "work")
    repo = "/home/wrenn-user/work"
    await cap.files.write("work/readme.md", "hello\n")
    status = await cap.git.status(cwd=repo)
    assert status.has_untracked
    assert not status.is_clean
    await cap.git.add(cwd=repo)
    assert (await cap.git.status(cwd=repo)).has_staged
    await cap.git.commit("first", cwd=repo)
    await cap.git.push("origin", "main", set_upstream=True, cwd=repo)
    status = await cap.git.status(cwd=repo)
    assert status.is_clean
    assert (status.branch, status.upstream, status.ahead) == ("main", "origin/main", 0)
    await cap.git.create_branch("feature", cwd=repo)
    names = {b.name: b.is_current for b in await cap.git.branches(cwd=repo)}
    assert names == {"main": False, "feature": True}
    await cap.git.checkout_branch("main", cwd=repo)
    await cap.git.delete_branch("feature", cwd=repo)
    assert await cap.git.remote_get(cwd=repo) == "file:///tmp/remote.git"
    assert await cap.git.remote_get("nope", cwd=repo) is None
    await cap.git.set_config("core.autocrlf", "false", cwd=repo)
    assert await cap.git.get_config("core.autocrlf", cwd=repo) == "false"
    await cap.files.write("work/readme.md", "changed\n")
    await cap.git.restore(["readme.md"], cwd=repo)
    assert await cap.files.read("work/readme.md") == "hello\n"
    await cap.git.commit("empty", allow_empty=True, cwd=repo)
    assert (await cap.git.status(cwd=repo)).ahead == 1
    await cap.git.reset(mode="hard", ref="HEAD~1", cwd=repo)
    await cap.git.pull(cwd=repo, ff_only=True)
    with pytest.raises(GitCommandError) as info:
        await cap.git.checkout_branch("does-not-exist", cwd=repo)
    assert info.value.exit_code != 0
    assert "does-not-exist" in info.value.stderr


async def test_a_failure_git_reports_on_stdout_is_in_the_message(cap: AsyncCapsule) -> None:
    # ``git commit`` with nothing to commit says so on stdout, stderr empty. The official
    # SDK's message falls back to stdout, and programs test it ("nothing to commit" in
    # str(exc)); ours read "git commit failed (1): " with nothing after it.
    await cap.git.init("/tmp/repo", initial_branch="main")
    await cap.git.configure_user("Ada", "ada@example.com")
    with pytest.raises(GitCommandError) as info:
        await cap.git.commit("nothing", cwd="/tmp/repo")
    assert info.value.stderr == ""
    assert "nothing to commit" in str(info.value)
    assert "nothing to commit" in info.value.message


@pytest.mark.async_only  # observes the async object's own calls
async def test_credentials_stay_off_argv_and_config(
    cap: AsyncCapsule, monkeypatch: pytest.MonkeyPatch
) -> None:
    await cap.git.init("/tmp/remote.git", bare=True, initial_branch="main")
    calls: list[dict[str, Any]] = []
    original = cap.commands.run

    async def recording(cmd: str, **kw: Any) -> Any:
        calls.append({"cmd": cmd, **kw})  # observe what the SDK sends: our own call site
        return await original(cmd, **kw)

    monkeypatch.setattr(cap.commands, "run", recording)
    await cap.git.clone("file:///tmp/remote.git", "repo", username="ada", password="hunter2-secret")
    git_calls = [c for c in calls if c["cmd"] == "git"]
    assert git_calls
    for call in git_calls:
        assert "hunter2-secret" not in " ".join(call["args"])
        assert call["envs"]["WRENN_GIT_PASSWORD"] == "hunter2-secret"
    config = await cap.files.read("repo/.git/config")
    assert "hunter2" not in config
    leftovers = (await original("ls -a /tmp")).stdout
    assert ".wrenn-askpass" not in leftovers
    # credentials written in the URL reach git by askpass as well, never argv
    calls.clear()
    with pytest.raises(GitCommandError):
        await cap.git.clone("http://ada:url-secret@127.0.0.1:1/r.git", "other")
    git_calls = [c for c in calls if c["cmd"] == "git"]
    assert git_calls
    for call in git_calls:
        assert "url-secret" not in " ".join(call["args"])


async def _listening(cap: AsyncCapsule, port: int) -> None:
    """Wait (bounded, inside the capsule) until something listens on ``port``."""
    probe = (
        "import socket, time\nfor _ in range(200):\n    try:\n"
        f"        socket.create_connection(('127.0.0.1', {port})).close(); break\n"
        "    except OSError:\n        time.sleep(0.05)\n"
    )
    await cap.commands.run("python3", args=["-c", probe])


async def test_auth_failures_are_git_auth_errors(cap: AsyncCapsule) -> None:
    await cap.files.write("/tmp/auth.py", AUTH_SERVER)
    await cap.commands.run("python3 /tmp/auth.py", background=True)
    await _listening(cap, 8123)
    with pytest.raises(GitAuthError) as info:
        await cap.git.clone("http://127.0.0.1:8123/repo.git", "x")
    # the official SDK's message is "git clone: authentication failed"; ours begins so
    assert str(info.value).startswith("git clone: authentication failed")
    with pytest.raises(GitAuthError):
        await cap.git.clone("http://127.0.0.1:8123/repo.git", "y", username="ada", password="no")


DUMB_HTTP_SERVER = r"""
import base64, functools, http.server
WANT = "Basic " + base64.b64encode(b"ada:s3cret").decode()
class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Authorization") != WANT:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()
    def log_message(self, *a): pass
handler = functools.partial(H, directory="/tmp/srv")
http.server.HTTPServer(("127.0.0.1", 8124), handler).serve_forever()
"""

SERVED_REPO = (
    "set -e; git init -q --bare --initial-branch=main /tmp/srv/repo.git;"
    " git init -q --initial-branch=main /tmp/w; cd /tmp/w; echo hi > f; git add f;"
    " git -c user.name=A -c user.email=a@x commit -qm one; git push -q /tmp/srv/repo.git main;"
    " git --git-dir=/tmp/srv/repo.git update-server-info"
)


async def test_clone_urls_as_official_programs_write_them(cap: AsyncCapsule) -> None:
    # The official SDK clones any URL it is given. Ours refused every URL with an "@"
    # before the first "/" (WrennValidationError), which took in SSH URLs
    # (git@host:org/r.git, ssh://git@host/...) and https://user:token@host/... alike.
    done = await cap.commands.run(SERVED_REPO)
    assert done.exit_code == 0, done.stderr
    await cap.files.write("/tmp/srv.py", DUMB_HTTP_SERVER)
    await cap.commands.run("python3 /tmp/srv.py", background=True)
    await _listening(cap, 8124)
    url = "http://ada:s3cret@127.0.0.1:8124/repo.git"
    await cap.git.clone(url, "/tmp/c1")
    assert await cap.files.read("/tmp/c1/f") == "hi\n"
    # as under the official SDK, origin is the URL as given, so later pulls authenticate
    assert await cap.git.remote_get(cwd="/tmp/c1") == url
    await cap.git.pull(cwd="/tmp/c1")
    # username=/password= take the place of the URL's, and are not stored
    await cap.git.clone(
        "http://someone:wrong@127.0.0.1:8124/repo.git", "/tmp/c2", username="ada", password="s3cret"
    )
    assert await cap.git.remote_get(cwd="/tmp/c2") == "http://127.0.0.1:8124/repo.git"
    with pytest.raises(GitAuthError):
        await cap.git.clone("http://ada:wrong@127.0.0.1:8124/repo.git", "/tmp/c3")
    for ssh in ("git@127.0.0.1:org/r.git", "ssh://git@127.0.0.1:1/org/r.git"):
        with pytest.raises(GitCommandError):  # git tried (nothing listens), not refused
            await cap.git.clone(ssh, "/tmp/c4", envs={"GIT_SSH_COMMAND": "ssh -o BatchMode=yes"})


def test_parse_status() -> None:
    status = parse_status(
        "## main...origin/main [ahead 2, behind 1]\nM  staged.py\n M changed.py\n"
        "?? new.txt\nR  old.py -> new.py\nUU both.py\n"
    )
    assert (status.branch, status.upstream, status.ahead, status.behind) == (
        "main",
        "origin/main",
        2,
        1,
    )
    kinds = {f.path: f.status for f in status.files}
    assert kinds == {
        "staged.py": "modified",
        "changed.py": "modified",
        "new.txt": "untracked",
        "new.py": "renamed",
        "both.py": "conflict",
    }
    assert status.has_staged
    assert status.has_conflicts
    assert parse_status("## No commits yet on main\n").branch == "main"
    assert parse_status("## HEAD (no branch)\n").detached
