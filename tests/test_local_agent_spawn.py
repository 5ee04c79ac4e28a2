"""The capsule agent's processes: many children, one agent thread."""

from __future__ import annotations

from tests.localserver import local_http, new_capsule, sh

# This command's shell is a child of the agent's spawner (a child of the agent) or, on
# the direct path, of the agent: the first root process up the tree is the agent.
AGENT = (
    "P=$PPID; while ! grep -q '^Uid:\t0\t' /proc/$P/status; do "
    "P=$(grep PPid: /proc/$P/status | cut -f2); done; "
)
AGENT_THREADS = AGENT + "grep Threads: /proc/$P/status; tr '\\0' ' ' < /proc/$P/cmdline"


async def test_children_are_watched_without_a_thread_each() -> None:
    async with local_http() as (_, http):
        cid = await new_capsule(http)
        for _ in range(12):
            await sh(http, cid, "sleep 60", background=True)
        streams = (await sh(http, cid, "ps -e | grep -c 'sleep'"))["stdout"]
        assert int(streams) >= 12
        out = (await sh(http, cid, AGENT_THREADS))["stdout"].split()
        assert out[0] == "Threads:", out
        assert "/run/wrenn/agent.py" in out, out  # it is the agent
        # Python 3.11's default watcher keeps one thread per running child (13 here)
        assert int(out[1]) <= 3, out
