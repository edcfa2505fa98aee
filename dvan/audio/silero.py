"""The trained Silero VAD (v6, ONNX) run with onnxruntime on numpy: where is the speech?

The weights are a file inside the ``silero-vad`` wheel (``silero_vad/data/silero_vad.onnx``), found
through :data:`dvan.packages.VAD`; nothing is downloaded and no torch is needed. The model
reads 16 kHz audio in 32 ms chunks (512 samples, plus the 64 samples before them as context) and
carries a recurrent state from chunk to chunk; it gives each chunk a speech probability.

Chunks become speech segments as ``silero_vad.get_speech_timestamps`` makes them: a segment opens
at a probability of ``threshold`` and closes after ``min_silence_s`` below ``threshold - 0.15``;
segments shorter than ``min_speech_s`` are dropped and the span is padded by ``pad_s`` each side.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

#: The model's sample rate, chunk and context lengths (samples).
RATE = 16000
CHUNK = 512
CONTEXT = 64
#: Kept before the first and after the last segment (soft onsets and endings fall under the threshold).
PAD_S = 0.05


class SileroVad:
    """Silero VAD loaded on first use; one instance may be shared between threads (calls are serialised)."""

    def __init__(self) -> None:
        self._session: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Open the ONNX session now (otherwise the first call does).

        Raises:
            ModelPackageMissingError: silero-vad or onnxruntime is not installed.
        """
        from dvan.packages import VAD

        with self._lock:
            if self._session is not None:
                return
            weights = VAD.require()
            import onnxruntime

            options = onnxruntime.SessionOptions()
            # one short query at a time: more threads cost more in start-up than they save
            options.inter_op_num_threads = 1
            options.intra_op_num_threads = 1
            self._session = onnxruntime.InferenceSession(str(weights), sess_options=options,
                                                         providers=["CPUExecutionProvider"])

    def probabilities(self, waveform: np.ndarray) -> np.ndarray:
        """Speech probability of each 32 ms chunk of a 16 kHz mono waveform (the last chunk zero-padded)."""
        self.load()
        data = np.asarray(waveform, dtype=np.float32)
        count = -(-data.size // CHUNK)
        padded = np.zeros(CONTEXT + count * CHUNK, dtype=np.float32)
        padded[CONTEXT:CONTEXT + data.size] = data
        state = np.zeros((2, 1, 128), dtype=np.float32)
        rate = np.array(RATE, dtype=np.int64)
        out = np.empty(count, dtype=np.float32)
        with self._lock:
            for i in range(count):
                window = padded[i * CHUNK: i * CHUNK + CONTEXT + CHUNK][None, :]
                prob, state = self._session.run(None, {"input": window, "state": state, "sr": rate})
                out[i] = float(np.asarray(prob).reshape(-1)[0])
        return out


_shared = SileroVad()


def get_vad() -> SileroVad:
    """The process-wide VAD (loaded once)."""
    return _shared


def segments(probabilities: np.ndarray, *, threshold: float = 0.5, min_speech_s: float = 0.25,
             min_silence_s: float = 0.1) -> list[tuple[int, int]]:
    """Speech segments as (first chunk, end chunk) pairs of a probability track (32 ms chunks)."""
    chunk_s = CHUNK / RATE
    off = threshold - 0.15
    found: list[tuple[int, int]] = []
    start: int | None = None
    quiet_since: int | None = None
    for i, prob in enumerate(probabilities):
        if start is None:
            if prob >= threshold:
                start, quiet_since = i, None
            continue
        if prob >= threshold:
            quiet_since = None
        elif prob < off:
            quiet_since = i if quiet_since is None else quiet_since
            if (i + 1 - quiet_since) * chunk_s >= min_silence_s:
                found.append((start, quiet_since))
                start, quiet_since = None, None
    if start is not None:
        found.append((start, quiet_since if quiet_since is not None else len(probabilities)))
    return [(a, b) for a, b in found if (b - a) * chunk_s >= min_speech_s]


def silero_segments(samples: np.ndarray, sample_rate: int) -> list[tuple[int, int]]:
    """Speech segments of a mono recording as (start, end) sample indices at ``sample_rate``.

    Raises:
        ModelPackageMissingError: silero-vad or onnxruntime is not installed.
    """
    mono = np.asarray(samples, dtype=np.float32)
    if mono.size == 0:
        return []
    waveform = mono
    if sample_rate != RATE:
        from dvan.audio.io import resample

        waveform = resample(mono, sample_rate, RATE)
    scale = sample_rate / RATE
    return [(int(a * CHUNK * scale), min(mono.shape[0], int(b * CHUNK * scale)))
            for a, b in segments(get_vad().probabilities(waveform))]


def silero_span(samples: np.ndarray, sample_rate: int, pad_s: float = PAD_S) -> tuple[int, int] | None:
    """(start, end) sample indices from the first to the last speech segment, padded by ``pad_s``; None without one.

    Raises:
        ModelPackageMissingError: silero-vad or onnxruntime is not installed.
    """
    return span_of(silero_segments(samples, sample_rate), sample_rate, len(samples), pad_s)


def span_of(found: list[tuple[int, int]], sample_rate: int, length: int, pad_s: float = PAD_S) -> tuple[int, int] | None:
    """The padded span from the first to the last segment of ``found``, within ``length`` samples."""
    if not found:
        return None
    pad = int(pad_s * sample_rate)
    return max(0, found[0][0] - pad), min(length, found[-1][1] + pad)


def speech_seconds(samples: np.ndarray, sample_rate: int) -> float:
    """Total length of Silero's speech segments in a mono recording."""
    return sum(b - a for a, b in silero_segments(samples, sample_rate)) / sample_rate
