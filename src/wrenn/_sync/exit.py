"""What a program left open is closed at interpreter exit, within a bound.

A sync client (``WrennClient``, or the client of an official ``Capsule(...)``) that is
still open when the interpreter exits — no ``with`` block, no ``close()``, an uncaught
exception — is closed by an exit hook as a ``with`` block would close it: the capsule
scopes it has open are ended (their capsules destroyed), a capsule made by
``Capsule(...)``/``Capsule.create(...)`` is destroyed unless ``detach()`` was called
(one reached with ``Capsule.connect(id)`` is left as it is), its connections are closed
and its loop thread is stopped. Each such client is reported with a
:class:`ResourceWarning` (shown with ``-W default`` or ``-X dev``, like an unclosed file).

Each step is bounded: a destroy at most 30 s, closing connections at most 5 s, stopping
the loop thread at most :data:`EXIT_JOIN` seconds; a server that does not answer cannot
hold the exit longer than that.

Why ``atexit``: every loop thread is a daemon thread, so nothing waits for it when the
main thread ends. Python runs ``atexit`` callbacks after it has joined the program's own
(non-daemon) threads and while daemon threads still run, which is the one moment where
no user thread needs the client any more and its loop can still do the clean-up. (The
private ``threading._register_atexit`` runs *before* user threads are joined, so a
worker thread could find its client closed under it.) This holds on 3.11 to 3.13.
Objects still registered at that point are closed newest first.
"""

from __future__ import annotations

import atexit
import logging
import threading
import warnings
from typing import Final, Protocol

__all__ = ["EXIT_JOIN", "ClosesAtExit", "close_all", "track", "untrack"]

log = logging.getLogger("wrenn")

EXIT_JOIN: Final = 10.0


class ClosesAtExit(Protocol):
    def _close_at_exit(self) -> str:
        """Close as a ``with`` block would; return what was done, for the warning."""
        ...


_open: dict[int, ClosesAtExit] = {}
_lock = threading.Lock()
_hooked = False


def track(obj: ClosesAtExit) -> None:
    """Close ``obj`` at interpreter exit unless :func:`untrack` is called first. Holds
    a strong reference: an unclosed client lives (and its capsules with it) until exit."""
    global _hooked
    with _lock:
        _open[id(obj)] = obj
        if not _hooked:
            atexit.register(close_all)
            _hooked = True


def untrack(obj: ClosesAtExit) -> None:
    with _lock:
        _open.pop(id(obj), None)


def close_all() -> None:
    """The exit hook: close every object still tracked, newest first, with a warning."""
    while True:
        with _lock:
            if not _open:
                return
            _, obj = _open.popitem()
        name = repr(obj)
        try:
            done = obj._close_at_exit()
        except BaseException as exc:  # one failure must not leave the others open
            log.warning("closing %r at exit failed: %r", obj, exc)
            done = "closing failed"
        warnings.warn(
            f"{name} was not closed; closed at interpreter exit ({done}). "
            "Use a `with` block or call close().",
            ResourceWarning,
            stacklevel=1,
        )
