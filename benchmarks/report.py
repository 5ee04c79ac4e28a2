"""Render ``benchmarks/results/latest.jsonl`` into ``docs/benchmarks.md`` and
``docs/benchmarks.png``: every number comes from the results file, none is typed by hand.

Run by ``benchmarks/run.py`` after the suites (``python -m nox -s bench``); can be re-run
alone: ``python benchmarks/report.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from collections import defaultdict
from importlib import metadata
from pathlib import Path
from typing import Any

import targets

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "latest.jsonl"
DOC = ROOT / "docs" / "benchmarks.md"
CHART = ROOT / "docs" / "benchmarks.png"

INTRO = {
    "compare:exec": 'Serial `commands.run("true")` round trips (ms); the floor is a bare '
    "httpx POST of the same request.",
    "compare:fanout": "N capsules at once, 10 commands each (create, run, destroy): ours "
    "through `client.map`, the official SDK through `asyncio.gather`, in interleaved "
    "rounds (the order rotating, the machine let settle before each run; each row is the "
    "client's median round, `vs_official_async_min`/`_max` the spread of its per-round "
    "ratio). The server is the default one: it keeps booted spares of a template for as "
    "many capsules as were in use at once, refilled after each run while the machine "
    "settles, and one unmeasured run before each size's rounds earns them, so every "
    "measured run (either client's) claims booted capsules as a program that fans out "
    "again does. Both drive the same "
    "server, so all but the client costs them alike: `client_cpu_s` is the client's CPU "
    "during the fan-out, `others_cpu_s` the rest of the machine's (server, boots, agents, "
    "pasta, the commands), and `ceiling_vs_official_async` the ratio ours would reach if "
    "our client cost nothing and the rest ran perfectly on every core (official wall / "
    "(others / cores)): an upper bound of what any client can do on this machine.",
    "compare:stream": "256 MiB of stdout through the exec stream, end to end through "
    "wrenn_local; the floor is a `websockets` client speaking the protocol by hand.",
    "compare:files upload": "1 GiB streamed upload (constant memory); the floor is httpx "
    "streaming a hand-built multipart body.",
    "compare:files download": "1 GiB streamed download.",
    "files_cpu:files upload": "Client CPU per GiB of a 256 MiB streamed upload (an "
    "iterable of 1 MiB chunks), interleaved rounds, median and min–max; "
    "`cpu_vs_official_sync` divides by the official sync SDK's CPU in the same round "
    "(issue 20's target: ≤ 1.0 for our async API, ≤ 1.15 for our sync API); `baseline` "
    "is the build in WRENN_BASELINE_PYTHON (e.g. today's main) when set.",
    "files_cpu:files download": "Client CPU per GiB of a 256 MiB streamed download "
    "(1 MiB chunks asked for), measured as the upload above.",
    "compare:scale": "1,000 exec streams open at once over 4 capsules.",
    "compare:import": "`import wrenn` in a fresh interpreter, minus the bare start-up.",
    "code_cell": "A trivial cell (`1 + 1`) through the code runner, serial.",
    "sync_overhead": "What the sync facade adds: per call (timed inside and around the "
    "portal in one go) and per streamed item (batched iteration).",
    "ws_throughput: download": "Our WebSocket client alone against an independent "
    "`websockets` server: 256 MiB in 64 KiB messages; httpx-ws is the official SDK's layer.",
    "ws_throughput: pty_keystroke": "PTY keystroke echo through wrenn_local (one byte in, "
    "its echo out).",
    "http_churn": "Cancellation churn: requests cancelled at random points; connections "
    "leaked or wedged afterwards (the reason for httpx2, docs/design/dependencies.md).",
    "server_memory": "wrenn_local's own memory while 1 GiB goes up and down.",
    "startup:import": "`import wrenn` minus `python -c pass` of the same interpreter, "
    "interleaved rounds (wall and the child's CPU, median and min–max); `baseline` is the "
    "build in WRENN_BASELINE_PYTHON (e.g. today's main) when set.",
    "startup:wrenn --help": "`wrenn --help` minus `python -c pass` (target: 60 ms).",
    "startup:wrenn --version": "`wrenn --version` minus `python -c pass`.",
    "startup:pytest start-up added by the plugin": "What the auto-loaded pytest plugin adds "
    "to every pytest run: `import pytest, wrenn.pytest_plugin` minus `import pytest` "
    "(target: 20 ms).",
    "spawn:agent spawn": "The agent starting `/bin/true` as the capsule user, on the host as root "
    "(agent-level; ms per spawn): through the spawner, the direct path it replaces, and a "
    "bare vfork spawn (the floor); start = request until the child runs, round = until its "
    "exit is known, cpu = the agent's (plus the spawner's); `baseline` is the build in "
    "WRENN_BASELINE_PYTHON (today's main).",
    "spawn:exec true over HTTP (as the user)": '`POST /exec {"cmd": "true"}` with raw '
    "httpx against one server per build (ours, and today's main as `baseline`), interleaved "
    "rounds; p50 and p90 in ms.",
    "wire:exec": 'Serial `commands.run("true")`, interleaved rounds, each client in a fresh '
    "process: round-trip p50 against a bare httpx POST (target 1.05x) and the client's CPU "
    "per call against the official sync SDK (target 1.0x); median and min-max of the rounds.",
    "wire:stream": "Exec-stream stdout, interleaved rounds: client CPU per GiB with binary "
    "output frames (the default against wrenn_local) and on the JSON wire, against the "
    "official sync SDK (target 0.3x).",
    "boot:create": "Capsule create→running, serial (POST until the server's event stream "
    "pushes `running`: no polling load); the floor is "
    "a bare `bwrap … python3 -I -c pass` (same bwrap, own pid/ipc/uts/net namespaces, "
    "read-only root) timed in the same interleaved rounds; `baseline` is today's main's own "
    "server (WRENN_BASELINE_PYTHON). `ours` is the default server (warm spares: a create "
    "it has seen repeated claims a booted capsule), `ours cold` the same build with "
    "`--spares 0` (every create a cold boot; each joins a ready network, a network "
    "namespace made, filtered and connected ahead), `ours cold, own network` with "
    "`--spares 0 --ready-networks 0` (each boot makes its network on its critical path). "
    "Target: p50 ≤ 3× the floor.",
    "server_start:server start": "`async with wrenn_local.serve()` entered and left with "
    "no capsule, in one process, interleaved rounds: the default server (its base "
    "template, a filtered copy of the host's `/etc`, made once per content of `/etc` and "
    "shared by the user's servers, wrenn_local/_shared_base.py) against one that makes "
    "its own copy at every start, as every server did before; `cpu` counts the worker "
    "threads the copy runs in.",
    "boot:phases": "Where one of `ours cold`'s boots goes: ms from the sandbox's start to "
    "each phase (medians of the serial rounds; the server's WRENN_LOCAL_BOOT_TRACE; the "
    "network phases only for boots that made their own network).",
    "boot:concurrent": "32 creates at once, wall until the last runs; ours, ours cold and "
    "the baseline's server alternately. `ours` is the default server: after its first "
    "round it has spares for 32 capsules in use at once, so its later rounds claim "
    "booted capsules; `ours cold` (`--spares 0`) boots every one. Target: ours cold ≤ "
    "0.5× the baseline.",
}


def load() -> list[dict[str, Any]]:
    lines = RESULTS.read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def group(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in results:
        row = dict(entry["result"])
        key = entry["suite"]
        if "figure" in row:
            key = f"{key}:{row.pop('figure')}"
        row.pop("samples", None)
        row.pop("latencies", None)
        for sub, rows in flatten(row).items():
            out[f"{key}: {sub}" if sub else key].extend(rows)
    return out


def flatten(row: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """A result whose values are tables of their own ({"download": {"client": {...}}})
    becomes one table per such value, a row per inner key; nested dicts left in a row
    become dotted columns."""
    nested = {
        k: v
        for k, v in row.items()
        if isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values())
    }
    plain = {k: v for k, v in row.items() if k not in nested}
    if not nested:
        return {"": [_dotted(plain)]}
    return {
        name: [
            {"client": inner, **_dotted(values), **_dotted(plain)}
            for inner, values in table.items()
        ]
        for name, table in nested.items()
    }


def _dotted(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, dict):
            out.update(_dotted(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def table(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns and not isinstance(row[c], list | dict)]
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |\n" for row in rows)
    return head + body


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def machine() -> list[str]:
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    versions = []
    for name in ("wrenn", "anyio", "httpx2", "wsproto", "trio", "hypercorn", "starlette"):
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    official = os.environ.get("WRENN_OFFICIAL_PYTHON")
    if official:
        found = subprocess.run(
            [official, "-c", "from importlib.metadata import version; print(version('wrenn'))"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if found:
            versions.append(f"official wrenn {found}")
    return [
        f"- Date: {dt.datetime.fromtimestamp(RESULTS.stat().st_mtime, dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {model}, {os.cpu_count()} cores, {mem_kib / 1024 / 1024:.0f} GiB, "
        f"Linux {platform.release()}",
        f"- Python {platform.python_version()}; {', '.join(versions)}",
    ]


def chart(groups: dict[str, list[dict[str, Any]]]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = [
        ("compare:exec", "p50_ms", "exec round trip, p50 (ms, lower is better)"),
        ("compare:stream", "mib_per_s", "exec stream, MiB/s (higher is better)"),
        ("compare:files upload", "mib_per_s", "1 GiB upload, MiB/s"),
        ("compare:files download", "mib_per_s", "1 GiB download, MiB/s"),
        ("code_cell", "p50_ms", "trivial cell, p50 (ms)"),
    ]
    panels = [p for p in panels if p[0] in groups]
    fanout = [r for r in groups.get("compare:fanout", []) if r.get("capsules") == 64]
    count = len(panels) + (1 if fanout else 0)
    if not count:
        return False
    fig, axes = plt.subplots(count, 1, figsize=(8, 2.2 * count))
    axes = [axes] if count == 1 else list(axes)
    for ax, (key, field, title) in zip(axes, panels, strict=False):
        rows = [r for r in groups[key] if isinstance(r.get(field), int | float)]
        ax.barh([r["client"] for r in rows], [r[field] for r in rows], color="#4a7ab5")
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.invert_yaxis()
    if fanout:
        ax = axes[-1]
        ax.barh(
            [r["client"] for r in fanout], [r["commands_per_s"] for r in fanout], color="#6a9a4a"
        )
        ax.set_title("fan-out, 64 capsules x 10 commands: commands/s", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(CHART, dpi=110)
    plt.close(fig)
    return True


def main() -> None:
    groups = group(load())
    drew = chart(groups)
    parts = [
        "# Benchmarks\n",
        "Generated by `python -m nox -s bench` (benchmarks/run.py, then benchmarks/report.py) "
        "from `benchmarks/results/latest.jsonl`; nothing here is typed by hand. Every figure "
        "is measured side by side with its baseline in the same run, against one local "
        "server, each client in a fresh process. Ratios compare to the row named in the "
        "column.\n",
        "\n".join(machine()) + "\n",
    ]
    parts += [
        "## Targets (issue 20)\n",
        "Each target against its floor or peer, measured in the same run. "
        + targets.summary(groups)
        + "\n",
        table(targets.rows(groups)),
    ]
    if drew:
        parts.append(f"![benchmarks]({CHART.name})\n")
    order = [k for k in INTRO if k in groups] + sorted(k for k in groups if k not in INTRO)
    for key in order:
        title = key.replace("compare:", "").replace("_", " ")
        parts.append(f"## {title}\n")
        if key in INTRO:
            parts.append(INTRO[key] + "\n")
        parts.append(table(groups[key]))
    DOC.write_text("\n".join(parts))
    print(f"wrote {DOC.relative_to(ROOT)}" + (f" and {CHART.relative_to(ROOT)}" if drew else ""))


if __name__ == "__main__":
    sys.exit(main())
