"""Templates and snapshots (PROTOCOL §11): the store that knows which are ready.

A snapshot's name is reserved the moment it is requested (so a second request with it
gets 409 at once), but the template is *ready* only once its files are written and its
size is known: only then is it listed by ``GET /v1/snapshots`` (the protocol's
completion signal) and can capsules be created from it. Creating a capsule from a
template that is still being written answers 409 ``conflict``: booting it then would
give a capsule without the snapshot's files.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path
from typing import Any, Final

import attrs

from ._accounts import now_utc, rfc3339
from ._code_runner import JUPYTER_PORT, KERNEL_NAME
from ._code_runner import TEMPLATE as CODE_TEMPLATE
from ._errors import ApiError, bad_request, not_found

__all__ = ["DEFAULT_TEMPLATE", "NAME_RE", "TemplateRecord", "TemplateStore"]

NAME_RE: Final = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$")
BASE_TEMPLATES: Final = ("minimal-ubuntu", "minimal")
DEFAULT_TEMPLATE: Final = "minimal-ubuntu"


@attrs.define(eq=False)
class TemplateRecord:
    name: str
    type: str  # "base" | "snapshot"
    team_id: str | None  # None: a platform template, visible to every team
    created_at: dt.datetime
    layers: list[Path] = attrs.field(factory=list)  # newest first
    vcpus: int | None = None
    memory_mb: int | None = None
    size_bytes: int = 0
    protected: bool = False
    metadata: dict[str, str] = attrs.field(factory=dict)
    services: tuple[str, ...] = ()  # started in each capsule at boot ("jupyter")
    ready: bool = True  # False while a snapshot is still being written

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "size_bytes": self.size_bytes,
            "created_at": rfc3339(self.created_at),
            "platform": self.team_id is None,
            "protected": self.protected,
        }
        if self.vcpus:
            out["vcpus"] = self.vcpus
        if self.memory_mb:
            out["memory_mb"] = self.memory_mb
        if self.metadata:
            out["metadata"] = self.metadata
        return out


class TemplateStore:
    """Every template of the server: the platform's, and each team's snapshots.

    Keys are ``(team_id, name)``, with ``team_id`` ``None`` for platform templates.
    """

    def __init__(self) -> None:
        self._templates: dict[tuple[str | None, str], TemplateRecord] = {}
        started = now_utc()
        for name in BASE_TEMPLATES:
            self._templates[(None, name)] = TemplateRecord(
                name=name, type="base", team_id=None, created_at=started, protected=True
            )
        self._templates[(None, CODE_TEMPLATE)] = TemplateRecord(
            name=CODE_TEMPLATE,
            type="base",
            team_id=None,
            created_at=started,
            protected=True,
            services=("jupyter",),
            metadata={"kernel": KERNEL_NAME, "jupyter_port": str(JUPYTER_PORT)},
        )

    def find(self, team_id: str, name: str) -> TemplateRecord | None:
        """The team's template of that name, else the platform's; ready or not."""
        return self._templates.get((team_id, name)) or self._templates.get((None, name))

    def for_capsule(self, team_id: str, name: str) -> TemplateRecord:
        """The template a new capsule boots from: 404 if unknown, 409 if not ready yet."""
        template = self.find(team_id, name)
        if template is None:
            raise not_found("template not found")
        if not template.ready:
            raise ApiError(
                409,
                "conflict",
                f"template {name!r} is still being written (its snapshot is not complete); "
                "try again once GET /v1/snapshots lists it",
            )
        return template

    def listed(self, team_id: str, type_filter: str | None) -> list[TemplateRecord]:
        """The ready templates a team sees, newest first, optionally of one type."""
        found = [
            t for (team, _), t in self._templates.items() if team in (None, team_id) and t.ready
        ]
        if type_filter:
            found = [t for t in found if t.type == type_filter]
        return sorted(found, key=lambda t: t.created_at, reverse=True)

    def check_free(self, team_id: str, name: str) -> None:
        """409 when the name is a platform template's or already the team's."""
        if (None, name) in self._templates:
            raise ApiError(
                409, "name_reserved", f"name {name!r} is reserved by a platform template"
            )
        if (team_id, name) in self._templates:
            raise ApiError(409, "template_name_taken", f"a template named {name!r} already exists")

    def reserve(
        self,
        team_id: str,
        name: str,
        *,
        source: str,
        parent: TemplateRecord | None,
        vcpus: int,
        memory_mb: int,
    ) -> TemplateRecord:
        """Reserve a snapshot's name for the team (409 as :meth:`check_free`); not ready."""
        self.check_free(team_id, name)
        placeholder = TemplateRecord(
            name=name,
            type="snapshot",
            team_id=team_id,
            created_at=now_utc(),
            vcpus=vcpus,
            memory_mb=memory_mb,
            layers=[],
            metadata={"source": source, "state": "writing"},
            services=parent.services if parent else (),
            ready=False,
        )
        self._templates[(team_id, name)] = placeholder
        return placeholder

    def complete(
        self, template: TemplateRecord, *, layers: list[Path], size_bytes: int, source: str
    ) -> None:
        """The snapshot is written: fill it in and make it ready, all at once."""
        template.layers = layers
        template.size_bytes = size_bytes
        template.metadata = {"source": source}
        template.created_at = now_utc()
        template.ready = True

    def snapshots(self) -> list[TemplateRecord]:
        """The teams' ready snapshots (what ``_persist.py`` keeps across restarts)."""
        return [t for t in self._templates.values() if t.team_id is not None and t.ready]

    def restore(self, template: TemplateRecord) -> None:
        """Take back a saved snapshot (at start-up)."""
        self._templates[(template.team_id, template.name)] = template

    def discard(self, template: TemplateRecord) -> None:
        """Forget a snapshot that failed (its files are the caller's to remove)."""
        self._templates.pop((template.team_id, template.name), None)

    def delete(self, team_id: str, name: str) -> TemplateRecord:
        """Delete a team's template and its own layer (403 for platform templates)."""
        if not NAME_RE.match(name):
            raise bad_request("invalid template name")
        if (team_id, name) not in self._templates:
            if (None, name) in self._templates:
                raise ApiError(403, "forbidden", "platform templates cannot be deleted here")
            raise not_found("template not found")
        template = self._templates.pop((team_id, name))
        for layer in template.layers[:1]:
            shutil.rmtree(layer, ignore_errors=True)
        return template
