"""Choosing the torch device: ``auto`` takes CUDA when present, else the CPU."""

from __future__ import annotations

import torch

from dvan.errors import DvanError


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for ``name`` ("auto", "cpu", "cuda", "cuda:N").

    Raises:
        DvanError: CUDA was asked for but is not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DvanError(f"device {name!r} asked for, but torch sees no CUDA GPU; use --device cpu or auto")
    return device
