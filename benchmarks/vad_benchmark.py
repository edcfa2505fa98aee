"""Voice activity: the energy rule and the front end's level trim against the trained Silero VAD.

    OMP_NUM_THREADS=1 python benchmarks/vad_benchmark.py [--model PATH] [--queries 30]

Queries: the first caption of ``--queries`` seeded test images of each spoken corpus (UC Merced and
RSICD/AID, ``benchmarks/work/*_spoken/manifest_unseen.jsonl``: voices never used in training). The
true speech span of each is where its clean TTS file is above -55 dBFS (10 ms frames; the
synthesiser's own edges are digital quiet). Each query is padded with 0.5-1.5 s (seeded) before
and after, and a noise covers the whole clip at an SNR against the speech's level:

* ``quiet``     room tone: white noise at -70 dBFS;
* ``white20`` / ``white10``  white noise at 20 / 10 dB SNR;
* ``fan10``     a recorded-like fan: pink (1/f) noise plus a 100 Hz hum with harmonics, 10 dB SNR;
* ``babble10``  babble-like: six other captions of the corpus, time-reversed and summed, 10 dB SNR.

Methods: ``none`` (only the front end's trim, which the model always applies: frames 40 dB below
the loudest cut from the ends), ``energy`` (:func:`dvan.audio.vad.energy_span`, the rule of
:func:`~dvan.audio.vad.detect_speech`) and ``silero`` (:mod:`dvan.audio.silero`). Measured:

* boundary error: |found - true| start and end in ms (median, 90th percentile), for ``none``
  the front end's trim;
* retrieval: class-level A->I MAP (audio mode, the default model; gallery: the sampled images of
  both corpora, a class of one corpus never matching the other's)
  after cutting to the span found, then the front end as in a search;
* false "no speech": speech clips :func:`dvan.audio.vad.check_speech` with the method refuses
  (energy: :func:`~dvan.audio.vad.detect_speech`'s rule; silero: under 0.2 s of speech segments);
* true "no speech": 2 s noise-only clips of each noise at the level it has in that condition,
  rejected.

Results: ``benchmarks/results/vad.md`` and ``vad.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import describe_machine  # noqa: E402
from benchmarks.query_benchmark import DATASETS, DEFAULT_MODEL, ROOT, SAMPLE_SEED, sample_images  # noqa: E402
from dvan.data.manifest import ManifestEntry, read_manifest  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
RATE = 16000
CONDITIONS = ("quiet", "white20", "white10", "fan10", "babble10")
METHODS = ("none", "energy", "silero")


def true_span(clean: np.ndarray, threshold_db: float = -55.0) -> tuple[int, int]:
    """First and last sample of the 10 ms frames of a clean utterance above ``threshold_db``."""
    frame = RATE // 100
    count = clean.size // frame
    rms = np.sqrt(np.mean(clean[: count * frame].reshape(count, frame).astype(np.float64) ** 2, axis=1))
    loud = np.flatnonzero(20 * np.log10(np.maximum(rms, 1e-10)) > threshold_db)
    return int(loud[0]) * frame, (int(loud[-1]) + 1) * frame


def speech_level(clean: np.ndarray) -> float:
    """RMS of the samples above -80 dBFS (the level the SNR is measured against)."""
    voiced = clean[np.abs(clean) > 1e-4]
    return float(np.sqrt(np.mean(voiced**2))) if voiced.size else 1e-3


def pink(count: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS 1/f noise (white noise shaped in the frequency domain)."""
    spectrum = np.fft.rfft(rng.normal(size=count))
    spectrum /= np.sqrt(np.maximum(np.arange(spectrum.size), 1.0))
    out = np.fft.irfft(spectrum, n=count)
    return out / (np.sqrt(np.mean(out**2)) + 1e-12)


def make_noise(kind: str, count: int, rng: np.random.Generator, others: list[np.ndarray]) -> np.ndarray:
    """Unit-RMS noise of one kind (``white``, ``fan`` or ``babble``)."""
    if kind == "white":
        return rng.normal(size=count)
    if kind == "fan":
        t = np.arange(count) / RATE
        hum = sum(np.sin(2 * np.pi * 100 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3))
        mix = pink(count, rng) + 0.5 * hum / np.sqrt(np.mean(hum**2))
        return mix / np.sqrt(np.mean(mix**2))
    talkers = [others[i][::-1] for i in rng.choice(len(others), size=min(6, len(others)), replace=False)]
    babble = np.zeros(count)
    for talker in talkers:
        offset = int(rng.integers(0, talker.size))
        babble += np.resize(np.roll(talker, offset), count)
    return babble / (np.sqrt(np.mean(babble**2)) + 1e-12)


def noise_for(condition: str, count: int, level: float, rng: np.random.Generator, others: list[np.ndarray]) -> np.ndarray:
    """The noise of a condition over ``count`` samples, scaled against speech at RMS ``level``."""
    if condition == "quiet":
        return rng.normal(size=count) * 10 ** (-70 / 20)
    kind = "".join(c for c in condition if c.isalpha())
    snr = float("".join(c for c in condition if c.isdigit()))
    return make_noise(kind, count, rng, others) * level / 10 ** (snr / 20)


def front_end_span(clip: np.ndarray, config: Any) -> tuple[int, int] | None:
    """Where the front end's level trim (``config.trim_db`` below the loudest frame) cuts ``clip``."""
    from dvan.audio import spectral

    kept = spectral.trim(clip, config.trim_db, config.n_fft, config.hop_length)
    if kept.size == 0:
        return None
    for start in range(0, clip.size, config.hop_length):
        if np.array_equal(clip[start:start + kept.size], kept):
            return start, start + kept.size
    return None


def span_of(method: str, clip: np.ndarray, config: Any) -> tuple[int, int] | None:
    """The speech span a method finds (``none``: the front end's trim)."""
    from dvan.audio.vad import speech_span

    return front_end_span(clip, config) if method == "none" else speech_span(clip, RATE, method)


def says_speech(method: str, clip: np.ndarray) -> bool:
    """Whether the app's speech check with ``method`` lets the clip be searched."""
    from dvan.audio.vad import check_speech

    return check_speech(clip, RATE, method).has_speech


def load_queries(count: int) -> tuple[list[ManifestEntry], dict[str, list[np.ndarray]]]:
    """Sampled unseen-voice test captions of every corpus, and their clean audio by corpus."""
    entries: list[ManifestEntry] = []
    audio: dict[str, list[np.ndarray]] = {}
    for dataset, corpus in DATASETS.items():
        chosen = sample_images(read_manifest(corpus / "manifest_unseen.jsonl"), "test", count)
        entries += chosen
        audio[dataset] = [sf.read(e.audio, dtype="float32")[0] for e in chosen]
    return entries, audio


def map_of(bundle: Any, gallery: Any, grids: list[np.ndarray], labels: np.ndarray, image_labels: np.ndarray) -> float:
    """Class-level A->I MAP of audio queries against a gallery."""
    import torch

    from dvan.eval.evaluate import encode_queries, split_metrics

    queries = encode_queries(bundle.model, grids, bundle.config.audio, bundle.device)
    with torch.no_grad():
        logits = bundle.model.fusion.cross_logits(gallery, queries).float().numpy()
    return float(split_metrics(logits, labels, image_labels, np.arange(len(labels)), curve=False)
                 ["audio_to_image"]["map"])


def main(argv: list[str] | None = None) -> int:
    """Run every condition and method; write vad.md and vad.json."""
    import torch

    from dvan.audio.features import waveform_features
    from dvan.data.features import FeatureCache
    from dvan.errors import AudioError
    from dvan.model.factory import create_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--queries", type=int, default=30, help="sampled test images per corpus")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "benchmarks" / "work" / "query2" / "cache")
    args = parser.parse_args(argv)
    bundle = create_model(checkpoint=args.model, device="cpu")
    config = bundle.config.audio
    entries, clean = load_queries(args.queries)
    cache = FeatureCache(args.cache_dir)
    features = cache.image_features([e.image for e in entries], bundle.config.backbone, lambda: bundle.backbone)
    with torch.no_grad():
        gallery = bundle.model.gallery_projection(torch.as_tensor(features, dtype=torch.float32))
    # one gallery per corpus: a class name may mean different scenes in each
    labels = np.asarray([f"{i < args.queries}:{e.label}" for i, e in enumerate(entries)])
    results: dict[str, Any] = {}
    for condition in CONDITIONS:
        rng = np.random.default_rng([SAMPLE_SEED, CONDITIONS.index(condition)])
        errors: dict[str, list[float]] = {m: [] for m in METHODS}
        missed = {m: 0 for m in METHODS}
        grids: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}
        false_silence = {m: 0 for m in METHODS if m != "none"}
        true_silence = {m: 0 for m in METHODS if m != "none"}
        for i in range(len(entries)):
            dataset = "ucm" if i < args.queries else "rsicd"
            speech = clean[dataset][i % args.queries]
            others = [a for j, a in enumerate(clean[dataset]) if j != i % args.queries]
            start_true, end_true = true_span(speech)
            before, after = (int(rng.uniform(0.5, 1.5) * RATE) for _ in range(2))
            clip = np.concatenate([np.zeros(before), speech, np.zeros(after)])
            level = speech_level(speech)
            clip = np.clip(clip + noise_for(condition, clip.size, level, rng, others), -1, 1).astype(np.float32)
            truth = (before + start_true, before + end_true)
            for method in METHODS:
                span = span_of(method, clip, config)
                if span is None:
                    missed[method] += 1
                    span = (0, clip.size)
                else:
                    errors[method] += [abs(span[0] - truth[0]) / RATE * 1000, abs(span[1] - truth[1]) / RATE * 1000]
                try:
                    found = waveform_features(clip[span[0]:span[1]], config, backend="numpy")
                    grids[method].append(found.grid[:, :, :found.frames])
                except AudioError:  # too little left to analyse: searched whole, as without a VAD
                    found = waveform_features(clip, config, backend="numpy")
                    grids[method].append(found.grid[:, :, :found.frames])
                if method in false_silence and not says_speech(method, clip):
                    false_silence[method] += 1
            only_noise = noise_for(condition, 2 * RATE, level, rng, others).astype(np.float32)
            for method in true_silence:
                true_silence[method] += not says_speech(method, only_noise)
        results[condition] = {m: {
            "boundary_ms_median": float(np.median(errors[m])) if errors[m] else None,
            "boundary_ms_p90": float(np.percentile(errors[m], 90)) if errors[m] else None,
            "no_span": missed[m],
            "a2i_map": map_of(bundle, gallery, grids[m], labels, labels),
            "false_no_speech": false_silence.get(m), "true_no_speech": true_silence.get(m)} for m in METHODS}
        print(condition, json.dumps(results[condition]), flush=True)
    write(args, results, len(entries))
    return 0


def write(args: argparse.Namespace, results: dict[str, Any], total: int) -> None:
    """vad.md and vad.json."""
    machine = describe_machine()
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"model": str(Path(args.model).resolve().relative_to(ROOT)) if Path(args.model).resolve().is_relative_to(ROOT)
               else Path(args.model).name, "queries": total, "sample_seed": SAMPLE_SEED, "machine": machine,
               "units": {"boundary": "ms", "a2i_map": "fraction", "no_speech": "clips"}, "conditions": results}
    lines = ["# Voice activity: front-end trim, energy rule, Silero VAD", "",
             f"{total} unseen-voice test captions ({args.queries} per corpus: UC Merced, RSICD/AID; seed "
             f"{SAMPLE_SEED}), each padded with 0.5-1.5 s before and after and covered by the condition's noise "
             "(see `benchmarks/vad_benchmark.py`: quiet = -70 dBFS room tone; white; fan = pink noise + 100 Hz "
             "hum; babble = six reversed captions summed; the number is the SNR in dB). MAP: class-level A->I, "
             "audio mode, the default model, gallery = the sampled images of both corpora (classes kept apart per "
             "corpus). False no-speech: speech "
             f"clips refused (of {total}); true no-speech: 2 s noise-only clips refused (of {total}). `none` is "
             "the front end's level trim alone (its boundaries are reported). Made by "
             f"`python benchmarks/vad_benchmark.py --queries {args.queries}`.", "",
             "| condition | method | boundary error median / p90 (ms) | no span | A->I MAP | false no-speech | "
             "true no-speech |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for condition, row in results.items():
        for method, cell in row.items():
            bound = (f"{cell['boundary_ms_median']:.0f} / {cell['boundary_ms_p90']:.0f}"
                     if cell["boundary_ms_median"] is not None else "-")
            lines.append(f"| {condition} | {method} | {bound} | {cell['no_span']} | {100 * cell['a2i_map']:.2f} | "
                         f"{'-' if cell['false_no_speech'] is None else cell['false_no_speech']} | "
                         f"{'-' if cell['true_no_speech'] is None else cell['true_no_speech']} |")
    for suffix, text in ((".json", json.dumps(payload, indent=1) + "\n"), (".md", "\n".join(lines) + "\n")):
        partial = RESULTS / f"vad{suffix}.partial"
        partial.write_text(text, encoding="utf-8")
        partial.replace(RESULTS / f"vad{suffix}")
    print("wrote benchmarks/results/vad.md and .json", flush=True)


if __name__ == "__main__":
    sys.exit(main())
