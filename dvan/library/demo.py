"""The embedded demo library: built from resources/demo on first use (see resources/demo/README.md)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from dvan.errors import LibraryError
from dvan.library.store import DB_NAME, Library
from dvan.progress import CancelToken, ProgressCallback, no_progress
from dvan.resources import resources_dir

if TYPE_CHECKING:  # the viewer checks the demo library before torch has loaded
    from dvan.library.importer import ImportReport
    from dvan.model.factory import ModelBundle

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


def _demo_files() -> list[Path]:
    """Every raster file the demo library is built from."""
    from dvan.library.raster import is_raster_candidate

    files: list[Path] = []
    for source in demo_sources():
        if source.is_dir():
            files.extend(sorted(p for p in source.rglob("*") if p.is_file() and is_raster_candidate(p)))
        else:
            files.append(source)
    return files


def _shipped_paths(files: list[Path]) -> set[str]:
    """The demo files as a library records its sources (resolved paths)."""
    return {str(f.resolve()) for f in files}


def demo_library_ready(path: str | Path | None = None) -> bool:
    """Whether the demo library is built and complete, so it can be opened without an import.

    True when every demo file is imported completely and unchanged since (what the importer would
    skip) and the spoken demo captions are in; reads the library's database only (no torch).
    """
    target = Path(path) if path is not None else demo_library_path()
    if not (target / DB_NAME).exists():
        return False
    try:
        with Library.open(target) as library:
            files = _demo_files()
            if {str(s.path) for s in library.sources()} != _shipped_paths(files):
                return False  # a demo file is missing, or one of an earlier install is still there
            for file in files:
                record = library.source(file)
                stat = file.stat()
                if record is None or record.status != "complete" or (record.size, record.mtime_ns) != \
                        (stat.st_size, stat.st_mtime_ns) or record.tile_size != DEMO_TILE_SIZE:
                    return False
            return bool(library.captions()) or not (demo_dir() / "captions" / "manifest.jsonl").is_file()
    except (LibraryError, OSError):
        return False


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
    from dvan.library.importer import import_paths
    from dvan.model.factory import create_model

    target = Path(path) if path is not None else demo_library_path()
    bundle = create_model(checkpoint=model) if isinstance(model, (str, Path)) else model
    sources = demo_sources()
    if (target / DB_NAME).exists():
        library = Library.open(target)
        # The demo library is derived from the shipped demo files only. Built by an earlier install in another
        # folder (an upgrade into a new prefix), it holds that install's files and captions, which would rank
        # beside the new ones: rebuild it from scratch.
        shipped = _shipped_paths(_demo_files())
        if any(str(s.path) not in shipped for s in library.sources()):
            library.close()
            shutil.rmtree(target)
            library = Library.create(target, tile_size=DEMO_TILE_SIZE)
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
