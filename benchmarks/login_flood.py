"""What a flood of log-ins costs the other users of a local server.

A wrenn_local server in a process of its own (sign-up allowed); one account; then rounds
of N concurrent log-ins with a wrong password while a second client asks ``/health`` every
20 ms. PBKDF2 (~0.1 s each) runs in worker threads, two at once, and log-ins are throttled
per address, so ``/health`` should wait about as long as it does at rest.

Prints JSON: ``/health`` latency at rest (the floor) and during the floods (p50, p99, max,
in ms), the p99 as a ratio to the floor's p99, and how the log-ins were answered.

Run: python benchmarks/login_flood.py --logins 60 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter

import anyio
import httpx

from _common import local_server


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


async def probe_health(probe: httpx.AsyncClient, samples: list[float], count: int) -> None:
    for _ in range(count):
        started = anyio.current_time()
        (await probe.get("/health")).raise_for_status()
        samples.append(anyio.current_time() - started)
        await anyio.sleep(0.02)


async def measure(base: str, logins: int, rounds: int) -> dict[str, object]:
    body = {"email": "flood@example.com", "password": "long enough", "name": "F"}
    async with (
        httpx.AsyncClient(base_url=base, timeout=60) as http,
        httpx.AsyncClient(base_url=base, timeout=60) as probe,
    ):
        (await http.post("/v1/auth/signup", json=body)).raise_for_status()
        rest: list[float] = []
        await probe_health(probe, rest, 100)
        flood: list[float] = []
        answers: Counter[int] = Counter()

        async def login() -> None:
            resp = await http.post("/v1/auth/login", json={**body, "password": "wrong"})
            answers[resp.status_code] += 1

        for _ in range(rounds):
            async with anyio.create_task_group() as tg:
                for _ in range(logins):
                    tg.start_soon(login)
                tg.start_soon(probe_health, probe, flood, 20)
            await anyio.sleep(1.2)  # the throttle's budget refills between rounds
    at_rest, during = percentiles(rest), percentiles(flood)
    return {
        "logins_per_round": logins,
        "rounds": rounds,
        "health_at_rest": at_rest,
        "health_during_flood": during,
        "p99_ratio_to_rest": round(during["p99_ms"] / at_rest["p99_ms"], 2),
        "login_answers": dict(sorted(answers.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--logins", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with local_server("--allow-signup") as (base, _key, _pid):
        print(json.dumps(anyio.run(measure, base, args.logins, args.rounds)))


if __name__ == "__main__":
    main()
