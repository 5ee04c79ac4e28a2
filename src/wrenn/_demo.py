"""``python -m wrenn demo``: a fan-out job over isolated capsules on the embedded server.

Each capsule gets its own input (a script and a slice of work), runs it with the
capsule's own Python, writes a result file at the same path as every other capsule
(isolation keeps them apart), and the result is read back. Every capsule is created
inside one task group and destroyed in a shielded, bounded clean-up, so an error or
Ctrl-C anywhere leaves nothing running.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

import anyio
import attrs

from ._client import AsyncWrennClient
from ._exceptions import WrennError
from ._models import CapsuleStatus

WORKLOAD = r"""
import hashlib, json, os, socket, sys, time
start = time.perf_counter()
job = json.load(open("job.json"))
lo, hi = job["range"]
sieve = bytearray([1]) * (hi + 1)
sieve[0:2] = b"\0\0"
for i in range(2, int(hi ** 0.5) + 1):
    if sieve[i]:
        sieve[i * i :: i] = bytes(len(range(i * i, hi + 1, i)))
primes = [n for n in range(lo, hi + 1) if sieve[n]]
digest = hashlib.sha256(",".join(map(str, primes)).encode()).hexdigest()
result = {
    "job": job["name"], "primes": len(primes), "largest": primes[-1] if primes else None,
    "sha256": digest[:16], "host": socket.gethostname(), "pid": os.getpid(),
    "user": os.environ.get("USER"), "seconds": round(time.perf_counter() - start, 3),
}
json.dump(result, open("result.json", "w"))
print(f"{job['name']}: {len(primes)} primes in [{lo}, {hi}]")
"""


@attrs.define
class Row:
    name: str
    capsule_id: str = "-"
    status: str = "pending"
    exit_code: int | None = None
    seconds: float = 0.0
    detail: str = ""


class Progress:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.t0 = time.perf_counter()

    def say(self, name: str, text: str) -> None:
        self.out.write(f"[{time.perf_counter() - self.t0:6.2f}s] {name:<8} {text}\n")
        self.out.flush()


async def _until_status(client: AsyncWrennClient, capsule_id: str, wanted: CapsuleStatus) -> None:
    """Poll the server (it has no wait API) until the capsule reaches ``wanted``."""
    while True:
        status = (await client.capsules.get(capsule_id)).status
        if status is wanted:
            return
        if status.is_terminal:
            raise WrennError(f"capsule {capsule_id} ended up {status}, not {wanted}")
        await anyio.sleep(0.05)


async def _one(
    client: AsyncWrennClient, row: Row, span: tuple[int, int], progress: Progress
) -> None:
    start = time.perf_counter()
    capsule = await client.capsules.create(metadata={"demo": row.name})
    row.capsule_id = capsule.id
    try:
        progress.say(row.name, f"created {capsule.id} ({capsule.status})")
        with anyio.fail_after(60):
            await _until_status(client, capsule.id, CapsuleStatus.RUNNING)
        progress.say(row.name, "running")
        job = {"name": row.name, "range": list(span)}
        await client.files.write(capsule.id, "job.json", json.dumps(job))
        await client.files.write(capsule.id, "work.py", WORKLOAD)
        result = await client.processes.run(capsule.id, "python3", args=["work.py"])
        row.exit_code = result.exit_code
        for line in result.stdout.splitlines():
            progress.say(row.name, f"| {line}")
        if result.exit_code != 0:
            raise WrennError(f"workload failed: {result.stderr.strip()[-200:]}")
        data: dict[str, Any] = json.loads(await client.files.read(capsule.id, "result.json"))
        row.detail = (
            f"{data['primes']} primes, largest {data['largest']}, sha256 {data['sha256']}, "
            f"host {data['host'][:12]}, user {data['user']}"
        )
        row.status = "ok"
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(15):
            await client.capsules.destroy(row.capsule_id)
            await _until_status(client, row.capsule_id, CapsuleStatus.STOPPED)
            progress.say(row.name, "destroyed")
        row.seconds = time.perf_counter() - start


async def run_demo(*, capsules: int = 4, out: TextIO = sys.stdout) -> int:
    """Start the embedded server, fan the job out, print a summary; 0 when all succeeded."""
    try:
        import wrenn_local
    except ImportError:
        out.write("the demo needs the local server: pip install 'wrenn[local]'\n")
        return 2
    progress = Progress(out)
    async with wrenn_local.serve() as server:
        progress.say("server", f"{server.base_url} (isolation: {server.isolation})")
        for reason in server.isolation_reasons:
            progress.say("server", f"reduced isolation: {reason}")
        rows = [Row(name=f"job-{i + 1}") for i in range(capsules)]
        width = 200_000
        async with AsyncWrennClient(api_key=server.api_key, base_url=server.base_url) as client:

            async def guarded(row: Row, span: tuple[int, int]) -> None:
                try:
                    await _one(client, row, span, progress)
                except WrennError as exc:
                    row.status = "failed"
                    row.detail = str(exc)
                    progress.say(row.name, f"failed: {exc}")

            async with anyio.create_task_group() as tg:
                for i, row in enumerate(rows):
                    tg.start_soon(guarded, row, (i * width, (i + 1) * width))
            left = await client.capsules.list()
    _table(rows, out)
    ok = sum(1 for r in rows if r.status == "ok")
    out.write(
        f"\n{ok}/{len(rows)} capsules succeeded in {time.perf_counter() - progress.t0:.2f}s;"
        f" {len(left)} capsules left on the server.\n"
    )
    return 0 if ok == len(rows) and not left else 1


def _table(rows: list[Row], out: TextIO) -> None:
    header = ("job", "capsule", "status", "exit", "seconds", "result")
    lines = [header] + [
        (
            r.name,
            r.capsule_id,
            r.status,
            "-" if r.exit_code is None else str(r.exit_code),
            f"{r.seconds:.2f}",
            r.detail,
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out.write("\n")
    for n, line in enumerate(lines):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(line[:-1])]
        out.write("  ".join([*cells, line[-1]]).rstrip() + "\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "  " + "-" * 6 + "\n")
