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
    # Anyone who reaches the port could sign up and run code: off unless asked for.
    allow_signup: bool = False
    # Names besides IP literals and localhost that Host/Origin may carry (_guard.py).
    allowed_hosts: tuple[str, ...] = ()
    # Sign-up and log-in attempts per client address: a burst, then one per interval.
    auth_burst: int = 10
    auth_interval: float = 1.0
    # How long a browser link to a capsule port stays valid (_port_links.py).
    browser_link_seconds: float = 600.0
    # Outbound network for capsules (pasta + an nftables filter; _network.py). False: none.
    network: bool = True
    # Output a foreground exec answer carries (stdout and stderr together); the rest is
    # read and dropped, and the answer says ``"truncated": true`` (the server holds about
    # four copies of it while answering: JSON text, bytes, the socket's buffer).
    exec_output_limit: int = 8 << 20
    # Accept a client's offer of binary output frames on exec/attach streams (the
    # ``wrenn.output.v1`` subprotocol). False: answer every client in JSON text, as the
    # cloud does (tests use it to check the client's fallback against a real peer).
    binary_frames: bool = True
    # Warm spares (_spares.py): booted capsules kept per boot key once it is created twice
    # within ``spare_window`` seconds, as many as were in use at once in that window and
    # at most ``spares``; each is stopped after ``spare_idle`` seconds unused.
    # 0: off (every create boots cold).
    spares: int = 64
    spare_window: float = 60.0
    spare_idle: float = 60.0
    # Ready networks (_ready_networks.py): capsule network namespaces kept filtered and
    # connected ahead of cold boots, filled at the first cold boot with a network and
    # closed after ``spare_idle`` seconds without one. 0: off (each boot makes its own).
    ready_networks: int = 2
