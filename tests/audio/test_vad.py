"""Voice activity check of microphone queries (dvan.audio.vad) on real TTS speech and seeded noise."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dvan.audio.vad import DEFAULT_VAD_METHOD, check_speech, detect_speech, frame_levels, speech_span

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


# -- where is the speech: the trained Silero VAD against the energy rule --------------------------------

def padded_in_noise(speech: np.ndarray, snr_db: float, pad_s: float = 1.0, seed: int = 3) -> tuple[np.ndarray, tuple[int, int]]:
    """``speech`` (its own quiet edges cut) with ``pad_s`` before and after, all under white noise at ``snr_db``."""
    loud = np.flatnonzero(np.abs(speech) > 1e-3)
    core = speech[loud[0]: loud[-1] + 1]
    level = float(np.sqrt(np.mean(core**2)))
    pad = int(pad_s * RATE)
    clip = np.concatenate([np.zeros(pad, np.float32), core, np.zeros(pad, np.float32)])
    clip = clip + np.random.default_rng(seed).normal(0, level / 10 ** (snr_db / 20), clip.size).astype(np.float32)
    return clip.astype(np.float32), (pad, pad + core.size)


def test_silero_finds_speech_in_noise_and_cuts_to_it(speech: np.ndarray) -> None:
    clip, (start, end) = padded_in_noise(speech, snr_db=10.0)
    check = check_speech(clip, RATE, "silero")
    assert check.has_speech and check.method == "silero" and check.span is not None, check
    found_start, found_end = check.span
    # within 200 ms of the true edges (the VAD pads its span by 50 ms, its probability lags the end); the noise
    # on either side is cut
    assert abs(found_start - start) < 0.2 * RATE and abs(found_end - end) < 0.2 * RATE, (check.span, start, end)
    trimmed = check.trim(clip)
    assert trimmed.size == found_end - found_start and trimmed.size < clip.size - RATE


def test_silero_and_energy_agree_on_int16_stereo(speech: np.ndarray) -> None:
    pcm = (np.stack([speech, speech], axis=1) * 32767).astype(np.int16)
    for method in ("silero", "energy"):
        check = check_speech(pcm, RATE, method)
        assert check.has_speech and check.span is not None and check.trim(pcm).ndim == 1, (method, check)


@pytest.mark.parametrize("level", [0.01, 0.2])
def test_silero_hears_no_speech_in_noise(level: float) -> None:
    check = check_speech(noise(2.0, level), RATE, "silero")
    assert not check.has_speech and check.reason == "no_speech" and check.span is None, check
    assert "No speech heard" in check.message


def test_silence_and_short_presses_are_refused_before_the_vad() -> None:
    assert check_speech(np.zeros(2 * RATE, np.float32), RATE, "silero").reason == "silent"
    assert check_speech(noise(0.1, 0.1), RATE, "silero").reason == "too_short"


def test_default_method_is_the_measured_winner(speech: np.ndarray) -> None:
    clip, (start, end) = padded_in_noise(speech, snr_db=20.0)
    check = check_speech(clip, RATE)
    assert check.method == DEFAULT_VAD_METHOD == "energy" and check.has_speech and check.span is not None
    assert check.span[0] >= start - 0.2 * RATE and check.span[1] <= end + 0.2 * RATE
    with pytest.raises(ValueError, match="unknown voice activity method"):
        check_speech(clip, RATE, "webrtc")


def test_missing_vad_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from dvan import packages
    from dvan.audio.silero import SileroVad
    from dvan.errors import ModelPackageMissingError

    monkeypatch.setattr(packages, "VAD", replace(packages.VAD, weights_module="silero_vad_not_installed"))
    with pytest.raises(ModelPackageMissingError, match=r"silero_vad_not_installed.*pip install .*silero-vad==6\.2\.3"):
        SileroVad().load()


def test_energy_span_brackets_the_speech(speech: np.ndarray) -> None:
    clip, (start, end) = padded_in_noise(speech, snr_db=30.0)
    span = speech_span(clip, RATE, "energy")
    assert span is not None and span[0] <= start + 0.1 * RATE and span[1] >= end - 0.1 * RATE
