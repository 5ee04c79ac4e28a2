"""The official ``wrenn`` 0.3.0 SDK against wrenn_local: the wire is the contract.

Run by ``python -m nox -s compat``, in a virtual environment that holds the official SDK
(which is also called ``wrenn``, so it cannot share an environment with ours). The server
runs in a separate process started by the session. Exits non-zero on any mismatch.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

_getaddrinfo = socket.getaddrinfo


def _resolve_localhost_names(host: Any, *args: Any, **kwargs: Any) -> Any:
    """``*.localhost`` is loopback (RFC 6761); plain glibc does not know it."""
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str) and name.endswith(".localhost"):
        host = "127.0.0.1"
    return _getaddrinfo(host, *args, **kwargs)


def main() -> int:
    socket.getaddrinfo = _resolve_localhost_names
    from wrenn import Capsule, WrennClient  # the official SDK, not this repository's
    from wrenn.code_runner import Capsule as CodeCapsule
    from wrenn.exceptions import WrennConflictError, WrennNotFoundError

    checks: list[str] = []

    def check(name: str, ok: bool) -> None:
        checks.append(("ok   " if ok else "FAIL ") + name)

    with Capsule(wait=True) as cap:
        check("create and wait", cap.info is not None and cap.get_info().status == "running")
        result = cap.commands.run("echo hello; echo err >&2; exit 3")
        check("run", (result.stdout, result.stderr, result.exit_code) == ("hello\n", "err\n", 3))
        envs = cap.commands.run("echo $A $(pwd)", envs={"A": "x"}, cwd="/tmp")
        check("envs and cwd", envs.stdout == "x /tmp\n")
        cap.files.write("/home/wrenn-user/a.txt", "data")
        check("write and read", cap.files.read("/home/wrenn-user/a.txt") == "data")
        check(
            "exists",
            cap.files.exists("/home/wrenn-user/a.txt")
            and not cap.files.exists("/home/wrenn-user/missing"),
        )
        check("list", [e.name for e in cap.files.list("/home/wrenn-user")] == ["a.txt"])
        first = cap.files.make_dir("/home/wrenn-user/d")
        again = cap.files.make_dir("/home/wrenn-user/d")  # idempotent in the official SDK
        check("make_dir", first.name == again.name == "d")
        cap.files.upload_stream("/tmp/s.bin", iter([b"abc", b"def"]))
        check("stream up and down", b"".join(cap.files.download_stream("/tmp/s.bin")) == b"abcdef")
        handle = cap.commands.run("sleep 30", background=True)
        check("background", handle.tag in [p.tag for p in cap.commands.list()])
        cap.commands.kill(handle.pid)
        cap.pause(wait=True)
        check("pause", cap.get_info().status == "paused")
        try:
            cap.commands.run("true")
            check("paused refuses exec", False)
        except WrennConflictError:
            check("paused refuses exec", True)
        cap.resume(wait=True)
        check("resume", cap.is_running())
        check("list capsules", cap.capsule_id in [c.id for c in Capsule.list()])
        check("templates", "minimal-ubuntu" in [t.name for t in WrennClient().snapshots.list()])
        capsule_id = cap.capsule_id
    try:
        status = Capsule.get_info(capsule_id).status
        check("destroyed on exit", status in ("stopping", "stopped"))
    except WrennNotFoundError:
        check("destroyed on exit", True)
    try:
        Capsule.get_info("cl-" + "0" * 25)
        check("unknown capsule", False)
    except WrennNotFoundError as exc:
        check("unknown capsule", exc.code == "not_found")
    with CodeCapsule(wait=True) as runner:
        runner.run_code("x = 21")
        answer = runner.run_code("x * 2")
        check("code runner: state and result", answer.text == "42")
        printed = runner.run_code("print('out')")
        check("code runner: stdout", printed.logs.stdout == ["out\n"])
        failed = runner.run_code("1 / 0")
        check(
            "code runner: error",
            failed.error is not None and failed.error.name == "ZeroDivisionError",
        )
    print("\n".join(checks))
    failed = [c for c in checks if c.startswith("FAIL")]
    print(f"{len(checks) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
