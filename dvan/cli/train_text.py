"""``dvan train-text CHECKPOINT MANIFEST... OUT``: add a trained text branch (W_T) to an audio model."""

from __future__ import annotations

import argparse
import json

from dvan.progress import TqdmProgress


def run(args: argparse.Namespace) -> int:
    """Train W_T, write the new checkpoint, print its validation numbers."""
    from dvan.train.text import TextTrainConfig, train_text_branch

    config = TextTrainConfig(epochs=args.epochs, seed=args.seed)
    bar = TqdmProgress(disable=args.quiet)
    try:
        result = train_text_branch(args.checkpoint, args.manifests, args.out, config, device=args.device,
                                   cache_dir=args.cache_dir, progress=bar)
    finally:
        bar.close()
    print(f"checkpoint with text branch: {result.out} (best epoch {result.best_epoch} of {args.epochs})")
    print("validation MAP (A->I) per mode: " + json.dumps({k: round(100 * v, 2) for k, v in result.val.items()}))
    print(f"hybrid weight {result.hybrid_weight:g} (audio share); default mode: {result.default_mode}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``dvan train-text``."""
    parser = subparsers.add_parser("train-text", help="add a text branch (typed queries, transcripts) to a model")
    parser.add_argument("checkpoint", help="the trained audio model (.safetensors); it is not changed")
    parser.add_argument("manifests", nargs="+", metavar="MANIFEST",
                        help="collection manifests whose captions have a \"text\" field (train and val splits)")
    parser.add_argument("out", help="the new checkpoint: the same audio model plus the text branch")
    parser.add_argument("--epochs", type=int, default=30, help="epochs (default 30; the best on val is kept)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    parser.add_argument("--cache-dir", default=None, help="feature cache (default $DVAN_CACHE or ~/.cache/dvan)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
