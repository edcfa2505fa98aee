"""The training loop: :func:`train` (no Qt; progress callback and cancel token).

Files written in ``out_dir``:

* ``best.safetensors``: the model of the best validation epoch (a normal checkpoint, loadable by
  :func:`dvan.model.factory.create_model`), info ``{"trained": true, "preset", "val", "epoch",
  "manifest", "train_config"}``;
* ``resume.safetensors``: model, optimizer, RNG and run state after the last finished epoch
  (:mod:`dvan.train.state`); a killed or cancelled run continues from it;
* ``train_log.jsonl``: one JSON object per line, ``{"event": "start" | "step" | "epoch" | "end",
  ...}``; step lines carry ``epoch, step, loss, lr, time``; epoch lines add ``val`` (validation
  metrics), ``best`` and ``seconds``. A GUI can tail it to plot curves.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from torch import nn

from dvan.data.collections import LabelPolicy, manifest_record, read_collections
from dvan.data.features import FeatureCache, default_cache_dir
from dvan.data.split import SplitData, batch_input, load_split
from dvan.device import resolve_device
from dvan.errors import CheckpointMismatchError, DiskFullError, TrainingError
from dvan.eval.evaluate import score_split, split_metrics, summary
from dvan.fsutil import is_disk_full, remove_leftovers
from dvan.model.checkpoint import load_checkpoint, save_checkpoint
from dvan.model.factory import ModelBundle, create_model
from dvan.progress import CancelToken, Progress, ProgressCallback, no_progress
from dvan.train.augment import augment_grid
from dvan.train.config import TrainConfig
from dvan.train.runs import BEST_FILE, LOG_FILE, RESUME_FILE
from dvan.train.state import RunState, read_resume, restore, save_resume


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or already finished) run produced.

    Attributes:
        checkpoint: the best-validation checkpoint.
        best_val: its validation metrics (see :func:`dvan.eval.evaluate.summary`).
        best_epoch: the epoch it came from (1-based).
        epochs: epochs run in all.
        stop_reason: "early_stop", "max_epochs".
        log: the JSON Lines training log.
    """

    checkpoint: Path
    best_val: dict[str, Any]
    best_epoch: int
    epochs: int
    stop_reason: str
    log: Path


class _Log:
    """Appends JSON lines to the training log, flushed per line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        record = {"time": round(time.time(), 3), **record}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop lines of steps after ``step`` and old "end" lines (a resumed run redoes them)."""
        if not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            if record.get("event") == "end" or record.get("step", 0) > step:
                continue
            kept.append(line)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
        os.replace(partial, self.path)


def _learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "cosine":
        progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return config.lr


def _inbatch_loss(logits: torch.Tensor, positive: torch.Tensor, kind: str) -> torch.Tensor:
    """Loss over a (captions, images) logit matrix with a boolean matching mask of the same shape."""
    total = logits.new_zeros(())
    if kind in ("inbatch_bce", "inbatch_mix"):
        # equation 6 over every pair, matching and non-matching halves weighted equally
        target = positive.float()
        per_pair = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
        pos = (per_pair * target).sum() / target.sum().clamp(min=1)
        neg = (per_pair * (1 - target)).sum() / (1 - target).sum().clamp(min=1)
        total = total + 0.5 * (pos + neg)
    if kind in ("inbatch_nce", "inbatch_mix"):
        # each caption against all images, and each image against all captions
        masked = logits.masked_fill(~positive, float("-inf"))
        rows = torch.logsumexp(logits, dim=1) - torch.logsumexp(masked, dim=1)
        cols = torch.logsumexp(logits, dim=0) - torch.logsumexp(masked, dim=0)
        total = total + 0.5 * (rows.mean() + cols.mean())
    return total


class _Trainer:
    """State of one run; :func:`train` drives it."""

    def __init__(self, config: TrainConfig, bundle: ModelBundle, train_data: SplitData, val_data: SplitData) -> None:
        self.config = config
        self.bundle = bundle
        self.model = bundle.model
        self.device = bundle.device
        self.train_data = train_data
        self.val_data = val_data
        self.images = torch.as_tensor(train_data.image_features, dtype=torch.float32, device=self.device)
        self.image_labels = train_data.image_labels
        labels = sorted(set(train_data.caption_labels.tolist()))
        self.label_ids = {label: i for i, label in enumerate(labels)}
        self.caption_class = torch.as_tensor([self.label_ids[x] for x in train_data.caption_labels], device=self.device)
        self.caption_image = torch.as_tensor(train_data.caption_image, device=self.device)
        self.others = {label: np.flatnonzero(self.image_labels != label) for label in labels}
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for name, parameter in self.model.named_parameters():
            (no_decay if parameter.ndim < 2 or name.endswith(".bias") else decay).append(parameter)
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, fused=True)
        self.lengths = np.array([g.shape[2] for g in train_data.audio])
        self.steps_per_epoch = max(1, math.ceil(len(train_data.captions) / config.batch_size))
        self.total_steps = self.steps_per_epoch * config.epochs

    def batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        """One epoch of caption index batches (length-bucketed when configured)."""
        size = self.config.batch_size
        order = rng.permutation(len(self.train_data.captions))
        if not self.config.bucket_batches:
            return [order[i:i + size] for i in range(0, len(order), size)]
        pool = size * self.config.bucket_batches
        batches: list[np.ndarray] = []
        for start in range(0, len(order), pool):
            chunk = order[start:start + pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i:i + size] for i in range(0, len(chunk), size))
        return [batches[i] for i in rng.permutation(len(batches))]

    def _audio(self, index: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        augment = self.config.augment
        grids = []
        for i in index:
            grid = self.train_data.audio[i]
            copies = self.train_data.copies[i] if self.train_data.copies else []
            if copies:
                pick = int(rng.integers(0, len(copies) + 1))
                grid = grid if pick == 0 else copies[pick - 1]
            if augment.active:
                grid = augment_grid(grid, augment, rng)
            grids.append(grid)
        return batch_input(grids, self.config.model.audio, margin=0).to(self.device)

    def step_loss(self, index: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """Loss of one batch of caption indices."""
        model = self.model
        audio = model.encode_audio(self._audio(index, rng))
        own = self.caption_image[torch.as_tensor(index, device=self.device)]
        if self.config.loss == "pair_ce":
            negatives = np.array([self.others[self.train_data.caption_labels[i]][
                rng.integers(0, len(self.others[self.train_data.caption_labels[i]]))] for i in index])
            images = torch.cat([self.images[own], self.images[torch.as_tensor(negatives, device=self.device)]])
            logits = model.fusion(model.dropout(images), torch.cat([audio, audio]))
            target = torch.cat([torch.ones(len(index)), torch.zeros(len(index))]).long().to(self.device)
            return nn.functional.cross_entropy(logits, target)
        gallery = model.gallery_projection(model.dropout(self.images[own]))
        logits = model.fusion.cross_logits(gallery, model.fusion.query_projection(audio))
        if self.config.positives == "class":
            classes = self.caption_class[torch.as_tensor(index, device=self.device)]
            positive = classes[:, None] == classes[None, :]
        else:
            positive = own[:, None] == own[None, :]
        return _inbatch_loss(logits, positive, self.config.loss)

    def validate(self) -> dict[str, Any]:
        """Validation metrics (no curves)."""
        logits = score_split(self.model, self.val_data.image_features, self.val_data.audio, self.device)
        report = split_metrics(logits, self.val_data.caption_labels, self.val_data.image_labels,
                               self.val_data.caption_image, curve=False)
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in summary(report).items()}


def train(manifest: str | Path | Sequence[str | Path], train_config: TrainConfig, out_dir: str | Path,
          progress: ProgressCallback = no_progress, cancel: CancelToken | None = None,
          device: str | torch.device = "auto", resume: bool = True, cache_dir: str | Path | None = None,
          backbone_weights: str | Path | None = None, init_checkpoint: str | Path | None = None,
          labels: LabelPolicy | None = None) -> TrainResult:
    """Train a DVAN model on a manifest's train split, early-stopping on its val split.

    Args:
        manifest: collection manifest (JSON Lines) with train and val captions, or several, trained on
            as one collection (their train splits together, validated on their val splits together).
        train_config: what to train and how (see :func:`dvan.train.config.make_train_config`).
        out_dir: folder for ``best.safetensors``, ``resume.safetensors`` and ``train_log.jsonl``.
        progress: progress callback; stages "audio features", "image features", "train".
        cancel: cancellation token, checked every step; the last finished epoch stays resumable.
        device: "auto" (CUDA when present), "cpu", "cuda", ...
        resume: continue from ``out_dir/resume.safetensors`` when present (it must come from the
            same config); False starts afresh, replacing earlier results in ``out_dir``.
        cache_dir: feature cache folder (default ``$DVAN_CACHE`` or ``~/.cache/dvan``).
        backbone_weights: explicit backbone weights file (the paper's VGG16).
        init_checkpoint: start from this checkpoint's weights (fine-tuning, e.g. the default model)
            instead of a random initialisation; its model config must equal ``train_config.model``.
            Ignored when resuming (the resume file has the weights).
        labels: how the classes of several manifests are joined (:mod:`dvan.data.collections`;
            default: same name = same class).

    Returns:
        The best checkpoint and its validation metrics.

    Raises:
        TrainingError: missing splits, a resume file of another config, divergence (NaN/Inf
            or exploding loss), ``epochs`` < 1, an ``out_dir`` that is a file, not writable or in
            use by another run; the message says what to change.
        DiskFullError: the disk filled up; the last finished epoch stays resumable.
        Cancelled: the token was cancelled.
    """
    if train_config.epochs < 1:
        raise TrainingError(f"epochs must be at least 1, got {train_config.epochs}; pass --epochs 1 or more")
    if train_config.seed < 0:
        raise TrainingError(f"the seed must be 0 or more, got {train_config.seed}")
    out = _prepare_out_dir(Path(out_dir))
    lock = _lock_out_dir(out)
    try:
        # only now, holding the folder, can leftovers of a killed run be told from live writes
        remove_leftovers(out)
        return _train(manifest, train_config, out, progress, cancel, device, resume, cache_dir, backbone_weights,
                      init_checkpoint, labels)
    except (OSError, SafetensorError) as exc:
        if is_disk_full(exc):
            raise DiskFullError(f"disk full while training into {out} (feature cache "
                                f"{Path(cache_dir) if cache_dir else default_cache_dir()}): free some space and run "
                                "the same command again; it resumes from the last finished epoch") from exc
        if isinstance(exc, OSError):
            raise TrainingError(f"{exc.filename or out}: {exc.strerror or exc}; check the path and its "
                                "permissions") from exc
        raise
    finally:
        if lock is not None:
            os.close(lock)  # closing releases the flock


def _prepare_out_dir(out: Path) -> Path:
    """Create OUT_DIR and prove it can be written, before any work is done."""
    if out.exists() and not out.is_dir():
        raise TrainingError(f"{out}: OUT_DIR is an existing file, not a folder; pass a folder (created when missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise TrainingError(f"{out}: cannot write in OUT_DIR ({exc.strerror or exc}); choose a writable folder") from exc
    return out


def _lock_out_dir(out: Path) -> int | None:
    """An exclusive lock on OUT_DIR for this run (None where the platform has no flock)."""
    try:
        import fcntl
    except ImportError:
        return None
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise TrainingError(f"{out}: another training run is writing into this folder; wait for it to end or "
                            "train into another folder") from exc
    return fd


def _train(manifest: str | Path | Sequence[str | Path], train_config: TrainConfig, out: Path,
           progress: ProgressCallback, cancel: CancelToken | None, device: str | torch.device, resume: bool,
           cache_dir: str | Path | None, backbone_weights: str | Path | None, init_checkpoint: str | Path | None,
           labels: LabelPolicy | None) -> TrainResult:
    """The body of :func:`train`, run while holding OUT_DIR."""
    cancel = cancel or CancelToken()
    resume_path, best_path, log = out / RESUME_FILE, out / BEST_FILE, _Log(out / LOG_FILE)
    config_dict = train_config.to_dict()
    resume_data = _earlier_run(out, config_dict, resume)
    if resume_data is not None and resume_data[1]["state"].get("finished"):
        state = RunState.from_dict(resume_data[1]["state"])
        return TrainResult(best_path, state.best_val, state.best_epoch, state.epoch, state.stop_reason, log.path)

    torch.manual_seed(train_config.seed)
    resolved = device if isinstance(device, torch.device) else resolve_device(device)
    bundle = _initial_model(train_config, resolved, backbone_weights, init_checkpoint if resume_data is None else None)
    cache = FeatureCache(cache_dir)
    labels = labels or LabelPolicy()
    entries = read_collections(manifest, labels)
    train_data = load_split(entries, "train", train_config.model, cache, lambda: bundle.backbone,
                            train_config.augment, progress, cancel)
    val_data = load_split(entries, "val", train_config.model, cache, lambda: bundle.backbone,
                          progress=progress, cancel=cancel)
    if len(train_data.classes) < 2:
        raise TrainingError("the train split needs captions of at least two classes (non-matching pairs come "
                            "from other classes)")
    trainer = _Trainer(train_config, bundle, train_data, val_data)
    rng = np.random.default_rng(train_config.seed)
    state = RunState()
    if resume_data is not None:
        state = restore(resume_data[0], resume_data[1], trainer.model, trainer.optimizer)
        rng.bit_generator.state = state.numpy_rng
        log.truncate_after(state.step)
    log.write({"event": "start", "preset": train_config.preset, "manifest": manifest_record(manifest),
               "labels": labels.to_dict(), "init_checkpoint": str(Path(init_checkpoint).resolve()) if init_checkpoint else None,
               "device": str(resolved), "resumed_from_epoch": state.epoch, "train_captions": len(train_data.captions),
               "val_captions": len(val_data.captions), "skipped": train_data.skipped + val_data.skipped,
               "steps_per_epoch": trainer.steps_per_epoch, "config": config_dict})
    model = trainer.model
    total = trainer.total_steps
    progress(Progress("train", state.step, total, f"epoch {state.epoch + 1}/{train_config.epochs}"))
    while state.epoch < train_config.epochs:
        epoch = state.epoch + 1
        started = time.monotonic()
        losses = _train_epoch(trainer, state, rng, log, progress, cancel, resume_path)
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise TrainingError(f"training diverged in epoch {epoch}: weights became NaN/Inf; lower the learning rate")
        val = trainer.validate()
        score = float(val["map"])
        improved = score > state.best_score
        state.epoch = epoch
        if improved:
            state.best_score, state.best_epoch, state.best_val, state.stale_epochs = score, epoch, val, 0
            save_checkpoint(model, best_path, info={
                "trained": True, "preset": train_config.preset, "val": val, "epoch": epoch,
                "manifest": manifest_record(manifest), "labels": labels.to_dict(), "train_config": config_dict,
                "init_checkpoint": str(Path(init_checkpoint).resolve()) if init_checkpoint else None})
        else:
            state.stale_epochs += 1
        mean_loss = float(np.mean(losses)) if losses else float("nan")
        log.write({"event": "epoch", "epoch": epoch, "step": state.step, "loss": round(mean_loss, 6), "val": val,
                   "best": improved, "seconds": round(time.monotonic() - started, 2)})
        if state.stale_epochs >= train_config.patience:
            state.finished, state.stop_reason = True, "early_stop"
        elif epoch >= train_config.epochs:
            state.finished, state.stop_reason = True, "max_epochs"
        state.numpy_rng = dict(rng.bit_generator.state)
        save_resume(resume_path, model, trainer.optimizer, state, config_dict)
        progress(Progress("train", state.step if not state.finished else total, total,
                          f"epoch {epoch}: loss {mean_loss:.4f}, val MAP {score:.4f} (best {state.best_score:.4f} "
                          f"at epoch {state.best_epoch})"))
        if state.finished:
            break
    log.write({"event": "end", "step": state.step, "reason": state.stop_reason, "best_epoch": state.best_epoch,
               "best_val": state.best_val})
    return TrainResult(best_path, state.best_val, state.best_epoch, state.epoch, state.stop_reason, log.path)


def _earlier_run(out: Path, config_dict: dict[str, Any],
                 resume: bool) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The resume file of an earlier run into ``out`` to continue, or None (with ``resume`` False its files go).

    Raises:
        TrainingError: the resume file comes from another training config.
    """
    resume_path = out / RESUME_FILE
    if resume and resume_path.is_file():
        resume_data = read_resume(resume_path)
        if resume_data[1]["train_config"] != json.loads(json.dumps(config_dict)):
            raise TrainingError(f"{resume_path} comes from another training config; train into a new folder "
                                "or pass --no-resume (resume=False) to start afresh")
        return resume_data
    if not resume:
        for stale in (resume_path, out / BEST_FILE, out / LOG_FILE):
            stale.unlink(missing_ok=True)
    return None


def _initial_model(train_config: TrainConfig, device: torch.device, backbone_weights: str | Path | None,
                   init_checkpoint: str | Path | None) -> ModelBundle:
    """The model to train: a fresh initialisation, or ``init_checkpoint``'s weights (fine-tuning)."""
    bundle = create_model(train_config.model, device=device, backbone_weights=backbone_weights)
    if init_checkpoint is not None:
        try:
            initial, _ = load_checkpoint(init_checkpoint, expect=train_config.model, device=device)
        except CheckpointMismatchError as exc:
            raise TrainingError(f"cannot fine-tune from {init_checkpoint}: {exc}; train with the checkpoint's own "
                                "model config (architecture and audio front end)") from exc
        bundle.model.load_state_dict(initial.state_dict())
    return bundle


def _train_epoch(trainer: _Trainer, state: RunState, rng: np.random.Generator, log: _Log, progress: ProgressCallback,
                 cancel: CancelToken, resume_path: Path) -> list[float]:
    """One epoch of optimiser steps (``state.step`` counts them); returns each step's loss.

    Raises:
        TrainingError: the loss or the gradient diverged (NaN/Inf, or above ``divergence_loss``).
    """
    config, model, total = trainer.config, trainer.model, trainer.total_steps
    epoch = state.epoch + 1
    model.train()
    losses = []
    for index in trainer.batches(rng):
        cancel.raise_if_cancelled()
        if len(index) < 2:
            continue
        lr = _learning_rate(config, state.step, total)
        for group in trainer.optimizer.param_groups:
            group["lr"] = lr
        loss = trainer.step_loss(index, rng)
        value = float(loss.detach())
        if not math.isfinite(value) or value > config.divergence_loss:
            raise TrainingError(
                f"training diverged at epoch {epoch}, step {state.step + 1}: loss {value}; lower the learning "
                f"rate (now {config.lr:g}) or check the data; the last good epoch is in {resume_path}")
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip or float("inf"))
        if not torch.isfinite(norm):
            raise TrainingError(f"training diverged at epoch {epoch}, step {state.step + 1}: gradient norm "
                                f"{float(norm)}; lower the learning rate (now {config.lr:g})")
        trainer.optimizer.step()
        state.step += 1
        losses.append(value)
        if state.step % config.log_every == 0:
            log.write({"event": "step", "epoch": epoch, "step": state.step, "loss": round(value, 6), "lr": lr})
        progress(Progress("train", state.step, total, f"epoch {epoch}/{config.epochs} loss {value:.4f}"))
    return losses
