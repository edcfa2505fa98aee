"""One split of a manifest as arrays: cached image features, cached audio grids, labels, pairs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dvan.config import AudioConfig, AugmentConfig, ModelConfig
from dvan.data.features import FeatureCache, expand
from dvan.data.manifest import ManifestEntry
from dvan.errors import TrainingError
from dvan.model.image_branch import Backbone
from dvan.progress import CancelToken, ProgressCallback, no_progress

#: Frames of padding kept after the longest caption of a grid batch. The tconv branch's receptive
#: field is far smaller, so its output equals that on the front end's full max_frames grid.
GRID_MARGIN = 64


@dataclass
class SplitData:
    """A split's images and spoken captions, ready for training or scoring.

    Attributes:
        name: "train", "val" or "test".
        image_paths: the split's distinct images, in manifest order.
        image_labels: class of each image (I,).
        image_features: V_I of each image (I, D).
        captions: the manifest entries kept (those whose audio could be read).
        caption_labels: class of each caption (A,).
        caption_image: index of each caption's own image (A,).
        audio: valid-frame (C, F, T) grid of each caption.
        copies: perturbed copies of each caption's audio (empty lists without augmentation).
        skipped: one message per caption left out (unreadable or silent audio).
    """

    name: str
    image_paths: list[Path]
    image_labels: np.ndarray
    image_features: np.ndarray
    captions: list[ManifestEntry]
    caption_labels: np.ndarray
    caption_image: np.ndarray
    audio: list[np.ndarray]
    copies: list[list[np.ndarray]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        """Sorted distinct class labels."""
        return sorted(set(self.image_labels.tolist()))


def load_split(entries: Sequence[ManifestEntry], split: str, model_config: ModelConfig, cache: FeatureCache,
               get_backbone: Callable[[], Backbone], augment: AugmentConfig | None = None,
               progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> SplitData:
    """Features of one split, from the cache where possible.

    Raises:
        TrainingError: the split has no usable caption.
    """
    chosen = [e for e in entries if e.split == split]
    if not chosen:
        raise TrainingError(f"the manifest has no {split!r} captions; give some lines \"split\": \"{split}\"")
    audio_config = model_config.audio
    use_copies = augment is not None and augment.speed_copies > 0
    results, errors = cache.audio_features([e.audio for e in chosen], [audio_config],
                                           augment if use_copies else None, progress, cancel,
                                           stage=f"audio features ({split})")
    kept = [(e, grid) for e, grid in zip(chosen, results[0], strict=True) if grid is not None]
    if not kept:
        raise TrainingError(f"no {split!r} caption could be read ({len(errors)} failed, first: {errors[:1]})")
    image_index: dict[Path, int] = {}
    image_labels: list[str] = []
    for entry, _ in kept:
        if entry.image not in image_index:
            image_index[entry.image] = len(image_index)
            image_labels.append(entry.label)
    image_paths = list(image_index)
    features = cache.image_features(image_paths, model_config.backbone, get_backbone, progress=progress,
                                    cancel=cancel, stage=f"image features ({split})")
    captions = [e for e, _ in kept]
    copies = cache.audio_copies([e.audio for e in captions], audio_config, augment) if use_copies and augment \
        else [[] for _ in captions]
    return SplitData(
        name=split,
        image_paths=image_paths,
        image_labels=np.asarray(image_labels),
        image_features=features,
        captions=captions,
        caption_labels=np.asarray([e.label for e in captions]),
        caption_image=np.asarray([image_index[e.image] for e in captions], dtype=np.int64),
        audio=[grid for _, grid in kept],
        copies=copies,
        skipped=errors,
    )


def batch_input(grids: Sequence[np.ndarray], config: AudioConfig, margin: int = GRID_MARGIN) -> torch.Tensor:
    """The audio branch's input for valid-frame grids.

    The flat layout is exactly the front end's (:func:`dvan.audio.features.to_model_input`); the
    grid layout is cut to the longest caption plus ``margin`` frames (rounded up to a multiple of
    8) instead of ``max_frames``. With the default margin that changes nothing for the tconv
    branch in eval mode and saves most of its work; training uses no margin.
    """
    if config.layout == "flat":
        from dvan.audio.features import to_model_input

        return to_model_input([expand(g, config) for g in grids], config)
    longest = max(min(g.shape[2], config.max_frames) for g in grids)
    frames = min(config.max_frames, -(-(longest + margin) // 8) * 8)
    out = np.zeros((len(grids), config.channels, config.n_coefficients, frames), dtype=np.float32)
    for i, grid in enumerate(grids):
        kept = min(grid.shape[2], frames)
        out[i, :, :, :kept] = grid[:, :, :kept]
    return torch.from_numpy(out)
