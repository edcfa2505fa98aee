"""The DVAN network: audio branch + fusion scorer over precomputed image features.

The image backbone is frozen (the paper takes VGG16 FC7 as is), so the trainable network sees
V_I as an input; that lets training cache image features and lets search precompute the
gallery projections of every tile.
"""

from __future__ import annotations

import torch
from torch import nn

from dvan.config import ModelConfig
from dvan.model.audio_branch import create_audio_branch
from dvan.model.fusion import FusionScorer


class DVAN(nn.Module):
    """Audio branch and fusion scorer, built from a :class:`ModelConfig`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.audio_branch = create_audio_branch(config)
        self.dropout = nn.Dropout(config.dropout)
        self.fusion = FusionScorer(config.image_dim, config.audio_dim, config.fusion_dim)

    def encode_audio(self, audio_input: torch.Tensor) -> torch.Tensor:
        """V_S (B, d3) from the front end's model input."""
        return self.dropout(self.audio_branch(audio_input))

    def forward(self, image_features: torch.Tensor, audio_input: torch.Tensor) -> torch.Tensor:
        """Match logits (B, 2) for aligned pairs."""
        return self.fusion(self.dropout(image_features), self.encode_audio(audio_input))

    def gallery_projection(self, image_features: torch.Tensor) -> torch.Tensor:
        """G for image features (N, d4); stored per tile in a library."""
        return self.fusion.gallery_projection(image_features)

    def query_projection(self, audio_input: torch.Tensor) -> torch.Tensor:
        """q for audio inputs (Q, d4)."""
        return self.fusion.query_projection(self.encode_audio(audio_input))
