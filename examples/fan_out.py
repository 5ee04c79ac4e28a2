"""Fan work out: one capsule per item, a few at a time, results in input order.

Each capsule computes a checksum of its own slice; a failure in one job does not stop
the others (``return_exceptions=True``), and every capsule is destroyed at the end."""

import anyio

from wrenn import AsyncCapsule, AsyncWrennClient


async def checksum(cap: AsyncCapsule, n: int) -> str:
    if n == 3:
        raise ValueError("job 3 is broken on purpose")
    result = await cap.commands.run(f"seq 1 {n * 1000} | sha256sum | cut -c1-12", check=True)
    return result.stdout.strip()


async def main() -> None:
    async with AsyncWrennClient() as client:
        results = await client.map(
            checksum,
            range(1, 7),
            concurrency=3,
            return_exceptions=True,
            on_progress=lambda done, total: print(f"  {done}/{total} done"),
        )
    for n, result in zip(range(1, 7), results, strict=True):
        print(f"job {n}: {result!r}")


if __name__ == "__main__":
    anyio.run(main)
