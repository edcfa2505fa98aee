"""Audio branches: MFCC input -> audio feature V_S (equation 3).

``PaperAudioBranch`` is Table I of the paper, layer for layer, over the flat vector (d2 = 24000):

    input   24000 x 1
    Conv1   k10, 6 ch, stride 2   -> 12000 x 6
    Conv2   k8, 12 ch, stride 2   ->  6000 x 12
    Pool3   2                     ->  3000 x 12
    Conv4   k5, 24 ch, stride 2   ->  1500 x 24
    Conv5   k3, 48 ch, stride 2   ->   750 x 48
    Pool6   2                     ->   375 x 48
    FC      18000 -> d3 = 1024

The paper does not state paddings or activations: paddings are chosen so that the sizes are
exactly Table I's; ReLU follows each convolution and the FC layer.

``TimeConvAudioBranch`` convolves over time with the (channel, coefficient) rows as input
channels, and pools over the valid frames only, so padding and truncation do not matter.
"""

from __future__ import annotations

import torch
from torch import nn

from dvan.config import ModelConfig


class PaperAudioBranch(nn.Module):
    """Table I of the paper over the frame-major flat MFCC vector."""

    def __init__(self, input_length: int = 24000, audio_dim: int = 1024) -> None:
        super().__init__()
        if input_length % 64:
            raise ValueError(f"flat input length must be a multiple of 64 for Table I's strides, got {input_length}")
        self.input_length = input_length
        self.conv1 = nn.Conv1d(1, 6, kernel_size=10, stride=2, padding=4)
        self.conv2 = nn.Conv1d(6, 12, kernel_size=8, stride=2, padding=3)
        self.pool3 = nn.MaxPool1d(2)
        self.conv4 = nn.Conv1d(12, 24, kernel_size=5, stride=2, padding=2)
        self.conv5 = nn.Conv1d(24, 48, kernel_size=3, stride=2, padding=1)
        self.pool6 = nn.MaxPool1d(2)
        self.fc = nn.Linear(48 * (input_length // 64), audio_dim)
        self.act = nn.ReLU()

    def stages(self, flat: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """Every layer's output, named as in Table I (the shape test reads these)."""
        x = flat.unsqueeze(1)
        outputs: list[tuple[str, torch.Tensor]] = []
        x = self.act(self.conv1(x))
        outputs.append(("conv1", x))
        x = self.act(self.conv2(x))
        outputs.append(("conv2", x))
        x = self.pool3(x)
        outputs.append(("pool3", x))
        x = self.act(self.conv4(x))
        outputs.append(("conv4", x))
        x = self.act(self.conv5(x))
        outputs.append(("conv5", x))
        x = self.pool6(x)
        outputs.append(("pool6", x))
        x = self.act(self.fc(x.flatten(1)))
        outputs.append(("fc", x))
        return outputs

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        """(B, d2) flat MFCC -> (B, d3) audio feature."""
        return self.stages(flat)[-1][1]


class TimeConvAudioBranch(nn.Module):
    """1-D convolutions over time on the feature grid, then mean+max pooling over valid frames."""

    def __init__(self, in_rows: int, audio_dim: int = 1024, width: int = 256) -> None:
        super().__init__()

        def block(cin: int, cout: int, kernel: int, pool: int) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv1d(cin, cout, kernel, padding=kernel // 2), nn.BatchNorm1d(cout), nn.ReLU()]
            if pool > 1:
                layers.append(nn.MaxPool1d(pool))
            return layers

        self.pool_factor = 2 * 2 * 2
        self.body = nn.Sequential(
            *block(in_rows, width, 5, 2),
            *block(width, width, 5, 2),
            *block(width, 2 * width, 3, 2),
            *block(2 * width, 2 * width, 3, 1),
        )
        self.head = nn.Sequential(nn.Linear(4 * width, audio_dim), nn.ReLU())

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """(B, C, F, T) grid -> (B, d3) audio feature."""
        rows = grid.flatten(1, 2)
        # padded frames are exactly zero in every row; real frames (normalised) practically never are
        valid = rows.abs().sum(dim=1) > 0
        x = self.body(rows)
        steps = x.shape[-1]
        mask = nn.functional.max_pool1d(valid.float().unsqueeze(1), self.pool_factor)[:, 0, :steps] > 0
        mask[:, 0] |= ~mask.any(dim=1)
        maskf = mask.unsqueeze(1).float()
        mean = (x * maskf).sum(-1) / maskf.sum(-1)
        peak = x.masked_fill(~mask.unsqueeze(1), float("-inf")).amax(-1)
        return self.head(torch.cat([mean, peak], dim=1))


def create_audio_branch(config: ModelConfig) -> nn.Module:
    """The audio branch that ``config.audio_branch`` names, sized for ``config.audio``."""
    audio = config.audio
    if config.audio_branch == "paper1d":
        if audio.layout != "flat":
            raise ValueError("the paper1d audio branch needs audio.layout='flat'")
        return PaperAudioBranch(audio.flat_length, config.audio_dim)
    if config.audio_branch == "tconv":
        if audio.layout != "grid":
            raise ValueError("the tconv audio branch needs audio.layout='grid'")
        return TimeConvAudioBranch(audio.channels * audio.n_coefficients, config.audio_dim)
    raise ValueError(f"unknown audio branch {config.audio_branch!r}; use 'paper1d' or 'tconv'")
