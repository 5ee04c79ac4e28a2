"""The ``code-runner-beta`` template: a real Jupyter Server in every capsule (PROTOCOL §14).

Capsules of this template (and snapshots made from them) start Jupyter Server with
ipykernel on port 8888 inside the capsule, as the user ``wrenn-user``, with a random
token per capsule that only the server knows (its port proxy, which requires the team's
key, adds it to every request for port 8888) and no CORS headers, a kernelspec
named ``wrenn`` as the default, and the user's home as the root directory. The capsule is
reported ``running`` only once Jupyter answers ``GET /api/status``.

Jupyter comes from the server's own Python environment (the ``code`` extra installs
``jupyter_server`` and ``ipykernel``). Under full isolation that environment's
site-packages is bind-mounted read-only at :data:`SITE_IN_CAPSULE` and run by the
capsule's ``/usr/bin/python3`` (same minor version required, for compiled wheels);
under reduced isolation the server's interpreter runs it directly, and port 8888 is
mapped by the agent to a free host port so that capsules do not collide.

The ``code`` extra also brings the scientific stack (numpy, pandas, matplotlib, seaborn,
requests), which the kernel imports from the same read-only site-packages: nothing of it
is copied per capsule. matplotlib's font list is built once per server process
(:func:`matplotlib_font_cache`) and written into each capsule's ``~/.cache/matplotlib``,
so a capsule's first chart does not scan the fonts again.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import secrets
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import anyio
import anyio.to_thread
import attrs

from ._agent_client import AgentClient, AgentFailure
from ._inside import JUPYTER

__all__ = [
    "BASH_KERNEL",
    "CHART_MIME",
    "JUPYTER_PORT",
    "KERNEL_NAME",
    "SITE_IN_CAPSULE",
    "TEMPLATE",
    "JupyterSupport",
    "auth_header",
    "launch",
    "matplotlib_font_cache",
    "new_token",
    "wait_until_serving",
]

log = logging.getLogger("wrenn_local.code_runner")

TEMPLATE: Final = "code-runner-beta"
KERNEL_NAME: Final = "wrenn"
JUPYTER_PORT: Final = 8888
SITE_IN_CAPSULE: Final = "/opt/wrenn-python-site"
READY_TIMEOUT: Final = 90.0


@attrs.frozen
class JupyterSupport:
    """Whether this server can run the code-runner template, and with what."""

    site_packages: Path | None
    problem: str | None

    @classmethod
    def detect(cls, capsule_python: str) -> JupyterSupport:
        origins = []
        for name in ("jupyter_server", "ipykernel"):
            spec = importlib.util.find_spec(name)
            if spec is None or spec.origin is None:
                return cls(
                    None,
                    f"{TEMPLATE} needs jupyter_server and ipykernel on the server "
                    "(pip install 'wrenn[local,code]')",
                )
            origins.append(Path(spec.origin).parent.parent)
        if origins[0] != origins[1]:
            return cls(None, "jupyter_server and ipykernel are installed in different places")
        if capsule_python != sys.executable and not _same_minor(capsule_python):
            return cls(
                None,
                f"{capsule_python} is not Python {sys.version_info[0]}.{sys.version_info[1]} "
                "like the server, so the server's Jupyter packages cannot run in capsules",
            )
        return cls(origins[0], None)


def _same_minor(python: str) -> bool:
    import subprocess

    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    return out == str(sys.version_info[:2])


def free_port() -> int:
    """A TCP port free on the host loopback right now (reduced isolation only)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


_FONT_CACHE_LOCK = threading.Lock()
_FONT_CACHE: list[tuple[str, bytes] | None] = []  # empty until built (or found missing)
FONT_CACHE_TIMEOUT: Final = 300.0


def matplotlib_font_cache() -> tuple[str, bytes] | None:
    """matplotlib's font list (file name, content), built once per server process.

    Blocking (run it in a worker thread); later calls return the first result at once.
    None when matplotlib is not installed or the build failed (each capsule then builds
    its own on its first chart). Bundled fonts are stored relative to matplotlib's data
    directory and system fonts by their ``/usr`` paths, which capsules see too; ``HOME``
    is a scratch directory so that fonts of the server's own user are not listed.
    """
    with _FONT_CACHE_LOCK:
        if not _FONT_CACHE:
            _FONT_CACHE.append(_build_font_cache())
        return _FONT_CACHE[0]


def _build_font_cache() -> tuple[str, bytes] | None:
    import subprocess

    if importlib.util.find_spec("matplotlib") is None:
        return None
    log.info("code runner: building matplotlib's font cache (once, for every capsule)...")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wrenn-mpl-") as scratch:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": scratch,
            "MPLCONFIGDIR": scratch,
            "PYTHONNOUSERSITE": "1",
        }
        try:
            subprocess.run(
                [sys.executable, "-c", "import matplotlib.font_manager"],
                env=env,
                capture_output=True,
                timeout=FONT_CACHE_TIMEOUT,
                check=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("code runner: matplotlib's font cache could not be built: %s", exc)
            return None
        built = sorted(Path(scratch).glob("fontlist-*.json"))
        if not built:
            log.warning("code runner: matplotlib wrote no font cache")
            return None
        result = (built[-1].name, built[-1].read_bytes())
    log.info("code runner: matplotlib's font cache built in %.1f s", time.monotonic() - started)
    return result


async def _write(agent: AgentClient, path: str, content: bytes) -> None:
    """Write a file in the capsule as its user; a failure is logged, not raised (the
    capsule works without these files, only slower or with fewer result types)."""
    try:
        async with agent.write_file(path) as upload:
            for at in range(0, len(content), 64 * 1024):
                await upload.send(content[at : at + 64 * 1024])
            await upload.finish()
    except AgentFailure as exc:
        log.warning("code runner: %s could not be written: %s", path, exc)


async def seed_font_cache(agent: AgentClient) -> None:
    """Write the server's matplotlib font list into the capsule user's cache directory."""
    cache = await anyio.to_thread.run_sync(matplotlib_font_cache, abandon_on_cancel=True)
    if cache is not None:
        name, content = cache
        await _write(agent, f"~/.cache/matplotlib/{name}", content)


CHART_MIME: Final = "application/vnd.wrenn.chart+json"
CHARTS_STARTUP_FILE: Final = "~/.ipython/profile_default/startup/50-wrenn-charts.py"
# Run by every kernel at start (an IPython startup file, so in the user's namespace: it
# leaves no name behind). matplotlib figures then carry, beside their image, the chart's
# data as CHART_MIME: {"type": "line" | "scatter" | "bar" | "pie" | "superchart" |
# "unknown", "title", "x_label", "y_label", "elements": [...]} (a superchart's elements
# are charts). Nothing is imported before a figure is shown.
CHARTS_STARTUP: Final = """\
# Written by wrenn_local: charts drawn with matplotlib also come back as typed data
# (MIME type application/vnd.wrenn.chart+json) beside their image.
def _wrenn_register_charts():
    from IPython import get_ipython
    from IPython.core.formatters import BaseFormatter
    from traitlets import ObjectName, Unicode

    shell = get_ipython()
    if shell is None:
        return
    mime = "application/vnd.wrenn.chart+json"

    class ChartFormatter(BaseFormatter):
        format_type = Unicode(mime)
        print_method = ObjectName("_repr_wrenn_chart_")
        _return_type = dict

        # Matched by class name, not registered per type: turning the inline backend on
        # drops every formatter's entry for Figure (IPython's select_figure_formats).
        def __call__(self, obj):
            if not self.enabled:
                return None
            for klass in type(obj).__mro__:
                if klass.__name__ == "Figure" and klass.__module__ == "matplotlib.figure":
                    return self.figure_chart(obj)
            return None

    limit = 5000  # points per series; a longer one is cut (and says so)

    def points(pairs):
        out = []
        for x, y in pairs:
            if len(out) == limit:
                break
            out.append([number(x), number(y)])
        return out

    def number(value):
        try:
            return float(value)
        except (TypeError, ValueError):
            return str(value)

    def text(artist_text):
        return artist_text.get_text() if artist_text is not None else ""

    def one_axes(ax):
        from matplotlib.collections import PathCollection
        from matplotlib.container import BarContainer
        from matplotlib.patches import Wedge

        chart = {
            "type": "unknown",
            "title": ax.get_title() or None,
            "x_label": ax.get_xlabel() or None,
            "y_label": ax.get_ylabel() or None,
            "elements": [],
        }
        wedges = [p for p in ax.patches if isinstance(p, Wedge)]
        bars = [c for c in ax.containers if isinstance(c, BarContainer)]
        scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
        lines = list(ax.get_lines())
        if wedges:
            labels = [t.get_text() for t in ax.texts]
            total = sum(w.theta2 - w.theta1 for w in wedges) or 1.0
            chart["type"] = "pie"
            chart["elements"] = [
                {
                    "label": labels[i] if i < len(labels) else "",
                    "angle": float(w.theta2 - w.theta1),
                    "share": float((w.theta2 - w.theta1) / total),
                    "radius": float(w.r),
                }
                for i, w in enumerate(wedges)
            ]
        elif bars:
            ticks = {
                round(float(t), 6): label.get_text()
                for t, label in zip(ax.get_xticks(), ax.get_xticklabels())
            }
            chart["type"] = "bar"
            for container in bars:
                group = container.get_label()
                group = None if group.startswith("_") else group
                for rect in container.patches:
                    middle = round(float(rect.get_x() + rect.get_width() / 2), 6)
                    chart["elements"].append(
                        {
                            "label": ticks.get(middle, str(middle)),
                            "value": float(rect.get_height()),
                            "group": group,
                        }
                    )
        elif scatters and not lines:
            chart["type"] = "scatter"
            for collection in scatters:
                label = collection.get_label()
                chart["elements"].append(
                    {
                        "label": None if label.startswith("_") else label,
                        "points": points(collection.get_offsets()),
                        "truncated": len(collection.get_offsets()) > limit,
                    }
                )
        elif lines:
            chart["type"] = "line"
            for line in lines:
                label = line.get_label()
                xs, ys = line.get_xdata(), line.get_ydata()
                chart["elements"].append(
                    {
                        "label": None if label.startswith("_") else label,
                        "points": points(zip(xs, ys)),
                        "truncated": len(xs) > limit,
                    }
                )
        return chart

    def figure_chart(figure):
        try:
            axes = [ax for ax in figure.get_axes() if ax.get_visible()]
            if not axes:
                return None
            if len(axes) == 1:
                return one_axes(axes[0])
            title = figure._suptitle.get_text() if figure._suptitle is not None else None
            return {"type": "superchart", "title": title, "elements": [one_axes(ax) for ax in axes]}
        except Exception:  # a chart we cannot read is still shown as an image
            return None

    formatter = ChartFormatter(parent=shell.display_formatter)
    shell.display_formatter.formatters[mime] = formatter
    active = getattr(shell.display_formatter, "active_types", None)
    if isinstance(active, list) and mime not in active:
        active.append(mime)
    formatter.figure_chart = figure_chart


_wrenn_register_charts()
del _wrenn_register_charts
"""


BASH_KERNEL: Final = "bash"
BASH_KERNELSPEC: Final = f"~/.local/share/jupyter/kernels/{BASH_KERNEL}/kernel.json"


def bash_kernelspec(python: str, site: str) -> bytes:
    """The kernelspec of ``bash_kernel`` (in the ``code`` extra): a context made with
    ``create_code_context(kernel="bash")`` runs its cells in bash."""
    spec = {
        "argv": [python, "-m", "bash_kernel", "-f", "{connection_file}"],
        "display_name": "Bash (wrenn)",
        "language": "bash",
        "env": {"PYTHONPATH": site, "PYTHONNOUSERSITE": "1"},
    }
    return json.dumps(spec).encode()


def new_token() -> str:
    """A Jupyter token for one capsule."""
    return secrets.token_urlsafe(32)


def auth_header(token: str) -> tuple[bytes, bytes]:
    """The header that opens Jupyter (the proxy adds it; clients never see the token)."""
    return (b"authorization", b"token " + token.encode())


async def launch(agent: AgentClient, python: str, site: str, port: int, token: str) -> None:
    """Start Jupyter in the capsule as the background process tagged ``jupyter``; it
    reads its token from the environment (never from argv)."""
    await seed_font_cache(agent)
    await _write(agent, CHARTS_STARTUP_FILE, CHARTS_STARTUP.encode())
    if importlib.util.find_spec("bash_kernel") is not None:
        await _write(agent, BASH_KERNELSPEC, bash_kernelspec(python, site))
    source = await anyio.Path(JUPYTER).read_text()
    await agent.exec_background(
        python,
        args=["-c", source, site, str(port)],
        envs={"PYTHONPATH": site, "PYTHONNOUSERSITE": "1", "JUPYTER_TOKEN": token},
        tag="jupyter",
    )


async def wait_until_serving(
    agent: AgentClient,
    token: str,
    *,
    timeout: float = READY_TIMEOUT,
    stopped: Callable[[], bool] = lambda: False,
) -> None:
    """Poll ``GET /api/status`` on port 8888 through the agent until Jupyter answers 200.

    Raises ``TimeoutError`` when it does not within ``timeout`` seconds, and
    ``RuntimeError`` as soon as ``stopped()`` (the sandbox was stopped meanwhile).
    """
    name, value = auth_header(token)
    request = (
        b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        + name
        + b": "
        + value
        + b"\r\n\r\n"
    )
    with anyio.fail_after(timeout):
        while True:
            if stopped():
                raise RuntimeError("the capsule was stopped while its services started")
            try:
                async with agent.connect(JUPYTER_PORT) as relay:
                    await relay.send(request)
                    answer = await relay.receive()
                    if answer is not None and answer.startswith(b"HTTP/1.1 200"):
                        return
            except AgentFailure:
                pass  # not listening yet
            await anyio.sleep(0.1)
