"""The code runner's result models (the official SDK's ``wrenn.code_runner.models``)."""

from __future__ import annotations

from .._code_models import CodeContext as CodeContext
from .._code_models import Execution as Execution
from .._code_models import ExecutionError as ExecutionError
from .._code_models import Logs as Logs
from .._code_models import Result as Result

__all__ = ["CodeContext", "Execution", "ExecutionError", "Logs", "Result"]
