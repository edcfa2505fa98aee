"""The DVAN network: Table I shapes, real backbone weights, fusion decomposition, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dvan.config import AudioConfig, ModelConfig, paper_config
from dvan.errors import CheckpointError, CheckpointMismatchError, WeightsNotFoundError
from dvan.model.audio_branch import PaperAudioBranch, TimeConvAudioBranch
from dvan.model.checkpoint import load_checkpoint, read_validated_metadata, save_checkpoint
from dvan.model.dvan import DVAN
from dvan.model.factory import create_model
from dvan.model.fusion import FusionScorer, naive_probability
from dvan.model.image_branch import create_backbone


def test_audio_branch_shapes_are_table_one() -> None:
    branch = PaperAudioBranch(24000, 1024)
    stages = dict(branch.stages(torch.randn(3, 24000)))
    # (channels, length) of each layer as Table I lists them (length x 1 x channels)
    assert tuple(stages["conv1"].shape) == (3, 6, 12000)
    assert tuple(stages["conv2"].shape) == (3, 12, 6000)
    assert tuple(stages["pool3"].shape) == (3, 12, 3000)
    assert tuple(stages["conv4"].shape) == (3, 24, 1500)
    assert tuple(stages["conv5"].shape) == (3, 48, 750)
    assert tuple(stages["pool6"].shape) == (3, 48, 375)
    assert tuple(stages["fc"].shape) == (3, 1024)
    assert branch.conv1.kernel_size == (10,) and branch.conv1.stride == (2,)
    assert branch.conv2.kernel_size == (8,) and branch.conv4.kernel_size == (5,) and branch.conv5.kernel_size == (3,)


def test_paper_model_dimensions() -> None:
    model = DVAN(paper_config())
    assert model.fusion.image_proj.in_features == 1280 and model.fusion.image_proj.out_features == 512
    assert model.fusion.audio_proj.in_features == 1024 and model.fusion.audio_proj.bias is None
    assert model.fusion.classifier.out_features == 2
    logits = model(torch.randn(4, 1280), torch.randn(4, 24000))
    assert logits.shape == (4, 2)
    assert DVAN(paper_config(backbone="vgg16-fc7")).fusion.image_proj.in_features == 4096


def test_time_conv_branch_ignores_padding() -> None:
    torch.manual_seed(0)
    branch = TimeConvAudioBranch(12, 1024).eval()
    speech = torch.randn(1, 1, 12, 300)
    short = torch.zeros(1, 1, 12, 2000)
    short[..., :300] = speech
    longer_pad = torch.zeros(1, 1, 12, 1000)
    longer_pad[..., :300] = speech
    with torch.no_grad():
        a, b = branch(short), branch(longer_pad)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_decomposed_scoring_equals_naive_fusion() -> None:
    torch.manual_seed(0)
    scorer = FusionScorer(1280, 1024, 512)
    for parameter in scorer.parameters():  # random, not just the init: larger weights stress tanh
        torch.nn.init.normal_(parameter, std=0.05)
    images = torch.randn(300, 1280)
    audio = torch.randn(4, 1024)
    with torch.no_grad():
        decomposed = scorer.cross_probability(scorer.gallery_projection(images), scorer.query_projection(audio))
        for q in range(4):
            naive = naive_probability(scorer, images, audio[q])
            assert torch.max(torch.abs(naive - decomposed[q])) < 1e-5
    assert decomposed.min() < 0.3 and decomposed.max() > 0.7  # the weights really discriminate


def test_efficientnet_lite0_weights_are_real_imagenet(lite0) -> None:
    from skimage import data

    with torch.inference_mode():
        logits = lite0.module.classify(lite0.preprocess([data.chelsea(), data.coffee()]))
    top = logits.topk(3).indices.tolist()
    assert set(top[0]) & {281, 282, 285}, f"chelsea came out as {top[0]}, not a cat: weights not loaded"
    assert top[1][0] == 967, f"coffee came out as {top[1]}, not espresso"
    features = lite0.features([data.chelsea(), np.zeros((64, 64, 3), np.uint8)])
    assert features.shape == (2, 1280) and features.dtype == np.float32


def test_backbone_handles_gray_and_alpha(lite0) -> None:
    rgba = np.random.default_rng(0).integers(0, 255, (100, 120, 4), dtype=np.uint8)
    gray = rgba[:, :, 0]
    features = lite0.features([rgba, gray])
    assert np.isfinite(features).all()


def test_vgg16_without_weights_says_where_to_put_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("DVAN_VGG16_WEIGHTS", raising=False)
    with pytest.raises(WeightsNotFoundError) as info:
        create_backbone("vgg16-fc7")
    message = str(info.value)
    assert "vgg16-397923af.pth" in message and str(tmp_path / "torch") in message


def test_vgg16_loads_a_standard_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.models import vgg16

    torch.manual_seed(0)
    reference = vgg16(weights=None).eval()
    weights = tmp_path / "vgg16-397923af.pth"
    torch.save(reference.state_dict(), weights)
    monkeypatch.setenv("DVAN_VGG16_WEIGHTS", str(weights))
    backbone = create_backbone("vgg16-fc7")
    image = np.random.default_rng(1).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    features = backbone.features([image])
    assert features.shape == (1, 4096)
    with torch.no_grad():
        x = backbone.preprocess([image])
        expected = reference.classifier[:5](torch.flatten(reference.avgpool(reference.features(x)), 1))
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-4, atol=1e-4)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    config = ModelConfig(audio=AudioConfig(representation="mfcc_stack", layout="grid"), audio_branch="tconv")
    model = DVAN(config).eval()
    path = save_checkpoint(model, tmp_path / "m.safetensors", info={"trained": True, "val": {"map": 0.5}})
    loaded, info = load_checkpoint(path)
    assert loaded.config == config and info["trained"] is True
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    half = save_checkpoint(model, tmp_path / "half.safetensors", dtype=torch.float16)
    assert half.stat().st_size < path.stat().st_size * 0.6
    bundle = create_model(checkpoint=half, device="cpu")
    assert bundle.model.fusion.image_proj.weight.dtype == torch.float32
    assert bundle.audio_frontend.config == config.audio
    assert not list(tmp_path.glob("*.partial"))


def test_checkpoint_mismatch_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(DVAN(paper_config()), tmp_path / "m.safetensors")
    with pytest.raises(CheckpointMismatchError, match="representation"):
        load_checkpoint(path, expect=paper_config(representation="delta"))
    with pytest.raises(CheckpointMismatchError, match="backbone"):
        load_checkpoint(path, expect=paper_config(backbone="vgg16-fc7"))


def test_checkpoint_with_foreign_weights_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = save_checkpoint(DVAN(paper_config()), tmp_path / "m.safetensors")
    config, _ = read_validated_metadata(path)
    metadata = {"dvan_format": "1", "dvan_config": json.dumps(config.to_dict()), "dvan_info": "{}"}
    save_file({"fusion.classifier.weight": torch.zeros(3, 3)}, str(tmp_path / "bad.safetensors"), metadata=metadata)
    with pytest.raises(CheckpointMismatchError, match="do not fit"):
        load_checkpoint(tmp_path / "bad.safetensors")


def test_checkpoint_garbage_and_wrong_version(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="garbage.safetensors"):
        load_checkpoint(garbage)
    from safetensors.torch import save_file

    raw = ModelConfig().to_dict()
    raw["format_version"] = 99
    save_file({"x": torch.zeros(1)}, str(tmp_path / "v99.safetensors"),
              metadata={"dvan_format": "1", "dvan_config": json.dumps(raw)})
    with pytest.raises(CheckpointMismatchError, match="format_version 99"):
        load_checkpoint(tmp_path / "v99.safetensors")
    pickled = tmp_path / "model.pt"
    torch.save({"a": 1}, pickled)
    with pytest.raises(CheckpointError):
        load_checkpoint(pickled)


@pytest.mark.cuda
def test_cuda_decomposed_scoring_matches_cpu() -> None:
    torch.manual_seed(0)
    scorer = FusionScorer(1280, 1024, 512)
    images, audio = torch.randn(1000, 1280), torch.randn(2, 1024)
    with torch.no_grad():
        cpu = scorer.cross_probability(scorer.gallery_projection(images), scorer.query_projection(audio))
        gpu_scorer = scorer.to("cuda")
        gpu = gpu_scorer.cross_probability(gpu_scorer.gallery_projection(images.cuda()),
                                           gpu_scorer.query_projection(audio.cuda()))
    assert torch.max(torch.abs(gpu.cpu() - cpu)) < 1e-4


@pytest.mark.cuda
def test_cuda_model_forward() -> None:
    model = create_model(paper_config(), device="cuda").model
    logits = model(torch.randn(2, 1280, device="cuda"), torch.randn(2, 24000, device="cuda"))
    assert logits.device.type == "cuda" and torch.isfinite(logits).all()


def test_fast_cpu_kernel_equals_naive_fusion() -> None:
    from dvan.search.kernels import fast_logits

    torch.manual_seed(1)
    scorer = FusionScorer(1280, 1024, 512)
    for parameter in scorer.parameters():
        torch.nn.init.normal_(parameter, std=0.2)  # large pre-activations reach tanh's saturated range
    images, audio = torch.randn(500, 1280), torch.randn(1, 1024)
    with torch.no_grad():
        gallery = scorer.gallery_projection(images).numpy()
        query = scorer.query_projection(audio)[0].numpy()
        direction, offset = scorer.decision_vector()
        naive = naive_probability(scorer, images, audio[0]).numpy()
    assert np.abs(gallery).max() > 8  # the clamp of the rational tanh is exercised
    fast = 1 / (1 + np.exp(-fast_logits(gallery, query, direction.numpy(), float(offset))))
    np.testing.assert_allclose(fast, naive, atol=1e-5)
