"""``serve()``: run a local Wrenn server inside the caller's task group."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import attrs

from ._accounts import Accounts
from ._app import build_app
from ._asgi import serve_asgi
from ._boot_process import start_boot_process, stop_boot_process
from ._capsules import CapsuleManager
from ._data_dir import TEMP_PREFIX, hold_data_dir, reap_abandoned_temp_dirs
from ._events import EventHub
from ._guard import HostGuard
from ._isolation import HostSupport, Isolation
from ._leftovers import reap_leftovers
from ._options import ServerOptions
from ._persist import keep_saved, read_state, restore_accounts, restore_templates
from ._port_links import PortLinks
from ._proxy import PortProxy
from ._sandbox import BOOT_ENV
from ._shared_base import SharedBase, hold_base
from ._upkeep import reaper, sampler

__all__ = ["LocalServer", "serve"]

log = logging.getLogger("wrenn_local")


@attrs.frozen
class LocalServer:
    """A running local server.

    ``base_url`` and ``api_key`` are what a client needs (also as ``WRENN_BASE_URL`` and
    ``WRENN_API_KEY``); ``isolation`` says how strongly capsules are isolated here.
    """

    base_url: str
    api_key: str = attrs.field(repr=False)
    host: str
    port: int
    data_dir: Path
    isolation: Isolation
    isolation_reasons: tuple[str, ...]
    capsules: CapsuleManager = attrs.field(repr=False)

    @property
    def proxy_domain(self) -> str:
        return f"localhost:{self.port}"

    def environ(self) -> dict[str, str]:
        return {"WRENN_BASE_URL": self.base_url, "WRENN_API_KEY": self.api_key}


def _make_root(data_dir: str | Path | None) -> Path:
    root = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX)) if data_dir is None else Path(data_dir)
    root = root.absolute()
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    return root


@asynccontextmanager
async def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    data_dir: str | Path | None = None,
    options: ServerOptions | None = None,
    force_reduced_isolation: bool = False,
    sse_keepalive: float = 15.0,
    pty_ping_interval: float = 30.0,
    proxy_auth: bool = True,
) -> AsyncIterator[LocalServer]:
    """Serve until the block is left; then destroy every capsule and stop.

    Runs under asyncio and trio. Binds loopback by default; ``port=0`` picks a free port.
    ``proxy_auth`` makes the capsule port proxy require the team's API key (the default).
    A temporary data directory is created (and removed afterwards) unless ``data_dir`` is
    given. Leaving the block by error or cancellation cleans up the same way.
    """
    if api_key is not None and (not api_key.startswith("wrn_") or len(api_key) < 8):
        raise ValueError("api_key must look like wrn_<hex>")
    own_dir = data_dir is None
    root = await anyio.to_thread.run_sync(_make_root, data_dir)
    try:
        lock = await anyio.to_thread.run_sync(hold_data_dir, root)
    except BaseException:
        if own_dir:  # shielded: a cancel landing here must not leave the directory
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(lambda: shutil.rmtree(root, ignore_errors=True))
        raise
    base: SharedBase | None = None
    try:
        support = await anyio.to_thread.run_sync(
            lambda: HostSupport.detect(
                root,
                force_reduced=force_reduced_isolation,
                network=options is None or options.network,
            )
        )
        if support.isolation is Isolation.REDUCED:
            log.warning("capsules run with reduced isolation: %s", "; ".join(support.reasons))
        if not own_dir:  # a killed predecessor may have left capsules behind
            await anyio.to_thread.run_sync(reap_leftovers, root)
        if support.isolation is Isolation.FULL:  # capsules boot as its forks
            await start_boot_process(root, support.capsule_python, BOOT_ENV)
        # made once per host /etc and shared by this user's servers (_shared_base.py)
        base = await anyio.to_thread.run_sync(hold_base, root / "base")
        if base.path != root / "base" and not own_dir:  # an older server's own copy
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(root / "base", True))
        accounts = Accounts()
        state = None if own_dir else await anyio.to_thread.run_sync(read_state, root)
        restore_accounts(accounts, state)
        key = api_key or Accounts.generate_key()
        accounts.add_key(key, accounts.default_team, "local server key", None)
        events = EventHub()
        options = options or ServerOptions()
        links = PortLinks(options.browser_link_seconds)
        error: Exception | None = None
        async with anyio.create_task_group() as tg:
            capsules = CapsuleManager(
                support=support,
                data_dir=root,
                base=base.path,
                task_group=tg,
                events=events,
                options=options,
            )
            app = build_app(
                accounts=accounts,
                capsules=capsules,
                events=events,
                support=support,
                options=options,
                sse_keepalive=sse_keepalive,
                pty_ping_interval=pty_ping_interval,
                port_links=links,
            )
            proxied = PortProxy(
                app, capsules=capsules, accounts=accounts, require_key=proxy_auth, links=links
            )
            bound_names = () if host in ("0.0.0.0", "::", "") else (host,)
            guarded = HostGuard(proxied, allowed_hosts=(*bound_names, *options.allowed_hosts))
            if not own_dir:  # accounts and snapshots outlive the server (_persist.py)
                restore_templates(capsules.templates, state, root)
                tg.start_soon(keep_saved, accounts, capsules.templates, root)
            tg.start_soon(reaper, capsules)
            # what servers killed before they could clean up left in the temporary directory
            tg.start_soon(
                functools.partial(anyio.to_thread.run_sync, reap_abandoned_temp_dirs, root)
            )
            tg.start_soon(sampler, capsules)
            try:
                async with serve_asgi(guarded, host=host, port=port) as (bound_host, bound_port):
                    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
                    yield LocalServer(
                        base_url=f"http://{shown}:{bound_port}",
                        api_key=key,
                        host=bound_host,
                        port=bound_port,
                        data_dir=root,
                        isolation=support.isolation,
                        isolation_reasons=support.reasons,
                        capsules=capsules,
                    )
            except Exception as exc:
                error = exc  # raised as it is below, not wrapped in a task group's group
            finally:
                await capsules.shutdown()
                tg.cancel_scope.cancel()
        if error is not None:
            raise error
    finally:
        with anyio.CancelScope(shield=True):
            await stop_boot_process(root)
        if base is not None:
            base.release()  # no capsule of this server uses it any more
        if own_dir:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(lambda: shutil.rmtree(root, ignore_errors=True))
        os.close(lock)  # only now: the directory is left (or gone) before anyone may take it
