"""Audio front end: readable formats, layouts of each representation, and every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dvan.audio.features import AudioFrontEnd, file_features, recording_features, to_model_input
from dvan.audio.io import read_audio
from dvan.config import AudioConfig
from dvan.errors import AudioDecodeError, SilentAudioError


@pytest.mark.parametrize("name", ["speech16k.wav", "speech_pcm8.wav", "speech_pcm24.wav", "speech.flac",
                                  "speech.ogg", "speech48k_stereo.wav"])
def test_formats_decode_to_16k_mono(audio_files: dict[str, Path], name: str) -> None:
    wave = read_audio(audio_files[name], 16000)
    assert wave.ndim == 1 and wave.dtype == np.float32
    assert abs(wave.size - 48000) <= 16  # 3 s at 16 kHz, whatever the source rate
    reference = read_audio(audio_files["speech16k.wav"], 16000)
    if name in ("speech_pcm8.wav", "speech_pcm24.wav", "speech.flac"):
        # same content at lower/higher precision: close to the 16-bit original
        assert np.corrcoef(wave[:47000], reference[:47000])[0, 1] > 0.99


def test_stereo_48k_is_downmixed_and_resampled(audio_files: dict[str, Path]) -> None:
    wave = read_audio(audio_files["speech48k_stereo.wav"], 16000)
    mono16 = read_audio(audio_files["speech16k.wav"], 16000)
    # the stereo file is 1.0 and 0.5 of one signal: its mean is 0.75 of the mono signal
    assert np.corrcoef(wave[:47000], mono16[:47000])[0, 1] > 0.98
    assert 0.6 < np.abs(wave).max() / np.abs(mono16).max() < 0.9


@pytest.mark.parametrize(("name", "error", "words"), [
    ("empty.wav", AudioDecodeError, "empty"),
    ("not_audio.wav", AudioDecodeError, "cannot decode"),
    ("header_only.wav", AudioDecodeError, "cannot decode"),
    ("nan.wav", AudioDecodeError, "NaN or Inf"),
    ("silence.wav", SilentAudioError, "silent"),
])
def test_bad_audio_gets_a_clear_error_naming_the_file(audio_files: dict[str, Path], name: str,
                                                      error: type[Exception], words: str) -> None:
    with pytest.raises(error) as info:
        file_features(audio_files[name], AudioConfig())
    assert name in str(info.value)
    assert words in str(info.value)


def test_a_silent_file_is_not_blamed_on_the_microphone(audio_files: dict[str, Path]) -> None:
    with pytest.raises(SilentAudioError) as info:
        read_audio(audio_files["silence.wav"], 16000)
    assert "microphone" not in str(info.value) and "choose a file with speech" in str(info.value)
    with pytest.raises(SilentAudioError, match="check the microphone"):
        recording_features(np.zeros(16000, dtype=np.float32), 16000, AudioConfig())


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioDecodeError, match="no such audio file"):
        read_audio(tmp_path / "nope.wav")


def test_truncated_wav_uses_the_frames_present(audio_files: dict[str, Path]) -> None:
    wave = read_audio(audio_files["truncated.wav"], 16000)
    assert 0 < wave.size < 48000


def test_two_minute_file_is_truncated_to_max_frames(audio_files: dict[str, Path]) -> None:
    config = AudioConfig()
    features = file_features(audio_files["long120s.wav"], config)
    assert features.truncated
    assert features.frames == config.max_frames == 2000
    assert features.grid.shape == (1, 12, 2000)


def test_short_speech_is_zero_padded() -> None:
    config = AudioConfig()
    from make_audio import speechlike

    features = recording_features(speechlike(2.0), 16000, config)
    assert not features.truncated
    assert 350 < features.frames < 420  # 2 s at 5 ms hops, minus trimmed quiet ends
    assert np.all(features.grid[:, :, features.frames:] == 0)
    assert np.all(np.abs(features.grid[:, :, : features.frames]).sum(axis=(0, 1)) > 0)


@pytest.mark.parametrize(("representation", "channels"),
                         [("mfcc", 1), ("delta", 1), ("delta2", 1), ("spectrogram", 1), ("mfcc_stack", 3)])
def test_every_representation_fits_its_layouts(audio_files: dict[str, Path], representation: str,
                                               channels: int) -> None:
    flat_config = AudioConfig(representation=representation)  # type: ignore[arg-type]
    flat = AudioFrontEnd(flat_config)([audio_files["speech16k.wav"]])
    assert flat.shape == (1, channels * 24000)
    grid_config = AudioConfig(representation=representation, layout="grid")  # type: ignore[arg-type]
    grid = AudioFrontEnd(grid_config)([audio_files["speech16k.wav"]])
    assert grid.shape == (1, channels, 12, 2000)


def test_flat_layout_is_frame_major(audio_files: dict[str, Path]) -> None:
    config = AudioConfig()
    features = file_features(audio_files["speech16k.wav"], config)
    flat = to_model_input([features], config)[0].numpy()
    # value of coefficient c at frame t sits at t * 12 + c: cutting the vector cuts time
    for frame, coefficient in [(0, 0), (5, 3), (100, 11)]:
        assert flat[frame * 12 + coefficient] == features.grid[0, coefficient, frame]
    assert np.all(flat[features.frames * 12:] == 0)


def test_delta_differs_from_mfcc(audio_files: dict[str, Path]) -> None:
    mfcc = file_features(audio_files["speech16k.wav"], AudioConfig(representation="mfcc")).grid
    delta = file_features(audio_files["speech16k.wav"], AudioConfig(representation="delta")).grid
    stack = file_features(audio_files["speech16k.wav"], AudioConfig(representation="mfcc_stack")).grid
    assert not np.allclose(mfcc, delta)
    np.testing.assert_allclose(stack[0], mfcc[0], atol=1e-5)
    np.testing.assert_allclose(stack[1], delta[0], atol=1e-5)


def test_integer_recording_samples_are_scaled() -> None:
    from make_audio import speechlike

    wave = speechlike(1.0)
    as_int16 = (wave * 32767).astype(np.int16)
    a = recording_features(wave, 16000, AudioConfig()).grid
    b = recording_features(as_int16, 16000, AudioConfig()).grid
    np.testing.assert_allclose(a, b, atol=0.05)


def test_too_short_recording() -> None:
    with pytest.raises(AudioDecodeError, match="at least"):
        recording_features(np.ones(100, dtype=np.float32) * 0.1, 16000, AudioConfig())
