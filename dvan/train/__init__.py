"""Training DVAN models (no Qt): presets, feature cache, resumable training loop.

For a GUI training tab::

    from dvan.train import make_train_config, train
    config = make_train_config("dvan-plus")            # or "paper", representation="delta"
    result = train("collection/manifest.jsonl", config, "runs/mine", progress=on_progress,
                   cancel=token, device="auto")        # resumes from runs/mine when possible
    result.checkpoint                                   # runs/mine/best.safetensors

and :func:`dvan.eval.evaluate.evaluate` for a report on the test split.
"""

from dvan.train.config import PRESETS, AugmentConfig, TrainConfig, make_train_config
from dvan.train.loop import TrainResult, train

__all__ = ["PRESETS", "AugmentConfig", "TrainConfig", "TrainResult", "make_train_config", "train"]
