"""What every verb of the ``wrenn`` command shares: exit codes, the usage error, and
output that is either for people or one JSON document (``--json``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from .._exceptions import WrennError

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "EXIT_TIMED_OUT",
    "EXIT_USAGE",
    "UsageError",
    "emit",
    "split_target",
]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
EXIT_TIMED_OUT = 124  # as timeout(1) does


class UsageError(WrennError):
    """Bad command-line input (exit 2)."""

    default_code = "usage"


def emit(args: argparse.Namespace, data: Any, human: Callable[[], object]) -> None:
    """``data`` as one JSON document on stdout under ``--json``; else ``human()``."""
    if getattr(args, "json", False):
        import json

        sys.stdout.write(json.dumps(data, default=str) + "\n")
    else:
        human()


def split_target(text: str) -> tuple[str, str]:
    """``ID:PATH`` → ``(ID, PATH)``."""
    capsule_id, sep, path = text.partition(":")
    if not sep or not capsule_id or not path:
        raise UsageError(f"expected ID:PATH, got {text!r}")
    return capsule_id, path
