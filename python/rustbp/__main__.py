"""The ``rustbp`` command: ``rustbp demo`` walks through the article's worked example, ``rustbp bench``
compares its speed with pure Python, NumPy, PyTorch and scikit-learn."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rustbp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    from . import demo
    from .bench import runner

    demo.add_arguments(sub.add_parser("demo", help="the article's worked example, every number computed by rustbp"))

    runner.add_arguments(sub.add_parser("bench", help="the speed comparison: a table, a JSON file and a plot"))
    args = parser.parse_args(argv)
    if args.command == "demo":
        try:
            return demo.main(args)
        except (ValueError, TypeError) as e:
            parser.error(str(e))  # the numbers given do not make a network: usage and the reason, exit 2
    elif args.command == "bench":
        return runner.main(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
