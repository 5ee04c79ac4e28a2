"""``python -m wrenn_local serve`` (also ``wrenn local serve``): the local server as a process.

Prints three lines first on stdout once it accepts connections::

    WRENN_BASE_URL=http://127.0.0.1:8080
    WRENN_API_KEY=wrn_...
    WRENN_PROXY_DOMAIN=localhost:8080

(``--env``: the same as ``export`` lines), then serves until SIGINT or SIGTERM,
destroys every capsule and exits 0. A port already in use is one line on stderr and
exit 1. ``--state-file PATH`` writes the address, key and pid there (mode 0600) once
ready and removes it on exit: how ``wrenn local start`` finds its background server.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import shlex
import signal
import sys
from pathlib import Path

import anyio

from ._options import ServerOptions
from ._server import LocalServer, serve

EXIT_ERROR = 1


def parser(prog: str = "python -m wrenn_local") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the local Wrenn server")
    add_serve_arguments(s)
    return p


def add_serve_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 = any free)")
    s.add_argument(
        "--api-key",
        default=None,
        help="API key to accept; visible to every account in ps: prefer --api-key-file or "
        "the WRENN_LOCAL_API_KEY environment variable (default: generated)",
    )
    s.add_argument("--api-key-file", default=None, help="read the API key to accept from this file")
    s.add_argument(
        "--allow-signup",
        action="store_true",
        help="let anyone who reaches the port create an account (off by default)",
    )
    s.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a DNS name (and its subdomains) clients may use in Host/Origin, besides IP "
        "addresses and localhost; repeatable",
    )
    s.add_argument("--data-dir", default=None, help="where capsules and snapshots live")
    s.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    s.add_argument(
        "--reduced-isolation",
        action="store_true",
        help="do not use namespaces even where available",
    )
    s.add_argument(
        "--no-network",
        action="store_true",
        help="capsules get no outbound network (only their own loopback)",
    )
    s.add_argument(
        "--spares",
        type=int,
        default=None,
        metavar="N",
        help="the most booted capsules kept ready per template and size created often "
        "(twice within a minute): as many as were in use at once lately, each "
        "stopped after a minute unused; 0 = off (default 64, or the WRENN_LOCAL_SPARES "
        "environment variable)",
    )
    s.add_argument(
        "--ready-networks",
        type=int,
        default=None,
        metavar="N",
        help="capsule networks kept filtered and connected ahead of cold boots, while "
        "capsules are being created (each a pasta, ~30 MiB); 0 = off (default 2)",
    )
    s.add_argument(
        "--env",
        action="store_true",
        help="print the variables as `export` lines for a POSIX shell",
    )
    s.add_argument(
        "--state-file",
        default=None,
        metavar="PATH",
        help="write address, key and pid here (0600) once ready; removed on exit",
    )


def announce(server: LocalServer, *, export: bool) -> str:
    values = {**server.environ(), "WRENN_PROXY_DOMAIN": server.proxy_domain}
    prefix = "export " if export else ""
    return "".join(f"{prefix}{k}={shlex.quote(v) if export else v}\n" for k, v in values.items())


def write_state(path: Path, server: LocalServer) -> None:
    """The background server's address and key, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    state = {
        "pid": os.getpid(),
        "base_url": server.base_url,
        "api_key": server.api_key,
        "proxy_domain": server.proxy_domain,
        "data_dir": str(server.data_dir),
        "isolation": str(server.isolation),
    }
    partial = path.with_name(path.name + ".part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
    partial.replace(path)


def remove_state(path: Path) -> None:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if state.get("pid") == os.getpid():  # never another server's file
        path.unlink(missing_ok=True)


def api_key_of(args: argparse.Namespace) -> str | None:
    """The key from ``--api-key-file``, ``WRENN_LOCAL_API_KEY`` or ``--api-key``."""
    if args.api_key_file is not None:
        with open(args.api_key_file) as fh:
            return fh.read().strip()
    if os.environ.get("WRENN_LOCAL_API_KEY"):
        return os.environ["WRENN_LOCAL_API_KEY"].strip()
    if args.api_key is not None:
        logging.getLogger("wrenn_local").warning(
            "--api-key is visible to every account on this machine (ps); "
            "use --api-key-file or WRENN_LOCAL_API_KEY"
        )
    key: str | None = args.api_key
    return key


def spares_of(args: argparse.Namespace) -> int:
    """Spares per boot key: ``--spares``, else ``WRENN_LOCAL_SPARES``, else the default."""
    value = getattr(args, "spares", None)
    if value is None:
        raw = os.environ.get("WRENN_LOCAL_SPARES", "").strip()
        if not raw:
            return ServerOptions().spares
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"WRENN_LOCAL_SPARES must be an integer, not {raw!r}") from None
    if value < 0:
        raise ValueError("the number of spares must be 0 or more")
    return int(value)


def ready_networks_of(args: argparse.Namespace, default: int) -> int:
    """How many ready networks to keep: ``--ready-networks``, else ``default``."""
    ready = getattr(args, "ready_networks", None)
    if ready is None:
        return default
    if ready < 0:
        raise ValueError("the number of ready networks must be 0 or more (0 = off)")
    return int(ready)


async def run_server(args: argparse.Namespace) -> None:
    options = ServerOptions(allow_signup=args.allow_signup, allowed_hosts=tuple(args.allowed_host))
    options.network = not getattr(args, "no_network", False)
    options.spares = spares_of(args)
    options.ready_networks = ready_networks_of(args, options.ready_networks)
    state = Path(args.state_file) if args.state_file else None
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with serve(
            host=args.host,
            port=args.port,
            api_key=api_key_of(args),
            options=options,
            data_dir=args.data_dir,
            force_reduced_isolation=args.reduced_isolation,
        ) as server:
            try:
                if state is not None:
                    write_state(state, server)
                sys.stdout.write(announce(server, export=args.env))
                sys.stdout.flush()
                logging.getLogger("wrenn_local").info(
                    "serving on %s, capsule ports on *.%s (isolation: %s)",
                    server.base_url,
                    server.proxy_domain,
                    server.isolation,
                )
                async for _ in signals:
                    break
            finally:
                if state is not None:
                    remove_state(state)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def main(argv: list[str] | None = None, *, prog: str = "python -m wrenn_local") -> int:
    args = parser(prog).parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        anyio.run(run_server, args, backend=args.backend)
    except (OSError, ValueError, BaseExceptionGroup) as exc:
        leaves = _leaves(exc)
        busy = [e for e in leaves if isinstance(e, OSError) and e.errno == errno.EADDRINUSE]
        if busy:
            sys.stderr.write(
                f"{prog}: port {args.port} on {args.host} is already in use; "
                "choose another with --port N (--port 0: any free port)\n"
            )
            return EXIT_ERROR
        expected = [e for e in leaves if isinstance(e, OSError | ValueError)]
        if expected and len(expected) == len(leaves):
            sys.stderr.write(f"{prog}: {_describe(expected[0])}\n")
            return EXIT_ERROR
        raise
    return 0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc)
