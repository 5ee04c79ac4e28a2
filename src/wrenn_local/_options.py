"""``ServerOptions``: the local server's tunables (mostly for tests and benchmarks)."""

from __future__ import annotations

import attrs

__all__ = ["ServerOptions"]


@attrs.define
class ServerOptions:
    """Timings and limits of a local server; the defaults suit interactive use."""

    transition_delay: float = 0.0  # extra seconds a transitional status is held (testing)
    min_timeout_sec: int = 60  # 1..59 are raised to this (v0.2 behaviour)
    reaper_interval: float = 2.0
    sample_interval: float = 1.0
    max_capsules: int = 512
