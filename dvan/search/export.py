"""Export ranked search results as GeoJSON, GeoPackage or CSV, and tile footprints as WKT or GeoJSON (no Qt).

Each exported feature is one ranked tile: rank, matching probability, the query (and its
transcript when there is one), the tile's source file, pixel window and CRS, and its footprint
twice: as the geometry in WGS84 (lon, lat; RFC 7946 for GeoJSON, EPSG:4326 for GeoPackage, a
``wkt_wgs84`` column for CSV) and as WKT in the source CRS (``footprint_source_wkt``). Tiles
without georeferencing are exported with an empty geometry, so the ranking stays complete.

The GeoPackage is written with pyogrio (GDAL's OGR driver, bundled in its wheel); every file is
written to a temporary name beside the target and renamed over it, so an existing file is never
left half-written.
"""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dvan.errors import ExportError

#: File suffixes :func:`export_results` writes, and the format of each.
EXPORT_FORMATS = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GeoPackage", ".csv": "CSV"}

Ring = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class ResultRecord:
    """One ranked tile as exported.

    Attributes:
        rank: 1-based rank.
        probability: matching probability of the tile for the query.
        tile_id: the library's tile id.
        source: raster file the tile was cut from.
        window: pixel window (col_off, row_off, width, height) in the source.
        crs: the source's CRS (EPSG code or WKT), or None for a plain image.
        lonlat_polygon: corners (top-left, top-right, bottom-right, bottom-left) in WGS84, or None.
    """

    rank: int
    probability: float
    tile_id: int
    source: Path
    window: tuple[int, int, int, int]
    crs: str | None
    lonlat_polygon: Ring | None


def records_from_hits(hits: Sequence[Any]) -> list[ResultRecord]:
    """Records of :class:`dvan.search.TileHit` objects (or anything with ``rank``, ``probability``, ``tile``)."""
    records = []
    for hit in hits:
        tile = hit.tile
        window = tile.window.as_tuple() if hasattr(tile.window, "as_tuple") else tuple(tile.window)
        polygon = tuple((float(lon), float(lat)) for lon, lat in tile.lonlat_polygon) if tile.lonlat_polygon else None
        records.append(ResultRecord(rank=int(hit.rank), probability=float(hit.probability), tile_id=int(tile.id),
                                    source=Path(tile.source), window=tuple(int(v) for v in window),  # type: ignore[arg-type]
                                    crs=tile.crs, lonlat_polygon=polygon))
    return records


# --- geometry ------------------------------------------------------------------------------
def closed_ring(corners: Sequence[tuple[float, float]], counter_clockwise: bool = True) -> Ring:
    """The corners as a closed ring, wound counter-clockwise (RFC 7946's exterior rings) unless asked otherwise."""
    points = [(float(x), float(y)) for x, y in corners]
    if len(points) > 1 and points[0] == points[-1]:
        points = points[:-1]
    if len(points) < 3:
        raise ValueError(f"a polygon needs at least 3 corners, got {len(points)}")
    twice_area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1], strict=True))
    if (twice_area > 0) != counter_clockwise:
        points = points[:1] + points[1:][::-1]
    return tuple(points + points[:1])


def polygon_wkt(corners: Sequence[tuple[float, float]]) -> str:
    """``POLYGON ((x y, ...))`` of a footprint (x = lon or easting, y = lat or northing)."""
    return "POLYGON ((" + ", ".join(f"{x!r} {y!r}" for x, y in closed_ring(corners)) + "))"


def polygon_geojson(corners: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """A GeoJSON Polygon geometry of a WGS84 footprint."""
    return {"type": "Polygon", "coordinates": [[list(p) for p in closed_ring(corners)]]}


def polygon_wkb(corners: Sequence[tuple[float, float]]) -> bytes:
    """Little-endian ISO WKB of a footprint polygon (what OGR writes into a GeoPackage)."""
    ring = closed_ring(corners)
    return struct.pack("<BIII", 1, 3, 1, len(ring)) + b"".join(struct.pack("<dd", x, y) for x, y in ring)


def source_crs_polygon(crs: str | None, lonlat_polygon: Ring | None) -> Ring | None:
    """The footprint's corners in the tile's own CRS, transformed back from WGS84 (None without either)."""
    if not crs or not lonlat_polygon:
        return None
    from rasterio.crs import CRS
    from rasterio.errors import RasterioError
    from rasterio.warp import transform

    try:
        source = CRS.from_user_input(crs)
        if source == CRS.from_epsg(4326):
            return lonlat_polygon
        xs, ys = transform("EPSG:4326", source, [p[0] for p in lonlat_polygon], [p[1] for p in lonlat_polygon])
    except (RasterioError, ValueError):
        return None
    # a round trip through WGS84 leaves float noise (3999999.9999999995); a micro-unit is below any pixel
    return tuple((round(float(x), 6), round(float(y), 6)) for x, y in zip(xs, ys, strict=True))


def footprint_wkt(record: ResultRecord, source_crs: bool = False) -> str | None:
    """The footprint as WKT, in WGS84 (lon lat) or in the source CRS; None when the tile is not georeferenced."""
    corners = source_crs_polygon(record.crs, record.lonlat_polygon) if source_crs else record.lonlat_polygon
    return polygon_wkt(corners) if corners else None


def footprint_geojson(record: ResultRecord) -> str | None:
    """The footprint as a GeoJSON Feature (WGS84) with the tile's rank and source; None when not georeferenced."""
    if not record.lonlat_polygon:
        return None
    feature = {"type": "Feature", "geometry": polygon_geojson(record.lonlat_polygon),
               "properties": {"rank": record.rank, "probability": record.probability, "source": str(record.source),
                              "window": list(record.window), "crs": record.crs}}
    return json.dumps(feature)


# --- attributes ----------------------------------------------------------------------------
#: Attribute columns of every format, in order.
FIELDS = ("rank", "probability", "query", "transcript", "tile_id", "source", "col_off", "row_off", "width", "height",
          "crs", "footprint_source_wkt")


def _attributes(record: ResultRecord, query: str, transcript: str | None) -> dict[str, Any]:
    col, row, width, height = record.window
    return {"rank": record.rank, "probability": record.probability, "query": query, "transcript": transcript or "",
            "tile_id": record.tile_id, "source": str(record.source), "col_off": col, "row_off": row, "width": width,
            "height": height, "crs": record.crs or "", "footprint_source_wkt": footprint_wkt(record, True) or ""}


# --- writers -------------------------------------------------------------------------------
def export_format(path: str | Path) -> str:
    """The format a file name asks for ("GeoJSON", "GeoPackage", "CSV").

    Raises:
        ExportError: the suffix is none of ``EXPORT_FORMATS``.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise ExportError(f"cannot export results to {path}: unknown file type {suffix or '(none)'}; "
                          "name the file .gpkg (GeoPackage), .geojson (GeoJSON) or .csv (CSV)")
    return EXPORT_FORMATS[suffix]


def check_export_target(path: str | Path) -> str:
    """The format of ``path`` once it is known to be writable there (before a long search runs).

    Raises:
        ExportError: unknown suffix, or its folder does not exist.
    """
    kind = export_format(path)
    if not Path(path).parent.is_dir():
        raise ExportError(f"cannot export results to {path}: the folder {Path(path).parent} does not exist; "
                          "create it or choose another file")
    return kind


def export_results(records: Sequence[ResultRecord], path: str | Path, query: str, transcript: str | None = None) -> Path:
    """Write ranked results to ``path``; its suffix picks the format (see ``EXPORT_FORMATS``).

    Args:
        records: the ranked tiles, best first.
        path: target file; replaced atomically when it exists.
        query: what was searched with (an audio file name, "microphone").
        transcript: the query's words, when known.

    Returns:
        The file written.

    Raises:
        ExportError: unknown suffix, or the folder is missing or not writable.
    """
    target = Path(path)
    kind = export_format(target)
    writer: Callable[[Sequence[ResultRecord], Path, str, str | None], None] = {
        "GeoJSON": _write_geojson, "GeoPackage": _write_gpkg, "CSV": _write_csv}[kind]
    with _atomic_target(target) as temporary:
        writer(records, temporary, query, transcript)
    return target


@contextmanager
def _atomic_target(target: Path) -> Iterator[Path]:
    if not target.parent.is_dir():
        raise ExportError(f"cannot export results to {target}: the folder {target.parent} does not exist; "
                          "create it or choose another file")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=target.suffix, dir=target.parent)
    except OSError as exc:
        raise ExportError(f"cannot export results to {target}: {exc.strerror or exc}; choose a writable folder") from exc
    os.close(fd)
    temporary = Path(name)
    temporary.unlink()  # OGR refuses to create a GeoPackage over an existing (empty) file
    try:
        yield temporary
        os.replace(temporary, target)
    except OSError as exc:
        raise ExportError(f"cannot export results to {target}: {exc.strerror or exc}") from exc
    finally:
        temporary.unlink(missing_ok=True)


def _write_geojson(records: Sequence[ResultRecord], path: Path, query: str, transcript: str | None) -> None:
    features = [{"type": "Feature", "id": r.rank,
                 "geometry": polygon_geojson(r.lonlat_polygon) if r.lonlat_polygon else None,
                 "properties": _attributes(r, query, transcript)} for r in records]
    path.write_text(json.dumps({"type": "FeatureCollection", "name": "dvan_results", "features": features}, indent=1),
                    encoding="utf-8")


def _write_csv(records: Sequence[ResultRecord], path: Path, query: str, transcript: str | None) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*FIELDS, "wkt_wgs84"], lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({**_attributes(record, query, transcript), "wkt_wgs84": footprint_wkt(record) or ""})
    path.write_text(buffer.getvalue(), encoding="utf-8")


def _write_gpkg(records: Sequence[ResultRecord], path: Path, query: str, transcript: str | None) -> None:
    import numpy as np
    from pyogrio.errors import DataSourceError
    from pyogrio.raw import write

    rows = [_attributes(r, query, transcript) for r in records]
    kinds = {"rank": np.int32, "probability": np.float64, "tile_id": np.int64, "col_off": np.int64,
             "row_off": np.int64, "width": np.int32, "height": np.int32}
    columns = [np.array([row[name] for row in rows], dtype=kinds.get(name, object)) for name in FIELDS]
    geometry = np.array([polygon_wkb(r.lonlat_polygon) if r.lonlat_polygon else None for r in records], dtype=object)
    try:
        write(str(path), geometry, columns, list(FIELDS), layer="dvan_results", driver="GPKG",
              geometry_type="Polygon", crs="EPSG:4326")
    except DataSourceError as exc:
        raise ExportError(f"cannot write the GeoPackage {path}: {exc}") from exc
