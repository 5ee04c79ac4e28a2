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


def fd_targets() -> set[str]:
    """This process's descriptors, each as ``fd -> what it is`` (for a failure's message;
    a socket with its /proc/net line: its kind, addresses and state)."""
    sockets: dict[str, str] = {}
    for table in ("tcp", "tcp6", "unix"):
        with open(f"/proc/net/{table}") as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                inode = fields[6] if table == "unix" else fields[9]
                sockets[inode] = (
                    f"{table} {' '.join(fields[:4] if table != 'unix' else fields[5:])}"
                )
    found = set()
    for fd, target in fd_links().items():
        inode = target.removeprefix("socket:[").removesuffix("]")
        found.add(f"{fd} -> {target} {sockets.get(inode, '')}".rstrip())
    return found


def fd_links() -> dict[str, str]:
    """This process's descriptors and what each links to (``socket:[inode]``, a path)."""
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
    return found
