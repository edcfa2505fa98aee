"""Reading audio files into mono float32 waveforms at the model's sample rate.

Handling of awkward input, by design:

* empty, truncated-header or non-audio bytes: :class:`AudioDecodeError` naming the file;
* 8-, 16-, 24- and 32-bit PCM and float files: decoded by libsndfile to float in [-1, 1];
* any channel count: averaged to mono; any sample rate: resampled to ``sample_rate``;
* NaN or Inf samples: :class:`AudioDecodeError` (a broken recorder or a bad conversion);
* digital silence (peak below -80 dBFS): :class:`SilentAudioError`;
* a data chunk cut short: libsndfile returns the frames that are there, and they are used;
* long files: decoded whole; the front end keeps the first ``max_frames`` after trimming.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from dvan.errors import AudioDecodeError, SilentAudioError

#: File name endings of the audio files read as speech (libsndfile's WAV, FLAC and Ogg Vorbis).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga")

#: Peak amplitude under which a waveform counts as digital silence (-80 dBFS).
SILENCE_PEAK = 1e-4
#: Shortest audio worth analysing, in seconds (a few frames are needed for derivatives).
MIN_SECONDS = 0.1
#: Longest file read, in seconds; longer files are read up to this point only.
MAX_READ_SECONDS = 600.0


def read_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Read an audio file as a mono float32 waveform at ``sample_rate``.

    Args:
        path: a WAV, FLAC or OGG file (anything libsndfile decodes).
        sample_rate: rate to resample to, in Hz.

    Returns:
        1-D float32 array.

    Raises:
        AudioDecodeError: the file is missing, empty, not audio, or holds NaN/Inf samples.
        SilentAudioError: the file holds only digital silence.
    """
    path = Path(path)
    if not path.is_file():
        if path.is_dir():
            raise AudioDecodeError(f"{path}: is a folder, not an audio file; pass a WAV, FLAC or OGG file")
        if path.exists():
            raise AudioDecodeError(f"{path}: is not a regular file (a pipe, socket or device); pass a WAV, FLAC or "
                                   "OGG file")
        raise AudioDecodeError(f"{path}: no such audio file; check the path")
    if path.stat().st_size == 0:
        raise AudioDecodeError(f"{path}: the file is empty (0 bytes); record or export it again")
    try:
        with sf.SoundFile(str(path)) as handle:
            source_rate = int(handle.samplerate)
            max_frames = int(MAX_READ_SECONDS * source_rate)
            data = handle.read(frames=max_frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise AudioDecodeError(
            f"{path}: cannot decode as audio ({exc}); use a WAV, FLAC or OGG file"
        ) from exc
    try:
        return prepare_waveform(data, source_rate, sample_rate, source=str(path))
    except SilentAudioError as exc:
        # a file is not a microphone: "check the microphone" would send the user to the wrong place
        raise SilentAudioError(f"{path}: the file is silent (only digital silence); choose a file with speech in it") from exc


def prepare_waveform(data: np.ndarray, source_rate: int, sample_rate: int = 16000, source: str = "audio") -> np.ndarray:
    """Downmix, validate and resample samples already in memory (e.g. from a microphone).

    Args:
        data: samples as (frames,) or (frames, channels), float or integer PCM.
        source_rate: rate of ``data`` in Hz.
        sample_rate: rate to resample to.
        source: name used in error messages (a file name, "microphone").

    Returns:
        1-D float32 array at ``sample_rate``.
    """
    samples = validate_samples(data, source_rate, source)
    if source_rate != sample_rate:
        samples = resample(samples, source_rate, sample_rate)
    return np.ascontiguousarray(samples, dtype=np.float32)


def validate_samples(data: np.ndarray, source_rate: int, source: str = "audio") -> np.ndarray:
    """Samples as 1-D float32 at their own rate, downmixed and validated (the first half of :func:`prepare_waveform`).

    Raises:
        AudioDecodeError: not audio samples, empty, too short, NaN or Inf.
        SilentAudioError: only digital silence (or nearly).
    """
    samples = np.asarray(data)
    if np.issubdtype(samples.dtype, np.integer):
        scale = float(np.iinfo(samples.dtype).max) + 1.0
        samples = samples.astype(np.float32) / scale
    elif not np.issubdtype(samples.dtype, np.floating):
        raise AudioDecodeError(f"{source}: samples of type {samples.dtype} are not audio; use PCM or float samples")
    if samples.ndim == 2:
        # in float64: a float file's samples may be near float32's limit, where a float32 sum overflows
        samples = samples.mean(axis=1, dtype=np.float64)
    if samples.ndim != 1:
        raise AudioDecodeError(f"{source}: expected (frames,) or (frames, channels) samples, got shape {samples.shape}")
    if samples.size == 0:
        raise AudioDecodeError(f"{source}: contains no audio frames; record or export it again")
    finite = np.isfinite(samples)
    if not finite.all():
        bad = int(samples.size - finite.sum())
        raise AudioDecodeError(
            f"{source}: {bad} of {samples.size} samples are NaN or Inf; re-export the audio from its source"
        )
    if samples.size < MIN_SECONDS * source_rate:
        raise AudioDecodeError(
            f"{source}: only {samples.size / source_rate * 1000:.0f} ms of audio; speak for at least "
            f"{MIN_SECONDS * 1000:.0f} ms"
        )
    peak = float(np.abs(samples).max())
    if peak > 1.0:
        # float files may hold any scale (1e30 is valid float data); analysis squares the samples,
        # which overflows float32 far below that. Features are per-utterance normalised, so
        # scaling the peak to 1 changes nothing but that.
        samples = samples / peak
        peak = 1.0
    samples = samples.astype(np.float32, copy=False)
    if peak < SILENCE_PEAK:
        raise SilentAudioError(f"{source}: the audio is silent (peak {peak:.1e}); check the microphone and record again")
    return samples


def resample(samples: np.ndarray, source_rate: int, sample_rate: int) -> np.ndarray:
    """1-D float32 ``samples`` from ``source_rate`` to ``sample_rate`` with soxr's high quality.

    The same numbers as ``librosa.resample(samples, orig_sr=..., target_sr=..., res_type="soxr_hq")``
    (soxr, then cut or zero-padded to ``ceil(len * ratio)`` samples), without importing librosa.
    """
    import soxr

    length = int(np.ceil(samples.shape[-1] * float(sample_rate) / source_rate))
    resampled = np.asarray(soxr.resample(samples, source_rate, sample_rate, quality="soxr_hq"), dtype=np.float32)
    if resampled.shape[-1] >= length:
        return resampled[:length]
    return np.pad(resampled, (0, length - resampled.shape[-1]))
