"""Deprecated alias of :mod:`wrenn.code_runner.capsule`."""

from __future__ import annotations

from ..code_runner.capsule import *  # noqa: F403
from ..code_runner.capsule import __all__ as __all__
