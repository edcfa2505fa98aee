"""MFCC front end: waveform -> fixed-size feature grid or flat vector (equation 2).

Every row type is computed with a 16 ms window (n_fft 256) and a 5 ms hop (80 samples) at
16 kHz. The grid is (channels, n_coefficients, max_frames); the paper's flat layout is the same
numbers frame-major, so the first 24000 values are the first 2000 frames (10 s).

Two implementations give the same features to float32 rounding: ``"librosa"``, the canonical
one that training and indexing use, and ``"numpy"`` (:mod:`dvan.audio.spectral`), which spoken
queries use because importing librosa costs seconds of every one-shot search.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from dvan.audio import spectral
from dvan.audio.io import prepare_waveform, read_audio, validate_samples
from dvan.audio.record import frame_recording
from dvan.config import AudioConfig
from dvan.errors import SilentAudioError

# librosa.feature.delta's default window; shorter utterances use a smaller odd width.
_DELTA_WIDTH = 9

#: Who computes the features: librosa (canonical, training) or numpy (the same numbers, no librosa import).
FeatureBackend = Literal["librosa", "numpy"]


@dataclass(frozen=True)
class AudioFeatures:
    """Fixed-size features of one utterance.

    Attributes:
        grid: float32 array (channels, n_coefficients, max_frames), zero past ``frames``.
        frames: number of valid (unpadded) frames.
        truncated: whether speech longer than max_frames was cut.
    """

    grid: np.ndarray
    frames: int
    truncated: bool


def _delta(rows: np.ndarray, order: int, backend: FeatureBackend) -> np.ndarray:
    width = min(_DELTA_WIDTH, rows.shape[1] if rows.shape[1] % 2 == 1 else rows.shape[1] - 1)
    if width < 3:
        return np.zeros_like(rows)
    if backend == "numpy":
        return spectral.delta(rows, width, order)
    import librosa

    return librosa.feature.delta(rows, width=width, order=order, mode="interp")


def _log_mel(waveform: np.ndarray, config: AudioConfig, n_mels: int, backend: FeatureBackend) -> np.ndarray:
    if backend == "numpy":
        mel = spectral.mel_power(waveform, config.sample_rate, config.n_fft, config.hop_length, n_mels)
        return spectral.power_to_db(mel, top_db=80.0)
    import librosa

    mel = librosa.feature.melspectrogram(y=waveform, sr=config.sample_rate, n_fft=config.n_fft,
                                         hop_length=config.hop_length, win_length=config.n_fft, n_mels=n_mels,
                                         power=2.0)
    return librosa.power_to_db(mel, ref=1.0, top_db=80.0)


def _rows(waveform: np.ndarray, config: AudioConfig, backend: FeatureBackend = "librosa") -> np.ndarray:
    """(channels, n_coefficients, frames) rows for the configured representation."""
    n_mels = config.n_mels if config.representation != "spectrogram" else config.n_coefficients
    log_mel = _log_mel(waveform, config, n_mels, backend)
    if config.representation == "spectrogram":
        return log_mel[None].astype(np.float32)
    if backend == "numpy":
        mfcc = spectral.mfcc(log_mel, config.n_coefficients)
    else:
        import librosa

        mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=config.n_coefficients)
    if config.representation == "mfcc":
        stack = [mfcc]
    elif config.representation == "delta":
        stack = [_delta(mfcc, 1, backend)]
    elif config.representation == "delta2":
        stack = [_delta(mfcc, 2, backend)]
    else:
        stack = [mfcc, _delta(mfcc, 1, backend), _delta(mfcc, 2, backend)]
    return np.stack(stack).astype(np.float32)


def _trim(waveform: np.ndarray, config: AudioConfig, backend: FeatureBackend) -> np.ndarray:
    if backend == "numpy":
        return spectral.trim(waveform, config.trim_db, config.n_fft, config.hop_length)
    import librosa

    trimmed, _ = librosa.effects.trim(waveform, top_db=config.trim_db, frame_length=config.n_fft,
                                      hop_length=config.hop_length)
    return trimmed


def waveform_features(waveform: np.ndarray, config: AudioConfig, source: str = "audio",
                      backend: FeatureBackend = "librosa") -> AudioFeatures:
    """Features of a mono waveform already at ``config.sample_rate``.

    Leading and trailing quiet (``config.trim_db`` below the peak) is trimmed first, so the
    10 s budget is spent on speech.

    Args:
        waveform: 1-D float32 samples.
        config: the model's front end.
        source: name used in error messages.
        backend: "librosa" (canonical, training) or "numpy" (the same features without importing librosa).

    Raises:
        SilentAudioError: nothing is left after trimming.
    """
    trimmed = _trim(waveform, config, backend)
    if trimmed.size < config.n_fft:
        raise SilentAudioError(f"{source}: no speech found after trimming quiet parts; record again")
    rows = _rows(trimmed, config, backend)
    frames = rows.shape[2]
    kept = min(frames, config.max_frames)
    rows = rows[:, :, :kept]
    if config.normalize:
        mean = rows.mean(axis=2, keepdims=True)
        std = rows.std(axis=2, keepdims=True)
        rows = (rows - mean) / (std + 1e-5)
    grid = np.zeros((config.channels, config.n_coefficients, config.max_frames), dtype=np.float32)
    grid[:, :, :kept] = rows
    return AudioFeatures(grid=grid, frames=kept, truncated=frames > config.max_frames)


def file_features(path: str | Path, config: AudioConfig, backend: FeatureBackend = "librosa") -> AudioFeatures:
    """Features of an audio file (see :func:`dvan.audio.io.read_audio` for what it accepts)."""
    return waveform_features(read_audio(path, config.sample_rate), config, source=str(path), backend=backend)


def recording_features(samples: np.ndarray, source_rate: int, config: AudioConfig,
                       backend: FeatureBackend = "librosa") -> AudioFeatures:
    """Features of samples from a microphone or other in-memory source.

    Once validated (as delivered, so a recording too short is refused), the samples are framed at
    their own rate, before resampling (:func:`dvan.audio.record.frame_recording`): the device's
    leading and trailing digital silence is replaced by a fixed margin, so a recording gives the
    features of its speech however long before the speech recording started.
    """
    validated = validate_samples(samples, source_rate, source="recording")
    framed = frame_recording(validated, source_rate, config.sample_rate, config.hop_length)
    waveform = prepare_waveform(framed, source_rate, config.sample_rate, source="recording")
    return waveform_features(waveform, config, source="recording", backend=backend)


def to_model_input(features: list[AudioFeatures], config: AudioConfig) -> torch.Tensor:
    """Batch features into the audio branch's input tensor.

    Returns:
        (B, flat_length) for the flat layout, frame-major as the paper flattens;
        (B, channels, n_coefficients, max_frames) for the grid layout.
    """
    grids = np.stack([f.grid for f in features])
    if config.layout == "flat":
        # frame-major: (B, frames, channels, coefficients) then flatten, so cutting the vector cuts time
        flat = grids.transpose(0, 3, 1, 2).reshape(len(features), -1)
        return torch.from_numpy(np.ascontiguousarray(flat))
    return torch.from_numpy(grids)


class AudioFrontEnd:
    """Callable turning files or recordings into the audio branch's input, per one config.

    Training, indexing and search all take their front end from :func:`dvan.model.factory.create_model`,
    so they preprocess identically (search with ``backend="numpy"``, the same features to float32
    rounding without librosa's import).
    """

    def __init__(self, config: AudioConfig, backend: FeatureBackend = "librosa") -> None:
        self.config = config
        self.backend: FeatureBackend = backend

    def features(self, path: str | Path) -> AudioFeatures:
        """Features of one file."""
        return file_features(path, self.config, self.backend)

    def batch(self, features: list[AudioFeatures]) -> torch.Tensor:
        """Model input for already computed features."""
        return to_model_input(features, self.config)

    def __call__(self, paths: list[str | Path]) -> torch.Tensor:
        """Model input for files."""
        return self.batch([self.features(p) for p in paths])
