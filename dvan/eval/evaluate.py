"""Evaluate a model on one split of a manifest: both retrieval directions, every metric.

Audio -> image: the queries are the split's spoken captions, the gallery its distinct images;
image -> audio is the reverse. Rankings use the fusion scorer's match logit (the same order as
the probability p[1] of equation 5, without float32 saturation ties); matching accuracy uses the
probability. Each caption is paired with its own image (matching) and with one image of another
class drawn with a fixed seed (non-matching), for Table II's balanced matching accuracy.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dvan.config import AudioConfig
from dvan.data.collections import LabelPolicy, manifest_record, read_collections
from dvan.errors import ManifestError
from dvan.eval.calibration import class_matches, reliability, sigmoid
from dvan.eval.metrics import DEFAULT_KS, DEFAULT_MAP_AT, cross_modal_report, matching_accuracy
from dvan.model.dvan import DVAN
from dvan.progress import CancelToken, Progress, ProgressCallback, no_progress

#: Seed of the non-matching image drawn for each caption in the matching accuracy.
NEGATIVE_SEED = 12345


@torch.no_grad()
def encode_queries(model: DVAN, grids: Sequence[np.ndarray], config: AudioConfig, device: torch.device,
                   batch_size: int = 64, cancel: CancelToken | None = None) -> torch.Tensor:
    """Query projections q (A, d4) of valid-frame audio grids, in eval mode."""
    from dvan.data.split import batch_input

    was_training = model.training
    model.eval()
    order = np.argsort([g.shape[2] for g in grids], kind="stable")  # similar lengths batch together
    out = torch.empty((len(grids), model.config.fusion_dim), device=device)
    for start in range(0, len(grids), batch_size):
        if cancel is not None:
            cancel.raise_if_cancelled()
        index = order[start:start + batch_size]
        inputs = batch_input([grids[i] for i in index], config).to(device)
        out[torch.as_tensor(index, device=device)] = model.query_projection(inputs).float()
    model.train(was_training)
    return out


@torch.no_grad()
def score_split(model: DVAN, image_features: np.ndarray, grids: Sequence[np.ndarray], device: torch.device,
                cancel: CancelToken | None = None, chunk: int = 64) -> np.ndarray:
    """Match logits (A, I) of every caption against every image."""
    was_training = model.training
    model.eval()
    gallery = model.gallery_projection(torch.as_tensor(image_features, dtype=torch.float32, device=device))
    queries = encode_queries(model, grids, model.config.audio, device, cancel=cancel)
    rows = [model.fusion.cross_logits(gallery, queries[start:start + chunk]).float().cpu()
            for start in range(0, queries.shape[0], chunk)]
    model.train(was_training)
    return torch.cat(rows).numpy() if rows else np.zeros((0, gallery.shape[0]), np.float32)


def negative_images(caption_labels: np.ndarray, image_labels: np.ndarray, seed: int = NEGATIVE_SEED) -> np.ndarray:
    """For each caption, a random image of another class (-1 when the split has one class only)."""
    rng = np.random.default_rng(seed)
    out = np.full(len(caption_labels), -1, dtype=np.int64)
    for i, label in enumerate(caption_labels):
        others = np.flatnonzero(image_labels != label)
        if others.size:
            out[i] = others[rng.integers(0, others.size)]
    return out


def split_metrics(logits: np.ndarray, caption_labels: np.ndarray, image_labels: np.ndarray,
                  caption_image: np.ndarray, ks: Sequence[int] = DEFAULT_KS, map_at: int = DEFAULT_MAP_AT,
                  curve: bool = True) -> dict[str, Any]:
    """Every metric of a split from its (caption, image) logits."""
    report: dict[str, Any] = cross_modal_report(logits, caption_labels, image_labels, caption_image, ks, map_at, curve)
    probability = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    rows = np.arange(len(caption_image))
    negatives = negative_images(caption_labels, image_labels)
    usable = negatives >= 0
    report["matching_accuracy"] = matching_accuracy(probability[rows, caption_image][usable],
                                                    probability[rows[usable], negatives[usable]]) \
        if usable.any() else None
    return report


def summary(report: dict[str, Any]) -> dict[str, float | None]:
    """The headline numbers of a report (what training logs per epoch)."""
    a2i, i2a = report["audio_to_image"], report["image_to_audio"]
    return {"map": (a2i["map"] + i2a["map"]) / 2, "a2i_map": a2i["map"], "i2a_map": i2a["map"],
            "a2i_p@10": a2i["p@10"], "i2a_p@10": i2a["p@10"], "mR": report["pairs"]["mR"],
            "matching_accuracy": report["matching_accuracy"]}


def _mode_logits(bundle: Any, data: Any, mode: str, words: str, cache_root: Path, progress: ProgressCallback,
                 cancel: CancelToken | None) -> tuple[np.ndarray, dict[str, Any]]:
    """Logits (A, I) of a text or hybrid mode, and what the report says about the words read."""
    from dvan.eval.wer import word_error_rate
    from dvan.query.text import combine, embed_texts, require_text_branch

    branch = require_text_branch(bundle.text_branch, bundle.checkpoint, mode)
    references = [e.text for e in data.captions]
    extra: dict[str, Any] = {"mode": mode, "words": words, "hybrid_weight": branch.config.hybrid_weight}
    if words == "manifest":
        missing = [e.line for e in data.captions if not (e.text and e.text.strip())]
        if missing:
            raise ManifestError(f"--words manifest: {len(missing)} captions have no \"text\" field (first: line "
                                f"{missing[0]}); use --words transcript")
        texts = [str(t) for t in references]
    else:
        from dvan.query.transcribe import get_recogniser, transcribe_files

        texts = transcribe_files([e.audio for e in data.captions], get_recogniser(str(bundle.device)), cache_root,
                                 progress, cancel, stage=f"transcripts ({data.name})")
        if all(r for r in references):
            extra["wer"] = word_error_rate([str(r) for r in references], texts)
        extra["transcripts"] = [{"audio": str(e.audio), "heard": t} for e, t in zip(data.captions, texts, strict=True)]
    text_q = branch.project(embed_texts([t if t.strip() else "." for t in texts], str(bundle.device), cache_root,
                                        progress, f"sentence embeddings ({data.name})"))
    audio_q: np.ndarray | None = None
    if mode == "hybrid":
        audio_q = encode_queries(bundle.model, data.audio, bundle.config.audio, bundle.device,
                                 cancel=cancel).float().cpu().numpy()
    queries = torch.as_tensor(combine(mode, audio_q, text_q, branch.config.hybrid_weight), device=bundle.device)
    with torch.no_grad():
        gallery = bundle.model.gallery_projection(torch.as_tensor(data.image_features, dtype=torch.float32,
                                                                  device=bundle.device))
        logits = torch.cat([bundle.model.fusion.cross_logits(gallery, queries[i:i + 64]).float().cpu()
                            for i in range(0, queries.shape[0], 64)]).numpy()
    return logits, extra


def evaluate(checkpoint: str | Path, manifest: str | Path | Sequence[str | Path], split: str = "test",
             device: str | torch.device = "auto", cache_dir: str | Path | None = None,
             progress: ProgressCallback = no_progress, cancel: CancelToken | None = None,
             backbone_weights: str | Path | None = None, labels: LabelPolicy | None = None,
             mode: str = "audio", words: str = "transcript") -> dict[str, Any]:
    """Evaluate a checkpoint on one split of a manifest (or of several, as one gallery).

    Args:
        checkpoint: a model checkpoint (``best.safetensors`` of a training run, or the default model).
        manifest: a collection manifest (JSON Lines), or several: their split is searched as one
            gallery, classes joined by ``labels``.
        split: "train", "val" or "test".
        device: "auto", "cpu", "cuda", ...
        cache_dir: feature cache folder (default ``$DVAN_CACHE`` or ``~/.cache/dvan``).
        progress: progress callback.
        cancel: cancellation token.
        backbone_weights: explicit backbone weights (the paper's VGG16).
        labels: how the classes of several manifests are joined (default: same name = same class).
        mode: "audio" (the audio branch), "text" or "hybrid" (need a checkpoint with a text branch).
        words: what the text branch reads in text and hybrid modes: "transcript" (the speech
            recogniser's, cached; the report then holds the word error rate) or "manifest"
            (the captions' "text" fields: a perfect transcript).

    Returns:
        A JSON-ready report: ``checkpoint``, ``manifest``, ``split``, ``created``, ``seconds``,
        ``model`` (its config), ``checkpoint_info``, ``counts``, ``units`` ("fraction"),
        ``audio_to_image`` and ``image_to_audio`` (map, map@150, p@K, r@K, f@K, pr_curve, ...),
        ``pairs`` (pair-level r@K both ways and mR), ``matching_accuracy``, ``calibration`` (reliability
        curve, expected calibration error and Brier score of p over every caption-image pair, a pair
        matching when both are of one class; :mod:`dvan.eval.calibration`) and ``skipped``.
    """
    from dvan.data.features import FeatureCache
    from dvan.data.split import load_split
    from dvan.model.factory import create_model

    started = time.monotonic()
    bundle = create_model(checkpoint=checkpoint, device=device, backbone_weights=backbone_weights)
    labels = labels or LabelPolicy()
    entries = read_collections(manifest, labels)
    data = load_split(entries, split, bundle.config, FeatureCache(cache_dir), lambda: bundle.backbone,
                      progress=progress, cancel=cancel)
    progress(Progress("evaluate", 0, 1, f"scoring {len(data.captions)} captions x {len(data.image_paths)} images"))
    extra: dict[str, Any] = {"mode": "audio"}
    if mode == "audio":
        logits = score_split(bundle.model, data.image_features, data.audio, bundle.device, cancel)
    else:
        cache_root = FeatureCache(cache_dir).root
        logits, extra = _mode_logits(bundle, data, mode, words, cache_root, progress, cancel)
    report = split_metrics(logits, data.caption_labels, data.image_labels, data.caption_image)
    report["calibration"] = reliability(sigmoid(logits), class_matches(data.caption_labels, data.image_labels)).to_dict()
    progress(Progress("evaluate", 1, 1, "done"))
    info = bundle.info
    return {
        "checkpoint": str(Path(checkpoint).resolve()),
        "manifest": manifest_record(manifest),
        "labels": labels.to_dict(),
        "split": split,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - started, 2),
        "device": str(bundle.device),
        "model": bundle.config.to_dict(),
        "checkpoint_info": {k: info[k] for k in ("preset", "val", "epoch", "manifest", "trained") if k in info},
        "counts": {"captions": len(data.captions), "images": len(data.image_paths), "classes": len(data.classes),
                   "speakers": len({e.speaker for e in data.captions if e.speaker})},
        "units": "fraction",
        "skipped": data.skipped,
        **extra,
        **report,
    }
