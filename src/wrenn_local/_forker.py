"""Children that die with the server, forked from a thread that outlives them.

bubblewrap's ``--die-with-parent`` is a parent-death signal, and Linux sends it when the
*thread* that forked the child exits, not when its process does. trio (and anyio on trio)
start processes from worker threads, which exit after 10 s without work: a capsule booted
there was SIGKILLed about 10 s after that thread last had work. Such children are forked
by the one thread of this module instead, which lives while any child it forked is
unreaped and ends on its own once none is (no thread outlives what it is for).

:func:`open_child` returns a :class:`Child`: what :mod:`anyio`'s process offers the
sandbox (``pid``, ``returncode``, ``wait``, ``send_signal``, ``stderr``), waited for by
pidfd so that any number of tasks can wait for it on either backend.
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import IO, Any, Final

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread

__all__ = ["Child", "open_child"]

#: seconds the thread waits for more work once none of its children is left
IDLE_SECONDS: Final = 5.0


class _Forker:
    """One thread that runs every fork; started on demand, gone when idle and childless."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[tuple[Callable[[], subprocess.Popen[bytes]], Future[Any]]]
        self._jobs = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._children: list[subprocess.Popen[bytes]] = []
        self.idle_seconds = IDLE_SECONDS

    def submit(self, fork: Callable[[], subprocess.Popen[bytes]]) -> Future[Any]:
        done: Future[Any] = Future()
        with self._lock:
            self._jobs.put((fork, done))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="wrenn_local forker", daemon=True
                )
                self._thread.start()
        return done

    def thread(self) -> threading.Thread | None:
        """The forking thread, while there is one (for tests)."""
        return self._thread

    def _run(self) -> None:
        while True:
            try:
                fork, done = self._jobs.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._lock:
                    # a child's returncode is set once it has been reaped
                    self._children = [c for c in self._children if c.returncode is None]
                    if not self._children and self._jobs.empty():
                        self._thread = None
                        return
                continue
            if not done.set_running_or_notify_cancel():
                continue
            try:
                child = fork()
            except BaseException as exc:  # handed to the waiting task, raised there
                done.set_exception(exc)
                continue
            with self._lock:
                self._children.append(child)
            done.set_result(child)


_forker = _Forker()


class _PipeReceiveStream(anyio.abc.ByteReceiveStream):
    """The read end of a child's pipe, read without blocking the event loop."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self._pipe = pipe
        self._fd = pipe.fileno()
        os.set_blocking(self._fd, False)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while True:
            if self._pipe.closed:
                raise anyio.ClosedResourceError
            try:
                data = os.read(self._fd, max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self._fd)
                continue
            if not data:
                raise anyio.EndOfStream
            return data

    async def aclose(self) -> None:
        if not self._pipe.closed:
            anyio.notify_closing(self._fd)  # wakes a task waiting to read it
            self._pipe.close()
        await anyio.lowlevel.checkpoint()


class Child:
    """A child forked by :func:`open_child`.

    Reading ``returncode`` reaps a child that has ended (no other waiter exists: no
    event-loop child watcher knows this pid), so a signal is never sent to a reaped,
    perhaps reused, pid: ``send_signal`` looks at ``returncode`` first.
    """

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.stderr = _PipeReceiveStream(popen.stderr) if popen.stderr is not None else None

    @property
    def returncode(self) -> int | None:
        """The exit status (negative: the signal), or None while the child runs."""
        if self._popen.returncode is None:
            self._popen.poll()
        return self._popen.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    async def wait(self) -> int:
        """Wait until the child has ended and reap it; any number of tasks may wait.

        On cancellation the child is left as it is (still running, or unreaped).
        """
        while self._popen.returncode is None:
            try:
                pidfd = os.pidfd_open(self.pid)
            except ProcessLookupError:  # reaped by another waiter meanwhile
                self._popen.poll()
                continue
            try:
                await anyio.wait_readable(pidfd)
            finally:
                os.close(pidfd)
            self._popen.poll()
        return self._popen.returncode


async def open_child(
    command: Sequence[str],
    *,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    env: dict[str, str] | None = None,
    pass_fds: Sequence[int] = (),
    start_new_session: bool = False,
) -> Child:
    """Fork ``command`` from the forking thread (see the module's docstring).

    The fork itself is not cancellable (it takes milliseconds): a cancelled caller still
    gets its :class:`Child` back, so that it can be killed and waited for, and the
    cancellation is delivered at the caller's next checkpoint.
    """

    def fork() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            list(command),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=env,
            pass_fds=tuple(pass_fds),
            start_new_session=start_new_session,
        )

    done = _forker.submit(fork)
    # shielded: a cancel landing before the wait began would leave the fork, submitted
    # already, running with no owner
    with anyio.CancelScope(shield=True):
        popen: subprocess.Popen[bytes] = await anyio.to_thread.run_sync(done.result)
    return Child(popen)
