"""wrenn: the structured-concurrency Python SDK for the Wrenn microVM platform.

The async API runs unchanged under asyncio and trio (it is written against anyio)::

    async with AsyncWrennClient() as client:
        capsules = await client.capsules.list()

Every exception the SDK raises derives from :class:`WrennError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__

if TYPE_CHECKING:
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
    from .exceptions import CommandExitError as CommandExitError
    from .exceptions import GitAuthError as GitAuthError
    from .exceptions import GitCommandError as GitCommandError
    from .exceptions import GitError as GitError
    from .exceptions import WrennAgentError as WrennAgentError
    from .exceptions import WrennAPIError as WrennAPIError
    from .exceptions import WrennAuthenticationError as WrennAuthenticationError
    from .exceptions import WrennCapsuleFailedError as WrennCapsuleFailedError
    from .exceptions import WrennCommandTimeoutError as WrennCommandTimeoutError
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

    # The official SDK's names for the stream events.
    StreamStartEvent = StreamStart
    StreamStdoutEvent = StreamStdout
    StreamStderrEvent = StreamStderr
    StreamExitEvent = StreamExit
    # The official SDK's deprecated aliases (a FutureWarning when used).
    Sandbox = Capsule
    WrennHostHasSandboxesError = WrennHostHasCapsulesError

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
    "__version__",
    "code_runner",
    "exceptions",
    "models",
]

# Where each public name lives. `import wrenn` loads none of them: a name is imported
# on first use (PEP 562), so scripts, `wrenn --help` and the pytest plugin stay quick.
_LAZY: dict[str, str] = {
    "AsyncCapsule": "._capsule",
    "AsyncWrennClient": "._client",
    "AsyncCodeRun": "._code",
    "AsyncCodeRunner": "._code",
    "AsyncCommands": "._commands",
    "CommandHandle": "._commands",
    "ScopedIterable": "._commands",
    "StreamErrorEvent": "._commands",
    "ClientConfig": "._config",
    "Secret": "._config",
    "AsyncCapsuleFiles": "._files",
    "AsyncGit": "._git",
    "FileStatus": "._git",
    "GitBranch": "._git",
    "GitStatus": "._git",
    "CommandResult": "._models",
    "FileEntry": "._models",
    "ProcessInfo": "._models",
    "Chart": "._models.code",
    "CodeContext": "._models.code",
    "CodeOutput": "._models.code",
    "CodeStderr": "._models.code",
    "CodeStdout": "._models.code",
    "Execution": "._models.code",
    "ExecutionError": "._models.code",
    "Logs": "._models.code",
    "Result": "._models.code",
    "StreamEvent": "._models.streams",
    "StreamExit": "._models.streams",
    "StreamStart": "._models.streams",
    "StreamStderr": "._models.streams",
    "StreamStdout": "._models.streams",
    "AsyncCapsulePool": "._pool",
    "AsyncPtySession": "._pty",
    "PtyEvent": "._pty",
    "PtyEventType": "._pty",
    "AsyncExecStream": "._resources.streams",
    "Capsule": "._sync.client",
    "CapsulePool": "._sync.client",
    "WrennClient": "._sync.client",
    "CodeRun": "._sync.code",
    "CodeRunner": "._sync.code",
    "Commands": "._sync.commands",
    "ExecStream": "._sync.commands",
    "SyncCommandHandle": "._sync.commands",
    "CapsuleFiles": "._sync.files",
    "Git": "._sync.git",
    "PtySession": "._sync.pty",
    "CommandExitError": ".exceptions",
    "GitAuthError": ".exceptions",
    "GitCommandError": ".exceptions",
    "GitError": ".exceptions",
    "WrennAgentError": ".exceptions",
    "WrennAPIError": ".exceptions",
    "WrennAuthenticationError": ".exceptions",
    "WrennCapsuleFailedError": ".exceptions",
    "WrennConfigurationError": ".exceptions",
    "WrennConflictError": ".exceptions",
    "WrennConnectionError": ".exceptions",
    "WrennError": ".exceptions",
    "WrennFanOutError": ".exceptions",
    "WrennForbiddenError": ".exceptions",
    "WrennHostHasCapsulesError": ".exceptions",
    "WrennHostUnavailableError": ".exceptions",
    "WrennInternalError": ".exceptions",
    "WrennInvalidStateError": ".exceptions",
    "WrennNameTakenError": ".exceptions",
    "WrennNotFoundError": ".exceptions",
    "WrennProtocolError": ".exceptions",
    "WrennRateLimitError": ".exceptions",
    "WrennTimeoutError": ".exceptions",
    "WrennCommandTimeoutError": ".exceptions",
    "WrennTooLargeError": ".exceptions",
    "WrennTransportError": ".exceptions",
    "WrennUnavailableError": ".exceptions",
    "WrennValidationError": ".exceptions",
    "WrennWebSocketClosedError": ".exceptions",
    "StreamStartEvent": "._models.streams",
    "StreamStdoutEvent": "._models.streams",
    "StreamStderrEvent": "._models.streams",
    "StreamExitEvent": "._models.streams",
}
_ALIASES = {
    "StreamStartEvent": "StreamStart",
    "StreamStdoutEvent": "StreamStdout",
    "StreamStderrEvent": "StreamStderr",
    "StreamExitEvent": "StreamExit",
}
_SUBMODULES = frozenset({"code_runner", "exceptions", "models"})
# Names that say they live in `wrenn` (their private module is an implementation detail).
_REHOMED = frozenset(
    {
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
    }
)


# Hidden from type checkers, which see the names above: a misspelt name stays an error.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        """Load a public name on first use; the official SDK's deprecated aliases (a
        FutureWarning on each use)."""
        import importlib

        if name in _SUBMODULES:
            return importlib.import_module(f".{name}", __name__)
        if name in _LAZY:
            module = importlib.import_module(_LAZY[name], __name__)
            if _LAZY[name] == "._models":
                # These models say they live in `wrenn.models`, which renames them on import.
                importlib.import_module(".models", __name__)
            obj = getattr(module, _ALIASES.get(name, name))
            if _ALIASES.get(name, name) in _REHOMED and obj.__module__ != __name__:
                if isinstance(obj, type):
                    # Resolve annotations in the defining module now: once __module__ says
                    # "wrenn", tools that evaluate them (pdoc, get_type_hints) would look here.
                    from typing import get_type_hints

                    try:
                        obj.__annotations__ = get_type_hints(obj)
                    except (NameError, TypeError):
                        pass
                obj.__module__ = __name__
            globals()[name] = obj
            return obj
        aliases = {"Sandbox": "Capsule", "WrennHostHasSandboxesError": "WrennHostHasCapsulesError"}
        if name in aliases:
            import warnings

            target = aliases[name]
            warnings.warn(
                f"{name!r} is deprecated, use {target!r} instead",
                FutureWarning,
                stacklevel=2,
            )
            return __getattr__(target)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """Every public name, loaded or not (for completion in shells and editors)."""
    return sorted(set(globals()) | set(__all__))
