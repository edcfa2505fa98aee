"""Checkpoints: one safetensors file whose metadata carries the config that rebuilds the model.

Metadata keys: ``dvan_format`` (checkpoint format version), ``dvan_config`` (ModelConfig JSON),
``dvan_info`` (free JSON: training preset, metrics, ...), and optionally ``dvan_text`` with the
``text_head.*`` tensors of a text branch (:mod:`dvan.query.text`; the audio model ignores them). Files are written to a temporary
name and renamed, so a kill never leaves a half-written checkpoint under the real name.
Nothing here unpickles anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dvan.config import FORMAT_VERSION, ModelConfig
from dvan.errors import CheckpointError, CheckpointMismatchError
from dvan.model.dvan import DVAN

CHECKPOINT_FORMAT = "1"
#: Tensors of the optional text branch (dvan.query.text), not part of the DVAN module.
TEXT_BRANCH_PREFIX = "text_head."


def save_checkpoint(model: DVAN, path: str | Path, info: dict[str, Any] | None = None,
                    dtype: torch.dtype = torch.float32) -> Path:
    """Write the model's weights and config atomically.

    Args:
        model: the model to save.
        path: destination ``.safetensors`` file.
        info: extra JSON-serialisable facts (preset, validation metrics, ...).
        dtype: floating dtype to store (float16 halves the size of a shipped model).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: (t.detach().to("cpu", dtype) if t.is_floating_point() else t.detach().cpu()).contiguous()
               for name, t in model.state_dict().items()}
    metadata = {
        "dvan_format": CHECKPOINT_FORMAT,
        "dvan_config": json.dumps(model.config.to_dict(), sort_keys=True),
        "dvan_info": json.dumps(info or {}, sort_keys=True),
    }
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial), metadata=metadata)
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    # safetensors creates files private (0600); a shipped or shared model must be readable by its users
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(partial, 0o666 & ~umask)
    os.replace(partial, path)
    return path


def read_checkpoint_metadata(path: str | Path) -> tuple[ModelConfig, dict[str, Any]]:
    """Config and info of a checkpoint, without loading its weights."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint; train one with 'dvan train' or pass the right path")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({exc}); re-export or retrain it") from exc
    if metadata.get("dvan_format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatchError(
            f"{path}: checkpoint format {metadata.get('dvan_format')!r}, this dvan reads {CHECKPOINT_FORMAT!r}; "
            "it was not written by this dvan version: retrain or convert it"
        )
    try:
        raw = json.loads(metadata["dvan_config"])
        if raw.get("format_version") != FORMAT_VERSION:
            raise CheckpointMismatchError(
                f"{path}: config format_version {raw.get('format_version')}, this dvan expects {FORMAT_VERSION}; retrain it"
            )
        config = ModelConfig.from_dict(raw)
        info = json.loads(metadata.get("dvan_info", "{}"))
    except (KeyError, ValueError, TypeError) as exc:
        if isinstance(exc, CheckpointMismatchError):
            raise
        raise CheckpointMismatchError(f"{path}: its model config cannot be rebuilt ({exc}); retrain it") from exc
    return config, info


def load_checkpoint(path: str | Path, expect: ModelConfig | None = None,
                    device: torch.device | str = "cpu") -> tuple[DVAN, dict[str, Any]]:
    """Rebuild a model from a checkpoint.

    Args:
        path: a file written by :func:`save_checkpoint`.
        expect: when given, the checkpoint's config must equal it (e.g. resuming training).
        device: where to put the model.

    Raises:
        CheckpointError: unreadable file.
        CheckpointMismatchError: the config differs from ``expect``, or the weights do not fit it.
    """
    path = Path(path)
    config, info = read_checkpoint_metadata(path)
    if expect is not None and config != expect:
        theirs, ours = config.to_dict(), expect.to_dict()
        diffs = [f"{k}: checkpoint {theirs[k]!r} vs expected {ours[k]!r}" for k in ours if theirs.get(k) != ours[k]]
        raise CheckpointMismatchError(f"{path}: config does not match ({'; '.join(diffs)}); use a matching checkpoint")
    model = DVAN(config)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: weights unreadable ({exc}); the file is damaged: restore or retrain it") from exc
    tensors = {k: v for k, v in tensors.items() if not k.startswith(TEXT_BRANCH_PREFIX)}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(
            f"{path}: weights do not fit its config (missing {missing[:3]}, unexpected {unexpected[:3]}, "
            f"wrong shape {wrong[:3]}); the file is damaged or was edited: retrain it"
        )
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()}, strict=True)
    model.to(device).eval()
    return model, info
