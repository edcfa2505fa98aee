"""The app's one adapter over dvan: library, model, search, captions (no Qt).

Views call these methods (directly for quick reads, through :mod:`app.job_control` for anything slow);
long ones take ``progress`` and ``cancel`` like every dvan job. Only this module (and the job
functions of :mod:`app.jobs`, run in job servers) imports dvan's library and search code, so the
views see :mod:`app.types` records only.

Thread safety: reads of the library are guarded by its own lock; the model bundle is created
once under a lock and only read afterwards; jobs that write (import, reproject) run one at a time
(the views disable their buttons while one runs, and the library holds a write lock).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.types import Heard, Hit, ImportOutcome, ModelStatus, RankedCaption, SearchOutcome, TileInfo
from dvan.errors import CheckpointError, LibraryError, TextBranchMissingError
from dvan.progress import CancelToken, Progress, ProgressCallback, no_progress

#: Tiles returned per query (the grid shows them all; the map highlights the best 20).
MAX_HITS = 100
#: Spoken captions returned per image.
MAX_CAPTIONS = 50
#: Longest a search waits for a library that is still being opened in the background, in seconds.
LIBRARY_WAIT_S = 120.0


def _tile_info(tile: Any) -> TileInfo:
    window = tile.window.as_tuple() if hasattr(tile.window, "as_tuple") else tuple(tile.window)
    return TileInfo(id=int(tile.id), source=Path(tile.source), window=window, crs=tile.crs,
                    pixel_size=tuple(tile.pixel_size) if tile.pixel_size else None,
                    lonlat_polygon=tuple(tuple(p) for p in tile.lonlat_polygon) if tile.lonlat_polygon else None)


def reserve_gui_core() -> int:
    """Leave one CPU core to the GUI thread: torch computes on the others (at least one); returns torch's threads.

    With torch's threads on every core, a backbone batch of an import competes with the GUI
    thread for the CPU while it runs.
    """
    import os

    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores - 1)
    if torch.get_num_threads() > threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


class Backend:
    """Holds the open library and the active model; every dvan call of the app goes through here.

    Args:
        device: "auto", "cuda" or "cpu".
        backbone_weights: weights file of the VGG16 backbone, if any.
        model_path: the active checkpoint; None = the shipped default model.
    """

    def __init__(self, device: str = "auto", backbone_weights: str | Path | None = None,
                 model_path: str | Path | None = None) -> None:
        self.device = device
        self.backbone_weights = Path(backbone_weights) if backbone_weights else None
        self.model_path = Path(model_path) if model_path else None
        self.library: Any = None
        self._bundle: Any = None
        self._engine: Any = None
        self._bundle_lock = threading.Lock()
        self._tiles: list[TileInfo] | None = None
        self._tiles_by_id: dict[int, TileInfo] = {}
        # cleared while a library is being opened in the background (see expect_library)
        self._library_opened = threading.Event()
        self._library_opened.set()
        #: the query mode ("auto" = the model's own choice; see dvan search --mode)
        self.query_mode = "auto"

    # -- library -------------------------------------------------------------------------------
    @property
    def library_path(self) -> Path | None:
        """Folder of the open library."""
        return Path(self.library.path) if self.library is not None else None

    def create_library(self, path: str | Path, backbone: str | None = None) -> None:
        """Create an empty library (for the active model's backbone) and open it."""
        from dvan.library.store import Library

        if backbone is None:
            backbone = self.model_config().backbone
        library = Library.create(path, backbone=backbone)
        self._set_library(library)

    def open_library(self, path: str | Path) -> None:
        """Open an existing library (safe on a worker thread; see :meth:`expect_library`)."""
        from dvan.library.store import Library

        try:
            self._set_library(Library.open(path))
        finally:
            self._library_opened.set()

    def expect_library(self) -> None:
        """Say that :meth:`open_library` is about to run on a worker: searches started meanwhile wait for it.

        At start-up the library opens in the background while the model loads; a query spoken in
        that moment is then answered as soon as the library is there instead of failing.
        """
        self._library_opened.clear()

    @property
    def library_opening(self) -> bool:
        """Whether a library is being opened in the background."""
        return not self._library_opened.is_set()

    def _set_library(self, library: Any) -> None:
        old, self.library = self.library, library
        self._tiles = None
        self._engine = None
        if old is not None:
            old.close()

    def close(self) -> None:
        """Close the library."""
        self._set_library(None)

    def library_info(self) -> dict[str, Any]:
        """The library's summary (``dvan library info``), or {} without one."""
        return self.library.info() if self.library is not None else {}

    def tiles(self, refresh: bool = False) -> list[TileInfo]:
        """Every tile of the library (cached until the next import)."""
        if self.library is None:
            return []
        if self._tiles is None or refresh:
            self._tiles = [_tile_info(t) for t in self.library.tiles()]
            self._tiles_by_id = {t.id: t for t in self._tiles}
        return self._tiles

    def tile(self, tile_id: int) -> TileInfo:
        """One tile by id."""
        self.tiles()
        found = self._tiles_by_id.get(tile_id)
        if found is None:
            found = _tile_info(self._require_library().tile(tile_id))
        return found

    def thumbnail(self, tile_id: int) -> bytes:
        """The tile's JPEG thumbnail bytes."""
        return bytes(self._require_library().thumbnail(tile_id))

    def tile_image(self, tile_id: int) -> np.ndarray:
        """The tile's full-resolution pixels (H, W, 3) uint8, re-read from its source."""
        return np.asarray(self._require_library().read_tile_image(tile_id))

    def _require_library(self) -> Any:
        if self.library is None and threading.current_thread() is not threading.main_thread():
            self._library_opened.wait(LIBRARY_WAIT_S)  # never blocks the GUI thread
        if self.library is None:
            raise LibraryError("no library is open; create or open one in the Library tab")
        return self.library

    def reload(self) -> None:
        """Forget the cached tile list (another process changed the library).

        The search engine stays: the library's memory maps and row caches follow changes made by
        other processes, and re-creating the engine would digest the model's weights again (tens
        of milliseconds in the GUI thread).
        """
        with self._bundle_lock:
            self._tiles = None

    def job_settings(self) -> tuple[str | None, str, str | None]:
        """(model checkpoint or None for the default, device, backbone weights) for :mod:`app.jobs`."""
        return (str(self.model_path) if self.model_path else None, self.device,
                str(self.backbone_weights) if self.backbone_weights else None)

    def import_paths(self, paths: Sequence[str | Path], *, progress: ProgressCallback = no_progress,
                     cancel: CancelToken | None = None) -> ImportOutcome:
        """Import files and folders into the open library in this process (the Library tab uses a child process)."""
        from app.jobs import import_job

        library = self._require_library()
        model, device, weights = self.job_settings()
        try:
            return import_job(library.path, [str(p) for p in paths], model, device, weights, progress=progress,
                              cancel=cancel)
        finally:
            self.reload()

    # -- model ---------------------------------------------------------------------------------
    def model_checkpoint(self) -> Path:
        """The active checkpoint (the shipped default when none was chosen)."""
        if self.model_path is not None:
            return self.model_path
        from dvan.resources import default_model_path

        return default_model_path()

    def model_status(self) -> ModelStatus:
        """The active model: is there one, is it trained."""
        from dvan.model.metadata import is_trained, read_checkpoint_metadata

        path = self.model_checkpoint()
        if not path.is_file():
            which = "the default model" if self.model_path is None else "the chosen model"
            return ModelStatus(path=None, trained=False,
                               message=f"{which} {path} is not there; choose a trained checkpoint in Settings "
                                       "(Active model) or train one in the Training tab")
        try:
            _, info = read_checkpoint_metadata(path)
        except CheckpointError as exc:
            return ModelStatus(path=None, trained=False, message=str(exc))
        if not is_trained(info):
            return ModelStatus(path=path, trained=False, info=info,
                               message=f"{path.name} is an untrained model (its info lacks \"trained\": true), so its "
                                       "rankings mean nothing; fine-tune it in the Training tab or choose a trained "
                                       "checkpoint in Settings")
        return ModelStatus(path=path, trained=True, info=info)

    def model_config(self) -> Any:
        """The active model's config (a default config when no checkpoint is readable)."""
        from dvan.config import ModelConfig
        from dvan.model.metadata import read_checkpoint_metadata

        try:
            config, _ = read_checkpoint_metadata(self.model_checkpoint())
            return config
        except CheckpointError:
            return ModelConfig()

    def set_model(self, path: str | Path | None) -> None:
        """Make another checkpoint active (loaded on next use)."""
        with self._bundle_lock:
            self.model_path = Path(path) if path else None
            self._bundle = None
            self._engine = None

    def set_device(self, device: str) -> None:
        """Use another torch device from the next model load on."""
        with self._bundle_lock:
            self.device = device
            self._bundle = None
            self._engine = None

    def set_backbone_weights(self, path: str | Path | None) -> None:
        """Use another VGG16 weights file from the next model load on."""
        with self._bundle_lock:
            self.backbone_weights = Path(path) if path else None
            self._bundle = None
            self._engine = None

    @property
    def model_loaded(self) -> bool:
        """Whether the active model is in memory (searching needs no more loading)."""
        return self._bundle is not None

    def trained_bundle(self) -> Any:
        """The active model, loaded on first use; an untrained one is refused.

        Raises:
            UntrainedModelError: its info lacks ``"trained": true``.
            CheckpointError: no readable checkpoint.
        """
        with self._bundle_lock:
            if self._bundle is None:
                # torch's first use in this process: its threads leave a core to the GUI from the start
                reserve_gui_core()
                from dvan.search.engine import load_search_model

                bundle = load_search_model(self.model_path, device=self.device)
                bundle.backbone_weights = self.backbone_weights
                self._bundle = bundle
            return self._bundle

    def engine(self) -> Any:
        """The search engine over the open library and the active trained model."""
        library = self._require_library()
        bundle = self.trained_bundle()
        with self._bundle_lock:
            if self._engine is None or self._engine.library is not library or self._engine.bundle is not bundle:
                from dvan.search.engine import SearchEngine

                self._engine = SearchEngine(library, bundle)
            return self._engine

    def needs_projection(self) -> bool:
        """Whether the library's projections must be computed for the active model before searching."""
        if self.library is None or not self.model_status().trained:
            return False
        return bool(self.engine().needs_projection)

    def warm_up(self, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> None:
        """Load the model and run its audio front end and image backbone once (on a worker, at start).

        The first spoken query is then answered fast, and an import does not start with the
        backbone's first call, which holds the GIL for a few hundred milliseconds (measured) and
        would stall the GUI. What a spoken query needs comes first: ``progress`` gets a
        ``"model"`` report as soon as the model has encoded a query (the search can start), before
        the backbone loads. Any other model (the image backbone here; models for typed or
        transcribed queries) loads after that report or on its first use, never before it.
        """
        bundle = self.trained_bundle()
        rate = int(bundle.config.audio.sample_rate)
        t = np.arange(rate) / rate
        tone = (0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t) ** 2).astype(np.float32)
        if self.library is not None:
            engine = self.engine()
            query = engine.encode_recording(tone, rate)
            if not engine.needs_projection:
                engine.search(query, top_k=1)  # loads the scoring kernels too
        else:
            from dvan.audio.features import recording_features
            from dvan.search.engine import QUERY_FEATURES

            recording_features(tone, rate, bundle.config.audio, QUERY_FEATURES)
        progress(Progress("model", 1, 1, "model loaded"))
        if cancel is not None:
            cancel.raise_if_cancelled()
        bundle.backbone.features([np.zeros((64, 64, 3), dtype=np.uint8)])

    # -- search --------------------------------------------------------------------------------
    def search_waveform(self, samples: np.ndarray, rate: int, source: str = "microphone",
                        top_k: int = MAX_HITS) -> SearchOutcome:
        """Rank the library's tiles for a recorded query.

        Raises:
            UntrainedModelError: the active model is untrained.
            dvan.errors.AudioError: the recording holds no usable audio.
        """
        engine = self.engine()
        started = time.perf_counter()
        query = engine.encode_recording(samples, int(rate))
        return self._search(engine, query, started, source, top_k)

    def search_file(self, path: str | Path, top_k: int = MAX_HITS) -> SearchOutcome:
        """Rank the library's tiles for a spoken query in an audio file."""
        engine = self.engine()
        started = time.perf_counter()
        return self._search(engine, engine.encode_file(path), started, Path(path).name, top_k)

    def search_text(self, text: str, top_k: int = MAX_HITS) -> SearchOutcome:
        """Rank the library's tiles for typed words (the text branch).

        Raises:
            TextBranchMissingError: the active model has no text branch.
            EmptyQueryError: no words.
        """
        engine = self.engine()
        started = time.perf_counter()
        return self._search(engine, engine.encode_text(text), started, "typed words", top_k)

    def resolved_mode(self) -> str:
        """The mode spoken queries are refined in: the setting, or the model's own choice for "auto"."""
        if self.query_mode != "auto":
            return self.query_mode
        return str(self.engine().default_mode)

    def understand(self, query: tuple[np.ndarray, int] | str | Path, source: str = "microphone",
                   top_k: int = MAX_HITS) -> Heard:
        """Transcribe a spoken query (samples and rate, or a file) and, in text or hybrid mode, rank with the words.

        Runs after the audio branch's ranking is shown, so recognition never delays it.

        Raises:
            ModelPackageMissingError: the speech recogniser is not installed.
        """
        from dvan.query.transcribe import get_recogniser

        started = time.perf_counter()
        engine = self.engine()
        recogniser = get_recogniser(str(engine.bundle.device))
        if isinstance(query, tuple):
            transcript = recogniser.transcribe(query[0], int(query[1]))
        else:
            transcript = recogniser.transcribe_file(query)
        heard_s = time.perf_counter() - started
        mode = self.resolved_mode()
        if mode == "audio" or not transcript.text:
            return Heard(text=transcript.text, seconds=heard_s)
        try:
            if isinstance(query, tuple):
                spoken = engine.encode_recording(query[0], int(query[1]))
            else:
                spoken = engine.encode_file(query)
            refined = self._search(engine, engine.for_mode(mode, spoken, transcript.text), started, source, top_k)
        except TextBranchMissingError as exc:
            return Heard(text=transcript.text, seconds=heard_s, note=str(exc))
        return Heard(text=transcript.text, seconds=heard_s, refined=refined)

    def _search(self, engine: Any, query: Any, started: float, source: str, top_k: int) -> SearchOutcome:
        ranked = engine.search(query, top_k=top_k)
        hits = [Hit(rank=h.rank, tile=self._cached_tile(h.tile), probability=float(h.probability)) for h in ranked]
        return SearchOutcome(hits=hits, seconds=time.perf_counter() - started, source=source,
                             truncated=bool(query.truncated), mode=str(query.mode), text=query.text)

    def _cached_tile(self, tile: Any) -> TileInfo:
        found = self._tiles_by_id.get(int(tile.id)) if self._tiles is not None else None
        return found if found is not None else _tile_info(tile)

    # -- captions (image -> audio) -------------------------------------------------------------
    def rank_captions_for_tile(self, tile_id: int, top_k: int = MAX_CAPTIONS) -> list[RankedCaption]:
        """The library's spoken captions ranked for one of its tiles."""
        return _caption_hits(self.engine().captions(int(tile_id), top_k=top_k))

    def rank_captions_for_image(self, path: str | Path, top_k: int = MAX_CAPTIONS) -> list[RankedCaption]:
        """The library's spoken captions ranked for an image file."""
        return _caption_hits(self.engine().captions(Path(path), top_k=top_k))


    # -- export --------------------------------------------------------------------------------
    def export_hits(self, hits: Sequence[Hit], path: str | Path, query: str, transcript: str | None = None) -> Path:
        """Write ranked hits to a GeoPackage, GeoJSON or CSV file (by its suffix); see :mod:`dvan.search.export`.

        Raises:
            dvan.errors.ExportError: unknown suffix, or the folder is missing or not writable.
        """
        from dvan.search.export import export_results

        return export_results(_records(hits), path, query=query, transcript=transcript)


def is_library(path: str | Path) -> bool:
    """Whether a folder holds a library (its database file)."""
    from dvan.library.store import DB_NAME

    return (Path(path) / DB_NAME).is_file()


def demo_library(path: str | Path | None = None) -> tuple[Path, bool]:
    """The demo library's folder (``path``, else dvan's default place) and whether it is built and complete."""
    from dvan.library.demo import demo_library_path, demo_library_ready

    target = Path(path) if path else demo_library_path()
    return target, demo_library_ready(target)


def footprint_text(hit: Hit, kind: str) -> str | None:
    """A hit's footprint as "wkt" (WGS84), "wkt-source" (its source CRS) or "geojson"; None when not georeferenced."""
    from dvan.search.export import footprint_geojson, footprint_wkt

    record = _records([hit])[0]
    if kind == "geojson":
        return footprint_geojson(record)
    return footprint_wkt(record, source_crs=kind == "wkt-source")


def export_suffixes() -> dict[str, str]:
    """File suffix -> format name of the result exports."""
    from dvan.search.export import EXPORT_FORMATS

    return dict(EXPORT_FORMATS)


def _records(hits: Sequence[Hit]) -> list[Any]:
    from dvan.search.export import ResultRecord

    return [ResultRecord(rank=h.rank, probability=h.probability, tile_id=h.tile.id, source=h.tile.source,
                         window=h.tile.window, crs=h.tile.crs, lonlat_polygon=h.tile.lonlat_polygon) for h in hits]


def _caption_hits(ranked: Sequence[Any]) -> list[RankedCaption]:
    return [RankedCaption(rank=h.rank, probability=float(h.probability), audio=Path(h.caption.audio), text=h.caption.text,
                       key=str(h.caption.id)) for h in ranked]
