"""A capsule port's URL on a local server is ``http://{port}-{id}.localhost:{port}``: a
name browsers resolve to loopback themselves, and the SDK too (it never asks the
system's resolver about ``localhost``)."""

from __future__ import annotations

from urllib.parse import urlsplit

import anyio
import httpx2 as httpx
import pytest

import wrenn_local
from wrenn import AsyncWrennClient

pytestmark = pytest.mark.anyio


async def test_get_url_on_a_local_server_is_a_localhost_name_that_answers() -> None:
    async with (
        wrenn_local.serve() as server,
        AsyncWrennClient(api_key=server.api_key, base_url=server.base_url) as client,
        client.capsule() as cap,
    ):
        await cap.commands.run("mkdir -p site && echo hello-port > site/index.html")
        await cap.commands.run(
            "python3 -m http.server 8000 --bind 127.0.0.1 --directory site", background=True
        )
        url = cap.get_url(8000)
        assert url == f"http://8000-{cap.capsule_id}.localhost:{server.port}"
        # what a browser does with a *.localhost name: loopback, the name as Host
        async with httpx.AsyncClient() as http:
            with anyio.fail_after(30):
                while True:
                    answer = await http.get(
                        f"http://127.0.0.1:{server.port}/",
                        headers={"Host": urlsplit(url).netloc, "X-API-Key": server.api_key},
                    )
                    if answer.status_code == 200:
                        break
                    await anyio.sleep(0.2)
        assert answer.text == "hello-port\n"
