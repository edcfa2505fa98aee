"""Shared fixtures: generated audio, the default backbone, and the CUDA marker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Qt tests run without a display; set before any Qt import.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; torch.cuda.is_available() is False on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def audio_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The generated audio fixtures of tests/data/make_audio.py."""
    from make_audio import make_audio

    return make_audio(tmp_path_factory.mktemp("audio"))


@pytest.fixture(scope="session")
def lite0():
    """The real efficientnet-lite0 backbone with its ImageNet weights, on the CPU."""
    from dvan.model.image_branch import create_backbone

    return create_backbone("efficientnet-lite0", "cpu")
