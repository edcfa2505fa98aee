"""The front end's signal processing in plain numpy: the same numbers as the librosa calls of training.

Importing librosa costs seconds (numba, scipy, its lazy loader), paid by every one-shot query. A
query needs only a handful of its functions, each a few lines of numpy:

* :func:`trim` as ``librosa.effects.trim`` (RMS per frame, centred with zero padding, a threshold
  in dB below the loudest frame);
* :func:`mel_power` as ``librosa.feature.melspectrogram`` (periodic Hann window, centred frames
  with zero padding, power 2, Slaney-scale mel filters with Slaney area normalisation);
* :func:`power_to_db` as ``librosa.power_to_db``;
* :func:`mfcc` as ``librosa.feature.mfcc`` on log-mel energies (DCT type II, orthonormal);
* :func:`delta` as ``librosa.feature.delta`` (Savitzky-Golay derivative, ``mode="interp"``).

:mod:`dvan.audio.features` picks these or librosa; training uses librosa, the canonical one, and
``tests/audio/test_spectral.py`` checks that both give the same features on real speech.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _frames(signal: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """Frames of ``signal`` centred on every ``hop_length``-th sample, zero-padded at both ends: (frames, length)."""
    half = frame_length // 2
    padded = np.pad(signal, (half, half), mode="constant")
    return sliding_window_view(padded, frame_length)[::hop_length]


def trim(signal: np.ndarray, top_db: float, frame_length: int, hop_length: int) -> np.ndarray:
    """``signal`` without its leading and trailing frames quieter than ``top_db`` below the loudest.

    As ``librosa.effects.trim(signal, top_db=top_db, frame_length=..., hop_length=...)[0]``; the
    per-frame power is computed with the same float32 operations in the same memory order, so the
    frames cut are the same ones.
    """
    # librosa's frame view is (frame_length, frames); reducing over that axis keeps its summation order
    frames = _frames(signal, frame_length, hop_length).T
    power = np.mean(np.square(frames, dtype=np.float32), axis=-2)
    rms = np.sqrt(power)
    # amplitude_to_db(rms, ref=np.max, amin=1e-5) = power_to_db(rms**2, ref=max**2, amin=1e-10)
    squared = np.square(rms)
    reference = np.max(rms) ** 2
    db = 10.0 * np.log10(np.maximum(1e-10, squared)) - 10.0 * np.log10(np.maximum(1e-10, reference))
    loud = np.flatnonzero(db > -top_db)
    if loud.size == 0:
        return signal[0:0]
    start = int(loud[0]) * hop_length
    end = min(signal.shape[-1], (int(loud[-1]) + 1) * hop_length)
    return signal[start:end]


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear to 1 kHz, logarithmic above (librosa's default, ``htk=False``)."""
    f_sp = 200.0 / 3
    mels = hz / f_sp
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    high = hz >= min_log_hz
    mels[high] = min_log_mel + np.log(hz[high] / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    hz = f_sp * mels
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    high = mels >= min_log_mel
    hz[high] = min_log_hz * np.exp(logstep * (mels[high] - min_log_mel))
    return hz


@lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """(n_mels, 1 + n_fft // 2) float32 triangular filters from 0 Hz to Nyquist, Slaney-normalised.

    As ``librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)`` (its defaults:
    ``htk=False``, ``norm="slaney"``, float32). The returned array is shared: do not write to it.
    """
    fft_hz = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(np.array([0.0]))[0],
                                      _hz_to_mel(np.array([sample_rate / 2.0]))[0], n_mels + 2))
    widths = np.diff(edges_hz)
    ramps = np.subtract.outer(edges_hz, fft_hz)
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    for i in range(n_mels):
        rising = -ramps[i] / widths[i]
        falling = ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0, np.minimum(rising, falling))
    # Slaney: every filter has the same area
    weights *= (2.0 / (edges_hz[2:n_mels + 2] - edges_hz[:n_mels]))[:, np.newaxis]
    weights.setflags(write=False)
    return weights


@lru_cache(maxsize=8)
def _hann(length: int) -> np.ndarray:
    """The periodic Hann window (``scipy.signal.get_window("hann", length, fftbins=True)``)."""
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)
    window.setflags(write=False)
    return window


def mel_power(signal: np.ndarray, sample_rate: int, n_fft: int, hop_length: int, n_mels: int) -> np.ndarray:
    """(n_mels, frames) float32 mel power spectrogram, frames centred with zero padding.

    As ``librosa.feature.melspectrogram(y=signal, sr=sample_rate, n_fft=n_fft, hop_length=hop_length,
    win_length=n_fft, n_mels=n_mels, power=2.0)``.
    """
    frames = _frames(signal, n_fft, hop_length)
    spectrum = np.fft.rfft(frames * _hann(n_fft), axis=-1)
    power = spectrum.real ** 2 + spectrum.imag ** 2
    return (mel_filterbank(sample_rate, n_fft, n_mels) @ power.T).astype(np.float32)


def power_to_db(power: np.ndarray, top_db: float = 80.0) -> np.ndarray:
    """``librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=top_db)``."""
    db = 10.0 * np.log10(np.maximum(1e-10, power))
    return np.maximum(db, db.max() - top_db)


@lru_cache(maxsize=8)
def _dct_matrix(n_coefficients: int, n_inputs: int) -> np.ndarray:
    """Rows of the orthonormal DCT-II (``scipy.fft.dct(type=2, norm="ortho")``), the first ``n_coefficients``."""
    k = np.arange(n_coefficients)[:, np.newaxis]
    n = np.arange(n_inputs)[np.newaxis, :]
    matrix = np.sqrt(2.0 / n_inputs) * np.cos(np.pi * k * (2 * n + 1) / (2 * n_inputs))
    matrix[0] /= np.sqrt(2.0)
    matrix.setflags(write=False)
    return matrix


def mfcc(log_mel: np.ndarray, n_coefficients: int) -> np.ndarray:
    """(n_coefficients, frames) float32 MFCC of log-mel energies: ``librosa.feature.mfcc(S=log_mel, n_mfcc=...)``."""
    return (_dct_matrix(n_coefficients, log_mel.shape[0]) @ log_mel).astype(np.float32)


@lru_cache(maxsize=16)
def _savgol_rows(width: int, order: int) -> np.ndarray:
    """(width, width): row i gives the ``order``-th derivative at point i of the degree-``order`` least-squares fit.

    Savitzky-Golay: the fit over a window is linear in the window's values, and so is its
    derivative at any point of the window; the centre row is the filter applied inside the signal,
    the others are what ``mode="interp"`` evaluates at the first and last ``width // 2`` points.
    """
    degree = order  # librosa's polyorder: the fit's degree equals the derivative's order
    positions = np.arange(width, dtype=np.float64)
    vandermonde = positions[:, np.newaxis] ** np.arange(degree + 1)[np.newaxis, :]
    fit = np.linalg.pinv(vandermonde)  # window values -> polynomial coefficients (ascending powers)
    derivative = np.zeros((width, degree + 1))
    for power in range(order, degree + 1):
        # d^order/dx^order of x^power = power! / (power - order)! x^(power - order)
        factor = float(np.prod(np.arange(power - order + 1, power + 1)))
        derivative[:, power] = factor * positions ** (power - order)
    rows = derivative @ fit
    rows.setflags(write=False)
    return rows


def delta(rows: np.ndarray, width: int, order: int) -> np.ndarray:
    """``librosa.feature.delta(rows, width=width, order=order, mode="interp")`` along the last (time) axis.

    Needs an odd ``width`` >= 3 and at least ``width`` frames.
    """
    frames = rows.shape[-1]
    if width < 3 or width % 2 != 1 or width > frames:
        raise ValueError(f"delta needs an odd width >= 3 and at least width frames, got width {width}, {frames} frames")
    fits = _savgol_rows(width, order)
    half = width // 2
    out = np.empty(rows.shape, dtype=np.float64)
    out[..., half:frames - half] = sliding_window_view(rows, width, axis=-1) @ fits[half]
    out[..., :half] = rows[..., :width] @ fits[:half].T
    out[..., frames - half:] = rows[..., frames - width:] @ fits[half + 1:].T
    return out.astype(rows.dtype, copy=False)
