"""Capsules: their records and the lifecycle state machine.

Lifecycle (PROTOCOL §5.2, v0.2 behaviour): every change answers at once with a
transitional status and completes in a task of the server's task group::

    create   -> starting     -> running | error
    pause    -> pausing      -> paused        (every process frozen)
    resume   -> resuming     -> running
    destroy  -> stopping     -> stopped       (processes killed, files removed)
    snapshot -> snapshotting -> back to running or paused

Transitions of one capsule are serialised by its lock. Templates live in the
:class:`~._templates.TemplateStore`; the TTL reaper and the sampler are in ``_upkeep.py``.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import shutil
import time
from collections import deque
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.abc
import attrs

from ._accounts import Principal, now_utc, rfc3339
from ._boot_process import boot_process_for
from ._cgroups import remove_cgroup_parents
from ._code_runner import JupyterSupport
from ._errors import ApiError, bad_request, not_found
from ._events import EventHub
from ._host_memory import host_memory
from ._ids import is_valid, new_id, new_tag
from ._isolation import HostSupport, Isolation
from ._metrics import MetricSeries
from ._options import ServerOptions
from ._ready_networks import ReadyNetworks
from ._rootfs import copy_layers, du
from ._sandbox import Sandbox, SandboxSpec
from ._spares import BootKey, Spare, SparePool
from ._templates import DEFAULT_TEMPLATE, NAME_RE, TemplateRecord, TemplateStore

__all__ = ["CapsuleManager", "CapsuleRecord", "require_status"]

log = logging.getLogger("wrenn_local.capsules")

META_KEY_RE: Final = NAME_RE
RESERVED_META: Final = frozenset(
    {
        "kernel_version",
        "vmm_version",
        "agent_version",
        "envd_version",
        "isolation",
        "isolation_reasons",
        "cgroups",
        "disk_limit",
        "network",
        "network_reasons",
        "error",
    }
)
LIVE: Final = frozenset(
    {"starting", "running", "pausing", "paused", "resuming", "snapshotting", "stopping"}
)


@attrs.define(eq=False)
class CapsuleRecord:
    id: str
    team_id: str
    template: str
    vcpus: int
    memory_mb: int
    timeout_sec: int
    disk_size_mb: int
    metadata: dict[str, str]
    status: str
    created_at: dt.datetime
    last_updated: dt.datetime
    started_at: dt.datetime | None = None
    last_active_at: dt.datetime | None = None
    last_active_mono: float = attrs.field(factory=time.monotonic)
    sandbox: Sandbox | None = None
    lock: anyio.Lock = attrs.field(factory=anyio.Lock)
    # the boot in progress; a destroy cancels it (a code runner may wait long for Jupyter)
    boot_scope: anyio.CancelScope | None = None
    metrics: MetricSeries = attrs.field(factory=MetricSeries)
    disk_cache: tuple[float, int] = (0.0, 0)

    def to_json(self, *, single: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "template": self.template,
            "vcpus": self.vcpus,
            "memory_mb": self.memory_mb,
            "timeout_sec": self.timeout_sec,
            "created_at": rfc3339(self.created_at),
            "started_at": rfc3339(self.started_at),
            "last_active_at": rfc3339(self.last_active_at),
            "last_updated": rfc3339(self.last_updated),
            "metadata": self.metadata,
            "disk_size_mb": self.disk_size_mb,
        }
        if single:
            out["disk_used_mb"] = self.disk_cache[1] // (1024 * 1024)
        return out

    def set_status(self, status: str) -> str:
        previous, self.status = self.status, status
        self.last_updated = now_utc()
        return previous

    def touch(self) -> None:
        self.last_active_at = now_utc()
        self.last_active_mono = time.monotonic()


class CapsuleManager:
    def __init__(
        self,
        *,
        support: HostSupport,
        data_dir: Path,
        task_group: anyio.abc.TaskGroup,
        events: EventHub,
        options: ServerOptions,
        base: Path | None = None,
    ) -> None:
        self.support = support
        self.data_dir = data_dir
        # the base template (_rootfs.prepare_base): shared by this user's servers where
        # the server holds one (_shared_base.py), else the data directory's own
        self.base = data_dir / "base" if base is None else base
        self.tg = task_group
        self.events = events
        self.options = options
        self.capsules: dict[str, CapsuleRecord] = {}
        self.templates = TemplateStore()
        self.team_stats: dict[str, deque[tuple[float, int, int, int]]] = {}
        self.usage: dict[tuple[str, dt.date], list[float]] = {}
        self._jupyter: JupyterSupport | None = None
        self._keys: dict[str, BootKey] = {}  # boot keys of the capsules in use, by id
        self.spares = SparePool(
            options=options, task_group=task_group, make_sandbox=self._sandbox, room=self._room
        )
        self.ready_networks: ReadyNetworks | None = None
        if (
            options.ready_networks > 0
            and support.isolation is Isolation.FULL
            and support.network.available
        ):
            self.ready_networks = ReadyNetworks(
                tools=support.network,
                boot=functools.partial(boot_process_for, data_dir),
                directory=data_dir / "networks",
                size=options.ready_networks,
                idle=options.spare_idle,
                task_group=task_group,
            )

    # -- look-ups

    def get(self, principal: Principal, capsule_id: str) -> CapsuleRecord:
        if not is_valid("cl", capsule_id):
            raise bad_request("invalid capsule ID")
        record = self.capsules.get(capsule_id)
        if record is None or record.team_id != principal.team_id:
            raise not_found("capsule not found")
        return record

    def running(self, principal: Principal, capsule_id: str) -> CapsuleRecord:
        record = self.get(principal, capsule_id)
        require_status(record, "running")
        return record

    def list_for(self, principal: Principal) -> list[CapsuleRecord]:
        records = [
            r
            for r in self.capsules.values()
            if r.team_id == principal.team_id and r.status not in ("stopped", "error")
        ]
        return sorted(records, key=lambda r: r.created_at, reverse=True)

    def jupyter(self) -> JupyterSupport:
        """What the code-runner template needs, found on first use."""
        if self._jupyter is None:
            self._jupyter = JupyterSupport.detect(self.support.capsule_python)
        return self._jupyter

    # -- create

    def create(self, principal: Principal, body: dict[str, Any]) -> CapsuleRecord:
        template_name = body.get("template")
        if template_name is None:
            template_name = DEFAULT_TEMPLATE
        if not isinstance(template_name, str) or not NAME_RE.match(template_name):
            raise bad_request("invalid template name")
        vcpus = _positive_int(body.get("vcpus"), "vcpus", default=1)
        memory_mb = _positive_int(body.get("memory_mb"), "memory_mb", default=512)
        host_disk_mb = _disk_mb(self.data_dir)
        disk_size_mb = _positive_int(
            body.get("disk_size_mb"), "disk_size_mb", default=min(5120, host_disk_mb or 5120)
        )
        _within_host(vcpus, memory_mb, disk_size_mb, host_disk_mb)
        timeout_sec = body.get("timeout_sec")
        if timeout_sec is None:
            timeout_sec = 0
        if not isinstance(timeout_sec, int) or isinstance(timeout_sec, bool) or timeout_sec < 0:
            raise bad_request("timeout_sec must be a non-negative integer")
        if 0 < timeout_sec < self.options.min_timeout_sec:
            timeout_sec = self.options.min_timeout_sec
        metadata = _check_metadata(body.get("metadata"))
        network = body.get("network")  # an extension of wrenn_local: _network.py
        if network is None:
            network = True
        if not isinstance(network, bool):
            raise bad_request("network must be a boolean")
        template = self.templates.for_capsule(principal.team_id, template_name)
        if template.vcpus:
            vcpus = template.vcpus
        if template.memory_mb:
            memory_mb = template.memory_mb
        jupyter_site = None
        if "jupyter" in template.services:
            support = self.jupyter()
            if support.problem is not None:
                raise bad_request(support.problem)
            jupyter_site = support.site_packages
        live = self._live()
        if live >= self.options.max_capsules:
            raise ApiError(503, "no_hosts_available", "no servers available — try again later")
        metadata.update(self._system_metadata())
        metadata.update(self._network_metadata(network))
        key = BootKey(
            owner=template.team_id,
            template=template_name,
            template_created=template.created_at,
            layers=tuple(template.layers),
            vcpus=vcpus,
            memory_mb=memory_mb,
            disk_size_mb=disk_size_mb,
            services=template.services,
            jupyter_site=jupyter_site,
            network=network and self.support.network.available,
        )
        spare = self.spares.claim(key)
        if spare is None and live + len(self.spares) >= self.options.max_capsules:
            self.spares.make_room()  # spares never make a user's create fail
        stamp = now_utc()
        record = CapsuleRecord(
            id=spare.capsule_id if spare is not None else new_id("cl"),
            team_id=principal.team_id,
            template=template_name,
            vcpus=vcpus,
            memory_mb=memory_mb,
            timeout_sec=timeout_sec,
            disk_size_mb=disk_size_mb,
            metadata=metadata,
            status="starting",
            created_at=stamp,
            last_updated=stamp,
        )
        self.capsules[record.id] = record
        if spare is not None:
            self._claimed(record, spare, principal)
        else:
            record.sandbox = self._sandbox(key, record.id)
            record.sandbox.ready_networks = self.ready_networks  # (spares make their own)
            self.tg.start_soon(self._boot, record, principal)
        self.spares.created(key, self._in_use(record.id, key))
        return record

    def _in_use(self, capsule_id: str, key: BootKey) -> int:
        """Capsules of ``key`` in use now, ``capsule_id`` (just created) among them."""
        self._keys[capsule_id] = key
        in_use = LIVE - {"stopping"}  # (a destroyed capsule whose sandbox is going: not)
        ended = [
            c for c in self._keys if getattr(self.capsules.get(c), "status", None) not in in_use
        ]
        for cid in ended:
            del self._keys[cid]  # (ended: forgotten, so this stays as small as what runs)
        return sum(1 for k in self._keys.values() if k == key)

    def _sandbox(self, key: BootKey, capsule_id: str) -> Sandbox:
        """The sandbox of a capsule of ``key`` (cold boots and spares alike)."""
        return Sandbox(
            SandboxSpec(
                capsule_id=capsule_id,
                template=key.template,
                vcpus=key.vcpus,
                memory_mb=key.memory_mb,
                layers=list(key.layers),
                directory=self.data_dir / "capsules" / capsule_id,
                hide=sorted({str(self.data_dir), str(self.base.parent)}),
                services=key.services,
                jupyter_site=key.jupyter_site,
                network=key.network,
                disk_size_mb=key.disk_size_mb,
            ),
            self.support,
            self.base,
            self.data_dir,
        )

    def _live(self) -> int:
        """Capsules that hold a sandbox or will: every status but stopped and error."""
        return sum(1 for r in self.capsules.values() if r.status in LIVE)

    def _room(self) -> int:
        """How many more capsules (records or spares) may run."""
        return self.options.max_capsules - self._live()

    def _claimed(self, record: CapsuleRecord, spare: Spare, principal: Principal) -> None:
        """``record`` takes a booted spare: the rest of what ``_boot`` does, at once."""
        record.sandbox = spare.sandbox
        self._network_failed(record)
        record.metadata["disk_limit"] = spare.sandbox.disk_limit[:64]
        record.set_status("running")
        record.started_at = record.created_at
        record.touch()
        self._emit(record, "capsule.create", principal, outcome="success")
        self._state_changed(record, "starting", "running")
        self.tg.start_soon(self._watch, record)

    def _system_metadata(self) -> dict[str, str]:
        meta = {
            "agent_version": "wrenn-local",
            "envd_version": "wrenn-local-agent",
            "isolation": str(self.support.isolation),
            "disk_limit": "recorded, not enforced",
        }
        if self.support.reasons:
            meta["isolation_reasons"] = "; ".join(self.support.reasons)[:64]
        meta["cgroups"] = (
            f"v{self.support.cgroup_version}" if self.support.cgroup_version else "unavailable"
        )
        return meta

    def _network_metadata(self, wanted: bool) -> dict[str, str]:
        if not wanted:
            return {"network": "off"}
        if not self.support.network.available:
            reasons = "; ".join(self.support.network.reasons)[:64]
            return {"network": "off", "network_reasons": reasons}
        return {"network": "on"}

    def _network_failed(self, record: CapsuleRecord) -> None:
        network = record.sandbox.network if record.sandbox is not None else None
        if network is not None and network.problem is not None:
            log.warning("capsule %s has no network: %s", record.id, network.problem)
            record.metadata.update({"network": "off", "network_reasons": network.problem[:64]})

    async def _boot(self, record: CapsuleRecord, principal: Principal) -> None:
        assert record.sandbox is not None
        try:
            async with record.lock:
                with anyio.CancelScope() as record.boot_scope:
                    await self._hold()
                    await record.sandbox.start()
                    self._network_failed(record)
                    record.metadata["disk_limit"] = record.sandbox.disk_limit[:64]
                    await record.sandbox.start_services()
                record.boot_scope = None
                if record.status != "starting":  # destroyed while booting: do not leak it
                    await record.sandbox.stop()
                    return
                record.set_status("running")
                record.started_at = now_utc()
                record.touch()
        except Exception as exc:
            if record.status != "starting":
                return  # destroyed while booting: the destroy task finishes the job
            log.warning("capsule %s failed to start: %s", record.id, exc)
            record.set_status("error")
            await record.sandbox.stop()
            await record.sandbox.remove_files()
            self._emit(record, "capsule.create", principal, outcome="error", error=str(exc))
            return
        self._emit(record, "capsule.create", principal, outcome="success")
        self._state_changed(record, "starting", "running")
        self.tg.start_soon(self._watch, record)

    async def _watch(self, record: CapsuleRecord) -> None:
        """A capsule whose sandbox ends by itself (its agent died: killed, out of
        memory) turns ``error``, with the reason in ``metadata.error``, and is cleaned up."""
        sandbox = record.sandbox
        assert sandbox is not None
        assert sandbox.process is not None
        code = await sandbox.process.wait()
        if sandbox.stop_requested() or record.status in ("stopping", "stopped", "error"):
            return
        reason = f"capsule agent exited (status {code})"
        log.warning("capsule %s: %s", record.id, reason)
        previous = record.set_status("error")
        record.metadata["error"] = reason
        with anyio.CancelScope(shield=True):
            await sandbox.stop()
            await sandbox.remove_files()
        self._state_changed(record, previous, "error", reason="agent_exited")

    async def _hold(self) -> None:
        if self.options.transition_delay:
            await anyio.sleep(self.options.transition_delay)

    # -- pause / resume

    def pause(
        self, principal: Principal, capsule_id: str, *, reason: str | None = None
    ) -> CapsuleRecord:
        record = self.get(principal, capsule_id)
        if record.status != "running":
            raise ApiError(
                409, "invalid_state", f"capsule is not running (status: {record.status})"
            )
        record.set_status("pausing")
        self.tg.start_soon(self._pause, record, principal, reason)
        return record

    async def _pause(
        self, record: CapsuleRecord, principal: Principal | None, reason: str | None
    ) -> None:
        assert record.sandbox is not None
        async with record.lock:
            await self._hold()
            if record.status != "pausing":
                return
            await record.sandbox.freeze(True)
            record.set_status("paused")
        self._emit(record, "capsule.pause", principal, outcome="success")
        self._state_changed(record, "running", "paused", reason=reason)

    def resume(self, principal: Principal, capsule_id: str) -> CapsuleRecord:
        record = self.get(principal, capsule_id)
        if record.status != "paused":
            raise ApiError(409, "invalid_state", f"capsule is not paused (status: {record.status})")
        record.set_status("resuming")
        self.tg.start_soon(self._resume, record, principal)
        return record

    async def _resume(self, record: CapsuleRecord, principal: Principal) -> None:
        assert record.sandbox is not None
        async with record.lock:
            await self._hold()
            if record.status != "resuming":
                return
            await record.sandbox.freeze(False)
            record.set_status("running")
            record.touch()
        self._emit(record, "capsule.resume", principal, outcome="success")
        self._state_changed(record, "paused", "running")

    def expire(self, record: CapsuleRecord) -> None:
        """Pause a running capsule whose ``timeout_sec`` of inactivity ran out."""
        record.set_status("pausing")
        self.tg.start_soon(self._pause, record, None, "ttl_expired")

    # -- destroy

    def destroy(self, principal: Principal, capsule_id: str) -> CapsuleRecord:
        record = self.get(principal, capsule_id)
        if record.status in ("stopping", "stopped"):
            return record
        previous = record.set_status("stopping")
        if record.boot_scope is not None:
            record.boot_scope.cancel()  # the boot gives the lock up at once
        self.tg.start_soon(self._destroy, record, principal, previous)
        return record

    async def _destroy(
        self, record: CapsuleRecord, principal: Principal | None, previous: str
    ) -> None:
        with anyio.CancelScope(shield=True):
            if record.sandbox is not None:
                await record.sandbox.stop()  # unblocks anything waiting on the agent
            async with record.lock:  # any boot it interrupted has given up by now
                if record.sandbox is not None:
                    await record.sandbox.stop()  # what that boot made meanwhile, if any
                    await record.sandbox.remove_files()
                record.set_status("stopped")
        self._emit(record, "capsule.destroy", principal, outcome="success")
        self._state_changed(record, previous, "stopped")

    async def shutdown(self) -> None:
        """Destroy every capsule and spare, and close the ready networks (bounded,
        shielded): the server is going away."""
        await self.spares.shutdown()
        if self.ready_networks is not None:
            await self.ready_networks.aclose()
        with anyio.CancelScope(shield=True), anyio.move_on_after(30):
            async with anyio.create_task_group() as tg:
                for record in list(self.capsules.values()):
                    if record.status not in ("stopped",):
                        if record.boot_scope is not None:
                            record.boot_scope.cancel()
                        previous = record.set_status("stopping")
                        tg.start_soon(self._destroy, record, None, previous)
            await anyio.to_thread.run_sync(remove_cgroup_parents)

    # -- snapshots

    def snapshot(self, principal: Principal, body: dict[str, Any]) -> CapsuleRecord:
        capsule_id = body.get("sandbox_id")
        if not isinstance(capsule_id, str) or not capsule_id:
            raise bad_request("sandbox_id is required")
        if not is_valid("cl", capsule_id):
            raise bad_request("invalid capsule ID")
        name = body.get("name")
        if name is None or name == "":  # omitted: the server picks one, as the real one
            name = new_tag("template")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise bad_request(f"invalid snapshot name: {name!r}")
        self.templates.check_free(principal.team_id, name)
        record = self.get(principal, capsule_id)
        if record.status not in ("running", "paused"):
            raise ApiError(
                409, "invalid_state", f"capsule is not running or paused (status: {record.status})"
            )
        previous = record.set_status("snapshotting")
        # Reserve the name now so a second request with it gets 409 at once.
        template = self.templates.find(record.team_id, record.template)
        placeholder = self.templates.reserve(
            principal.team_id,
            name,
            source=record.id,
            parent=template,
            vcpus=record.vcpus,
            memory_mb=record.memory_mb,
        )
        parent_layers = list(template.layers) if template else []
        self.tg.start_soon(self._snapshot, record, principal, placeholder, parent_layers, previous)
        return record

    async def _snapshot(
        self,
        record: CapsuleRecord,
        principal: Principal,
        template: TemplateRecord,
        parent_layers: list[Path],
        previous: str,
    ) -> None:
        assert record.sandbox is not None
        target = self.data_dir / "templates" / f"{template.team_id}-{template.name}"
        ok = False
        try:
            async with record.lock:
                await self._hold()
                if record.status != "snapshotting":
                    return
                if previous == "running":
                    await record.sandbox.freeze(True)
                try:
                    await anyio.to_thread.run_sync(
                        copy_layers,
                        record.sandbox.upper_dir,
                        target,
                        ("root", "usr", "etc", "var", "opt"),
                    )
                finally:
                    if previous == "running" and not record.sandbox.stop_requested():
                        await record.sandbox.freeze(False)  # (a stop thaws it itself)
                # A destroy during the copy (it stops the sandbox before it takes the
                # lock) took the capsule's files away under it: what was copied may be
                # anything down to nothing, so the snapshot fails rather than keep it.
                if record.status == "snapshotting":
                    record.set_status(previous)
                    ok = True
        except Exception as exc:
            if record.status == "snapshotting":
                log.warning("snapshot %s failed: %s", template.name, exc)
                record.set_status(previous)
            else:  # its copy failed as the capsule's files went away
                log.info("snapshot %s abandoned: its capsule was destroyed", template.name)
        if not ok:
            self.templates.discard(template)
            shutil.rmtree(target, ignore_errors=True)
            self._emit(
                record,
                "template.snapshot.create",
                principal,
                outcome="error",
                resource=(template.name, "template"),
            )
            return
        size = await anyio.to_thread.run_sync(du, target)
        self.templates.complete(
            template, layers=[target, *parent_layers], size_bytes=size, source=record.id
        )
        self._emit(
            record,
            "template.snapshot.create",
            principal,
            outcome="success",
            resource=(template.name, "template"),
        )

    def delete_template(self, principal: Principal, name: str) -> None:
        self.templates.delete(principal.team_id, name)
        self.events.publish(
            principal.team_id,
            "template.snapshot.delete",
            resource_id=name,
            resource_type="template",
            actor=_actor(principal),
            outcome="success",
        )

    # -- events

    def _emit(
        self,
        record: CapsuleRecord,
        event: str,
        principal: Principal | None,
        *,
        outcome: str,
        error: str | None = None,
        resource: tuple[str, str] | None = None,
    ) -> None:
        rid, rtype = resource or (record.id, "capsule")
        self.events.publish(
            record.team_id,
            event,
            resource_id=rid,
            resource_type=rtype,
            actor=_actor(principal),
            outcome=outcome,
            error=error,
            capsule=record.to_json(),
        )

    def _state_changed(
        self, record: CapsuleRecord, old: str, new: str, *, reason: str | None = None
    ) -> None:
        metadata = {"from": old, "to": new}
        if reason:
            metadata["reason"] = reason
        self.events.publish(
            record.team_id,
            "capsule.state.changed",
            resource_id=record.id,
            metadata=metadata,
            capsule=record.to_json(),
        )


def require_status(record: CapsuleRecord, *allowed: str) -> None:
    if record.status not in allowed:
        raise ApiError(
            409, "invalid_state", f"capsule is not {' or '.join(allowed)} (status: {record.status})"
        )


def _actor(principal: Principal | None) -> dict[str, Any]:
    if principal is None:
        return {"type": "system"}
    return {"type": principal.kind, "id": principal.actor_id}


def _positive_int(value: Any, name: str, *, default: int) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad_request(f"{name} must be an integer")
    return value if value > 0 else default


def _within_host(vcpus: int, memory_mb: int, disk_size_mb: int, host_disk_mb: int | None) -> None:
    """A capsule asks for at most this host's CPUs, memory and disk (``host_disk_mb``:
    :func:`_disk_mb`, None if unknown); a clear 400 otherwise."""
    cpus = len(os.sched_getaffinity(0))
    if vcpus > cpus:
        raise bad_request(f"vcpus must be at most {cpus} (this host's CPUs)")
    if host_disk_mb is not None and disk_size_mb > host_disk_mb:
        raise bad_request(
            f"disk_size_mb must be at most {host_disk_mb} (the size of this host's disk "
            "that holds the capsules)"
        )
    memory = host_memory()
    if memory is not None and memory_mb > memory.total_mb:
        raise bad_request(f"memory_mb must be at most {memory.total_mb} (this host's memory)")


def _disk_mb(data_dir: Path) -> int | None:
    """The size in MiB of the filesystem that holds ``data_dir`` (its capsules' disk
    images), or None if it cannot be read. A capsule's disk is a sparse image there: one
    larger than the filesystem is a promise the host cannot keep, and its template costs
    host disk in proportion (mkfs wrote 133 MB for 10 TB)."""
    where = data_dir
    while not where.exists() and where != where.parent:
        where = where.parent  # (made at start: a parent before that)
    try:
        st = os.statvfs(where)
    except OSError:
        return None
    return st.f_blocks * st.f_frsize // (1024 * 1024) or None


def _check_metadata(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise bad_request("metadata must be an object of strings")
    if len(raw) > 20:
        raise bad_request("metadata holds at most 20 keys")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not META_KEY_RE.match(key):
            raise bad_request(f"invalid metadata key: {key!r}")
        if key in RESERVED_META:
            raise bad_request(f"metadata key {key!r} is reserved")
        if not isinstance(value, str) or len(value) > 64:
            raise bad_request(f"metadata value for {key!r} must be a string of at most 64 chars")
        out[key] = value
    return out
