"""On-the-fly augmentation of feature grids: time stretch and SpecAugment masks (numpy).

Grids are the cached valid frames (C, F, T) of one caption; the waveform-level speed/pitch and
noise perturbation is done once per caption in :mod:`dvan.data.features`.
"""

from __future__ import annotations

import numpy as np

from dvan.config import AugmentConfig


def time_stretch(grid: np.ndarray, factor: float) -> np.ndarray:
    """Linearly resample a (C, F, T) grid along time to round(T * factor) frames (at least 1)."""
    frames = grid.shape[2]
    target = max(1, round(frames * factor))
    if target == frames or frames < 2:
        return grid
    position = np.linspace(0.0, frames - 1, target)
    left = np.floor(position).astype(np.int64)
    right = np.minimum(left + 1, frames - 1)
    weight = (position - left).astype(np.float32)
    return (grid[:, :, left] * (1.0 - weight) + grid[:, :, right] * weight).astype(np.float32)


def spec_augment(grid: np.ndarray, augment: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Zero random time spans and feature rows (SpecAugment); returns a new array."""
    out = grid.copy()
    channels, rows, frames = out.shape
    for _ in range(augment.time_masks):
        width = int(rng.integers(0, augment.time_mask_frames + 1))
        width = min(width, frames // 4)
        if width:
            start = int(rng.integers(0, frames - width + 1))
            out[:, :, start:start + width] = 0.0
    for _ in range(augment.freq_masks):
        height = int(rng.integers(0, augment.freq_mask_rows + 1))
        height = min(height, rows - 1)
        if height:
            start = int(rng.integers(0, rows - height + 1))
            out[:, start:start + height, :] = 0.0
    return out


def augment_grid(grid: np.ndarray, augment: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Time stretch then SpecAugment, as configured."""
    if augment.time_stretch:
        grid = time_stretch(grid, float(rng.uniform(1.0 - augment.time_stretch, 1.0 + augment.time_stretch)))
    if augment.time_masks or augment.freq_masks:
        grid = spec_augment(grid, augment, rng)
    return grid
