"""``capsule.code``: stateful code execution in a Jupyter kernel inside the capsule.

The capsule runs Jupyter Server on port 8888 (the ``code-runner-beta`` template); this
module talks to it through the port proxy: the kernels REST API for contexts, and each
kernel's ``/channels`` WebSocket (our own client) for cells.

Connections: inside ``client.capsule()`` the WebSocket of each kernel is opened once, by
a task of the capsule's scope, and reused by every cell; it is closed when the scope
ends. A capsule without a scope (``AsyncCapsule.create``/``connect``) opens one per cell.
One cell runs at a time per context; concurrent calls on one context wait their turn.
"""

from __future__ import annotations

import inspect
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, final

import anyio
import anyio.abc

from ._config import check_seconds
from ._exceptions import (
    WrennConfigurationError,
    WrennConnectionError,
    WrennError,
    WrennTimeoutError,
    WrennValidationError,
    error_from_response,
)
from ._models.code import (
    CodeContext,
    CodeOutput,
    CodeStderr,
    CodeStdout,
    Execution,
    ExecutionError,
    Result,
)
from ._session import Session

# wsproto and the Jupyter message reader are loaded with the first cell, not with the SDK.
if TYPE_CHECKING:
    from ._protocol.jupyter import CellReader
    from ._transport.websocket import WebSocket

__all__ = ["DEFAULT_KERNEL", "DEFAULT_TEMPLATE", "AsyncCodeRun", "AsyncCodeRunner"]

DEFAULT_TEMPLATE: Final = "code-runner-beta"
DEFAULT_KERNEL: Final = "wrenn"
JUPYTER_PORT: Final = 8888
DEFAULT_TIMEOUT: Final = 30.0
JUPYTER_TIMEOUT: Final = 30.0
RETRY_EVERY: Final = 0.5
INTERRUPT_TIMEOUT: Final = 5.0
SETTLE_TIMEOUT: Final = 10.0
# A kernel ignores an interrupt that reaches it between cells (ipykernel ignores SIGINT
# then): a cell still running this long after one is interrupted again.
INTERRUPT_AGAIN_AFTER: Final = 1.0

Callback = Callable[[Any], Awaitable[None] | None]


async def _call(callback: Callback | None, value: Any) -> None:
    if callback is not None:
        result = callback(value)
        if inspect.isawaitable(result):
            await result


def _check_language(language: str) -> None:
    if language != "python":
        raise WrennValidationError(f"only language='python' is supported, not {language!r}")


def _context_id(context: CodeContext | str) -> str:
    kernel_id = context.id if isinstance(context, CodeContext) else context
    if not isinstance(kernel_id, str) or not kernel_id or "/" in kernel_id:
        raise WrennValidationError("a context is a CodeContext or a kernel ID")
    return kernel_id


@final
class _KernelLink:
    """One open channels WebSocket to one kernel; one cell at a time."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.lock = anyio.Lock()
        self.broken = False
        self.released = anyio.Event()


@final
class AsyncCodeRun:
    """A running cell; iterate it for :data:`CodeOutput` items as the kernel produces them
    (``CodeStdout``, ``CodeStderr``, ``Result``, ``ExecutionError``).

    Iteration ends when the cell is finished; :attr:`execution` then holds everything.
    When the deadline passes the kernel is interrupted and the last item is an
    ``ExecutionError("Timeout", …)``; a dropped connection ends with
    ``ExecutionError("Disconnected", …)``. Unread output waits in a bounded buffer; when
    it is full the kernel's output is slowed down, nothing is dropped.
    """

    def __init__(
        self, runner: AsyncCodeRunner, link: _KernelLink, context: CodeContext, timeout: float
    ) -> None:
        self._runner = runner
        self._link = link
        self.context = context
        self.execution = Execution()
        self._reader: CellReader | None = None
        self._pending: deque[CodeOutput] = deque()
        self._timeout = timeout
        self._deadline = anyio.current_time() + timeout
        self.finished = False

    async def _send(self, code: str) -> None:
        from ._protocol.jupyter import CellReader, execute_request

        msg_id, frame = execute_request(code, session=self._runner._session)
        self._reader = CellReader(msg_id)
        try:
            await self._link.ws.send_text(frame)
        except WrennError:
            self._link.broken = True
            raise

    def __aiter__(self) -> AsyncCodeRun:
        return self

    async def __anext__(self) -> CodeOutput:
        while not self._pending:
            if self.finished:
                raise StopAsyncIteration
            remaining = self._deadline - anyio.current_time()
            if remaining <= 0:
                await self._time_out()
                continue
            with anyio.move_on_after(remaining):
                try:
                    frame = await self._link.ws.receive()
                except WrennConnectionError as exc:
                    self._link.broken = True
                    self._finish(ExecutionError("Disconnected", str(exc)), timed_out=True)
                    continue
                self._take(frame)
        return self._pending.popleft()

    def take_ready(self, limit: int) -> list[CodeOutput]:
        """Up to ``limit`` outputs already received, without waiting (for batching)."""
        while len(self._pending) < limit and not self.finished:
            frame = self._link.ws.receive_nowait()
            if frame is None:
                break
            self._take(frame)
        out: list[CodeOutput] = []
        while self._pending and len(out) < limit:
            out.append(self._pending.popleft())
        return out

    def _take(self, frame: str | bytes) -> None:
        assert self._reader is not None
        for item in self._reader.feed(frame):
            self.execution.add(item)
            self._pending.append(item)
        if self._reader.execution_count is not None:
            self.execution.execution_count = self._reader.execution_count
        if self._reader.done:
            self.finished = True

    def _finish(self, error: ExecutionError, *, timed_out: bool) -> None:
        self.execution.add(error)
        self.execution.timed_out = timed_out
        self._pending.append(error)
        self.finished = True

    async def _settle(self) -> None:
        """Interrupt the cell and read (dropping) the rest of it until the kernel is idle,
        shielded and bounded (``SETTLE_TIMEOUT``): a request sent before the kernel has
        finished handling the interrupt would be aborted by it.

        The interrupt is sent again every ``INTERRUPT_AGAIN_AFTER`` seconds while the
        cell has not ended: one that reaches the kernel before it starts the cell (the
        cell was queued behind another, or cancelled just after it was sent) is ignored,
        and the cell would run on with the next one queued behind it. If the bound
        passes first, the next cell starts on a fresh connection."""
        reader = self._reader
        with anyio.CancelScope(shield=True), anyio.move_on_after(SETTLE_TIMEOUT) as scope:
            while reader is not None and not reader.done:
                await self._runner._interrupt_quietly(self.context.id)
                with anyio.move_on_after(INTERRUPT_AGAIN_AFTER):
                    while not reader.done:
                        try:
                            frame = await self._link.ws.receive()
                        except WrennError:
                            self._link.broken = True
                            return
                        reader.feed(frame)
        if scope.cancelled_caught:
            self._link.broken = True  # start the next cell on a fresh connection

    async def _time_out(self) -> None:
        await self._settle()
        self._finish(
            ExecutionError("Timeout", f"execution did not finish within {self._timeout:g} s"),
            timed_out=True,
        )


@final
class AsyncCodeRunner:
    """Reached as ``capsule.code`` (and through ``capsule.run_code`` & co.).

    Needs a capsule that runs Jupyter Server on port 8888, such as one made from the
    ``code-runner-beta`` template.
    """

    def __init__(
        self,
        session: Session,
        capsule_id: str,
        *,
        kernel: str = DEFAULT_KERNEL,
        owner: Callable[[], anyio.abc.TaskGroup | None] = lambda: None,
        template: str | None = None,
    ) -> None:
        self._port = session.port(capsule_id, JUPYTER_PORT)
        self._templates = session.snapshots
        self._template = template or None  # the capsule's, to say when it has no runner
        self._template_checked = False
        self._kernel_name = kernel
        self._session = uuid.uuid4().hex
        # the task group of the capsule's scope (None outside a scope): kernel WebSockets
        # are held open there and end with the scope
        self._owner = owner
        self._default: CodeContext | None = None
        self._default_lock = anyio.Lock()
        self._links: dict[str, _KernelLink] = {}
        self._links_lock = anyio.Lock()

    @property
    def kernel_name(self) -> str:
        """The kernelspec used for the default context and new contexts."""
        return self._kernel_name

    @property
    def kernel_id(self) -> str | None:
        """The default context's kernel ID, once it exists (after the first run)."""
        return self._default.id if self._default is not None else None

    async def close(self) -> None:
        """Close the kernel connections this runner holds; the capsule and its kernels
        stay as they are (the next run connects again)."""
        async with self._links_lock:
            for kernel_id in list(self._links):
                self._drop_link(kernel_id)

    # --- running code ------------------------------------------------------------------

    async def run(
        self,
        code: str,
        *,
        language: str = "python",
        context: CodeContext | str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        jupyter_timeout: float | None = JUPYTER_TIMEOUT,
        on_stdout: Callable[[str], Awaitable[None] | None] | None = None,
        on_stderr: Callable[[str], Awaitable[None] | None] | None = None,
        on_result: Callable[[Result], Awaitable[None] | None] | None = None,
        on_error: Callable[[ExecutionError], Awaitable[None] | None] | None = None,
    ) -> Execution:
        """Run ``code`` in a kernel and return its :class:`Execution`.

        State persists between calls on the same context (the default one unless
        ``context`` is given). A cell that raises is not an SDK error: its exception is
        ``execution.error``. When ``timeout`` seconds pass, the kernel is interrupted (so
        the next cell does not queue behind this one) and ``execution.timed_out`` is set.
        ``jupyter_timeout`` bounds waiting for Jupyter to come up. Callbacks (plain or
        async) get each output as it arrives.

        Cancelling the call interrupts the cell (shielded, bounded) and leaves the kernel
        usable. Raises :class:`WrennValidationError` for a language other than python,
        :class:`WrennTimeoutError` when Jupyter does not answer within
        ``jupyter_timeout``, and other :class:`WrennError` for a missing capsule or kernel.
        """
        async with self.stream(
            code,
            language=language,
            context=context,
            timeout=timeout,
            jupyter_timeout=jupyter_timeout,
        ) as run:
            async for item in run:
                if isinstance(item, CodeStdout):
                    await _call(on_stdout, item.text)
                elif isinstance(item, CodeStderr):
                    await _call(on_stderr, item.text)
                elif isinstance(item, Result):
                    await _call(on_result, item)
                else:
                    await _call(on_error, item)
        return run.execution

    @asynccontextmanager
    async def stream(
        self,
        code: str,
        *,
        language: str = "python",
        context: CodeContext | str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        jupyter_timeout: float | None = JUPYTER_TIMEOUT,
    ) -> AsyncIterator[AsyncCodeRun]:
        """Run ``code`` and stream its outputs::

            async with cap.code.stream("for i in range(3): print(i)") as run:
                async for item in run:
                    ...
            run.execution  # everything, once the loop has ended

        Leaving the block before the cell finished (``break``, an error, cancellation)
        interrupts the cell, shielded and bounded, so the kernel stays usable.
        """
        _check_language(language)
        if not isinstance(code, str):
            raise WrennValidationError("code must be a string")
        timeout = check_seconds(timeout)
        jupyter_timeout = check_seconds(jupyter_timeout, name="jupyter_timeout")
        ctx = await self._resolve(context, jupyter_timeout)
        for attempt in (1, 2):
            async with self._link(ctx.id, jupyter_timeout) as link, link.lock:
                run = AsyncCodeRun(self, link, ctx, timeout)
                try:
                    await run._send(code)
                except WrennConnectionError:
                    if attempt == 1:
                        continue  # the reused connection had died: reconnect once
                    raise
                try:
                    yield run
                finally:
                    if not run.finished:
                        await run._settle()
                return

    # --- contexts ----------------------------------------------------------------------

    async def create_context(
        self,
        *,
        language: str = "python",
        cwd: str | None = None,
        kernel: str | None = None,
        jupyter_timeout: float | None = JUPYTER_TIMEOUT,
    ) -> CodeContext:
        """Start a new kernel: a context with state of its own.

        ``cwd`` is the working directory of its cells (created if missing).
        """
        jupyter_timeout = check_seconds(jupyter_timeout, name="jupyter_timeout")
        _check_language(language)
        name = kernel or self._kernel_name
        answer = await self._jupyter("POST", "/api/kernels", {"name": name}, jupyter_timeout)
        context = CodeContext(
            id=self._kernel_id(answer), language=language, cwd=cwd, kernel_name=name
        )
        if cwd is not None:
            execution = await self.run(
                f"import os as _os\n_os.makedirs({cwd!r}, exist_ok=True)\n_os.chdir({cwd!r})\n"
                "del _os",
                context=context,
                jupyter_timeout=jupyter_timeout,
            )
            if execution.error is not None:
                await self.remove_context(context)
                raise WrennValidationError(
                    f"cannot use {cwd!r} as the working directory: {execution.error.value}"
                )
        return context

    async def list_contexts(
        self, *, jupyter_timeout: float | None = JUPYTER_TIMEOUT
    ) -> list[CodeContext]:
        """The kernels running in the capsule."""
        jupyter_timeout = check_seconds(jupyter_timeout, name="jupyter_timeout")
        answer = await self._jupyter("GET", "/api/kernels", None, jupyter_timeout)
        if not isinstance(answer, list):
            raise WrennError("Jupyter's kernel list is not a JSON array")
        return [
            CodeContext(id=str(k["id"]), kernel_name=str(k.get("name", "")))
            for k in answer
            if isinstance(k, dict) and "id" in k
        ]

    async def restart_context(
        self,
        context: CodeContext | str | None = None,
        *,
        jupyter_timeout: float | None = JUPYTER_TIMEOUT,
    ) -> None:
        """Restart a kernel (the default one when none is given): its state is lost."""
        jupyter_timeout = check_seconds(jupyter_timeout, name="jupyter_timeout")
        kernel_id = (await self._resolve(context, jupyter_timeout)).id
        await self._jupyter("POST", f"/api/kernels/{kernel_id}/restart", None, jupyter_timeout)

    async def remove_context(
        self, context: CodeContext | str, *, jupyter_timeout: float | None = JUPYTER_TIMEOUT
    ) -> None:
        """Shut a kernel down and forget it."""
        jupyter_timeout = check_seconds(jupyter_timeout, name="jupyter_timeout")
        kernel_id = _context_id(context)
        await self._jupyter("DELETE", f"/api/kernels/{kernel_id}", None, jupyter_timeout)
        self._drop_link(kernel_id)
        if self._default is not None and self._default.id == kernel_id:
            self._default = None

    async def interrupt(self, context: CodeContext | str | None = None) -> None:
        """Interrupt the running cell of a context (the default one when none is given)."""
        kernel_id = (await self._resolve(context, JUPYTER_TIMEOUT)).id
        await self._jupyter("POST", f"/api/kernels/{kernel_id}/interrupt", None, JUPYTER_TIMEOUT)

    # --- internals ---------------------------------------------------------------------

    async def _resolve(
        self, context: CodeContext | str | None, jupyter_timeout: float
    ) -> CodeContext:
        if context is None:
            return await self._default_context(jupyter_timeout)
        if isinstance(context, CodeContext):
            return context
        return CodeContext(id=_context_id(context), kernel_name=self._kernel_name)

    async def _default_context(self, jupyter_timeout: float) -> CodeContext:
        """The first kernel with our kernelspec name, started if there is none."""
        async with self._default_lock:
            if self._default is None:
                kernels = await self._jupyter("GET", "/api/kernels", None, jupyter_timeout)
                found = [
                    k
                    for k in (kernels if isinstance(kernels, list) else [])
                    if isinstance(k, dict) and k.get("name") == self._kernel_name and "id" in k
                ]
                if found:
                    kernel_id = str(found[0]["id"])
                else:
                    answer = await self._jupyter(
                        "POST", "/api/kernels", {"name": self._kernel_name}, jupyter_timeout
                    )
                    kernel_id = self._kernel_id(answer)
                self._default = CodeContext(id=kernel_id, kernel_name=self._kernel_name)
            return self._default

    @staticmethod
    def _kernel_id(answer: Any) -> str:
        if not isinstance(answer, dict) or not isinstance(answer.get("id"), str):
            raise WrennError("Jupyter did not return a kernel ID")
        kernel_id: str = answer["id"]
        return kernel_id

    async def _jupyter(
        self, method: str, path: str, body: dict[str, Any] | None, jupyter_timeout: float
    ) -> Any:
        """A kernels-API call through the proxy. 5xx answers and transport failures are
        retried every 0.5 s until ``jupyter_timeout`` (Jupyter may still be starting)."""
        context = self._port.describe(method, path)
        last: Exception | None = None
        with anyio.move_on_after(jupyter_timeout):
            while True:
                try:
                    response = await self._port.request(
                        method, path, json_body=body, timeout=jupyter_timeout
                    )
                except WrennConnectionError as exc:
                    last = exc
                    await self._refuse_without_runner()
                else:
                    if response.status_code < 400:
                        return response.json() if response.content else None
                    error = error_from_response(
                        response.status_code, response.content, context=context
                    )
                    if response.status_code < 500:
                        raise error
                    last = error
                    await self._refuse_without_runner()
                await anyio.sleep(RETRY_EVERY)
        raise WrennTimeoutError(
            f"Jupyter was not available within {jupyter_timeout:g} s ({context}): {last}"
        )

    async def _refuse_without_runner(self) -> None:
        """After a first failure, fail at once (rather than wait for a Jupyter that will
        never come) when the capsule's template is a platform base template without a
        code runner. Snapshots and custom templates cannot be told apart: they wait."""
        if self._template is None or self._template_checked:
            return
        self._template_checked = True
        try:
            found = await self._templates.get(self._template)
        except WrennError:
            return
        if (
            found is None
            or not found.platform
            or str(found.type) != "base"
            or found.name.startswith("code-runner")
            or {"kernel", "jupyter_port"} & set(found.metadata)
        ):
            return
        raise WrennConfigurationError(
            f"this capsule's template {found.name!r} has no code runner (Jupyter): create "
            f'the capsule with template="{DEFAULT_TEMPLATE}" (wrenn.code_runner '
            "capsules use it by default) to run code"
        )

    async def _interrupt_quietly(self, kernel_id: str) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(INTERRUPT_TIMEOUT):
            try:
                await self._jupyter(
                    "POST", f"/api/kernels/{kernel_id}/interrupt", None, INTERRUPT_TIMEOUT
                )
            except WrennError:
                pass  # the kernel or capsule is gone: nothing left to interrupt

    def _connect(
        self, kernel_id: str, open_timeout: float
    ) -> AbstractAsyncContextManager[WebSocket]:
        """The kernel's channels WebSocket, with the client's TLS settings."""
        path = f"/api/kernels/{kernel_id}/channels?session_id={self._session}"
        return self._port.websocket(path, open_timeout=open_timeout)

    @asynccontextmanager
    async def _link(self, kernel_id: str, jupyter_timeout: float) -> AsyncIterator[_KernelLink]:
        services = self._owner()
        if services is None:  # no scope to hold a connection: one per cell
            async with self._connect(kernel_id, jupyter_timeout) as ws:
                yield _KernelLink(ws)
            return
        async with self._links_lock:
            link = self._links.get(kernel_id)
            if link is None or link.broken or link.ws.closed:
                self._drop_link(kernel_id)
                link = await services.start(self._hold_link, kernel_id, jupyter_timeout)
                self._links[kernel_id] = link
        try:
            yield link
        finally:
            if link.broken:
                self._drop_link(kernel_id)

    async def _hold_link(
        self,
        kernel_id: str,
        jupyter_timeout: float,
        *,
        task_status: anyio.abc.TaskStatus[_KernelLink] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """A task of the capsule's scope that keeps one kernel's WebSocket open until the
        link is dropped or the scope ends."""
        async with self._connect(kernel_id, jupyter_timeout) as ws:
            link = _KernelLink(ws)
            task_status.started(link)
            await link.released.wait()

    def _drop_link(self, kernel_id: str) -> None:
        link = self._links.pop(kernel_id, None)
        if link is not None:
            link.released.set()
