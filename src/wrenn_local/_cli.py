"""``python -m wrenn_local serve``: the local server as a process.

Prints exactly two lines first on stdout once it accepts connections::

    WRENN_BASE_URL=http://127.0.0.1:8080
    WRENN_API_KEY=wrn_...

then serves until SIGINT or SIGTERM, destroys every capsule and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

import anyio

from ._options import ServerOptions
from ._server import serve


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m wrenn_local",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the local Wrenn server")
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
    return p


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


async def run_server(args: argparse.Namespace) -> None:
    options = ServerOptions(allow_signup=args.allow_signup, allowed_hosts=tuple(args.allowed_host))
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with serve(
            host=args.host,
            port=args.port,
            api_key=api_key_of(args),
            options=options,
            data_dir=args.data_dir,
            force_reduced_isolation=args.reduced_isolation,
        ) as server:
            sys.stdout.write(f"WRENN_BASE_URL={server.base_url}\n")
            sys.stdout.write(f"WRENN_API_KEY={server.api_key}\n")
            sys.stdout.flush()
            logging.getLogger("wrenn_local").info(
                "serving on %s (isolation: %s)", server.base_url, server.isolation
            )
            async for _ in signals:
                break


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    anyio.run(run_server, args, backend=args.backend)
    return 0
