"""Was anything said? An energy-based voice activity check for microphone queries.

A spoken query must not be searched when the user pressed the button and said nothing, or
released it at once: the model would still rank tiles, and the ranking would mean nothing.

The check works on 20 ms frames:

* frame level = RMS in dBFS;
* the noise floor is a low percentile of the frame levels (the quiet between words, or the
  whole recording when nothing was said);
* a frame is *voiced* when it is at least ``margin_db`` above the floor and above the absolute
  ``min_level_db`` (so a quiet room is not amplified into speech);
* there is speech when the voiced frames add up to ``min_speech_s``.

Steady noise (a fan, hum, hiss) has no frames far above its own floor, so it is not speech even
when loud; a click is too short. The recording must also last ``min_duration_s``.

:func:`speech_span` finds where the speech starts and ends, with that energy rule or with the
trained Silero VAD (:mod:`dvan.audio.silero`); :func:`check_speech` decides whether a microphone
query holds speech and where, and :meth:`SpeechCheck.trim` cuts it there. No Qt, no torch: the app and the CLI can both call them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

#: Frame length of the analysis in seconds.
FRAME_S = 0.02
#: Less speech than this is no query (detect_speech's default min_speech_s).
MIN_SPEECH_S = 0.2
#: A voiced frame stands this far above the noise floor (dB) ...
MARGIN_DB = 12.0
#: ... and above this absolute level (dBFS).
MIN_LEVEL_DB = -50.0
#: Percentile of the frame levels taken as the noise floor.
FLOOR_PERCENTILE = 10.0
#: Kept before the first and after the last voiced frame when a recording is cut to its speech.
ENERGY_PAD_S = 0.05


@dataclass(frozen=True)
class SpeechCheck:
    """Outcome of :func:`detect_speech`.

    Attributes:
        has_speech: whether the recording holds enough speech to search with.
        reason: "" when it does; otherwise "too_short", "silent" or "no_speech".
        duration_s: length of the recording.
        speech_s: total length of voiced frames.
        peak_db: loudest frame level in dBFS.
        floor_db: estimated noise floor in dBFS.
        span: (start, end) sample indices of the speech when there is speech (:func:`check_speech`).
        method: what found the speech: "energy" or "silero".
    """

    has_speech: bool
    reason: str
    duration_s: float
    speech_s: float
    peak_db: float
    floor_db: float
    span: tuple[int, int] | None = None
    method: str = "energy"

    def trim(self, samples: np.ndarray) -> np.ndarray:
        """Mono float32 ``samples`` cut to the speech span (unchanged without one)."""
        mono = _mono_float(samples)
        return mono if self.span is None else mono[self.span[0]:self.span[1]]

    @property
    def message(self) -> str:
        """A sentence for the user; empty when there is speech."""
        if self.reason == "too_short":
            return f"No speech heard: the recording lasted only {self.duration_s:.2f} s; hold the button while you speak."
        if self.reason == "silent":
            return "No speech heard: the microphone delivered silence; check the input device and its volume."
        if self.reason == "no_speech":
            return (f"No speech heard ({self.speech_s:.2f} s of voice-like sound); "
                    "hold the button and speak your query.")
        return ""


def frame_levels(samples: np.ndarray, sample_rate: int, frame_s: float = FRAME_S) -> np.ndarray:
    """RMS level in dBFS of consecutive frames of a mono signal (the last partial frame is dropped)."""
    mono = np.asarray(samples, dtype=np.float32)
    if mono.ndim == 2:
        mono = mono.mean(axis=1)
    frame = max(1, int(round(frame_s * sample_rate)))
    count = mono.size // frame
    if count == 0:
        return np.zeros(0, dtype=np.float32)
    frames = mono[: count * frame].reshape(count, frame).astype(np.float64)
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    return (20.0 * np.log10(np.maximum(rms, 1e-10))).astype(np.float32)


def _as_float(samples: np.ndarray) -> np.ndarray:
    """float32 samples (integer PCM scaled to [-1, 1), NaN zeroed), channels kept."""
    data = np.asarray(samples)
    if np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.float32) / (float(np.iinfo(data.dtype).max) + 1.0)
    return np.nan_to_num(data.astype(np.float32, copy=False))


def _mono_float(samples: np.ndarray) -> np.ndarray:
    data = _as_float(samples)
    return data.mean(axis=1).astype(np.float32) if data.ndim == 2 else data


def _voiced(levels: np.ndarray, margin_db: float, min_level_db: float, floor_percentile: float) -> tuple[np.ndarray, float]:
    """The voiced-frame rule: which frames stand ``margin_db`` above the noise floor and above ``min_level_db``."""
    floor = float(np.percentile(levels, floor_percentile))
    return (levels >= floor + margin_db) & (levels >= min_level_db), floor


def detect_speech(samples: np.ndarray, sample_rate: int, *, min_duration_s: float = 0.3, min_speech_s: float = MIN_SPEECH_S,
                  margin_db: float = MARGIN_DB, min_level_db: float = MIN_LEVEL_DB,
                  floor_percentile: float = FLOOR_PERCENTILE) -> SpeechCheck:
    """Decide whether a recording holds speech worth searching with.

    Args:
        samples: mono (n,) or multi-channel (n, channels) samples, float in [-1, 1] or integer PCM.
        sample_rate: rate of ``samples`` in Hz.
        min_duration_s: shorter recordings are "too_short" whatever they hold.
        min_speech_s: voiced frames must add up to at least this.
        margin_db: a voiced frame is this far above the noise floor.
        min_level_db: and louder than this absolute level (dBFS).
        floor_percentile: percentile of frame levels taken as the noise floor.
    """
    data = _as_float(samples)
    frames_total = data.shape[0] if data.ndim else 0
    duration = frames_total / float(sample_rate) if sample_rate > 0 else 0.0
    levels = frame_levels(data, sample_rate)
    if levels.size == 0:
        return SpeechCheck(False, "too_short", duration, 0.0, -200.0, -200.0)
    peak = float(levels.max())
    voiced, floor = _voiced(levels, margin_db, min_level_db, floor_percentile)
    speech = float(voiced.sum()) * FRAME_S
    if duration < min_duration_s:
        return SpeechCheck(False, "too_short", duration, speech, peak, floor)
    if peak < min_level_db:
        return SpeechCheck(False, "silent", duration, speech, peak, floor)
    if speech < min_speech_s:
        return SpeechCheck(False, "no_speech", duration, speech, peak, floor)
    return SpeechCheck(True, "", duration, speech, peak, floor)


#: Ways of finding the speech in a recording: the energy rule above, or the trained Silero VAD.
VAD_METHODS = ("energy", "silero")
#: What the app and the CLI use. Measured on unseen-voice queries padded with noise
#: (benchmarks/results/vad.md), Silero did not beat the energy rule: retrieval after cutting was within
#: 3 points either way in quiet, white and fan noise, and Silero took babble for speech (its span
#: kept the babble; no babble-only clip refused, all refused by the energy rule).
DEFAULT_VAD_METHOD = "energy"


def energy_span(samples: np.ndarray, sample_rate: int, *, margin_db: float = MARGIN_DB, min_level_db: float = MIN_LEVEL_DB,
                floor_percentile: float = FLOOR_PERCENTILE, pad_s: float = ENERGY_PAD_S) -> tuple[int, int] | None:
    """(start, end) sample indices from the first to the last voiced frame of :func:`detect_speech`'s rule.

    The span is widened by ``pad_s`` on each side: soft onsets and endings (an "f", a fading vowel)
    lie under the voiced level, and a recording of a file's speech keeps all of it, so the app
    ranks it as ``dvan search --wav`` ranks the file.
    """
    levels = frame_levels(samples, sample_rate)
    if levels.size == 0:
        return None
    voiced = np.flatnonzero(_voiced(levels, margin_db, min_level_db, floor_percentile)[0])
    if voiced.size == 0:
        return None
    frame = max(1, int(round(FRAME_S * sample_rate)))
    pad = int(round(pad_s * sample_rate))
    return max(0, int(voiced[0]) * frame - pad), min(len(samples), (int(voiced[-1]) + 1) * frame + pad)


def speech_span(samples: np.ndarray, sample_rate: int, method: str = DEFAULT_VAD_METHOD) -> tuple[int, int] | None:
    """(start, end) sample indices of the speech in a mono recording, or None when there is none.

    Args:
        samples: mono float samples.
        sample_rate: their rate in Hz.
        method: "energy" or "silero" (the trained VAD; its package must be installed).

    Raises:
        ValueError: an unknown method.
        ModelPackageMissingError: method "silero" without silero-vad or onnxruntime installed.
    """
    if method == "energy":
        return energy_span(samples, sample_rate)
    if method == "silero":
        from dvan.audio.silero import silero_span

        return silero_span(samples, sample_rate)
    raise ValueError(f"unknown voice activity method {method!r}; use one of {', '.join(VAD_METHODS)}")


def resolve_method(method: str) -> str:
    """``method`` checked against :data:`VAD_METHODS`.

    Raises:
        ValueError: an unknown method.
    """
    if method not in VAD_METHODS:
        raise ValueError(f"unknown voice activity method {method!r}; use one of {', '.join(VAD_METHODS)}")
    return method


def check_speech(samples: np.ndarray, sample_rate: int, method: str = DEFAULT_VAD_METHOD) -> SpeechCheck:
    """Was anything said, and where? The check microphone queries go through in the app and the CLI.

    Too short or silent recordings are refused by :func:`detect_speech`'s rules whatever the method;
    otherwise ``method`` decides whether there is speech (at least 0.2 s of it) and where it starts
    and ends (:attr:`SpeechCheck.span`; search with :meth:`SpeechCheck.trim`). The two methods are
    compared in ``benchmarks/results/vad.md`` (see :data:`DEFAULT_VAD_METHOD`).

    Args:
        samples: mono (n,) or multi-channel (n, channels) samples, float in [-1, 1] or integer PCM.
        sample_rate: rate of ``samples`` in Hz.
        method: "energy" or "silero".

    Raises:
        ValueError: an unknown method.
        ModelPackageMissingError: method "silero" without silero-vad or onnxruntime installed.
    """
    energy = detect_speech(samples, sample_rate)
    chosen = resolve_method(method)
    if energy.reason in ("too_short", "silent"):
        return replace(energy, method=chosen)
    mono = _mono_float(samples)
    if chosen == "energy":
        return replace(energy, span=energy_span(mono, sample_rate) if energy.has_speech else None)
    from dvan.audio.silero import silero_segments, span_of

    found = silero_segments(mono, sample_rate)
    speech = sum(b - a for a, b in found) / float(sample_rate)
    has_speech = speech >= MIN_SPEECH_S
    return replace(energy, has_speech=has_speech, reason="" if has_speech else "no_speech", speech_s=speech,
                   span=span_of(found, sample_rate, mono.shape[0]) if has_speech else None, method="silero")
