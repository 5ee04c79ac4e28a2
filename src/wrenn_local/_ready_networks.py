"""Ready networks: capsule network namespaces filtered and connected ahead of cold boots.

A cold boot's network is on its critical path: the boot makes the capsule's network
namespace, then the server loads its filter (an ``nft`` process) and starts pasta, which
takes 15-35 ms to be ready and 10-20 ms of CPU (clearing its buffers) while the agent
starts on the same cores. The pool does that work ahead: it keeps up to ``size``
namespaces made by the boot process (host root: the host's user namespace owns them,
as it owns every capsule's), filtered and then connected, in that order, as at any boot.
A cold boot joins one (``BootProcess.spawn(netns=…)``) instead of making its own.

- **One capsule per namespace.** A claimed network is the capsule's from then on,
  closed with it; the refill is a new namespace. Nothing is ever handed out twice.
- **The filter a new network would get.** The filter names the host's addresses, which
  may change (a new interface, a new lease). A claim compares the ready network's filter
  with the one made from the host's addresses now; if they differ, every ready network
  is closed and the boot makes its own.
- **Not the CPU owned capsules use.** Refills are made one at a time, and only while no
  cold boot is under way (a refill started by a claim would compete with the very boot
  that claimed); a ready network's pasta starts at the highest niceness, and is brought
  to 0 when claimed.
- **Not forever.** The pool fills at the first cold boot that asks for a network and
  closes its networks once none has been claimed or made for ``idle`` seconds, so an idle
  server holds none (each holds a pasta: about 30 MiB resident).
- Warm spares (``_spares.py``) make their own: they boot in the background anyway.
- If a refill fails (an offline host, say), the pool makes no other for ``idle`` seconds
  (one warning, not one per create; each boot makes its own network meanwhile and says
  why it has none). ``aclose`` closes every ready network and the one being made
  (bounded, shielded).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.abc
import attrs

from ._boot_process import BootProcess
from ._ids import new_id
from ._network import CapsuleNetwork, NetworkTools, host_addresses, ruleset, wait_for_netns

__all__ = ["ReadyNetwork", "ReadyNetworks"]

log = logging.getLogger("wrenn_local.networks")

MAKE_SECONDS = 10.0  # a namespace, its filter and pasta take tens of milliseconds


@attrs.define(eq=False)
class ReadyNetwork:
    """A network namespace, filtered and connected, that no capsule has joined yet."""

    network: CapsuleNetwork  # connected; its pasta's pid file and log are in its scratch
    netns: int  # a descriptor of the namespace (close-on-exec), for the boot to join

    async def aclose(self) -> None:
        """Close it unused: pasta killed, descriptor and files released (shielded)."""
        with anyio.CancelScope(shield=True):
            await self.network.close()
            self.release()

    def release(self) -> None:
        """Close the descriptor (the boot holds its own, or the network is closed)."""
        if self.netns >= 0:
            os.close(self.netns)
            self.netns = -1


class ReadyNetworks:
    """One server's ready networks (see the module's docstring)."""

    def __init__(
        self,
        *,
        tools: NetworkTools,
        boot: Callable[[], BootProcess | None],
        directory: Path,
        size: int,
        idle: float,
        task_group: anyio.abc.TaskGroup,
    ) -> None:
        self.tools = tools
        self.boot = boot  # the server's boot process, where there is one
        self.directory = directory  # each ready network's pid file and log, one dir each
        self.size = size
        self.idle = idle
        self.tg = task_group
        self.ready: deque[ReadyNetwork] = deque()
        self.closed = False
        self._filling: anyio.CancelScope | None = None  # the filler's, while it runs
        self._filled = anyio.Event()  # set as the last filler ended
        self._claimed = anyio.Event()
        self._last_use = time.monotonic()
        self._booting = 0  # cold boots that asked for a network and have not ended
        self._failed_until = 0.0  # no refill before (time.monotonic()): one just failed
        self._quiet = anyio.Event()  # set while none is under way
        self._quiet.set()

    def __len__(self) -> int:
        return len(self.ready)

    def claim(self) -> ReadyNetwork | None:
        """A ready network for a cold boot, taken out of the pool, or None (none ready,
        or the host's addresses have changed since it was filtered). Starts filling
        once no boot is under way: callers bracket their whole boot with
        :meth:`boot_started` and :meth:`boot_ended`.

        Synchronous (no await between finding and removing it): two boots racing for
        one network cannot both get it. Its pasta runs at niceness 0 from here; the
        caller owns it and must close it (``ReadyNetwork.aclose``, or the network's
        ``close`` once the boot holds the namespace).
        """
        if self.closed or self.size <= 0:
            return None
        self._last_use = time.monotonic()
        self._claimed.set()
        self._start_filling()
        if not self.ready:
            return None
        rules = ruleset(host_addresses(networks=True))
        ready = self.ready.popleft()
        if ready.network.rules != rules:  # filtered for addresses the host no longer has
            log.info("the host's addresses changed: ready networks closed")
            stale = [ready, *self.ready]
            self.ready.clear()
            for network in stale:
                self.tg.start_soon(network.aclose)
            return None
        ready.network.marks = {}
        ready.network.to_foreground()
        return ready

    def boot_started(self) -> None:
        """A cold boot that may claim a network starts: refills wait until it ends."""
        self._booting += 1
        if self._quiet.is_set():
            self._quiet = anyio.Event()

    def boot_ended(self) -> None:
        """A boot of :meth:`boot_started` has ended (however it ended): refills may go
        on once none is under way."""
        self._booting -= 1
        if self._booting <= 0:
            self._booting = 0
            self._quiet.set()

    def _start_filling(self) -> None:
        if self._filling is None and not self.closed and time.monotonic() >= self._failed_until:
            self._filling = anyio.CancelScope()
            self._filled = anyio.Event()
            self.tg.start_soon(self._fill, self._filling)

    async def _fill(self, scope: anyio.CancelScope) -> None:
        """Keep ``size`` networks ready while claims come; close them once idle."""
        try:
            with scope:
                while not self.closed:
                    if len(self.ready) < self.size:
                        await self._quiet.wait()  # off the critical path of every boot
                        if not self._open():
                            return
                        try:
                            made = await self._make()
                        except Exception as exc:
                            # The filler is a task of the server's own task group: an
                            # error out of it would end the server and every capsule.
                            # Whatever making one raised, boots make their own instead.
                            expected = isinstance(exc, OSError | RuntimeError | TimeoutError)
                            log.warning(
                                "no ready networks for %.0f s: %s",
                                self.idle,
                                exc,
                                exc_info=not expected,
                            )
                            self._failed_until = time.monotonic() + self.idle
                            return  # a claim after that tries again
                        if not self._open():  # closed while it was made
                            await made.aclose()
                            return
                        self.ready.append(made)
                        # unused from now: a network made slowly is not closed at once
                        self._last_use = max(self._last_use, time.monotonic())
                        continue
                    self._claimed = anyio.Event()
                    left = self.idle - (time.monotonic() - self._last_use)
                    with anyio.move_on_after(max(left, 0.0)):
                        await self._claimed.wait()
                    if time.monotonic() - self._last_use >= self.idle:
                        await self._close_ready()
                        return  # the next claim starts filling again
        finally:
            if self._filling is scope:
                self._filling = None
                self._filled.set()

    def _open(self) -> bool:
        return not self.closed

    async def _make(self) -> ReadyNetwork:
        """A new namespace, filtered, then connected, its pasta at the highest niceness."""
        boot = self.boot()
        if boot is None:
            raise RuntimeError("the server has no boot process")
        directory = self.directory / new_id("net")
        await anyio.to_thread.run_sync(lambda: directory.mkdir(parents=True, mode=0o700))
        network = CapsuleNetwork(self.tools, directory)
        network.boot = boot
        network.background = True
        network.scratch = directory  # removed when the network closes
        netns = -1
        try:
            with anyio.fail_after(MAKE_SECONDS):
                holder = await boot.network_namespace()
                try:
                    netns = await wait_for_netns(holder.pid, MAKE_SECONDS)
                finally:
                    await holder.aclose()  # the namespace lives on in ``netns``
                await network.connect(netns, timeout=MAKE_SECONDS)
            if not network.connected:
                raise RuntimeError(network.problem or "the network could not be connected")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await network.close()
            if netns >= 0:
                os.close(netns)
            raise
        return ReadyNetwork(network=network, netns=netns)

    async def _close_ready(self) -> None:
        with anyio.CancelScope(shield=True):
            while self.ready:
                await self.ready.popleft().aclose()

    async def aclose(self) -> None:
        """Close every ready network and stop filling (bounded, shielded): the server is
        going. A network being made is closed by its own clean-up as the filler is
        cancelled."""
        self.closed = True
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            if self._filling is not None:
                self._filling.cancel()
                await self._filled.wait()
            await self._close_ready()
            with contextlib.suppress(OSError):
                self.directory.rmdir()  # empty now (each network removed its own)
