"""Speak the 10,500 UCM-captions sentences (2,100 images x 5) into the spoken UCM benchmark.

    .venv/bin/python benchmarks/ucm_speak.py [--captions ../shared/benchmark/ucm/captions.json]
        [--out benchmarks/work/ucm_spoken] [--jobs 2] [--seed 0]

The DVAN paper's audio captions are these sentences read aloud by several people; no recording is
public, so this script reads them with offline TTS voices (``dvan.data.speak``). It writes, under
``--out`` (git-ignored; audio is never committed):

* ``manifest.jsonl`` - all 10,500 captions of the standard split (train/val/test = 1680/210/210
  images), every split spoken by the SEEN voices. The "seen-voice" condition: test speakers also
  occur in training, as in the paper.
* ``manifest_unseen.jsonl`` - the same captions and the same train/val audio, but the 1,050 test
  captions are re-spoken by the UNSEEN voices, which never occur in train or val. The
  "unseen-voice" condition: does retrieval generalise to new speakers?
* ``READY`` - a note written last, once both manifests exist; ``stats.json`` - counts and durations.

Voice split (a voice is an engine voice plus, for espeak-ng, a variant):

* SEEN (18): espeak-ng accents en-us, en-gb, en-us-nyc, en-gb-x-gbclan, en-gb-x-gbcwmd with variants
  m1 m2 m3 m4 f1 f2 f3 Andy Annie klatt, and flite slt, awb, kal16.
* UNSEEN (7): espeak-ng accents en-gb-scotland, en-029, en-gb-x-rp with variants m5 m6 m7 f4 f5, and
  flite rms. Accents, variants and flite voices are disjoint from SEEN (checked below), so a held-out
  voice shares neither its accent nor its timbre with any training voice.

Each image's 5 captions get 5 different voices (a seeded permutation per image), rate 150-195
words/min and pitch -2..+2 semitones drawn per caption; no noise or reverb (augment at training
time if wanted). Rerunning reuses every finished file; a summary goes to benchmarks/results/ucm_speak.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dvan.data.manifest import read_manifest  # noqa: E402
from dvan.data.speak import SpeakConfig, SpeakReport, Voice, speak_captions  # noqa: E402
from dvan.progress import Progress  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# The workplace keeps the benchmark beside the repository; a clone elsewhere passes --captions or sets this variable.
DEFAULT_CAPTIONS = Path(os.environ.get("DVAN_UCM_CAPTIONS") or ROOT.parent / "shared" / "benchmark" / "ucm" / "captions.json")
DEFAULT_OUT = ROOT / "benchmarks" / "work" / "ucm_spoken"
RESULTS = ROOT / "benchmarks" / "results"

#: Voices of train, val and the seen-voice test set.
SEEN_VOICES: tuple[str, ...] = (
    "espeak:en-us+m1", "espeak:en-us+m3", "espeak:en-us+f1", "espeak:en-us+f3", "espeak:en-us+Andy",
    "espeak:en-us+klatt", "espeak:en-gb+m2", "espeak:en-gb+m4", "espeak:en-gb+f2", "espeak:en-gb+Annie",
    "espeak:en-us-nyc+m2", "espeak:en-us-nyc+f1", "espeak:en-gb-x-gbclan+m3", "espeak:en-gb-x-gbcwmd+f3",
    "espeak:en-gb-x-gbcwmd+m4", "flite:slt", "flite:awb", "flite:kal16",
)
#: Held-out voices of the unseen-voice test set: never used for train or val.
UNSEEN_VOICES: tuple[str, ...] = (
    "espeak:en-gb-scotland+m5", "espeak:en-gb-scotland+f4", "espeak:en-029+m7", "espeak:en-029+f5",
    "espeak:en-gb-x-rp+m6", "espeak:en-gb-x-rp+f5", "flite:rms",
)


def _parts(voices: tuple[str, ...]) -> tuple[set[str], set[str], set[str]]:
    """(espeak accents, espeak variants, flite voices) of a voice list."""
    accents, variants, flite = set(), set(), set()
    for spec in voices:
        voice = Voice.parse(spec)
        if voice.engine == "flite":
            flite.add(voice.name)
        else:
            accent, _, variant = voice.name.partition("+")
            accents.add(accent)
            variants.add(variant)
    return accents, variants, flite


def check_voice_split() -> None:
    """Fail loudly if a held-out voice shares an accent, variant or flite voice with the seen ones."""
    for seen, unseen, what in zip(_parts(SEEN_VOICES), _parts(UNSEEN_VOICES), ("accents", "variants", "flite"),
                                  strict=True):
        if seen & unseen:
            raise SystemExit(f"voice split is not disjoint: {what} {sorted(seen & unseen)} in both")


class LogProgress:
    """Prints a line every ``every`` captions (a log-friendly progress bar for nohup runs)."""

    def __init__(self, label: str, every: int = 500) -> None:
        self.label, self.every, self.started = label, every, time.monotonic()

    def __call__(self, report: Progress) -> None:
        if report.done % self.every and report.done != report.total:
            return
        elapsed = time.monotonic() - self.started
        rate = report.done / elapsed if elapsed > 0 else 0.0
        eta = (report.total or 0) - report.done
        print(f"[{self.label}] {report.done}/{report.total} in {elapsed:.0f} s "
              f"({rate:.1f}/s, about {eta / rate if rate else 0:.0f} s left)", flush=True)


def _durations(manifest: Path) -> dict[str, Any]:
    entries = read_manifest(manifest)
    seconds = np.array([sf.info(str(e.audio)).duration for e in entries])
    by_split = Counter(e.split for e in entries)
    voices: dict[str, Counter[str]] = {}
    for entry in entries:
        voices.setdefault(entry.split, Counter())[entry.speaker or "?"] += 1
    return {
        "entries": len(entries),
        "images": len({e.image for e in entries}),
        "by_split": dict(by_split),
        "voices_by_split": {split: dict(sorted(c.items())) for split, c in voices.items()},
        "seconds": {"min": round(float(seconds.min()), 2), "p10": round(float(np.percentile(seconds, 10)), 2),
                    "median": round(float(np.median(seconds)), 2),
                    "p90": round(float(np.percentile(seconds, 90)), 2), "max": round(float(seconds.max()), 2),
                    "total_hours": round(float(seconds.sum()) / 3600, 2)},
    }


def _report(report: SpeakReport, seconds: float) -> dict[str, Any]:
    return {"spoken": report.spoken, "reused": report.reused, "skipped": [s.__dict__ for s in report.skipped],
            "wall_seconds": round(seconds, 1), "manifest": str(report.manifest)}


def speak_corpus(captions: Path, out: Path, *, corpus: str, results_name: str, jobs: int = 2, seed: int = 0,
                 distinct: bool = False) -> int:
    """Speak one caption corpus in both voice conditions; write stats, the READY note and the results summary.

    Args:
        captions: the corpus's captions.json (UCM-captions schema).
        out: output folder (git-ignored).
        corpus: its name in the READY note.
        results_name: file name of the summary under benchmarks/results/.
        jobs: engine processes at once.
        seed: seed of every random choice.
        distinct: speak each distinct sentence of an image once.
    """
    check_voice_split()
    ready = out / "READY"
    ready.unlink(missing_ok=True)

    base_config = SpeakConfig(voices=SEEN_VOICES, seed=seed)
    unseen_config = SpeakConfig(voices=SEEN_VOICES, split_voices={"test": UNSEEN_VOICES}, seed=seed)
    started = time.monotonic()
    base = speak_captions(captions, out, base_config, manifest_name="manifest.jsonl", jobs=jobs, distinct=distinct,
                          progress=LogProgress("seen voices"))
    base_s = time.monotonic() - started
    print(base.summary(), flush=True)
    started = time.monotonic()
    unseen = speak_captions(captions, out, unseen_config, manifest_name="manifest_unseen.jsonl", jobs=jobs,
                            distinct=distinct, progress=LogProgress("unseen-voice test"))
    unseen_s = time.monotonic() - started
    print(unseen.summary(), flush=True)

    stats = {
        "captions": str(captions),
        "seed": seed,
        "distinct_sentences_only": distinct,
        "seen_voices": list(SEEN_VOICES),
        "unseen_voices": list(UNSEEN_VOICES),
        "runs": {"manifest.jsonl": _report(base, base_s), "manifest_unseen.jsonl": _report(unseen, unseen_s)},
        "manifest.jsonl": _durations(out / "manifest.jsonl"),
        "manifest_unseen.jsonl": _durations(out / "manifest_unseen.jsonl"),
        "machine": {"cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()), "jobs": jobs,
                    "python": platform.python_version()},
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary = {k: v for k, v in stats.items() if k != "captions"}
    for name in ("manifest.jsonl", "manifest_unseen.jsonl"):
        summary[name] = {k: v for k, v in stats[name].items() if k != "voices_by_split"}
    for run in summary["runs"].values():  # machine paths out: the caption file by name only
        run.pop("manifest", None)
        for skipped in run["skipped"]:
            skipped["where"] = skipped["where"].replace(str(captions), captions.name)
    (RESULTS / results_name).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    base_d, unseen_d = stats["manifest.jsonl"], stats["manifest_unseen.jsonl"]
    ready.write_text(
        f"Spoken {corpus} benchmark: complete.\n\n"
        f"manifest.jsonl         {base_d['entries']} captions, {base_d['images']} images, splits {base_d['by_split']};\n"
        "                       every split spoken by the SEEN voices (seen-voice condition).\n"
        f"manifest_unseen.jsonl  {unseen_d['entries']} captions; same train/val audio, the test captions\n"
        "                       re-spoken by the UNSEEN voices, never used in train/val.\n"
        f"SEEN voices ({len(SEEN_VOICES)}): {' '.join(SEEN_VOICES)}\n"
        f"UNSEEN voices ({len(UNSEEN_VOICES)}): {' '.join(UNSEEN_VOICES)}\n"
        f"audio: 16 kHz mono 16-bit WAV; durations (s) {base_d['seconds']}\n"
        f"seed {seed}; speaking took {base_s:.0f} s (seen) + {unseen_s:.0f} s (unseen test) with {jobs} jobs;\n"
        f"skipped captions: {len(base.skipped)} + {len(unseen.skipped)}. Details: stats.json.\n"
        "Read with dvan.data.manifest.read_manifest(path).\n",
        encoding="utf-8")
    print(f"wrote {ready}", flush=True)
    return 0


def speak_main(argv: list[str] | None, *, corpus: str, default_captions: Path, captions_variable: str,
               default_out: Path, results_name: str, distinct: bool = False) -> int:
    """The command line of a corpus-speaking benchmark: options, the captions check, then :func:`speak_corpus`."""
    parser = argparse.ArgumentParser(description=(sys.modules["__main__"].__doc__ or "").split("\n\n")[0])
    parser.add_argument("--captions", type=Path, default=default_captions, help=f"{corpus} captions.json")
    parser.add_argument("--out", type=Path, default=default_out, help="output folder (git-ignored)")
    parser.add_argument("--jobs", type=int, default=2, help="engine processes at once")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.captions.is_file():
        print(f"{args.captions}: no {corpus} captions file there; pass --captions PATH/TO/captions.json (the folder "
              f"that also holds the images) or set {captions_variable}", file=sys.stderr)
        return 1
    return speak_corpus(args.captions, args.out, corpus=corpus, results_name=results_name, jobs=args.jobs,
                        seed=args.seed, distinct=distinct)


def main(argv: list[str] | None = None) -> int:
    """Speak spoken UCM in both voice conditions."""
    return speak_main(argv, corpus="UCM", default_captions=DEFAULT_CAPTIONS, captions_variable="DVAN_UCM_CAPTIONS",
                      default_out=DEFAULT_OUT, results_name="ucm_speak.json")


if __name__ == "__main__":
    sys.exit(main())
