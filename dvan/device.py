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
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise DvanError(f"device {name!r} is not a device name; use auto, cpu, cuda or cuda:N") from exc
    if device.type not in ("cpu", "cuda"):
        raise DvanError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DvanError(f"device {name!r} asked for, but torch sees no CUDA GPU; use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DvanError(f"device {name!r} asked for, but torch sees {torch.cuda.device_count()} GPU(s); "
                        "use cuda:0 or auto")
    return device
