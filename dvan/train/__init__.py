"""Training DVAN models (no Qt): presets, the resumable training loop, the text branch (the feature cache is dvan.data.features).

For a GUI training tab::

    from dvan.train import make_train_config, train
    config = make_train_config("dvan-plus")            # or "paper", representation="delta"
    result = train("collection/manifest.jsonl", config, "runs/mine", progress=on_progress,
                   cancel=token, device="auto")        # resumes from runs/mine when possible
    result.checkpoint                                   # runs/mine/best.safetensors

and :func:`dvan.eval.evaluate.evaluate` for a report on the test split.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dvan.train.config import PRESETS, AugmentConfig, TrainConfig, make_train_config
    from dvan.train.loop import TrainResult, train

# Loaded on first use, so importing dvan.train.config (presets for a --help) does not import torch.
_EXPORTS = {"PRESETS": "config", "AugmentConfig": "config", "TrainConfig": "config", "make_train_config": "config",
            "TrainResult": "loop", "train": "loop"}

__all__ = ["PRESETS", "AugmentConfig", "TrainConfig", "TrainResult", "make_train_config", "train"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
