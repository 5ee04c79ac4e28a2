"""``client.snapshots``: create (asynchronous on the server), list, delete, wait."""

from __future__ import annotations

import secrets
from typing import Any, final

import anyio

from .._config import CLIENT_DEFAULT, Timeout, check_seconds
from .._exceptions import WrennTimeoutError, WrennValidationError
from .._models import Capsule, PendingSnapshot, Template, TemplateType
from .._transport.http import HTTPTransport, api_path, response_json
from .capsules import check_name
from .converter import structure, structure_list

__all__ = ["AsyncSnapshots"]


@final
class AsyncSnapshots:
    """Snapshot (template) REST calls. Reached as ``client.snapshots``."""

    def __init__(self, http: HTTPTransport) -> None:
        self._http = http

    async def create(
        self,
        capsule_id: str,
        name: str | None = None,
        overwrite: bool = False,
        *,
        timeout: Timeout = CLIENT_DEFAULT,
    ) -> PendingSnapshot:
        """``POST /v1/snapshots``: start writing a snapshot of a running or paused capsule.

        The server answers 202 with the capsule in ``snapshotting`` and finishes later;
        use :meth:`wait` for the template. When ``name`` is omitted the SDK picks
        ``template-<8 hex>`` itself, so the name is known. Names are immutable: re-using
        one raises :class:`WrennNameTakenError`; ``overwrite=True`` asks the server to
        replace an existing snapshot of that name (``?overwrite=true``, as the official
        SDK sends it; servers that keep names immutable still answer 409).
        """
        name = (
            check_name("snapshot", name) if name is not None else f"template-{secrets.token_hex(4)}"
        )
        if not capsule_id:
            raise WrennValidationError("capsule_id is required")
        resp = await self._http.request(
            "POST",
            api_path("snapshots"),
            json_body={"sandbox_id": capsule_id, "name": name},
            params={"overwrite": "true"} if overwrite else None,
            timeout=timeout,
        )
        data: Any = response_json(resp, what="snapshot create")
        if isinstance(data, dict) and "id" in data and "status" in data:
            return PendingSnapshot(name=name, capsule=structure(data, Capsule))
        if isinstance(data, dict) and "name" in data:  # older servers finish synchronously
            template = structure(data, Template)
            return PendingSnapshot(name=template.name or name, template=template)
        return PendingSnapshot(name=name)

    async def list(
        self, type: TemplateType | str | None = None, *, timeout: Timeout = CLIENT_DEFAULT
    ) -> list[Template]:
        """``GET /v1/snapshots``: the team's templates and the platform's, newest first.

        ``type`` filters: ``"base"`` or ``"snapshot"``.
        """
        params = {}
        if type is not None:
            if str(type) not in ("base", "snapshot"):
                raise WrennValidationError("type must be 'base' or 'snapshot'")
            params["type"] = str(type)
        resp = await self._http.request(
            "GET", api_path("snapshots"), params=params, timeout=timeout
        )
        return structure_list(response_json(resp, what="snapshot list"), Template)

    async def get(self, name: str, *, timeout: Timeout = CLIENT_DEFAULT) -> Template | None:
        """The template called ``name``, or ``None`` if there is none (a list call)."""
        for template in await self.list(timeout=timeout):
            if template.name == name:
                return template
        return None

    async def delete(self, name: str, *, timeout: Timeout = CLIENT_DEFAULT) -> None:
        """``DELETE /v1/snapshots/{name}``.

        Platform templates raise :class:`WrennForbiddenError`.
        """
        await self._http.request(
            "DELETE", api_path("snapshots", check_name("snapshot", name)), timeout=timeout
        )

    async def wait(
        self,
        snapshot: PendingSnapshot | str,
        *,
        timeout: float | None = 300.0,
        poll_interval: float = 0.25,
        max_interval: float = 5.0,
    ) -> Template:
        """Poll the template list until the snapshot appears; return its template.

        Polls with backoff (``poll_interval`` doubling up to ``max_interval``) inside the
        caller's cancel scope. Raises :class:`WrennTimeoutError` after ``timeout`` s.
        """
        if isinstance(snapshot, PendingSnapshot):
            if snapshot.template is not None:
                return snapshot.template
            name = snapshot.name
        else:
            name = snapshot
        limit = check_seconds(timeout)
        interval = poll_interval
        with anyio.move_on_after(limit):
            while True:
                found = await self.get(name)
                if found is not None:
                    return found
                await anyio.sleep(interval)
                interval = min(interval * 2, max_interval)
        raise WrennTimeoutError(f"snapshot {name!r} did not appear within {limit:g} s")
