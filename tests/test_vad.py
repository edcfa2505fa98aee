"""Voice activity check of microphone queries (dvan.audio.vad) on real TTS speech and seeded noise."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dvan.audio.vad import detect_speech, frame_levels

RATE = 16000


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """'many planes parked next to a long terminal' spoken by espeak-ng at 16 kHz, padded with quiet."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (Debian package espeak-ng)")
    path = Path(tmp_path_factory.mktemp("vad")) / "q.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), "many planes parked next to a long terminal"],
                   check=True, capture_output=True)
    data, rate = sf.read(path, dtype="float32")
    import soxr

    data = soxr.resample(data, rate, RATE)
    rng = np.random.default_rng(0)
    pad = rng.normal(0, 1e-4, RATE // 2).astype(np.float32)
    return np.concatenate([pad, data, pad]).astype(np.float32)


def noise(seconds: float, level: float, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, level, int(seconds * RATE)).astype(np.float32)


def test_speech_is_detected(speech: np.ndarray) -> None:
    check = detect_speech(speech, RATE)
    assert check.has_speech, check
    assert check.reason == "" and check.message == ""
    assert check.speech_s > 1.0
    assert check.duration_s == pytest.approx(speech.size / RATE)


def test_speech_in_moderate_noise_is_detected(speech: np.ndarray) -> None:
    rms = float(np.sqrt(np.mean(speech**2)))
    noisy = speech + noise(speech.size / RATE, rms / 6)  # about 15 dB SNR
    assert detect_speech(noisy, RATE).has_speech


def test_int16_and_stereo_input(speech: np.ndarray) -> None:
    pcm = (speech * 32767).astype(np.int16)
    assert detect_speech(pcm, RATE).has_speech
    assert detect_speech(np.stack([speech, speech], axis=1), RATE).has_speech


def test_digital_silence_is_silent() -> None:
    check = detect_speech(np.zeros(2 * RATE, dtype=np.float32), RATE)
    assert not check.has_speech and check.reason == "silent"
    assert "No speech heard" in check.message


def test_quiet_room_is_not_speech() -> None:
    check = detect_speech(noise(2.0, 3e-4), RATE)
    assert not check.has_speech and check.reason == "silent"


@pytest.mark.parametrize("level", [0.01, 0.2])
def test_steady_noise_is_not_speech_even_when_loud(level: float) -> None:
    check = detect_speech(noise(2.0, level), RATE)
    assert not check.has_speech and check.reason == "no_speech", check


def test_steady_tone_is_not_speech() -> None:
    t = np.arange(2 * RATE) / RATE
    check = detect_speech((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), RATE)
    assert not check.has_speech and check.reason == "no_speech"


def test_click_is_not_speech() -> None:
    data = noise(1.5, 1e-4)
    data[RATE // 2: RATE // 2 + 80] = 0.8
    check = detect_speech(data, RATE)
    assert not check.has_speech and check.reason == "no_speech"


def test_too_short_press(speech: np.ndarray) -> None:
    check = detect_speech(speech[RATE // 2: RATE // 2 + int(0.2 * RATE)], RATE)
    assert not check.has_speech and check.reason == "too_short"
    assert "0.20 s" in check.message
    assert detect_speech(np.zeros(0, dtype=np.float32), RATE).reason == "too_short"


def test_frame_levels() -> None:
    levels = frame_levels(np.full(RATE, 0.5, dtype=np.float32), RATE)
    assert levels.shape == (50,)
    assert np.allclose(levels, 20 * np.log10(0.5), atol=1e-3)
