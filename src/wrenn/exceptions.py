"""Public exception classes: every one derives from :class:`WrennError`."""

from __future__ import annotations

# Annotations of the classes below name ClassVar; they resolve in this, their public, module.
from typing import Any, ClassVar  # noqa: F401

from ._exceptions import CommandExitError as CommandExitError
from ._exceptions import GitAuthError as GitAuthError
from ._exceptions import GitCommandError as GitCommandError
from ._exceptions import GitError as GitError
from ._exceptions import WrennAgentError as WrennAgentError
from ._exceptions import WrennAPIError as WrennAPIError
from ._exceptions import WrennAuthenticationError as WrennAuthenticationError
from ._exceptions import WrennCapsuleFailedError as WrennCapsuleFailedError
from ._exceptions import WrennCommandTimeoutError as WrennCommandTimeoutError
from ._exceptions import WrennConfigurationError as WrennConfigurationError
from ._exceptions import WrennConflictError as WrennConflictError
from ._exceptions import WrennConnectionError as WrennConnectionError
from ._exceptions import WrennError as WrennError
from ._exceptions import WrennFanOutError as WrennFanOutError
from ._exceptions import WrennForbiddenError as WrennForbiddenError
from ._exceptions import WrennHostHasCapsulesError as WrennHostHasCapsulesError
from ._exceptions import WrennHostUnavailableError as WrennHostUnavailableError
from ._exceptions import WrennInternalError as WrennInternalError
from ._exceptions import WrennInvalidStateError as WrennInvalidStateError
from ._exceptions import WrennNameTakenError as WrennNameTakenError
from ._exceptions import WrennNotFoundError as WrennNotFoundError
from ._exceptions import WrennProtocolError as WrennProtocolError
from ._exceptions import WrennRateLimitError as WrennRateLimitError
from ._exceptions import WrennTimeoutError as WrennTimeoutError
from ._exceptions import WrennTooLargeError as WrennTooLargeError
from ._exceptions import WrennTransportError as WrennTransportError
from ._exceptions import WrennUnavailableError as WrennUnavailableError
from ._exceptions import WrennValidationError as WrennValidationError
from ._exceptions import WrennWebSocketClosedError as WrennWebSocketClosedError
from ._exceptions import error_from_response as _error_from_response

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
]


def handle_response(resp: Any) -> Any:
    """The official SDK's helper: raise the matching :class:`WrennError` for an error
    answer, else return its JSON (``{}`` for 204 or an empty body).

    ``resp`` is any response object with ``status_code``, ``content`` and ``json()``
    (an ``httpx.Response`` for instance).
    """
    status = int(resp.status_code)
    if status >= 400:
        raise _error_from_response(status, bytes(resp.content))
    if status == 204 or not resp.content:
        return {}
    return resp.json()


def __getattr__(name: str) -> Any:
    """The official SDK's deprecated and lazy names."""
    import warnings

    if name == "WrennHostHasSandboxesError":
        warnings.warn(
            "'WrennHostHasSandboxesError' is deprecated, use 'WrennHostHasCapsulesError' instead",
            DeprecationWarning,
            stacklevel=2,
        )
        return WrennHostHasCapsulesError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
