"""Paths of the resources shipped with the project (demo library source, default model, icons)."""

from __future__ import annotations

import os
from pathlib import Path

#: The repository's resources/ folder (the package is installed editable from the checkout).
RESOURCES = Path(__file__).resolve().parent.parent / "resources"


def resources_dir() -> Path:
    """Folder of shipped resources; ``$DVAN_RESOURCES`` overrides it (installed bundles)."""
    return Path(os.environ.get("DVAN_RESOURCES", RESOURCES))


def default_model_path() -> Path:
    """The embedded default model checkpoint."""
    return resources_dir() / "models" / "default.safetensors"
