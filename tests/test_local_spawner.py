"""Commands as the capsule user go through the agent's spawner (agent.py, "spawner"): a
fork of the agent dropped to ``wrenn-user`` that starts each command on CPython's vfork
path. These tests drive the real server and look at the processes from inside."""

from __future__ import annotations

import secrets
from functools import partial

import anyio
import httpx

from tests.localserver import local_http, new_capsule, sh

# The spawner: the agent's program, a child of the agent (whose parent is bubblewrap, pid
# 1); the files worker is the same program with --files-worker. The brackets keep grep
# from finding this shell's own command line.
SPAWNER = (
    "for d in /proc/[0-9]*; do "
    "grep -q '[a]gent.py' $d/cmdline 2>/dev/null && ! grep -q 'files-[w]orker' $d/cmdline "
    "&& ! grep -q '^PPid:\t[01]$' $d/status && echo ${d#/proc/}; done"
)
# This shell's parent: its uid and its command line (the spawner, or the root agent).
PARENT = "P=$(grep PPid: /proc/$$/status | cut -f2); grep Uid: /proc/$P/status | cut -f2"


async def _spawner(http: httpx.AsyncClient, cid: str) -> int:
    pids = (await sh(http, cid, SPAWNER))["stdout"].split()
    assert len(pids) == 1, pids
    return int(pids[0])


async def _count(http: httpx.AsyncClient, cid: str, marker: str) -> int:
    # the bracket keeps pgrep from finding its own shell's command line
    out = await sh(http, cid, f"pgrep -f 'sleep [{marker[0]}]{marker[1:]}' | wc -l")
    return int(out["stdout"])


async def _wait_count(http: httpx.AsyncClient, cid: str, marker: str, least: int) -> None:
    """Until ``least`` processes name the marker (0: until none does)."""
    with anyio.fail_after(15):
        while not ((count := await _count(http, cid, marker)) >= least and (least or not count)):
            await anyio.sleep(0.1)


async def test_a_command_runs_as_the_user_with_its_cwd_env_and_exit_code() -> None:
    async with local_http() as (_, http):
        cid = await new_capsule(http)
        script = 'id -u; id -g; id -G; pwd; echo "$GREETING"; echo oops >&2; ' + PARENT
        got = await sh(http, cid, script + "; exit 7", cwd="/tmp", envs={"GREETING": "hi  there"})
        lines = got["stdout"].splitlines()
        assert lines[:5] == ["1000", "1000", "1000", "/tmp", "hi  there"], got
        # started by the spawner (a wrenn-user process), not by the root agent directly
        assert lines[5] == "1000", got
        assert got["stderr"] == "oops\n"
        assert got["exit_code"] == 7
        # the same spawner serves every command
        assert await _spawner(http, cid) == await _spawner(http, cid)
        # a signal that ends the command shows as -1, as for the direct path
        assert (await sh(http, cid, "kill -TERM $$"))["exit_code"] == -1
        # a program that cannot run fails as the direct path's (and envd's): exit 127
        resp = await http.post(f"/v1/capsules/{cid}/exec", json={"cmd": "no-such-command"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["exit_code"] == 127
        assert resp.json()["stderr"] == "no-such-command: not found\n"


async def test_timeout_and_a_client_going_away_kill_the_whole_group() -> None:
    async with local_http() as (server, http):
        cid = await new_capsule(http)
        marker = f"1000.{secrets.randbelow(10**6)}"
        script = f"sleep {marker} & sleep {marker}; true"
        resp = await http.post(
            f"/v1/capsules/{cid}/exec",
            json={"cmd": "/bin/sh", "args": ["-c", script], "timeout_sec": 1},
        )
        assert resp.status_code != 200, resp.text
        await _wait_count(http, cid, marker, 0)

        marker = f"1000.{secrets.randbelow(10**6)}"
        body = {"cmd": "/bin/sh", "args": ["-c", f"sleep {marker} & sleep {marker}; true"]}
        async with (
            httpx.AsyncClient(
                base_url=server.base_url, headers={"X-API-Key": server.api_key}, timeout=60
            ) as victim,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(partial(victim.post, f"/v1/capsules/{cid}/exec", json=body))
            await _wait_count(http, cid, marker, 3)  # the shell and its two sleeps
            tg.cancel_scope.cancel()  # the request is abandoned; the client closes below
        await _wait_count(http, cid, marker, 0)


async def test_a_killed_or_stopped_spawner_does_not_wedge_exec() -> None:
    async with local_http() as (_, http):
        cid = await new_capsule(http)
        first = await _spawner(http, cid)
        # killed while the command that killed it runs: its output still arrives, its
        # exit status died with the spawner (-1, as for a killed command); or, killed
        # before it said the command started, an error. Never run a second time.
        script = f"echo run >> /tmp/runs; echo before; kill -9 {first}; sleep 0.2; echo after"
        resp = await http.post(
            f"/v1/capsules/{cid}/exec", json={"cmd": "/bin/sh", "args": ["-c", script]}
        )
        if resp.status_code == 200:
            assert resp.json()["stdout"] == "before\nafter\n"
            assert resp.json()["exit_code"] == -1
        else:
            assert resp.json()["error"]["code"] == "agent_error", resp.text
        assert (await sh(http, cid, "sleep 0.3; cat /tmp/runs"))["stdout"] == "run\n"
        # the next command starts a new spawner
        got = await sh(http, cid, PARENT + "; exit 5")
        assert (got["stdout"], got["exit_code"]) == ("1000\n", 5)
        second = await _spawner(http, cid)
        assert second != first
        # stopped (SIGSTOP) while its command runs: that command's exec ends (with its
        # output, or the error above), and the next command is started all the same
        with anyio.fail_after(20):
            resp = await http.post(
                f"/v1/capsules/{cid}/exec",
                json={"cmd": "/bin/sh", "args": ["-c", f"kill -STOP {second}; echo stopped"]},
            )
            if resp.status_code == 200:  # else stopped before it said it started it
                assert resp.json()["stdout"] == "stopped\n"
            got = await sh(http, cid, "id -u; exit 3")
        assert (got["stdout"], got["exit_code"]) == ("1000\n", 3)
        assert await _spawner(http, cid) not in (first, second)


# Run as wrenn-user inside the capsule: take the spawner's descriptors (pidfd_getfd) or
# trace it; with its channel, ask for a command as root (the channel's far end is the
# agent, which takes only replies from it: a stolen channel is already a failure).
ATTACK = r"""
import ctypes, json, os, socket, sys
pid = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
status = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status").read().splitlines())
for key in ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "NoNewPrivs"):
    print(key, " ".join(status[key].split()))
pidfd = os.pidfd_open(pid)
stolen = []
for fd in range(64):
    got = libc.syscall(438, pidfd, fd, 0)  # pidfd_getfd
    if got >= 0:
        stolen.append(got)
    elif ctypes.get_errno() not in (1, 9):  # EPERM: refused; EBADF: no such descriptor
        print("getfd-errno", ctypes.get_errno())
print("stolen", len(stolen))
for fd in stolen:
    try:
        sock = socket.socket(fileno=fd)
        if sock.type != socket.SOCK_SEQPACKET:
            continue
    except OSError:
        continue
    out_r, out_w = os.pipe()
    request = {"id": 999, "argv": ["/usr/bin/id", "-u"], "env": {}, "cwd": "/",
               "uid": 0, "gid": 0, "user": "root"}
    socket.send_fds(sock, [json.dumps(request).encode()], [out_w, out_w])
    os.close(out_w)
    print("spawned-as", os.read(out_r, 100).decode().strip() or "nothing")
print("ptrace", libc.ptrace(16, pid, 0, 0) == 0)  # PTRACE_ATTACH (last: it stops it)
"""


async def test_a_user_cannot_use_the_spawner_to_get_root() -> None:
    async with local_http() as (_, http):
        cid = await new_capsule(http)
        pid = await _spawner(http, cid)
        got = await sh(http, cid, f"python3 -c '{ATTACK}' {pid}")
        assert got["exit_code"] == 0, got
        report = dict(line.split(" ", 1) for line in got["stdout"].splitlines())
        # dropped for good: real, effective, saved and filesystem ids; no groups, no
        # capabilities (so it could not switch back whatever it is asked)
        assert report["Uid"] == "1000 1000 1000 1000", report
        assert report["Gid"] == "1000 1000 1000 1000", report
        assert report.get("Groups", "") == "", report
        for caps in ("CapInh", "CapPrm", "CapEff"):
            assert int(report[caps], 16) == 0, report
        assert report["NoNewPrivs"] == "1", report
        # not dumpable: capsule code (same user) can neither take its channel nor trace it
        assert report["stolen"] == "0", report
        assert report["ptrace"] == "False", report
        assert "spawned-as" not in report or report["spawned-as"] != "0", report


async def test_two_hundred_concurrent_commands_through_the_spawner_all_finish() -> None:
    # Every command's pipes, pidfd and exit record cross the one channel: 200 at once must
    # neither deadlock it (each side's buffer full while the other sends) nor mix up answers.
    async with local_http() as (server, http):
        cid = await new_capsule(http)
        spawner = await _spawner(http, cid)
        results: dict[int, dict[str, object]] = {}
        limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
        async with httpx.AsyncClient(
            base_url=server.base_url,
            headers={"X-API-Key": server.api_key},
            timeout=120,
            limits=limits,
        ) as many:

            async def one(n: int) -> None:
                body = {
                    "cmd": "/bin/sh",
                    "args": ["-c", f'echo {n}; echo "$PPID" >&2; exit {n % 100}'],
                }
                resp = await many.post(f"/v1/capsules/{cid}/exec", json=body)
                assert resp.status_code == 200, resp.text
                results[n] = resp.json()

            with anyio.fail_after(120):
                async with anyio.create_task_group() as tg:
                    for n in range(200):
                        tg.start_soon(one, n)
        assert sorted(results) == list(range(200))
        for n, got in results.items():
            assert (got["stdout"], got["exit_code"]) == (f"{n}\n", n % 100), got
            # started by the spawner, not by the direct path after a spawner failure
            assert got["stderr"] == f"{spawner}\n", got
        assert await _spawner(http, cid) == spawner


# What a command inherits: the same through the spawner as on the direct path.
INHERITED = (
    "grep -E '^(Uid|Gid|Groups|Umask|SigBlk|SigIgn|CapInh|CapPrm|CapEff|CapBnd|CapAmb"
    "|NoNewPrivs|Seccomp):' /proc/self/status; cat /proc/self/oom_score_adj; ulimit -a;"
    " ls /proc/self/fd | sort -n | tr '\\n' ' '; echo; env | cut -d= -f1 | sort | tr '\\n' ' ';"
    ' echo; ps -o sid=,pgid= -p $$ | awk \'{print ($1 == $2) ? "own-session" : "shared"}\'; '
    + PARENT
)


async def test_a_command_inherits_the_same_through_the_spawner_as_directly() -> None:
    # An env too large for the spawner's message (SPAWN_MESSAGE_MAX) takes the direct
    # path: the same command, started both ways, must see the same process attributes
    # (ids, capabilities, no_new_privs, seccomp, signal mask, rlimits, OOM score),
    # descriptors (0-2 and the one ls opens) and no variable of the agent's own.
    async with local_http() as (_, http):
        cid = await new_capsule(http)
        big = {f"PAD{i}": "x" * 60_000 for i in range(4)}
        spawned = await sh(http, cid, INHERITED, envs={"PAD0": "x"})
        direct = await sh(http, cid, INHERITED, envs=big)
        *same_spawned, parent_spawned = spawned["stdout"].splitlines()
        *same_direct, parent_direct = direct["stdout"].splitlines()
        assert (parent_spawned, parent_direct) == ("1000", "0"), (spawned, direct)
        keys_spawned = set(same_spawned.pop(-2).split()) - {"PAD0"}
        keys_direct = set(same_direct.pop(-2).split()) - set(big)
        assert keys_spawned == keys_direct, (keys_spawned, keys_direct)
        assert same_spawned == same_direct, (spawned["stdout"], direct["stdout"])
        assert "NoNewPrivs:\t1" in same_spawned, spawned
        assert "0 1 2 3 " in same_spawned, spawned  # stdin, out, err and ls's own
        assert "own-session" in same_spawned, spawned
