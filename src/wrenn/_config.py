"""Client configuration: credentials, base URL, proxy domain, timeouts.

Values come from arguments first, then from the environment (``WRENN_API_KEY``,
``WRENN_TOKEN``, ``WRENN_BASE_URL``, ``WRENN_PROXY_DOMAIN``), then from defaults.
Credentials are held in :class:`Secret`, whose ``repr`` and ``str`` never show the value.
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Mapping
from typing import Final, Literal, Protocol, TypeAlias, TypeGuard, final
from urllib.parse import urlsplit, urlunsplit

import attrs

from ._exceptions import WrennConfigurationError, WrennValidationError

__all__ = [
    "CLIENT_DEFAULT",
    "DEFAULT_BASE_URL",
    "ClientConfig",
    "Secret",
    "Timeout",
    "check_seconds",
    "normalize_base_url",
    "resolve_proxy_domain",
]

DEFAULT_BASE_URL: Final = "https://app.wrenn.dev/api"
ENV_API_KEY: Final = "WRENN_API_KEY"
ENV_TOKEN: Final = "WRENN_TOKEN"
ENV_BASE_URL: Final = "WRENN_BASE_URL"
ENV_PROXY_DOMAIN: Final = "WRENN_PROXY_DOMAIN"
ENV_BINARY_FRAMES: Final = "WRENN_BINARY_FRAMES"
_OFF: Final = frozenset({"0", "false", "no", "off"})


@final
class Secret:
    """A credential that never shows itself in a repr, a str, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value (for the one place that puts it on the wire)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")


def normalize_base_url(url: str) -> str:
    """Return the API root the SDK appends ``/v1/...`` to.

    Accepts the cloud form (``https://app.wrenn.dev/api``), a bare host
    (``http://127.0.0.1:8080``) and either of those with a trailing ``/`` or ``/v1``.
    """
    value: object = url
    if not isinstance(value, str):
        raise WrennConfigurationError(
            f"base URL must be a str such as 'https://app.wrenn.dev/api', not"
            f" {type(value).__name__} (set {ENV_BASE_URL} or pass base_url=)"
        )
    raw = url.strip()
    try:
        parts = urlsplit(raw)
        port = parts.port  # parses it: a port out of range or not a number raises
    except ValueError as exc:
        raise WrennConfigurationError(
            f"base URL {_redact_url(raw)!r} is not a valid URL ({exc}); give one such as"
            f" 'http://127.0.0.1:8080' (set {ENV_BASE_URL} or pass base_url=)"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WrennConfigurationError(
            f"base URL must be an absolute http:// or https:// URL, got {_redact_url(raw)!r}"
            f" (set {ENV_BASE_URL} or pass base_url=)"
        )
    if parts.username or parts.password:
        raise WrennConfigurationError(
            "base URL must not carry credentials; pass api_key= or set WRENN_API_KEY"
        )
    if port is not None and not 0 < port <= 65535:
        raise WrennConfigurationError(
            f"base URL {_redact_url(raw)!r} has port {port}; a port must be 1 to 65535"
            f" (set {ENV_BASE_URL} or pass base_url=)"
        )
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _redact_url(url: str) -> str:
    """The URL without user info, query or fragment (any of which may hold a secret);
    also for a URL :func:`urlsplit` cannot parse."""
    for mark in "?#":
        url = url.partition(mark)[0]
    scheme, sep, rest = url.partition("://") if "://" in url else ("", "", url)
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}"


def resolve_proxy_domain(base_url: str, proxy_domain: str | None) -> str:
    """Domain of the capsule port proxy (``{port}-{capsule_id}.{domain}``).

    An explicit value wins; the cloud host ``app.wrenn.dev`` maps to ``wrenn.dev``; a
    server on IPv4 loopback (a local server) maps to ``localhost:{port}``, whose
    ``{port}-{id}.localhost`` names browsers resolve to loopback themselves; any other
    base URL uses its own ``host:port``.
    """
    value: object = proxy_domain
    if value is not None and not isinstance(value, str):
        raise WrennConfigurationError(
            f"proxy_domain must be a str such as 'wrenn.dev' or None, not {type(value).__name__}"
        )
    if proxy_domain:
        return proxy_domain.strip().strip(".")
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if host == "app.wrenn.dev":
        return "wrenn.dev"
    if host in ("127.0.0.1", "localhost") and parts.port:
        return f"localhost:{parts.port}"
    return parts.netloc


class _Default(enum.Enum):
    CLIENT_DEFAULT = "the client's timeout"

    def __repr__(self) -> str:
        return "CLIENT_DEFAULT"


CLIENT_DEFAULT: Final = _Default.CLIENT_DEFAULT
"""The default ``timeout`` of a REST call: the client's own ``timeout``."""

Timeout = float | None | Literal[_Default.CLIENT_DEFAULT]
"""What a call's ``timeout`` accepts: seconds, ``None`` (no limit), or the client's."""

# A timeout this long or longer (about 31 years) is no limit at all: ``math.inf``. The
# operating system's own timeouts (a socket's, a ``time_t``) cannot hold much larger
# values, so every timeout is either below this or infinite.
NO_LIMIT_FROM: Final = 1e9


def _seconds(value: float) -> float:
    return math.inf if value >= NO_LIMIT_FROM else float(value)


def check_seconds(timeout: float | None, *, name: str = "timeout") -> float:
    """A ``timeout`` argument as seconds (``math.inf`` for None); anything else but a
    positive number is refused with :class:`WrennValidationError` (a ``ValueError``)."""
    if timeout is None:
        return math.inf
    value: object = timeout
    if not _is_number(value):
        raise WrennValidationError(
            f"{name} must be a positive number of seconds or None (no limit), not {timeout!r}"
        )
    return _seconds(value)


def _is_number(value: object) -> TypeGuard[float]:
    """A real, positive number of seconds (not a bool, not NaN)."""
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and not math.isnan(value)
        and value > 0
    )


def _shown(value: object) -> str:
    """A refused option's value for a message: numbers, None and bools as themselves,
    anything else by type only (a str may be a misplaced secret)."""
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    return f"a {type(value).__name__}"


def _check_str_or_none(label: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        hint = " (decode it first: .decode())" if isinstance(value, bytes | bytearray) else ""
        raise WrennConfigurationError(
            f"{label} must be a str or None, not {type(value).__name__}{hint}"
        )


class PhasedTimeout(Protocol):
    """A timeout in phases, as ``httpx.Timeout`` (or httpx2's): the official SDK's form
    of a client's ``timeout``, accepted as it is."""

    @property
    def connect(self) -> float | None: ...
    @property
    def read(self) -> float | None: ...
    @property
    def write(self) -> float | None: ...
    @property
    def pool(self) -> float | None: ...


ClientTimeout: TypeAlias = "float | PhasedTimeout | None"
"""What a client's ``timeout`` accepts: seconds, ``None``, or an ``httpx.Timeout``."""

_PHASES: Final = ("connect", "read", "write", "pool")


def unphased(timeout: object, connect_timeout: object) -> tuple[object, object]:
    """``(timeout, connect_timeout)`` with an ``httpx.Timeout``-like ``timeout`` split
    into ours: its ``connect`` phase becomes ``connect_timeout``, the longest of its
    other phases the ``timeout`` (``None`` in any of them: no limit). Anything else is
    returned as it is."""
    if timeout is None or isinstance(timeout, int | float | str | bytes):
        return timeout, connect_timeout
    if not all(hasattr(timeout, phase) for phase in _PHASES):
        return timeout, connect_timeout
    values = {phase: getattr(timeout, phase) for phase in _PHASES}
    for phase, value in values.items():
        if value is not None and not _is_number(value):
            raise WrennConfigurationError(
                f"timeout.{phase} must be a positive number of seconds or None (no limit),"
                f" not {_shown(value)}"
            )
    others = [values[phase] for phase in _PHASES[1:]]
    return (None if None in others else max(others)), values["connect"]


def _config_seconds(name: str, value: object) -> float:
    """A client option in seconds: a positive number, or None for no limit."""
    if value is None:
        return math.inf
    if not _is_number(value):
        raise WrennConfigurationError(
            f"{name} must be a positive number of seconds or None (no limit), not {_shown(value)}"
        )
    return _seconds(value)


_ORIGINS: Final = {
    "argument": "given as base_url",
    "environment": f"from {ENV_BASE_URL}",
    "default": f"the default; set {ENV_BASE_URL} for another server",
}


@attrs.frozen
class ClientConfig:
    """Resolved, immutable configuration of one client.

    ``api_key`` and ``token`` are :class:`Secret` values and are left out of the repr.
    """

    base_url: str
    proxy_domain: str
    api_key: Secret | None = attrs.field(repr=False)
    token: Secret | None = attrs.field(repr=False)
    timeout: float
    connect_timeout: float
    max_retries: int
    ping_interval: float | None = 20.0
    ping_timeout: float = 20.0
    base_url_origin: str = "argument"  # "argument", "environment" or "default"
    # Offer binary output frames on exec/attach streams (taken only by a server that
    # accepts the offer; every other server keeps sending JSON text).
    binary_frames: bool = True

    @classmethod
    def resolve(
        cls,
        *,
        api_key: str | None,
        token: str | None,
        base_url: str | None,
        proxy_domain: str | None,
        timeout: ClientTimeout,
        connect_timeout: float | None,
        max_retries: int,
        ping_interval: float | None = 20.0,
        ping_timeout: float = 20.0,
        environ: Mapping[str, str] | None = None,
        binary_frames: bool | None = None,
    ) -> ClientConfig:
        env = os.environ if environ is None else environ
        for label, arg in (
            ("api_key", api_key),
            ("token", token),
            ("base_url", base_url),
            ("proxy_domain", proxy_domain),
        ):
            _check_str_or_none(label, arg)
        phased = unphased(timeout, connect_timeout)
        timeout_s = _config_seconds("timeout", phased[0])
        connect_s = _config_seconds("connect_timeout", phased[1])
        interval: object = ping_interval
        if interval is not None and (not _is_number(interval) or math.isinf(interval)):
            raise WrennConfigurationError(
                "ping_interval must be a positive number of seconds, or None to turn pings"
                f" off, not {_shown(interval)}"
            )
        ping: object = ping_timeout
        if not _is_number(ping) or math.isinf(ping):
            raise WrennConfigurationError(
                "ping_timeout must be a positive number of seconds, not"
                f" {_shown(ping)} (turn pings off with ping_interval=None)"
            )
        retries: object = max_retries
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise WrennConfigurationError(
                f"max_retries must be an int, 0 or more, not {_shown(retries)}"
            )
        frames: object = binary_frames
        if frames is not None and not isinstance(frames, bool):
            raise WrennConfigurationError(
                f"binary_frames must be True, False or None (then {ENV_BINARY_FRAMES} decides),"
                f" not {_shown(frames)}"
            )
        if binary_frames is None:
            binary_frames = env.get(ENV_BINARY_FRAMES, "").strip().lower() not in _OFF
        key = api_key if api_key is not None else env.get(ENV_API_KEY) or None
        tok = token if token is not None else env.get(ENV_TOKEN) or None
        origin = "argument" if base_url else "environment" if env.get(ENV_BASE_URL) else "default"
        url = normalize_base_url(base_url or env.get(ENV_BASE_URL) or DEFAULT_BASE_URL)
        domain = resolve_proxy_domain(url, proxy_domain or env.get(ENV_PROXY_DOMAIN))
        for label, cred in (("api_key", key), ("token", tok)):
            if cred is not None and (cred != cred.strip() or any(c in cred for c in "\r\n")):
                raise WrennConfigurationError(
                    f"{label} contains whitespace or a line break; check how it was copied"
                )
            if cred is not None and not (cred.isascii() and cred.isprintable()):
                # a header cannot carry it: the encoder's error would quote the secret whole
                raise WrennConfigurationError(
                    f"{label} has characters other than printable ASCII; check how it was copied"
                )
        return cls(
            base_url=url,
            proxy_domain=domain,
            api_key=Secret(key) if key else None,
            token=Secret(tok) if tok else None,
            timeout=timeout_s,
            connect_timeout=connect_s,
            max_retries=max_retries,
            ping_interval=None if ping_interval is None else float(ping_interval),
            ping_timeout=float(ping_timeout),
            base_url_origin=origin,
            binary_frames=binary_frames,
        )

    def deadline(self, timeout: Timeout) -> float:
        """A call's ``timeout`` as seconds: the client's for :data:`CLIENT_DEFAULT`,
        ``math.inf`` for ``None`` (no limit)."""
        if timeout is CLIENT_DEFAULT:
            return self.timeout
        return check_seconds(timeout)

    def describe_server(self) -> str:
        """The base URL and where it came from, for messages about reaching it."""
        return f"{self.base_url} ({_ORIGINS.get(self.base_url_origin, self.base_url_origin)})"

    @property
    def has_credentials(self) -> bool:
        return self.api_key is not None or self.token is not None

    def auth_headers(self) -> dict[str, str]:
        """The header that authenticates a request.

        The API key wins when both are set: the server tries only ``X-API-Key`` when it
        is present (PROTOCOL §2.1).

        Raises:
            WrennConfigurationError: neither an API key nor a token is configured.
        """
        if self.api_key is not None:
            return {"X-API-Key": self.api_key.reveal()}
        if self.token is not None:
            return {"Authorization": f"Bearer {self.token.reveal()}"}
        raise WrennConfigurationError(
            f"no credentials: pass api_key= (or token=) or set the {ENV_API_KEY} "
            f"(or {ENV_TOKEN}) environment variable"
        )

    def bearer_headers(self) -> dict[str, str]:
        """The header for routes that accept only a user JWT (API keys, hosts)."""
        if self.token is not None:
            return {"Authorization": f"Bearer {self.token.reveal()}"}
        raise WrennConfigurationError(
            f"this route needs a user token: pass token= or set the {ENV_TOKEN} environment "
            "variable (an API key is not accepted here; get a token with client.auth.login)"
        )
