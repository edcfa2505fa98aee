"""Command-line options shared by the commands that read several manifests (train, eval)."""

from __future__ import annotations

import argparse

from dvan.data.collections import LABEL_MODES


def add_label_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that say how the classes of several manifests are joined (train and eval)."""
    parser.add_argument("--labels", choices=LABEL_MODES, default="merge",
                        help="several manifests: 'merge' (default) makes classes of the same name one class "
                             "(case and punctuation ignored); 'separate' keeps each manifest's classes apart")
    parser.add_argument("--label-aliases", default=None, metavar="JSON",
                        help='JSON object joining synonymous classes of several manifests, e.g. {"harbor": "port"}')
