"""``dvan speak``: turn text captions into spoken captions (WAVs plus a manifest) with offline TTS."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dvan.data.voices import DEFAULT_VOICES
from dvan.errors import SpeechError
from dvan.progress import TqdmProgress


def _split_voices(values: Sequence[str] | None) -> dict[str, tuple[str, ...]]:
    """Parse repeated ``SPLIT=VOICE[,VOICE...]`` options."""
    result: dict[str, tuple[str, ...]] = {}
    for value in values or ():
        split, sep, voices = value.partition("=")
        names = tuple(v for v in voices.split(",") if v)
        if not sep or not split or not names:
            raise SpeechError(f"--split-voices {value!r}: write SPLIT=VOICE[,VOICE...], "
                              "e.g. test=espeak:en-029+m7,flite:rms")
        result[split] = names
    return result


def run(args: argparse.Namespace) -> int:
    """Speak the captions; print a summary and every skipped caption. Exit 0 when anything was spoken."""
    from dvan.data.speak import SpeakConfig, speak_captions

    config = SpeakConfig(
        voices=tuple(args.voices),
        split_voices=_split_voices(args.split_voices),
        rate_range=(args.rate[0], args.rate[1]),
        pitch_range=(args.pitch[0], args.pitch[1]),
        seed=args.seed,
        noise_snr_range=(args.noise_snr[0], args.noise_snr[1]) if args.noise_snr else None,
        reverb=args.reverb,
    )
    bar = TqdmProgress(unit="caption", disable=args.quiet)
    try:
        report = speak_captions(args.captions, args.out_dir, config, manifest_name=args.manifest, limit=args.limit,
                                distinct=args.distinct, jobs=args.jobs, progress=bar)
    finally:
        bar.close()
    for skipped in report.skipped:
        print(f"skipped {skipped.where}: {skipped.reason}", file=sys.stderr)
    print(report.summary())
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``dvan speak``."""
    parser = subparsers.add_parser(
        "speak", help="speak text captions with offline TTS voices into WAVs and a manifest",
        description="Speak every caption of CAPTIONS (JSON Lines of {image, label, split, text}, or the "
                    "UCM-captions JSON) with espeak-ng/flite voices into OUT_DIR/audio/, and write "
                    "OUT_DIR/manifest.jsonl. Reruns reuse finished files; the same seed gives identical files.")
    parser.add_argument("captions", help="caption file (.jsonl, or UCM-captions .json)")
    parser.add_argument("out_dir", help="output folder for audio/ and the manifest")
    parser.add_argument("--voices", nargs="+", default=list(DEFAULT_VOICES), metavar="VOICE",
                        help="voices as espeak:<language>[+<variant>] or flite:<voice> "
                             f"(default: {len(DEFAULT_VOICES)} voices: {' '.join(DEFAULT_VOICES)})")
    parser.add_argument("--split-voices", action="append", metavar="SPLIT=VOICE,...",
                        help="voices for one split instead of --voices (repeatable), e.g. for held-out test voices")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument("--rate", nargs=2, type=float, default=(150.0, 195.0), metavar=("MIN", "MAX"),
                        help="speaking rate range in words per minute (default 150 195)")
    parser.add_argument("--pitch", nargs=2, type=float, default=(-2.0, 2.0), metavar=("MIN", "MAX"),
                        help="pitch shift range in semitones (default -2 2)")
    parser.add_argument("--noise-snr", nargs=2, type=float, metavar=("MIN_DB", "MAX_DB"),
                        help="add pink noise at an SNR drawn from this range in dB")
    parser.add_argument("--reverb", action="store_true", help="convolve with a synthetic room impulse response")
    parser.add_argument("--limit", type=int, help="speak only the first N captions")
    parser.add_argument("--distinct", action="store_true",
                        help="speak each distinct sentence of an image once (captions that repeat a sentence, "
                             "ignoring case and punctuation, are left out)")
    parser.add_argument("--jobs", type=int, default=2, help="engine processes at once (default 2)")
    parser.add_argument("--manifest", default="manifest.jsonl", help="manifest file name inside OUT_DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
