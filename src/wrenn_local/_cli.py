"""``python -m wrenn_local serve``: the local server as a process.

Prints exactly two lines first on stdout once it accepts connections::

    WRENN_BASE_URL=http://127.0.0.1:8080
    WRENN_API_KEY=wrn_...

then serves until SIGINT or SIGTERM, destroys every capsule and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import anyio

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
    s.add_argument("--api-key", default=None, help="API key to accept (default: generated)")
    s.add_argument("--data-dir", default=None, help="where capsules and snapshots live")
    s.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    s.add_argument(
        "--reduced-isolation",
        action="store_true",
        help="do not use namespaces even where available",
    )
    return p


async def run_server(args: argparse.Namespace) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with serve(
            host=args.host,
            port=args.port,
            api_key=args.api_key,
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
