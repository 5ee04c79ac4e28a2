"""The official SDK's ``wrenn.async_capsule`` module: ``AsyncCapsule`` and its parts.

``async with await AsyncCapsule.create(wait=True) as cap:`` works as in the official SDK
(the block is also the capsule's scope); ``client.capsule()`` is this SDK's own form.
"""

from __future__ import annotations

from wrenn import AsyncCapsule, AsyncCommands, AsyncGit, AsyncPtySession, AsyncWrennClient
from wrenn import AsyncCapsuleFiles as AsyncFiles
from wrenn.exceptions import WrennNotFoundError
from wrenn.models import Capsule as CapsuleModel
from wrenn.models import Status, Template

__all__ = [
    "AsyncCapsule",
    "AsyncCommands",
    "AsyncFiles",
    "AsyncGit",
    "AsyncPtySession",
    "AsyncWrennClient",
    "CapsuleModel",
    "Status",
    "Template",
    "WrennNotFoundError",
]
