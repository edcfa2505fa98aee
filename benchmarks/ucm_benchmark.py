"""Spoken UCM benchmark: the paper's Table II/IV rows, the dvan-plus preset with its ablation, unseen voices.

Commands (from the repository root; each run trains on one core, the epochs of all runs add up to about 4 hours)::

    .venv/bin/python benchmarks/ucm_speak.py                      # spoken UCM -> benchmarks/work/ucm_spoken
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ucm_benchmark.py all
    # or stage by stage (each resumes; finished runs are reused):
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ucm_benchmark.py prepare   # image + audio feature cache
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ucm_benchmark.py paper     # Table IV rows, paper preset
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ucm_benchmark.py plus      # dvan-plus
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ucm_benchmark.py ablation  # one change at a time
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ucm_benchmark.py full      # winning changes, full budget
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ucm_benchmark.py unseen    # held-out voices
    .venv/bin/python benchmarks/ucm_benchmark.py report                      # results/ucm.md
    .venv/bin/python benchmarks/ucm_benchmark.py export                      # resources/models/default.*

Every run is ``dvan.train.train`` on ``benchmarks/work/ucm_spoken/manifest.jsonl`` (standard split:
1680/210/210 images x 5 captions, seen voices) into ``benchmarks/work/ucm_runs/<run>``, early
stopping on validation MAP, then ``dvan.eval.evaluate.evaluate`` on the test split, written to
``benchmarks/results/ucm_<run>.json``. It is the same as::

    dvan train benchmarks/work/ucm_spoken/manifest.jsonl benchmarks/work/ucm_runs/paper-mfcc --preset paper \
        --representation mfcc --cache-dir benchmarks/work/cache
    dvan eval benchmarks/work/ucm_runs/paper-mfcc/best.safetensors benchmarks/work/ucm_spoken/manifest.jsonl \
        --split test --json benchmarks/results/ucm_paper-mfcc.json --cache-dir benchmarks/work/cache

(ablation runs change one field of the dvan-plus config, which the CLI does not expose). The
unseen-voice condition evaluates the same checkpoints on ``manifest_unseen.jsonl``, whose test
captions are spoken by 7 voices that occur in neither train nor val.

Differences from the paper, stated in the report: the image backbone is EfficientNet-Lite0
(ImageNet, 1280-d) instead of VGG16 FC7 (4096-d), whose weights are not available offline; the
captions are spoken by TTS voices, not people; the paper's epochs, optimiser and batch size are
not given (ours are in ``dvan/train/config.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dvan.config import Representation  # noqa: E402
from dvan.train.config import AugmentConfig, TrainConfig, dvan_plus_audio, make_train_config  # noqa: E402

WORK = ROOT / "benchmarks" / "work"
SPOKEN = WORK / "ucm_spoken"
MANIFEST = SPOKEN / "manifest.jsonl"
UNSEEN = SPOKEN / "manifest_unseen.jsonl"
CACHE = WORK / "cache"
RUNS = WORK / "ucm_runs"
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ROOT / "resources" / "models"

#: The metrics of a Table IV row, in the paper's column order.
PAPER_METRICS = ("map", "p@1", "p@5", "p@10", "r@1", "r@5", "r@10", "f@1", "f@5", "f@10")


def _paper_row(a2i: list[float], i2a: list[float]) -> dict[str, dict[str, float]]:
    """One model's row of Table IV: direction -> metric -> percent."""
    return {"A->I": dict(zip(PAPER_METRICS, a2i, strict=True)), "I->A": dict(zip(PAPER_METRICS, i2a, strict=True))}


#: Table IV (UCM) of the paper, percent: model -> direction -> metric.
PAPER_TABLE_IV: dict[str, dict[str, dict[str, float]]] = {
    "CNN+SPEC": _paper_row([21.79, 19.42, 19.86, 19.23, 1.03, 5.26, 10.19, 1.95, 8.32, 13.32],
                           [26.25, 29.50, 25.52, 23.65, 1.55, 6.73, 12.48, 2.95, 10.66, 16.34]),
    "CNN+M": _paper_row([32.38, 32.37, 33.91, 34.34, 1.73, 9.00, 18.23, 3.28, 14.23, 23.82],
                        [36.79, 32.37, 33.29, 33.74, 1.72, 8.85, 17.96, 3.27, 13.99, 23.45]),
    "CNN+ΔM": _paper_row([23.62, 30.22, 23.31, 21.25, 1.61, 6.19, 11.27, 3.05, 9.79, 14.73],
                         [37.42, 36.93, 36.98, 35.11, 1.96, 9.81, 18.66, 3.72, 15.51, 24.36]),
    "CNN+Δ²M": _paper_row([26.34, 29.26, 22.59, 24.65, 1.55, 6.01, 13.12, 2.95, 9.50, 17.12],
                          [38.42, 42.21, 37.60, 35.90, 2.24, 9.98, 19.05, 4.26, 15.77, 24.89]),
}
#: Table II (matching accuracy, UCM column), percent.
PAPER_TABLE_II = {"CNN+SPEC": 72.90, "CNN+M": 83.21, "CNN+ΔM": 79.02, "CNN+Δ²M": 78.90}

#: Table IV rows: run name -> (paper model name, representation).
PAPER_ROWS: dict[str, tuple[str, Representation]] = {
    "paper-spectrogram": ("CNN+SPEC", "spectrogram"), "paper-mfcc": ("CNN+M", "mfcc"),
    "paper-delta": ("CNN+ΔM", "delta"), "paper-delta2": ("CNN+Δ²M", "delta2")}
#: Epoch budget of the paper rows on 2 CPU cores (early stopping usually ends them sooner).
PAPER_EPOCHS = 10
PAPER_PATIENCE = 2


def plus_config() -> TrainConfig:
    """The dvan-plus preset as shipped (40 log-mel bands)."""
    return make_train_config("dvan-plus")


def plus_mfcc_stack_config() -> TrainConfig:
    """dvan-plus as first built, on M + ΔM + Δ²M: the reference of the ablation and of the full-budget checks."""
    plus = plus_config()
    return replace(plus, model=replace(plus.model, audio=dvan_plus_audio("mfcc_stack")))


#: Epoch budget of every ablation run and of its reference, dvan-plus cut to the same budget.
ABLATION_EPOCHS = 6


def ablation_base() -> TrainConfig:
    """dvan-plus on M + ΔM + Δ²M with the ablation's shorter budget (the reference row of the ablation)."""
    return replace(plus_mfcc_stack_config(), epochs=ABLATION_EPOCHS)


def ablation_configs() -> dict[str, tuple[str, TrainConfig]]:
    """One change of dvan-plus at a time, all on the same short budget: run name -> (what changed, config)."""
    base = ablation_base()
    return {
        "plus-6ep": (f"dvan-plus on M + ΔM + Δ²M, {ABLATION_EPOCHS} epochs (reference of this table)", base),
        "plus-6ep-paper-loss": ("loss: the paper's balanced pair cross-entropy (eq. 6 on own image vs one "
                                "other-class image) instead of the in-batch loss", replace(base, loss="pair_ce")),
        "plus-6ep-pair-positives": ("in-batch positives: only the caption's own image, not all same-class images",
                                    replace(base, positives="pair")),
        "plus-6ep-nce-only": ("in-batch loss: softmax term only (no eq. 6 term over the B x B pairs)",
                              replace(base, loss="inbatch_nce")),
        "plus-6ep-no-augment": ("no augmentation (no speed/noise copies, time stretch or SpecAugment)",
                                replace(base, augment=AugmentConfig())),
        "plus-6ep-logmel": ("40 log-mel bands instead of M + ΔM + Δ²M (12 each)",
                            replace(base, model=replace(base.model, audio=dvan_plus_audio("spectrogram")))),
        "plus-6ep-paper1d": ("audio branch: the paper's Table I 1-D CNN over the flattened vector (36 x 512 "
                             "frames) instead of tconv's time-frequency convolutions pooled over time",
                             replace(base, model=replace(base.model, audio_branch="paper1d",
                                                         audio=replace(dvan_plus_audio("mfcc_stack"), layout="flat",
                                                                       max_frames=512)))),
    }


def full_budget_configs() -> dict[str, tuple[str, TrainConfig]]:
    """The changes whose 6-epoch ablation row beat the reference, rerun on the full budget.

    The log-mel change won on validation MAP here and became dvan-plus, so its run is ``plus``.
    """
    reference = plus_mfcc_stack_config()
    return {"plus-mfcc-stack": ("dvan-plus on M + ΔM + Δ²M (reference of this table; the first default)", reference),
            "plus-no-augment": ("no augmentation", replace(reference, augment=AugmentConfig())),
            "plus-nce-only": ("in-batch loss: softmax term only", replace(reference, loss="inbatch_nce")),
            "plus-mfcc-stack-seed1": ("the reference again with seed 1 (seed-to-seed spread)", replace(reference, seed=1)),
            "plus-seed1": ("dvan-plus (log-mel) again with seed 1 (seed-to-seed spread)", replace(plus_config(), seed=1))}


def paper_configs() -> dict[str, tuple[str, TrainConfig]]:
    """The Table IV rows with the paper preset."""
    return {name: (model, make_train_config("paper", representation, epochs=PAPER_EPOCHS, patience=PAPER_PATIENCE))
            for name, (model, representation) in PAPER_ROWS.items()}


def all_configs() -> dict[str, tuple[str, TrainConfig]]:
    """Every run of the benchmark."""
    return {**paper_configs(), "plus": ("dvan-plus as shipped", plus_config()), **ablation_configs(),
            **full_budget_configs()}


def _progress_printer(name: str):  # type: ignore[no-untyped-def]
    from dvan.progress import Progress

    state = {"last": 0.0}

    def report(progress: Progress) -> None:
        now = time.monotonic()
        final = progress.total is not None and progress.done >= progress.total
        if now - state["last"] > 30 or final or progress.stage == "train" and progress.message.startswith("epoch") \
                and "val MAP" in progress.message:
            state["last"] = now
            print(f"[{name}] {progress.stage} {progress.done}/{progress.total} {progress.message}", flush=True)

    return report


def run_one(name: str, config: TrainConfig, device: str) -> dict[str, Any]:
    """Train (or reuse) one run and evaluate it on the seen-voice test split."""
    from dvan.eval.evaluate import evaluate
    from dvan.train.loop import train

    out = RUNS / name
    result_path = RESULTS / f"ucm_{name}.json"
    started = time.monotonic()
    result = train(MANIFEST, config, out, progress=_progress_printer(name), device=device, cache_dir=CACHE)
    train_seconds = _train_seconds(out / "train_log.jsonl")
    report = evaluate(result.checkpoint, MANIFEST, "test", device=device, cache_dir=CACHE)
    report["run"] = {"name": name, "best_epoch": result.best_epoch, "epochs": result.epochs,
                     "stop_reason": result.stop_reason, "val": result.best_val, "train_seconds": train_seconds,
                     "train_config": config.to_dict(), "wall_seconds_this_call": round(time.monotonic() - started, 1)}
    _write_json(result_path, report)
    a2i, i2a = report["audio_to_image"], report["image_to_audio"]
    print(f"[{name}] test MAP A->I {100 * a2i['map']:.2f}  I->A {100 * i2a['map']:.2f}  "
          f"(val MAP {100 * result.best_val['map']:.2f}, epoch {result.best_epoch}/{result.epochs})", flush=True)
    return report


def run_unseen(name: str, device: str) -> dict[str, Any]:
    """Evaluate a trained run on the unseen-voice test split."""
    from dvan.eval.evaluate import evaluate

    report = evaluate(RUNS / name / "best.safetensors", UNSEEN, "test", device=device, cache_dir=CACHE)
    _write_json(RESULTS / f"ucm_{name}_unseen.json", report)
    print(f"[{name}] unseen voices: test MAP A->I {100 * report['audio_to_image']['map']:.2f}  "
          f"I->A {100 * report['image_to_audio']['map']:.2f}", flush=True)
    return report


def _train_seconds(log: Path) -> float:
    seconds = 0.0
    for line in log.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("event") == "epoch":
            seconds += record.get("seconds", 0.0)
    return round(seconds, 1)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(partial, path)


def prepare(device: str) -> None:
    """Fill the feature cache: every image once, every caption under every run's audio config."""
    from dvan.data.features import FeatureCache
    from dvan.data.manifest import read_manifest
    from dvan.model.image_branch import create_backbone

    cache = FeatureCache(CACHE)
    printer = _progress_printer("prepare")
    entries = read_manifest(MANIFEST)
    unseen = read_manifest(UNSEEN) if UNSEEN.is_file() else []
    images = sorted({e.image for e in entries})
    cache.image_features(images, "efficientnet-lite0", lambda: create_backbone("efficientnet-lite0", device),
                         progress=printer)
    configs = {c.model.audio for _, c in all_configs().values()}
    augmented = {(c.model.audio, c.augment) for _, c in all_configs().values() if c.augment.speed_copies}
    train_audio = [e.audio for e in entries if e.split == "train"]
    for audio_config, augment in augmented:
        cache.audio_features(train_audio, [audio_config], augment, progress=printer)
    everything = list(dict.fromkeys([e.audio for e in entries] + [e.audio for e in unseen]))
    _, errors = cache.audio_features(everything, sorted(configs, key=str), progress=printer)
    print(f"features cached; {len(errors)} unreadable captions", flush=True)


def _sysinfo() -> dict[str, Any]:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
            "machine": platform.machine(), "processor": platform.processor() or "unknown",
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def write_report() -> Path:
    """benchmarks/results/ucm.md from the JSON results."""
    keys = ["map", "p@1", "p@5", "p@10", "r@1", "r@5", "r@10", "f@1", "f@5", "f@10"]
    lines = ["# Spoken UCM benchmark", "",
             "Generated by `benchmarks/ucm_benchmark.py report` from `benchmarks/results/ucm_*.json` (every number, "
             "precision-recall curves included, is in those files). Percent. Test split of the standard UCM-captions "
             "split (210 images, 1,050 spoken captions); A→I: the captions query the 210 images, I→A: the images "
             "query the 1,050 captions; class-level relevance (same scene class), as in the paper.", "",
             "**Not the paper's setup in three ways**: the image backbone is EfficientNet-Lite0 (ImageNet, 1280-d) "
             "because VGG16 weights are not available offline (the paper: VGG16 FC7, 4096-d); the captions are read by "
             "18 TTS voices (espeak-ng, flite), not by people; the paper gives no optimiser, batch size or epochs "
             "(ours: `dvan/train/config.py`). MAP is over the full ranking (MAP@150 with equation 8's normalisation is "
             "in the JSON). F@K = 2PR/(P+R) on mean P@K and mean R@K, which reproduces the paper's F columns. Our "
             "R@K are lower than the paper's for equal P@K because each of our A→I queries has 10 relevant images "
             "and each I→A query 50 relevant captions; the paper's P/R ratios imply about 19.", ""]
    results = {p.stem[len("ucm_"):]: json.loads(p.read_text()) for p in sorted(RESULTS.glob("ucm_*.json"))
               if p.stem not in ("ucm_speak",)}
    lines += ["## Table IV (UCM): the paper's rows with the `paper` preset", "",
              "| task | model | source | " + " | ".join(k.upper() if k == "map" else k.upper().replace("@", "@")
                                                       for k in keys) + " |",
              "|---|---|---|" + "---|" * len(keys)]
    for direction, key in (("A→I", "audio_to_image"), ("I→A", "image_to_audio")):
        paper_key = "A->I" if key == "audio_to_image" else "I->A"
        for run, (model, _) in PAPER_ROWS.items():
            paper = PAPER_TABLE_IV[model][paper_key]
            lines.append(f"| {direction} | {model} | paper (VGG16) | " + " | ".join(f"{paper[k]:.2f}" for k in keys)
                         + " |")
            if run in results:
                ours = results[run][key]
                lines.append(f"| {direction} | {model} | ours (Lite0) | " + " | ".join(_pct(ours[k]) for k in keys)
                             + " |")
        if "plus" in results:
            ours = results["plus"][key]
            lines.append(f"| {direction} | **dvan-plus** | ours (Lite0) | " + " | ".join(_pct(ours[k]) for k in keys)
                         + " |")
    figure = _write_pr_figure(results)
    if figure is not None:
        lines += ["", f"Precision-recall curves of these rows (the paper's Fig. 2 layout): `{figure.name}`.", "",
                  f"![precision-recall curves]({figure.name})"]
    lines += ["", "## Table II (UCM): matching accuracy", "",
              "Accuracy of the k = 2 classifier on each test caption with its own image and with one random image of "
              "another class (balanced, threshold 0.5).", "", "| model | paper | ours |", "|---|---|---|"]
    for run, (model, _) in PAPER_ROWS.items():
        ours = _pct(results[run]["matching_accuracy"]) if run in results else "-"
        lines.append(f"| {model} | {PAPER_TABLE_II[model]:.2f} | {ours} |")
    if "plus" in results:
        lines.append(f"| dvan-plus | - | {_pct(results['plus']['matching_accuracy'])} |")
    lines += ["", "## All runs: headline numbers", "",
              "Val MAP: mean of both directions on the validation split (spoken by the training voices), the "
              "selection criterion; test and unseen-voice numbers are reported, never used to choose. Pair-level "
              "R@K: a hit is the caption's own image / one of the image's own captions; mR is their mean over "
              "R@1/5/10 of both directions.", "",
              "| run | val MAP | test MAP A→I | test MAP I→A | MAP@150 A→I | MAP@150 I→A | P@10 A→I | P@10 I→A "
              "| pair mR | matching acc. | best epoch / run | train time |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in all_configs():
        if run not in results:
            continue
        r = results[run]
        meta = r["run"]
        lines.append(f"| {run} | {_pct(meta['val']['map'])} | {_pct(r['audio_to_image']['map'])} | "
                     f"{_pct(r['image_to_audio']['map'])} | {_pct(r['audio_to_image']['map@150'])} | "
                     f"{_pct(r['image_to_audio']['map@150'])} | {_pct(r['audio_to_image']['p@10'])} | "
                     f"{_pct(r['image_to_audio']['p@10'])} | {_pct(r['pairs']['mR'])} | "
                     f"{_pct(r['matching_accuracy'])} | {meta['best_epoch']} / {meta['epochs']} "
                     f"({meta['stop_reason']}) | {meta['train_seconds'] / 60:.1f} min |")
    if "plus-6ep" in results:
        lines += ["", f"## Ablation of dvan-plus (one change at a time, {ABLATION_EPOCHS} epochs each)", "",
                  f"Every row trains {ABLATION_EPOCHS} epochs (cosine schedule over {ABLATION_EPOCHS}) to fit the CPU "
                  "budget; the shipped dvan-plus trains up to 12. Δ val is against the reference row. A change that "
                  "beats the reference on val MAP is rerun on the full budget in the next table.", ""]
        lines += _change_table(results, {run: change for run, (change, _) in ablation_configs().items()}, "plus-6ep")
    if "plus-mfcc-stack" in results:
        full = {run: change for run, (change, _) in full_budget_configs().items() if not run.endswith("-seed1")}
        full["plus"] = "40 log-mel bands instead of M + ΔM + Δ²M: adopted, this is dvan-plus as shipped"
        full |= {run: change for run, (change, _) in full_budget_configs().items() if run.endswith("-seed1")}
        lines += ["", "## Full budget: the changes that won the short ablation", "",
                  "Same budget as the shipped dvan-plus (up to 12 epochs, cosine schedule, best val epoch kept), "
                  "one change at a time against dvan-plus on M + ΔM + Δ²M. Decision record: log-mel, best on val "
                  "MAP, was adopted. Dropping augmentation also gained on val MAP and was not adopted: the validation "
                  "captions are read by the training voices, so val MAP cannot see voice robustness, which the "
                  "unseen-voice columns show augmentation buys (it was chosen before they were measured).", ""]
        lines += _change_table(results, full, "plus-mfcc-stack")
    unseen = {run: results[f"{run}_unseen"] for run in all_configs() if f"{run}_unseen" in results}
    if unseen:
        lines += ["", "## Unseen voices", "",
                  "Same checkpoints (trained on the 18 seen voices), test captions re-spoken by 7 held-out voices "
                  "(other accents, variants and a flite voice; `manifest_unseen.jsonl`).", "",
                  "| run | MAP A→I seen | MAP A→I unseen | drop | MAP I→A seen | MAP I→A unseen | drop |",
                  "|---|---|---|---|---|---|---|"]
        for run, r in unseen.items():
            if run not in results:
                continue
            seen = results[run]
            cells = []
            for key in ("audio_to_image", "image_to_audio"):
                s, u = seen[key]["map"], r[key]["map"]
                cells += [_pct(s), _pct(u), f"{100 * (s - u):.2f}"]
            lines.append(f"| {run} | " + " | ".join(cells) + " |")
    lines += ["", "## Commands", "", "```", "python benchmarks/ucm_speak.py",
              "OMP_NUM_THREADS=1 python benchmarks/ucm_benchmark.py all   # = prepare paper plus ablation full "
              "unseen report export", "```", "", "Per run, equivalently (paper rows and dvan-plus):", "", "```"]
    for run, (_, representation) in PAPER_ROWS.items():
        lines.append(f"dvan train benchmarks/work/ucm_spoken/manifest.jsonl benchmarks/work/ucm_runs/{run} "
                     f"--preset paper --representation {representation} --epochs {PAPER_EPOCHS} "
                     "--cache-dir benchmarks/work/cache   # patience 2 in the benchmark")
    lines.append("dvan train benchmarks/work/ucm_spoken/manifest.jsonl benchmarks/work/ucm_runs/plus --preset dvan-plus "
                 "--cache-dir benchmarks/work/cache")
    lines.append("dvan eval benchmarks/work/ucm_runs/RUN/best.safetensors benchmarks/work/ucm_spoken/manifest.jsonl "
                 "--split test --json benchmarks/results/ucm_RUN.json --pr-curve benchmarks/results/ucm_RUN.png "
                 "--cache-dir benchmarks/work/cache")
    lines.append("dvan eval benchmarks/work/ucm_runs/RUN/best.safetensors "
                 "benchmarks/work/ucm_spoken/manifest_unseen.jsonl --split test "
                 "--json benchmarks/results/ucm_RUN_unseen.json --cache-dir benchmarks/work/cache")
    lines += ["```", "", f"Machine: {json.dumps(_sysinfo())}", ""]
    path = RESULTS / "ucm.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _change_table(results: dict[str, dict[str, Any]], changes: dict[str, str], reference: str) -> list[str]:
    """Markdown rows: each run's change, val MAP and its difference to the reference run, test and unseen MAPs."""
    lines = ["| run | change | val MAP | Δ val | test MAP A→I | test MAP I→A | unseen MAP A→I | unseen MAP I→A |",
             "|---|---|---|---|---|---|---|---|"]
    reference_val = results[reference]["run"]["val"]["map"]
    for run, change in changes.items():
        if run not in results:
            continue
        r, u = results[run], results.get(f"{run}_unseen")
        val = r["run"]["val"]["map"]
        delta = "-" if run == reference else f"{100 * (val - reference_val):+.2f}"
        lines.append(f"| {run} | {change} | {_pct(val)} | {delta} | {_pct(r['audio_to_image']['map'])} | "
                     f"{_pct(r['image_to_audio']['map'])} | {_pct(u['audio_to_image']['map']) if u else '-'} | "
                     f"{_pct(u['image_to_audio']['map']) if u else '-'} |")
    return lines


def _write_pr_figure(results: dict[str, dict[str, Any]]) -> Path | None:
    """benchmarks/results/ucm_pr.png: test PR curves of the Table IV rows and dvan-plus on shared axes."""
    from dvan.eval.plots import plot_pr_comparison

    rows = {model: results[run] for run, (model, _) in PAPER_ROWS.items() if run in results}
    if "plus" in results:
        rows["dvan-plus"] = results["plus"]
    if not rows:
        return None
    return plot_pr_comparison(rows, RESULTS / "ucm_pr.png",
                              title="Spoken UCM, test split, class-level relevance (paper preset rows and dvan-plus)")


def export_default(run: str = "plus") -> Path:
    """Save a run's best model as resources/models/default.safetensors (float16) with its report beside it."""
    import torch

    from dvan.model.checkpoint import load_checkpoint, save_checkpoint
    from dvan.model.factory import create_model

    model, info = load_checkpoint(RUNS / run / "best.safetensors")
    seen = json.loads((RESULTS / f"ucm_{run}.json").read_text())
    unseen_path = RESULTS / f"ucm_{run}_unseen.json"
    unseen = json.loads(unseen_path.read_text()) if unseen_path.is_file() else None
    target = MODELS / "default.safetensors"
    info = {**info, "source_run": run, "dtype": "float16",
            "benchmark": "spoken UCM (benchmarks/ucm_benchmark.py; benchmarks/results/ucm.md)"}
    save_checkpoint(model, target, info=info, dtype=torch.float16)

    def headline(report: dict[str, Any]) -> dict[str, Any]:
        return {"audio_to_image": {k: v for k, v in report["audio_to_image"].items() if k != "pr_curve"},
                "image_to_audio": {k: v for k, v in report["image_to_audio"].items() if k != "pr_curve"},
                "pairs": report["pairs"], "matching_accuracy": report["matching_accuracy"],
                "counts": report["counts"]}

    bundle = create_model(checkpoint=target, device="cpu")  # proves it loads
    card = {"model": str(target.relative_to(ROOT)), "size_bytes": target.stat().st_size, "dtype": "float16",
            "preset": info.get("preset"), "config": bundle.config.to_dict(), "train_config": info.get("train_config"),
            "trained_on": "spoken UCM train split (8,400 captions, 18 TTS voices), early stopping on val MAP",
            "backbone": "efficientnet-lite0 (ImageNet), frozen", "val": info.get("val"),
            "test_seen_voices": headline(seen), "test_unseen_voices": headline(unseen) if unseen else None,
            "units": "fraction", "commands": ["OMP_NUM_THREADS=1 python benchmarks/ucm_benchmark.py all"]}
    _write_json(MODELS / "default.json", card)
    print(f"exported {target} ({target.stat().st_size / 1e6:.1f} MB) and {MODELS / 'default.json'}")
    return target


def main(argv: list[str] | None = None) -> int:
    """Run benchmark stages."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stages", nargs="+",
                        choices=["prepare", "paper", "plus", "ablation", "full", "unseen", "report", "export", "all",
                                 "run"])
    parser.add_argument("--runs", nargs="*", default=None, help="with 'run': which runs (names from all_configs)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if not MANIFEST.is_file():
        print(f"{MANIFEST} missing: run benchmarks/ucm_speak.py first", file=sys.stderr)
        return 1
    stages = ["prepare", "paper", "plus", "ablation", "full", "unseen", "report", "export"] if "all" in args.stages \
        else args.stages
    configs = all_configs()
    for stage in stages:
        if stage == "prepare":
            prepare(args.device)
        elif stage == "paper":
            for name, (_, config) in paper_configs().items():
                run_one(name, config, args.device)
        elif stage == "plus":
            run_one("plus", plus_config(), args.device)
        elif stage == "ablation":
            for name, (_, config) in ablation_configs().items():
                run_one(name, config, args.device)
        elif stage == "full":
            for name, (_, config) in full_budget_configs().items():
                run_one(name, config, args.device)
        elif stage == "run":
            for name in args.runs or []:
                run_one(name, configs[name][1], args.device)
        elif stage == "unseen":
            for name in configs:
                if (RUNS / name / "best.safetensors").is_file():
                    run_unseen(name, args.device)
        elif stage == "report":
            print(f"wrote {write_report()}")
        elif stage == "export":
            export_default()
    return 0


if __name__ == "__main__":
    sys.exit(main())
