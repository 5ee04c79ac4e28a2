"""``client.capsules``: create, list, get, destroy, pause, resume, ping, metrics, stats, usage."""

from __future__ import annotations

import builtins
import datetime as dt
import re
from collections.abc import Mapping
from typing import Any, Final, final

from .._config import CLIENT_DEFAULT, Timeout
from .._exceptions import (
    WrennAPIError,
    WrennNotFoundError,
    WrennProtocolError,
    WrennValidationError,
)
from .._models import Capsule, CapsuleMetrics, CapsuleStats, CapsuleStatus, CapsuleUsage
from .._owner import Owner, owner_is_gone
from .._owner import this_host as _host
from .._transport.http import HTTPTransport, api_path, response_json
from .converter import structure, structure_list

__all__ = ["METRICS_RANGES", "STATS_RANGES", "AsyncCapsules"]

METRICS_RANGES: Final = ("5m", "10m", "1h", "2h", "6h", "12h", "24h")
STATS_RANGES: Final = ("5m", "1h", "6h", "24h", "30d")
NAME_RE: Final = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$")
_META_KEY_RE: Final = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$")


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise WrennValidationError(
            f"invalid {kind} name {name!r}: 1-64 characters of letters, digits, '.', '_' or "
            "'-', starting with a letter or digit"
        )
    return name


def _check_int(name: str, value: int | None, *, minimum: int) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise WrennValidationError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    if len(metadata) > 20:
        raise WrennValidationError("metadata holds at most 20 keys")
    out: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not _META_KEY_RE.match(key):
            raise WrennValidationError(f"invalid metadata key {key!r}")
        if not isinstance(value, str) or len(value) > 64:
            raise WrennValidationError(f"metadata value for {key!r} must be text of <= 64 chars")
        out[key] = value
    return out


def _date(value: dt.date | str | None, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return value.isoformat()
    try:
        return dt.date.fromisoformat(value).isoformat()
    except (TypeError, ValueError):
        raise WrennValidationError(f"{name} must be a date or YYYY-MM-DD, got {value!r}") from None


@final
class AsyncCapsules:
    """Capsule REST calls. Reached as ``client.capsules``.

    Every method is one HTTP exchange bounded by the client's deadline (or ``timeout=``).
    Cancelling a call abandons it: a create or pause may still take effect on the server.
    """

    def __init__(self, http: HTTPTransport) -> None:
        self._http = http

    async def create(
        self,
        template: str | None = None,
        vcpus: int | None = None,
        memory_mb: int | None = None,
        timeout_sec: int | None = None,
        *,
        disk_size_mb: int | None = None,
        metadata: Mapping[str, str] | None = None,
        network: bool | None = None,
        timeout: Timeout = CLIENT_DEFAULT,
    ) -> Capsule:
        """``POST /v1/capsules``. Returns at once with status ``starting`` (or ``running``).

        Only the arguments that are not ``None`` are sent. ``timeout_sec`` is the
        inactivity auto-pause TTL (0 = never; the cloud raises 1-59 to 60).
        ``network=False`` asks for a capsule without outbound network: an extension that
        ``wrenn_local`` honours; the cloud's create body has no such field.
        Never retried once the request may have reached the server.
        """
        body: dict[str, Any] = {}
        if template is not None:
            body["template"] = check_name("template", template)
        _check_int("vcpus", vcpus, minimum=1)
        _check_int("memory_mb", memory_mb, minimum=1)
        _check_int("timeout_sec", timeout_sec, minimum=0)
        _check_int("disk_size_mb", disk_size_mb, minimum=1)
        sizes = {
            "vcpus": vcpus,
            "memory_mb": memory_mb,
            "timeout_sec": timeout_sec,
            "disk_size_mb": disk_size_mb,
        }
        body.update({key: value for key, value in sizes.items() if value is not None})
        if metadata:
            body["metadata"] = _check_metadata(metadata)
        if network is not None:
            if not isinstance(network, bool):  # bool("no") is True: a capsule with network
                raise WrennValidationError(
                    f"network must be True, False or None (the server's default), not"
                    f" {type(network).__name__}"
                )
            body["network"] = network
        resp = await self._http.request(
            "POST", api_path("capsules"), json_body=body, timeout=timeout
        )
        return structure(response_json(resp, what="create"), Capsule)

    async def list(self, *, timeout: Timeout = CLIENT_DEFAULT) -> list[Capsule]:
        """``GET /v1/capsules``: the team's capsules, newest first (stopped ones left out)."""
        resp = await self._http.request("GET", api_path("capsules"), timeout=timeout)
        return structure_list(response_json(resp, what="list"), Capsule)

    async def get(self, capsule_id: str, *, timeout: Timeout = CLIENT_DEFAULT) -> Capsule:
        """``GET /v1/capsules/{id}``. Raises :class:`WrennNotFoundError` for an unknown id."""
        resp = await self._http.request("GET", api_path("capsules", capsule_id), timeout=timeout)
        return structure(response_json(resp, what="get"), Capsule)

    async def destroy(
        self, capsule_id: str, *, timeout: Timeout = CLIENT_DEFAULT
    ) -> Capsule | None:
        """``DELETE /v1/capsules/{id}``. Returns the capsule (``stopping``) if the server
        sends it, else ``None``. Idempotent: retried on transport failures."""
        resp = await self._http.request("DELETE", api_path("capsules", capsule_id), timeout=timeout)
        data = response_json(resp, what="destroy")
        return structure(data, Capsule) if isinstance(data, dict) and data.get("id") else None

    async def reap(
        self, *, dry_run: bool = False, other_hosts: bool = False
    ) -> builtins.list[Capsule]:
        """Destroy the capsules whose program is gone; return them.

        A capsule created by a scope or an official constructor records its owner (host
        name, process ID and start time, see :mod:`wrenn._owner`). It is reaped when its
        owner ran on this host and that process no longer exists — or the PID now
        belongs to a process that started at another time. Capsules of live programs,
        capsules without owner keys (made by other tools, or by raw
        ``client.capsules.create``) and capsules already stopping are left alone.

        Args:
            dry_run: Only return what would be destroyed.
            other_hosts: Also take every capsule whose owner ran on *another* host. Its
                process cannot be checked from here, so use this only when you know
                those programs are gone.

        Each destroy is one bounded REST call (a capsule already gone is skipped); on
        cancellation or a deadline the capsules destroyed so far stay destroyed and the
        rest are left as they are.
        """
        found: builtins.list[Capsule] = []
        for capsule in await self.list():
            if capsule.status in (CapsuleStatus.STOPPING, CapsuleStatus.STOPPED):
                continue
            owner = Owner.from_metadata(capsule.metadata)
            if owner is None:
                continue
            gone = owner_is_gone(owner)
            if gone is True or (gone is None and other_hosts and owner.host != _host()):
                found.append(capsule)
        if not dry_run:
            for capsule in found:
                try:
                    await self.destroy(capsule.id)
                except WrennNotFoundError:
                    pass  # gone in the meantime
        return found

    async def pause(self, capsule_id: str, *, timeout: Timeout = CLIENT_DEFAULT) -> Capsule:
        """``POST /v1/capsules/{id}/pause``: returns the capsule, ``pausing`` or ``paused``."""
        resp = await self._http.request(
            "POST", api_path("capsules", capsule_id, "pause"), json_body={}, timeout=timeout
        )
        return structure(response_json(resp, what="pause"), Capsule)

    async def resume(self, capsule_id: str, *, timeout: Timeout = CLIENT_DEFAULT) -> Capsule:
        """``POST /v1/capsules/{id}/resume``: returns the capsule, ``resuming`` or ``running``."""
        resp = await self._http.request(
            "POST", api_path("capsules", capsule_id, "resume"), json_body={}, timeout=timeout
        )
        return structure(response_json(resp, what="resume"), Capsule)

    async def ping(self, capsule_id: str, *, timeout: Timeout = CLIENT_DEFAULT) -> None:
        """``POST /v1/capsules/{id}/ping``: reset the inactivity timer (safe to retry)."""
        await self._http.request(
            "POST",
            api_path("capsules", capsule_id, "ping"),
            json_body={},
            timeout=timeout,
            idempotent=True,
        )

    async def browser_token(
        self, capsule_id: str, port: int, *, timeout: Timeout = CLIENT_DEFAULT
    ) -> str | None:
        """``POST /v1/capsules/{id}/ports/{port}/browser-token`` (a ``wrenn_local``
        extension): a short-lived token that lets a browser open ``port`` of the capsule.

        Returns ``None`` when the server has no such route (the Wrenn cloud): it answers
        the plain ``404 page not found`` of an unknown path, or 405.
        """
        _check_int("port", port, minimum=1)
        if port > 65535:
            raise WrennValidationError(f"port must be 1-65535, got {port}")
        try:
            response = await self._http.request(
                "POST",
                api_path("capsules", capsule_id, "ports", str(port), "browser-token"),
                json_body={},
                timeout=timeout,
            )
        except WrennNotFoundError as exc:
            if exc.message.startswith("404 page not found"):
                return None
            raise
        except WrennAPIError as exc:
            if exc.status_code == 405:
                return None
            raise
        body = response_json(response, what="browser-token")
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise WrennProtocolError("the server's browser-token answer has no token")
        return token

    async def metrics(
        self, capsule_id: str, range: str | None = None, *, timeout: Timeout = CLIENT_DEFAULT
    ) -> CapsuleMetrics:
        """``GET /v1/capsules/{id}/metrics``: CPU, memory and disk samples over ``range``."""
        params = {}
        if range is not None:
            if range not in METRICS_RANGES:
                raise WrennValidationError(f"range must be one of {', '.join(METRICS_RANGES)}")
            params["range"] = range
        resp = await self._http.request(
            "GET", api_path("capsules", capsule_id, "metrics"), params=params, timeout=timeout
        )
        return structure(response_json(resp, what="metrics"), CapsuleMetrics)

    async def stats(
        self, range: str | None = None, *, timeout: Timeout = CLIENT_DEFAULT
    ) -> CapsuleStats:
        """``GET /v1/capsules/stats``: team-wide counts and reservations."""
        params = {}
        if range is not None:
            if range not in STATS_RANGES:
                raise WrennValidationError(f"range must be one of {', '.join(STATS_RANGES)}")
            params["range"] = range
        resp = await self._http.request(
            "GET", api_path("capsules", "stats"), params=params, timeout=timeout
        )
        return structure(response_json(resp, what="stats"), CapsuleStats)

    async def usage(
        self,
        from_: dt.date | str | None = None,
        to: dt.date | str | None = None,
        *,
        timeout: Timeout = CLIENT_DEFAULT,
    ) -> CapsuleUsage:
        """``GET /v1/capsules/usage``: daily CPU and memory minutes (at most 92 days)."""
        params = {}
        start, end = _date(from_, "from_"), _date(to, "to")
        if start is not None:
            params["from"] = start
        if end is not None:
            params["to"] = end
        if start and end and start > end:
            raise WrennValidationError("from_ must not be after to")
        resp = await self._http.request(
            "GET", api_path("capsules", "usage"), params=params, timeout=timeout
        )
        return structure(response_json(resp, what="usage"), CapsuleUsage)
