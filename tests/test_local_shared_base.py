"""The base template shared by one user's servers (wrenn_local/_shared_base.py).

What must hold: a base is made once per content of the host's /etc and found again by
the next server; one held by a running server is never removed, one nobody holds and
whose /etc is gone is; two servers making it at once both end up with one whole base;
a directory another account could write is never used; and no capsule, even as its
root, can change the base other capsules and servers boot from, or find it.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import wrenn_local
from tests.localserver import local_http, new_capsule, sh
from wrenn_local import _shared_base
from wrenn_local._shared_base import MAKING, base_home, etc_key, hold_base


def tree_digest(root: Path) -> str:
    """Every entry under ``root``: path, type, mode, owner, and a file's bytes or a
    link's target."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        digest.update(f"{path.relative_to(root)} {info.st_mode:o} {info.st_uid}".encode())
        if path.is_symlink():
            digest.update(os.readlink(path).encode())
        elif path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_the_key_follows_what_capsules_would_see_of_etc(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    (etc / "apt").mkdir(parents=True)
    (etc / "apt" / "sources.list").write_text("deb a\n")
    (etc / "ssl").mkdir()
    (etc / "ssl" / "private").mkdir(mode=0o700)
    (etc / "ssl" / "private" / "key.pem").write_text("secret\n")
    (etc / "shadow").write_text("root:x\n")
    (etc / "localtime").symlink_to("/usr/share/zoneinfo/UTC")
    first = etc_key(etc)
    assert etc_key(etc) == first  # the same listing, the same key

    # what a capsule sees never shows in it: a secret, or a directory only root lists
    (etc / "shadow").write_text("root:$6$changed\n")
    (etc / "ssl" / "private" / "key.pem").write_text("another secret\n")
    (etc / "ssl" / "private" / "new.pem").write_text("and another\n")
    assert etc_key(etc) == first

    def relink() -> None:
        (etc / "localtime").unlink()
        (etc / "localtime").symlink_to("/usr/share/zoneinfo/Europe/Paris")

    changes: list[Callable[[], object]] = [
        lambda: (etc / "apt" / "sources.list").write_text("deb bb\n"),  # new content
        lambda: (etc / "apt" / "sources.list").chmod(0o600),  # a mode
        lambda: (etc / "hostname").write_text("box\n"),  # a new file
        relink,  # a link's target
        lambda: (etc / "apt" / "sources.list").unlink(),  # a file removed
    ]
    seen = {first}
    for change in changes:
        change()
        key = etc_key(etc)
        assert key not in seen, change
        seen.add(key)


def test_a_base_is_made_once_and_found_again(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = hold_base(tmp_path / "own", home=home)
    second = hold_base(tmp_path / "own", home=home)
    try:
        assert first.path == second.path == home / etc_key()
        assert (home.stat().st_mode & 0o777) == 0o700
        assert sorted(p.name for p in first.path.iterdir()) == ["etc", "skeleton", "usr"]
        passwd = (first.path / "etc" / "passwd").read_text().splitlines()
        assert [line for line in passwd if line.startswith("wrenn-user:")] == [
            "wrenn-user:x:1000:1000:Wrenn user:/home/wrenn-user:/bin/bash"
        ]
        assert not (first.path / "etc" / "shadow").read_text().count("$")  # no hashes
        assert not (tmp_path / "own").exists()  # no base of its own was made
        assert os.listdir(home) == [first.path.name]  # nothing half-made left
    finally:
        first.release()
        second.release()
    third = hold_base(tmp_path / "own", home=home)  # kept for the next server
    third.release()
    assert third.path == first.path


def test_a_base_in_use_is_kept_and_one_nobody_holds_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Mocked: the host's /etc "changing" between two servers (the key is its digest;
    # changing the real /etc would change it under every other test on the machine).
    home = tmp_path / "home"
    monkeypatch.setattr(_shared_base, "etc_key", lambda: "old")
    held = hold_base(tmp_path / "own", home=home)
    unheld = hold_base(tmp_path / "own", home=home)
    unheld.release()
    monkeypatch.setattr(_shared_base, "etc_key", lambda: "new")
    # a dead maker's leftover (unlocked, old) goes; a fresh one may be a live maker's
    dead = home / f"{MAKING}dead"
    dead.mkdir()
    os.utime(dead, (time.time() - 3600, time.time() - 3600))
    fresh = home / f"{MAKING}fresh"
    fresh.mkdir()
    new = hold_base(tmp_path / "own", home=home)
    try:
        assert new.path == home / "new"
        # "old" is still held (by ``held``): kept, whole
        assert sorted(os.listdir(home)) == sorted([f"{MAKING}fresh", "new", "old"])
        assert (home / "old" / "etc" / "passwd").is_file()
        held.release()
        again = hold_base(tmp_path / "own", home=home)  # the next start removes it
        again.release()
        assert sorted(os.listdir(home)) == sorted([f"{MAKING}fresh", "new"])
    finally:
        new.release()


def test_servers_making_the_same_base_at_once_get_one_whole_base(tmp_path: Path) -> None:
    home = tmp_path / "home"
    got: list[_shared_base.SharedBase] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def one() -> None:
        start.wait()
        try:
            got.append(hold_base(tmp_path / "own", home=home))
        except BaseException as exc:  # collected: the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert not errors, errors
        assert len({base.path for base in got}) == 1
        assert os.listdir(home) == [got[0].path.name]  # the losers' copies are gone
        assert (got[0].path / "usr" / "bin" / "sudo").is_file()
    finally:
        for base in got:
            base.release()


@pytest.mark.parametrize("how", ["open to others", "another account's", "a symlink"])
def test_a_directory_others_could_write_is_never_used(tmp_path: Path, how: str) -> None:
    home = tmp_path / "home"
    if how == "open to others":
        home.mkdir(mode=0o777)
        home.chmod(0o777)
    elif how == "another account's":
        home.mkdir(mode=0o700)
        os.chown(home, 12345, 12345)  # (the tests run as root: any owner can be given)
    else:
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        home.symlink_to(tmp_path / "elsewhere")
    base = hold_base(tmp_path / "own", home=home)
    assert base.path == tmp_path / "own"  # a base of the server's own
    assert base.fd is None
    assert (base.path / "etc" / "passwd").is_file()
    # nothing was made where others could have put or changed it
    assert not any((tmp_path / "elsewhere" if how == "a symlink" else home).iterdir())


async def test_servers_share_the_base_and_no_capsule_can_change_or_find_it() -> None:
    async with local_http() as (server, http):
        if server.isolation != "full":
            pytest.skip("reduced isolation boots from no base template")
        base = server.capsules.base
        assert base.parent == base_home()
        before = tree_digest(base)
        cid = await new_capsule(http)
        # as the capsule's user and as its root: change /etc, the skeleton's dirs, sudo
        attack = (
            "echo 'evil:x:0:0::/:/bin/sh' >> /etc/passwd; echo evil > /etc/evil;"
            " chmod 777 /etc/hosts; rm -f /etc/group; echo x > /usr/bin/sudo;"
            " mkdir -p /home/evil; ls -d /tmp/wrenn-base-* 2>/dev/null;"
            f" ls -d {base_home()} {base} 2>/dev/null; echo done"
        )
        as_user = await sh(http, cid, attack)
        as_root = await sh(http, cid, f'sudo -n sh -c "{attack}"')
        for got in (as_user, as_root):
            assert got["stdout"].splitlines() == ["done"], got  # the base was not found
        assert tree_digest(base) == before  # nothing of it changed on the host
        # another capsule, and another server, boot from it unchanged
        other = await new_capsule(http)
        out = await sh(http, other, "grep -c '^evil:' /etc/passwd; test -e /etc/evil; echo $?")
        assert out["stdout"].split() == ["0", "1"], out
        async with wrenn_local.serve() as second:
            assert second.capsules.base == base


async def test_an_older_servers_own_base_in_a_data_dir_is_removed(tmp_path: Path) -> None:
    # a data directory an older server used kept its own copy of the base: not used now
    data = tmp_path / "data"
    (data / "base" / "etc").mkdir(parents=True)
    (data / "base" / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    async with wrenn_local.serve(data_dir=data) as server:
        assert server.capsules.base.parent == base_home()
        assert not (data / "base").exists()


def test_a_maker_killed_mid_make_leaves_a_leftover_that_goes_once_old(tmp_path: Path) -> None:
    """A real maker process, SIGKILLed while making: its lock dies with it, so its
    half-made ``.making-*`` is removed by the next server once it is old enough to be
    nobody's (never while its maker lives, however old it looks), and servers meanwhile
    make and use a whole base of their own."""
    import signal
    import subprocess
    import sys

    home = tmp_path / "home"
    maker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from wrenn_local import _shared_base\n"
            "def stuck(where):\n"
            "    (Path(where) / 'half').write_text('made')\n"
            "    print('making', flush=True)\n"
            "    time.sleep(120)\n"
            "_shared_base.prepare_base = stuck\n"
            "_shared_base.hold_base(Path(sys.argv[1]), home=Path(sys.argv[2]))\n",
            str(tmp_path / "own-of-maker"),
            str(home),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert maker.stdout is not None
        assert maker.stdout.readline().strip() == "making"
        (leftover,) = [home / n for n in os.listdir(home) if n.startswith(MAKING)]
        assert (leftover / "half").read_text() == "made"
        long_ago = time.time() - 3600
        os.utime(leftover, (long_ago, long_ago))
        # however old it looks, a live maker's directory is kept
        live = hold_base(tmp_path / "own", home=home)
        live.release()
        assert leftover.is_dir()
    finally:
        maker.send_signal(signal.SIGKILL)
        maker.wait(10)
        if maker.stdout is not None:
            maker.stdout.close()
    # dead now, but just made: perhaps a live maker's that has not locked it yet
    os.utime(leftover, None)
    fresh = hold_base(tmp_path / "own", home=home)
    assert fresh.path == home / etc_key()
    assert (fresh.path / "etc" / "passwd").is_file()
    fresh.release()
    assert leftover.is_dir()
    os.utime(leftover, (long_ago, long_ago))
    again = hold_base(tmp_path / "own", home=home)  # the next start removes it
    again.release()
    assert not leftover.exists()
    assert sorted(os.listdir(home)) == [etc_key()]
