"""Start-up: what a user waits for before anything happens, against its floor.

Interleaved rounds (each round runs every command once, fresh process each time), so a
busy machine slows every row alike:
  help     ``wrenn --help`` and ``wrenn --version``, minus ``python -c pass``
  pytest   what the plugin (installed, so auto-loaded by every pytest run) adds:
           ``import pytest, wrenn.pytest_plugin`` minus ``import pytest`` (a whole pytest
           run varies by more than this between runs)
  import   ``import wrenn`` minus ``python -c pass`` of the same interpreter: ours, the
           official SDK (``--official-python``) and a baseline build (``--baseline-python``,
           e.g. today's main) when given
Prints one JSON line per figure: the median in ms, its spread (min–max over rounds) and
the ratio to the row named in ``vs``.
Run: python benchmarks/startup.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# as installed (pip compiles bytecode): the warm-up run may write what an editable install
# lacks, whatever the caller's environment says
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: list[str], cwd: str) -> tuple[float, float]:
    """Wall seconds, and CPU seconds of the child (steadier on a busy machine)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(
        cmd, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


def commands(python: str) -> dict[str, list[str]]:
    script = Path(python).parent / "wrenn"
    wrenn = [str(script)] if script.exists() else [python, "-m", "wrenn"]
    return {
        "pass": [python, "-c", "pass"],
        "import": [python, "-c", "import wrenn"],
        "help": [*wrenn, "--help"],
        "version": [*wrenn, "--version"],
        "pytest": [python, "-c", "import pytest, wrenn.pytest_plugin"],
        "pytest_without": [python, "-c", "import pytest"],
    }


def emit(figure: str, client: str, added: tuple[list[float], list[float]], **extra: Any) -> float:
    ms = [x * 1000 for x in added[0]]
    cpu_ms = [x * 1000 for x in added[1]]
    median = statistics.median(ms)
    row = {
        "figure": figure,
        "client": client,
        "ms": round(median, 1),
        "spread_ms": f"{min(ms):.1f}–{max(ms):.1f}",
        "cpu_ms": round(statistics.median(cpu_ms), 1),
        "cpu_spread_ms": f"{min(cpu_ms):.1f}–{max(cpu_ms):.1f}",
        **extra,
    }
    print(json.dumps(row), flush=True)
    return median


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--official-python", default=os.environ.get("WRENN_OFFICIAL_PYTHON"))
    parser.add_argument("--baseline-python", default=os.environ.get("WRENN_BASELINE_PYTHON"))
    args = parser.parse_args()
    pythons = {"ours": sys.executable}
    if args.baseline_python:
        pythons["baseline"] = args.baseline_python
    with tempfile.TemporaryDirectory() as empty:
        plans = {name: commands(python) for name, python in pythons.items()}
        if args.official_python:
            plans["official"] = {
                "pass": [args.official_python, "-c", "pass"],
                "import": [args.official_python, "-c", "import wrenn"],
            }
        runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for plan in plans.values():  # warm the caches (.pyc, page cache) once
            for cmd in plan.values():
                timed(cmd, empty)
        for _ in range(args.rounds):
            for name, plan in plans.items():
                for what, cmd in plan.items():
                    runs.setdefault((name, what), []).append(timed(cmd, empty))

    def added(name: str, what: str, floor: str = "pass") -> tuple[list[float], list[float]]:
        pairs = list(zip(runs[(name, what)], runs[(name, floor)], strict=True))
        return [a[0] - b[0] for a, b in pairs], [a[1] - b[1] for a, b in pairs]

    def median_ms(name: str, what: str) -> float:
        return round(statistics.median(wall for wall, _ in runs[(name, what)]) * 1000, 1)

    floors = {name: median_ms(name, "pass") for name in plans}
    imports = {name: emit("import", name, added(name, "import")) for name in plans}
    if "official" in imports:
        for name in pythons:
            print(
                json.dumps(
                    {
                        "figure": "import",
                        "client": f"{name} vs official",
                        "ratio": round(imports[name] / max(imports["official"], 0.1), 2),
                    }
                )
            )
    for name in pythons:
        for what in ("help", "version"):
            emit(
                f"wrenn --{what}",
                name,
                added(name, what),
                python_c_pass_ms=floors[name],
            )
        emit(
            "pytest start-up added by the plugin",
            name,
            added(name, "pytest", "pytest_without"),
            import_pytest_ms=median_ms(name, "pytest_without"),
        )


if __name__ == "__main__":
    main()
