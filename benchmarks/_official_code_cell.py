"""The official wrenn 0.3.0 SDK side of benchmarks/code_cell.py.

Runs in a virtual environment that holds the official SDK (it is also called ``wrenn``).
Prints one JSON line per API (sync, async) with the latency of each trivial cell.
Usage: python _official_code_cell.py N   (WRENN_* variables in the environment)
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from typing import Any

_getaddrinfo = socket.getaddrinfo


def _resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
    # *.localhost is loopback (RFC 6761): what wildcard DNS does for the cloud proxy
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str) and name.endswith(".localhost"):
        host = "127.0.0.1"
    return _getaddrinfo(host, *args, **kwargs)


def main() -> None:
    socket.getaddrinfo = _resolve
    from wrenn.code_runner import AsyncCapsule, Capsule

    n = int(sys.argv[1])
    with Capsule(wait=True) as cap:
        for _ in range(5):
            assert cap.run_code("1 + 1").text == "2"
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            cap.run_code("1 + 1")
            samples.append(time.perf_counter() - t0)
    print(json.dumps({"client": "official sync", "samples": samples}), flush=True)

    async def run_async() -> list[float]:
        cap = await AsyncCapsule.create(wait=True)
        try:
            for _ in range(5):
                await cap.run_code("1 + 1")
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                await cap.run_code("1 + 1")
                out.append(time.perf_counter() - t0)
            return out
        finally:
            await cap.close()
            await cap.destroy()

    samples = asyncio.run(run_async())
    print(json.dumps({"client": "official async", "samples": samples}), flush=True)


if __name__ == "__main__":
    main()
