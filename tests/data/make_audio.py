"""Generate the seeded audio fixtures of the audio front-end tests, including broken files.

Run ``python tests/data/make_audio.py OUT_DIR`` to look at them; the tests call :func:`make_audio`
into a temporary folder. Speech-like content is a seeded sum of formant-like tones with a
syllable envelope, so MFCCs vary over time the way speech does; no TTS engine is needed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf


def speechlike(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A seeded speech-like waveform in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    formants = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in rng.uniform(300, 3000, 4))
    envelope = np.clip(np.sin(2 * np.pi * 3.1 * t), 0, None) ** 0.5
    wave = (voice * 0.6 + formants * 0.2) * envelope + rng.normal(0, 0.01, t.size)
    return (0.5 * wave / np.abs(wave).max()).astype(np.float32)


def make_audio(out: Path) -> dict[str, Path]:
    """Write every fixture into ``out`` and return their paths by name."""
    out.mkdir(parents=True, exist_ok=True)
    base = speechlike(3.0, seed=1)
    files: dict[str, Path] = {}

    def write(name: str, data: np.ndarray, rate: int = 16000, subtype: str = "PCM_16", fmt: str = "WAV") -> None:
        path = out / name
        sf.write(path, data, rate, subtype=subtype, format=fmt)
        files[name] = path

    write("speech16k.wav", base)
    write("speech_pcm8.wav", base, subtype="PCM_U8")
    write("speech_pcm24.wav", base, subtype="PCM_24")
    write("speech.flac", base, fmt="FLAC")
    write("speech.ogg", base, subtype="VORBIS", fmt="OGG")
    t48 = speechlike(3.0, rate=48000, seed=1)
    write("speech48k_stereo.wav", np.stack([t48, 0.5 * t48], axis=1), rate=48000)
    write("silence.wav", np.zeros(16000, dtype=np.float32))
    nan = base.copy()
    nan[100:110] = np.nan
    nan[200] = np.inf
    write("nan.wav", nan, subtype="FLOAT")
    write("long120s.wav", np.tile(base, 40))
    (out / "empty.wav").write_bytes(b"")
    files["empty.wav"] = out / "empty.wav"
    (out / "not_audio.wav").write_bytes(b"this is a text file pretending to be a wav\n" * 20)
    files["not_audio.wav"] = out / "not_audio.wav"
    whole = files["speech16k.wav"].read_bytes()
    (out / "truncated.wav").write_bytes(whole[: len(whole) // 3])
    files["truncated.wav"] = out / "truncated.wav"
    (out / "header_only.wav").write_bytes(whole[:30])
    files["header_only.wav"] = out / "header_only.wav"
    return files


if __name__ == "__main__":
    for name, path in make_audio(Path(sys.argv[1] if len(sys.argv) > 1 else "audio-fixtures")).items():
        print(name, path)
