"""The fusion scorer of equations 4 and 5, with a decomposed path for fast search.

    h = tanh(W_I V_I + W_S V_S + b)        (4), h in R^d4
    p = softmax(W_h h + b_h)               (5), p in R^2, p[1] = "image and audio match"

For k = 2, softmax(z)[1] = sigmoid(z1 - z0), so

    p[1] = sigmoid((w_1 - w_0) . tanh(G_i + q) + (b_1 - b_0))

with the gallery projection G_i = W_I V_I + b (one per tile, computed once at indexing) and the
query projection q = W_S V_S (one per spoken query). Scoring N tiles is then one (N, d4) add,
tanh and mat-vec instead of N full fusions.
"""

from __future__ import annotations

import torch
from torch import nn


class FusionScorer(nn.Module):
    """Equations 4-5: image feature x audio feature -> match logits (k = 2)."""

    def __init__(self, image_dim: int, audio_dim: int, fusion_dim: int = 512) -> None:
        super().__init__()
        self.image_proj = nn.Linear(image_dim, fusion_dim, bias=True)  # W_I and b
        self.audio_proj = nn.Linear(audio_dim, fusion_dim, bias=False)  # W_S
        self.classifier = nn.Linear(fusion_dim, 2)  # W_h and b_h

    def forward(self, image_features: torch.Tensor, audio_features: torch.Tensor) -> torch.Tensor:
        """Pairwise logits (B, 2) for B aligned (image, audio) pairs; the naive path."""
        fused = torch.tanh(self.image_proj(image_features) + self.audio_proj(audio_features))
        return self.classifier(fused)

    def match_probability(self, image_features: torch.Tensor, audio_features: torch.Tensor) -> torch.Tensor:
        """softmax(p)[1] for aligned pairs, the naive way (B,)."""
        return torch.softmax(self(image_features, audio_features), dim=-1)[:, 1]

    def gallery_projection(self, image_features: torch.Tensor) -> torch.Tensor:
        """G = W_I V_I + b for each image (N, d4)."""
        return self.image_proj(image_features)

    def query_projection(self, audio_features: torch.Tensor) -> torch.Tensor:
        """q = W_S V_S for each query (Q, d4)."""
        return self.audio_proj(audio_features)

    def decision_vector(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(w_1 - w_0, b_1 - b_0): the logit difference as a linear function of h."""
        weight = self.classifier.weight
        bias = self.classifier.bias
        return weight[1] - weight[0], bias[1] - bias[0]

    def cross_logits(self, gallery: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """Match logit (Q, N) of every query against every gallery projection.

        Args:
            gallery: (N, d4) gallery projections G.
            queries: (Q, d4) query projections q.
        """
        direction, offset = self.decision_vector()
        return decomposed_logits(gallery, queries, direction, offset)

    def cross_probability(self, gallery: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """Match probability (Q, N), identical to softmax(p)[1] of every pair."""
        return torch.sigmoid(self.cross_logits(gallery, queries))


def decomposed_logits(gallery: torch.Tensor, queries: torch.Tensor, direction: torch.Tensor,
                      offset: torch.Tensor) -> torch.Tensor:
    """(w1-w0) . tanh(G_i + q_j) + (b1-b0) for every query j and gallery item i: (Q, N)."""
    fused = torch.tanh(gallery.unsqueeze(0) + queries.unsqueeze(1))
    return fused @ direction + offset


def naive_probability(scorer: FusionScorer, image_features: torch.Tensor, audio_feature: torch.Tensor) -> torch.Tensor:
    """Reference path: run the full fusion (equations 4-5) for each of N images against one audio feature."""
    repeated = audio_feature.reshape(1, -1).expand(image_features.shape[0], -1)
    return scorer.match_probability(image_features, repeated)
