"""Query understanding on the shipped default model: class-level MAP per query mode, transcripts' WER.

    # the evaluation table (benchmarks/results/query.md and query.json)
    OMP_NUM_THREADS=1 python benchmarks/query_benchmark.py table [--model PATH] [--queries 100]
    # the default mode, chosen on validation spoken by unseen voices, written into the model
    OMP_NUM_THREADS=1 python benchmarks/query_benchmark.py select-mode [--model PATH] [--queries 100]

Datasets: spoken UC Merced (``benchmarks/work/ucm_spoken``) and RSICD/AID
(``benchmarks/work/rsicd_spoken``), made by ``benchmarks/ucm_speak.py`` and ``rsicd_speak.py``.
Each condition takes a seeded sample of ``--queries`` images of the split and one caption per image
(its first), so the gallery is the sampled images. Conditions (test split):

* ``seen``     the captions read by the training voices (``manifest.jsonl``);
* ``unseen``   read by the 7 held-out voices (``manifest_unseen.jsonl``);
* ``noise20`` / ``noise10``  the unseen-voice captions with 0.5 s of white noise before and after the
  speech and white noise over it at 20 / 10 dB SNR (seeded per file);
* ``phrases``  short user-style queries of ``benchmarks/query_phrases.json`` (5 per class), each
  sampled image given one of its class's, spoken by the unseen voices with ``dvan speak``.

Modes: ``audio``, ``text`` and ``hybrid`` reading Whisper's transcripts (the recogniser the app
runs), and ``text`` / ``hybrid`` reading the manifest's words (a perfect transcript: what the
recogniser's errors cost). Transcripts, sentence embeddings and features are cached under
``--work`` (default ``benchmarks/work/query2``), so a rerun is cheap.

``select-mode`` speaks a seeded sample of each dataset's *val* split with the unseen voices,
transcribes it, picks the hybrid weight on it (mean MAP over the datasets) and then the mode with
the best mean MAP, and rewrites the model's text branch in place (the audio model is untouched).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import describe_machine  # noqa: E402
from benchmarks.ucm_speak import UNSEEN_VOICES  # noqa: E402
from dvan.data.manifest import ManifestEntry, read_manifest, write_manifest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / "work"
DEFAULT_MODEL = ROOT / "resources" / "models" / "default.safetensors"
#: Spoken corpora by the name the tables use.
DATASETS = {"ucm": WORK / "ucm_spoken", "rsicd": WORK / "rsicd_spoken"}
DATASET_TITLES = {"ucm": "UC Merced", "rsicd": "RSICD/AID"}
#: In the order they run (the most telling first).
CONDITIONS = ("unseen", "phrases", "noise10", "noise20", "seen")
#: Columns of the table: (mode, words read by the text branch).
RUNS = (("audio", "-"), ("text", "transcript"), ("hybrid", "transcript"), ("text", "manifest"), ("hybrid", "manifest"))
SAMPLE_SEED = 2026


def sample_images(entries: list[ManifestEntry], split: str, count: int, seed: int = SAMPLE_SEED) -> list[ManifestEntry]:
    """The first caption of each of ``count`` images of ``split`` drawn with ``seed``, in manifest order."""
    first: dict[Path, ManifestEntry] = {}
    for entry in entries:
        if entry.split == split and entry.image not in first:
            first[entry.image] = entry
    images = list(first)
    if count < len(images):
        chosen = set(np.random.default_rng(seed).choice(len(images), size=count, replace=False).tolist())
        images = [image for i, image in enumerate(images) if i in chosen]
    return [first[image] for image in images]


def add_noise(source: Path, target: Path, snr_db: float, seed: int, pad_s: float = 0.5) -> None:
    """``source`` with ``pad_s`` of silence before and after and white noise over all of it at ``snr_db``.

    The SNR is against the speech level (RMS of the samples above -80 dBFS), so the padding does
    not lower it.
    """
    if target.is_file():
        return
    speech, rate = sf.read(source, dtype="float32", always_2d=False)
    rng = np.random.default_rng(seed)
    level = float(np.sqrt(np.mean(speech[np.abs(speech) > 1e-4] ** 2))) if np.any(np.abs(speech) > 1e-4) else 1e-3
    pad = np.zeros(int(pad_s * rate), dtype=np.float32)
    padded = np.concatenate([pad, speech, pad])
    noise = rng.normal(0.0, level / (10 ** (snr_db / 20)), padded.shape).astype(np.float32)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.stem + ".partial.wav")
    sf.write(partial, np.clip(padded + noise, -1, 1), rate, subtype="PCM_16")
    partial.replace(target)


def speak_entries(items: list[dict[str, Any]], folder: Path, seed: int) -> Path:
    """Speak caption items (``image``, ``class``, ``split``, ``captions``) with the unseen voices; the manifest."""
    from dvan.data.speak import SpeakConfig, speak_captions

    folder.mkdir(parents=True, exist_ok=True)
    captions = folder / "captions.json"
    captions.write_text(json.dumps({"dataset": folder.name, "items": items}, indent=1), encoding="utf-8")
    # Always speak: a rerun with another --queries changes the items, and speaking reuses every finished file.
    speak_captions(captions, folder, SpeakConfig(voices=UNSEEN_VOICES, seed=seed), jobs=1)
    return folder / "manifest.jsonl"


def condition_manifest(dataset: str, name: str, work: Path, count: int) -> Path:
    """The test manifest of one condition of one dataset, written under ``work``."""
    corpus = DATASETS[dataset]
    folder = work / dataset / name
    if name == "phrases":
        phrases = json.loads((ROOT / "benchmarks" / "query_phrases.json").read_text(encoding="utf-8"))["phrases"][dataset]
        sampled = sample_images(read_manifest(corpus / "manifest.jsonl"), "test", count)
        seen_per_class: dict[str, int] = {}
        items = []
        for entry in sampled:
            k = seen_per_class.get(entry.label, 0)
            seen_per_class[entry.label] = k + 1
            items.append({"image": str(entry.image), "class": entry.label, "split": "test",
                          "captions": [phrases[entry.label][k % len(phrases[entry.label])]]})
        return speak_entries(items, folder, seed=11)
    source = corpus / ("manifest.jsonl" if name == "seen" else "manifest_unseen.jsonl")
    entries = sample_images(read_manifest(source), "test", count)
    if name.startswith("noise"):
        snr = float(name.removeprefix("noise"))
        noisy = []
        for i, entry in enumerate(entries):
            # named by the source, not the position: another --queries samples other files
            target = folder / "audio" / f"{Path(entry.audio).stem}.wav"
            add_noise(entry.audio, target, snr, seed=i)
            noisy.append(replace(entry, audio=target.resolve()))
        entries = noisy
    return write_manifest(folder / "manifest.jsonl", entries)


def val_manifest(dataset: str, work: Path, count: int) -> Path:
    """A seeded sample of the val split of ``dataset``, spoken by the unseen voices (never used in training)."""
    sampled = sample_images(read_manifest(DATASETS[dataset] / "manifest.jsonl"), "val", count)
    items = [{"image": str(e.image), "class": e.label, "split": "val", "captions": [e.text]} for e in sampled]
    return speak_entries(items, work / dataset / "val_unseen", seed=13)


@dataclass
class Scored:
    """Query projections of one manifest split, ready to score in any mode."""

    audio: np.ndarray  # (A, d4) q_S
    transcript: np.ndarray  # (A, d4) q_T of Whisper's words
    manifest: np.ndarray  # (A, d4) q_T of the manifest's words
    gallery: Any  # torch (I, d4) gallery projections
    caption_labels: np.ndarray
    image_labels: np.ndarray
    caption_image: np.ndarray
    wer: float
    transcripts: list[dict[str, str]]

    def a2i_map(self, bundle: Any, queries: np.ndarray) -> float:
        """Class-level audio-to-image MAP of query projections."""
        import torch

        from dvan.eval.evaluate import split_metrics

        with torch.no_grad():
            q = torch.as_tensor(queries, dtype=torch.float32)
            logits = torch.cat([bundle.model.fusion.cross_logits(self.gallery, q[i:i + 64]).float()
                                for i in range(0, q.shape[0], 64)]).numpy()
        report = split_metrics(logits, self.caption_labels, self.image_labels, self.caption_image, curve=False)
        return float(report["audio_to_image"]["map"])


def project(bundle: Any, manifest: Path, split: str, cache_dir: Path) -> Scored:
    """Audio, transcript and manifest-word query projections of a manifest's split."""
    import torch

    from dvan.data.features import FeatureCache
    from dvan.data.split import load_split
    from dvan.eval.evaluate import encode_queries
    from dvan.eval.wer import word_error_rate
    from dvan.query.text import embed_texts
    from dvan.query.transcribe import get_recogniser, transcribe_files

    cache = FeatureCache(cache_dir)
    data = load_split(read_manifest(manifest), split, bundle.config, cache, lambda: bundle.backbone)
    branch = bundle.text_branch
    audio_q = encode_queries(bundle.model, data.audio, bundle.config.audio, bundle.device).float().cpu().numpy()
    heard = transcribe_files([e.audio for e in data.captions], get_recogniser("cpu"), cache.root)
    words = [str(e.text) for e in data.captions]
    transcript_q = branch.project(embed_texts([t if t.strip() else "." for t in heard], "cpu", cache.root))
    manifest_q = branch.project(embed_texts(words, "cpu", cache.root))
    with torch.no_grad():
        gallery = bundle.model.gallery_projection(torch.as_tensor(data.image_features, dtype=torch.float32))
    return Scored(audio_q, transcript_q, manifest_q, gallery, data.caption_labels, data.image_labels,
                  data.caption_image, word_error_rate(words, heard),
                  [{"said": w, "heard": h} for w, h in zip(words, heard, strict=True)])


def mode_maps(bundle: Any, scored: Scored, weight: float) -> dict[str, float]:
    """A->I MAP of every column of the table at hybrid weight ``weight`` (the audio share)."""
    from dvan.query.text import combine

    out = {"audio": scored.a2i_map(bundle, scored.audio)}
    for words, text_q in (("transcript", scored.transcript), ("manifest", scored.manifest)):
        out[f"text ({words})"] = scored.a2i_map(bundle, text_q)
        out[f"hybrid ({words})"] = scored.a2i_map(bundle, combine("hybrid", scored.audio, text_q, weight))
    return out


def load_model(path: Path) -> Any:
    """The model with its text branch, on the CPU."""
    from dvan.model.factory import create_model
    from dvan.query.text import require_text_branch

    bundle = create_model(checkpoint=path, device="cpu")
    require_text_branch(bundle.text_branch, path, "hybrid")
    return bundle


def _stamp(args: argparse.Namespace) -> dict[str, Any]:
    return {"model": _display(args.model), "queries_per_condition": args.queries, "sample_seed": SAMPLE_SEED,
            "machine": describe_machine()}


def _display(path: Path) -> str:
    """``path`` relative to the repository when inside it (results name no machine paths)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return Path(path).name


def _write(name: str, result: dict[str, Any], lines: list[str]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(result, indent=1) + "\n"), (".md", "\n".join(lines) + "\n")):
        partial = RESULTS / f"{name}{suffix}.partial"
        partial.write_text(text, encoding="utf-8")
        partial.replace(RESULTS / f"{name}{suffix}")
    print(f"wrote benchmarks/results/{name}.md and .json", flush=True)


def run_table(args: argparse.Namespace) -> int:
    """Every dataset, condition and mode on the test split; query.md and query.json."""
    bundle = load_model(args.model)
    config = bundle.text_branch.config
    rows: dict[str, dict[str, Any]] = {}
    for name in args.conditions:
        for dataset in args.datasets:
            started = time.monotonic()
            manifest = condition_manifest(dataset, name, args.work, args.queries)
            scored = project(bundle, manifest, "test", args.work / "cache")
            maps = mode_maps(bundle, scored, config.hybrid_weight)
            rows[f"{dataset}/{name}"] = {"queries": len(scored.caption_labels), "images": len(scored.image_labels),
                                         "a2i_map": maps, "wer": scored.wer,
                                         "seconds": round(time.monotonic() - started, 1),
                                         "transcripts": scored.transcripts[:20]}
            print(f"{dataset:6} {name:8} " + "  ".join(f"{k} {100 * v:.2f}" for k, v in maps.items())
                  + f"  WER {100 * scored.wer:.1f}", flush=True)
            write_table(args, config, rows)
    return 0


def write_table(args: argparse.Namespace, config: Any, rows: dict[str, dict[str, Any]]) -> None:
    """query.md and query.json of the rows done so far (rewritten after each, so a long run leaves results)."""
    keys = list(next(iter(rows.values()))["a2i_map"])
    result = {**_stamp(args), "hybrid_weight": config.hybrid_weight, "default_mode": config.default_mode,
              "units": "fraction", "rows": rows}
    machine = result["machine"]
    lines = ["# Query modes on the shipped default model (test splits, class-level A->I MAP, percent)", "",
             f"Model `{_display(args.model)}` (default mode `{config.default_mode}`, hybrid weight "
             f"{config.hybrid_weight:g} = audio share). Each row: a seeded sample (seed {SAMPLE_SEED}) of "
             f"{args.queries} test images, one caption (or user phrase) per image, the gallery being those images. "
             "`transcript` columns read Whisper tiny.en's words, `manifest` columns the true words. "
             "Noise: white, 0.5 s before and after the speech and over it, at the SNR named. "
             f"Made by `python benchmarks/query_benchmark.py table --queries {args.queries}`. Machine: "
             f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, no GPU, load average "
             f"{', '.join(f'{x:.1f}' for x in machine.get('load_average') or [])}.", "",
             "| dataset | condition | queries | " + " | ".join(keys) + " | transcript WER |",
             "| --- | --- | ---: | " + " | ".join("---:" for _ in keys) + " | ---: |"]
    for key, row in rows.items():
        dataset, name = key.split("/")
        lines.append(f"| {DATASET_TITLES[dataset]} | {name} | {row['queries']} | "
                     + " | ".join(f"{100 * row['a2i_map'][k]:.2f}" for k in keys) + f" | {100 * row['wer']:.1f} |")
    _write(args.out, result, lines)


def run_select_mode(args: argparse.Namespace) -> int:
    """Pick the hybrid weight and the default mode on unseen-voice validation; rewrite the text branch."""
    from dvan.query.text import combine, write_with_text_branch
    from dvan.train.text import HYBRID_GRID

    bundle = load_model(args.model)
    per_dataset: dict[str, dict[str, Any]] = {}
    grid_maps: dict[float, list[float]] = {w: [] for w in HYBRID_GRID}
    for dataset in args.datasets:
        scored = project(bundle, val_manifest(dataset, args.work, args.queries), "val", args.work / "cache")
        maps = {w: scored.a2i_map(bundle, combine("hybrid", scored.audio, scored.transcript, w) if 0 < w < 1
                                  else (scored.audio if w == 1 else scored.transcript)) for w in HYBRID_GRID}
        for w, value in maps.items():
            grid_maps[w].append(value)
        per_dataset[dataset] = {"queries": len(scored.caption_labels), "wer": round(scored.wer, 6),
                                "a2i_map_by_audio_share": {str(w): round(v, 6) for w, v in maps.items()},
                                "text_manifest_words": round(scored.a2i_map(bundle, scored.manifest), 6)}
        print(f"{dataset}: WER {100 * scored.wer:.1f}; " + " ".join(f"{w:g}:{100 * v:.2f}" for w, v in maps.items()),
              flush=True)
    mean = {w: float(np.mean(v)) for w, v in grid_maps.items()}
    weight = max((w for w in HYBRID_GRID if 0 < w < 1), key=lambda w: mean[w])
    scores = {"audio": mean[1.0], "text": mean[0.0], "hybrid": mean[weight]}
    mode = max(scores, key=lambda m: scores[m])
    branch = bundle.text_branch
    info = {**branch.config.info, "mode_selection": {
        "split": "val", "voices": "unseen", "words": "Whisper tiny.en transcripts", "queries_per_dataset": args.queries,
        "sample_seed": SAMPLE_SEED, "mean_a2i_map": {k: round(v, 6) for k, v in scores.items()},
        "command": "python benchmarks/query_benchmark.py select-mode"}}
    chosen = replace(branch, config=replace(branch.config, default_mode=mode, hybrid_weight=float(weight), info=info))
    write_with_text_branch(args.model, chosen, args.model)
    print(f"default mode {mode} (hybrid weight {weight:g}); mean val MAP "
          + ", ".join(f"{k} {100 * v:.2f}" for k, v in scores.items()), flush=True)
    update_card(args.model, mode, weight, scores)
    result = {**_stamp(args), "chosen_mode": mode, "hybrid_weight": weight, "units": "fraction",
              "mean_a2i_map": scores, "datasets": per_dataset}
    lines = ["# Default query mode, chosen on validation spoken by unseen voices", "",
             f"Model `{_display(args.model)}`; per dataset a seeded sample (seed {SAMPLE_SEED}) of {args.queries} val "
             "images, one caption each, spoken by the 7 held-out voices and transcribed by Whisper tiny.en; "
             "class-level A->I MAP (percent) with the sampled images as gallery. The hybrid weight (audio share) "
             "maximises the mean over datasets; the mode with the best mean is written into the model. Made by "
             f"`python benchmarks/query_benchmark.py select-mode --queries {args.queries}`.", "",
             "| dataset | queries | WER | audio | text | hybrid (chosen weight) | text (true words) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for dataset, row in per_dataset.items():
        by = row["a2i_map_by_audio_share"]
        lines.append(f"| {DATASET_TITLES[dataset]} | {row['queries']} | {100 * row['wer']:.1f} | {100 * by['1.0']:.2f} "
                     f"| {100 * by['0.0']:.2f} | {100 * by[str(weight)]:.2f} | {100 * row['text_manifest_words']:.2f} |")
    lines += [f"| mean | | | {100 * scores['audio']:.2f} | {100 * scores['text']:.2f} | {100 * scores['hybrid']:.2f} | |",
              "", f"Chosen: **{mode}** (hybrid weight {weight:g})."]
    _write(args.out, result, lines)
    return 0


def update_card(model: Path, mode: str, weight: float, scores: dict[str, float]) -> None:
    """Record the choice in the model's card (``default.json`` beside the shipped default), if it has one."""
    card_path = Path(model).resolve().with_suffix(".json")
    if Path(model).resolve() != DEFAULT_MODEL.resolve() or not card_path.is_file():
        return
    card = json.loads(card_path.read_text(encoding="utf-8"))
    branch = card.setdefault("text_branch", {})
    branch.pop("why_default_audio", None)
    branch.update({"hybrid_weight": weight, "default_mode": mode,
                   "chosen_on": "val split spoken by the unseen voices, Whisper transcripts "
                                "(benchmarks/results/query_mode.md)",
                   "val_map_a2i_unseen_voices": {k: round(v, 6) for k, v in scores.items()}})
    commands = card.setdefault("commands", [])
    if "python benchmarks/query_benchmark.py select-mode" not in commands:
        commands.append("python benchmarks/query_benchmark.py select-mode")
    partial = card_path.with_name(card_path.name + ".partial")
    partial.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    partial.replace(card_path)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one stage."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    stages = parser.add_subparsers(dest="stage", required=True)
    for stage, out in (("table", "query"), ("select-mode", "query_mode")):
        sub = stages.add_parser(stage)
        sub.add_argument("--model", type=Path, default=DEFAULT_MODEL)
        sub.add_argument("--work", type=Path, default=WORK / "query2", help="spoken sets and caches")
        sub.add_argument("--queries", type=int, default=100, help="sampled images (one query each) per condition")
        sub.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=list(DATASETS))
        sub.add_argument("--out", default=out, help="name of the results files under benchmarks/results")
        if stage == "table":
            sub.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS))
    args = parser.parse_args(argv)
    return run_table(args) if args.stage == "table" else run_select_mode(args)


if __name__ == "__main__":
    sys.exit(main())
