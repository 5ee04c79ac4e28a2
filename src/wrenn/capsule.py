"""The official SDK's ``wrenn.capsule`` module: the sync ``Capsule`` and its parts.

``Capsule(template=..., wait=True)``, ``Capsule.create``, ``Capsule.connect``,
``Capsule.list`` and the class-or-instance ``destroy``/``pause``/``resume``/``get_info``
work as in the official SDK; see :class:`wrenn.Capsule`.
"""

from __future__ import annotations

from wrenn import Capsule, Commands, Git, PtySession, WrennClient
from wrenn import CapsuleFiles as Files
from wrenn.exceptions import WrennNotFoundError
from wrenn.models import Capsule as CapsuleModel
from wrenn.models import Status, Template

__all__ = [
    "Capsule",
    "CapsuleModel",
    "Commands",
    "Files",
    "Git",
    "PtySession",
    "Status",
    "Template",
    "WrennClient",
    "WrennNotFoundError",
]
