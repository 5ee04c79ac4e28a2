"""``wrenn demo``: a fan-out job over isolated capsules on an embedded local server.

Each capsule gets its own slice of work and a small program, runs it with the capsule's
own Python while its output streams back live, writes a result file at the same path as
every other capsule (isolation keeps them apart), and the file is read back. Every
capsule lives in a scope of one task group: an error or Ctrl-C anywhere destroys them
all, shielded and bounded. On a terminal the progress is a live table; elsewhere (CI
logs) it is one line per event.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

import anyio
import attrs

from .._capsule import AsyncCapsule
from .._client import AsyncWrennClient
from .._exceptions import WrennError
from .._models.streams import StreamStderr, StreamStdout
from . import output

WORKLOAD = r"""
import hashlib, json, os, socket, sys, time
start = time.perf_counter()
job = json.load(open("job.json"))
lo, hi = job["range"]
print(f"{job['name']}: sieving [{lo}, {hi}] in capsule {socket.gethostname()}", flush=True)
sieve = bytearray([1]) * (hi + 1)
sieve[0:2] = b"\0\0"
for i in range(2, int(hi ** 0.5) + 1):
    if sieve[i]:
        sieve[i * i :: i] = bytes(len(range(i * i, hi + 1, i)))
primes = [n for n in range(lo, hi + 1) if sieve[n]]
for step in range(1, 4):
    print(f"{job['name']}: checking part {step}/3", flush=True)
    time.sleep(0.1)
digest = hashlib.sha256(",".join(map(str, primes)).encode()).hexdigest()
result = {
    "job": job["name"], "primes": len(primes), "largest": primes[-1] if primes else None,
    "sha256": digest[:16], "host": socket.gethostname(), "pid": os.getpid(),
    "user": os.environ.get("USER"), "seconds": round(time.perf_counter() - start, 3),
}
json.dump(result, open("result.json", "w"))
print(f"{job['name']}: {len(primes)} primes, result written", flush=True)
"""


@attrs.define
class Row:
    name: str
    capsule_id: str = "-"
    status: str = "pending"
    exit_code: int | None = None
    seconds: float = 0.0
    last_line: str = ""
    detail: str = ""


class Reporter:
    """Live table on a terminal, a line per event elsewhere."""

    HEADERS = ("job", "capsule", "status", "output")

    def __init__(self, out: TextIO, rows: list[Row]) -> None:
        self.rows = rows
        self.out = out
        self.t0 = time.perf_counter()
        self.live: output.LiveView | None = None

    def __enter__(self) -> Reporter:
        self.live = output.live_view(self.out)
        if self.live is not None:
            self.live.update(self.HEADERS, self._cells())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self.HEADERS, self._cells())
            self.live.close()

    def say(self, row: Row | None, text: str) -> None:
        if row is not None:
            row.last_line = text
        if self.live is not None:
            self.live.update(self.HEADERS, self._cells())
        else:
            name = row.name if row else "server"
            self.out.write(f"[{time.perf_counter() - self.t0:6.2f}s] {name:<8} {text}\n")
            self.out.flush()

    def _cells(self) -> list[list[str]]:
        return [[r.name, r.capsule_id, r.status, r.last_line[-60:]] for r in self.rows]


async def _one(client: AsyncWrennClient, row: Row, span: tuple[int, int], report: Reporter) -> None:
    start = time.perf_counter()
    row.status = "creating"
    report.say(row, "creating a capsule")
    try:
        async with client.capsule(metadata={"demo": row.name}) as cap:
            row.capsule_id = cap.capsule_id
            row.status = "running"
            report.say(row, f"capsule {cap.capsule_id} is running")
            await _work(cap, row, span, report)
        report.say(row, "destroyed")
    finally:
        row.seconds = time.perf_counter() - start


async def _work(cap: AsyncCapsule, row: Row, span: tuple[int, int], report: Reporter) -> None:
    await cap.files.write_many(
        {"job.json": json.dumps({"name": row.name, "range": list(span)}), "work.py": WORKLOAD}
    )
    async with cap.commands.stream("python3 work.py") as run:
        async for event in run:
            if isinstance(event, StreamStdout | StreamStderr):
                for line in event.data.splitlines():
                    report.say(row, f"| {line}")
    row.exit_code = run.exit_code
    if run.exit_code != 0:
        raise WrennError(f"the workload exited with {run.exit_code}")
    data: dict[str, Any] = json.loads(await cap.files.read("result.json"))
    row.detail = (
        f"{data['primes']} primes, largest {data['largest']}, sha256 {data['sha256']}, "
        f"user {data['user']}"
    )
    row.status = "ok"


async def run_demo(*, capsules: int = 4, out: TextIO = sys.stdout) -> int:
    """Start the embedded server, fan the job out, print a summary; 0 when all succeeded."""
    try:
        import wrenn_local
    except ImportError:
        out.write("the demo needs the local server: pip install 'wrenn[local]'\n")
        return 2
    rows = [Row(name=f"job-{i + 1}") for i in range(capsules)]
    started = time.perf_counter()
    async with (
        wrenn_local.serve() as server,
        AsyncWrennClient(api_key=server.api_key, base_url=server.base_url) as client,
    ):
        with Reporter(out, rows) as report:
            report.say(None, f"local server {server.base_url} (isolation: {server.isolation})")
            for reason in server.isolation_reasons:
                report.say(None, f"reduced isolation: {reason}")
            await _fan_out(client, rows, report)
        left = [c for c in await client.capsules.list() if c.status != "stopping"]
    _summary(rows, out, time.perf_counter() - started, len(left))
    ok = sum(1 for r in rows if r.status == "ok")
    return 0 if ok == len(rows) and not left else 1


async def _fan_out(client: AsyncWrennClient, rows: list[Row], report: Reporter) -> None:
    """One capsule per row, all at once, in one task group."""
    width = 200_000

    async def guarded(row: Row, span: tuple[int, int]) -> None:
        try:
            await _one(client, row, span, report)
        except WrennError as exc:
            row.status = "failed"
            row.detail = str(exc)
            report.say(row, f"failed: {exc}")

    async with anyio.create_task_group() as tg:
        for i, row in enumerate(rows):
            tg.start_soon(guarded, row, (i * width, (i + 1) * width))


def _summary(rows: list[Row], out: TextIO, seconds: float, left: int) -> None:
    cells = [
        [
            r.name,
            r.capsule_id,
            r.status,
            "-" if r.exit_code is None else str(r.exit_code),
            f"{r.seconds:.2f}",
            r.detail,
        ]
        for r in rows
    ]
    headers = ("job", "capsule", "status", "exit", "seconds", "result")
    output.print_table(out, headers, cells, title="summary")
    ok = sum(1 for r in rows if r.status == "ok")
    out.write(
        f"{ok}/{len(rows)} capsules succeeded in {seconds:.2f}s; "
        f"{left} capsules left on the server.\n"
    )
