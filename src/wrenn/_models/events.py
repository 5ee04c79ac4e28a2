"""Server-sent events of the team (PROTOCOL §12)."""

from __future__ import annotations

import datetime as dt

import attrs

from .base import WireModel
from .capsules import Capsule

__all__ = ["Actor", "Event", "EventResource"]


@attrs.frozen
class EventResource(WireModel):
    id: str = ""
    type: str = ""


@attrs.frozen
class Actor(WireModel):
    """Who caused an event: ``user``, ``api_key`` or ``system``."""

    type: str = ""
    id: str | None = None
    name: str | None = None


@attrs.frozen
class Event(WireModel):
    """One event from ``GET /v1/events/stream``.

    ``event`` is the kind (``capsule.create``, ``capsule.state.changed``, ...);
    ``outcome`` is ``success`` or ``error`` on action events; ``capsule`` is the capsule
    as it was, for ``capsule.*`` events.
    """

    event: str
    outcome: str | None = None
    resource: EventResource | None = None
    actor: Actor | None = None
    metadata: dict[str, str] = attrs.field(factory=dict)
    error: str | None = None
    capsule: Capsule | None = None
    timestamp: dt.datetime | None = None

    @property
    def sandbox(self) -> Capsule | None:
        """The official SDK's (wire) name of :attr:`capsule`."""
        return self.capsule
