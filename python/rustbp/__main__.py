"""The rustbp command: rustbp demo walks through the article's worked example, rustbp bench compares
its speed with pure Python, NumPy, PyTorch and scikit-learn, rustbp fit trains on a CSV file and rustbp
predict predicts with the model it saved."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from . import __version__, cli

    parser = argparse.ArgumentParser(prog="rustbp", description=__doc__)
    parser.add_argument("--version", action="version", version=f"rustbp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import demo
    from .bench import runner

    demo.add_arguments(sub.add_parser("demo", help="the article's worked example, every number computed by rustbp"))

    runner.add_arguments(sub.add_parser("bench", help="the speed comparison: a table, a JSON file and a plot"))
    cli.add_arguments(sub)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "demo":
        try:
            return demo.main(args)
        except (ValueError, TypeError) as e:
            parser.error(str(e))  # the numbers given do not make a network: usage and the reason, exit 2
    elif args.command == "bench":
        return runner.main(args)
    else:
        try:
            return cli.fit(args) if args.command == "fit" else cli.predict(args)
        except cli.CliError as e:
            print(f"rustbp {args.command}: error: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
