"""The capsule agent's processes: many children, one agent thread."""

from __future__ import annotations

from tests.localserver import local_http, new_capsule, sh

# This command's shell is a child of the agent: its parent's thread count is the agent's.
AGENT_THREADS = "grep Threads: /proc/$PPID/status; tr '\\0' ' ' < /proc/$PPID/cmdline"


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
