"""What running code returns: results with their MIME fields, logs, errors, contexts."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Final, final

import attrs

from .._exceptions import WrennValidationError
from .base import DataclassShaped, dataclass_view

__all__ = [
    "CHART_MIME",
    "Chart",
    "CodeContext",
    "CodeOutput",
    "CodeStderr",
    "CodeStdout",
    "Execution",
    "ExecutionError",
    "Logs",
    "Result",
]

# Jupyter MIME type -> Result field (PROTOCOL §14); anything else goes to `extra`.
MIME_FIELDS: Final = {
    "text/plain": "text",
    "text/html": "html",
    "text/markdown": "markdown",
    "image/svg+xml": "svg",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "application/pdf": "pdf",
    "text/latex": "latex",
    "application/json": "json",
    "application/javascript": "javascript",
    "application/vnd.plotly.v1+json": "plotly",
}
_BINARY: Final = frozenset({"png", "jpeg", "gif", "pdf"})
# The chart data wrenn_local's code runner sends beside a matplotlib figure's image.
CHART_MIME: Final = "application/vnd.wrenn.chart+json"


def _text(value: Any) -> str:
    # Jupyter may split long text values into a list of lines
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return str(value)


def _optional_text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@final
@attrs.frozen
class Chart:
    """A chart's data, read from a matplotlib figure by the code runner (wrenn_local).

    ``type`` is ``"line"``, ``"scatter"``, ``"bar"``, ``"pie"``, ``"superchart"`` (a
    figure of several axes: ``elements`` are :class:`Chart` values) or ``"unknown"``
    (axes that are none of these; title and labels only), or a type a newer server
    sends. ``elements`` are dicts as sent: line and scatter ``{"label", "points":
    [[x, y], ...], "truncated"}`` (at most 5,000 points a series), bar ``{"label",
    "value", "group"}``, pie ``{"label", "angle", "share", "radius"}``.
    """

    type: str
    title: str | None = None
    x_label: str | None = None
    y_label: str | None = None
    elements: list[Any] = attrs.field(factory=list)

    @classmethod
    def from_json(cls, data: Any) -> Chart | None:
        """The chart in ``data`` (the MIME bundle's value), or None if it is not one."""
        if not isinstance(data, Mapping) or not isinstance(data.get("type"), str):
            return None
        raw = data.get("elements")
        elements: list[Any] = list(raw) if isinstance(raw, list) else []
        if data["type"] == "superchart":
            elements = [c for c in (cls.from_json(e) for e in elements) if c is not None]
        return cls(
            type=data["type"],
            title=_optional_text(data.get("title")),
            x_label=_optional_text(data.get("x_label")),
            y_label=_optional_text(data.get("y_label")),
            elements=elements,
        )


@final
@dataclass_view()
@attrs.frozen
class Result(DataclassShaped):
    """One rich output of a cell: the main result (``is_main_result``, the value of the
    cell's last expression) or a ``display()`` output.

    Text fields hold the MIME data as Jupyter sent it (``text`` is the ``repr``, so
    ``'hi'`` keeps its quotes). ``png``, ``jpeg``, ``gif`` and ``pdf`` are base64 text,
    as on the wire; :meth:`data` decodes them. ``json`` and ``plotly`` are parsed JSON.
    """

    text: str | None = None
    html: str | None = None
    markdown: str | None = None
    svg: str | None = None
    png: str | None = None
    jpeg: str | None = None
    gif: str | None = None
    pdf: str | None = None
    latex: str | None = None
    json: Any = None
    javascript: str | None = None
    plotly: Any = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)
    is_main_result: bool = False

    @classmethod
    def from_bundle(cls, bundle: Mapping[str, Any], *, is_main_result: bool = False) -> Result:
        """Build a result from a Jupyter MIME bundle (``{"text/plain": ..., ...}``)."""
        fields: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for mime, value in bundle.items():
            name = MIME_FIELDS.get(mime)
            if name is None:
                extra[mime] = value
            elif name in ("json", "plotly"):
                fields[name] = value
            else:
                fields[name] = _text(value).strip() if name in _BINARY else _text(value)
        return cls(**fields, extra=extra, is_main_result=is_main_result)

    @property
    def chart(self) -> Chart | None:
        """The chart's data when this result is a matplotlib figure shown by wrenn_local's
        code runner (its ``application/vnd.wrenn.chart+json`` output), else None."""
        return Chart.from_json(self.extra.get(CHART_MIME))

    def formats(self) -> list[str]:
        """The names of the fields that are set (``["text", "png"]``), then extra MIME types."""
        names = [n for n in MIME_FIELDS.values() if getattr(self, n) is not None]
        return names + list(self.extra)

    def data(self, field: str) -> bytes | None:
        """The bytes of a binary field (``png``, ``jpeg``, ``gif``, ``pdf``), or None."""
        if field not in _BINARY:
            raise WrennValidationError(
                f"{field!r} is not a binary field; use one of {sorted(_BINARY)}"
            )
        value = getattr(self, field)
        return None if value is None else base64.b64decode(value)

    def __repr__(self) -> str:
        shown = ", ".join(self.formats()) or "empty"
        main = " main" if self.is_main_result else ""
        return f"<Result{main} [{shown}]>"


@final
@dataclass_view()
@attrs.frozen
class ExecutionError(DataclassShaped):
    """An error raised by the cell (or ``Timeout`` / ``Disconnected`` from the SDK)."""

    name: str = ""
    value: str = ""
    traceback: str = ""


@final
@dataclass_view()
@attrs.frozen
class Logs(DataclassShaped):
    """What the cell printed, in the pieces the kernel sent."""

    stdout: list[str] = attrs.field(factory=list)
    stderr: list[str] = attrs.field(factory=list)


@final
@attrs.frozen
class CodeStdout:
    """Streamed: text the cell wrote to stdout."""

    text: str


@final
@attrs.frozen
class CodeStderr:
    """Streamed: text the cell wrote to stderr."""

    text: str


CodeOutput = CodeStdout | CodeStderr | Result | ExecutionError
"""One item of a streamed execution, in the order the kernel produced them."""


@final
@dataclass_view()
@attrs.define
class Execution(DataclassShaped):
    """The outcome of one cell.

    ``error`` is the cell's exception as data (a failing cell is not an SDK error);
    ``timed_out`` is true when the deadline passed (the kernel was interrupted, so the
    next cell runs at once).
    """

    results: list[Result] = attrs.field(factory=list)
    logs: Logs = attrs.field(factory=Logs)
    error: ExecutionError | None = None
    execution_count: int | None = None
    timed_out: bool = False

    @property
    def text(self) -> str | None:
        """The ``text/plain`` of the main result (the ``repr`` of the last expression)."""
        for result in self.results:
            if result.is_main_result:
                return result.text
        return None

    def add(self, item: CodeOutput) -> None:
        if isinstance(item, CodeStdout):
            self.logs.stdout.append(item.text)
        elif isinstance(item, CodeStderr):
            self.logs.stderr.append(item.text)
        elif isinstance(item, Result):
            self.results.append(item)
        else:
            self.error = item


@final
@attrs.frozen
class CodeContext:
    """A separate kernel with its own state (variables, imports, working directory)."""

    id: str
    language: str = "python"
    cwd: str | None = None
    kernel_name: str = "wrenn"
