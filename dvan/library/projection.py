"""Gallery projections of a library for one model, computed from stored backbone features.

Changing the model never re-reads rasters: ``G = W_I V_I + b`` is recomputed from the stored
float16 backbone features (the same float16 values at import and at reprojection, so both give
the same numbers). Projections are keyed by a digest of the model's image-side weights, so a
library knows whether its gallery belongs to the model in hand.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from dvan.errors import LibraryError
from dvan.library.store import Library
from dvan.model.dvan import DVAN
from dvan.model.factory import ModelBundle
from dvan.progress import CancelToken, Progress, ProgressCallback, no_progress

#: Rows projected per step when (re)projecting a whole library.
PROJECTION_CHUNK = 8192


def _digest(parts: list[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()[:16]


def gallery_key(model: DVAN) -> str:
    """Digest of what the gallery projections depend on: backbone name and W_I, b."""
    proj = model.fusion.image_proj
    tensors = [proj.weight, proj.bias]
    return _digest([model.config.backbone.encode()] +
                   [t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes() for t in tensors])


def captions_key(model: DVAN) -> str:
    """Digest of what the captions' query projections depend on: the whole model and its audio config."""
    parts = [json.dumps(model.config.to_dict(), sort_keys=True).encode()]
    for name, tensor in sorted(model.state_dict().items()):
        parts.append(name.encode())
        parts.append(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return _digest(parts)


def model_label(bundle: ModelBundle) -> str:
    """How a model is named in library metadata (its checkpoint path, or 'unsaved model')."""
    return str(bundle.checkpoint.resolve()) if bundle.checkpoint else "unsaved model"


@torch.inference_mode()
def project_features(model: DVAN, features: np.ndarray, device: torch.device | None = None) -> np.ndarray:
    """Gallery projections (n, d4) float32 of stored float16 backbone features (n, d1)."""
    device = device or next(model.parameters()).device
    values = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float16).astype(np.float32)).to(device)
    return model.gallery_projection(values).float().cpu().numpy()


def gallery_is_current(library: Library, model: DVAN, key: str | None = None) -> bool:
    """Whether the library's gallery belongs to ``model`` (or to the precomputed ``key``) and covers every tile."""
    active, rows, next_row = library.gallery_state()
    return active == (key or gallery_key(model)) and rows == next_row


def ensure_gallery(library: Library, bundle: ModelBundle, progress: ProgressCallback = no_progress,
                   cancel: CancelToken | None = None) -> bool:
    """Bring the library's gallery projections up to date for ``bundle``'s model.

    Projects only the rows missing when the gallery already belongs to this model, and every
    row into a new file (swapped in when complete) when it belongs to another one.

    Returns:
        Whether anything was computed.

    Raises:
        BackboneMismatchError: the model uses another backbone than the library.
        Cancelled: through ``cancel``; the previous gallery stays in use.
    """
    model = bundle.model
    library.check_backbone(model.config.backbone, _model_name(bundle))
    key = gallery_key(model)
    dim = model.config.fusion_dim
    with library.writer():
        active, rows, next_row = library.gallery_state()
        if active == key and rows == next_row:
            return False
        fresh = active != key
        start = 0 if fresh else rows
        target = library.gallery_file(key, dim)
        if target is None:
            raise LibraryError("internal: no gallery file name")
        if fresh:
            target.path.unlink(missing_ok=True)
            if next_row == 0:
                target.path.touch()
        features = library.backbone_features()
        model.eval()
        if next_row > start:
            progress(Progress("reproject", start, next_row, "gallery projections from stored features"))
        for begin in range(start, next_row, PROJECTION_CHUNK):
            if cancel is not None:
                cancel.raise_if_cancelled()
            end = min(next_row, begin + PROJECTION_CHUNK)
            target.write(begin, project_features(model, features[begin:end], bundle.device))
            progress(Progress("reproject", end, next_row, "gallery projections from stored features"))
        if fresh:
            library.activate_gallery(key, dim, next_row, model_label(bundle))
        else:
            library.set_gallery_rows(next_row)
        return True


def _model_name(bundle: ModelBundle) -> str:
    return f"model {Path(bundle.checkpoint).name}" if bundle.checkpoint else "the model"
