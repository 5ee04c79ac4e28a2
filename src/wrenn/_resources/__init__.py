"""Thin typed REST calls, one method per endpoint, returning attrs models."""

from __future__ import annotations

from .accounts import AsyncAPIKeys as AsyncAPIKeys
from .accounts import AsyncAuth as AsyncAuth
from .capsules import AsyncCapsules as AsyncCapsules
from .events import AsyncEvents as AsyncEvents
from .events import EventStream as EventStream
from .files import AsyncFiles as AsyncFiles
from .hosts import AsyncHosts as AsyncHosts
from .processes import AsyncProcesses as AsyncProcesses
from .snapshots import AsyncSnapshots as AsyncSnapshots
