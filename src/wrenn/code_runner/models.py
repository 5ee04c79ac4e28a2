"""The code runner's result models (the official SDK's ``wrenn.code_runner.models``)."""

from __future__ import annotations

from .._models.code import CodeContext as CodeContext
from .._models.code import Execution as Execution
from .._models.code import ExecutionError as ExecutionError
from .._models.code import Logs as Logs
from .._models.code import Result as Result

__all__ = ["CodeContext", "Execution", "ExecutionError", "Logs", "Result"]
