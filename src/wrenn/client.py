"""The official SDK's ``wrenn.client`` module: the clients and their REST resources.

Names kept for code written for the official ``wrenn`` 0.3.0 SDK. ``WrennClient`` is this
SDK's sync client (one portal thread, the async core inside) and ``AsyncWrennClient`` the
async one; both have ``capsules``, ``snapshots`` and ``events`` like the official
low-level clients, plus the rest of this SDK's API.
"""

from __future__ import annotations

from wrenn import AsyncWrennClient, WrennClient
from wrenn._resources import AsyncCapsules as AsyncCapsulesResource
from wrenn._resources import AsyncEvents as AsyncEventsResource
from wrenn._resources import AsyncSnapshots as AsyncSnapshotsResource
from wrenn._sync.resources import Capsules as CapsulesResource
from wrenn._sync.resources import Events as EventsResource
from wrenn._sync.resources import Snapshots as SnapshotsResource
from wrenn.exceptions import handle_response
from wrenn.models import Capsule as CapsuleModel
from wrenn.models import CapsuleMetrics, CapsuleStats, SSEEvent, Template, UsageResponse

__all__ = [
    "AsyncCapsulesResource",
    "AsyncEventsResource",
    "AsyncSnapshotsResource",
    "AsyncWrennClient",
    "CapsuleMetrics",
    "CapsuleModel",
    "CapsuleStats",
    "CapsulesResource",
    "EventsResource",
    "SSEEvent",
    "SnapshotsResource",
    "Template",
    "UsageResponse",
    "WrennClient",
    "handle_response",
]
