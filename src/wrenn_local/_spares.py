"""Warm spares: booted, never-used capsules for the boot keys that are created often.

A capsule's *boot key* is everything that shapes its sandbox before it has an owner
(template and its layers, vcpus, memory, disk, services, network). Once a key has been
created ``spare_after`` times within ``spare_window`` seconds, the pool keeps spares of
that key booted: as many as the most capsules of that key in use at once (counted at each
create in that window), at most ``options.spares``. A program that fans out over 64
capsules finds 64 booted ones the next time it does; one that uses one capsule at a time,
however fast it makes them, finds one. A create of the key claims a spare instead of
booting (``CapsuleManager.create``), and a fresh one boots in the background to replace
it. A spare is handed out at most once and is never reused: the refill is a new boot. A
spare unused for ``spare_idle`` seconds is stopped, so an idle server holds none.

Spares never take what a user's capsule may need. Not a place: they count against
``max_capsules`` and a create at capacity stops one. Not CPU: until claimed, a spare's
cgroups have the lowest CPU weight (_cgroups.py), and its pasta, which runs outside them,
the highest niceness (_network.py), so a burst of refills only gets the CPU that owned
capsules leave. Not memory: no spare starts while the host has less than a
quarter of its memory available, and while it has, booted spares are stopped (the last
booted first) until it has again. And spares boot at most one per core at a time: a burst
of claims queues its refills instead of booting them all at once.

Spares are not capsule records: no account lists, gets, measures or counts them. They
boot in the server's task group; a spare that fails to boot, or whose agent has died
by the time it is claimed, is discarded (the create boots cold). ``shutdown`` stops
every spare, bounded and shielded.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.abc
import attrs

from ._host_memory import host_memory
from ._ids import new_id
from ._options import ServerOptions
from ._sandbox import Sandbox

__all__ = ["BootKey", "Spare", "SparePool"]

log = logging.getLogger("wrenn_local.spares")

SPARE_AFTER = 2  # creates of one key within the window before it earns a spare
DEMAND_KEPT = 1024  # creates remembered per key (when, and how many were in use then)
MEMORY_FREE_SHARE = 0.25  # no spare starts while less of the host's memory is available
REAP_EVERY = 1.0  # seconds between two looks for idle spares (and for memory running short)
BOOT_GRACE = 10.0  # seconds a dropped spare's boot may take to end before it is stopped


@attrs.frozen
class BootKey:
    """What shapes a capsule's sandbox before its owner exists."""

    owner: str | None  # the template's team (None: a platform template)
    template: str  # its name (the agent shows it inside as WRENN_TEMPLATE_ID)
    template_created: dt.datetime  # a re-made template of the same name is another key
    layers: tuple[Path, ...]
    vcpus: int
    memory_mb: int
    disk_size_mb: int
    services: tuple[str, ...]
    jupyter_site: Path | None
    network: bool


@attrs.define(eq=False)
class Spare:
    key: BootKey
    capsule_id: str
    sandbox: Sandbox
    ready_at: float | None = None  # time.monotonic() once booted; None while booting
    # taken out of the pool while booting: its boot task stops it and removes its files
    dropped: bool = False
    booted: anyio.Event = attrs.field(factory=anyio.Event)  # its boot task has ended


class SparePool:
    """The spares of one server (see the module's docstring)."""

    def __init__(
        self,
        *,
        options: ServerOptions,
        task_group: anyio.abc.TaskGroup,
        make_sandbox: Callable[[BootKey, str], Sandbox],
        room: Callable[[], int],
    ) -> None:
        self.options = options
        self.tg = task_group
        self.make_sandbox = make_sandbox
        self.room = room  # capsules the server may still start (max_capsules - live)
        self.spares: list[Spare] = []
        self.demand: dict[BootKey, deque[tuple[float, int]]] = {}
        self.memory_available = host_memory_share  # (tests replace it: a host short of memory)
        self.closed = False
        self._reaping = False
        self._boot_slots = anyio.CapacityLimiter(os.cpu_count() or 1)

    def __len__(self) -> int:
        return len(self.spares)

    # -- claims

    def claim(self, key: BootKey) -> Spare | None:
        """A booted spare of ``key`` whose agent is alive, taken out of the pool, or None.

        Synchronous (no await between finding and removing it): two creates racing for
        one spare cannot both get it. Dead spares found on the way are discarded.
        """
        for spare in list(self.spares):
            if spare.key != key or spare.ready_at is None:
                continue
            self.spares.remove(spare)
            process = spare.sandbox.process
            if process is None or process.returncode is not None:
                log.warning("spare %s died while waiting; discarded", spare.capsule_id)
                self.tg.start_soon(self._discard, spare)
                continue
            spare.sandbox.to_foreground()
            return spare
        return None

    def wanted(self, key: BootKey) -> int:
        """How many spares of ``key`` the pool keeps now (see the module's docstring)."""
        creates = self.demand.get(key)
        if not creates or len(creates) < SPARE_AFTER:
            return 0
        return min(self.options.spares, max(in_use for _, in_use in creates))

    def created(self, key: BootKey, in_use: int = 1) -> None:
        """A create of ``key`` happened, with ``in_use`` capsules of ``key`` in use now
        (this one included): boot spares for it if it is created often."""
        if self.closed or self.options.spares <= 0:
            return
        now = time.monotonic()
        creates = self.demand.setdefault(key, deque(maxlen=DEMAND_KEPT))
        creates.append((now, in_use))
        window = self.options.spare_window
        while now - creates[0][0] > window:
            creates.popleft()
        for stale in [k for k, c in self.demand.items() if now - c[-1][0] > window]:
            del self.demand[stale]
        have = sum(1 for s in self.spares if s.key == key)
        for _ in range(self.wanted(key) - have):
            if self.room() - len(self.spares) <= 0:
                return  # spares never take a place a user's capsule may need
            if self.memory_available() < MEMORY_FREE_SHARE:
                log.info("no spare for %s: the host is short of memory", key.template)
                return
            self._start(key)

    def make_room(self) -> None:
        """Drop a spare: a user's create needs its place (``max_capsules``)."""
        if self.spares:
            spare = min(self.spares, key=lambda s: s.ready_at or float("inf"))
            self.spares.remove(spare)
            self._drop(spare, self.tg)

    def _drop(self, spare: Spare, tg: anyio.abc.TaskGroup) -> None:
        """Stop a spare taken out of the pool: at once if booted, else once its boot
        ends (its boot task discards it). A stop racing the boot could miss what the
        boot attaches after it (pasta's holder), so a boot is only stopped if it hangs."""
        if spare.ready_at is not None:
            tg.start_soon(self._discard, spare)
        else:
            spare.dropped = True
            tg.start_soon(self._stop_if_hung, spare)

    async def _stop_if_hung(self, spare: Spare) -> None:
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(BOOT_GRACE):
                await spare.booted.wait()
            if not spare.booted.is_set():
                await spare.sandbox.stop()
                await spare.booted.wait()

    # -- boot and discard

    def _start(self, key: BootKey) -> None:
        capsule_id = new_id("cl")
        spare = Spare(key=key, capsule_id=capsule_id, sandbox=self.make_sandbox(key, capsule_id))
        spare.sandbox.background = True  # the lowest CPU weight until claimed
        self.spares.append(spare)
        self.tg.start_soon(self._boot, spare)

    async def _boot(self, spare: Spare) -> None:
        ok = False
        try:
            async with self._boot_slots:  # one boot per core at a time (see the module)
                if spare.dropped or self.closed:
                    return  # (the finally clause discards it: nothing was started)
                await spare.sandbox.start()
                await spare.sandbox.start_services()
            ok = True
        except Exception as exc:
            if not spare.dropped:
                log.warning("spare %s failed to boot: %s", spare.capsule_id, exc)
        finally:
            if (not ok or self.closed) and spare in self.spares:
                self.spares.remove(spare)
                spare.dropped = True
            if spare.dropped:
                await self._discard(spare)
            spare.booted.set()
        if ok and spare in self.spares:
            spare.ready_at = time.monotonic()
            if not self._reaping:
                self._reaping = True
                self.tg.start_soon(self._reap_idle)

    async def _discard(self, spare: Spare) -> None:
        with anyio.CancelScope(shield=True):
            await spare.sandbox.stop()
            await spare.sandbox.remove_files()

    async def _reap_idle(self) -> None:
        """Stop spares unused for ``spare_idle`` seconds, and booted ones (the last booted
        first) while the host is short of memory; ends once none is left."""
        try:
            while self.spares and not self.closed:
                await anyio.sleep(min(max(0.05, self.options.spare_idle / 4), REAP_EVERY))
                now = time.monotonic()
                idle = [
                    spare
                    for spare in self.spares
                    if spare.ready_at is not None and now - spare.ready_at > self.options.spare_idle
                ]
                # all out of the pool before the first await: while one is stopped, a
                # create may claim another (it would then be a user's capsule, and no
                # longer in the pool to be removed)
                for spare in idle:
                    self.spares.remove(spare)
                for spare in idle:
                    await self._discard(spare)
                while self.memory_available() < MEMORY_FREE_SHARE:
                    booted = [s for s in self.spares if s.ready_at is not None]
                    if not booted:
                        break
                    spare = max(booted, key=lambda s: s.ready_at or 0.0)
                    log.info("spare %s stopped: the host is short of memory", spare.capsule_id)
                    self.spares.remove(spare)
                    await self._discard(spare)
        finally:
            self._reaping = False

    async def shutdown(self) -> None:
        """Stop every spare, booted or booting (bounded, shielded): the server is going."""
        self.closed = True
        with anyio.CancelScope(shield=True), anyio.move_on_after(30):
            async with anyio.create_task_group() as tg:
                while self.spares:
                    spare = self.spares.pop()
                    self._drop(spare, tg)


def host_memory_share() -> float:
    """The share of the host's memory that is available (1.0 if unknown)."""
    memory = host_memory()
    return 1.0 if memory is None else memory.available_share
