"""``dvan calibrate CHECKPOINT MANIFEST... --out CALIBRATED``: make p readable as a confidence."""

from __future__ import annotations

import argparse

from dvan.cli._collection_args import add_label_arguments
from dvan.data.collections import LabelPolicy
from dvan.data.manifest import SPLITS


def run(args: argparse.Namespace) -> int:
    """Fit on the split, write the calibrated checkpoint, print the calibration error before and after."""
    from dvan.eval.calibration import calibrate_checkpoint
    from dvan.progress import TqdmProgress

    bar = TqdmProgress(disable=args.quiet)
    try:
        record = calibrate_checkpoint(args.checkpoint, args.manifest, args.out, split=args.split, device=args.device,
                                      cache_dir=args.cache_dir, progress=bar,
                                      labels=LabelPolicy.from_file(args.labels, args.label_aliases))
    finally:
        bar.close()
    print(f"calibrated on the {record['split']} split ({record['pairs']} caption-image pairs): "
          f"p' = sigmoid({record['scale']:.4f} z + {record['offset']:.4f}); expected calibration error "
          f"{100 * record['ece_before']:.2f} % -> {100 * record['ece_after']:.2f} %")
    print(f"calibrated checkpoint: {args.out} (same ranking; probabilities changed)")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``dvan calibrate``."""
    parser = subparsers.add_parser(
        "calibrate", help="fit the match probability to observed match rates (Platt scaling on validation)",
        description="Fit p' = sigmoid(a z + c) on the caption-image pairs of a split (default: val), so that among "
                    "pairs shown with p = 0.8 about 80 %% show the class of place the query names, and write a "
                    "checkpoint with the map folded into its scorer. Rankings do not change.")
    parser.add_argument("checkpoint", help="model checkpoint (.safetensors)")
    parser.add_argument("manifest", nargs="+", help="collection manifest(s) (JSON Lines) to fit on")
    parser.add_argument("--out", required=True, help="where to write the calibrated checkpoint")
    parser.add_argument("--split", choices=SPLITS, default="val", help="split to fit on (default val; never test)")
    add_label_arguments(parser)
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    parser.add_argument("--cache-dir", default=None, help="feature cache (default $DVAN_CACHE or ~/.cache/dvan)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
