"""Checkpoints: one safetensors file whose metadata carries the config that rebuilds the model.

Metadata keys: ``dvan_format`` (checkpoint format version), ``dvan_config`` (ModelConfig JSON),
``dvan_info`` (free JSON: training preset, metrics, ...), and optionally ``dvan_text`` with the
``text_head.*`` tensors of a text branch (:mod:`dvan.query.text`; the audio model ignores them).
Files are written to a temporary name and renamed, so a kill never leaves a half-written checkpoint under the real name.
Nothing here unpickles anything.

Reading validates before allocating: every config field's type and range, then the name and
shape of every tensor the config implies (a model built on the meta device) against the
safetensors header. Only then are the weights read; NaN or Inf weights are refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dvan.config import ModelConfig
from dvan.errors import CheckpointError, CheckpointMismatchError, DiskFullError
from dvan.fsutil import is_disk_full
from dvan.model.dvan import DVAN
from dvan.model.metadata import CHECKPOINT_FORMAT, parse_metadata

__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint", "read_validated_metadata", "save_checkpoint"]
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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"{path.parent}: cannot create the folder ({exc.strerror}); choose another place") from exc
    tensors = {name: (t.detach().to("cpu", dtype) if t.is_floating_point() else t.detach().cpu()).contiguous()
               for name, t in model.state_dict().items()}
    metadata = {
        "dvan_format": CHECKPOINT_FORMAT,
        "dvan_config": json.dumps(model.config.to_dict(), sort_keys=True),
        "dvan_info": json.dumps(info or {}, sort_keys=True),
    }
    write_safetensors_atomically(tensors, path, metadata, shared=True)
    return path


def write_safetensors_atomically(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str],
                                 shared: bool = False) -> None:
    """Write a safetensors file under a temporary name, fsync it and rename it into place.

    Args:
        tensors: what to store.
        path: destination; an earlier file there stays intact until the new one is complete.
        metadata: the header's string metadata.
        shared: make the file readable by others as the umask allows (safetensors creates 0600).

    Raises:
        DiskFullError: the disk or quota is full; nothing was replaced.
        CheckpointError: any other write failure, naming the file.
    """
    partial = path.with_name(path.name + ".partial")
    try:
        save_file(tensors, str(partial), metadata=metadata)
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        if shared:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(partial, 0o666 & ~umask)
        os.replace(partial, path)
    except (SafetensorError, OSError) as exc:
        partial.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise DiskFullError(f"{path}: disk full while writing it; free some space and run again "
                                "(the previous version of the file is intact)") from exc
        raise CheckpointError(f"{path}: cannot write it ({exc}); check the folder's permissions") from exc


def _header(path: Path) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """Metadata and tensor shapes from the safetensors header alone (no tensor is read)."""
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint; train one with 'dvan train' or pass the right path")
    if not path.is_file():
        raise CheckpointError(f"{path}: is {'a folder' if path.is_dir() else 'not a regular file'}, not a checkpoint; "
                              "pass the .safetensors file")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({exc}); re-export or retrain it") from exc
    return metadata, shapes


def _expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Shape of every tensor the config's model holds, from a model on the meta device (no memory)."""
    with torch.device("meta"):
        model = DVAN(config)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def read_validated_metadata(path: str | Path) -> tuple[ModelConfig, dict[str, Any]]:
    """Config and info of a checkpoint, validated against its header, without loading its weights.

    :func:`dvan.model.metadata.read_checkpoint_metadata` reads the same without torch, unchecked against the tensors.

    The config's fields are checked for type and range, and the model it describes for tensor
    names and shapes against the safetensors header, before anything is allocated: a small file
    claiming a huge dimension is refused at once.

    Raises:
        CheckpointError: missing or unreadable file.
        CheckpointMismatchError: another format, an invalid config field (named), or tensors that
            do not fit the config.
    """
    path = Path(path)
    metadata, shapes = _header(path)
    config, info = parse_metadata(path, metadata)
    expected = _expected_shapes(config)
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(k for k in set(shapes) - set(expected) if not k.startswith(TEXT_BRANCH_PREFIX))
    wrong = sorted(k for k in set(expected) & set(shapes) if expected[k] != shapes[k])
    if missing or unexpected or wrong:
        shown = "; ".join(f"{k}: file {shapes[k]}, config {expected[k]}" for k in wrong[:2])
        raise CheckpointMismatchError(
            f"{path}: weights do not fit its config (missing {missing[:3]}, unexpected {unexpected[:3]}, "
            f"wrong shape {wrong[:3]}{': ' + shown if shown else ''}); the file is damaged or was edited: retrain it"
        )
    return config, info


def load_checkpoint(path: str | Path, expect: ModelConfig | None = None,
                    device: torch.device | str = "cpu") -> tuple[DVAN, dict[str, Any]]:
    """Rebuild a model from a checkpoint.

    Args:
        path: a file written by :func:`save_checkpoint`.
        expect: when given, the checkpoint's config must equal it (e.g. resuming training).
        device: where to put the model.

    Raises:
        CheckpointError: unreadable file, or NaN/Inf weights.
        CheckpointMismatchError: the config is invalid, differs from ``expect``, or the weights do not fit it.
    """
    path = Path(path)
    config, info = read_validated_metadata(path)
    if expect is not None and config != expect:
        theirs, ours = config.to_dict(), expect.to_dict()
        diffs = [f"{k}: checkpoint {theirs[k]!r} vs expected {ours[k]!r}" for k in ours if theirs.get(k) != ours[k]]
        raise CheckpointMismatchError(f"{path}: config does not match ({'; '.join(diffs)}); use a matching checkpoint")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: weights unreadable ({exc}); the file is damaged: restore or retrain it") from exc
    tensors = {k: v for k, v in tensors.items() if not k.startswith(TEXT_BRANCH_PREFIX)}
    broken = sorted(k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if broken:
        raise CheckpointError(f"{path}: {len(broken)} weight tensor(s) hold NaN or Inf (first: {broken[0]}); "
                              "the model is unusable: restore the file or retrain it")
    model = DVAN(config)
    expected = model.state_dict()
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()}, strict=True)
    model.to(device).eval()
    return model, info
