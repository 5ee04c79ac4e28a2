"""One TLS context per client, built from its ``verify`` setting.

REST calls, exec and PTY WebSockets, and capsule ports all use the same context, so a
custom CA or ``verify=False`` applies to every connection the client makes.
"""

from __future__ import annotations

import ssl

import httpx2 as httpx

__all__ = ["Verify", "ssl_context"]

Verify = ssl.SSLContext | bool


def ssl_context(verify: Verify) -> ssl.SSLContext:
    """``True``: the default trust store with verification; ``False``: no verification
    (never for production); an :class:`ssl.SSLContext`: used as it is."""
    value: object = verify  # checked at run time: callers may not be type-checked
    if isinstance(value, ssl.SSLContext):
        return value
    if not isinstance(value, bool):
        from .._exceptions import WrennConfigurationError

        raise WrennConfigurationError(
            f"verify must be True, False or an ssl.SSLContext, not {type(verify).__name__}"
        )
    return httpx.create_ssl_context(verify=value, trust_env=False)
