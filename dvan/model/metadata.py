"""A checkpoint's config and info, read from its safetensors header without torch (see :mod:`dvan.model.checkpoint`).

The viewer shows which model is active, and whether it is trained, before torch has loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from dvan.config import FORMAT_VERSION, ModelConfig
from dvan.errors import CheckpointError, CheckpointMismatchError

CHECKPOINT_FORMAT = "1"


def read_checkpoint_metadata(path: str | Path) -> tuple[ModelConfig, dict[str, Any]]:
    """Config and info of a checkpoint, without loading its weights (nor torch).

    :func:`dvan.model.checkpoint.read_validated_metadata` also checks the tensors' shapes against
    the config; use it before loading.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint; train one with 'dvan train' or pass the right path")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({exc}); re-export or retrain it") from exc
    return parse_metadata(path, metadata)


def is_trained(info: dict[str, Any]) -> bool:
    """Whether a checkpoint's info marks it as trained (``"trained": true``)."""
    return info.get("trained") is True


def parse_metadata(path: Path, metadata: dict[str, str]) -> tuple[ModelConfig, dict[str, Any]]:
    """Config and info from a checkpoint's header metadata: format, config version, every config field validated.

    Raises:
        CheckpointMismatchError: another format, or an invalid config field (named).
    """
    if metadata.get("dvan_format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatchError(
            f"{path}: checkpoint format {metadata.get('dvan_format')!r}, this dvan reads {CHECKPOINT_FORMAT!r}; "
            "it was not written by this dvan version: retrain or convert it"
        )
    try:
        raw = json.loads(metadata["dvan_config"])
        if not isinstance(raw, dict) or raw.get("format_version") != FORMAT_VERSION:
            version = raw.get("format_version") if isinstance(raw, dict) else None
            raise CheckpointMismatchError(
                f"{path}: config format_version {version}, this dvan expects {FORMAT_VERSION}; retrain it"
            )
        config = ModelConfig.from_dict(raw)
        info = json.loads(metadata.get("dvan_info", "{}"))
        if not isinstance(info, dict):
            raise ValueError("its info is not a JSON object")
    except (KeyError, ValueError, TypeError) as exc:
        if isinstance(exc, CheckpointMismatchError):
            raise
        raise CheckpointMismatchError(f"{path}: invalid model config: {exc}; retrain it or restore the file") from exc
    return config, info
