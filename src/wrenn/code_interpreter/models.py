"""Deprecated alias of :mod:`wrenn.code_runner.models`."""

from __future__ import annotations

from ..code_runner.models import *  # noqa: F403
from ..code_runner.models import __all__ as __all__
