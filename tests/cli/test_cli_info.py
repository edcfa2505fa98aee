"""``dvan info`` reports versions, device and weights, and says what is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dvan.cli.main import main


def test_info_reports_backbones_and_device(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("DVAN_VGG16_WEIGHTS", raising=False)
    assert main(["info", "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["device"] == "cpu"
    assert report["backbones"]["efficientnet-lite0"]["found"] is True
    assert report["backbones"]["vgg16-fc7"]["found"] is False
    assert any("vgg16-397923af.pth" in p and str(tmp_path) in p for p in report["problems"])
    assert report["versions"]["torch"].startswith("2.14.1")


def test_info_text_lists_what_is_missing(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("DVAN_RESOURCES", str(tmp_path / "nowhere"))
    assert main(["info", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "device: cpu" in out
    assert "missing or broken:" in out and "default model not found" in out


def test_cuda_request_without_gpu_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    assert main(["info", "--device", "cuda"]) == 0
    assert "no CUDA GPU" in capsys.readouterr().out


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 1
    assert "COMMAND" in capsys.readouterr().out
