#!/usr/bin/python3 -I
"""``sudo`` for a capsule: asks the capsule's agent to run a command as capsule root.

Installed as ``/usr/bin/sudo`` in every full-isolation capsule. It is *not* setuid
(bubblewrap sets no-new-privileges, so setuid could not work anyway, and nothing in a
capsule needs it): it connects to the agent's sudo socket (``/run/wrenn/sudo.sock``,
reachable only inside the capsule) and sends the command, its environment and its
standard input, output, error and working directory as descriptors (SCM_RIGHTS). The
agent, root of the capsule's own user namespace (never of the host), checks that the
peer is a process of the capsule (SO_PEERCRED), runs the command as the target user
and returns its exit status. Like the cloud's ``wrenn-user``, every user of the capsule
may use it without a password.

Options: ``-u USER``, ``-g GROUP``, ``-E`` / ``--preserve-env[=LIST]``, ``-H``, ``-i``,
``-s``, ``-D DIR``, ``-n``, ``-S``, ``-k``/``-K``/``-v`` (nothing to do), ``-l``, ``-h``,
``-V``, ``VAR=value`` before the command. No tty is given to the command as its
controlling terminal; signals sent to ``sudo`` are passed on to the command.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import signal
import socket
import struct
import sys

SOCKET = "/run/wrenn/sudo.sock"
SECURE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KEEP = ("TERM", "COLORTERM", "DISPLAY", "LANG", "LANGUAGE", "TZ", "COLUMNS", "LINES")
VERSION = "Sudo version 1.9 (wrenn capsule sudo: asks the capsule agent)"
USAGE = (
    "usage: sudo [-EHinsS] [-u user] [-g group] [-D directory] [VAR=value] [command [arg ...]]\n"
)


def fail(message: str, code: int = 1) -> int:
    sys.stderr.write(f"sudo: {message}\n")
    return code


def parse(argv: list[str]) -> dict[str, object] | int:
    opts: dict[str, object] = {"user": "root", "group": None, "preserve": None, "chdir": None}
    flags: set[str] = set()
    i = 0
    with_value = {"u": "user", "g": "group", "D": "chdir", "p": "prompt", "C": "close_from"}
    long_value = {"--user": "user", "--group": "group", "--chdir": "chdir", "--prompt": "prompt"}
    long_flag = {
        "--non-interactive": "n",
        "--stdin": "S",
        "--login": "i",
        "--shell": "s",
        "--set-home": "H",
        "--preserve-env": "E",
        "--reset-timestamp": "k",
        "--remove-timestamp": "K",
        "--validate": "v",
        "--list": "l",
        "--help": "h",
        "--version": "V",
    }
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if name in long_value:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        return fail(f"option '{name}' requires an argument")
                    value = argv[i]
                opts[long_value[name]] = value
            elif name in long_flag:
                flags.add(long_flag[name])
                if name == "--preserve-env" and eq:
                    opts["preserve"] = value.split(",")
                    flags.discard("E")
            else:
                return fail(f"unrecognized option '{arg}'")
            i += 1
            continue
        if not arg.startswith("-") or arg == "-":
            break
        j = 1
        while j < len(arg):
            ch = arg[j]
            if ch in with_value:
                value = arg[j + 1 :]
                if not value:
                    i += 1
                    if i >= len(argv):
                        return fail(f"option requires an argument -- '{ch}'")
                    value = argv[i]
                opts[with_value[ch]] = value
                break
            if ch not in "nSiHsEkKvlhVAbeP":
                return fail(f"invalid option -- '{ch}'")
            flags.add(ch)
            j += 1
        i += 1
    assignments = {}
    while i < len(argv) and "=" in argv[i] and not argv[i].startswith("="):
        name, _, value = argv[i].partition("=")
        if not name.replace("_", "a").isalnum():
            break
        assignments[name] = value
        i += 1
    opts["flags"] = flags
    opts["assign"] = assignments
    opts["command"] = argv[i:]
    return opts


def environment(opts: dict[str, object], target: pwd.struct_passwd) -> dict[str, str]:
    flags = opts["flags"]
    assert isinstance(flags, set)
    caller = pwd.getpwuid(os.getuid())
    if "E" in flags:
        env = dict(os.environ)
    else:
        env = {k: v for k, v in os.environ.items() if k in KEEP or k.startswith("LC_")}
        preserve = opts["preserve"]
        if isinstance(preserve, list):
            env.update({k: os.environ[k] for k in preserve if k in os.environ})
        env["HOME"] = target.pw_dir
    if "H" in flags or "i" in flags:
        env["HOME"] = target.pw_dir
    env.update(
        {
            "PATH": SECURE_PATH,
            "SHELL": target.pw_shell or "/bin/sh",
            "USER": target.pw_name,
            "LOGNAME": target.pw_name,
            "MAIL": f"/var/mail/{target.pw_name}",
            "SUDO_USER": caller.pw_name,
            "SUDO_UID": str(caller.pw_uid),
            "SUDO_GID": str(os.getgid()),
        }
    )
    assign = opts["assign"]
    assert isinstance(assign, dict)
    env.update(assign)
    return env


def resolve(command: str) -> str | None:
    if "/" in command:
        return command if os.access(command, os.X_OK) else None
    for directory in SECURE_PATH.split(":"):
        candidate = os.path.join(directory, command)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def main(argv: list[str]) -> int:
    opts = parse(argv)
    if isinstance(opts, int):
        return opts
    flags = opts["flags"]
    command = opts["command"]
    assert isinstance(flags, set)
    assert isinstance(command, list)
    if "h" in flags:
        sys.stdout.write(USAGE)
        return 0
    if "V" in flags:
        sys.stdout.write(VERSION + "\n")
        return 0
    if "l" in flags and not command:
        name = pwd.getpwuid(os.getuid()).pw_name
        sys.stdout.write(f"User {name} may run the following commands:\n")
        sys.stdout.write("    (ALL : ALL) NOPASSWD: ALL\n")
        return 0
    if flags & {"k", "K", "v"} and not command:
        return 0
    try:
        target = (
            pwd.getpwnam(str(opts["user"]))
            if not str(opts["user"]).startswith("#")
            else (pwd.getpwuid(int(str(opts["user"])[1:])))
        )
    except (KeyError, ValueError):
        return fail(f"unknown user {opts['user']}")
    env = environment(opts, target)
    if "i" in flags or "s" in flags:
        if "i" in flags:
            shell = target.pw_shell or "/bin/sh"
        else:
            shell = os.environ.get("SHELL") or target.pw_shell or "/bin/sh"
        argv0 = ("-" + os.path.basename(shell)) if "i" in flags and not command else shell
        line = " ".join(shlex.quote(a) for a in command)
        run = [shell, "-c", line] if command else [shell]
        if "i" in flags and command:
            run = [shell, "-l", "-c", line]
        path = shell
    else:
        if not command:
            sys.stderr.write(USAGE)
            return 1
        path = resolve(command[0]) or ""
        if not path:
            return fail(f"{command[0]}: command not found")
        run, argv0 = list(command), command[0]
    env["SUDO_COMMAND"] = " ".join([path, *run[1:]])[:4096]
    chdir = opts["chdir"] or (target.pw_dir if "i" in flags else None)
    request = {
        "path": path,
        "argv": [argv0, *run[1:]],
        "user": target.pw_name,
        "group": opts["group"],
        "env": env,
        "chdir": chdir,
    }
    return ask_agent(request)


def ask_agent(request: dict[str, object]) -> int:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(SOCKET)
    except OSError as exc:
        return fail(f"cannot reach the capsule agent ({exc.strerror})")
    payload = json.dumps(request).encode()
    cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    fds = [0, 1, 2, cwd]
    if not all(_open(fd) for fd in (0, 1, 2)):  # a closed one: give /dev/null instead
        null = os.open("/dev/null", os.O_RDWR)
        fds = [fd if _open(fd) else null for fd in (0, 1, 2)] + [cwd]
    socket.send_fds(sock, [struct.pack(">I", len(payload)) + payload], fds)
    os.close(cwd)

    def forward(signum: int, _frame: object) -> None:
        try:
            sock.sendall(json.dumps({"signal": signum}).encode() + b"\n")
        except OSError:
            pass

    for signum in (
        signal.SIGINT,
        signal.SIGTERM,
        signal.SIGHUP,
        signal.SIGQUIT,
        signal.SIGUSR1,
        signal.SIGUSR2,
    ):
        signal.signal(signum, forward)
    answer = b""
    while not answer.endswith(b"\n"):
        try:
            chunk = sock.recv(4096)
        except InterruptedError:
            continue
        if not chunk:
            return fail("the capsule agent closed the connection")
        answer += chunk
    reply = json.loads(answer)
    if "error" in reply:
        return fail(str(reply["error"]))
    return int(reply.get("exit", 1))


def _open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
