"""``dvan eval CHECKPOINT MANIFEST``: every metric of the paper, both directions, as text and JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dvan.data.manifest import SPLITS
from dvan.eval.evaluate import evaluate
from dvan.progress import TqdmProgress


def format_report(report: dict[str, Any]) -> str:
    """The report as a short table in percent, like the paper's."""
    keys = ["map", "map@150", "p@1", "p@5", "p@10", "r@1", "r@5", "r@10", "f@1", "f@5", "f@10"]
    counts = report["counts"]
    mode = report.get("mode", "audio")
    how = "" if mode == "audio" else f", words from the {report['words']}" + (
        f", hybrid weight {report['hybrid_weight']:g}" if mode == "hybrid" else "")
    lines = [f"{report['split']} split: {counts['captions']} captions, {counts['images']} images, "
             f"{counts['classes']} classes; mode {mode}{how} (percent)",
             "task  " + " ".join(f"{k:>7}" for k in keys)]
    for name, key in (("A->I", "audio_to_image"), ("I->A", "image_to_audio")):
        lines.append(f"{name:<5} " + " ".join(f"{100 * report[key][k]:7.2f}" for k in keys))
    pairs = report["pairs"]
    lines.append("pairs  A->I " + " ".join(f"{k} {100 * v:.2f}" for k, v in pairs["audio_to_image"].items())
                 + " | I->A " + " ".join(f"{k} {100 * v:.2f}" for k, v in pairs["image_to_audio"].items())
                 + f" | mR {100 * pairs['mR']:.2f}")
    if report["matching_accuracy"] is not None:
        lines.append(f"matching accuracy {100 * report['matching_accuracy']:.2f}")
    if report.get("wer") is not None:
        lines.append(f"word error rate of the transcripts {100 * report['wer']:.2f}")
    if report["skipped"]:
        lines.append(f"{len(report['skipped'])} captions skipped (unreadable audio); see the JSON report")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, write the JSON report and PR curves when asked."""
    bar = TqdmProgress(disable=args.quiet)
    try:
        report = evaluate(args.checkpoint, args.manifest, split=args.split, device=args.device,
                          cache_dir=args.cache_dir, progress=bar, mode=args.mode, words=args.words)
    finally:
        bar.close()
    print(format_report(report))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        print(f"report: {path}")
    if args.pr_curve:
        from dvan.eval.plots import plot_pr_curves

        print(f"precision-recall curves: {plot_pr_curves(report, args.pr_curve)}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``dvan eval``."""
    parser = subparsers.add_parser("eval", help="evaluate a checkpoint on a manifest split (both directions)")
    parser.add_argument("checkpoint", help="model checkpoint (.safetensors)")
    parser.add_argument("manifest", help="collection manifest (JSON Lines)")
    parser.add_argument("--split", choices=SPLITS, default="test", help="split to evaluate (default test)")
    parser.add_argument("--mode", choices=["audio", "text", "hybrid"], default="audio",
                        help="audio (default): the audio branch; text: the words through the text branch; hybrid: both")
    parser.add_argument("--words", choices=["transcript", "manifest"], default="transcript",
                        help="text/hybrid: the speech recogniser's transcripts (default; cached; reports the word "
                             "error rate) or the manifest's \"text\" fields (a perfect transcript)")
    parser.add_argument("--json", default=None, help="write the full report (every number) to this JSON file")
    parser.add_argument("--pr-curve", default=None, help="write precision-recall curves to this PNG")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    parser.add_argument("--cache-dir", default=None, help="feature cache (default $DVAN_CACHE or ~/.cache/dvan)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
