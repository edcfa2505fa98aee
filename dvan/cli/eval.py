"""``dvan eval CHECKPOINT MANIFEST``: every metric of the paper, both directions, as text and JSON."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dvan.cli._collection_args import add_label_arguments
from dvan.data.collections import LabelPolicy
from dvan.data.manifest import SPLITS
from dvan.errors import DiskFullError, DvanError
from dvan.fsutil import is_disk_full
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


def _check_output(option: str, value: str | None) -> Path | None:
    """An output file the run will write, refused before the (long) evaluation when it cannot be."""
    if value is None:
        return None
    path = Path(value)
    if path.is_dir():
        raise DvanError(f"{option} {path}: is a folder; give a file name")
    if path.parent.exists() and not path.parent.is_dir():
        raise DvanError(f"{option} {path}: {path.parent} is a file, not a folder; choose another place")
    return path


def _write_atomically(option: str, path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary name beside ``path`` and rename, so a failure never leaves half a file."""
    partial = path.with_name(path.name + ".partial" + path.suffix)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(partial)
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise DiskFullError(f"{option} {path}: disk full while writing it; free some space and run again") from exc
        raise DvanError(f"{option} {path}: cannot write it ({exc.strerror or exc}); choose a writable place") from exc


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, write the JSON report and PR curves when asked."""
    from dvan.eval.evaluate import evaluate

    json_path = _check_output("--json", args.json)
    png_path = _check_output("--pr-curve", args.pr_curve)
    bar = TqdmProgress(disable=args.quiet)
    try:
        report = evaluate(args.checkpoint, args.manifest, split=args.split, device=args.device,
                          cache_dir=args.cache_dir, progress=bar, mode=args.mode, words=args.words,
                          labels=LabelPolicy.from_file(args.labels, args.label_aliases))
    finally:
        bar.close()
    print(format_report(report))
    if json_path is not None:
        text = json.dumps(report, indent=1) + "\n"
        _write_atomically("--json", json_path, lambda target: target.write_text(text, encoding="utf-8"))
        print(f"report: {json_path}")
    if png_path is not None:
        from dvan.eval.plots import plot_pr_curves

        _write_atomically("--pr-curve", png_path, lambda target: plot_pr_curves(report, target))
        print(f"precision-recall curves: {png_path}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``dvan eval``."""
    parser = subparsers.add_parser("eval", help="evaluate a checkpoint on a manifest split (both directions)")
    parser.add_argument("checkpoint", help="model checkpoint (.safetensors)")
    parser.add_argument("manifest", nargs="+", help="collection manifest (JSON Lines); several are one gallery")
    add_label_arguments(parser)
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
