"""The tile library: rasters cut into tiles, with features, thumbnails and footprints (no Qt).

Entry points::

    from dvan.library import Library, import_paths, add_captions, ensure_gallery

    library = Library.create("my-library")          # or Library.open(path)
    report = import_paths(library, ["scenes/"], bundle=bundle, progress=callback, cancel=token)
    library.tiles(), library.thumbnail(tile_id), library.read_tile_image(tile_id), library.info()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dvan.library.captions import CaptionReport, add_captions, ensure_captions
    from dvan.library.importer import ImportReport, import_paths
    from dvan.library.projection import ensure_gallery, gallery_is_current
    from dvan.library.raster import Footprint, RasterSource, TileWindow, open_raster, tile_windows
    from dvan.library.store import Caption, Library, SourceRecord, Tile

# Loaded on first use: opening a library to search it must not import the importer's rasterio and torch.
_EXPORTS = {"CaptionReport": "captions", "add_captions": "captions", "ensure_captions": "captions",
            "ImportReport": "importer", "import_paths": "importer", "ensure_gallery": "projection",
            "gallery_is_current": "projection", "Footprint": "raster", "RasterSource": "raster",
            "TileWindow": "raster", "open_raster": "raster", "tile_windows": "raster", "Caption": "store",
            "Library": "store", "SourceRecord": "store", "Tile": "store"}

__all__ = [
    "Caption", "CaptionReport", "Footprint", "ImportReport", "Library", "RasterSource", "SourceRecord", "Tile",
    "TileWindow", "add_captions", "ensure_captions", "ensure_gallery", "gallery_is_current", "import_paths",
    "open_raster", "tile_windows",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
