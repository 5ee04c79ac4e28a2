"""``Session``: what a client's capsules, git, code runner, fan-out and pools hold.

The configuration, the one HTTP transport (connection pool, TLS context, retries) and
the REST resources built on it. The client above owns a session and closes it; nothing
below the client ever holds the client itself.
"""

from __future__ import annotations

from typing import final

from ._config import ClientConfig, ClientTimeout
from ._owner import Owner
from ._resources import (
    AsyncAPIKeys,
    AsyncAuth,
    AsyncCapsules,
    AsyncEvents,
    AsyncFiles,
    AsyncHosts,
    AsyncProcesses,
    AsyncSnapshots,
)
from ._transport.http import HTTPTransport, httpx
from ._transport.ports import CapsulePort
from ._transport.tls import Verify

__all__ = ["Session"]


@final
class Session:
    """Configuration, transport and REST resources of one client. Not public."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        verify: Verify = True,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.http = HTTPTransport(config, transport=http_transport, verify=verify)
        self.capsules = AsyncCapsules(self.http)
        self.snapshots = AsyncSnapshots(self.http)
        self.events = AsyncEvents(self.http)
        self.auth = AsyncAuth(self.http)
        self.api_keys = AsyncAPIKeys(self.http)
        self.hosts = AsyncHosts(self.http)
        self.processes = AsyncProcesses(self.http)
        self.files = AsyncFiles(self.http)
        # written into every capsule a scope or constructor creates (see wrenn._owner)
        self.owner = Owner.current()
        self.closed = False

    @classmethod
    def from_options(
        cls,
        *,
        api_key: str | None = None,
        token: str | None = None,
        base_url: str | None = None,
        proxy_domain: str | None = None,
        timeout: ClientTimeout = 30.0,
        connect_timeout: float | None = 10.0,
        max_retries: int = 3,
        verify: Verify = True,
        http_transport: httpx.AsyncBaseTransport | None = None,
        ping_interval: float | None = 20.0,
        ping_timeout: float = 20.0,
        binary_frames: bool | None = None,
    ) -> Session:
        """A session from explicit options and the environment (see the client)."""
        config = ClientConfig.resolve(
            api_key=api_key,
            token=token,
            base_url=base_url,
            proxy_domain=proxy_domain,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_retries=max_retries,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            binary_frames=binary_frames,
        )
        return cls(config, verify=verify, http_transport=http_transport)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Session base_url={self.config.base_url!r} {state}>"

    def port(self, capsule_id: str, port: int) -> CapsulePort:
        """A port of a capsule, through the port proxy."""
        return CapsulePort(self.http, capsule_id, port)

    async def aclose(self) -> None:
        """Close the connection pool (shielded, at most 5 s). Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        await self.http.aclose()
