"""wrenn_local in reduced isolation (what a machine without root or bubblewrap gets)."""

from __future__ import annotations

import anyio

from tests.localserver import local_http, new_capsule, sh, wait_status
from tests.test_local_files import read, write


async def test_reduced_isolation_still_separates_capsules() -> None:
    async with local_http(force_reduced_isolation=True) as (server, http):
        assert server.isolation == "reduced"
        assert "reduced isolation requested" in server.isolation_reasons
        health = (await http.get("/health")).json()
        assert health["isolation"] == "reduced"
        a, b = await new_capsule(http), await new_capsule(http)
        info = (await http.get(f"/v1/capsules/{a}")).json()
        assert info["metadata"]["isolation"] == "reduced"
        # each capsule has its own home, also as the working directory of commands
        await write(http, a, "note.txt", b"from a")
        assert (await read(http, a, "/home/wrenn-user/note.txt")).content == b"from a"
        assert (await read(http, b, "/home/wrenn-user/note.txt")).status_code == 404
        assert (await sh(http, a, "cat note.txt"))["stdout"] == "from a"
        assert (await sh(http, b, "ls"))["stdout"] == ""
        # the files API cannot leave the capsule's directory
        marker = server.data_dir / "marker"
        marker.write_text("server only")
        for path in (str(marker), "../../../../../../" + str(marker)):
            assert b"server only" not in (await read(http, a, path)).content
        await sh(http, a, f"ln -s {server.data_dir} escape")
        assert b"server only" not in (await read(http, a, "escape/marker")).content
        # pause stops the capsule's processes; resume continues them
        # (each tick replaces the file whole: a read never sees the moment ``>`` empties it)
        tick = "date +%s%N > ticks.new && mv ticks.new ticks"
        await sh(http, a, f"while true; do {tick}; sleep 0.02; done", background=True)
        await anyio.sleep(0.2)
        await http.post(f"/v1/capsules/{a}/pause")
        await wait_status(http, a, "paused")
        # in reduced isolation the capsule's home is a host directory we can watch
        ticks = (
            server.data_dir / "capsules" / a / "upper" / "root" / "home" / "wrenn-user" / "ticks"
        )
        await anyio.sleep(0.1)
        frozen = ticks.read_bytes()
        assert frozen  # it ticked before the pause
        await anyio.sleep(0.3)
        assert ticks.read_bytes() == frozen  # nothing ran while paused
        assert (await read(http, a, "ticks")).status_code == 409  # not running: refused
        await http.post(f"/v1/capsules/{a}/resume")
        await wait_status(http, a, "running")
        with anyio.fail_after(10):  # ticking again (however loaded the machine is)
            while ticks.read_bytes() == frozen:
                await anyio.sleep(0.02)
        await http.delete(f"/v1/capsules/{a}")
        await wait_status(http, a, "stopped")
        assert not (server.data_dir / "capsules" / a).exists()
