"""The tile library: rasters cut into tiles, with features, thumbnails and footprints (no Qt).

Entry points::

    from dvan.library import Library, import_paths, add_captions, ensure_gallery

    library = Library.create("my-library")          # or Library.open(path)
    report = import_paths(library, ["scenes/"], bundle=bundle, progress=callback, cancel=token)
    library.tiles(), library.thumbnail(tile_id), library.read_tile_image(tile_id), library.info()
"""

from dvan.library.captions import CaptionReport, add_captions, ensure_captions
from dvan.library.importer import ImportReport, import_paths
from dvan.library.projection import ensure_gallery, gallery_is_current
from dvan.library.raster import Footprint, RasterSource, TileWindow, open_raster, tile_windows
from dvan.library.store import Caption, Library, SourceRecord, Tile

__all__ = [
    "Caption", "CaptionReport", "Footprint", "ImportReport", "Library", "RasterSource", "SourceRecord", "Tile",
    "TileWindow", "add_captions", "ensure_captions", "ensure_gallery", "gallery_is_current", "import_paths",
    "open_raster", "tile_windows",
]
