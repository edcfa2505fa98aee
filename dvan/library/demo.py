"""The embedded demo library: built from resources/demo on first use (see resources/demo/README.md)."""

from __future__ import annotations

import os
from pathlib import Path

from dvan.errors import LibraryError
from dvan.library.importer import ImportReport, import_paths
from dvan.library.store import DB_NAME, Library
from dvan.model.factory import ModelBundle, create_model
from dvan.progress import CancelToken, ProgressCallback, no_progress
from dvan.resources import resources_dir

#: Tile size of the demo library: the mosaic's 256 px cells are the original UC Merced images.
DEMO_TILE_SIZE = 256


def demo_dir() -> Path:
    """The shipped demo files (resources/demo)."""
    return resources_dir() / "demo"


def demo_sources() -> list[Path]:
    """The demo rasters to import: the mosaic GeoTIFF and the loose chips."""
    folder = demo_dir()
    sources = [folder / "demo_scene.tif", folder / "chips"]
    missing = [p for p in sources if not p.exists()]
    if missing:
        raise LibraryError(f"demo files missing ({', '.join(map(str, missing))}); rebuild them with "
                           "'python resources/demo/make_demo.py' or reinstall the project")
    return sources


def demo_queries() -> list[Path]:
    """The shipped spoken demo queries, by name."""
    return sorted((demo_dir() / "queries").glob("*.wav"))


def demo_library_path() -> Path:
    """Where the demo library is built: ``$DVAN_DEMO_LIBRARY``, else the user's data folder."""
    if os.environ.get("DVAN_DEMO_LIBRARY"):
        return Path(os.environ["DVAN_DEMO_LIBRARY"]).expanduser()
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "dvan" / "demo-library"


def ensure_demo_library(path: str | Path | None = None, model: str | Path | ModelBundle | None = None,
                        progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> Path:
    """Build (or complete) the demo library and return its folder.

    Importing is idempotent, so calling this on an existing demo library only checks it.

    Args:
        path: where to build it (default :func:`demo_library_path`).
        model: a checkpoint path or loaded model whose gallery projections are stored; without
            one only backbone features are stored (projected before the first search).
        progress: import progress reports.
        cancel: cancels the import (what is imported stays; the next call completes it).

    Raises:
        LibraryError: the demo files are missing, or ``path`` holds something else.
    """
    target = Path(path) if path is not None else demo_library_path()
    bundle = create_model(checkpoint=model) if isinstance(model, (str, Path)) else model
    sources = demo_sources()
    if (target / DB_NAME).exists():
        library = Library.open(target)
    else:
        library = Library.create(target, tile_size=DEMO_TILE_SIZE)
    try:
        report: ImportReport = import_paths(library, sources, bundle=bundle, tile_size=DEMO_TILE_SIZE, overlap=0,
                                            progress=progress, cancel=cancel)
        captions_manifest = demo_dir() / "captions" / "manifest.jsonl"
        if bundle is not None and captions_manifest.is_file() and not report.failed:
            # the demo's spoken captions make image -> audio search (the Captions tab) work out of the box
            from dvan.library.captions import add_captions

            add_captions(library, captions_manifest, bundle, progress=progress, cancel=cancel)
    finally:
        library.close()
    if report.failed:
        reasons = "; ".join(f"{p.name}: {r}" for p, r in report.failed)
        raise LibraryError(f"the demo library at {target} could not be built ({reasons})")
    return target
