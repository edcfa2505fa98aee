"""Reading rasters as tiles: windows, band handling, display stretch and footprints.

Anything GDAL reads through rasterio is accepted (GeoTIFF/COG, JPEG2000, PNG, JPEG, ...).

Band handling, by design:

* bands shown and fed to the backbone: the bands whose colour interpretation is red, green and
  blue when the file says so, else bands 1-3; one- and two-band (grey + alpha) rasters are grey
  repeated three times; a palette band is expanded through its colour table;
* valid pixels: GDAL's dataset mask (the alpha band if there is one, else a per-dataset mask,
  else the union of the bands' nodata masks), and finite values for floating-point data;
  invalid pixels are shown black, and a tile without a single valid pixel is not indexed;
* 8-bit data is used as is; anything else (16-bit, signed, float) is stretched per band
  linearly from its 2nd to its 98th percentile over the valid pixels of the whole source
  (sampled on a decimated read of at most 1024 px on the long side) to 0-255, clipped.
  The same stretch serves the thumbnails and the backbone, so both see the same picture.

Tiling: a raster larger than the tile size is cut into ``tile_size`` x ``tile_size`` windows at
native resolution, ``tile_size - overlap`` apart; the last row and column are shifted to end at
the raster's edge, so every tile is full size. A raster no larger than a tile is one tile.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np

from dvan.errors import ImageError, RasterTooLargeError
from dvan.library.files import RASTER_SUFFIXES
from dvan.library.sandbox import check_opened, check_raster_file, harden_gdal, roots_for

#: Sidecar files GDAL writes next to rasters; never imported even though they may look like rasters.
SIDECAR_ENDINGS = (".aux.xml", ".ovr", ".msk")
#: Percentiles of the display stretch of non-8-bit data.
STRETCH_PERCENTILES = (2.0, 98.0)
#: Longest side of the decimated read the stretch statistics are taken from.
STRETCH_SAMPLE_SIZE = 1024
#: Longest side of a tile thumbnail, in pixels.
THUMBNAIL_SIZE = 128


def is_raster_candidate(path: Path) -> bool:
    """Whether a file found in a folder should be tried as a raster (by its name)."""
    name = path.name.lower()
    if name.startswith(".") or name.endswith(SIDECAR_ENDINGS):
        return False
    return path.suffix.lower() in RASTER_SUFFIXES


@dataclass(frozen=True)
class TileWindow:
    """A pixel window of a raster: column and row offset, width and height."""

    col_off: int
    row_off: int
    width: int
    height: int

    def as_tuple(self) -> tuple[int, int, int, int]:
        """(col_off, row_off, width, height)."""
        return (self.col_off, self.row_off, self.width, self.height)


def _axis(length: int, tile: int, stride: int) -> tuple[range, int | None]:
    """Offsets along one axis: a lazy range, plus the last offset moved to end at the edge (or None)."""
    if length <= tile:
        return range(0, 1), None
    regular = range(0, length - tile + 1, stride)
    last = regular[-1]
    return regular, (length - tile if last + tile < length else None)


class TileGrid(Sequence[TileWindow]):
    """The windows covering a raster, computed on demand (memory does not depend on the raster's size).

    A sequence: ``len()``, iteration row by row, and indexing work without building the list, so a
    file declaring 2e9 x 2e9 pixels costs nothing until its windows are read.
    """

    def __init__(self, width: int, height: int, tile_size: int, overlap: int) -> None:
        stride = tile_size - overlap
        self._xs, self._x_last = _axis(width, tile_size, stride)
        self._ys, self._y_last = _axis(height, tile_size, stride)
        self._nx = len(self._xs) + (self._x_last is not None)
        self._ny = len(self._ys) + (self._y_last is not None)
        self._tw, self._th = min(tile_size, width), min(tile_size, height)

    def __len__(self) -> int:
        return self._nx * self._ny

    @staticmethod
    def _offset(values: range, last: int | None, index: int) -> int:
        return values[index] if index < len(values) else int(last)  # type: ignore[arg-type]

    @overload
    def __getitem__(self, index: int) -> TileWindow: ...

    @overload
    def __getitem__(self, index: slice) -> list[TileWindow]: ...

    def __getitem__(self, index: int | slice) -> TileWindow | list[TileWindow]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        row, col = divmod(index, self._nx)
        return TileWindow(self._offset(self._xs, self._x_last, col), self._offset(self._ys, self._y_last, row),
                          self._tw, self._th)

    def __iter__(self) -> Iterator[TileWindow]:
        for row in range(self._ny):
            y = self._offset(self._ys, self._y_last, row)
            for col in range(self._nx):
                yield TileWindow(self._offset(self._xs, self._x_last, col), y, self._tw, self._th)


def tile_windows(width: int, height: int, tile_size: int = 256, overlap: int = 0) -> TileGrid:
    """Windows covering a ``width`` x ``height`` raster, row by row (see the module docstring), lazily.

    Raises:
        ValueError: the tile size is not positive or the overlap not smaller than it.
    """
    if tile_size < 1:
        raise ValueError(f"tile size must be at least 1 pixel, got {tile_size}")
    if not 0 <= overlap < tile_size:
        raise ValueError(f"overlap must be between 0 and tile size - 1 ({tile_size - 1}), got {overlap}")
    return TileGrid(width, height, tile_size, overlap)


@dataclass(frozen=True)
class Footprint:
    """Where a tile lies on the ground.

    Attributes:
        bounds: (left, bottom, right, top) in the source CRS, or None without georeferencing.
        lonlat_bounds: (west, south, east, north) in WGS84 degrees, or None without a CRS.
        lonlat_polygon: the four corners (top-left, top-right, bottom-right, bottom-left) as
            (lon, lat) pairs, or None without a CRS.
    """

    bounds: tuple[float, float, float, float] | None
    lonlat_bounds: tuple[float, float, float, float] | None
    lonlat_polygon: tuple[tuple[float, float], ...] | None


@dataclass
class RasterSource:
    """An opened raster's facts needed to cut and read its tiles.

    Attributes:
        path: the file.
        width, height, count: size in pixels and number of bands.
        dtype: data type of the bands read.
        crs: the CRS as a string (EPSG code or WKT), or None.
        transform: the affine geotransform (a, b, c, d, e, f), or None for a plain image.
        rgb_bands: 1-based bands shown as red, green, blue (one band repeated for grey).
        stretch: per shown band (low, high) of the 2-98 % stretch, or None for 8-bit data.
        palette: (256, 3) uint8 colour table of a palette band, or None.
        all_valid: no nodata value, alpha or mask band: every pixel is valid (NaN aside).
    """

    path: Path
    width: int
    height: int
    count: int
    dtype: str
    crs: str | None
    transform: tuple[float, float, float, float, float, float] | None
    rgb_bands: tuple[int, int, int]
    stretch: list[tuple[float, float]] | None = None
    palette: np.ndarray | None = None
    all_valid: bool = False
    sparse_bands: tuple[int, ...] = ()
    _dataset: Any = field(default=None, repr=False)

    @property
    def georeferenced(self) -> bool:
        """Whether pixels map to ground coordinates (a geotransform is present)."""
        return self.transform is not None

    @property
    def pixel_size(self) -> tuple[float, float] | None:
        """Ground size of a pixel (x, y) in CRS units, or None for a plain image."""
        if self.transform is None:
            return None
        a, b, _, d, e, _ = self.transform
        return (math.hypot(a, d), math.hypot(b, e))

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary stored with the source."""
        return {"width": self.width, "height": self.height, "count": self.count, "dtype": self.dtype,
                "crs": self.crs, "transform": list(self.transform) if self.transform else None,
                "rgb_bands": list(self.rgb_bands), "stretch": self.stretch,
                "palette": self.palette is not None}

    def close(self) -> None:
        """Close the underlying dataset."""
        if self._dataset is not None:
            self._dataset.close()
            self._dataset = None

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------------

    def window_is_unwritten(self, window: TileWindow) -> bool:
        """Whether no block under the window was ever written (a sparse GeoTIFF whose missing blocks
        are nodata): such a window is all nodata and is skipped without reading a pixel."""
        if not self.sparse_bands:
            return False
        block_h, block_w = self._dataset.block_shapes[0]
        for by in range(window.row_off // block_h, (window.row_off + window.height - 1) // block_h + 1):
            for bx in range(window.col_off // block_w, (window.col_off + window.width - 1) // block_w + 1):
                for band in self.sparse_bands:
                    offset = self._dataset.get_tag_item(f"BLOCK_OFFSET_{bx}_{by}", "TIFF", bidx=band)
                    if offset not in (None, "", "0"):
                        return False
        return True

    def read_tile(self, window: TileWindow) -> tuple[np.ndarray, float]:
        """The tile as (H, W, 3) uint8 and the fraction of its pixels that are valid.

        Raises:
            ImageError: GDAL cannot read the window (truncated or damaged file).
        """
        from rasterio.errors import RasterioError
        from rasterio.windows import Window

        win = Window(window.col_off, window.row_off, window.width, window.height)  # type: ignore[call-arg]
        try:
            data = self._dataset.read(list(dict.fromkeys(self.rgb_bands)), window=win)
            if self.all_valid:  # no nodata, alpha or mask band: GDAL's mask would be all 255
                mask = np.ones(data.shape[1:], dtype=bool)
            else:
                mask = self._dataset.dataset_mask(window=win) > 0
        except (RasterioError, ValueError) as exc:
            raise ImageError(f"{self.path}: damaged raster, cannot read pixels {window.as_tuple()} "
                             f"({_short(exc)})") from exc
        return self._to_rgb(data, mask)

    def read_whole(self, max_size: int) -> tuple[np.ndarray, float]:
        """The whole raster decimated to at most ``max_size`` px on its long side, as (H, W, 3) uint8."""
        from rasterio.enums import Resampling
        from rasterio.errors import RasterioError

        scale = min(1.0, max_size / max(self.width, self.height))
        shape = (max(1, round(self.height * scale)), max(1, round(self.width * scale)))
        bands = list(dict.fromkeys(self.rgb_bands))
        try:
            data = self._dataset.read(bands, out_shape=(len(bands), *shape), resampling=Resampling.average)
            mask = self._dataset.dataset_mask(out_shape=shape) > 0
        except (RasterioError, ValueError) as exc:
            raise ImageError(f"{self.path}: damaged raster, cannot read pixels ({_short(exc)})") from exc
        return self._to_rgb(data, mask)

    def _to_rgb(self, data: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float]:
        if np.issubdtype(data.dtype, np.floating):
            mask = mask & np.isfinite(data).all(axis=0)
        if self.palette is not None:
            rgb = self.palette[np.clip(data[0], 0, 255).astype(np.intp)]
        else:
            order = list(dict.fromkeys(self.rgb_bands))
            planes = []
            for i, band in enumerate(self.rgb_bands):
                plane = data[order.index(band)]
                if self.stretch is not None:
                    low, high = self.stretch[i]
                    scaled = (np.nan_to_num(plane.astype(np.float32), nan=low) - low) * (255.0 / (high - low))
                    plane = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
                planes.append(plane.astype(np.uint8, copy=False))
            rgb = np.stack(planes, axis=-1)
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        valid = float(mask.mean()) if mask.size else 0.0
        if valid < 1.0:
            rgb[~mask] = 0
        return rgb, valid

    # -- footprints ----------------------------------------------------------------------------

    def footprint(self, window: TileWindow) -> Footprint:
        """Bounds of a window in the source CRS and in WGS84 (see :class:`Footprint`)."""
        if self.transform is None:
            return Footprint(None, None, None)
        a, b, c, d, e, f = self.transform
        x0, y0 = window.col_off, window.row_off
        x1, y1 = x0 + window.width, y0 + window.height
        corners = [(a * col + b * row + c, d * col + e * row + f) for col, row in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
        xs = [c[0] for c in corners]
        ys = [c[1] for c in corners]
        bounds = (min(xs), min(ys), max(xs), max(ys))
        if self.crs is None:
            return Footprint(bounds, None, None)
        return Footprint(bounds, *lonlat_of(self.crs, bounds, xs, ys))


def lonlat_of(crs: str, bounds: tuple[float, float, float, float], xs: list[float],
              ys: list[float]) -> tuple[tuple[float, float, float, float] | None, tuple[tuple[float, float], ...] | None]:
    """WGS84 bounds and corner polygon of an area given in ``crs`` (None where it cannot be transformed)."""
    from rasterio.crs import CRS
    from rasterio.errors import RasterioError
    from rasterio.warp import transform, transform_bounds

    try:
        source = CRS.from_user_input(crs)
        if source == CRS.from_epsg(4326):
            return _on_the_globe(bounds, tuple((float(x), float(y)) for x, y in zip(xs, ys, strict=True)))
        west, south, east, north = transform_bounds(source, "EPSG:4326", *bounds, densify_pts=21)
        lons, lats = transform(source, "EPSG:4326", xs, ys)
    except (RasterioError, ValueError) as exc:  # a CRS PROJ cannot transform
        warnings.warn(f"cannot transform footprint from {crs} to WGS84: {exc}", stacklevel=2)
        return None, None
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        return None, None
    polygon = tuple((float(lon), float(lat)) for lon, lat in zip(lons, lats, strict=True))
    return _on_the_globe((float(west), float(south), float(east), float(north)), polygon)


def _on_the_globe(bounds: tuple[float, float, float, float], polygon: tuple[tuple[float, float], ...]
                  ) -> tuple[tuple[float, float, float, float] | None, tuple[tuple[float, float], ...] | None]:
    """Clamp lon/lat to the globe (an extent declared past the poles or the antimeridian is cut there);
    None when nothing is left (the area lies wholly off the globe)."""
    west, south, east, north = bounds
    if not all(math.isfinite(v) for v in bounds + tuple(v for p in polygon for v in p)):
        return None, None
    clamped = (min(max(west, -180.0), 180.0), min(max(south, -90.0), 90.0), min(max(east, -180.0), 180.0),
               min(max(north, -90.0), 90.0))
    if clamped[0] >= clamped[2] or clamped[1] >= clamped[3]:
        return None, None
    corners = tuple((min(max(x, -180.0), 180.0), min(max(y, -90.0), 90.0)) for x, y in polygon)
    return clamped, corners


def _crs_string(crs: Any) -> str | None:
    if crs is None:
        return None
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def open_raster(path: str | Path, roots: Sequence[Path] | None = None,
                max_pixels: int | None = None) -> RasterSource:
    """Open a local raster (inside the raster sandbox) and work out its bands, geotransform and stretch.

    Args:
        path: the file.
        roots: folders the raster may read from (it and every file it names, see
            :mod:`dvan.library.sandbox`); default: the file's own folder.
        max_pixels: refuse rasters with more pixels (width x height) than this; None: no limit.

    Raises:
        UnsafeRasterError: the file refers to the network or to files outside ``roots``.
        RasterTooLargeError: more pixels than ``max_pixels``.
        ImageError: GDAL cannot open or read the file; the message says why.
    """
    import rasterio
    from rasterio.enums import ColorInterp, MaskFlags
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    path = Path(path)
    harden_gdal()
    if roots is None:
        roots = roots_for([path.parent])
    check_raster_file(path, roots)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            dataset = rasterio.open(path)
    except (RasterioError, OSError) as exc:
        raise ImageError(f"{path}: not a readable raster ({_short(exc)})") from exc
    try:
        check_opened(path, dataset.driver, dataset.files, roots)
        if dataset.count < 1 or dataset.width < 1 or dataset.height < 1:
            raise ImageError(f"{path}: raster has no pixels ({dataset.width}x{dataset.height}, {dataset.count} bands)")
        if max_pixels is not None and dataset.width * dataset.height > max_pixels:
            raise RasterTooLargeError(f"{path}: {dataset.width} x {dataset.height} = {dataset.width * dataset.height:.3g}"
                                      f" pixels, more than the limit of {max_pixels:.3g}; raise it with --max-pixels "
                                      "if the raster is real, or cut it into smaller files")
        interp = list(dataset.colorinterp)
        alpha = [i + 1 for i, c in enumerate(interp) if c == ColorInterp.alpha]
        if not alpha:
            alpha = [i + 1 for i, flags in enumerate(dataset.mask_flag_enums) if MaskFlags.alpha in flags
                     and dataset.count in (2, 4) and i + 1 == dataset.count]
        data_bands = [b for b in range(1, dataset.count + 1) if b not in alpha]
        if not data_bands:
            raise ImageError(f"{path}: only an alpha band, no image data")
        palette = None
        if ColorInterp.red in interp and ColorInterp.green in interp and ColorInterp.blue in interp:
            rgb = (interp.index(ColorInterp.red) + 1, interp.index(ColorInterp.green) + 1,
                   interp.index(ColorInterp.blue) + 1)
        elif len(data_bands) >= 3:
            rgb = (data_bands[0], data_bands[1], data_bands[2])
        else:
            rgb = (data_bands[0],) * 3
            if interp[data_bands[0] - 1] == ColorInterp.palette:
                try:
                    table = dataset.colormap(data_bands[0])
                    palette = np.zeros((256, 3), dtype=np.uint8)
                    for index, colour in table.items():
                        if 0 <= index < 256:
                            palette[index] = colour[:3]
                except ValueError:
                    palette = None
        transform: tuple[float, float, float, float, float, float] | None = tuple(dataset.transform)[:6]  # type: ignore[assignment]
        if dataset.crs is None and dataset.transform.is_identity:
            transform = None
        dtype = str(dataset.dtypes[rgb[0] - 1])
        all_valid = all(list(flags) == [MaskFlags.all_valid] for flags in dataset.mask_flag_enums)
        source = RasterSource(path=path, width=dataset.width, height=dataset.height, count=dataset.count,
                              dtype=dtype, crs=_crs_string(dataset.crs), transform=transform, rgb_bands=rgb,
                              palette=palette, all_valid=all_valid, _dataset=dataset)
        source.sparse_bands = _sparse_bands(dataset, rgb, all_valid)
        if dtype != "uint8" and palette is None:
            bands = list(dict.fromkeys(rgb))
            sample, valid = _stretch_sample(dataset, bands)
            if np.issubdtype(sample.dtype, np.floating):
                valid &= np.isfinite(sample).all(axis=0)
            source.stretch = [_stretch_limits(sample[bands.index(b)][valid]) for b in rgb]
        return source
    except ImageError:
        dataset.close()
        raise
    except (RasterioError, OSError, ValueError) as exc:
        dataset.close()
        raise ImageError(f"{path}: damaged raster ({_short(exc)})") from exc


#: Rasters with more pixels than this and no overviews are sampled in spots for the stretch.
SPOT_SAMPLE_ABOVE = 16 * STRETCH_SAMPLE_SIZE * STRETCH_SAMPLE_SIZE
#: Spots per side, and their size in pixels, of that sample.
SPOT_GRID, SPOT_SIZE = 16, 64


def _stretch_sample(dataset: Any, bands: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixels and validity the stretch is taken from, read at a cost independent of the raster's size.

    A decimated read of a raster without overviews makes GDAL decode every block (minutes for a
    100k x 100k file before the first tile), so a large one without overviews is sampled in a
    grid of small windows instead.
    """
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    width, height = dataset.width, dataset.height
    if width * height <= SPOT_SAMPLE_ABOVE or dataset.overviews(bands[0]):
        scale = min(1.0, STRETCH_SAMPLE_SIZE / max(width, height))
        shape = (max(1, round(height * scale)), max(1, round(width * scale)))
        sample = dataset.read(bands, out_shape=(len(bands), *shape), resampling=Resampling.nearest)
        return sample, dataset.dataset_mask(out_shape=shape) > 0
    size_x, size_y = min(SPOT_SIZE, width), min(SPOT_SIZE, height)
    pieces, masks = [], []
    for gy in range(SPOT_GRID):
        for gx in range(SPOT_GRID):
            x = (width - size_x) * gx // max(1, SPOT_GRID - 1)
            y = (height - size_y) * gy // max(1, SPOT_GRID - 1)
            window = Window(x, y, size_x, size_y)  # type: ignore[call-arg]
            pieces.append(dataset.read(bands, window=window).reshape(len(bands), -1))
            masks.append((dataset.dataset_mask(window=window) > 0).reshape(-1))
    return np.concatenate(pieces, axis=1), np.concatenate(masks)


def _sparse_bands(dataset: Any, rgb: tuple[int, int, int], all_valid: bool) -> tuple[int, ...]:
    """Bands whose missing GeoTIFF blocks mean nodata (see RasterSource.window_is_unwritten); () if none."""
    from rasterio.enums import MaskFlags

    if all_valid or dataset.driver != "GTiff" or not dataset.block_shapes:
        return ()
    bands = tuple(dict.fromkeys(rgb))
    for band in bands:  # only nodata decides validity: a missing block then reads as nodata
        if dataset.nodatavals[band - 1] is None or list(dataset.mask_flag_enums[band - 1]) != [MaskFlags.nodata]:
            return ()
    return bands


def _stretch_limits(values: np.ndarray) -> tuple[float, float]:
    if values.size == 0:
        return (0.0, 1.0)
    low, high = (float(v) for v in np.percentile(values.astype(np.float64), STRETCH_PERCENTILES))
    if not high > low:
        high = low + 1.0
    return (low, high)


def _short(exc: BaseException) -> str:
    """First line of GDAL's message, with the deepest cause rasterio chains behind 'See previous exception'."""
    messages: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(messages) < 8:
        lines = str(current).strip().splitlines()
        if lines:
            messages.append(lines[0])
        current = current.__cause__ or current.__context__
    useful = list(dict.fromkeys(m for m in messages if "See previous exception" not in m))
    if not useful:
        return type(exc).__name__
    return useful[0] if len(useful) == 1 else f"{useful[0]}; {useful[-1]}"


def iter_tiles(source: RasterSource, tile_size: int, overlap: int) -> Iterator[TileWindow]:
    """The source's tile windows (convenience over :func:`tile_windows`)."""
    yield from tile_windows(source.width, source.height, tile_size, overlap)


def encode_thumbnail(rgb: np.ndarray, size: int = THUMBNAIL_SIZE, quality: int = 85) -> bytes:
    """A JPEG thumbnail of at most ``size`` px on its long side."""
    import io

    from PIL import Image

    image = Image.fromarray(rgb)
    image.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def dumps_polygon(polygon: tuple[tuple[float, float], ...] | None) -> str | None:
    """A lon/lat polygon as compact JSON (stored in SQLite)."""
    return None if polygon is None else json.dumps([[round(x, 9), round(y, 9)] for x, y in polygon])
