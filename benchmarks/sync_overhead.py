"""Cost of the sync facade over the async API, side by side in one run.

* per call: `cap.get_info()` (one HTTP round trip to wrenn_local) through the sync API vs
  the async API (separate runs, so machine drift shows up in the difference); the same
  call timed inside the portal and around it in one go (`facade_overhead_*`: exactly
  what the facade adds); and a bare portal crossing (an async no-op called from sync);
* per item: the facade's batched iteration over 200,000 items already received (what a
  fast stream looks like to the consumer) vs iterating them in async code; plus one real
  exec stream through both, for reference.
Run: python benchmarks/sync_overhead.py
"""

from __future__ import annotations

import json
import statistics
import time

import anyio

import wrenn_local
from wrenn import AsyncWrennClient, WrennClient
from wrenn._sync.portal import PortalRunner

CALLS = 300
SEQ = 200_000


def main() -> None:
    with wrenn_local.server_process() as env:
        print(json.dumps(measure(env["WRENN_BASE_URL"], env["WRENN_API_KEY"])))


def measure(base_url: str, api_key: str) -> dict[str, object]:
    runner = PortalRunner()

    async def noop() -> None:
        return None

    crossings = []
    for _ in range(2000):
        t0 = time.perf_counter()
        runner.call(noop)
        crossings.append(time.perf_counter() - t0)
    per_item_sync, per_item_async = items_cost(runner)
    runner.close()

    sync_calls: list[float] = []
    facade_overheads: list[float] = []
    inner_calls: list[float] = []
    sync_events = 0
    with WrennClient(api_key=api_key, base_url=base_url) as client, client.capsule() as cap:
        acap = cap._async

        async def timed_inside() -> float:
            t0 = time.perf_counter()
            await acap.get_info()
            return time.perf_counter() - t0

        for _ in range(CALLS):
            t0 = time.perf_counter()
            cap.get_info()
            sync_calls.append(time.perf_counter() - t0)
            # the same call timed inside the portal and around it, in one go: the
            # difference is exactly what the facade adds, free of run-to-run drift
            t0 = time.perf_counter()
            inner = client._runner.call(timed_inside)
            facade_overheads.append(time.perf_counter() - t0 - inner)
            inner_calls.append(inner)
        t0 = time.perf_counter()
        for _ in cap.commands.stream(f"seq 1 {SEQ}"):
            sync_events += 1
        sync_stream = time.perf_counter() - t0

    async def async_side() -> tuple[list[float], float, int]:
        calls: list[float] = []
        events = 0
        async with (
            AsyncWrennClient(api_key=api_key, base_url=base_url) as client,
            client.capsule() as cap,
        ):
            for _ in range(CALLS):
                t0 = time.perf_counter()
                await cap.get_info()
                calls.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            async with cap.commands.stream(f"seq 1 {SEQ}") as run:
                async for _ in run:
                    events += 1
            return calls, time.perf_counter() - t0, events

    async_calls, async_stream, async_events = anyio.run(async_side)
    sync_median = statistics.median(sync_calls)
    async_median = statistics.median(async_calls)
    return {
        "portal_crossing_us": round(statistics.median(crossings) * 1e6, 1),
        "call_sync_us": round(sync_median * 1e6, 1),
        "call_async_us": round(async_median * 1e6, 1),
        "call_overhead_us": round((sync_median - async_median) * 1e6, 1),
        "call_inside_portal_us": round(statistics.median(inner_calls) * 1e6, 1),
        "facade_overhead_p50_us": round(statistics.median(facade_overheads) * 1e6, 1),
        "facade_overhead_p90_us": round(statistics.quantiles(facade_overheads, n=10)[-1] * 1e6, 1),
        "stream_events_sync": sync_events,
        "stream_events_async": async_events,
        "per_event_sync_us": round(sync_stream / sync_events * 1e6, 2),
        "per_event_async_us": round(async_stream / async_events * 1e6, 2),
        "per_item_sync_us": round(per_item_sync * 1e6, 3),
        "per_item_async_us": round(per_item_async * 1e6, 3),
        "per_item_overhead_us": round((per_item_sync - per_item_async) * 1e6, 3),
    }


class Ready:
    """N items that are all available at once, like a stream's received queue."""

    def __init__(self, n: int) -> None:
        self.items = list(range(n))
        self.pos = 0

    def __aiter__(self) -> Ready:
        return self

    async def __anext__(self) -> int:
        if self.pos >= len(self.items):
            raise StopAsyncIteration
        self.pos += 1
        return self.items[self.pos - 1]

    def take_ready(self, limit: int) -> list[int]:
        chunk = self.items[self.pos : self.pos + limit]
        self.pos += len(chunk)
        return chunk


def items_cost(runner: PortalRunner, n: int = 200_000) -> tuple[float, float]:
    async def make() -> Ready:
        return Ready(n)

    source = runner.call(make)
    t0 = time.perf_counter()
    count = sum(1 for _ in runner.iterate(source))
    sync_cost = (time.perf_counter() - t0) / count

    async def native() -> float:
        ready = Ready(n)
        t0 = time.perf_counter()
        total = 0
        async for _ in ready:
            total += 1
        return (time.perf_counter() - t0) / total

    return sync_cost, anyio.run(native)


if __name__ == "__main__":
    main()
