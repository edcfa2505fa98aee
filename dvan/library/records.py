"""Records of a tile library as Python objects: tiles, source files, spoken captions, tiles to commit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dvan.library.raster import TileWindow


@dataclass(frozen=True)
class Tile:
    """One indexed tile.

    Attributes:
        id: stable tile id.
        row: its row in the feature arrays.
        source: the raster it was cut from.
        window: its pixel window in the source.
        pixel_size: ground size of a pixel (x, y) in CRS units, or None for a plain image.
        crs: the source CRS ("EPSG:32611", or WKT), or None.
        bounds: (left, bottom, right, top) in the source CRS, or None.
        lonlat_bounds: (west, south, east, north) in WGS84 degrees, or None.
        lonlat_polygon: the four corners as (lon, lat), or None.
        valid_fraction: share of its pixels that hold data (not nodata).
    """

    id: int
    row: int
    source: Path
    window: TileWindow
    pixel_size: tuple[float, float] | None
    crs: str | None
    bounds: tuple[float, float, float, float] | None
    lonlat_bounds: tuple[float, float, float, float] | None
    lonlat_polygon: tuple[tuple[float, float], ...] | None
    valid_fraction: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"id": self.id, "source": str(self.source), "window": list(self.window.as_tuple()),
                "pixel_size": list(self.pixel_size) if self.pixel_size else None, "crs": self.crs,
                "bounds": list(self.bounds) if self.bounds else None,
                "lonlat_bounds": list(self.lonlat_bounds) if self.lonlat_bounds else None,
                "lonlat_polygon": [list(p) for p in self.lonlat_polygon] if self.lonlat_polygon else None,
                "valid_fraction": self.valid_fraction}


@dataclass(frozen=True)
class SourceRecord:
    """One imported raster file."""

    id: int
    path: Path
    size: int
    mtime_ns: int
    hash: str
    status: str
    tile_size: int
    overlap: int
    windows: int
    tiles: int
    skipped_nodata: int
    width: int
    height: int
    crs: str | None


@dataclass(frozen=True)
class Caption:
    """One spoken caption held by the library (the gallery of image -> audio search)."""

    id: int
    row: int
    audio: Path
    image: Path
    label: str | None
    split: str | None
    text: str | None
    speaker: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"id": self.id, "audio": str(self.audio), "image": str(self.image), "label": self.label,
                "split": self.split, "text": self.text, "speaker": self.speaker}


@dataclass
class NewTile:
    """A tile about to be committed (built by the importer)."""

    source_id: int
    window: TileWindow
    pixel_size: tuple[float, float] | None
    bounds: tuple[float, float, float, float] | None
    lonlat_bounds: tuple[float, float, float, float] | None
    footprint: str | None
    valid_fraction: float
    thumbnail: bytes
