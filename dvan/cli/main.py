"""Entry point of the ``dvan`` command line.

Each sub-command lives in its own module of :mod:`dvan.cli` exposing
``add_parser(subparsers) -> None`` (which sets ``func`` to its ``run(args) -> int``).
Domain errors are printed as one clear line with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from dvan import __version__
from dvan.errors import Cancelled, DvanError

#: Sub-command modules, in the order ``dvan --help`` lists them.
COMMAND_MODULES = ("info", "speak", "train", "train-text", "eval", "calibrate", "library", "search", "captions", "demo")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(prog="dvan", description="Spoken-query retrieval of remote sensing imagery.")
    parser.add_argument("--version", action="version", version=f"dvan {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"dvan.cli.{name.replace('-', '_')}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (defaults to ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args))
    except Cancelled as exc:
        print(f"dvan: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("dvan: interrupted; everything finished so far is saved", file=sys.stderr)
        return 130
    except DvanError as exc:
        print(f"dvan: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
