"""``python -m wrenn`` (also the ``wrenn`` command)."""

from __future__ import annotations

import argparse
import sys

import anyio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wrenn", description="Wrenn SDK command line")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fan a job out over capsules on the embedded server")
    demo.add_argument("--capsules", type=int, default=4, help="how many capsules (default 4)")
    demo.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        try:
            return anyio.run(lambda: run_demo(capsules=args.capsules), backend=args.backend)
        except KeyboardInterrupt:
            sys.stderr.write("interrupted; every capsule was destroyed\n")
            return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
