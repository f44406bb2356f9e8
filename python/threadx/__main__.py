"""Command line: ``python -m threadx demo`` (and the ``threadx`` console script)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="threadx", description="threadx indicator engine")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="compute indicators on built-in synthetic OHLCV data")
    sub.add_parser("version", help="print the version")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from threadx.demo import run

        run()
    elif args.command == "version":
        import threadx

        print(threadx.__version__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
