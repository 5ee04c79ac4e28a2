"""``client.hosts``: the machines capsules run on (needs a user token)."""

from __future__ import annotations

import builtins
from typing import Any, final

from .._config import CLIENT_DEFAULT, Timeout
from .._exceptions import WrennValidationError
from .._models import CreatedHost, Host, HostDeletePreview, HostToken, HostType
from .._transport.http import HTTPTransport, api_path, response_json
from .converter import structure, structure_list

__all__ = ["AsyncHosts"]


@final
class AsyncHosts:
    """Host REST calls. Reached as ``client.hosts``."""

    def __init__(self, http: HTTPTransport) -> None:
        self._http = http

    async def create(
        self,
        type: HostType | str = HostType.REGULAR,
        *,
        team_id: str | None = None,
        provider: str | None = None,
        availability_zone: str | None = None,
        timeout: Timeout = CLIENT_DEFAULT,
    ) -> CreatedHost:
        """``POST /v1/hosts``: a host and its one-time registration token."""
        if str(type) not in ("regular", "byoc"):
            raise WrennValidationError("type must be 'regular' or 'byoc'")
        optional = {
            "team_id": team_id,
            "provider": provider,
            "availability_zone": availability_zone,
        }
        body: dict[str, Any] = {"type": str(type)}
        body.update({key: value for key, value in optional.items() if value is not None})
        resp = await self._http.request(
            "POST", api_path("hosts"), json_body=body, auth="bearer", timeout=timeout
        )
        return structure(response_json(resp, what="host create"), CreatedHost)

    async def list(self, *, timeout: Timeout = CLIENT_DEFAULT) -> list[Host]:
        resp = await self._http.request("GET", api_path("hosts"), auth="bearer", timeout=timeout)
        return structure_list(response_json(resp, what="host list"), Host)

    async def get(self, host_id: str, *, timeout: Timeout = CLIENT_DEFAULT) -> Host:
        resp = await self._http.request(
            "GET", api_path("hosts", host_id), auth="bearer", timeout=timeout
        )
        return structure(response_json(resp, what="host"), Host)

    async def delete(
        self, host_id: str, *, force: bool = False, timeout: Timeout = CLIENT_DEFAULT
    ) -> None:
        """``DELETE /v1/hosts/{id}``. Without ``force``, a host with capsules raises
        :class:`WrennHostHasCapsulesError` listing them in ``capsule_ids``."""
        await self._http.request(
            "DELETE",
            api_path("hosts", host_id),
            params={"force": "true"} if force else None,
            auth="bearer",
            timeout=timeout,
        )

    async def delete_preview(
        self, host_id: str, *, timeout: Timeout = CLIENT_DEFAULT
    ) -> HostDeletePreview:
        """``GET /v1/hosts/{id}/delete-preview``: what a forced delete would stop."""
        resp = await self._http.request(
            "GET", api_path("hosts", host_id, "delete-preview"), auth="bearer", timeout=timeout
        )
        return structure(response_json(resp, what="host delete preview"), HostDeletePreview)

    async def regenerate_token(
        self, host_id: str, *, timeout: Timeout = CLIENT_DEFAULT
    ) -> HostToken:
        """``POST /v1/hosts/{id}/token``: a new registration token for a pending host."""
        resp = await self._http.request(
            "POST",
            api_path("hosts", host_id, "token"),
            json_body={},
            auth="bearer",
            timeout=timeout,
        )
        return structure(response_json(resp, what="host token"), HostToken)

    async def tags(self, host_id: str, *, timeout: Timeout = CLIENT_DEFAULT) -> builtins.list[str]:
        resp = await self._http.request(
            "GET", api_path("hosts", host_id, "tags"), auth="bearer", timeout=timeout
        )
        data: Any = response_json(resp, what="host tags")
        if not isinstance(data, list):
            data = []
        return [str(tag) for tag in data]

    async def add_tag(self, host_id: str, tag: str, *, timeout: Timeout = CLIENT_DEFAULT) -> None:
        await self._http.request(
            "POST",
            api_path("hosts", host_id, "tags"),
            json_body={"tag": tag},
            auth="bearer",
            timeout=timeout,
            idempotent=True,
        )

    async def remove_tag(
        self, host_id: str, tag: str, *, timeout: Timeout = CLIENT_DEFAULT
    ) -> None:
        await self._http.request(
            "DELETE", api_path("hosts", host_id, "tags", tag), auth="bearer", timeout=timeout
        )
