"""Importing rasters into a library: incremental, idempotent, resumable, crash-safe.

* Adding a file already in the library does nothing; a file whose size or modification time
  changed is hashed, and re-indexed only if its bytes changed (or its tiling settings did).
* A folder is searched recursively; files whose names are not raster names are skipped quietly,
  rasters GDAL cannot read are reported by name and reason while the rest are imported.
* Tiles are committed in batches (see :mod:`dvan.library.store`); an import killed or cancelled
  half-way leaves whole tiles only, and importing the same paths again completes it.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dvan.errors import ImageError
from dvan.library.projection import ensure_gallery, project_features
from dvan.library.raster import (
    RasterSource,
    TileWindow,
    dumps_polygon,
    encode_thumbnail,
    is_raster_candidate,
    open_raster,
    tile_windows,
)
from dvan.library.store import Library, NewTile, file_hash
from dvan.model.factory import ModelBundle
from dvan.model.image_branch import Backbone, create_backbone
from dvan.progress import CancelToken, Progress, ProgressCallback, no_progress

#: Tiles sent through the backbone and committed together.
DEFAULT_BATCH = 16


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
            lines.append(f"{self.nodata_skipped} all-nodata window(s) not indexed")
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
    windows: list[TileWindow]
    done: set[tuple[int, int, int, int]]
    source_id: int | None
    kind: str  # "added", "reindexed", "resumed"
    tile_size: int
    overlap: int


def collect_files(paths: Iterable[str | Path], report: ImportReport) -> list[Path]:
    """Files to try: given files as they are, folders searched recursively for raster names."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    candidate = Path(root) / name
                    if is_raster_candidate(candidate):
                        found.append(candidate.resolve())
                    else:
                        report.skipped_files += 1
        elif path.is_file():
            found.append(path.resolve())
        else:
            report.failed.append((path, "no such file or folder"))
    return list(dict.fromkeys(found))


def import_paths(library: Library, paths: Sequence[str | Path], *, bundle: ModelBundle | None = None,
                 backbone: Backbone | None = None, tile_size: int | None = None, overlap: int | None = None,
                 batch_size: int = DEFAULT_BATCH, progress: ProgressCallback = no_progress,
                 cancel: CancelToken | None = None) -> ImportReport:
    """Import raster files and folders into the library.

    Args:
        library: an open library.
        paths: files and folders.
        bundle: the model whose gallery projections are stored with the tiles; without one only
            backbone features are stored and projections are computed before the first search.
        backbone: the image backbone (default: the bundle's, or the library's loaded on demand).
        tile_size: tile size in pixels (default: the library's).
        overlap: overlap of neighbouring tiles in pixels (default: the library's).
        batch_size: tiles per backbone batch and per commit.
        progress: receives ("import", windows done, windows in all) reports.
        cancel: checked between batches; tiles committed so far stay.

    Returns:
        What was imported, skipped and failed.

    Raises:
        BackboneMismatchError: the model's backbone is not the library's.
        LibraryError: another process is writing to the library.
        Cancelled: through ``cancel``.
    """
    started = time.perf_counter()
    report = ImportReport()
    tile_size = int(tile_size or library.meta("tile_size"))
    overlap = int(library.meta("overlap") if overlap is None else overlap)
    tile_windows(tile_size, tile_size, tile_size, overlap)  # validates the settings
    if bundle is not None:
        library.check_backbone(bundle.config.backbone)
    files = collect_files(paths, report)
    with library.writer():
        if bundle is not None:
            ensure_gallery(library, bundle, progress, cancel)
        plans = _plan(library, files, tile_size, overlap, report)
        total = sum(len(p.windows) - len(p.done) for p in plans)
        progress(Progress("import", 0, total, "reading rasters"))
        if plans:
            if backbone is None:
                backbone = bundle.backbone if bundle is not None else create_backbone(library.backbone_name)
            if backbone.name != library.backbone_name:
                library.check_backbone(backbone.name, f"backbone {backbone.name}")
            _Importer(library, bundle, backbone, batch_size, progress, cancel, report, total, started).run(plans)
    report.seconds = time.perf_counter() - started
    return report


def _plan(library: Library, files: list[Path], tile_size: int, overlap: int, report: ImportReport) -> list[_Plan]:
    plans: list[_Plan] = []
    for path in files:
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
        kind = "added"
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
            with open_raster(path) as raster:
                windows = tile_windows(raster.width, raster.height, tile_size, overlap)
        except ImageError as exc:
            report.failed.append((path, _reason(exc, path)))
            if source_id is not None:
                library.delete_sources([source_id])
            continue
        plans.append(_Plan(path, stat.st_size, stat.st_mtime_ns, digest, windows, done, source_id, kind, tile_size,
                           overlap))
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
class _Read:
    """What the reader thread found: kind is "open", "tile", "nodata", "fail", "end", "done" or "crash"."""

    kind: str
    plan: _Plan | None = None
    window: TileWindow | None = None
    rgb: np.ndarray | None = None
    tile: NewTile | None = None
    raster: dict[str, object] | None = None
    error: BaseException | None = None
    remaining: int = 0


#: Tiles the reader thread may hold ready ahead of the backbone, in batches.
READ_AHEAD_BATCHES = 2


class _Importer:
    """Reads tiles in a background thread (GDAL and PIL release the GIL) while the backbone runs.

    All library writes happen in the calling thread, in order; the reader only opens rasters,
    reads windows and encodes thumbnails.
    """

    def __init__(self, library: Library, bundle: ModelBundle | None, backbone: Backbone, batch_size: int,
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

    def run(self, plans: list[_Plan]) -> None:
        reads: queue.Queue[_Read] = queue.Queue(maxsize=READ_AHEAD_BATCHES * self.batch_size)
        stop = threading.Event()
        reader = threading.Thread(target=_reader, args=(plans, reads, stop), name="dvan-import-reader", daemon=True)
        reader.start()
        skipped: dict[int, int] = {}
        counts: dict[int, int] = {}
        try:
            while True:
                item = reads.get()
                if item.kind == "done":
                    break
                if item.kind == "crash":
                    assert item.error is not None
                    raise item.error
                plan = item.plan
                assert plan is not None
                if item.kind == "open":
                    if self.cancel is not None:
                        self.cancel.raise_if_cancelled()
                    if plan.source_id is None:
                        assert item.raster is not None
                        plan.source_id = self.library.begin_source(plan.path, plan.size, plan.mtime_ns, plan.digest,
                                                                   plan.tile_size, plan.overlap, len(plan.windows),
                                                                   item.raster)
                    skipped[id(plan)], counts[id(plan)] = 0, len(plan.done)
                elif item.kind == "tile":
                    assert item.tile is not None and item.window is not None and item.rgb is not None
                    assert plan.source_id is not None
                    self.done += 1
                    counts[id(plan)] += 1
                    item.tile.source_id = plan.source_id
                    self.pending.append(_Pending(plan, item.window, item.rgb, item.tile))
                    if len(self.pending) >= self.batch_size:
                        self._flush()
                elif item.kind == "nodata":
                    self.done += 1
                    skipped[id(plan)] += 1
                    self.report.nodata_skipped += 1
                elif item.kind == "fail":
                    assert isinstance(item.error, ImageError)
                    self._fail(plan, item.error, item.remaining)
                elif item.kind == "end":
                    assert plan.source_id is not None
                    self.finished[plan.source_id] = skipped[id(plan)]
                    if plan.kind == "added":
                        self.report.added.append((plan.path, counts[id(plan)]))
                    elif plan.kind == "reindexed":
                        self.report.reindexed.append(plan.path)
                    else:
                        self.report.resumed.append(plan.path)
            self._flush()
        finally:
            stop.set()
            while reader.is_alive():  # unblock a reader waiting on a full queue
                try:
                    reads.get(timeout=0.05)
                except queue.Empty:
                    pass

    def _fail(self, plan: _Plan, exc: ImageError, remaining: int) -> None:
        self.report.failed.append((plan.path, _reason(exc, plan.path)))
        self.pending = [p for p in self.pending if p.plan is not plan]
        if plan.source_id is not None:
            self.finished.pop(plan.source_id, None)
            self.library.delete_sources([plan.source_id])
        self.done += remaining

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        finished, self.finished = self.finished, {}
        if not batch and not finished:
            return
        features = self.backbone.features([p.rgb for p in batch]).astype(np.float16)
        gallery = None
        if self.bundle is not None and len(batch):
            gallery = project_features(self.bundle.model, features, self.bundle.device)
        self.library.commit_tiles([p.tile for p in batch], features, gallery, finished)
        self.report.tiles += len(batch)
        elapsed = max(1e-9, time.perf_counter() - self.started)
        self.progress(Progress("import", self.done, self.total,
                               f"{self.report.tiles / elapsed:.1f} tiles/s, {batch[-1].plan.path.name}" if batch
                               else ""))
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()



def _put(reads: queue.Queue[_Read], stop: threading.Event, item: _Read) -> bool:
    """Queue an item unless the import was stopped; returns whether it was queued."""
    while not stop.is_set():
        try:
            reads.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _reader(plans: list[_Plan], reads: queue.Queue[_Read], stop: threading.Event) -> None:
    """Reader thread: open each raster, read its windows, make thumbnails, in import order."""
    try:
        for plan in plans:
            todo = [w for w in plan.windows if w.as_tuple() not in plan.done]
            try:
                raster = open_raster(plan.path)
            except ImageError as exc:
                if not _put(reads, stop, _Read("fail", plan, error=exc, remaining=len(todo))):
                    return
                continue
            with raster:
                if not _put(reads, stop, _Read("open", plan, raster=raster.describe())):
                    return
                failed = False
                for number, window in enumerate(todo):
                    try:
                        rgb, valid = raster.read_tile(window)
                    except ImageError as exc:
                        failed = True
                        if not _put(reads, stop, _Read("fail", plan, error=exc, remaining=len(todo) - number)):
                            return
                        break
                    if valid <= 0.0:
                        item = _Read("nodata", plan)
                    else:
                        item = _Read("tile", plan, window=window, rgb=rgb, tile=_new_tile(raster, window, rgb, valid))
                    if not _put(reads, stop, item):
                        return
                if not failed and not _put(reads, stop, _Read("end", plan)):
                    return
        _put(reads, stop, _Read("done"))
    except BaseException as exc:  # handed to the importing thread, which raises it
        _put(reads, stop, _Read("crash", error=exc))


def _new_tile(raster: RasterSource, window: TileWindow, rgb: np.ndarray, valid: float) -> NewTile:
    """A tile record without its source id (set by the importing thread)."""
    footprint = raster.footprint(window)
    return NewTile(source_id=-1, window=window, pixel_size=raster.pixel_size, bounds=footprint.bounds,
                   lonlat_bounds=footprint.lonlat_bounds, footprint=dumps_polygon(footprint.lonlat_polygon),
                   valid_fraction=valid, thumbnail=encode_thumbnail(rgb))
