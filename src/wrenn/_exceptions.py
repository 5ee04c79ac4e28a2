"""The one exception tree of the SDK.

Every exception the SDK raises derives from :class:`WrennError`::

    WrennError                          .code .message .status_code
    ├── WrennConfigurationError         (also ValueError) missing credential, bad base URL
    ├── WrennAPIError                   an error answer from the server
    │   ├── WrennValidationError        400  invalid_request (also ValueError); also raised
    │   │                                    before any request for a bad argument
    │   ├── WrennAuthenticationError    401  unauthorized
    │   ├── WrennForbiddenError         403  forbidden
    │   ├── WrennNotFoundError          404  not_found
    │   ├── WrennConflictError          409  conflict
    │   │   ├── WrennInvalidStateError       invalid_state
    │   │   ├── WrennNameTakenError          template_name_taken, name_reserved
    │   │   └── WrennHostHasCapsulesError    has_active_sandboxes (.capsule_ids)
    │   ├── WrennTooLargeError          413  too_large
    │   ├── WrennRateLimitError         429  (.retry_after)
    │   ├── WrennInternalError          500  internal_error (and other 5xx)
    │   ├── WrennAgentError             502  agent_error
    │   └── WrennUnavailableError       503
    │       └── WrennHostUnavailableError    host_unavailable
    ├── WrennTransportError             the request did not complete
    │   └── WrennConnectionError        connect failure, reset, broken stream
    │       └── WrennWebSocketClosedError    a WebSocket ended (.close_code, .reason, .ok)
    ├── WrennFanOutError                (also ExceptionGroup) jobs of client.map failed
    ├── WrennCapsuleFailedError         (also RuntimeError) a capsule failed while awaited
    ├── WrennTimeoutError               (also TimeoutError) a deadline passed
    │   └── WrennCommandTimeoutError         a command's timeout (also WrennAgentError)
    ├── CommandExitError                a command run with check=True exited non-zero
    ├── GitError                        a git operation failed (.stderr .exit_code)
    │   ├── GitAuthError                     missing or refused credentials
    │   └── GitCommandError                  any other git failure
    └── WrennProtocolError              the peer sent something we cannot understand

Foreign exceptions (httpx, anyio, ssl, cattrs, json) never reach the user bare: they are
converted at the seam where they happen and chained as ``__cause__``.

Messages never contain a credential: they are built from the server's error text, the
method and the path of the request, never from headers.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol

__all__ = [
    "CommandExitError",
    "GitAuthError",
    "GitCommandError",
    "GitError",
    "WrennAPIError",
    "WrennAgentError",
    "WrennAuthenticationError",
    "WrennCapsuleFailedError",
    "WrennCommandTimeoutError",
    "WrennConfigurationError",
    "WrennConflictError",
    "WrennConnectionError",
    "WrennError",
    "WrennFanOutError",
    "WrennForbiddenError",
    "WrennHostHasCapsulesError",
    "WrennHostUnavailableError",
    "WrennInternalError",
    "WrennInvalidStateError",
    "WrennNameTakenError",
    "WrennNotFoundError",
    "WrennProtocolError",
    "WrennRateLimitError",
    "WrennTimeoutError",
    "WrennTooLargeError",
    "WrennTransportError",
    "WrennUnavailableError",
    "WrennValidationError",
    "WrennWebSocketClosedError",
    "error_from_response",
]


class WrennError(Exception):
    """Root of every exception raised by the SDK.

    Attributes:
        code: A short machine-readable code: the server's ``error.code`` for API errors,
            or an SDK code such as ``"timeout"`` or ``"connection_error"``.
        message: Human-readable text, free of credentials: for an API error the
            server's own text, as in the official SDK.
        status_code: The HTTP status for API errors, else ``None``.
        request: For an API error, the request that failed (``"POST /v1/..."``), which
            ``str()`` appends to the message in parentheses; else ``""``.
    """

    default_code: ClassVar[str] = "error"
    request: str = ""

    def __init__(
        self,
        code: str | None = None,
        message: str | None = None,
        status_code: int | None = None,
    ) -> None:
        """``WrennError(code, message, status_code)`` as in the official SDK, or
        ``WrennError(message)``: with a single argument, it is the message."""
        if message is None:
            code, message = None, code or ""
        self.message = message
        self.code = code if code is not None else self.default_code
        self.status_code = status_code
        super().__init__(message)

    def __str__(self) -> str:
        # the message (as in the official SDK), then which request failed; code and
        # status are in repr()
        return f"{self.message} ({self.request})" if self.request else self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, "
            f"status_code={self.status_code!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructor arguments do not survive the default pickling.
        return (_rebuild, (type(self), self.message, self.code, self.status_code, self.__dict__))


def _rebuild(
    cls: type[WrennError], message: str, code: str, status_code: int | None, state: dict[str, Any]
) -> WrennError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(state)
    exc.message, exc.code, exc.status_code = message, code, status_code
    return exc


class WrennConfigurationError(WrennError, ValueError):
    """The client is not configured well enough to make the call (no credential, bad URL)."""

    default_code = "configuration_error"


class WrennAPIError(WrennError):
    """The server answered with an error status."""

    default_code = "api_error"


class WrennValidationError(WrennAPIError, ValueError):
    """400: the request was malformed or a value was rejected — by the server, or by the
    SDK before sending anything (then ``status_code`` is None). Also a ``ValueError``."""

    default_code = "invalid_request"


class WrennAuthenticationError(WrennAPIError):
    """401: the API key or token is missing, unknown or expired."""

    default_code = "unauthorized"


class WrennForbiddenError(WrennAPIError):
    """403: the credential is valid but not allowed to do this."""

    default_code = "forbidden"


class WrennNotFoundError(WrennAPIError):
    """404: the capsule, template, process, file or host does not exist."""

    default_code = "not_found"


class WrennConflictError(WrennAPIError):
    """409: the request conflicts with the current state of a resource."""

    default_code = "conflict"


class WrennInvalidStateError(WrennConflictError):
    """409 ``invalid_state``: the capsule is not in a status that allows the operation."""

    default_code = "invalid_state"


class WrennNameTakenError(WrennConflictError):
    """409 ``template_name_taken`` / ``name_reserved``: a snapshot name is not available."""

    default_code = "template_name_taken"


class WrennHostHasCapsulesError(WrennConflictError):
    """409: a host cannot be deleted while capsules run on it (see ``capsule_ids``)."""

    default_code = "has_active_sandboxes"

    def __init__(
        self,
        code: str | None = None,
        message: str | None = None,
        status_code: int | None = None,
        capsule_ids: Sequence[str] = (),
    ) -> None:
        super().__init__(code, message, status_code)
        # a list, as in the official SDK (``exc.capsule_ids == ["cl-..."]`` holds)
        self.capsule_ids: list[str] = list(capsule_ids)

    @property
    def sandbox_ids(self) -> list[str]:
        """The official SDK's old name for :attr:`capsule_ids` (deprecated)."""
        warnings.warn(
            "'sandbox_ids' is deprecated, use 'capsule_ids' instead",
            DeprecationWarning,
            stacklevel=2,
        )
        return list(self.capsule_ids)


class WrennTooLargeError(WrennAPIError):
    """413 ``too_large``: the request body is over the server's limit."""

    default_code = "too_large"


class WrennRateLimitError(WrennAPIError):
    """429: too many requests. ``retry_after`` is the server's hint in seconds, if any."""

    default_code = "rate_limited"

    def __init__(
        self,
        code: str | None = None,
        message: str | None = None,
        status_code: int | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(code, message, status_code)
        self.retry_after = retry_after


class WrennInternalError(WrennAPIError):
    """500 (and any other 5xx without a more precise class): the server failed."""

    default_code = "internal_error"


class WrennAgentError(WrennAPIError):
    """502 ``agent_error``: the host agent or the VM failed the operation."""

    default_code = "agent_error"


class WrennUnavailableError(WrennAPIError):
    """503: no capacity or no reachable host right now; worth retrying later."""

    default_code = "unavailable"

    def __init__(
        self,
        code: str | None = None,
        message: str | None = None,
        status_code: int | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(code, message, status_code)
        self.retry_after = retry_after


class WrennHostUnavailableError(WrennUnavailableError):
    """503 ``host_unavailable``: the capsule's host has no reachable agent."""

    default_code = "host_unavailable"


class WrennTransportError(WrennError):
    """The request or stream did not complete at the transport level."""

    default_code = "transport_error"


class WrennConnectionError(WrennTransportError):
    """Could not connect, or the connection broke before the exchange completed."""

    default_code = "connection_error"


class WrennWebSocketClosedError(WrennConnectionError):
    """A WebSocket connection ended.

    ``close_code`` is the close code (1006 when the connection dropped without a close
    frame); ``ok`` is true for a normal close (1000 or 1001), which iteration treats as
    the end rather than an error.
    """

    default_code = "websocket_closed"

    def __init__(self, close_code: int = 1006, reason: str = "", *, url: str = "") -> None:
        text = f"WebSocket closed with code {close_code}" + (f": {reason}" if reason else "")
        super().__init__(text + (f" ({url})" if url else ""))
        self.close_code = close_code
        self.reason = reason

    @property
    def ok(self) -> bool:
        return self.close_code in (1000, 1001)


class WrennCapsuleFailedError(WrennError, RuntimeError):
    """A capsule reached a status it will not come back from (error, stopped, missing)
    while the SDK was waiting for another one."""

    default_code = "capsule_failed"


class WrennFanOutError(ExceptionGroup[Exception], WrennError):  # type: ignore[override]
    """Some jobs of a fan-out failed; ``exceptions`` holds each failure, in input order.

    Both a :class:`WrennError` and an :class:`ExceptionGroup`, so ``except*`` works.
    """

    default_code = "fan_out_failed"

    def __init__(self, message: str, exceptions: Sequence[Exception]) -> None:
        super().__init__(message, exceptions)
        self.code = self.default_code
        self.status_code = None

    def derive(self, excs: Sequence[Exception]) -> WrennFanOutError:  # type: ignore[override]
        return WrennFanOutError(self.message, excs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, list(self.exceptions)))

    def __str__(self) -> str:
        return BaseExceptionGroup.__str__(self)


class WrennTimeoutError(WrennError, TimeoutError):
    """A deadline passed: an HTTP phase, a whole call, or a wait for a status."""

    default_code = "timeout"


class WrennCommandTimeoutError(WrennTimeoutError, WrennAgentError):
    """A command ran past its ``timeout`` and was ended. Also a :class:`WrennAgentError`:
    the official SDK raised that (the server's 502) for a foreground run the server
    ended, so its programs' ``except WrennAgentError`` still catch it here."""

    default_code = "timeout"


class WrennProtocolError(WrennError):
    """The peer sent something the SDK cannot interpret (bad JSON, bad frame, bad shape)."""

    default_code = "protocol_error"


# --- mapping answers to exceptions -------------------------------------------------------

_BY_CODE: Mapping[str, type[WrennAPIError]] = {
    "invalid_request": WrennValidationError,
    "unauthorized": WrennAuthenticationError,
    "wrong_password": WrennAuthenticationError,
    "forbidden": WrennForbiddenError,
    "no_team": WrennForbiddenError,
    "account_deactivated": WrennForbiddenError,
    "account_not_activated": WrennForbiddenError,
    "account_disabled": WrennForbiddenError,
    "not_found": WrennNotFoundError,
    "provider_not_found": WrennNotFoundError,
    "invalid_state": WrennInvalidStateError,
    "conflict": WrennConflictError,
    "template_name_taken": WrennNameTakenError,
    "name_reserved": WrennNameTakenError,
    "has_active_sandboxes": WrennHostHasCapsulesError,
    "host_has_sandboxes": WrennHostHasCapsulesError,
    "host_has_capsules": WrennHostHasCapsulesError,
    "too_large": WrennTooLargeError,
    "rate_limited": WrennRateLimitError,
    "internal_error": WrennInternalError,
    "agent_error": WrennAgentError,
    "host_unavailable": WrennHostUnavailableError,
    "no_hosts_available": WrennUnavailableError,
}

_BY_STATUS: Mapping[int, type[WrennAPIError]] = {
    400: WrennValidationError,
    401: WrennAuthenticationError,
    403: WrennForbiddenError,
    404: WrennNotFoundError,
    409: WrennConflictError,
    413: WrennTooLargeError,
    429: WrennRateLimitError,
    500: WrennInternalError,
    502: WrennAgentError,
    503: WrennUnavailableError,
}

_MAX_BODY_TEXT = 300


def _class_for(code: str | None, status: int) -> type[WrennAPIError]:
    if code is not None and code in _BY_CODE:
        return _BY_CODE[code]  # the server's code is the contract; the status comes second
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if 500 <= status < 600:
        return WrennInternalError
    return WrennAPIError


def _str_list(value: object) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(v) for v in value if isinstance(v, str))
    return ()


def error_from_response(
    status: int,
    body: bytes,
    *,
    retry_after: float | None = None,
    context: str = "",
) -> WrennAPIError:
    """Build the exception for an error answer.

    Maps by ``error.code`` first, then by HTTP status, then to a generic
    :class:`WrennAPIError`. Survives bodies that are not JSON, JSON that is not an object,
    and objects without an ``error`` member.
    """
    code: str | None = None
    message: str | None = None
    capsule_ids: tuple[str, ...] = ()
    parsed: object = None
    import json  # here: `wrenn --help` imports this module, and json costs it ~5 ms

    try:
        parsed = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if isinstance(parsed, dict):
        err = parsed.get("error")
        if isinstance(err, dict):
            raw_code = err.get("code")
            raw_msg = err.get("message")
            code = raw_code if isinstance(raw_code, str) and raw_code else None
            message = raw_msg if isinstance(raw_msg, str) else None
            capsule_ids = _str_list(err.get("sandbox_ids")) or _str_list(err.get("capsule_ids"))
        elif isinstance(err, str):
            message = err
        capsule_ids = (
            capsule_ids
            or _str_list(parsed.get("capsule_ids"))
            or _str_list(parsed.get("sandbox_ids"))
        )
    if message is None:
        text = body.decode("utf-8", errors="replace").strip()
        if len(text) > _MAX_BODY_TEXT:
            text = text[:_MAX_BODY_TEXT] + "…"
        message = text or f"HTTP {status}"
    cls = _class_for(code, status)
    made: WrennAPIError
    if issubclass(cls, WrennHostHasCapsulesError):
        made = cls(code, message, status, capsule_ids=capsule_ids)
    elif issubclass(cls, WrennRateLimitError | WrennUnavailableError):
        made = cls(code, message, status, retry_after=retry_after)
    else:
        made = cls(code, message, status)
    if context:
        made.request = context  # str() says which call failed; .message stays the server's
    return made


class CommandOutcome(Protocol):
    """What :class:`CommandExitError` keeps of the command (a ``CommandResult``)."""

    @property
    def stdout(self) -> str: ...
    @property
    def stderr(self) -> str: ...
    @property
    def exit_code(self) -> int: ...


class CommandExitError(WrennError):
    """A command run with ``check=True`` exited with a non-zero status; ``result`` is its
    ``CommandResult`` (output and exit code)."""

    default_code = "command_failed"

    def __init__(self, result: CommandOutcome) -> None:
        tail = result.stderr.strip()[-200:]
        super().__init__(
            f"command exited with status {result.exit_code}" + (f": {tail}" if tail else "")
        )
        self.result = result


class GitError(WrennError):
    """A git operation failed. ``stderr`` and ``exit_code`` come from git."""

    default_code = "git_error"

    def __init__(self, message: str, *, stderr: str = "", exit_code: int = -1) -> None:
        super().__init__(message)
        self.stderr = stderr
        self.exit_code = exit_code


class GitAuthError(GitError):
    """git was refused for want of (valid) credentials."""

    default_code = "git_auth_error"


class GitCommandError(GitError):
    """git exited with an error other than an authentication failure."""

    default_code = "git_command_error"
