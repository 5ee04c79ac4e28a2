"""A WebSocket server that sends N MiB in 64 KiB binary messages to each client, then closes.

Run in its own process (the `websockets` library, asyncio, with its C speedups), so every
client in the benchmark downloads from the same fast, independent peer. Prints PORT=<n>.
"""

from __future__ import annotations

import asyncio
import sys

from websockets.asyncio.server import serve


async def main(mib: int) -> None:
    chunk = b"\x5a" * 65536

    async def handler(ws):  # type: ignore[no-untyped-def]
        for _ in range(mib * 16):
            await ws.send(chunk)
        await ws.close()

    async with serve(
        handler, "127.0.0.1", 0, max_size=None, ping_interval=None, compression=None
    ) as server:
        print(f"PORT={next(iter(server.sockets)).getsockname()[1]}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
