"""The pytest plugin users get with the package (entry point ``pytest11: wrenn``)."""

from __future__ import annotations

import pytest

import wrenn
from wrenn import AsyncCapsule, Capsule, WrennClient
from wrenn.pytest_plugin import LocalServerInfo

pytest_plugins = ["pytester"]


async def test_async_fixtures(
    wrenn_capsule: AsyncCapsule, wrenn_client: wrenn.AsyncWrennClient
) -> None:
    assert (await wrenn_capsule.commands.run("echo $((20+22))")).stdout == "42\n"
    assert wrenn_capsule.capsule_id in [c.id for c in await wrenn_client.capsules.list()]


def test_sync_fixtures(wrenn_sync_capsule: Capsule, wrenn_sync_client: WrennClient) -> None:
    wrenn_sync_capsule.files.write("x.txt", "sync")
    assert wrenn_sync_capsule.files.read("x.txt") == "sync"
    assert wrenn_sync_capsule.capsule_id in [c.id for c in wrenn_sync_client.capsules.list()]


def test_env_fixture(wrenn_env: LocalServerInfo) -> None:
    with Capsule(wait=True) as cap:  # the official form reads WRENN_* from the environment
        assert cap.commands.run("echo official").stdout == "official\n"
    assert wrenn_env.api_key not in repr(wrenn_env)


def test_a_users_project_gets_the_fixtures(pytester: pytest.Pytester) -> None:
    """A project that only installed wrenn: the plugin is there, on asyncio and trio."""
    pytester.makepyfile(
        test_agent="""
        import pytest

        @pytest.mark.anyio
        @pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
        async def test_agent(wrenn_capsule, anyio_backend):
            assert (await wrenn_capsule.commands.run("echo hi")).stdout == "hi\\n"

        def test_script(wrenn_sync_capsule):
            assert wrenn_sync_capsule.commands.run("uname").stdout == "Linux\\n"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
