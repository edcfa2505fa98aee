"""Importing rasters into a library: incremental, idempotent, resumable, crash-safe.

* Adding a file already in the library does nothing; a file whose size or modification time
  changed is hashed, and re-indexed only if its bytes changed (or its tiling settings did).
* A folder is searched recursively; files whose names are not raster names are skipped quietly,
  rasters GDAL cannot read are reported by name and reason while the rest are imported.
* Tiles are committed in batches (see :mod:`dvan.library.store`); an import killed or cancelled
  half-way leaves whole tiles only, and importing the same paths again completes it.
* Rasters are read inside the sandbox of :mod:`dvan.library.sandbox` (local files inside the
  given folders only); a bad entry (a symbolic link loop, a VRT reaching the network, a raster
  larger than ``max_pixels``) is reported by name and the rest is imported.
* Work is bounded: tile windows are generated as they are read (:class:`TileGrid`), windows of a
  sparse GeoTIFF that were never written are skipped without reading a pixel, and progress is
  reported from the first file on (a "scan" stage while files are hashed and opened).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from dvan.errors import ImageError, InvalidValueError, UnsafeRasterError, WorkerFailedError
from dvan.library.files import file_hash
from dvan.library.projection import ensure_gallery, project_features
from dvan.library.raster import (
    RasterSource,
    TileGrid,
    TileWindow,
    dumps_polygon,
    encode_thumbnail,
    is_raster_candidate,
    open_raster,
    tile_windows,
)
from dvan.library.sandbox import check_path, roots_for
from dvan.library.store import Library, NewTile
from dvan.model.factory import ModelBundle
from dvan.model.image_branch import Backbone, create_backbone
from dvan.progress import CancelToken, Progress, ProgressCallback, no_progress


class FeatureRunner(Protocol):
    """Where the backbone runs when not in this process (e.g. :class:`dvan.cluster.ray_import.RayFeatureRunner`).

    Batches are submitted in order and committed in the same order once their features arrive,
    so up to ``in_flight`` batches are computed elsewhere while this process reads and commits.
    """

    name: str
    in_flight: int

    def submit(self, images: list[np.ndarray], label: str) -> Callable[[], np.ndarray]:
        """Start computing V_I of ``images``; the returned call waits for them (float32, (N, dim)).

        The call raises :class:`dvan.errors.WorkerFailedError` when the batch could not be computed
        (``label`` names the batch's files in that message).
        """
        ...


#: Tiles sent through the backbone and committed together.
DEFAULT_BATCH = 16
#: Default largest raster imported, in pixels (width x height): a 70k x 70k scene.
DEFAULT_MAX_PIXELS = 5_000_000_000
#: Smallest tile size an import accepts, in pixels.
MIN_TILE_SIZE = 16
#: Seconds between progress reports while windows are skipped without a commit.
PROGRESS_INTERVAL = 0.25


@dataclass
class ImportReport:
    """What an import did.

    Attributes:
        added: new sources imported, with their tile counts.
        reindexed: sources whose file changed and were imported again.
        resumed: sources whose interrupted import was completed.
        unchanged: sources already in the library, untouched.
        failed: (file, reason) of files that could not be imported.
        skipped_files: files in folders that are not rasters by name.
        tiles: tiles committed by this import.
        nodata_skipped: windows without a single valid pixel, not indexed.
        unread_skipped: of those, windows of never-written sparse GeoTIFF blocks, skipped unread.
        seconds: wall time of the import.
    """

    added: list[tuple[Path, int]] = field(default_factory=list)
    reindexed: list[Path] = field(default_factory=list)
    resumed: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped_files: int = 0
    tiles: int = 0
    nodata_skipped: int = 0
    unread_skipped: int = 0
    seconds: float = 0.0

    @property
    def tiles_per_second(self) -> float:
        """Import throughput."""
        return self.tiles / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [f"{self.tiles} tiles imported in {self.seconds:.1f} s ({self.tiles_per_second:.1f} tiles/s) from "
                 f"{len(self.added)} new, {len(self.reindexed)} changed and {len(self.resumed)} resumed file(s); "
                 f"{len(self.unchanged)} unchanged"]
        if self.nodata_skipped:
            lines.append(f"{self.nodata_skipped} all-nodata window(s) not indexed"
                         + (f" ({self.unread_skipped} never-written, skipped unread)" if self.unread_skipped else ""))
        if self.skipped_files:
            lines.append(f"{self.skipped_files} non-raster file(s) skipped")
        for path, reason in self.failed:
            lines.append(f"FAILED {path}: {reason}")
        return "\n".join(lines)


@dataclass
class _Plan:
    path: Path
    size: int
    mtime_ns: int
    digest: str
    windows: TileGrid
    done: set[tuple[int, int, int, int]]
    source_id: int | None
    kind: Literal["added", "reindexed", "resumed"]
    tile_size: int
    overlap: int

    @property
    def opened_id(self) -> int:
        """The source id, which the importing thread sets when the raster is opened (before any of its tiles)."""
        if self.source_id is None:
            raise RuntimeError(f"{self.path}: tiles read before the source was begun")
        return self.source_id


def collect_files(paths: Iterable[str | Path], report: ImportReport) -> list[Path]:
    """Files to try: given files as they are, folders searched recursively for raster names.

    Links inside a folder must lead to a file inside the given folders; a broken link, a link
    loop or a link leading elsewhere is reported and skipped (folders are never followed through
    links, so a folder loop cannot recurse).
    """
    found: list[Path] = []
    paths = list(paths)
    roots = roots_for(paths)
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            def unlistable(exc: OSError, folder: Path = path) -> None:
                report.failed.append((Path(exc.filename or folder), f"cannot list the folder ({exc.strerror})"))

            for root, dirs, files in os.walk(path, onerror=unlistable):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    candidate = Path(root) / name
                    if not is_raster_candidate(candidate):
                        report.skipped_files += 1
                        continue
                    try:
                        found.append(check_path(candidate, roots))
                    except UnsafeRasterError as exc:
                        report.failed.append((candidate, _reason(exc, candidate)))
        elif path.is_file():
            found.append(path.resolve())
        else:
            try:
                path.resolve(strict=True)
                reason = "not a file or folder"
            except RuntimeError:
                reason = "symbolic link loop"
            except OSError:
                reason = "no such file or folder"
            report.failed.append((path, reason))
    return list(dict.fromkeys(found))


def check_tiling(tile_size: int, overlap: int) -> None:
    """Refuse tile settings out of range.

    Raises:
        InvalidValueError: tile size below :data:`MIN_TILE_SIZE` or overlap outside [0, tile size).
    """
    if tile_size < MIN_TILE_SIZE:
        raise InvalidValueError(f"--tile-size {tile_size}: tiles must be at least {MIN_TILE_SIZE} pixels")
    if not 0 <= overlap < tile_size:
        raise InvalidValueError(f"--overlap {overlap}: the overlap must be between 0 and the tile size minus one "
                                f"({tile_size - 1})")


def import_paths(library: Library, paths: Sequence[str | Path], *, bundle: ModelBundle | None = None,
                 backbone: Backbone | FeatureRunner | None = None, tile_size: int | None = None,
                 overlap: int | None = None, batch_size: int = DEFAULT_BATCH, progress: ProgressCallback = no_progress,
                 cancel: CancelToken | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImportReport:
    """Import raster files and folders into the library.

    Args:
        library: an open library.
        paths: files and folders.
        bundle: the model whose gallery projections are stored with the tiles; without one only
            backbone features are stored and projections are computed before the first search.
        backbone: the image backbone (default: the bundle's, or the library's loaded on demand), or a
            :class:`FeatureRunner` running it elsewhere (Ray workers); reading and committing stay here.
        tile_size: tile size in pixels (default: the library's).
        overlap: overlap of neighbouring tiles in pixels (default: the library's).
        batch_size: tiles per backbone batch and per commit.
        progress: receives ("import", windows done, windows in all) reports.
        cancel: checked between batches; tiles committed so far stay.
        max_pixels: rasters with more pixels (width x height) are refused by name; None: no limit.

    Returns:
        What was imported, skipped and failed.

    Raises:
        InvalidValueError: tile size, overlap or max_pixels out of range.
        BackboneMismatchError: the model's backbone is not the library's.
        LibraryDamagedError: the library is damaged (nothing is written; see dvan library check).
        ReadOnlyLibraryError: the library cannot be written.
        DiskFullError: the disk filled up; tiles committed before stay.
        LibraryError: another process is writing to the library.
        Cancelled: through ``cancel``.
    """
    started = time.perf_counter()
    report = ImportReport()
    tile_size = int(library.meta("tile_size") if tile_size is None else tile_size)
    overlap = int(library.meta("overlap") if overlap is None else overlap)
    check_tiling(tile_size, overlap)
    if max_pixels is not None and max_pixels < 1:
        raise InvalidValueError(f"--max-pixels {max_pixels}: the limit must be at least 1 pixel")
    if bundle is not None:
        library.check_backbone(bundle.config.backbone)
    roots = roots_for(paths)
    files = collect_files(paths, report)
    with library.writer():
        if bundle is not None:
            ensure_gallery(library, bundle, progress, cancel)
        plans = _plan(library, files, tile_size, overlap, report, roots, max_pixels, progress, cancel)
        total = sum(len(p.windows) - len(p.done) for p in plans)
        progress(Progress("import", 0, total, "reading rasters"))
        if plans:
            if backbone is None:
                backbone = bundle.backbone if bundle is not None else create_backbone(library.backbone_name)
            if backbone.name != library.backbone_name:
                library.check_backbone(backbone.name, f"backbone {backbone.name}")
            _Importer(library, bundle, backbone, batch_size, progress, cancel, report, total, started).run(plans,
                                                                                                          roots)
    report.seconds = time.perf_counter() - started
    return report


def _plan(library: Library, files: list[Path], tile_size: int, overlap: int, report: ImportReport,
          roots: list[Path], max_pixels: int | None, progress: ProgressCallback,
          cancel: CancelToken | None) -> list[_Plan]:
    plans: list[_Plan] = []
    for number, path in enumerate(files):
        progress(Progress("scan", number, len(files), path.name))
        if cancel is not None:  # hashing a large file takes a while: stop between files
            cancel.raise_if_cancelled()
        try:
            stat = path.stat()
        except OSError as exc:
            report.failed.append((path, f"cannot read ({exc.strerror})"))
            continue
        existing = library.source(path)
        same_tiling = existing is not None and (existing.tile_size, existing.overlap) == (tile_size, overlap)
        if existing is not None and existing.status == "complete" and same_tiling \
                and (existing.size, existing.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            report.unchanged.append(path)
            continue
        try:
            digest = file_hash(path)
        except OSError as exc:
            report.failed.append((path, f"cannot read ({exc.strerror})"))
            continue
        kind: Literal["added", "reindexed", "resumed"] = "added"
        done: set[tuple[int, int, int, int]] = set()
        source_id: int | None = None
        if existing is not None:
            if same_tiling and existing.size == stat.st_size and existing.hash == digest:
                if existing.status == "complete":  # touched, not changed
                    library.touch_source(existing.id, stat.st_mtime_ns)
                    report.unchanged.append(path)
                    continue
                kind, source_id, done = "resumed", existing.id, library.committed_windows(existing.id)
            else:
                library.delete_sources([existing.id])
                kind = "reindexed"
        try:
            with open_raster(path, roots, max_pixels) as raster:
                windows = tile_windows(raster.width, raster.height, tile_size, overlap)
        except ImageError as exc:
            report.failed.append((path, _reason(exc, path)))
            if source_id is not None:
                library.delete_sources([source_id])
            continue
        plans.append(_Plan(path, stat.st_size, stat.st_mtime_ns, digest, windows, done, source_id, kind, tile_size,
                           overlap))
    if files:
        progress(Progress("scan", len(files), len(files), "files checked"))
    return plans


def _reason(exc: Exception, path: Path) -> str:
    text = str(exc)
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text


@dataclass
class _Pending:
    plan: _Plan
    window: TileWindow
    rgb: np.ndarray
    tile: NewTile


@dataclass
class _Opened:
    """A raster opened; its tiles follow."""

    plan: _Plan
    raster: dict[str, object]


@dataclass
class _TileRead:
    """One window read, with its thumbnail."""

    plan: _Plan
    window: TileWindow
    rgb: np.ndarray
    tile: NewTile


@dataclass
class _Empty:
    """Windows without a single valid pixel (``unread``: never-written sparse blocks, skipped unread)."""

    plan: _Plan
    remaining: int
    unread: bool = False


@dataclass
class _Failed:
    """The raster could not be read; its ``remaining`` windows are given up."""

    plan: _Plan
    error: ImageError
    remaining: int


@dataclass
class _Ended:
    """Every window of the raster was read."""

    plan: _Plan


@dataclass
class _Done:
    """Every raster was read."""


@dataclass
class _Crashed:
    """The reader thread raised; the importing thread raises the same."""

    error: BaseException


#: What the reader thread hands the importing thread, in order.
_Read = _Opened | _TileRead | _Empty | _Failed | _Ended | _Done | _Crashed


#: Tiles the reader thread may hold ready ahead of the backbone, in batches.
READ_AHEAD_BATCHES = 2


class _Importer:
    """Reads tiles in a background thread (GDAL and PIL release the GIL) while the backbone runs.

    All library writes happen in the calling thread, in order; the reader only opens rasters,
    reads windows and encodes thumbnails.
    """

    def __init__(self, library: Library, bundle: ModelBundle | None, backbone: Backbone | FeatureRunner,
                 batch_size: int,
                 progress: ProgressCallback, cancel: CancelToken | None, report: ImportReport, total: int,
                 started: float) -> None:
        self.library = library
        self.bundle = bundle
        self.backbone = backbone
        self.batch_size = max(1, batch_size)
        self.progress = progress
        self.cancel = cancel
        self.report = report
        self.total = total
        self.started = started
        self.done = 0
        self.pending: list[_Pending] = []
        self.finished: dict[int, int] = {}
        self.last_report = time.perf_counter()
        # batches whose features are computed elsewhere, committed in submission order
        self.in_flight: deque[_InFlight] = deque()
        self.failed_plans: set[int] = set()
        self.failed_sources: set[int] = set()

    def run(self, plans: list[_Plan], roots: list[Path]) -> None:
        reads: queue.Queue[_Read] = queue.Queue(maxsize=READ_AHEAD_BATCHES * self.batch_size)
        stop = threading.Event()
        reader = threading.Thread(target=_reader, args=(plans, reads, stop, roots), name="dvan-import-reader",
                                  daemon=True)
        reader.start()
        skipped: dict[int, int] = {}
        counts: dict[int, int] = {}
        try:
            while True:
                item = reads.get()
                if isinstance(item, _Done):
                    break
                if isinstance(item, _Crashed):
                    raise item.error
                self._take(item, skipped, counts)
            self._flush()
            self._drain(0)
        finally:
            stop.set()
            while reader.is_alive():  # unblock a reader waiting on a full queue
                try:
                    reads.get(timeout=0.05)
                except queue.Empty:
                    pass

    def _take(self, item: _Opened | _TileRead | _Empty | _Failed | _Ended, skipped: dict[int, int],
              counts: dict[int, int]) -> None:
        """Act on one thing the reader found (``skipped`` and ``counts`` are per plan, by id)."""
        plan = item.plan
        if isinstance(item, _Opened):
            if self.cancel is not None:
                self.cancel.raise_if_cancelled()
            if plan.source_id is None:
                plan.source_id = self.library.begin_source(plan.path, plan.size, plan.mtime_ns, plan.digest,
                                                           plan.tile_size, plan.overlap, len(plan.windows),
                                                           item.raster)
            skipped[id(plan)], counts[id(plan)] = 0, len(plan.done)
        elif isinstance(item, _TileRead):
            self.done += 1
            counts[id(plan)] += 1
            item.tile.source_id = plan.opened_id
            self.pending.append(_Pending(plan, item.window, item.rgb, item.tile))
            if len(self.pending) >= self.batch_size:
                self._flush()
        elif isinstance(item, _Empty):
            self.done += item.remaining
            skipped[id(plan)] += item.remaining
            self.report.nodata_skipped += item.remaining
            if item.unread:
                self.report.unread_skipped += item.remaining
            self._tick(plan)
        elif isinstance(item, _Failed):
            self._fail(plan, item.error, item.remaining)
        else:
            self.finished[plan.opened_id] = skipped[id(plan)]
            if plan.kind == "added":
                self.report.added.append((plan.path, counts[id(plan)]))
            elif plan.kind == "reindexed":
                self.report.reindexed.append(plan.path)
            else:
                self.report.resumed.append(plan.path)

    def _tick(self, plan: _Plan) -> None:
        """Report progress while windows are skipped (no commit would report it)."""
        now = time.perf_counter()
        if now - self.last_report >= PROGRESS_INTERVAL:
            self.last_report = now
            self.progress(Progress("import", self.done, self.total, f"skipping empty windows, {plan.path.name}"))
            if self.cancel is not None:
                self.cancel.raise_if_cancelled()

    def _fail(self, plan: _Plan, exc: ImageError | WorkerFailedError, remaining: int) -> None:
        self.report.failed.append((plan.path, _reason(exc, plan.path)))
        self.pending = [p for p in self.pending if p.plan is not plan]
        self.failed_plans.add(id(plan))  # its batches still in flight are dropped when they arrive
        if plan.source_id is not None:
            self.failed_sources.add(plan.source_id)
        if plan.source_id is not None:
            self.finished.pop(plan.source_id, None)
            self.library.delete_sources([plan.source_id])
        self.done += remaining

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        finished, self.finished = self.finished, {}
        if not batch and not finished:
            return
        images = [p.rgb for p in batch]
        wait: Callable[[], np.ndarray]
        if isinstance(self.backbone, Backbone):
            wait = _ready(self.backbone.features(images))
        elif batch:
            wait = self.backbone.submit(images, ", ".join(dict.fromkeys(p.plan.path.name for p in batch)))
        else:
            wait = self._no_features
        self.in_flight.append(_InFlight(batch, finished, wait))
        self._drain(0 if isinstance(self.backbone, Backbone) else self.backbone.in_flight)

    def _drain(self, keep: int) -> None:
        """Commit arrived batches, oldest first, until at most ``keep`` are in flight."""
        while len(self.in_flight) > keep:
            self._commit(self.in_flight.popleft())

    def _commit(self, flight: _InFlight) -> None:
        try:
            features = flight.wait().astype(np.float16)
        except WorkerFailedError as exc:  # the batch's files fail by name; the rest of the import goes on
            plans = {id(p.plan): p.plan for p in flight.batch if id(p.plan) not in self.failed_plans}
            for plan in plans.values():
                self._fail(plan, exc, 0)
                self.report.added = [a for a in self.report.added if a[0] != plan.path]
                self.report.reindexed = [p for p in self.report.reindexed if p != plan.path]
                self.report.resumed = [p for p in self.report.resumed if p != plan.path]
            features = self._no_features()
        keep = [i for i, p in enumerate(flight.batch) if id(p.plan) not in self.failed_plans]
        batch = [flight.batch[i] for i in keep]
        if len(keep) < len(flight.batch):
            features = features[keep] if len(features) else features
        finished = {s: n for s, n in flight.finished.items() if s not in self.failed_sources}
        if not batch and not finished:
            return
        gallery = None
        if self.bundle is not None and len(batch):
            gallery = project_features(self.bundle.model, features, self.bundle.device)
        self.library.commit_tiles([p.tile for p in batch], features, gallery, finished)
        self.report.tiles += len(batch)
        self.last_report = time.perf_counter()
        elapsed = max(1e-9, time.perf_counter() - self.started)
        self.progress(Progress("import", self.done, self.total,
                               f"{self.report.tiles / elapsed:.1f} tiles/s, {batch[-1].plan.path.name}" if batch
                               else ""))
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()

    def _no_features(self) -> np.ndarray:
        return np.zeros((0, self.library.backbone_dim), dtype=np.float32)


def _ready(features: np.ndarray) -> Callable[[], np.ndarray]:
    """A wait for features computed here already."""
    return lambda: features


@dataclass
class _InFlight:
    """A batch whose features are being computed, with the sources it completes."""

    batch: list[_Pending]
    finished: dict[int, int]
    wait: Callable[[], np.ndarray]


def _put(reads: queue.Queue[_Read], stop: threading.Event, item: _Read) -> bool:
    """Queue an item unless the import was stopped; returns whether it was queued."""
    while not stop.is_set():
        try:
            reads.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


#: Never-written windows reported together (one queue item), so skipping them costs next to nothing.
UNREAD_RUN = 4096


def _reader(plans: list[_Plan], reads: queue.Queue[_Read], stop: threading.Event, roots: list[Path]) -> None:
    """Reader thread: open each raster, read its windows, make thumbnails, in import order."""
    try:
        for plan in plans:
            todo = len(plan.windows) - len(plan.done)
            try:
                raster = open_raster(plan.path, roots)
            except ImageError as exc:
                if not _put(reads, stop, _Failed(plan, exc, todo)):
                    return
                continue
            with raster:
                if not _put(reads, stop, _Opened(plan, raster.describe())):
                    return
                if not _read_windows(plan, raster, reads, stop, todo):
                    return
        _put(reads, stop, _Done())
    except BaseException as exc:  # handed to the importing thread, which raises it
        _put(reads, stop, _Crashed(exc))


def _read_windows(plan: _Plan, raster: RasterSource, reads: queue.Queue[_Read], stop: threading.Event,
                  todo: int) -> bool:
    """Queue one raster's windows (tiles, skipped windows, a failure, its end); False once stopped."""
    number = 0
    unread = 0
    for window in plan.windows:  # generated one by one: memory does not grow with the raster
        if plan.done and window.as_tuple() in plan.done:
            continue
        if raster.window_is_unwritten(window):
            number += 1
            unread += 1
            if unread >= UNREAD_RUN:
                if not _put(reads, stop, _Empty(plan, unread, unread=True)):
                    return False
                unread = 0
            continue
        if unread:
            if not _put(reads, stop, _Empty(plan, unread, unread=True)):
                return False
            unread = 0
        try:
            rgb, valid = raster.read_tile(window)
        except ImageError as exc:
            return _put(reads, stop, _Failed(plan, exc, todo - number))
        number += 1
        item: _Read
        if valid <= 0.0:
            item = _Empty(plan, 1)
        else:
            item = _TileRead(plan, window, rgb, _new_tile(raster, window, rgb, valid))
        if not _put(reads, stop, item):
            return False
    if unread and not _put(reads, stop, _Empty(plan, unread, unread=True)):
        return False
    return _put(reads, stop, _Ended(plan))


def _new_tile(raster: RasterSource, window: TileWindow, rgb: np.ndarray, valid: float) -> NewTile:
    """A tile record without its source id (set by the importing thread)."""
    footprint = raster.footprint(window)
    return NewTile(source_id=-1, window=window, pixel_size=raster.pixel_size, bounds=footprint.bounds,
                   lonlat_bounds=footprint.lonlat_bounds, footprint=dumps_polygon(footprint.lonlat_polygon),
                   valid_fraction=valid, thumbnail=encode_thumbnail(rgb))
