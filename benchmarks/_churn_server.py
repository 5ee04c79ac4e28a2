"""A tiny HTTP server for the churn benchmark, run in its own process.

Answers every request after a random 0-4 ms pause, so requests overlap and a small
pool is always contended. Prints ``PORT=<n>`` once listening.
"""

from __future__ import annotations

import random
import sys

import anyio

from wrenn_local._asgi import serve_asgi


async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def,type-arg]
    if scope["type"] != "http":
        return
    await anyio.sleep(random.random() * 0.004)
    body = b'{"ok": true}'
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def main() -> None:
    async with serve_asgi(app) as (_, port):
        print(f"PORT={port}", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
