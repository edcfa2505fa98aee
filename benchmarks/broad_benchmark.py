"""Broad benchmark: spoken UCM + spoken RSICD-on-AID, in-domain, cross-dataset, the paper's RSICD row, calibration.

Commands (from the repository root; each run trains on one core)::

    .venv/bin/python benchmarks/ucm_speak.py && .venv/bin/python benchmarks/rsicd_speak.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/broad_benchmark.py all
    # or stage by stage (each resumes; finished runs are reused; run names select runs):
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/broad_benchmark.py prepare       # feature cache, both corpora
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/broad_benchmark.py train both    # one run (or several names)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/broad_benchmark.py evaluate      # every test condition
    .venv/bin/python benchmarks/broad_benchmark.py calibrate                       # Platt on val, ECE on test
    .venv/bin/python benchmarks/broad_benchmark.py report                          # results/broad.md
    .venv/bin/python benchmarks/broad_benchmark.py export                          # resources/models/default.*

Runs (``dvan.train.train`` into ``benchmarks/work/broad_runs/<run>``, early stopping on the
validation split of the collections it trains on):

* ``both``: dvan-plus on UCM + RSICD/AID, classes merged by name plus three synonyms
  (:data:`ALIASES`); the candidate default model.
* ``rsicd``: dvan-plus on RSICD/AID only (cross-dataset: tested on UCM).
* ``ucm``: dvan-plus on UCM only: the previous default model as shipped (12 epochs on UCM,
  ``benchmarks/results/ucm.md``), not retrained.
* ``paper-rsicd``: the paper preset, CNN+M, on RSICD/AID (the paper's Table V row).
* ``both-short`` / ``both-short-separate`` / ``both-short-no-aliases``: the design choices of
  training on two collections, one change at a time on a shorter budget.

Test conditions, every run: UCM test and RSICD/AID test, each with seen and unseen voices, both
directions; ``both`` also on the union of the two test splits (one gallery of 1,150 images).
Numbers are class-level (a hit is an image of the query's class, within the dataset searched).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ucm_benchmark import _progress_printer, _sysinfo, _train_seconds, _write_json  # noqa: E402

from dvan.data.collections import LabelPolicy  # noqa: E402
from dvan.train.config import TrainConfig, make_train_config  # noqa: E402

WORK = ROOT / "benchmarks" / "work"
UCM = WORK / "ucm_spoken" / "manifest.jsonl"
UCM_UNSEEN = WORK / "ucm_spoken" / "manifest_unseen.jsonl"
RSICD = WORK / "rsicd_spoken" / "manifest.jsonl"
RSICD_UNSEEN = WORK / "rsicd_spoken" / "manifest_unseen.jsonl"
CACHE = WORK / "cache"
RUNS = WORK / "broad_runs"
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ROOT / "resources" / "models"
PREVIOUS_DEFAULT = MODELS / "default.safetensors"

#: UCM class -> AID class for places that are the same kind under other names (same-name classes,
#: e.g. beach/Beach or storagetanks/StorageTanks, merge without an alias).
ALIASES = {"baseballdiamond": "baseballfield", "harbor": "port", "parkinglot": "parking"}
#: Epochs of the full runs on the union (2.8x UCM's captions per epoch) and of the design-choice runs.
BROAD_EPOCHS = 8
#: Epochs of the longer schedule on the union (the 8-epoch run's val MAP was still rising at its end).
LONG_EPOCHS = 18
SHORT_EPOCHS = 3
PAPER_EPOCHS = 8
#: Table V (RSICD) of the paper, CNN+M and the best row per direction, percent.
PAPER_RSICD = {"CNN+M": {"A->I": 15.71, "I->A": 16.29}, "best": {"A->I": 15.71, "I->A": 17.84}}
DTBH_RSICD = {"A->I": 22.72, "I->A": 23.46}


def merged() -> LabelPolicy:
    """The label policy of the two-collection runs."""
    return LabelPolicy("merge", ALIASES)


def runs() -> dict[str, dict[str, Any]]:
    """Run name -> what it is, its manifests, label policy and training config."""
    plus = make_train_config("dvan-plus", epochs=BROAD_EPOCHS)
    short = replace(plus, epochs=SHORT_EPOCHS)
    return {
        "both": {"what": "dvan-plus on UCM + RSICD/AID (merged classes)", "manifests": [UCM, RSICD],
                 "labels": merged(), "config": plus},
        "both-long": {"what": f"dvan-plus on UCM + RSICD/AID (merged classes), {LONG_EPOCHS} epochs",
                      "manifests": [UCM, RSICD], "labels": merged(), "config": replace(plus, epochs=LONG_EPOCHS)},
        "rsicd": {"what": "dvan-plus on RSICD/AID only", "manifests": [RSICD], "labels": merged(), "config": plus},
        "paper-rsicd": {"what": "paper preset, CNN+M, on RSICD/AID only", "manifests": [RSICD], "labels": merged(),
                        "config": make_train_config("paper", "mfcc", epochs=PAPER_EPOCHS, patience=2)},
        "both-short": {"what": f"dvan-plus on both, merged classes with aliases, {SHORT_EPOCHS} epochs (reference)",
                       "manifests": [UCM, RSICD], "labels": merged(), "config": short},
        "both-short-separate": {"what": "classes kept apart per dataset (a UCM beach caption does not match an AID "
                                        "beach image in the loss)", "manifests": [UCM, RSICD],
                                "labels": LabelPolicy("separate"), "config": short},
        "both-short-seed1": {"what": "as both-short with another seed (run-to-run spread of the design runs)",
                             "manifests": [UCM, RSICD], "labels": merged(), "config": replace(short, seed=1)},
        "both-short-no-aliases": {"what": "classes merged by name only (harbor/port, parkinglot/parking, "
                                          "baseballdiamond/baseballfield stay apart)", "manifests": [UCM, RSICD],
                                  "labels": LabelPolicy("merge"), "config": short},
    }


#: Runs that may become the default model; the one with the best validation MAP is shipped.
DEFAULT_CANDIDATES = ("both", "both-long")


def chosen_run() -> str:
    """The default-model candidate with the best validation MAP (recorded in its checkpoint): never a test number."""
    from dvan.model.checkpoint import read_checkpoint_metadata

    val_maps = {}
    for name in DEFAULT_CANDIDATES:
        if checkpoint_of(name).is_file():
            _, info = read_checkpoint_metadata(checkpoint_of(name))
            val_maps[name] = float(info.get("val", {}).get("map", float("-inf")))
    if not val_maps:
        raise SystemExit(f"no default-model candidate trained yet; train one of {', '.join(DEFAULT_CANDIDATES)}")
    return max(val_maps, key=lambda name: val_maps[name])


def checkpoint_of(name: str) -> Path:
    """The checkpoint a run's evaluations use (``ucm``: the UCM benchmark's dvan-plus run, or its shipped copy)."""
    if name == "ucm":
        ucm_plus = WORK / "ucm_runs" / "plus" / "best.safetensors"
        return ucm_plus if ucm_plus.is_file() else RUNS / "ucm" / "best.safetensors"
    return RUNS / name / "best.safetensors"


def keep_ucm_model() -> None:
    """Keep the UCM-only default model as run ``ucm`` before an export replaces it."""
    from dvan.model.metadata import read_checkpoint_metadata

    target = RUNS / "ucm" / "best.safetensors"
    if target.is_file() or not PREVIOUS_DEFAULT.is_file():
        return
    _, info = read_checkpoint_metadata(PREVIOUS_DEFAULT)
    if isinstance(info.get("manifest"), str):  # trained on one collection: the UCM default
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PREVIOUS_DEFAULT, target)


def prepare(device: str) -> None:
    """Fill the feature cache: every image once, every caption under every audio config, augmented copies."""
    from dvan.data.features import FeatureCache
    from dvan.data.manifest import read_manifest
    from dvan.model.image_branch import create_backbone

    keep_ucm_model()
    cache = FeatureCache(CACHE)
    printer = _progress_printer("prepare")
    manifests = [m for m in (UCM, UCM_UNSEEN, RSICD, RSICD_UNSEEN) if m.is_file()]
    entries = [e for m in manifests for e in read_manifest(m)]
    images = sorted({e.image for e in entries})
    cache.image_features(images, "efficientnet-lite0", lambda: create_backbone("efficientnet-lite0", device),
                         progress=printer)
    configs: list[TrainConfig] = [r["config"] for r in runs().values()]
    train_audio = list(dict.fromkeys(e.audio for e in entries if e.split == "train"))
    for audio_config, augment in {(c.model.audio, c.augment) for c in configs if c.augment.speed_copies}:
        cache.audio_features(train_audio, [audio_config], augment, progress=printer)
    everything = list(dict.fromkeys(e.audio for e in entries))
    _, errors = cache.audio_features(everything, sorted({c.model.audio for c in configs}, key=str), progress=printer)
    print(f"features cached; {len(errors)} unreadable captions", flush=True)


def train_run(name: str, device: str) -> None:
    """Train (or reuse) one run."""
    from dvan.train.loop import train

    spec = runs()[name]
    result = train(spec["manifests"], spec["config"], RUNS / name, progress=_progress_printer(name), device=device,
                   cache_dir=CACHE, labels=spec["labels"])
    print(f"[{name}] best val MAP {100 * result.best_val['map']:.2f} at epoch {result.best_epoch}/{result.epochs} "
          f"({result.stop_reason}); train time {_train_seconds(result.log) / 60:.1f} min", flush=True)


def conditions(name: str) -> dict[str, list[Path]]:
    """Test condition -> manifests evaluated as one gallery."""
    out = {"ucm": [UCM], "ucm-unseen": [UCM_UNSEEN], "rsicd": [RSICD], "rsicd-unseen": [RSICD_UNSEEN]}
    if name in DEFAULT_CANDIDATES:
        out.update({"union": [UCM, RSICD], "union-unseen": [UCM_UNSEEN, RSICD_UNSEEN]})
    return out


def portable(value: Any) -> Any:
    """The same JSON with paths inside the repository made relative to it (results name no machine paths)."""
    if isinstance(value, str):
        return value.replace(f"{ROOT}{os.sep}", "")
    if isinstance(value, list):
        return [portable(v) for v in value]
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    return value


def evaluate_run(name: str, device: str) -> None:
    """Evaluate one run on every test condition into results/broad_<run>_<condition>.json.

    The design-choice runs are also scored on each collection's val split alone (``ucm-val``,
    ``rsicd-val``): their own val MAP over both collections counts relevance under their own label
    policy, so it cannot compare a run that keeps classes apart with one that merges them.
    """
    from dvan.eval.evaluate import evaluate

    checkpoint = checkpoint_of(name)
    if not checkpoint.is_file():
        print(f"[{name}] not trained yet; skipped", flush=True)
        return
    todo = {condition: (manifests, "test") for condition, manifests in conditions(name).items()}
    if name.startswith("both-short"):
        todo.update({"ucm-val": ([UCM], "val"), "rsicd-val": ([RSICD], "val")})
    for condition, (manifests, split) in todo.items():
        path = RESULTS / f"broad_{name}_{condition}.json"
        if path.is_file() and path.stat().st_mtime > checkpoint.stat().st_mtime:
            continue
        report = evaluate(checkpoint, manifests, split, device=device, cache_dir=CACHE, labels=merged())
        for direction in ("audio_to_image", "image_to_audio"):
            report[direction].pop("pr_curve", None)  # thousands of points per run; the PNGs hold them
        report["checkpoint"] = str(checkpoint.relative_to(ROOT)) if checkpoint.is_relative_to(ROOT) else checkpoint.name
        report["manifest"] = [str(m.relative_to(ROOT)) for m in manifests]
        if name in runs():
            log = RUNS / name / "train_log.jsonl"
            report["run"] = {"name": name, "what": runs()[name]["what"], "val": report["checkpoint_info"].get("val"),
                             "best_epoch": report["checkpoint_info"].get("epoch"),
                             "train_seconds": _train_seconds(log), "labels": runs()[name]["labels"].to_dict(),
                             "train_config": runs()[name]["config"].to_dict()}
        report["system"] = _sysinfo()
        _write_json(path, portable(report))
        print(f"[{name}] {condition}: MAP A->I {100 * report['audio_to_image']['map']:.2f} "
              f"I->A {100 * report['image_to_audio']['map']:.2f}", flush=True)


def calibrate(name: str, device: str) -> Path:
    """Fit Platt scaling on the run's validation split; evaluate the calibrated copy on every condition."""
    from dvan.eval.calibration import calibrate_checkpoint

    out = RUNS / name / "calibrated.safetensors"
    record = calibrate_checkpoint(checkpoint_of(name), runs()[name]["manifests"], out, "val", device=device,
                                  cache_dir=CACHE, labels=merged())
    print(f"[{name}] calibration {record}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the stages named on the command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("stage", choices=["prepare", "train", "evaluate", "calibrate", "report", "export", "text",
                                          "all"])
    parser.add_argument("runs", nargs="*", help="run names for train/evaluate (default: all)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    names = args.runs or list(runs())
    needed = {m for name in names if name in runs() for m in runs()[name]["manifests"]} \
        if args.stage == "train" else {UCM, UCM_UNSEEN, RSICD, RSICD_UNSEEN}
    missing = sorted(str(m) for m in needed if not m.is_file())
    if missing and args.stage not in ("report", "prepare"):
        print(f"missing spoken corpora: {', '.join(missing)}; run benchmarks/ucm_speak.py and "
              "benchmarks/rsicd_speak.py first", file=sys.stderr)
        return 1
    stages = ["prepare", "train", "evaluate", "calibrate", "report"] if args.stage == "all" else [args.stage]
    started = time.monotonic()
    for stage in stages:
        if stage == "prepare":
            prepare(args.device)
        elif stage == "train":
            for name in names:
                if name in runs():
                    train_run(name, args.device)
        elif stage == "evaluate":
            keep_ucm_model()
            for name in (["ucm", *names] if not args.runs else names):
                evaluate_run(name, args.device)
        elif stage == "calibrate":
            from broad_report import evaluate_calibrated

            run = chosen_run()
            evaluate_calibrated(run, calibrate(run, args.device), args.device)
        elif stage == "report":
            from broad_report import write_report

            print(f"wrote {write_report()}")
        elif stage == "export":
            export()
        elif stage == "text":
            add_text_branch(args.device)
    print(f"done in {(time.monotonic() - started) / 60:.1f} min", flush=True)
    return 0


def export() -> None:
    """Ship the calibrated candidate chosen on validation as the default model (float16), with its card beside it."""
    import torch

    from dvan.model.checkpoint import save_checkpoint
    from dvan.model.factory import create_model

    keep_ucm_model()
    run = chosen_run()
    bundle = create_model(checkpoint=RUNS / run / "calibrated.safetensors", device="cpu")
    info = {**bundle.info, "source_run": run, "dtype": "float16", "init_checkpoint": None,
            "manifest": ["spoken UCM (benchmarks/ucm_speak.py)", "spoken RSICD/AID (benchmarks/rsicd_speak.py)"],
            "benchmark": "benchmarks/broad_benchmark.py; benchmarks/results/broad.md"}
    info["calibration"] = {k: v for k, v in info.get("calibration", {}).items() if k != "manifest"}
    target = MODELS / "default.safetensors"
    save_checkpoint(bundle.model, target, info=info, dtype=torch.float16)
    reloaded = create_model(checkpoint=target, device="cpu")  # proves it loads
    headline = {f"test_{condition}": {"a2i_map": report["audio_to_image"]["map"],
                                      "i2a_map": report["image_to_audio"]["map"], "p@10_a2i": report["audio_to_image"]["p@10"],
                                      "mR": report["pairs"]["mR"], "ece": report.get("calibration", {}).get("ece")}
                for condition in conditions(run)
                if (path := RESULTS / f"broad_{run}_{condition}.json").is_file()
                for report in [json.loads(path.read_text())]}
    card = {"model": str(target.relative_to(ROOT)), "size_bytes": target.stat().st_size, "dtype": "float16",
            "preset": info.get("preset"), "config": reloaded.config.to_dict(), "train_config": info.get("train_config"),
            "trained_on": "spoken UCM + spoken RSICD/AID train splits (18 TTS voices), classes merged by name plus "
                          f"aliases {ALIASES}, early stopping on the val MAP of both",
            "backbone": "efficientnet-lite0 (ImageNet), frozen", "val": info.get("val"),
            "calibration": info["calibration"], "units": "fraction", **headline,
            "commands": ["python benchmarks/ucm_speak.py", "python benchmarks/rsicd_speak.py",
                         "OMP_NUM_THREADS=1 python benchmarks/broad_benchmark.py all",
                         "python benchmarks/broad_benchmark.py export"]}
    _write_json(MODELS / "default.json", card)
    print(f"exported {target} ({target.stat().st_size / 1e6:.1f} MB) and {MODELS / 'default.json'}", flush=True)


def add_text_branch(device: str) -> None:
    """Give the exported default model a text branch (typed queries), trained on both corpora's words.

    ``dvan train-text`` picks the default mode on validation with the manifests' words, i.e. a
    perfect transcript; the recogniser's transcripts of unseen voices are far from that
    (``benchmarks/results/query.md``), so the shipped default mode stays ``audio`` and the choice
    made on words is kept in the branch's info.
    """
    from dataclasses import replace as replace_config

    from dvan.cli.main import main as dvan
    from dvan.query.text import read_text_branch, write_with_text_branch

    trained = WORK / "text" / f"{chosen_run()}_text.safetensors"  # trained against that run's audio/image branches
    if not trained.is_file():
        code = dvan(["train-text", str(MODELS / "default.safetensors"), str(UCM), str(RSICD), str(trained),
                     "--epochs", "8", "--cache-dir", str(CACHE), "--device", device, "--quiet"])
        if code:
            raise SystemExit(code)
    branch = read_text_branch(trained)
    assert branch is not None
    info = {**portable(branch.config.info), "mode_chosen_on_manifest_words": branch.config.default_mode}
    shipped = replace(branch, config=replace_config(branch.config, default_mode="audio", info=info))
    write_with_text_branch(MODELS / "default.safetensors", shipped, MODELS / "default.safetensors")
    print(f"text branch added to {MODELS / 'default.safetensors'}: validation {info.get('val_map')}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
