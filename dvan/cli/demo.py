"""``dvan demo`` (placeholder until the demo is built)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    """Not ready yet."""
    print("the demo is not built yet")
    return 1


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``dvan demo``."""
    parser = subparsers.add_parser("demo", help="search the embedded demo library with a demo query")
    parser.set_defaults(func=run)
