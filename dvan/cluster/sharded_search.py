"""Search a mount of shard libraries: every shard scored in parallel, the top-K merged exactly.

Each shard returns its own best K (rows, logits) from the same kernels a single library uses
(:func:`dvan.search.kernels.top_k`), and the driver keeps the best K of their union. That union
holds the global best K, so the merge is exact; ties are broken by shard, then by row, which is
the order a single library holding the shards' tiles one shard after another would break them.

Shards are scored by Ray tasks (``ray_address``: any node that sees the shard folders) or by
local worker processes (the fused kernel is parallel inside one process, and numba's default
threading layer must not be entered from two threads at once, so parallel shards are
processes). The driver encodes the query once and sends only its projection and the scorer's
decision vector, so workers never load the model.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dvan.cluster.mount import is_mount, open_mount
from dvan.errors import LibraryDamagedError, LibraryError
from dvan.library.store import Library
from dvan.progress import CancelToken, ProgressCallback, no_progress
from dvan.search.engine import (
    BBox,
    Query,
    SearchEngine,
    TileHit,
    _sigmoid,
    check_bbox,
    check_top,
)


@dataclass(frozen=True)
class MountedTileHit(TileHit):
    """A ranked tile of a mount, with the shard that holds it (tile ids are per shard)."""

    shard: Path = Path()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**super().to_dict(), "shard": str(self.shard)}


@dataclass(frozen=True)
class ShardTask:
    """What one shard's scorer needs: everything but the model."""

    path: str
    projection: np.ndarray
    direction: np.ndarray
    offset: float
    k: int
    bbox: BBox | None
    sources: tuple[str, ...]
    backend: str
    chunk_rows: int


@dataclass(frozen=True)
class ShardResult:
    """One shard's best k, best first; ``nan`` says how many scores were NaN (then no rows)."""

    rows: np.ndarray
    logits: np.ndarray
    scored: int
    matched_sources: tuple[str, ...]
    nan: str = ""


def shard_candidates(library: Library, bbox: BBox | None, sources: Sequence[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Sorted candidate rows of one shard and the ``sources`` it holds (a source lives in one shard only)."""
    rows = library.live_rows()
    if bbox is not None:
        rows = np.intersect1d(rows, library.rows_in_bbox(*bbox), assume_unique=True)
    matched: tuple[str, ...] = ()
    if sources:
        matched = tuple(s for s in sources if library.source_ids_for(s))
        held = library.rows_of_sources(matched) if matched else np.zeros(0, dtype=np.int64)
        rows = np.intersect1d(rows, held, assume_unique=True)
    return rows, matched


def score_on(library: Library, task: ShardTask) -> ShardResult:
    """Score one open shard."""
    import torch

    from dvan.search.kernels import Decision, default_backend, top_k

    rows, matched = shard_candidates(library, task.bbox, task.sources)
    backend = default_backend(torch.device("cpu"), int(rows.size)) if task.backend == "auto" else task.backend
    try:
        best, logits = top_k(library.gallery(), rows, task.projection, Decision(task.direction, task.offset), task.k,
                             backend=backend, chunk_rows=task.chunk_rows)
    except FloatingPointError as exc:
        return ShardResult(np.zeros(0, np.int64), np.zeros(0, np.float32), int(rows.size), matched, nan=str(exc))
    return ShardResult(best, logits, int(rows.size), matched)


#: Shards a worker process keeps open between queries (memory maps stay warm).
_OPEN: dict[str, Library] = {}


def score_shard(task: ShardTask) -> ShardResult:
    """Score one shard by path, in a worker process (the shard is opened once per process)."""
    library = _OPEN.get(task.path)
    if library is None:
        library = _OPEN[task.path] = Library.open(task.path)
    return score_on(library, task)


def _limit_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


class LocalShards:
    """Scores shards in this process (one worker) or in a pool of local processes."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None
        if self.workers > 1:
            threads = max(1, (os.cpu_count() or 1) // self.workers)
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_limit_threads, initargs=(threads,))

    def map(self, libraries: Sequence[Library], tasks: Sequence[ShardTask]) -> list[ShardResult]:
        """One result per task, in order."""
        if self._pool is None:
            return [score_on(library, task) for library, task in zip(libraries, tasks, strict=True)]
        return list(self._pool.map(score_shard, tasks))

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


class RayShards:
    """Scores each shard in a Ray task (the shard folders must be visible to every node)."""

    def __init__(self, address: str) -> None:
        from dvan.cluster.runtime import connect

        self._ray = connect(address)
        self._remote = self._ray.remote(num_cpus=1)(score_shard)

    def map(self, libraries: Sequence[Library], tasks: Sequence[ShardTask]) -> list[ShardResult]:
        """One result per task, in order."""
        return list(self._ray.get([self._remote.remote(task) for task in tasks]))

    def close(self) -> None:
        """Nothing to stop: the tasks' workers belong to the cluster."""


def merge_top_k(results: Sequence[ShardResult], k: int) -> list[tuple[int, int, float]]:
    """The best ``k`` (shard index, row, logit) of the shards' results, best first, ties by shard then row."""
    if not results:
        return []
    shards = np.concatenate([np.full(r.rows.size, i, dtype=np.int64) for i, r in enumerate(results)])
    rows = np.concatenate([r.rows for r in results]).astype(np.int64)
    logits = np.concatenate([r.logits for r in results]).astype(np.float32)
    order = np.lexsort((rows, shards, -logits))[:k]
    return [(int(shards[i]), int(rows[i]), float(logits[i])) for i in order]


class ShardedSearch:
    """The :class:`dvan.search.engine.SearchEngine` interface over the shards of a mount.

    Args:
        shards: the open shard libraries (see :func:`dvan.cluster.mount.open_mount`).
        bundle: the model (it must use the shards' backbone).
        backend: scoring backend of each shard ("auto", "numba", "torch").
        ray_address: score the shards on this Ray cluster; None: local processes.
        workers: local processes (default: one per shard, at most one per CPU); 1 scores here.

    Raises:
        BackboneMismatchError: the model's backbone is not the shards'.
        ClusterMissingError: ``ray_address`` given without Ray installed.
    """

    def __init__(self, shards: Sequence[Library], bundle: Any, backend: str = "auto", ray_address: str | None = None,
                 workers: int | None = None) -> None:
        self.shards = list(shards)
        self.engines = [SearchEngine(library, bundle, backend=backend) for library in self.shards]
        self.first = self.engines[0]
        self.bundle = bundle
        self.backend = backend
        self.runner: LocalShards | RayShards
        if ray_address is not None:
            self.runner = RayShards(ray_address)
        else:
            self.runner = LocalShards(workers if workers is not None else min(len(self.shards), os.cpu_count() or 1))

    def close(self) -> None:
        """Stop local worker processes (the shards stay open: their owner closes them)."""
        self.runner.close()

    # -- the SearchEngine surface the command line and app use --------------------------------------

    @property
    def trained(self) -> bool:
        """Whether the model is marked trained."""
        return self.first.trained

    @property
    def needs_projection(self) -> bool:
        """Whether some shard lacks this model's projections."""
        return any(engine.needs_projection for engine in self.engines)

    def prepare(self, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> bool:
        """Compute missing projections shard by shard; returns whether any were computed."""
        did = False
        for engine in self.engines:
            did = engine.prepare(progress, cancel) or did
        return did

    @property
    def has_text_branch(self) -> bool:
        """Whether the model can search by text."""
        return self.first.has_text_branch

    @property
    def default_mode(self) -> str:
        """The model's own query mode."""
        return self.first.default_mode

    def encode_file(self, path: str | Path) -> Query:
        """See :meth:`SearchEngine.encode_file`."""
        return self.first.encode_file(path)

    def encode_recording(self, samples: np.ndarray, sample_rate: int) -> Query:
        """See :meth:`SearchEngine.encode_recording`."""
        return self.first.encode_recording(samples, sample_rate)

    def encode_text(self, text: str) -> Query:
        """See :meth:`SearchEngine.encode_text`."""
        return self.first.encode_text(text)

    def for_mode(self, mode: str, spoken: Query | None, text: str | None) -> Query:
        """See :meth:`SearchEngine.for_mode`."""
        return self.first.for_mode(mode, spoken, text)

    def candidates(self, bbox: BBox | None = None, sources: Sequence[str | Path] | None = None) -> np.ndarray:
        """Candidate rows of every shard, concatenated (their count is what a search scores)."""
        names = tuple(str(s) for s in sources or ())
        return np.concatenate([shard_candidates(library, bbox, names)[0] for library in self.shards])

    def search(self, query: Query | str | Path, top_k: int = 10, bbox: BBox | None = None,
               sources: Sequence[str | Path] | None = None, cancel: CancelToken | None = None) -> list[MountedTileHit]:
        """The ``top_k`` tiles of all shards most likely to match the query, best first.

        Raises:
            LibraryError: a shard's projections are not for this model (call :meth:`prepare`), or a
                ``sources`` path is in no shard.
            LibraryDamagedError: a shard's projections hold NaN (names the shard).
        """
        check_top(top_k)
        if bbox is not None:
            check_bbox(bbox)
        if not isinstance(query, Query):
            query = self.encode_file(query)
        self.first._require_finite(query.projection)
        for engine in self.engines:
            if engine.needs_projection:
                raise LibraryError(f"{engine.library.path}: gallery projections are not for this model yet; run "
                                   f"'dvan library reproject {engine.library.path} --model CKPT' (ShardedSearch.prepare)")
        if cancel is not None:
            cancel.raise_if_cancelled()
        names = tuple(str(Path(s).expanduser().resolve()) for s in sources or ())
        decision = self.first.decision
        tasks = [ShardTask(str(library.path), np.asarray(query.projection, dtype=np.float32), decision.direction,
                           decision.offset, top_k, bbox, names, self.backend, self.first.chunk_rows)
                 for library in self.shards]
        results = self.runner.map(self.shards, tasks)
        for library, result in zip(self.shards, results, strict=True):
            if result.nan:
                raise LibraryDamagedError(f"{library.path}: {result.nan} (NaN in the stored gallery projections); no "
                                          f"ranking is shown; run 'dvan library check {library.path} --repair'")
        held = {s for r in results for s in r.matched_sources}
        for name in names:
            if name not in held:
                raise LibraryError(f"{name}: not a source of any shard of the mount; see 'dvan library info SHARD "
                                   "--sources'")
        merged = merge_top_k(results, top_k)
        hits = []
        for rank, (shard, row, logit) in enumerate(merged):
            tile = self.shards[shard].tiles_at_rows([row])[0]
            hits.append(MountedTileHit(rank + 1, _sigmoid(logit), logit, tile, shard=self.shards[shard].path))
        return hits


@contextlib.contextmanager
def open_search(path: str | Path, bundle: Any, backend: str = "auto", ray_address: str | None = None,
                workers: int | None = None) -> Iterator[SearchEngine | ShardedSearch]:
    """A search engine over a library folder, or over every shard of a mount file.

    Raises:
        MountError, LibraryError: see :func:`dvan.cluster.mount.open_mount` and :meth:`Library.open`.
        ClusterMissingError: ``ray_address`` given for a mount without Ray installed.
    """
    if not is_mount(path):
        with Library.open(path) as library:
            yield SearchEngine(library, bundle, backend=backend)
        return
    shards = open_mount(path)
    engine: ShardedSearch | None = None
    try:
        engine = ShardedSearch(shards, bundle, backend=backend, ray_address=ray_address, workers=workers)
        yield engine
    finally:
        if engine is not None:
            engine.close()
        for library in shards:
            library.close()
