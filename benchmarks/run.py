"""Run every benchmark of the project in one go (``python -m nox -s bench``).

Benchmarks never run in the test suite. Each writes one JSON line per figure; this
runner collects them into ``benchmarks/results/latest.jsonl``, prints them and, on a full
run, regenerates ``docs/benchmarks.md`` (``benchmarks/report.py``). Give suite names to
run only those: ``python benchmarks/run.py compare code_cell``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUITES = [
    ("compare", [sys.executable, str(HERE / "compare.py")]),
    ("code_cell", [sys.executable, str(HERE / "code_cell.py"), "--cells", "200"]),
    ("sync_overhead", [sys.executable, str(HERE / "sync_overhead.py")]),
    ("files_cpu", [sys.executable, str(HERE / "files_cpu.py"), "--mib", "256", "--rounds", "5"]),
    ("ws_throughput", [sys.executable, str(HERE / "ws_throughput.py"), "--mib", "256"]),
    ("http_churn", [sys.executable, str(HERE / "http_churn.py"), "--all", "--requests", "4000"]),
    ("server_memory", [sys.executable, str(HERE / "server_memory.py"), "--mib", "1024"]),
    ("startup", [sys.executable, str(HERE / "startup.py"), "--rounds", "15"]),
    ("spawn", [sys.executable, str(HERE / "spawn.py"), "--children", "5", "--rounds", "200"]),
    ("wire", [sys.executable, str(HERE / "wire.py"), "--rounds", "5", "--mib", "256"]),
    ("boot", [sys.executable, str(HERE / "boot.py"), "--rounds", "15"]),
    ("server_start", [sys.executable, str(HERE / "server_start.py"), "--rounds", "15"]),
]


def main() -> None:
    wanted = set(sys.argv[1:])
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    lines: list[str] = []
    for name, cmd in SUITES:
        if wanted and name not in wanted:
            continue
        started = time.perf_counter()
        print(f"== {name}", flush=True)
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            print(result.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"benchmark {name} failed")
        for line in result.stdout.splitlines():
            if line.startswith("{"):
                lines.append(f'{{"suite": "{name}", "result": {line}}}')
                print(line)
        print(f"   ({time.perf_counter() - started:.1f}s)", flush=True)
    (out_dir / "latest.jsonl").write_text("\n".join(lines) + "\n")
    if not wanted:  # a full run regenerates docs/benchmarks.md
        subprocess.run([sys.executable, str(HERE / "report.py")], check=True)


if __name__ == "__main__":
    main()
