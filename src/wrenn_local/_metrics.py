"""Resource samples of a capsule, at three resolutions (PROTOCOL §5.8).

Samples arrive every second; the fine ring keeps 10 minutes of them, the medium ring
30-second averages for 2 hours and the coarse ring 5-minute averages for 24 hours.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final

import attrs

__all__ = ["RANGES", "MetricSeries", "Sample"]

RANGES: Final = {
    "5m": 300,
    "10m": 600,
    "1h": 3600,
    "2h": 7200,
    "6h": 21600,
    "12h": 43200,
    "24h": 86400,
}


@attrs.frozen
class Sample:
    t: float
    cpu_pct: float
    mem_bytes: int
    disk_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "timestamp_unix": int(self.t),
            "cpu_pct": self.cpu_pct,
            "mem_bytes": self.mem_bytes,
            "disk_bytes": self.disk_bytes,
        }


class _Tier:
    def __init__(self, width: float, keep: int) -> None:
        self.width = width
        self.points: deque[Sample] = deque(maxlen=keep)
        self._bucket: list[Sample] = []

    def add(self, sample: Sample) -> None:
        if self._bucket and sample.t - self._bucket[0].t >= self.width:
            self._flush()
        self._bucket.append(sample)

    def _flush(self) -> None:
        n = len(self._bucket)
        self.points.append(
            Sample(
                t=self._bucket[0].t,
                cpu_pct=round(sum(s.cpu_pct for s in self._bucket) / n, 2),
                mem_bytes=sum(s.mem_bytes for s in self._bucket) // n,
                disk_bytes=self._bucket[-1].disk_bytes,
            )
        )
        self._bucket = []


class MetricSeries:
    def __init__(self) -> None:
        self.fine: deque[Sample] = deque(maxlen=600)
        self.medium = _Tier(30, 240)
        self.coarse = _Tier(300, 288)

    def add(self, sample: Sample) -> None:
        self.fine.append(sample)
        self.medium.add(sample)
        self.coarse.add(sample)

    def window(self, range_name: str, now: float) -> list[dict[str, Any]]:
        span = RANGES[range_name]
        if span <= 600:
            source = list(self.fine)
        elif span <= 7200:
            source = list(self.medium.points) or list(self.fine)
        else:
            source = list(self.coarse.points) or list(self.medium.points) or list(self.fine)
        return [s.to_json() for s in source if s.t >= now - span]
