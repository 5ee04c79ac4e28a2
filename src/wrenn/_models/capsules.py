"""Capsules, templates, metrics, stats and usage (PROTOCOL §5, §11)."""

from __future__ import annotations

import datetime as dt

import attrs

from .base import WireModel
from .enums import CapsuleStatus, Range, TemplateType

__all__ = [
    "Capsule",
    "CapsuleMetrics",
    "CapsuleStats",
    "CapsuleUsage",
    "MetricPoint",
    "PendingSnapshot",
    "StatsCurrent",
    "StatsPeaks",
    "StatsSeries",
    "Template",
    "UsagePoint",
]


@attrs.frozen
class Capsule(WireModel):
    """A capsule (microVM) as the server describes it.

    ``timeout_sec`` is the inactivity auto-pause TTL (0 = never). ``disk_used_mb`` is only
    sent by a single ``GET``; ``metadata`` holds server keys such as ``kernel_version``
    plus whatever was set at creation.
    """

    id: str
    status: CapsuleStatus
    template: str = ""
    vcpus: int = 0
    memory_mb: int = 0
    timeout_sec: int = 0
    created_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    last_active_at: dt.datetime | None = None
    last_updated: dt.datetime | None = None
    metadata: dict[str, str] = attrs.field(factory=dict)
    disk_size_mb: int | None = None
    disk_used_mb: int | None = None


@attrs.frozen
class Template(WireModel):
    """A template a capsule can be created from: a base image or a snapshot."""

    name: str
    type: TemplateType = TemplateType.BASE
    vcpus: int | None = None
    memory_mb: int | None = None
    size_bytes: int = 0
    created_at: dt.datetime | None = None
    platform: bool = False
    protected: bool = False
    metadata: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class MetricPoint(WireModel):
    """One resource sample. ``cpu_pct`` is 0–100, normalised to the capsule's vCPUs."""

    timestamp_unix: int
    cpu_pct: float = 0.0
    mem_bytes: int = 0
    disk_bytes: int = 0

    @property
    def timestamp(self) -> dt.datetime:
        """The sample time as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.timestamp_unix, tz=dt.UTC)


@attrs.frozen
class CapsuleMetrics(WireModel):
    """Resource samples of one capsule over ``range`` (e.g. ``"10m"``)."""

    capsule_id: str
    range: Range = attrs.field(default=Range(""), converter=Range)
    points: list[MetricPoint] = attrs.field(factory=list)

    @property
    def sandbox_id(self) -> str:
        """The official SDK's (wire) name of :attr:`capsule_id`."""
        return self.capsule_id


@attrs.frozen
class StatsCurrent(WireModel):
    running_count: int = 0
    vcpus_reserved: int = 0
    memory_mb_reserved: int = 0


@attrs.frozen
class StatsPeaks(WireModel):
    running_count: int = 0
    vcpus: int = 0
    memory_mb: int = 0


@attrs.frozen
class StatsSeries(WireModel):
    labels: list[dt.datetime] = attrs.field(factory=list)
    running: list[int] = attrs.field(factory=list)
    vcpus: list[int] = attrs.field(factory=list)
    memory_mb: list[int] = attrs.field(factory=list)


@attrs.frozen
class CapsuleStats(WireModel):
    """Team-wide capsule counts and reservations: now, peaks, and a time series."""

    range: Range = attrs.field(default=Range(""), converter=Range)
    current: StatsCurrent = attrs.field(factory=StatsCurrent)
    peaks: StatsPeaks = attrs.field(factory=StatsPeaks)
    series: StatsSeries = attrs.field(factory=StatsSeries)


@attrs.frozen
class UsagePoint(WireModel):
    date: dt.date
    cpu_minutes: float = 0.0
    ram_mb_minutes: float = 0.0


@attrs.frozen
class CapsuleUsage(WireModel):
    """Daily CPU and memory usage of the team between ``from_`` and ``to`` (inclusive)."""

    from_: dt.date
    to: dt.date
    points: list[UsagePoint] = attrs.field(factory=list)


@attrs.frozen
class PendingSnapshot(WireModel):
    """A snapshot the server accepted and is still writing.

    ``name`` is the template name it will appear under (the SDK picks one when the caller
    did not, since the server does not echo it); ``capsule`` is the source capsule as the
    server answered (status ``snapshotting``). ``template`` is set when the server
    finished synchronously (older servers answer 201 with the template).
    """

    name: str
    capsule: Capsule | None = None
    template: Template | None = None

    # The official SDK returns a Template here (parsed from the capsule the server
    # answers): a program reading its template fields keeps working. Each is the
    # finished template's when the server finished synchronously, else what is known.

    @property
    def type(self) -> TemplateType:
        """Always a snapshot template."""
        return self.template.type if self.template is not None else TemplateType.SNAPSHOT

    @property
    def vcpus(self) -> int | None:
        """The template's vCPUs: the source capsule's until it is finished."""
        if self.template is not None:
            return self.template.vcpus
        return self.capsule.vcpus if self.capsule is not None else None

    @property
    def memory_mb(self) -> int | None:
        """The template's memory: the source capsule's until it is finished."""
        if self.template is not None:
            return self.template.memory_mb
        return self.capsule.memory_mb if self.capsule is not None else None

    @property
    def size_bytes(self) -> int:
        """0 until the snapshot is written (``client.snapshots.wait`` gives the size)."""
        return self.template.size_bytes if self.template is not None else 0

    @property
    def created_at(self) -> dt.datetime | None:
        """``None`` until the snapshot is written."""
        return self.template.created_at if self.template is not None else None

    @property
    def platform(self) -> bool:
        return False

    @property
    def protected(self) -> bool:
        return self.template.protected if self.template is not None else False

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.template.metadata) if self.template is not None else {}
