"""Training and evaluation end to end on a tiny generated spoken collection (real espeak-ng, real backbone)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from dvan.cli.main import main
from dvan.data.features import FeatureCache
from dvan.errors import Cancelled, TrainingError
from dvan.eval.plots import plot_pr_comparison
from dvan.model.factory import create_model
from dvan.progress import CancelToken, Progress
from dvan.train import make_train_config, train
from dvan.train.augment import spec_augment, time_stretch
from dvan.train.config import AugmentConfig, TrainConfig


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny collection of tests/data/make_tiny_collection.py and a feature cache shared by the tests."""
    from make_tiny_collection import make_tiny_collection

    root = tmp_path_factory.mktemp("tiny")
    return {"manifest": make_tiny_collection(root / "collection"), "cache": root / "cache"}


def small_plus(**overrides: object) -> TrainConfig:
    """dvan-plus with a batch small enough for several steps per epoch on the tiny set."""
    settings: dict[str, object] = {"batch_size": 6, "warmup_steps": 2, "epochs": 2, "log_every": 1, **overrides}
    return make_train_config("dvan-plus", **settings)  # type: ignore[arg-type]


def test_cli_train_then_eval_report(tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = main(["train", str(tiny["manifest"]), str(out), "--preset", "paper", "--representation", "delta",
                 "--epochs", "1", "--device", "cpu", "--cache-dir", str(tiny["cache"]), "--quiet"])
    assert code == 0
    assert "best checkpoint" in capsys.readouterr().out
    bundle = create_model(checkpoint=out / "best.safetensors", device="cpu")
    assert bundle.info["trained"] is True and bundle.info["preset"] == "paper"
    assert bundle.config.audio.representation == "delta" and bundle.config.audio_branch == "paper1d"
    assert set(bundle.info["val"]) >= {"map", "a2i_map", "i2a_map", "matching_accuracy"}
    events = [json.loads(line)["event"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert events[0] == "start" and "epoch" in events and events[-1] == "end"

    report_path, png = tmp_path / "report.json", tmp_path / "pr.png"
    code = main(["eval", str(out / "best.safetensors"), str(tiny["manifest"]), "--split", "test", "--json",
                 str(report_path), "--pr-curve", str(png), "--device", "cpu", "--cache-dir", str(tiny["cache"]),
                 "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "A->I" in printed and "I->A" in printed and "matching accuracy" in printed
    report = json.loads(report_path.read_text())
    assert report["split"] == "test" and report["units"] == "fraction"
    assert report["checkpoint"] == str((out / "best.safetensors").resolve())
    assert report["manifest"] == str(tiny["manifest"].resolve())
    assert report["counts"] == {"captions": 6, "images": 3, "classes": 3, "speakers": report["counts"]["speakers"]}
    for direction in ("audio_to_image", "image_to_audio"):
        section = report[direction]
        for key in ("map", "map@150", "p@1", "p@5", "p@10", "r@1", "r@5", "r@10", "f@1", "f@5", "f@10"):
            assert 0.0 <= section[key] <= 1.0, (direction, key)
        assert len(section["pr_curve"]["recall"]) == section["gallery"]
    assert report["audio_to_image"]["gallery"] == 3 and report["image_to_audio"]["gallery"] == 6
    assert set(report["pairs"]) == {"audio_to_image", "image_to_audio", "mR"}
    assert 0.0 <= report["matching_accuracy"] <= 1.0
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"

    compared = plot_pr_comparison({"run A": report, "run B": report}, tmp_path / "compare.png", title="two runs")
    assert compared.stat().st_size > 10_000 and compared.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="no reports"):
        plot_pr_comparison({}, tmp_path / "empty.png")


def test_dvan_plus_learns_and_caches_features(tiny: dict[str, Path], tmp_path: Path) -> None:
    config = small_plus(epochs=6)
    result = train(tiny["manifest"], config, tmp_path / "plus", device="cpu", cache_dir=tiny["cache"])
    assert result.checkpoint.is_file() and result.best_epoch >= 1
    # three easy classes: the tiny model separates them on the val split
    assert result.best_val["map"] > 0.6
    bundle = create_model(checkpoint=result.checkpoint, device="cpu")
    assert bundle.config.audio_branch == "tconv" and bundle.info["val"] == result.best_val
    # fine-tuning starts from the checkpoint's weights (lr 0: they stay put)
    tuned = train(tiny["manifest"], replace(config, epochs=1, lr=0.0), tmp_path / "tuned", device="cpu",
                  cache_dir=tiny["cache"], init_checkpoint=result.checkpoint)
    start = create_model(checkpoint=tuned.checkpoint, device="cpu").model.state_dict()
    for key, value in bundle.model.state_dict().items():
        if "running" not in key and "num_batches" not in key:
            np.testing.assert_array_equal(start[key].numpy(), value.numpy(), err_msg=key)
    with pytest.raises(TrainingError, match="cannot fine-tune"):
        train(tiny["manifest"], make_train_config("paper", epochs=1), tmp_path / "wrong", device="cpu",
              cache_dir=tiny["cache"], init_checkpoint=result.checkpoint)
    # the image features are cached: a second run never loads the backbone
    cache = FeatureCache(tiny["cache"])
    from dvan.data.manifest import read_manifest

    images = sorted({e.image for e in read_manifest(tiny["manifest"]) if e.split in ("train", "val")})

    def no_backbone() -> None:
        raise AssertionError("the backbone was loaded although every image feature is cached")

    features = cache.image_features(images, "efficientnet-lite0", no_backbone)  # type: ignore[arg-type]
    assert features.shape == (12, 1280)


def test_resume_after_interruption_gives_the_same_model(tiny: dict[str, Path], tmp_path: Path) -> None:
    config = small_plus(epochs=3, patience=10)
    straight = train(tiny["manifest"], config, tmp_path / "straight", device="cpu", cache_dir=tiny["cache"])
    assert straight.epochs == 3

    token = CancelToken()

    def cancel_in_epoch_two(report: Progress) -> None:
        if report.stage == "train" and report.message.startswith("epoch 2/3 loss"):
            token.cancel()

    interrupted = tmp_path / "interrupted"
    with pytest.raises(Cancelled):
        train(tiny["manifest"], config, interrupted, progress=cancel_in_epoch_two, cancel=token, device="cpu",
              cache_dir=tiny["cache"])
    log = [json.loads(line) for line in (interrupted / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if r["event"] == "epoch"] == [1]
    resumed = train(tiny["manifest"], config, interrupted, device="cpu", cache_dir=tiny["cache"])
    assert resumed.epochs == 3 and resumed.best_val == straight.best_val
    a = load_file(str(tmp_path / "straight" / "resume.safetensors"))
    b = load_file(str(interrupted / "resume.safetensors"))
    for key in a:
        if key.startswith(("model.", "optim.")):
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy(), err_msg=key)
    log = [json.loads(line) for line in (interrupted / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if r["event"] == "epoch"] == [1, 2, 3]
    steps = [r["step"] for r in log if r["event"] == "step"]
    assert steps == sorted(set(steps))  # no step logged twice after the resume
    # a finished run returns at once; another config in the same folder is refused
    again = train(tiny["manifest"], config, interrupted, device="cpu", cache_dir=tiny["cache"])
    assert again.epochs == 3
    with pytest.raises(TrainingError, match="another training config"):
        train(tiny["manifest"], replace(config, lr=0.5), interrupted, device="cpu", cache_dir=tiny["cache"])


def test_nan_stops_with_a_clear_error(tiny: dict[str, Path], tmp_path: Path) -> None:
    config = small_plus(lr=1e30, warmup_steps=0, grad_clip=0.0, weight_decay=0.0)
    with pytest.raises(TrainingError, match=r"diverged .* lower the learning rate"):
        train(tiny["manifest"], config, tmp_path / "nan", device="cpu", cache_dir=tiny["cache"])


def test_cli_reports_training_errors(tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    only_train = tmp_path / "only_train.jsonl"
    lines = [line for line in tiny["manifest"].read_text().splitlines() if '"val"' not in line]
    rebased = [json.dumps({**json.loads(x), "image": str(tiny["manifest"].parent / json.loads(x)["image"]),
                           "audio": str(tiny["manifest"].parent / json.loads(x)["audio"])}) for x in lines]
    only_train.write_text("\n".join(rebased) + "\n")
    assert main(["train", str(only_train), str(tmp_path / "r"), "--device", "cpu", "--cache-dir",
                 str(tiny["cache"]), "--quiet"]) == 2
    assert "no 'val' captions" in capsys.readouterr().err


def test_presets_and_config_round_trip() -> None:
    paper = make_train_config("paper", "spectrogram")
    assert paper.loss == "pair_ce" and paper.model.audio.layout == "flat" and paper.model.audio.flat_length == 24000
    assert paper.model.audio_branch == "paper1d" and paper.model.audio.representation == "spectrogram"
    plus = make_train_config("dvan-plus")
    assert plus.model.audio_branch == "tconv" and plus.loss.startswith("inbatch")
    assert plus.model.audio.representation == "spectrogram" and plus.model.audio.n_coefficients == 40
    assert TrainConfig.from_dict(json.loads(json.dumps(plus.to_dict()))) == plus
    with pytest.raises(ValueError, match="unknown preset"):
        make_train_config("vgg")
    with pytest.raises(ValueError, match="unknown training config fields"):
        make_train_config("paper", learning_rate=1.0)


def test_augmentations_keep_shapes() -> None:
    rng = np.random.default_rng(0)
    grid = rng.normal(size=(3, 12, 100)).astype(np.float32)
    assert time_stretch(grid, 1.2).shape == (3, 12, 120)
    np.testing.assert_array_equal(time_stretch(grid, 1.0), grid)
    masked = spec_augment(grid, AugmentConfig(time_masks=2, time_mask_frames=10, freq_masks=2, freq_mask_rows=3), rng)
    assert masked.shape == grid.shape and (masked == 0).any() and not (grid == 0).any()


def test_cropped_grid_batches_match_the_front_end(tiny: dict[str, Path]) -> None:
    import torch

    from dvan.audio.features import AudioFrontEnd
    from dvan.data.split import batch_input
    from dvan.model.dvan import DVAN
    from dvan.train.config import dvan_plus_audio

    config = replace(make_train_config("dvan-plus").model, audio=dvan_plus_audio("mfcc_stack"))
    audio = sorted((tiny["manifest"].parent / "audio").glob("*.wav"))[:5]
    cache = FeatureCache(tiny["cache"])
    results, errors = cache.audio_features(audio, [config.audio])
    assert not errors
    frontend = AudioFrontEnd(config.audio)
    full = frontend(list(audio))
    cropped = batch_input([g for g in results[0] if g is not None], config.audio)
    assert cropped.shape[-1] < full.shape[-1] == config.audio.max_frames
    torch.manual_seed(0)
    model = DVAN(config).eval()
    with torch.no_grad():
        torch.testing.assert_close(model.query_projection(cropped), model.query_projection(full), atol=1e-5, rtol=1e-5)
    # the cache key follows every setting that shapes the grid, but not the layout
    from dvan.data.features import audio_config_key

    assert audio_config_key(config.audio) == audio_config_key(replace(config.audio, layout="flat"))
    assert audio_config_key(config.audio) != audio_config_key(replace(config.audio, hop_length=160))
