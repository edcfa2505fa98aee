"""One factory for a DVAN model with its audio front end and image backbone.

Training, indexing and search all start here, so the audio and image preprocessing they apply
can never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dvan.audio.features import AudioFrontEnd
from dvan.config import ModelConfig
from dvan.device import resolve_device
from dvan.model.checkpoint import load_checkpoint
from dvan.model.dvan import DVAN
from dvan.model.image_branch import Backbone, create_backbone


@dataclass
class ModelBundle:
    """A model, its preprocessing and (lazily loaded) image backbone."""

    model: DVAN
    audio_frontend: AudioFrontEnd
    device: torch.device
    info: dict[str, Any] = field(default_factory=dict)
    checkpoint: Path | None = None
    backbone_weights: Path | None = None
    #: the checkpoint's text branch (dvan.query.text.TextBranch), None for an audio-only model
    text_branch: Any = None
    _backbone: Backbone | None = None

    @property
    def config(self) -> ModelConfig:
        """The config that built the model."""
        return self.model.config

    @property
    def backbone(self) -> Backbone:
        """The frozen image backbone, loaded on first use."""
        if self._backbone is None:
            self._backbone = create_backbone(self.config.backbone, self.device, self.backbone_weights)
        return self._backbone


def create_model(config: ModelConfig | None = None, *, checkpoint: str | Path | None = None,
                 device: str | torch.device = "auto", backbone_weights: str | Path | None = None) -> ModelBundle:
    """Build a fresh model from ``config`` or load one from ``checkpoint``.

    Args:
        config: config of a new, untrained model (ignored when ``checkpoint`` is given).
        checkpoint: a safetensors checkpoint; its own config rebuilds the model.
        device: "auto", "cpu", "cuda" or a torch device.
        backbone_weights: explicit weights file for the backbone (the paper's VGG16).
    """
    resolved = device if isinstance(device, torch.device) else resolve_device(device)
    text_branch = None
    if checkpoint is not None:
        from dvan.query.text import read_text_branch

        model, info = load_checkpoint(checkpoint, device=resolved)
        path: Path | None = Path(checkpoint)
        text_branch = read_text_branch(checkpoint)
    else:
        model = DVAN(config or ModelConfig()).to(resolved)
        info, path = {}, None
    return ModelBundle(model=model, audio_frontend=AudioFrontEnd(model.config.audio), device=resolved, info=info,
                       checkpoint=path, backbone_weights=Path(backbone_weights) if backbone_weights else None,
                       text_branch=text_branch)
