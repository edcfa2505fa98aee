"""Query understanding on spoken UCM: class-level MAP per query mode, and the transcripts' word error rate.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/query_benchmark.py CHECKPOINT \\
        [--ucm benchmarks/work/ucm_spoken] [--cache-dir DIR] [--captions-per-image K] [--conditions ...]

CHECKPOINT is a model with a text branch (``dvan train-text``). Conditions (test split only):

* ``seen``     the test captions read by the training voices (``manifest.jsonl``);
* ``unseen``   read by the 7 held-out voices (``manifest_unseen.jsonl``);
* ``noise20`` / ``noise10``  the unseen-voice captions with 0.5 s of noise before and after the
  speech and white noise over it at 20 / 10 dB SNR (seeded per file, written under the work folder);
* ``phrases``  short user-style queries of ``benchmarks/query_phrases.json`` (5 per class), each
  test image of a class given one of them, spoken by the unseen voices with ``dvan speak``.

Modes: ``audio``, ``text`` and ``hybrid`` reading the recogniser's transcripts, and ``text`` reading
the manifest's words (a perfect transcript: what recognition errors cost). ``--captions-per-image K``
keeps the first K captions of each test image (the gallery stays all 210 test images) to bound
the recogniser's time. Results: ``benchmarks/results/query.md`` and ``query.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
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
CONDITIONS = ("seen", "unseen", "noise20", "noise10", "phrases")
#: (mode, words) columns of the table.
RUNS = (("audio", "transcript"), ("text", "transcript"), ("hybrid", "transcript"), ("text", "manifest"))
#: The columns without the recogniser (--no-transcripts): the words are the manifest's.
RUNS_MANIFEST = (("audio", "transcript"), ("text", "manifest"), ("hybrid", "manifest"))


def subset(entries: list[ManifestEntry], per_image: int) -> list[ManifestEntry]:
    """The test captions, at most ``per_image`` per image, in manifest order."""
    kept: list[ManifestEntry] = []
    count: dict[Path, int] = {}
    for entry in entries:
        if entry.split != "test" or count.get(entry.image, 0) >= per_image:
            continue
        count[entry.image] = count.get(entry.image, 0) + 1
        kept.append(entry)
    return kept


def add_noise(source: Path, target: Path, snr_db: float, seed: int, pad_s: float = 0.5) -> None:
    """``source`` with ``pad_s`` of noise before and after and white noise over all of it at ``snr_db``."""
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


def condition_manifest(name: str, ucm: Path, work: Path, per_image: int) -> Path:
    """The test manifest of one condition, written under ``work``."""
    from dataclasses import replace

    if name == "phrases":
        return phrases_manifest(ucm, work)
    source = ucm / ("manifest.jsonl" if name == "seen" else "manifest_unseen.jsonl")
    entries = subset(read_manifest(source), per_image)
    if name.startswith("noise"):
        snr = float(name.removeprefix("noise"))
        noisy = []
        for i, entry in enumerate(entries):
            target = work / name / "audio" / f"{i:05d}.wav"
            add_noise(entry.audio, target, snr, seed=i)
            noisy.append(replace(entry, audio=target.resolve()))
        entries = noisy
    return write_manifest(work / name / "manifest.jsonl", entries)


def phrases_manifest(ucm: Path, work: Path) -> Path:
    """Each test image of a class gets one of the class's phrases, spoken by the unseen voices."""
    from dvan.data.speak import SpeakConfig, speak_captions

    phrases = json.loads((ROOT / "benchmarks" / "query_phrases.json").read_text())["phrases"]
    test = [e for e in read_manifest(ucm / "manifest.jsonl") if e.split == "test"]
    images: dict[str, list[Path]] = {}
    for entry in test:
        if entry.image not in images.setdefault(entry.label, []):
            images[entry.label].append(entry.image)
    items = [{"image": str(image), "class": label, "split": "test",
              "captions": [phrases[label][k % len(phrases[label])]]}
             for label in sorted(images) for k, image in enumerate(images[label])]
    folder = work / "phrases"
    folder.mkdir(parents=True, exist_ok=True)
    captions = folder / "captions.json"
    captions.write_text(json.dumps({"dataset": "query phrases", "items": items}, indent=1), encoding="utf-8")
    speak_captions(captions, folder, SpeakConfig(voices=UNSEEN_VOICES, seed=11), jobs=2)
    return folder / "manifest.jsonl"


def main(argv: list[str] | None = None) -> int:
    """Evaluate every condition and mode; write the table and the JSON."""
    from dvan.eval.evaluate import evaluate

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--ucm", type=Path, default=ROOT / "benchmarks" / "work" / "ucm_spoken")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "query")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--captions-per-image", type=int, default=5)
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="query")
    parser.add_argument("--no-transcripts", action="store_true",
                        help="text and hybrid read the manifest's words (no recogniser; much faster on a CPU)")
    args = parser.parse_args(argv)
    machine = describe_machine()
    runs = RUNS_MANIFEST if args.no_transcripts else RUNS
    rows: dict[str, dict[str, Any]] = {}
    for name in args.conditions:
        manifest = condition_manifest(name, args.ucm, args.work, args.captions_per_image)
        rows[name] = {}
        for mode, words in runs:
            started = time.monotonic()
            report = evaluate(args.checkpoint, manifest, "test", args.device, args.cache_dir, mode=mode, words=words)
            key = mode if words == "transcript" else f"{mode} ({words} words)"
            rows[name][key] = {"a2i_map": report["audio_to_image"]["map"], "i2a_map": report["image_to_audio"]["map"],
                               "captions": report["counts"]["captions"], "wer": report.get("wer"),
                               "seconds": round(time.monotonic() - started, 1)}
            print(f"{name:8} {key:24} A->I MAP {100 * rows[name][key]['a2i_map']:6.2f}"
                  + (f"  WER {100 * report['wer']:.2f}" if report.get("wer") is not None else ""), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {"checkpoint": str(args.checkpoint), "captions_per_image": args.captions_per_image, "machine": machine,
              "rows": rows}
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    keys = [k if w == "transcript" else f"{k} ({w} words)" for k, w in runs]
    lines = ["# Query modes on spoken UCM (test split, class-level A->I MAP, percent)", "",
             f"Checkpoint `{Path(args.checkpoint).name}`; {args.captions_per_image} caption(s) per test image; "
             f"made by `benchmarks/query_benchmark.py`. Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} "
             f"cores, load average {', '.join(f'{x:.1f}' for x in machine.get('load_average') or [])}.", "",
             "| condition | captions | " + " | ".join(keys) + " | transcript WER |",
             "| --- | ---: | " + " | ".join("---:" for _ in keys) + " | ---: |"]
    for name, row in rows.items():
        wer = next((r["wer"] for r in row.values() if r.get("wer") is not None), None)
        lines.append(f"| {name} | {next(iter(row.values()))['captions']} | "
                     + " | ".join(f"{100 * row[k]['a2i_map']:.2f}" if k in row else "-" for k in keys)
                     + (f" | {100 * wer:.2f} |" if wer is not None else " | - |"))
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS / (args.out + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
