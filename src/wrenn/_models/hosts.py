"""Hosts (PROTOCOL §15.3)."""

from __future__ import annotations

import datetime as dt

import attrs

from .base import WireModel
from .enums import HostStatus, HostType

__all__ = ["CreatedHost", "Host", "HostDeletePreview", "HostToken"]


@attrs.frozen
class Host(WireModel):
    """A machine that runs capsules."""

    id: str
    type: HostType = HostType.REGULAR
    status: HostStatus = HostStatus.PENDING
    team_id: str | None = None
    team_name: str | None = None
    provider: str | None = None
    availability_zone: str | None = None
    arch: str | None = None
    cpu_cores: int | None = None
    memory_mb: int | None = None
    disk_gb: int | None = None
    address: str | None = None
    last_heartbeat_at: dt.datetime | None = None
    created_by: str | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    running_vcpus: int | None = None
    running_memory_mb: int | None = None
    running_disk_mb: int | None = None
    paused_memory_mb: int | None = None
    paused_disk_mb: int | None = None


@attrs.frozen
class CreatedHost(WireModel):
    """A newly created host and its one-time registration token (kept out of the repr)."""

    host: Host
    registration_token: str = attrs.field(default="", repr=False)


@attrs.frozen
class HostToken(WireModel):
    """A regenerated registration token for a pending host (kept out of the repr)."""

    registration_token: str = attrs.field(default="", repr=False)
    host: Host | None = None


@attrs.frozen
class HostDeletePreview(WireModel):
    """What deleting a host would take down."""

    host: Host
    capsule_ids: list[str] = attrs.field(factory=list)
