"""Deprecated alias of :mod:`wrenn.code_runner.async_capsule`."""

from __future__ import annotations

from ..code_runner.async_capsule import *  # noqa: F403
from ..code_runner.async_capsule import __all__ as __all__
