"""Train the text branch W_T of a trained audio model, from the captions' words in manifests.

    result = train_text_branch("default.safetensors", ["ucm/manifest.jsonl"], "with_text.safetensors")

Everything of the audio model stays frozen: the gallery projections G = W_I V_I + b and the
decision (w_1 - w_0, b_1 - b_0) are the audio model's, so a library projected for it serves the
text and hybrid modes unchanged. Only W_T and b_T learn, with dvan-plus's in-batch loss
("inbatch_mix" over all B x B caption/image pairs, same-class pairs matching). Each caption's
sentence embedding is computed once (the encoder is frozen) and cached by content.

Validation (the manifests' "val" captions) picks the epoch by text-to-image MAP. When the val
captions' audio is there, it also picks the hybrid weight a (q = a q_S + (1 - a) q_T) and the
default mode; the text side of that choice reads the manifest's words (a perfect transcript).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dvan.data.collections import LabelPolicy, read_collections
from dvan.data.manifest import ManifestEntry
from dvan.errors import ManifestError
from dvan.progress import CancelToken, Progress, ProgressCallback, no_progress
from dvan.query.text import ENCODER_DIM, TextBranch, TextBranchConfig, embed_texts

#: Hybrid weights tried on validation (a = 1 is audio mode, a = 0 text mode).
HYBRID_GRID = tuple(round(0.1 * i, 1) for i in range(11))


@dataclass(frozen=True)
class TextTrainConfig:
    """Hyper-parameters of W_T (defaults chosen on UCM validation)."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0


@dataclass
class TextTrainResult:
    """What :func:`train_text_branch` did."""

    out: Path
    best_epoch: int
    val: dict[str, float]
    hybrid_weight: float
    default_mode: str
    log: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Split:
    texts: list[str]
    labels: np.ndarray
    own: np.ndarray  # index of each caption's image
    image_labels: np.ndarray
    entries: list[ManifestEntry]
    images: list[Path]


def _split(entries: Sequence[ManifestEntry], name: str) -> _Split | None:
    chosen = [e for e in entries if e.split == name and e.text and e.text.strip()]
    if not chosen:
        return None
    index: dict[Path, int] = {}
    image_labels: list[str] = []
    for entry in chosen:
        if entry.image not in index:
            index[entry.image] = len(index)
            image_labels.append(entry.label)
    return _Split(texts=[" ".join(e.text.split()) for e in chosen if e.text], labels=np.asarray([e.label for e in chosen]),
                  own=np.asarray([index[e.image] for e in chosen], dtype=np.int64),
                  image_labels=np.asarray(image_labels), entries=chosen, images=list(index))


def _map(logits: np.ndarray, labels: np.ndarray, image_labels: np.ndarray, own: np.ndarray) -> float:
    from dvan.eval.evaluate import split_metrics

    report = split_metrics(logits, labels, image_labels, own, curve=False)
    return float(report["audio_to_image"]["map"])


def train_text_branch(checkpoint: str | Path, manifests: Sequence[str | Path], out: str | Path,
                      config: TextTrainConfig | None = None, device: str | torch.device = "auto",
                      cache_dir: str | Path | None = None, progress: ProgressCallback = no_progress,
                      cancel: CancelToken | None = None) -> TextTrainResult:
    """Train W_T for ``checkpoint`` on the "text" fields of ``manifests`` and write ``out``.

    Args:
        checkpoint: a trained audio model (its own text branch, if any, is replaced).
        manifests: collection manifests; captions with a "text" field in "train" train, in "val" validate.
        out: the new checkpoint (the audio model unchanged, plus the text branch).
        config: hyper-parameters.
        device: "auto", "cpu", "cuda", ...
        cache_dir: feature cache (image features and sentence embeddings).
        progress: progress callback.
        cancel: cancellation token, checked every step.

    Raises:
        ManifestError: no train or no val caption has a "text" field.
    """
    from dvan.data.features import FeatureCache
    from dvan.data.split import load_split
    from dvan.eval.evaluate import encode_queries
    from dvan.model.factory import create_model
    from dvan.query.text import write_with_text_branch
    from dvan.train.loop import _inbatch_loss

    config = config or TextTrainConfig()
    started = time.monotonic()
    bundle = create_model(checkpoint=checkpoint, device=device)
    model = bundle.model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    # classes of several collections are joined as the audio model's own training joined them
    recorded = bundle.info.get("labels")
    policy = LabelPolicy(recorded["mode"], recorded.get("aliases", {})) if isinstance(recorded, dict) else LabelPolicy()
    entries = read_collections(list(manifests), policy, check_files=False)
    train, val = _split(entries, "train"), _split(entries, "val")
    if train is None or val is None:
        which = "train" if train is None else "val"
        raise ManifestError(f"{', '.join(str(m) for m in manifests)}: no {which!r} caption has a \"text\" field; "
                            "the text branch learns from the captions' words (write them with 'dvan speak')")
    cache = FeatureCache(cache_dir)
    encoder_device = str(bundle.device)

    def gallery(split: _Split, stage: str) -> torch.Tensor:
        features = cache.image_features(split.images, bundle.config.backbone, lambda: bundle.backbone,
                                        progress=progress, cancel=cancel, stage=stage)
        with torch.no_grad():
            return model.gallery_projection(torch.as_tensor(features, dtype=torch.float32, device=bundle.device))

    train_gallery, val_gallery = gallery(train, "image features (train)"), gallery(val, "image features (val)")
    train_text = torch.as_tensor(embed_texts(train.texts, encoder_device, cache.root, progress,
                                             "sentence embeddings (train)"), device=bundle.device)
    val_text = torch.as_tensor(embed_texts(val.texts, encoder_device, cache.root, progress,
                                           "sentence embeddings (val)"), device=bundle.device)

    torch.manual_seed(config.seed)
    head = nn.Linear(ENCODER_DIM, model.config.fusion_dim).to(bundle.device)
    optimizer = torch.optim.AdamW([{"params": [head.weight], "weight_decay": config.weight_decay},
                                   {"params": [head.bias], "weight_decay": 0.0}], lr=config.lr)
    labels = sorted(set(train.labels.tolist()))
    label_ids = {label: i for i, label in enumerate(labels)}
    classes = torch.as_tensor([label_ids[x] for x in train.labels], device=bundle.device)
    own = torch.as_tensor(train.own, device=bundle.device)
    rng = np.random.default_rng(config.seed)
    steps_per_epoch = max(1, math.ceil(len(train.texts) / config.batch_size))
    total = steps_per_epoch * config.epochs
    best: tuple[float, int, dict[str, torch.Tensor]] = (-1.0, 0, {})
    log: list[dict[str, Any]] = []
    step = 0
    for epoch in range(1, config.epochs + 1):
        order = rng.permutation(len(train.texts))
        losses = []
        head.train()
        for start in range(0, len(order), config.batch_size):
            if cancel is not None:
                cancel.raise_if_cancelled()
            index = torch.as_tensor(order[start:start + config.batch_size], device=bundle.device)
            lr = config.lr * 0.5 * (1.0 + math.cos(math.pi * step / total))
            for group in optimizer.param_groups:
                group["lr"] = lr
            logits = model.fusion.cross_logits(train_gallery[own[index]], head(train_text[index]))
            positive = classes[index][:, None] == classes[index][None, :]
            loss = _inbatch_loss(logits, positive, "inbatch_mix")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            step += 1
            progress(Progress("train text branch", step, total, f"epoch {epoch}, loss {np.mean(losses):.4f}"))
        head.eval()
        with torch.no_grad():
            val_logits = model.fusion.cross_logits(val_gallery, head(val_text)).float().cpu().numpy()
        val_map = _map(val_logits, val.labels, val.image_labels, val.own)
        log.append({"epoch": epoch, "loss": round(float(np.mean(losses)), 6), "val_text_map": round(val_map, 6)})
        if val_map > best[0]:
            best = (val_map, epoch, {k: v.detach().clone() for k, v in head.state_dict().items()})
    head.load_state_dict(best[2])
    head.eval()

    val_scores = {"text": best[0]}
    hybrid_weight, default_mode = 0.5, "text"
    audio_entries = [e for e in val.entries if e.audio.is_file()]
    if len(audio_entries) == len(val.entries):
        data = load_split(val.entries, "val", bundle.config, cache, lambda: bundle.backbone, progress=progress,
                          cancel=cancel)
        kept = {id(e) for e in data.captions}
        keep = np.asarray([id(e) in kept for e in val.entries])
        with torch.no_grad():
            audio_q = encode_queries(model, data.audio, bundle.config.audio, bundle.device, cancel=cancel)
            text_q = head(val_text[torch.as_tensor(np.flatnonzero(keep), device=bundle.device)])
        scores = {}
        for share in HYBRID_GRID:
            with torch.no_grad():
                logits = model.fusion.cross_logits(val_gallery, share * audio_q + (1 - share) * text_q)
            scores[share] = _map(logits.float().cpu().numpy(), val.labels[keep], val.image_labels, val.own[keep])
        hybrid_weight = max((w for w in HYBRID_GRID if 0 < w < 1), key=lambda w: scores[w])
        val_scores = {"audio": scores[1.0], "text": scores[0.0], "hybrid": scores[hybrid_weight]}
        default_mode = max(val_scores, key=lambda m: val_scores[m])
    head_weight = head.weight.detach().float().cpu().numpy()
    head_bias = head.bias.detach().float().cpu().numpy()
    info = {"manifests": [str(Path(m)) for m in manifests], "epochs": config.epochs, "best_epoch": best[1],
            "train_captions": len(train.texts), "val_captions": len(val.texts),
            "val_map": {k: round(v, 6) for k, v in val_scores.items()},
            "val_text_source": "manifest words", "seconds": round(time.monotonic() - started, 1)}
    branch = TextBranch(weight=head_weight, bias=head_bias,
                        config=TextBranchConfig(hybrid_weight=float(hybrid_weight), default_mode=default_mode,
                                                info=info))
    path = write_with_text_branch(checkpoint, branch, out)
    return TextTrainResult(out=path, best_epoch=best[1], val={k: float(v) for k, v in val_scores.items()},
                           hybrid_weight=float(hybrid_weight), default_mode=default_mode, log=log)
