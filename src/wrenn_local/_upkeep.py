"""Background upkeep of the capsules, run in the server's task group.

* :func:`reaper`: pauses a running capsule idle for longer than its ``timeout_sec``
  (PROTOCOL §5.3, the TTL).
* :func:`sampler`: records each live capsule's CPU, memory and disk (§5.8 metrics) and
  the team-wide counts behind stats and usage.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import deque

import anyio

from ._capsules import CapsuleManager
from ._metrics import Sample

__all__ = ["reaper", "sampler"]


async def reaper(capsules: CapsuleManager) -> None:
    """Pause running capsules whose inactivity exceeded their ``timeout_sec``."""
    while True:
        await anyio.sleep(capsules.options.reaper_interval)
        now = time.monotonic()
        for record in list(capsules.capsules.values()):
            if (
                record.status == "running"
                and record.timeout_sec > 0
                and now - record.last_active_mono > record.timeout_sec
            ):
                capsules.expire(record)


async def sampler(capsules: CapsuleManager) -> None:
    """Sample CPU, memory and disk of live capsules; keep team-wide counts."""
    while True:
        await anyio.sleep(capsules.options.sample_interval)
        now = time.time()
        mono = time.monotonic()
        per_team: dict[str, list[int]] = {}
        for record in list(capsules.capsules.values()):
            sandbox = record.sandbox
            if sandbox is None or record.status not in ("running", "paused", "snapshotting"):
                continue
            if mono - record.disk_cache[0] > 5:
                disk = await anyio.to_thread.run_sync(sandbox.disk_bytes)
                record.disk_cache = (mono, disk)
            if record.status == "paused":
                continue  # paused capsules keep their stored samples
            record.metrics.add(
                Sample(
                    t=now,
                    cpu_pct=sandbox.cpu_percent(mono, record.vcpus),
                    mem_bytes=sandbox.memory_bytes(),
                    disk_bytes=record.disk_cache[1],
                )
            )
            counts = per_team.setdefault(record.team_id, [0, 0, 0])
            counts[0] += 1
            counts[1] += record.vcpus
            counts[2] += record.memory_mb
            day = dt.datetime.fromtimestamp(now, dt.UTC).date()
            usage = capsules.usage.setdefault((record.team_id, day), [0.0, 0.0])
            minutes = capsules.options.sample_interval / 60
            usage[0] += record.vcpus * minutes
            usage[1] += record.memory_mb * minutes
        for team in set(per_team) | set(capsules.team_stats):
            running, vcpus, memory = per_team.get(team, [0, 0, 0])
            series = capsules.team_stats.setdefault(team, deque(maxlen=30 * 24 * 60))
            if (
                not series
                or now - series[-1][0] >= 60
                or series[-1][1:] != (running, vcpus, memory)
            ):
                series.append((now, running, vcpus, memory))
