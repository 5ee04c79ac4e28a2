"""Create→running of a wrenn_local capsule with and without outbound network (issue 18).

Run as root on a host with full isolation and pasta:
    python benchmarks/local_network_boot.py [rounds]
Capsules with and without network are created alternately, one at a time, so load on
the machine falls on both alike; prints the median and the fastest of each. Every create
is a cold boot that makes its own network: no warm spares, no ready networks (with
either, a repeated create would claim what was made ahead; benchmarks/boot.py measures
those).
"""

from __future__ import annotations

import statistics
import sys
import time

import anyio
import httpx

import wrenn_local
from wrenn_local import ServerOptions


async def boot(http: httpx.AsyncClient, network: bool) -> float:
    start = time.perf_counter()
    cid = (await http.post("/v1/capsules", json={"network": network})).json()["id"]
    while (await http.get(f"/v1/capsules/{cid}")).json()["status"] != "running":
        await anyio.sleep(0.005)
    took = time.perf_counter() - start
    await http.delete(f"/v1/capsules/{cid}")
    return took


COLD = ServerOptions(sample_interval=60, spares=0, ready_networks=0)


async def main(rounds: int) -> None:
    async with (
        wrenn_local.serve(options=COLD) as server,
        httpx.AsyncClient(
            base_url=server.base_url, headers={"X-API-Key": server.api_key}, timeout=30
        ) as http,
    ):
        health = (await http.get("/health")).json()
        if health.get("network") != "on":
            sys.exit(f"no capsule network here: {health.get('network_reasons')}")
        await boot(http, True)  # warm-up
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(rounds):
            for network in (True, False):
                times[network].append(await boot(http, network))
        for network, values in times.items():
            print(
                f"network={'on' if network else 'off'}: median "
                f"{statistics.median(values) * 1000:.0f} ms, fastest {min(values) * 1000:.0f} ms"
                f" ({rounds} capsules)"
            )


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 15)
