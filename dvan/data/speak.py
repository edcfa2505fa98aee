"""Text captions to spoken captions with offline text-to-speech (espeak-ng and flite).

:func:`speak_captions` reads a caption file, speaks every caption with a voice, speaking rate and
pitch drawn from a seeded random generator, optionally adds reverberation and noise, writes 16 kHz
mono 16-bit WAVs and a collection manifest (:mod:`dvan.data.manifest`) beside them.

Two caption formats are read (:func:`read_captions`):

* JSON Lines, one caption per line: ``{"image": "images/a.jpg", "label": "airport", "split": "train",
  "text": "many planes ..."}`` plus an optional ``"id"``; ``image`` is relative to the caption file.
* The UCM-captions JSON: ``{"items": [{"image", "class", "split", "captions": [5 sentences]}]}``.

Properties the benchmark and the app rely on:

* Deterministic: the voice of the k-th caption of an image is the k-th entry of a permutation of the
  split's voices seeded by (seed, image), so the captions of one image get different voices (the
  paper had each image's sentences read by different speakers) as long as there are enough voices;
  rate, pitch, noise and reverb are drawn from a generator seeded by (seed, caption key). Nothing
  depends on processing order or thread count; the same seed gives byte-identical files.
* Resumable: a file's name holds a hash of everything that shaped it (text, voice, rate, pitch,
  effects, recipe version). Files are written to a temporary name and renamed, so a file that
  exists is complete and is reused on the next run; a changed setting gives a new name instead of
  a stale reuse. The manifest is written atomically once every caption has been handled.
* Forgiving per caption: text with no words, a missing image or an engine failure skips that caption and
  reports it with its line; only problems with the whole job (no engine, unknown voice, unreadable
  caption file) raise :class:`~dvan.errors.SpeechError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf

from dvan.data.manifest import SPLITS, ManifestEntry, json_object_line, write_manifest
from dvan.data.voices import DEFAULT_VOICES
from dvan.errors import SpeechError
from dvan.progress import CancelToken, Progress, ProgressCallback, no_progress

#: Bumped whenever the synthesis recipe changes output for the same settings (it is part of file names).
RECIPE_VERSION = 1
#: espeak-ng's default speaking rate in words per minute; flite's duration stretch is relative to it.
REFERENCE_RATE = 175.0
#: espeak-ng pitch units (0-99, 50 = the voice's default) per semitone, measured on en-us+m3 (~0.96 %/unit).
ESPEAK_PITCH_UNITS_PER_SEMITONE = 6.0
#: Peak level every file is normalised to (about -0.9 dBFS).
PEAK_LEVEL = 0.9
#: Engine output shorter than this, or with a peak below SILENT_PEAK, counts as "nothing spoken".
MIN_SECONDS = 0.25
SILENT_PEAK = 1e-3
#: Seconds one engine call may take before it counts as failed.
ENGINE_TIMEOUT_S = 60.0
#: flite voices that cannot read arbitrary text (awb_time only speaks clock times).
FLITE_LIMITED = frozenset({"awb_time"})



@dataclass(frozen=True)
class SpeakConfig:
    """How captions are spoken. Every random choice is seeded, so a config plus a caption file fixes the output."""

    # Voices as "engine:name": "espeak:<language>[+<variant>]" (see `espeak-ng --voices` and
    # `espeak-ng --voices=variant`) or "flite:<voice>" (see `flite -lv`).
    voices: tuple[str, ...] = DEFAULT_VOICES
    # Per-split voice lists that replace `voices` for that split, e.g. {"test": (held-out voices,)}
    # for the unseen-voice experiment. Splits not named use `voices`.
    split_voices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Speaking rate in words per minute, drawn uniformly per caption. espeak-ng takes it directly;
    # flite gets duration_stretch = 175 / rate (175 wpm is espeak-ng's default speed).
    rate_range: tuple[float, float] = (150.0, 195.0)
    # Pitch shift in semitones from the voice's default, drawn uniformly per caption. espeak-ng
    # gets -p 50 + 6 * shift (clipped to 0..99); flite gets f0_shift = 2 ** (shift / 12)
    # (the flite voice rms ignores it).
    pitch_range: tuple[float, float] = (-2.0, 2.0)
    # Seed of every random choice (voices, rate, pitch, noise, reverb); must be >= 0.
    seed: int = 0
    # When set, pink noise is added at a signal-to-noise ratio in dB drawn uniformly from this range
    # (signal power is the mean over the whole file, pauses included).
    noise_snr_range: tuple[float, float] | None = None
    # Whether to convolve with a synthetic room impulse response (exponentially decaying noise).
    reverb: bool = False
    # Reverberation time RT60 in seconds, drawn uniformly per caption when `reverb` is on.
    reverb_rt60_range: tuple[float, float] = (0.2, 0.6)
    # Rate of the written WAVs in Hz (mono, 16-bit PCM).
    sample_rate: int = 16000

    def voices_for(self, split: str) -> tuple[str, ...]:
        """The voices used for captions of ``split``."""
        return tuple(self.split_voices.get(split, self.voices))

    def all_voices(self) -> tuple[str, ...]:
        """Every voice this config may use, without repeats, in first-use order."""
        seen: dict[str, None] = dict.fromkeys(self.voices)
        for voices in self.split_voices.values():
            seen.update(dict.fromkeys(voices))
        return tuple(seen)

    def validate(self) -> None:
        """Check ranges and voice syntax (not whether the engines have the voices; see :func:`check_voices`).

        Raises:
            SpeechError: naming the setting at fault.
        """
        if not self.voices:
            raise SpeechError("no voices given; pass at least one voice such as espeak:en-us+m3 or flite:slt")
        for split, voices in self.split_voices.items():
            if split not in SPLITS:
                raise SpeechError(f"split_voices names unknown split {split!r}; use one of {', '.join(SPLITS)}")
            if not voices:
                raise SpeechError(f"split_voices gives split {split!r} no voices; give at least one")
        for spec in self.all_voices():
            Voice.parse(spec)
        for name, (low, high) in (("rate_range", self.rate_range), ("pitch_range", self.pitch_range),
                                  ("reverb_rt60_range", self.reverb_rt60_range)):
            if not (math.isfinite(low) and math.isfinite(high)) or low > high:
                raise SpeechError(f"{name} ({low}, {high}) must be two finite numbers, low <= high")
        if self.rate_range[0] < 40 or self.rate_range[1] > 500:
            raise SpeechError(f"rate_range {self.rate_range} is outside 40..500 words per minute")
        if self.reverb and self.reverb_rt60_range[0] <= 0:
            raise SpeechError(f"reverb_rt60_range {self.reverb_rt60_range} must be positive seconds")
        if self.noise_snr_range is not None:
            low, high = self.noise_snr_range
            if not (math.isfinite(low) and math.isfinite(high)) or low > high:
                raise SpeechError(f"noise_snr_range ({low}, {high}) must be two finite dB values, low <= high")
        if self.seed < 0:
            raise SpeechError(f"seed {self.seed} must be >= 0")
        if self.sample_rate < 8000:
            raise SpeechError(f"sample_rate {self.sample_rate} Hz is too low; use 16000")


@dataclass(frozen=True)
class Voice:
    """One TTS voice: an engine ("espeak" or "flite") and the engine's name for it."""

    engine: str
    name: str

    @classmethod
    def parse(cls, spec: str) -> Voice:
        """Parse ``"espeak:en-us+m3"`` or ``"flite:slt"``.

        Raises:
            SpeechError: the spec has no known engine prefix or no name.
        """
        engine, _, name = spec.partition(":")
        if engine not in ("espeak", "flite") or not name or any(c.isspace() for c in name):
            raise SpeechError(f"voice {spec!r} is not 'espeak:<language>[+<variant>]' or 'flite:<voice>', "
                              "e.g. espeak:en-us+m3 or flite:slt")
        return cls(engine, name)

    @property
    def spec(self) -> str:
        """The ``engine:name`` string (what the manifest's ``speaker`` field holds)."""
        return f"{self.engine}:{self.name}"


@dataclass(frozen=True)
class CaptionText:
    """One written caption to speak (the library's :class:`dvan.library.records.Caption` is a spoken one it holds).

    Attributes:
        key: stable identity of the caption: "<image path without extension>#<k>" or the line's "id".
        image: absolute path of the image.
        image_key: image path relative to the caption file, without extension.
        index: k, the caption's position among the captions of its image (0-based).
        label: class of the image.
        split: "train", "val" or "test".
        text: the words to speak (may be empty; then it is skipped).
        line: 1-based line (JSON Lines) or caption number (UCM JSON) in the caption file.
        where: "file, line N" or "file, item I caption K", for messages.
    """

    key: str
    image: Path
    image_key: str
    index: int
    label: str
    split: str
    text: str
    line: int
    where: str


@dataclass(frozen=True)
class Utterance:
    """The full synthesis plan of one caption: everything that shapes its audio file."""

    caption: CaptionText
    voice: Voice
    rate: int
    pitch: float
    snr_db: float | None
    rt60: float | None
    effects_seed: int
    audio: Path

    def entry(self) -> ManifestEntry:
        """The manifest line of this caption's audio."""
        c = self.caption
        return ManifestEntry(image=c.image, audio=self.audio, label=c.label, split=c.split, text=c.text,
                             speaker=self.voice.spec, line=c.line)


@dataclass(frozen=True)
class SkippedCaption:
    """A caption that was not spoken, and why."""

    line: int
    where: str
    key: str
    reason: str


@dataclass
class SpeakReport:
    """What :func:`speak_captions` did.

    Attributes:
        manifest: the manifest written, or None when nothing could be spoken.
        spoken: captions synthesised in this run.
        reused: captions whose audio already existed from an earlier run.
        skipped: captions not spoken, with their line and reason.
        entries: manifest entries, in caption-file order.
        seconds: wall-clock time of the run.
    """

    manifest: Path | None
    spoken: int = 0
    reused: int = 0
    skipped: list[SkippedCaption] = field(default_factory=list)
    entries: list[ManifestEntry] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for logs and the CLI."""
        return (f"{self.spoken} spoken, {self.reused} reused, {len(self.skipped)} skipped "
                f"in {self.seconds:.1f} s; manifest: {self.manifest or 'not written'}")


class _EngineFailure(Exception):
    """One caption could not be synthesised (becomes a SkippedCaption)."""


# ---------------------------------------------------------------------------------------------- captions


def read_captions(path: str | Path, distinct: bool = False) -> list[CaptionText]:
    """Read a caption file: JSON Lines (one caption a line) or the UCM-captions JSON.

    Args:
        path: the caption file.
        distinct: keep only the first of an image's captions that read the same (compared without case,
            punctuation or extra spaces). RSICD, for one, repeats one sentence five times for many images;
            speaking it five times would weight those images five-fold. Kept captions are renumbered
            0, 1, ... per image, so their voices still differ.

    Raises:
        SpeechError: the file is missing or malformed; the message names the line or item.
    """
    path = Path(path)
    if not path.is_file():
        raise SpeechError(f"{path}: no such caption file")
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpeechError(f"{path}: cannot read as UTF-8 text ({exc})") from exc
    try:
        whole = json.loads(raw)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict) and "items" in whole:
        captions = _read_ucm(path, whole)
    else:
        captions = _read_jsonl(path, raw)
    if not captions:
        raise SpeechError(f"{path}: holds no captions")
    return _distinct_per_image(captions) if distinct else captions


def sentence_key(text: str) -> str:
    """What two captions must share to count as the same sentence: words, without case or punctuation."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def _distinct_per_image(captions: list[CaptionText]) -> list[CaptionText]:
    seen: dict[str, set[str]] = {}
    kept: list[CaptionText] = []
    for caption in captions:
        sentences = seen.setdefault(caption.image_key, set())
        key = sentence_key(caption.text)
        if key in sentences:
            continue
        sentences.add(key)
        index = len(sentences) - 1
        # an explicit id stays; a positional key follows the new numbering
        renumbered = caption.key if not caption.key.endswith(f"#{caption.index}") else f"{caption.image_key}#{index}"
        kept.append(dataclasses.replace(caption, key=renumbered, index=index))
    return kept


def _read_jsonl(path: Path, raw: str) -> list[CaptionText]:
    root = path.parent.resolve()
    allowed = {"image", "label", "split", "text", "id"}
    captions: list[CaptionText] = []
    counts: dict[str, int] = {}
    labels: dict[str, str] = {}
    keys: set[str] = set()
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        record = json_object_line(line, where, SpeechError)
        unknown = sorted(set(record) - allowed)
        if unknown:
            raise SpeechError(f"{where}: unknown field(s) {unknown}; allowed: {', '.join(sorted(allowed))}")
        missing = [k for k in ("image", "label", "split") if not isinstance(record.get(k), str) or not record[k]]
        if missing:
            raise SpeechError(f"{where}: missing or non-string {', '.join(missing)}; every line needs image, "
                              "label, split and text")
        if record["split"] not in SPLITS:
            raise SpeechError(f"{where}: unknown split {record['split']!r}; use one of {', '.join(SPLITS)}")
        text = record.get("text")
        if text is not None and not isinstance(text, str):
            raise SpeechError(f"{where}: field 'text' must be a string")
        image_key = str(Path(record["image"]).with_suffix("")).replace("\\", "/")
        known = labels.setdefault(image_key, record["label"])
        if known != record["label"]:
            raise SpeechError(f"{where}: image {record['image']} labelled {record['label']!r} here but {known!r} "
                              "on an earlier line; give each image one label")
        index = counts.get(image_key, 0)
        counts[image_key] = index + 1
        key = str(record.get("id") or f"{image_key}#{index}")
        if key in keys:
            raise SpeechError(f"{where}: id {key!r} used twice; ids must be unique")
        keys.add(key)
        captions.append(CaptionText(key=key, image=(root / record["image"]).resolve(), image_key=image_key,
                                index=index, label=record["label"], split=record["split"], text=text or "",
                                line=number, where=where))
    return captions


def _read_ucm(path: Path, data: dict[str, Any]) -> list[CaptionText]:
    root = path.parent.resolve()
    items = data["items"]
    if not isinstance(items, list):
        raise SpeechError(f"{path}: 'items' must be a list")
    captions: list[CaptionText] = []
    number = 0
    for i, item in enumerate(items, start=1):
        where_item = f"{path}, item {i}"
        if not isinstance(item, dict):
            raise SpeechError(f"{where_item}: expected an object with image, class, split, captions")
        missing = [k for k in ("image", "class", "split") if not isinstance(item.get(k), str) or not item[k]]
        if missing or not isinstance(item.get("captions"), list):
            raise SpeechError(f"{where_item}: needs string image, class, split and a list 'captions' "
                              f"(missing or wrong: {', '.join(missing) or 'captions'})")
        if item["split"] not in SPLITS:
            raise SpeechError(f"{where_item}: unknown split {item['split']!r}; use one of {', '.join(SPLITS)}")
        image_key = str(Path(item["image"]).with_suffix("")).replace("\\", "/")
        for k, text in enumerate(item["captions"]):
            number += 1
            captions.append(CaptionText(key=f"{image_key}#{k}", image=(root / item["image"]).resolve(),
                                    image_key=image_key, index=k, label=item["class"], split=item["split"],
                                    text=text if isinstance(text, str) else "", line=number,
                                    where=f"{where_item} caption {k + 1}"))
    return captions


# ---------------------------------------------------------------------------------------------- engines


@lru_cache(maxsize=1)
def _espeak_inventory() -> tuple[frozenset[str], frozenset[str]]:
    """Languages/voice names and variant names espeak-ng can use without MBROLA."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SpeechError("espeak-ng is not installed; install it (Debian/Ubuntu: apt-get install espeak-ng) "
                          "or use flite voices only")
    languages: set[str] = set()
    listing = subprocess.run([exe, "--voices"], capture_output=True, text=True, timeout=30).stdout
    for row in listing.splitlines()[1:]:
        cols = row.split()
        if len(cols) < 5 or cols[4].startswith("mb/"):  # MBROLA voices need the separate mbrola program
            continue
        languages.update({cols[1], cols[3], cols[4], cols[4].rsplit("/", 1)[-1]})
    variants = subprocess.run([exe, "--voices=variant"], capture_output=True, text=True, timeout=30).stdout
    return frozenset(languages), frozenset(re.findall(r"!v/(\S+)", variants))


@lru_cache(maxsize=1)
def _flite_voices() -> frozenset[str]:
    exe = shutil.which("flite")
    if exe is None:
        raise SpeechError("flite is not installed; install it (Debian/Ubuntu: apt-get install flite) "
                          "or use espeak voices only")
    listing = subprocess.run([exe, "-lv"], capture_output=True, text=True, timeout=30).stdout
    _, _, names = listing.partition(":")
    return frozenset(names.split())


def check_voices(voices: Sequence[str]) -> list[Voice]:
    """Parse voices and check that the installed engines have them.

    Both engines silently fall back to a default voice for an unknown name, so this check is what
    stops a typo from producing a data set in the wrong voice.

    Raises:
        SpeechError: an engine is missing or a voice is unknown; the message lists what exists.
    """
    parsed = [Voice.parse(spec) for spec in voices]
    for voice in parsed:
        if voice.engine == "espeak":
            languages, variants = _espeak_inventory()
            language, _, variant = voice.name.partition("+")
            if language not in languages:
                english = sorted({v.lower() for v in languages if v.lower().startswith("en")})
                raise SpeechError(f"voice {voice.spec!r}: espeak-ng has no language {language!r} (MBROLA voices "
                                  f"are not supported); English ones: {', '.join(english)}")
            if variant and variant not in variants:
                raise SpeechError(f"voice {voice.spec!r}: espeak-ng has no variant {variant!r}; see "
                                  "'espeak-ng --voices=variant' (e.g. m1..m7, f1..f5, klatt)")
        else:
            available = _flite_voices()
            if voice.name not in available or voice.name in FLITE_LIMITED:
                usable = sorted(available - FLITE_LIMITED)
                raise SpeechError(f"voice {voice.spec!r}: flite has no general voice {voice.name!r}; "
                                  f"available: {', '.join(usable)}")
    return parsed


def _run_engine(utt: Utterance, workdir: Path) -> tuple[np.ndarray, int]:
    """Run the TTS engine for one utterance; returns (float32 samples, sample rate)."""
    out = workdir / f"{threading.get_ident()}.wav"
    text = " ".join(utt.caption.text.split())
    if utt.voice.engine == "espeak":
        pitch = int(round(min(99.0, max(0.0, 50.0 + ESPEAK_PITCH_UNITS_PER_SEMITONE * utt.pitch))))
        cmd = ["espeak-ng", "-v", utt.voice.name, "-s", str(utt.rate), "-p", str(pitch), "-b", "1",
               "-w", str(out), "--stdin"]
        stdin: str | None = text
    else:
        cmd = ["flite", "-voice", utt.voice.name,
               "--setf", f"duration_stretch={REFERENCE_RATE / utt.rate:.4f}",
               "--setf", f"f0_shift={2.0 ** (utt.pitch / 12.0):.4f}", "-t", text, "-o", str(out)]
        stdin = None
    try:
        out.unlink(missing_ok=True)
        done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=ENGINE_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise _EngineFailure(f"{utt.voice.engine} took over {ENGINE_TIMEOUT_S:.0f} s") from exc
    except OSError as exc:
        raise _EngineFailure(f"cannot run {cmd[0]} ({exc})") from exc
    if done.returncode != 0:
        tail = " ".join(done.stderr.split())[-200:]
        raise _EngineFailure(f"{cmd[0]} exited with code {done.returncode}: {tail or 'no message'}")
    try:
        samples, rate = sf.read(str(out), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise _EngineFailure(f"{cmd[0]} wrote no readable audio ({exc})") from exc
    finally:
        out.unlink(missing_ok=True)
    return samples.mean(axis=1), int(rate)


# ---------------------------------------------------------------------------------------------- planning


def _generator(seed: int, *parts: str) -> np.random.Generator:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return np.random.default_rng([seed, *np.frombuffer(digest[:16], dtype="<u4").tolist()])


def _slug(text: str, limit: int = 60) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:limit] or "x"


def plan_utterance(caption: CaptionText, config: SpeakConfig, out_dir: Path) -> Utterance:
    """Choose voice, rate, pitch and effects for one caption and name its file (pure and deterministic)."""
    voices = config.voices_for(caption.split)
    order = _generator(config.seed, "voice", caption.split, caption.image_key).permutation(len(voices))
    voice = Voice.parse(voices[int(order[caption.index % len(voices)])])
    rng = _generator(config.seed, "line", caption.key)
    rate = int(round(rng.uniform(*config.rate_range)))
    pitch = round(float(rng.uniform(*config.pitch_range)), 1)
    snr = rng.uniform(*config.noise_snr_range) if config.noise_snr_range is not None else None
    rt60 = rng.uniform(*config.reverb_rt60_range) if config.reverb else None
    snr_db = round(float(snr), 1) if snr is not None else None
    rt60_s = round(float(rt60), 3) if rt60 is not None else None
    effects_seed = int(rng.integers(0, 2**62))
    recipe = {"v": RECIPE_VERSION, "key": caption.key, "text": caption.text, "voice": voice.spec, "rate": rate,
              "pitch": pitch, "snr": snr_db, "rt60": rt60_s, "fx": effects_seed, "sr": config.sample_rate}
    digest = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode("utf-8")).hexdigest()[:10]
    stem = _slug(Path(caption.image_key).name)
    name = f"{stem}_{caption.index}_{_slug(voice.spec.replace(':', '-').replace('+', '-'))}_{digest}.wav"
    audio = out_dir / "audio" / _slug(caption.label) / name
    return Utterance(caption=caption, voice=voice, rate=rate, pitch=pitch, snr_db=snr_db, rt60=rt60_s,
                     effects_seed=effects_seed, audio=audio)


# ---------------------------------------------------------------------------------------------- effects


def _fft_convolve(signal: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    size = signal.size + kernel.size - 1
    n = 1 << (size - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(signal, n) * np.fft.rfft(kernel, n), n)[:size]


def room_impulse_response(rt60: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response: a direct path, then exponentially decaying noise.

    The tail decays by 60 dB in ``rt60`` seconds, starts after a 2-8 ms pre-delay, and carries about
    as much energy as the direct path scaled by ``rt60 / 0.5`` (longer rooms sound wetter).
    """
    length = int(min(1.2, rt60) * sample_rate)
    t = np.arange(length) / sample_rate
    tail = rng.standard_normal(length) * np.exp(-6.9078 * t / rt60)  # 6.9078 = ln(1000): -60 dB at rt60
    predelay = int(rng.uniform(0.002, 0.008) * sample_rate)
    tail[:predelay] = 0.0
    tail *= math.sqrt(min(2.0, rt60 / 0.5) / max(float(np.sum(tail**2)), 1e-12))
    tail[0] = 1.0
    return tail


def pink_noise(length: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-power noise with a 1/f power spectrum."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    freqs = np.arange(spectrum.size, dtype=np.float64)
    freqs[0] = 1.0
    noise = np.fft.irfft(spectrum / np.sqrt(freqs), length)
    return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)


def _render(utt: Utterance, config: SpeakConfig, workdir: Path) -> np.ndarray:
    """Synthesise and post-process one utterance into int16 samples at the config's rate."""
    samples, rate = _run_engine(utt, workdir)
    if not np.all(np.isfinite(samples)):
        raise _EngineFailure(f"{utt.voice.engine} produced NaN/Inf samples")
    if rate != config.sample_rate and samples.size:
        import soxr

        samples = soxr.resample(samples, rate, config.sample_rate, quality="HQ").astype(np.float32)
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if samples.size < MIN_SECONDS * config.sample_rate or peak < SILENT_PEAK:
        raise _EngineFailure(f"{utt.voice.engine} produced no audible speech "
                             f"({samples.size / config.sample_rate:.2f} s, peak {peak:.1e})")
    wave = samples.astype(np.float64)
    rng = np.random.default_rng(utt.effects_seed)
    if utt.rt60 is not None:
        wave = _fft_convolve(wave, room_impulse_response(utt.rt60, config.sample_rate, rng))
    if utt.snr_db is not None:
        power = float(np.mean(wave**2))
        wave = wave + pink_noise(wave.size, rng) * math.sqrt(power / 10.0 ** (utt.snr_db / 10.0))
    wave *= PEAK_LEVEL / float(np.max(np.abs(wave)))
    return np.clip(np.round(wave * 32767.0), -32768, 32767).astype(np.int16)


def _write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        sf.write(str(partial), samples, sample_rate, subtype="PCM_16", format="WAV")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _is_done(path: Path) -> bool:
    try:
        return path.stat().st_size > 44  # more than a bare WAV header
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class _Outcome:
    """What became of one planned utterance."""

    kind: Literal["spoken", "reused", "skipped", "cancelled"]
    reason: str = ""  # why it was skipped


def _checked_arguments(config: SpeakConfig, jobs: int, limit: int | None, out_dir: str | Path) -> Path:
    """The resolved OUT_DIR, once the config, voices, ``jobs`` and ``limit`` are known to be usable."""
    config.validate()
    check_voices(config.all_voices())
    if jobs < 1:
        raise SpeechError(f"jobs={jobs}: run at least one engine process")
    if limit is not None and limit < 1:
        raise SpeechError(f"limit={limit}: must be at least 1")
    resolved = Path(out_dir).resolve()
    if resolved.exists() and not resolved.is_dir():
        raise SpeechError(f"{resolved}: OUT_DIR is an existing file, not a folder; pass a folder (created when missing)")
    return resolved


def _speak_one(utt: Utterance, config: SpeakConfig, workdir: Path, cancel: CancelToken) -> _Outcome:
    """Speak one planned utterance into its WAV (or reuse the finished one)."""
    caption = utt.caption
    if cancel.cancelled:
        return _Outcome("cancelled")
    if not sentence_key(caption.text):
        return _Outcome("skipped", "no words in the text; nothing to speak")
    if not caption.image.is_file():
        return _Outcome("skipped", f"image file {caption.image} does not exist")
    if _is_done(utt.audio):
        return _Outcome("reused")
    try:
        samples = _render(utt, config, workdir)
    except _EngineFailure as exc:
        return _Outcome("skipped", f"{utt.voice.spec}: {exc}")
    _write_wav(utt.audio, samples, config.sample_rate)
    return _Outcome("spoken")


def _speak_all(plans: Sequence[Utterance], config: SpeakConfig, jobs: int, progress: ProgressCallback,
               cancel: CancelToken) -> dict[int, _Outcome]:
    """Outcome of every plan by index, ``jobs`` engine processes at once (a few plans queued ahead of each)."""
    outcomes: dict[int, _Outcome] = {}
    total = len(plans)
    with tempfile.TemporaryDirectory(prefix="dvan-speak-") as tmp, ThreadPoolExecutor(max_workers=jobs) as pool:
        workdir = Path(tmp)
        pending: dict[Future[_Outcome], int] = {}
        next_index = 0
        done_count = 0
        while next_index < total or pending:
            while next_index < total and len(pending) < 4 * jobs and not cancel.cancelled:
                pending[pool.submit(_speak_one, plans[next_index], config, workdir, cancel)] = next_index
                next_index += 1
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                i = pending.pop(future)
                outcomes[i] = future.result()
                if outcomes[i].kind != "cancelled":
                    done_count += 1
                    progress(Progress("speak", done_count, total, f"{plans[i].voice.spec} {plans[i].audio.name}"))
    return outcomes


def _report(plans: Sequence[Utterance], outcomes: dict[int, _Outcome]) -> SpeakReport:
    """The report of a finished run: manifest entries of spoken and reused captions, the skipped ones by line."""
    report = SpeakReport(manifest=None)
    for i, utt in enumerate(plans):
        outcome = outcomes[i]
        if outcome.kind == "skipped":
            c = utt.caption
            report.skipped.append(SkippedCaption(line=c.line, where=c.where, key=c.key, reason=outcome.reason))
            continue
        if outcome.kind == "spoken":
            report.spoken += 1
        else:
            report.reused += 1
        report.entries.append(utt.entry())
    return report


def speak_captions(
    captions_path: str | Path,
    out_dir: str | Path,
    config: SpeakConfig | None = None,
    *,
    manifest_name: str = "manifest.jsonl",
    limit: int | None = None,
    distinct: bool = False,
    jobs: int = 2,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> SpeakReport:
    """Speak every caption of a caption file and write WAVs plus a manifest under ``out_dir``.

    Args:
        captions_path: JSON Lines or UCM-captions JSON (see :func:`read_captions`).
        out_dir: folder for ``audio/<label>/*.wav`` and the manifest.
        config: voices, rate, pitch, effects and seed; defaults to :class:`SpeakConfig()`.
        manifest_name: file name of the manifest inside ``out_dir``.
        limit: speak only the first ``limit`` captions of the file.
        distinct: speak each distinct sentence of an image once (see :func:`read_captions`).
        jobs: engine processes run at once.
        progress: receives ``Progress("speak", done, total, message)`` after every caption.
        cancel: checked before every caption. On cancel, files already written stay (a rerun reuses
            them) and no manifest is written.

    Returns:
        A :class:`SpeakReport`; captions that could not be spoken are in ``skipped`` with their line.

    Raises:
        SpeechError: bad config, missing engine, unknown voice, unreadable caption file, or no caption
            could be spoken at all.
        Cancelled: ``cancel`` was set.
    """
    started = time.monotonic()
    config = config or SpeakConfig()
    cancel = cancel or CancelToken()
    out_dir = _checked_arguments(config, jobs, limit, out_dir)
    captions = read_captions(captions_path, distinct=distinct)
    if limit is not None:
        captions = captions[:limit]
    plans = [plan_utterance(caption, config, out_dir) for caption in captions]
    progress(Progress("speak", 0, len(plans), f"{len(plans)} captions"))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpeechError(f"{out_dir}: cannot create OUT_DIR ({exc.strerror or exc}); choose a writable folder") from exc
    outcomes = _speak_all(plans, config, jobs, progress, cancel)
    cancel.raise_if_cancelled()
    report = _report(plans, outcomes)
    if not report.entries:
        first = report.skipped[0] if report.skipped else None
        why = f"; first problem: {first.where}: {first.reason}" if first else ""
        raise SpeechError(f"{captions_path}: no caption could be spoken{why}")
    report.manifest = write_manifest(out_dir / manifest_name, report.entries)
    report.seconds = time.monotonic() - started
    return report
