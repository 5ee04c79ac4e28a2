"""attrs models of everything the wire carries (conversion: ``wrenn._resources.converter``)."""

from __future__ import annotations

from .accounts import APIKey as APIKey
from .accounts import Session as Session
from .accounts import SignupResult as SignupResult
from .capsules import Capsule as Capsule
from .capsules import CapsuleMetrics as CapsuleMetrics
from .capsules import CapsuleStats as CapsuleStats
from .capsules import CapsuleUsage as CapsuleUsage
from .capsules import MetricPoint as MetricPoint
from .capsules import PendingSnapshot as PendingSnapshot
from .capsules import StatsCurrent as StatsCurrent
from .capsules import StatsPeaks as StatsPeaks
from .capsules import StatsSeries as StatsSeries
from .capsules import Template as Template
from .capsules import UsagePoint as UsagePoint
from .enums import CapsuleStatus as CapsuleStatus
from .enums import FileType as FileType
from .enums import HostStatus as HostStatus
from .enums import HostType as HostType
from .enums import Range as Range
from .enums import TemplateType as TemplateType
from .events import Actor as Actor
from .events import Event as Event
from .events import EventResource as EventResource
from .files import FileEntry as FileEntry
from .files import ListDirResponse as ListDirResponse
from .files import MakeDirResponse as MakeDirResponse
from .hosts import CreatedHost as CreatedHost
from .hosts import Host as Host
from .hosts import HostDeletePreview as HostDeletePreview
from .hosts import HostToken as HostToken
from .processes import BackgroundProcess as BackgroundProcess
from .processes import CommandResult as CommandResult
from .processes import ProcessInfo as ProcessInfo


def _resolve_annotations() -> None:
    # Resolve string annotations now, while each class still names its defining module:
    # the public façade rewrites ``__module__`` and later look-ups would fail.
    import attrs

    for value in list(globals().values()):
        if isinstance(value, type) and attrs.has(value):
            attrs.resolve_types(value)


_resolve_annotations()
