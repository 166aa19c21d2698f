"""The ``rustbp`` command: ``rustbp demo`` walks through the article's worked example."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rustbp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="the article's worked example, every number computed by rustbp")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from . import demo

        demo.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
