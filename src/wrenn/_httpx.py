"""The single import of the HTTP client library.

The SDK uses httpx2, the maintained API-compatible continuation of httpx (see
``docs/design/dependencies.md`` for the cancellation-churn evidence behind the choice).
Every other module imports it from here, so the choice is made in one line.
"""

from __future__ import annotations

import httpx2 as httpx

__all__ = ["httpx"]
