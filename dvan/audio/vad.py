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
No Qt, no torch: the app and the CLI can both call :func:`detect_speech`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Frame length of the analysis in seconds.
FRAME_S = 0.02


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
    """

    has_speech: bool
    reason: str
    duration_s: float
    speech_s: float
    peak_db: float
    floor_db: float

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


def detect_speech(samples: np.ndarray, sample_rate: int, *, min_duration_s: float = 0.3, min_speech_s: float = 0.2,
                  margin_db: float = 12.0, min_level_db: float = -50.0, floor_percentile: float = 10.0) -> SpeechCheck:
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
    data = np.asarray(samples)
    if np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.float32) / (float(np.iinfo(data.dtype).max) + 1.0)
    data = np.nan_to_num(data.astype(np.float32, copy=False))
    frames_total = data.shape[0] if data.ndim else 0
    duration = frames_total / float(sample_rate) if sample_rate > 0 else 0.0
    levels = frame_levels(data, sample_rate)
    if levels.size == 0:
        return SpeechCheck(False, "too_short", duration, 0.0, -200.0, -200.0)
    peak = float(levels.max())
    floor = float(np.percentile(levels, floor_percentile))
    voiced = (levels >= floor + margin_db) & (levels >= min_level_db)
    speech = float(voiced.sum()) * FRAME_S
    if duration < min_duration_s:
        return SpeechCheck(False, "too_short", duration, speech, peak, floor)
    if peak < min_level_db:
        return SpeechCheck(False, "silent", duration, speech, peak, floor)
    if speech < min_speech_s:
        return SpeechCheck(False, "no_speech", duration, speech, peak, floor)
    return SpeechCheck(True, "", duration, speech, peak, floor)
