"""``dvan train MANIFEST OUT_DIR``: train a model with a preset, resumable, with a progress bar."""

from __future__ import annotations

import argparse
import json

from dvan.cli._collection_args import add_label_arguments
from dvan.config import Representation
from dvan.data.collections import LabelPolicy
from dvan.progress import TqdmProgress
from dvan.train.config import PRESETS, make_train_config

REPRESENTATIONS = ("mfcc", "delta", "delta2", "spectrogram", "mfcc_stack")


def run(args: argparse.Namespace) -> int:
    """Train, print where the best checkpoint is and its validation metrics."""
    from dvan.train.loop import train

    overrides = {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.seed is not None:
        overrides["seed"] = args.seed
    representation: Representation | None = args.representation
    config = make_train_config(args.preset, representation, **overrides)
    if args.init:
        from dataclasses import replace

        from dvan.model.checkpoint import read_validated_metadata

        model_config, _ = read_validated_metadata(args.init)
        config = replace(config, model=model_config)
    bar = TqdmProgress(disable=args.quiet)
    try:
        result = train(args.manifest, config, args.out_dir, progress=bar, device=args.device,
                       resume=not args.no_resume, cache_dir=args.cache_dir, init_checkpoint=args.init,
                       labels=LabelPolicy.from_file(args.labels, args.label_aliases))
    finally:
        bar.close()
    print(f"best checkpoint: {result.checkpoint} (epoch {result.best_epoch} of {result.epochs}, {result.stop_reason})")
    print("validation: " + json.dumps(result.best_val))
    print(f"training log: {result.log}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``dvan train``."""
    parser = subparsers.add_parser("train", help="train a model on a manifest (resumable)")
    parser.add_argument("manifest", nargs="+",
                        help="collection manifest (JSON Lines) with train and val captions; several train one model "
                             "on their union")
    parser.add_argument("out_dir", help="folder for best.safetensors, resume.safetensors and train_log.jsonl")
    parser.add_argument("--preset", choices=PRESETS, default="dvan-plus",
                        help="dvan-plus (default, better) or paper (the paper's recipe)")
    parser.add_argument("--representation", choices=REPRESENTATIONS, default=None,
                        help="audio representation (paper rows: mfcc=CNN+M, delta=CNN+ΔM, delta2=CNN+Δ²M, "
                             "spectrogram=CNN+SPEC); default: the preset's")
    add_label_arguments(parser)
    parser.add_argument("--epochs", type=int, default=None, help="most epochs (default: the preset's)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the preset's)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    parser.add_argument("--init", default=None, metavar="CHECKPOINT",
                        help="fine-tune: start from this checkpoint's weights and model config (e.g. the default model)")
    parser.add_argument("--no-resume", action="store_true", help="start afresh instead of resuming OUT_DIR")
    parser.add_argument("--cache-dir", default=None, help="feature cache (default $DVAN_CACHE or ~/.cache/dvan)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
