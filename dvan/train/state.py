"""The resume file of a training run: one safetensors file, written atomically.

Tensors: ``model.<name>`` (weights), ``optim.<param index>.<state name>`` (AdamW moments and step),
``rng.torch`` (and ``rng.cuda`` on a GPU) random generator states. Metadata ``dvan_resume`` holds
the JSON rest: epoch and step reached, best validation so far, epochs without improvement,
numpy generator state, optimizer hyper-parameters, the training config, and whether the run has
finished. A kill leaves either the previous file or the new one, never a mix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from dvan.errors import TrainingError
from dvan.model.checkpoint import write_safetensors_atomically

RESUME_FORMAT = "1"


@dataclass
class RunState:
    """Where a run stands after a finished epoch."""

    epoch: int = 0
    step: int = 0
    best_score: float = float("-inf")
    best_epoch: int = 0
    best_val: dict[str, Any] = field(default_factory=dict)
    stale_epochs: int = 0
    finished: bool = False
    stop_reason: str = ""
    numpy_rng: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (an unset best score is written as null)."""
        data = dict(self.__dict__)
        data["best_score"] = None if self.best_score == float("-inf") else self.best_score
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        """Rebuild from :meth:`to_dict` output."""
        data = dict(data)
        if data.get("best_score") is None:
            data["best_score"] = float("-inf")
        return cls(**data)


def save_resume(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: RunState,
                train_config: dict[str, Any]) -> None:
    """Write the resume file atomically (temporary name, fsync, rename)."""
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v.detach().cpu().contiguous()
                                        for k, v in model.state_dict().items()}
    optim_state = optimizer.state_dict()
    for index, values in optim_state["state"].items():
        for name, value in values.items():
            tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"optim.{index}.{name}"] = tensor.detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    meta = {"state": state.to_dict(), "param_groups": optim_state["param_groups"], "train_config": train_config}
    metadata = {"dvan_resume": RESUME_FORMAT, "state": json.dumps(meta)}
    write_safetensors_atomically(tensors, path, metadata)


def read_resume(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and JSON metadata of a resume file.

    Raises:
        TrainingError: the file is unreadable or not a dvan resume file.
    """
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise TrainingError(f"{path}: resume file unreadable ({exc}); delete it or train with --no-resume") from exc
    if metadata.get("dvan_resume") != RESUME_FORMAT:
        raise TrainingError(f"{path}: not a dvan resume file of format {RESUME_FORMAT}; delete it or use --no-resume")
    try:
        meta = json.loads(metadata["state"])
        RunState.from_dict(meta["state"])
        if not isinstance(meta["train_config"], dict) or not isinstance(meta["param_groups"], list):
            raise ValueError("train_config or param_groups of the wrong type")
    except (KeyError, ValueError, TypeError) as exc:
        raise TrainingError(f"{path}: resume file damaged ({exc}); delete it or train with --no-resume") from exc
    return tensors, meta


def restore(tensors: dict[str, torch.Tensor], meta: dict[str, Any], model: torch.nn.Module,
            optimizer: torch.optim.Optimizer) -> RunState:
    """Load model, optimizer and RNG state from :func:`read_resume` output; return the run state.

    Raises:
        TrainingError: the tensors do not fit the model or optimizer (a damaged or edited file).
    """
    try:
        return _restore(tensors, meta, model, optimizer)
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise TrainingError(f"the resume file does not fit this model ({str(exc).splitlines()[0]}); delete it or "
                            "train with --no-resume") from exc


def _restore(tensors: dict[str, torch.Tensor], meta: dict[str, Any], model: torch.nn.Module,
             optimizer: torch.optim.Optimizer) -> RunState:
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            # load_state_dict moves each value where the optimizer keeps it (beside its parameter)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return RunState.from_dict(meta["state"])
