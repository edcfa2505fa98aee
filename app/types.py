"""Plain data the views show: tiles, search hits, caption hits, import reports (no Qt, no torch).

:mod:`app.backend` fills these from dvan's library and search engine; the views never import dvan's
library code themselves, so a change there touches one adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class TileInfo:
    """One tile of the library.

    Attributes:
        id: the library's tile id.
        source: raster file the tile was cut from.
        window: pixel window (col_off, row_off, width, height) in the source.
        crs: the source's CRS (EPSG code or WKT), or None for a plain image.
        pixel_size: ground size of a pixel (x, y) in CRS units, or None.
        lonlat_polygon: corners (top-left, top-right, bottom-right, bottom-left) as (lon, lat) in WGS84,
            or None when the tile has no georeferencing.
        label: a class or name, when the library knows one.
    """

    id: int
    source: Path
    window: tuple[int, int, int, int]
    crs: str | None = None
    pixel_size: tuple[float, float] | None = None
    lonlat_polygon: tuple[tuple[float, float], ...] | None = None
    label: str = ""

    @property
    def georeferenced(self) -> bool:
        """Whether the tile can be placed on the map."""
        return self.lonlat_polygon is not None

    @property
    def name(self) -> str:
        """Short name: file and window."""
        col, row, width, height = self.window
        return f"{self.source.name} [{col},{row} {width}x{height}]"

    @property
    def short_name(self) -> str:
        """File and the window's pixel offset (for small labels)."""
        col, row, _, _ = self.window
        return f"{self.source.name} @ {col},{row}"

    @property
    def centre(self) -> tuple[float, float] | None:
        """Mean of the footprint corners (lon, lat), or None."""
        if not self.lonlat_polygon:
            return None
        lons = [p[0] for p in self.lonlat_polygon]
        lats = [p[1] for p in self.lonlat_polygon]
        return sum(lons) / len(lons), sum(lats) / len(lats)


@dataclass(frozen=True)
class Hit:
    """One ranked search result."""

    rank: int
    tile: TileInfo
    probability: float


@dataclass(frozen=True)
class SearchOutcome:
    """What a spoken query returned.

    Attributes:
        hits: every tile, best first.
        seconds: time spent in the search call (features, audio branch, scoring).
        source: what was searched with ("microphone", a file name).
        truncated: the query was longer than the model's audio budget and was cut.
        mode: "audio" (the audio branch), "text" (typed words or the transcript) or "hybrid".
        text: the words the text branch read (typed, or the transcript), if any.
    """

    hits: list[Hit]
    seconds: float
    source: str = ""
    truncated: bool = False
    mode: str = "audio"
    text: str | None = None


@dataclass(frozen=True)
class Heard:
    """What the speech recogniser heard in a spoken query, and the ranking refined with it.

    Attributes:
        text: the transcript ("" when nothing was recognised).
        seconds: time from the start of the job to the transcript.
        refined: the text or hybrid ranking of the query, when the mode asks for one.
        note: why there is no refined ranking (e.g. the model has no text branch), or "".
    """

    text: str
    seconds: float
    refined: SearchOutcome | None = None
    note: str = ""


@dataclass(frozen=True)
class RankedCaption:
    """One ranked spoken caption of the library."""

    rank: int
    probability: float
    audio: Path
    text: str | None = None
    key: str = ""


@dataclass(frozen=True)
class FileReport:
    """Outcome of importing one file: status is "imported", "skipped" or "failed"."""

    path: Path
    status: str
    tiles: int = 0
    message: str = ""


@dataclass
class ImportOutcome:
    """Outcome of one import job."""

    files: list[FileReport] = field(default_factory=list)
    tiles: int = 0
    seconds: float = 0.0
    cancelled: bool = False

    @property
    def tiles_per_second(self) -> float:
        """Import throughput."""
        return self.tiles / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class ModelStatus:
    """The active model as the app presents it.

    Attributes:
        path: its checkpoint, or None when no model could be loaded.
        trained: whether its info says ``"trained": true``; untrained models never produce results.
        info: the checkpoint's info dict.
        message: why there is no usable model, when there is none.
    """

    path: Path | None
    trained: bool
    info: dict[str, object] = field(default_factory=dict)
    message: str = ""
