"""Is the match probability p a confidence a user can read? Reliability, calibration error, and a fix.

A pair (spoken query, image) *matches* when the image shows the class of place the query was
spoken for (the relevance the model is trained and evaluated on). A model is calibrated when,
among the pairs it gives p = 0.8, about 80 % match. Models trained with in-batch losses usually are
not: their logits are scaled to separate, not to be read.

The fix is Platt scaling fitted on the validation split: ``p' = sigmoid(a * z + c)`` on the match
logit z. Because p = sigmoid(z) with z = (w_1 - w_0) . h + (b_1 - b_0) (equation 5 with k = 2),
the same map is a change of the scorer's last layer (:func:`fold_into_scorer`), so every consumer
(search kernels, captions, the app) reads calibrated probabilities with no new code path, and the
ranking is unchanged (a > 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dvan.data.collections import LabelPolicy, manifest_record, read_collections
from dvan.model.fusion import FusionScorer
from dvan.progress import CancelToken, ProgressCallback, no_progress

#: Equal-width probability bins of the reliability curve and of the expected calibration error.
BINS = 15


@dataclass(frozen=True)
class Reliability:
    """Reliability curve of a set of probabilities against 0/1 outcomes.

    Attributes:
        edges: bin edges (BINS + 1,).
        confidence: mean predicted probability per bin (NaN for an empty bin).
        accuracy: fraction of matching pairs per bin (NaN for an empty bin).
        counts: pairs per bin.
        ece: expected calibration error, sum over bins of |accuracy - confidence| weighted by counts.
        brier: mean squared error of the probabilities.
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    counts: np.ndarray
    ece: float
    brier: float

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (NaN bins become None)."""
        def clean(values: np.ndarray) -> list[float | None]:
            return [None if not np.isfinite(v) else round(float(v), 6) for v in values]

        return {"edges": clean(self.edges), "confidence": clean(self.confidence), "accuracy": clean(self.accuracy),
                "counts": [int(c) for c in self.counts], "ece": round(self.ece, 6), "brier": round(self.brier, 6)}


def reliability(probability: np.ndarray, matches: np.ndarray, bins: int = BINS) -> Reliability:
    """Reliability curve, expected calibration error and Brier score.

    Args:
        probability: predicted match probabilities, any shape.
        matches: 0/1 or boolean outcomes of the same shape.
        bins: number of equal-width bins over [0, 1].
    """
    p = np.asarray(probability, dtype=np.float64).ravel()
    y = np.asarray(matches, dtype=np.float64).ravel()
    if p.shape != y.shape or p.size == 0:
        raise ValueError(f"need as many outcomes as probabilities, got {y.size} and {p.size}")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    sums_p = np.bincount(which, weights=p, minlength=bins)
    sums_y = np.bincount(which, weights=y, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(counts > 0, sums_p / counts, np.nan)
        accuracy = np.where(counts > 0, sums_y / counts, np.nan)
    gaps = np.abs(np.nan_to_num(accuracy) - np.nan_to_num(confidence)) * counts
    return Reliability(edges, confidence, accuracy, counts, float(gaps.sum() / p.size), float(np.mean((p - y) ** 2)))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically safe logistic function in float64."""
    z = np.asarray(logits, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -z))


def fit_platt(logits: np.ndarray, matches: np.ndarray, iterations: int = 100) -> tuple[float, float]:
    """Scale a and offset c minimising the log loss of ``sigmoid(a * z + c)`` (Newton's method).

    Pairs are not reweighted: the fitted probabilities reproduce the share of matching pairs in the
    data fitted on (about one in the number of classes for a balanced collection).

    Returns:
        ``(a, c)``; a is kept positive so the ranking never changes.
    """
    z = np.asarray(logits, dtype=np.float64).ravel()
    y = np.asarray(matches, dtype=np.float64).ravel()

    def loss(a: float, c: float) -> float:
        t = a * z + c
        return float(np.mean(np.logaddexp(0.0, t) - y * t))

    a, c = 1.0, 0.0
    current = loss(a, c)
    for _ in range(iterations):
        p = sigmoid(a * z + c)
        residual = p - y
        weight = p * (1.0 - p) + 1e-12
        gradient = np.array([np.dot(residual, z), residual.sum()]) / z.size
        hessian = np.array([[np.dot(weight, z * z), np.dot(weight, z)], [np.dot(weight, z), weight.sum()]]) / z.size
        step = np.linalg.solve(hessian + np.eye(2) * 1e-9, gradient)
        size = 1.0
        while size > 1e-6 and loss(a - size * step[0], c - size * step[1]) > current:
            size /= 2  # backtracking: a full Newton step can overshoot where p saturates
        a, c = a - size * float(step[0]), c - size * float(step[1])
        previous, current = current, loss(a, c)
        if previous - current < 1e-12:
            break
    return max(a, 1e-3), c


def class_matches(caption_labels: np.ndarray, image_labels: np.ndarray) -> np.ndarray:
    """(A, I) boolean: caption a and image i are of the same class."""
    return np.asarray(caption_labels)[:, None] == np.asarray(image_labels)[None, :]


@torch.no_grad()
def fold_into_scorer(scorer: FusionScorer, scale: float, offset: float) -> None:
    """Rewrite the scorer's last layer so its match logit becomes ``scale * z + offset``.

    Only the difference of the two output rows matters for p[1] (softmax over k = 2), so the
    row of class 0 stays and the row of class 1 takes the scaled difference.
    """
    weight, bias = scorer.classifier.weight, scorer.classifier.bias
    direction, difference = weight[1] - weight[0], bias[1] - bias[0]
    weight[1] = weight[0] + scale * direction
    bias[1] = bias[0] + scale * difference + offset


def calibrate_checkpoint(checkpoint: str | Path, manifest: str | Path | Sequence[str | Path], out: str | Path,
                         split: str = "val", device: str | torch.device = "auto", cache_dir: str | Path | None = None,
                         labels: LabelPolicy | None = None, progress: ProgressCallback = no_progress,
                         cancel: CancelToken | None = None) -> dict[str, Any]:
    """Fit Platt scaling on a split, fold it into the model and write a new checkpoint.

    Fitting on the checkpoint's own validation split keeps the test split untouched. The new
    checkpoint keeps the original's dtype and info and adds ``info["calibration"]``: scale, offset,
    the manifest and split fitted on, and the calibration error before and after.

    Returns:
        The ``calibration`` record written.
    """
    from dvan.data.features import FeatureCache
    from dvan.data.split import load_split
    from dvan.eval.evaluate import score_split
    from dvan.model.checkpoint import save_checkpoint
    from dvan.model.factory import create_model

    bundle = create_model(checkpoint=checkpoint, device=device)
    entries = read_collections(manifest, labels or LabelPolicy())
    data = load_split(entries, split, bundle.config, FeatureCache(cache_dir), lambda: bundle.backbone,
                      progress=progress, cancel=cancel)
    logits = score_split(bundle.model, data.image_features, data.audio, bundle.device, cancel)
    matches = class_matches(data.caption_labels, data.image_labels)
    scale, offset = fit_platt(logits, matches)
    before = reliability(sigmoid(logits), matches)
    after = reliability(sigmoid(scale * logits.astype(np.float64) + offset), matches)
    fold_into_scorer(bundle.model.fusion, scale, offset)
    record = {"scale": round(scale, 6), "offset": round(offset, 6), "manifest": manifest_record(manifest),
              "split": split, "pairs": int(matches.size), "ece_before": round(before.ece, 6),
              "ece_after": round(after.ece, 6)}
    info = dict(bundle.info)
    if "calibration" in info:  # calibrating twice composes the maps
        record["previous"] = info["calibration"]
    info["calibration"] = record
    dtype = torch.float16 if torch.float16 in load_file_dtypes(checkpoint) else torch.float32
    save_checkpoint(bundle.model, out, info=info, dtype=dtype)
    return record


def load_file_dtypes(checkpoint: str | Path) -> set[torch.dtype]:
    """Floating dtypes stored in a checkpoint (to write a calibrated copy in the same precision)."""
    from safetensors import safe_open

    with safe_open(str(checkpoint), framework="pt") as handle:
        dtypes = {handle.get_slice(name).get_dtype() for name in handle.keys()}
    mapping = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}
    return {mapping[d] for d in dtypes if d in mapping} or {torch.float32}
