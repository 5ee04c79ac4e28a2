"""Public data models of the SDK (attrs classes, frozen).

``wrenn.models.Capsule`` is the server's description of a capsule; the live object users
drive (``wrenn.AsyncCapsule``) is a different class.

The official SDK's names are here too: ``Status`` (``CapsuleStatus``, with its lowercase
members), ``UsageResponse`` (``CapsuleUsage``), ``SSEEvent`` (``Event``), ``Resource``
(``EventResource``), ``ListDirResponse``, ``MakeDirResponse``. Every model has
``model_dump()``, ``model_dump_json()``, ``model_validate()`` and ``model_validate_json()``.
"""

from __future__ import annotations

# The models' annotations name `dt`; they are resolved in this, their public, module.
import datetime as dt  # noqa: F401

from ._models import Actor as Actor
from ._models import APIKey as APIKey
from ._models import BackgroundProcess as BackgroundProcess
from ._models import Capsule as Capsule
from ._models import CapsuleMetrics as CapsuleMetrics
from ._models import CapsuleStats as CapsuleStats
from ._models import CapsuleStatus as CapsuleStatus
from ._models import CapsuleUsage as CapsuleUsage
from ._models import CommandResult as CommandResult
from ._models import CreatedHost as CreatedHost
from ._models import Event as Event
from ._models import EventResource as EventResource
from ._models import FileEntry as FileEntry
from ._models import FileType as FileType
from ._models import Host as Host
from ._models import HostDeletePreview as HostDeletePreview
from ._models import HostStatus as HostStatus
from ._models import HostToken as HostToken
from ._models import HostType as HostType
from ._models import ListDirResponse as ListDirResponse
from ._models import MakeDirResponse as MakeDirResponse
from ._models import MetricPoint as MetricPoint
from ._models import PendingSnapshot as PendingSnapshot
from ._models import ProcessInfo as ProcessInfo
from ._models import Range as Range
from ._models import Session as Session
from ._models import SignupResult as SignupResult
from ._models import StatsCurrent as StatsCurrent
from ._models import StatsPeaks as StatsPeaks
from ._models import StatsSeries as StatsSeries
from ._models import Template as Template
from ._models import TemplateType as TemplateType
from ._models import UsagePoint as UsagePoint

__all__ = [
    "APIKey",
    "Actor",
    "BackgroundProcess",
    "Capsule",
    "CapsuleMetrics",
    "CapsuleStats",
    "CapsuleStatus",
    "CapsuleUsage",
    "CommandResult",
    "CreatedHost",
    "Event",
    "EventResource",
    "FileEntry",
    "FileType",
    "Host",
    "HostDeletePreview",
    "HostStatus",
    "HostToken",
    "HostType",
    "ListDirResponse",
    "MakeDirResponse",
    "MetricPoint",
    "PendingSnapshot",
    "ProcessInfo",
    "Range",
    "Session",
    "SignupResult",
    "StatsCurrent",
    "StatsPeaks",
    "StatsSeries",
    "Template",
    "TemplateType",
    "UsagePoint",
]

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name

# The official SDK's names for the same models.
Status = CapsuleStatus
UsageResponse = CapsuleUsage
SSEEvent = Event
Resource = EventResource
