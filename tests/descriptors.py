"""This test process's open file descriptors: what leak checks count."""

from __future__ import annotations

import os

import anyio


def open_fds() -> int:
    """How many descriptors this process has open now."""
    return len(os.listdir("/proc/self/fd"))


async def settled_fds(target: int, *, within: float = 5.0) -> int:
    """Open descriptors once they are down to ``target``, or after ``within`` seconds.

    A closed socket may be closed by the next checkpoint of its transfer's clean-up, so a
    leak check waits (bounded) rather than reading the count at once.
    """
    with anyio.move_on_after(within):
        while open_fds() > target:
            await anyio.sleep(0.01)
    return open_fds()
