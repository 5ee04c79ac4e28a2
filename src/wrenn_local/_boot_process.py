"""The server's boot process: capsule boots forked from one pre-started Python.

Booting a capsule used to start ``unshare -m python boot.py plan.json``: an ``unshare``
process and a Python start-up (~18 ms, most of it CPU) before its first mount. The
server now starts ``boot.py --serve`` once (:func:`start_boot_process`, full
isolation only), and each capsule's boot is a fork of it that makes its own mount (and network)
namespace and runs ``boot.py``'s ``main`` (see :func:`wrenn_local._inside.boot.serve`).

The boot process dies with the server (a parent-death signal; it is forked by
``_forker.py``'s thread) and every capsule's bubblewrap dies with it
(``--die-with-parent``). If it is found dead, the next boot starts another one.
Where there is none (reduced isolation, a sandbox made outside a server)
the sandbox starts ``unshare … boot.py`` as before.
"""

from __future__ import annotations

import array
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import anyio

from ._forker import Child, _PipeReceiveStream, open_child
from ._inside import BOOT

__all__ = [
    "BootChild",
    "BootFailed",
    "BootProcess",
    "boot_process_for",
    "start_boot_process",
    "stop_boot_process",
]

log = logging.getLogger("wrenn_local.boot")
_running: dict[Path, BootProcess] = {}  # data directory -> its server's boot process
_EXIT_STATUS_BYTES: Final = 16
REQUEST_SECONDS: Final = 10.0  # a fork takes milliseconds


class BootFailed(RuntimeError):
    """The boot process could not start a capsule (it died and could not be restarted)."""


# how long BootChild.aclose waits for a killed child's exit status
_ACLOSE_WAIT = 5.0


class BootChild:
    """A capsule's boot child, forked by the boot process (not by the server).

    What the sandbox needs of :class:`wrenn_local._forker.Child`: ``pid``, ``returncode``,
    ``wait``, ``send_signal``, ``stderr``. The exit status arrives on a socket from the boot
    process, which keeps the child unreaped until that socket is closed here (once the
    status is known): ``pid`` names this child as long as ``returncode`` is None.
    """

    def __init__(self, pid: int, status_fd: int, stderr_fd: int | None) -> None:
        self.pid = pid
        # a socket, so that the status can be peeked at by any caller, in any thread
        self._status: socket.socket | None = socket.socket(fileno=status_fd)
        self._returncode: int | None = None
        self._lock = threading.Lock()  # returncode may be read from worker threads
        self.stderr = (
            _PipeReceiveStream(os.fdopen(stderr_fd, "rb", buffering=0))
            if stderr_fd is not None
            else None
        )

    @property
    def returncode(self) -> int | None:
        """The exit status (negative: the signal), or None while the child runs.

        Once it is known, the status socket is closed: the boot process then reaps the
        child (until then its pid cannot be reused).
        """
        with self._lock:
            status = self._status
            if self._returncode is None and status is not None:
                try:
                    data = status.recv(_EXIT_STATUS_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                except BlockingIOError:
                    return None
                # no status: the boot process died, and the child with it (its
                # parent-death signal)
                self._returncode = int(data) if data.strip() else -signal.SIGKILL
                self._status = None
                status.close()
            return self._returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    async def aclose(self) -> None:
        """Kill the child if it still runs, wait for it (bounded) and close its pipe and
        status socket; shielded. Safe to call again."""
        with anyio.CancelScope(shield=True):
            self.send_signal(signal.SIGKILL)
            with anyio.move_on_after(_ACLOSE_WAIT):
                await self.wait()
            if self.stderr is not None:
                await self.stderr.aclose()
            with self._lock:
                status, self._status = self._status, None
                if status is not None and self._returncode is None:
                    # not seen to end in time: it was sent SIGKILL, which is what any
                    # other waiter is told (the boot process reaps it once this closes)
                    self._returncode = -signal.SIGKILL
            if status is not None:
                status.close()

    async def wait(self) -> int:
        """Wait until the child has ended; any number of tasks may wait."""
        while True:
            code = self.returncode
            if code is not None:
                return code
            with self._lock:
                # each waiter waits on a descriptor of its own (an event loop takes one
                # waiter per descriptor); every copy turns readable as the status arrives
                mine = os.dup(self._status.fileno()) if self._status is not None else -1
            if mine < 0:
                continue  # closed meanwhile: the status is known
            try:
                await anyio.wait_readable(mine)
            finally:
                os.close(mine)


class BootProcess:
    """One server's boot process (see the module's docstring)."""

    def __init__(self, python: str, env: dict[str, str]) -> None:
        self.python = python
        self.env = dict(env)
        self.process: Child | None = None
        self._control: socket.socket | None = None
        self._lock = anyio.Lock()
        self._sending = threading.Lock()

    async def start(self) -> None:
        """Start the boot process (idempotent while one runs)."""
        running = self.process is not None and self.process.returncode is None
        if running and self._control is not None:
            return
        self._discard()
        if self.process is not None:  # killed above, if it still ran: reap it
            with anyio.move_on_after(5):
                await self.process.wait()
            if self.process.stderr is not None:
                await self.process.stderr.aclose()
            self.process = None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = await open_child(
                [
                    self.python,
                    "-I",
                    "-S",
                    str(BOOT),
                    "--serve",
                    str(theirs.fileno()),
                    str(os.getpid()),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=self.env,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        # a boot process that does not answer (stopped, wedged) fails the request: it is
        # killed and replaced rather than holding every later create
        ours.settimeout(REQUEST_SECONDS)
        self._control = ours

    async def hold(
        self, argv: Sequence[str], *, stderr: int, pass_fds: Sequence[int] = (), nice: int = 0
    ) -> BootChild:
        """Fork a child that runs ``argv`` (pasta) in a pid namespace that dies with it.

        What ``_network.py`` otherwise starts a Python holder for (a start-up per
        capsule): the namespace ends when the child is killed, or when the boot process
        dies. ``stderr`` (a descriptor) is its standard error; ``argv`` runs at
        niceness ``nice`` (a warm spare's pasta: 19).
        """
        return await self._spawn({"hold": list(argv), "nice": nice}, pass_fds, stderr)

    async def run_in_netns(self, argv: Sequence[str], *, netns: int, data: str) -> tuple[int, str]:
        """Run ``argv`` (a host tool: ``nft -f -``) in the network namespace ``netns`` (a
        descriptor) with ``data`` on its standard input; its exit status and error text.

        A fork of the boot process joins the namespace and execs it: no ``nsenter``
        process and no fork of the server per capsule. Cancelled (a boot given up while
        its filter loads), the tool is killed and reaped and its pipe and status socket
        closed before the cancellation goes on (shielded, bounded).
        """
        child = await self._spawn(
            {"run": list(argv), "netns": netns, "input": data}, (netns,), None
        )
        try:
            code = await child.wait()
            err = b""
            if child.stderr is not None and code != 0:
                # it has ended: its error text is at most a second away
                with anyio.move_on_after(1), contextlib.suppress(anyio.EndOfStream):
                    while len(err) < 65536:
                        err += await child.stderr.receive()
            return code, err.decode(errors="replace")
        finally:
            await child.aclose()

    async def spawn(
        self,
        plan: Path,
        *,
        network: bool,
        pass_fds: Sequence[int] = (),
        netns: int | None = None,
    ) -> BootChild:
        """Fork a child of the boot process that boots the capsule planned in ``plan``.

        ``pass_fds`` reach the child at the same numbers; its standard error is a pipe
        read through the returned child's ``stderr``. ``network``: the capsule gets a new
        network namespace; ``netns`` (a descriptor of a ready network's namespace,
        ``_ready_networks.py``): it joins that one instead (the descriptor is closed in
        the child before anything of the capsule starts). A boot process found dead is
        restarted once; if that fails too, :class:`BootFailed`. Like
        :func:`~wrenn_local._forker.open_child`, a cancelled caller still gets the child.
        """
        request: dict[str, object] = {"plan": str(plan), "network": network and netns is None}
        if netns is not None:
            request["join_netns"] = netns
            pass_fds = (*pass_fds, netns)
        return await self._spawn(request, pass_fds, None)

    async def network_namespace(self) -> BootChild:
        """Fork a child that makes a network namespace (the host's user namespace owns
        it, its loopback is up) and stays in it until killed: open its
        ``/proc/<pid>/ns/net`` once it differs from the server's, then close the child.
        """
        return await self._spawn({"make_netns": True}, (), None)

    async def _spawn(
        self, request: dict[str, object], pass_fds: Sequence[int], stderr: int | None
    ) -> BootChild:
        async with self._lock:
            problem: BaseException | None = None
            for _ in range(2):
                with anyio.CancelScope(shield=True):
                    try:
                        await self.start()
                        return await anyio.to_thread.run_sync(
                            self._request, request, tuple(pass_fds), stderr
                        )
                    except OSError as exc:
                        problem = exc
                        self._discard()
            raise BootFailed(f"the boot process could not start the capsule: {problem}")

    def _request(
        self, request: dict[str, object], pass_fds: tuple[int, ...], stderr: int | None
    ) -> BootChild:
        control = self._control
        if control is None:
            raise OSError("the boot process is not running")
        err_r, err_w = os.pipe2(os.O_CLOEXEC) if stderr is None else (-1, -1)
        try:
            with self._sending:
                request = {**request, "fds": [2, *pass_fds]}
                fds = array.array("i", [err_w if stderr is None else stderr, *pass_fds])
                control.sendmsg(
                    [json.dumps(request).encode()],
                    [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)],
                )
                if err_w >= 0:
                    os.close(err_w)
                    err_w = -1
                msg, ancdata, _, _ = control.recvmsg(4096, socket.CMSG_SPACE(4))
            status = array.array("i")
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    status.frombytes(data[: len(data) - len(data) % status.itemsize])
            if not msg or len(status) != 1:
                for fd in status:
                    os.close(fd)
                raise OSError("the boot process ended")
            pid = int(json.loads(msg)["pid"])
        except BaseException:
            for fd in (err_r, err_w):
                if fd >= 0:
                    os.close(fd)
            raise
        return BootChild(pid, status[0], err_r if err_r >= 0 else None)

    def _discard(self) -> None:
        if self._control is not None:
            self._control.close()  # the boot process reads the end of its requests
            self._control = None
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)

    async def aclose(self) -> None:
        """Stop the boot process (its capsules' bubblewraps die with it) and reap it."""
        self._discard()
        if self.process is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await self.process.wait()
                if self.process.stderr is not None:
                    await self.process.stderr.aclose()


def boot_process_for(data_dir: Path) -> BootProcess | None:
    """The boot process of the server serving ``data_dir``, if it has one."""
    return _running.get(data_dir)


async def start_boot_process(data_dir: Path, python: str, env: dict[str, str]) -> None:
    """Start the boot process of the server serving ``data_dir`` (full isolation)."""
    if data_dir not in _running:
        boot = BootProcess(python, env)
        try:
            await boot.start()
        except OSError as exc:  # each boot starts its own ``unshare … boot.py`` then
            log.warning("no boot process, capsules boot without one: %s", exc)
            return
        _running[data_dir] = boot


async def stop_boot_process(data_dir: Path) -> None:
    """Stop it once the server's capsules are gone (a no-op if it has none)."""
    boot = _running.pop(data_dir, None)
    if boot is not None:
        await boot.aclose()
