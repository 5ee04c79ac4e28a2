"""``capsule.code`` for synchronous code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import final

from .._code import DEFAULT_TIMEOUT, JUPYTER_TIMEOUT, AsyncCodeRun, AsyncCodeRunner
from .._models.code import CodeContext, CodeOutput, Execution
from .adapt import Facet, blocking
from .portal import PortalRunner

__all__ = ["CodeRun", "CodeRunner"]


@final
class CodeRun:
    """A running cell for synchronous code; iterate it for outputs (batched: one crossing
    into the portal brings back everything already received)."""

    def __init__(self, runner: PortalRunner, run: AsyncCodeRun) -> None:
        self._runner = runner
        self._async = run

    def __iter__(self) -> Iterator[CodeOutput]:
        return self._runner.iterate(self._async)

    @property
    def context(self) -> CodeContext:
        return self._async.context

    @property
    def execution(self) -> Execution:
        """Everything received so far; complete once iteration has ended."""
        return self._async.execution

    @property
    def finished(self) -> bool:
        return self._async.finished


@final
class CodeRunner(Facet[AsyncCodeRunner]):
    """``capsule.code`` for synchronous code: the methods of :class:`wrenn.AsyncCodeRunner`
    with the same arguments. Callbacks run in the portal thread; Ctrl-C during a cell
    interrupts it and leaves the kernel usable."""

    __slots__ = ()

    @property
    def kernel_name(self) -> str:
        return self._async.kernel_name

    run = blocking(AsyncCodeRunner.run)
    create_context = blocking(AsyncCodeRunner.create_context)
    list_contexts = blocking(AsyncCodeRunner.list_contexts)
    restart_context = blocking(AsyncCodeRunner.restart_context)
    remove_context = blocking(AsyncCodeRunner.remove_context)
    interrupt = blocking(AsyncCodeRunner.interrupt)
    close = blocking(AsyncCodeRunner.close)

    @property
    def kernel_id(self) -> str | None:
        """The default context's kernel ID, once it exists (after the first run)."""
        return self._async.kernel_id

    @contextmanager
    def stream(
        self,
        code: str,
        *,
        language: str = "python",
        context: CodeContext | str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        jupyter_timeout: float | None = JUPYTER_TIMEOUT,
    ) -> Iterator[CodeRun]:
        """``with cap.code.stream(code) as run: for item in run`` — see
        :meth:`wrenn.AsyncCodeRunner.stream`. Leaving early interrupts the cell."""
        with self._runner.enter(
            lambda: self._async.stream(
                code,
                language=language,
                context=context,
                timeout=timeout,
                jupyter_timeout=jupyter_timeout,
            )
        ) as run:
            yield CodeRun(self._runner, run)
