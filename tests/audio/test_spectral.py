"""The numpy front end (dvan.audio.spectral) against librosa, the canonical one training uses, on real speech.

The speech is the demo's spoken queries (resources/demo/queries, made by
resources/demo/make_demo.py); the ranking check uses the embedded default model and the demo's
real images.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from dvan.audio import spectral
from dvan.audio.features import file_features, waveform_features
from dvan.audio.io import read_audio, resample
from dvan.config import AudioConfig
from dvan.resources import default_model_path, resources_dir
from dvan.train.config import dvan_plus_audio

QUERIES = sorted((resources_dir() / "demo" / "queries").glob("*.wav"))
#: The front ends of every preset and representation the project trains.
CONFIGS = {
    "dvan-plus": dvan_plus_audio(),
    "dvan-plus-mfcc_stack": dvan_plus_audio("mfcc_stack"),
    **{f"paper-{r}": AudioConfig(representation=r) for r in ("mfcc", "delta", "delta2", "spectrogram", "mfcc_stack")},
}


def test_there_is_real_speech_to_compare_on() -> None:
    assert len(QUERIES) == 5
    assert all(sf.info(str(q)).duration > 1.0 for q in QUERIES)


@pytest.mark.parametrize(("n_fft", "n_mels"), [(512, 40), (256, 40), (256, 12)])
def test_mel_filterbank_equals_librosa(n_fft: int, n_mels: int) -> None:
    ours = spectral.mel_filterbank(16000, n_fft, n_mels)
    theirs = librosa.filters.mel(sr=16000, n_fft=n_fft, n_mels=n_mels)
    assert ours.dtype == theirs.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)


def test_trim_cuts_the_same_samples_as_librosa() -> None:
    for query in QUERIES:
        waveform = read_audio(query)
        padded = np.concatenate([np.zeros(4000, np.float32), waveform, 1e-4 * np.ones(3000, np.float32)])
        for n_fft, hop in ((512, 320), (256, 80)):
            theirs, _ = librosa.effects.trim(padded, top_db=40.0, frame_length=n_fft, hop_length=hop)
            ours = spectral.trim(padded, 40.0, n_fft, hop)
            assert ours.size < padded.size
            np.testing.assert_array_equal(ours, theirs)


def test_each_step_equals_librosa_on_speech() -> None:
    waveform = read_audio(QUERIES[0])
    mel = librosa.feature.melspectrogram(y=waveform, sr=16000, n_fft=256, hop_length=80, win_length=256, n_mels=40,
                                         power=2.0)
    ours_mel = spectral.mel_power(waveform, 16000, 256, 80, 40)
    assert ours_mel.shape == mel.shape and ours_mel.dtype == np.float32
    np.testing.assert_allclose(ours_mel, mel, rtol=1e-4, atol=1e-6 * float(mel.max()))
    log_mel = librosa.power_to_db(mel, ref=1.0, top_db=80.0)
    np.testing.assert_allclose(spectral.power_to_db(ours_mel), log_mel, atol=1e-3)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=12)
    np.testing.assert_allclose(spectral.mfcc(log_mel, 12), mfcc, rtol=1e-5, atol=1e-3)
    for width in (9, 5, 3):
        for order in (1, 2):
            theirs = librosa.feature.delta(mfcc[:, :40], width=width, order=order, mode="interp")
            np.testing.assert_allclose(spectral.delta(mfcc[:, :40], width, order), theirs, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_features_equal_librosa_features_on_real_speech(name: str) -> None:
    config = CONFIGS[name]
    for query in QUERIES:
        theirs = file_features(query, config, backend="librosa")
        ours = file_features(query, config, backend="numpy")
        assert ours.frames == theirs.frames and ours.truncated == theirs.truncated
        # normalised features are of unit scale: float32 rounding of both paths is ~1e-6
        np.testing.assert_allclose(ours.grid, theirs.grid, rtol=0, atol=2e-4)


def test_short_utterances_take_a_narrower_delta_like_librosa() -> None:
    speech = read_audio(QUERIES[0])[1000:1400]  # 25 ms of speech, then digital silence the trimming cuts
    waveform = np.concatenate([speech, np.zeros(1700, np.float32)])
    config = AudioConfig(representation="mfcc_stack")
    theirs = waveform_features(waveform, config, backend="librosa")
    ours = waveform_features(waveform, config, backend="numpy")
    assert ours.frames == theirs.frames == 8  # an even count: librosa's delta then takes width 7
    np.testing.assert_allclose(ours.grid, theirs.grid, atol=2e-4)


def test_resampling_is_librosa_soxr_hq_exactly() -> None:
    waveform = read_audio(QUERIES[1])
    for rate in (44100, 48000, 8000, 22050):
        source = librosa.resample(waveform, orig_sr=16000, target_sr=rate, res_type="soxr_hq")
        theirs = librosa.resample(source, orig_sr=rate, target_sr=16000, res_type="soxr_hq")
        np.testing.assert_array_equal(resample(source, rate, 16000), theirs)


def _demo_images() -> list[np.ndarray]:
    from dvan.library.raster import open_raster, tile_windows

    images = []
    with open_raster(resources_dir() / "demo" / "demo_scene.tif") as scene:
        for window in tile_windows(scene.width, scene.height, 256, 0):
            images.append(scene.read_tile(window)[0])
    for chip in sorted((resources_dir() / "demo" / "chips").glob("*.jpg")):
        with open_raster(chip) as source:
            images.append(source.read_whole(256)[0])
    return images


@pytest.mark.skipif(not default_model_path().is_file(), reason="the embedded default model is not installed")
def test_the_default_model_ranks_the_demo_images_the_same_with_both_front_ends() -> None:
    import torch

    from dvan.library.projection import project_features
    from dvan.model.factory import create_model
    from dvan.search.kernels import Decision, top_k

    bundle = create_model(checkpoint=default_model_path(), device="cpu")
    gallery = project_features(bundle.model, bundle.backbone.features(_demo_images()).astype(np.float16), bundle.device)
    decision = Decision.from_scorer(bundle.model.fusion)
    rows = np.arange(gallery.shape[0], dtype=np.int64)
    config = bundle.config.audio
    for query in QUERIES:
        rankings = []
        for backend in ("librosa", "numpy"):
            features = file_features(query, config, backend=backend)
            with torch.inference_mode():
                audio = bundle.model.encode_audio(bundle.audio_frontend.batch([features]))
                projection = bundle.model.fusion.query_projection(audio)[0].float().numpy()
            rankings.append(top_k(gallery, rows, projection, decision, gallery.shape[0], backend="torch"))
        (librosa_rows, librosa_logits), (numpy_rows, numpy_logits) = rankings
        np.testing.assert_array_equal(numpy_rows, librosa_rows, err_msg=Path(query).name)
        np.testing.assert_allclose(numpy_logits, librosa_logits, atol=1e-3)


def test_a_config_change_changes_the_numpy_features_too() -> None:
    # guards against the numpy path ignoring a setting the librosa path honours
    config = dvan_plus_audio()
    a = file_features(QUERIES[2], config, backend="numpy").grid
    b = file_features(QUERIES[2], replace(config, trim_db=20.0), backend="numpy").grid
    c = file_features(QUERIES[2], replace(config, hop_length=160, max_frames=1000), backend="numpy").grid
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
