"""wrenn: the structured-concurrency Python SDK for the Wrenn microVM platform.

The async API runs unchanged under asyncio and trio (it is written against anyio)::

    async with AsyncWrennClient() as client:
        capsules = await client.capsules.list()

Every exception the SDK raises derives from :class:`WrennError`.
"""

from __future__ import annotations

from typing import get_type_hints as _get_type_hints

from . import code_runner as code_runner
from . import exceptions as exceptions
from . import models as models
from ._capsule import AsyncCapsule as AsyncCapsule
from ._client import AsyncWrennClient as AsyncWrennClient
from ._code import AsyncCodeRun as AsyncCodeRun
from ._code import AsyncCodeRunner as AsyncCodeRunner
from ._commands import AsyncCommands as AsyncCommands
from ._commands import CommandHandle as CommandHandle
from ._commands import ScopedIterable as ScopedIterable
from ._commands import StreamErrorEvent as StreamErrorEvent
from ._config import ClientConfig as ClientConfig
from ._config import Secret as Secret
from ._files import AsyncCapsuleFiles as AsyncCapsuleFiles
from ._git import AsyncGit as AsyncGit
from ._git import FileStatus as FileStatus
from ._git import GitBranch as GitBranch
from ._git import GitStatus as GitStatus
from ._models import CommandResult as CommandResult
from ._models import FileEntry as FileEntry
from ._models import ProcessInfo as ProcessInfo
from ._models.code import Chart as Chart
from ._models.code import CodeContext as CodeContext
from ._models.code import CodeOutput as CodeOutput
from ._models.code import CodeStderr as CodeStderr
from ._models.code import CodeStdout as CodeStdout
from ._models.code import Execution as Execution
from ._models.code import ExecutionError as ExecutionError
from ._models.code import Logs as Logs
from ._models.code import Result as Result
from ._models.streams import StreamEvent as StreamEvent
from ._models.streams import StreamExit as StreamExit
from ._models.streams import StreamStart as StreamStart
from ._models.streams import StreamStderr as StreamStderr
from ._models.streams import StreamStdout as StreamStdout
from ._pool import AsyncCapsulePool as AsyncCapsulePool
from ._pty import AsyncPtySession as AsyncPtySession
from ._pty import PtyEvent as PtyEvent
from ._pty import PtyEventType as PtyEventType
from ._resources.streams import AsyncExecStream as AsyncExecStream
from ._sync.client import Capsule as Capsule
from ._sync.client import CapsulePool as CapsulePool
from ._sync.client import WrennClient as WrennClient
from ._sync.code import CodeRun as CodeRun
from ._sync.code import CodeRunner as CodeRunner
from ._sync.commands import Commands as Commands
from ._sync.commands import ExecStream as ExecStream
from ._sync.commands import SyncCommandHandle as SyncCommandHandle
from ._sync.files import CapsuleFiles as CapsuleFiles
from ._sync.git import Git as Git
from ._sync.pty import PtySession as PtySession
from ._version import __version__ as __version__
from .exceptions import CommandExitError as CommandExitError
from .exceptions import GitAuthError as GitAuthError
from .exceptions import GitCommandError as GitCommandError
from .exceptions import GitError as GitError
from .exceptions import WrennAgentError as WrennAgentError
from .exceptions import WrennAPIError as WrennAPIError
from .exceptions import WrennAuthenticationError as WrennAuthenticationError
from .exceptions import WrennCapsuleFailedError as WrennCapsuleFailedError
from .exceptions import WrennConfigurationError as WrennConfigurationError
from .exceptions import WrennConflictError as WrennConflictError
from .exceptions import WrennConnectionError as WrennConnectionError
from .exceptions import WrennError as WrennError
from .exceptions import WrennFanOutError as WrennFanOutError
from .exceptions import WrennForbiddenError as WrennForbiddenError
from .exceptions import WrennHostHasCapsulesError as WrennHostHasCapsulesError
from .exceptions import WrennHostUnavailableError as WrennHostUnavailableError
from .exceptions import WrennInternalError as WrennInternalError
from .exceptions import WrennInvalidStateError as WrennInvalidStateError
from .exceptions import WrennNameTakenError as WrennNameTakenError
from .exceptions import WrennNotFoundError as WrennNotFoundError
from .exceptions import WrennProtocolError as WrennProtocolError
from .exceptions import WrennRateLimitError as WrennRateLimitError
from .exceptions import WrennTimeoutError as WrennTimeoutError
from .exceptions import WrennTooLargeError as WrennTooLargeError
from .exceptions import WrennTransportError as WrennTransportError
from .exceptions import WrennUnavailableError as WrennUnavailableError
from .exceptions import WrennValidationError as WrennValidationError
from .exceptions import WrennWebSocketClosedError as WrennWebSocketClosedError

__all__ = [
    "AsyncCapsule",
    "AsyncCapsuleFiles",
    "AsyncCapsulePool",
    "AsyncCodeRun",
    "AsyncCodeRunner",
    "AsyncCommands",
    "AsyncExecStream",
    "AsyncGit",
    "AsyncPtySession",
    "AsyncWrennClient",
    "Capsule",
    "CapsuleFiles",
    "CapsulePool",
    "Chart",
    "ClientConfig",
    "CodeContext",
    "CodeOutput",
    "CodeRun",
    "CodeRunner",
    "CodeStderr",
    "CodeStdout",
    "CommandExitError",
    "CommandHandle",
    "CommandResult",
    "Commands",
    "ExecStream",
    "Execution",
    "ExecutionError",
    "FileEntry",
    "FileStatus",
    "Git",
    "GitAuthError",
    "GitBranch",
    "GitCommandError",
    "GitError",
    "GitStatus",
    "Logs",
    "ProcessInfo",
    "PtyEvent",
    "PtyEventType",
    "PtySession",
    "Result",
    "ScopedIterable",
    "Secret",
    "StreamErrorEvent",
    "StreamEvent",
    "StreamExit",
    "StreamExitEvent",
    "StreamStart",
    "StreamStartEvent",
    "StreamStderr",
    "StreamStderrEvent",
    "StreamStdout",
    "StreamStdoutEvent",
    "SyncCommandHandle",
    "WrennAPIError",
    "WrennAgentError",
    "WrennAuthenticationError",
    "WrennCapsuleFailedError",
    "WrennClient",
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
    "__version__",
    "code_runner",
    "exceptions",
    "models",
]

# The official SDK's names for the stream events.
StreamStartEvent = StreamStart
StreamStdoutEvent = StreamStdout
StreamStderrEvent = StreamStderr
StreamExitEvent = StreamExit

for _name in (
    "Chart",
    "AsyncCodeRunner",
    "AsyncCodeRun",
    "CodeContext",
    "CodeStderr",
    "CodeStdout",
    "Execution",
    "ExecutionError",
    "Logs",
    "PtyEvent",
    "PtyEventType",
    "Result",
    "ScopedIterable",
    "StreamErrorEvent",
    "CodeRunner",
    "CodeRun",
    "AsyncGit",
    "FileStatus",
    "GitBranch",
    "GitStatus",
    "AsyncCapsule",
    "AsyncCapsuleFiles",
    "AsyncCommands",
    "AsyncPtySession",
    "AsyncWrennClient",
    "Capsule",
    "CapsuleFiles",
    "Commands",
    "Git",
    "PtySession",
    "ExecStream",
    "CommandHandle",
    "WrennClient",
    "AsyncCapsulePool",
    "CapsulePool",
    "SyncCommandHandle",
    "ClientConfig",
    "AsyncExecStream",
    "Secret",
    "StreamExit",
    "StreamStart",
    "StreamStderr",
    "StreamStdout",
):
    _obj = globals()[_name]
    if isinstance(_obj, type):
        # Resolve annotations in the defining module now: once __module__ says "wrenn",
        # tools that evaluate them (pdoc, typing.get_type_hints) would look there.
        try:
            _obj.__annotations__ = _get_type_hints(_obj)
        except (NameError, TypeError):
            pass
    _obj.__module__ = __name__
del _name, _obj


def __getattr__(name: str) -> type:
    """The official SDK's deprecated aliases (a FutureWarning on each use)."""
    import warnings

    aliases = {"Sandbox": Capsule, "WrennHostHasSandboxesError": WrennHostHasCapsulesError}
    if name in aliases:
        target = aliases[name]
        warnings.warn(
            f"{name!r} is deprecated, use {target.__name__!r} instead",
            FutureWarning,
            stacklevel=2,
        )
        return target
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
