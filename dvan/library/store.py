"""The tile library on disk: SQLite metadata plus memory-mappable feature arrays.

A library is a folder::

    library.sqlite        metadata (WAL journal): sources, tiles, spoken captions, settings
    backbone.f16          backbone features V_I, float16, one row per tile (row = tiles.row)
    gallery-<key>.f16     gallery projections G = W_I V_I + b of the active model (or .f32)
    captions-<key>.f32    query projections q = W_S V_S of the spoken captions
    thumbs.bin            JPEG thumbnails, packed; tiles.thumb_offset/thumb_size point into it
    .lock                 held by the one process writing (import, remove, reproject)

Crash safety: arrays are only ever written past the committed row count that SQLite records
(``meta.next_row``, ``meta.thumbs_end``); the data files are flushed to disk first, then one
SQLite transaction inserts the tiles and moves the committed counts. A kill at any point leaves
either the whole batch or none of it; bytes past the committed counts are overwritten by the next
import. Removed tiles leave unused rows behind ("holes"); they are never scored.

A :class:`Library` object may be shared between threads (its SQLite connection is guarded by
a lock); any number of processes may read while one writes.

Damage (a file shorter than recorded, or missing) is refused on open and before any write, and
``dvan library check`` finds and repairs the rest (see :mod:`dvan.library.integrity`). A library
on a read-only folder or mount opens read-only (SQLite ``mode=ro``, or ``immutable`` when not even
its lock files can be made): info and search work, writes say it is read-only.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dvan.config import BACKBONE_DIMS
from dvan.errors import BackboneMismatchError, DiskFullError, LibraryError, ReadOnlyLibraryError
from dvan.library.files import (
    DISK_FULL,
    RowFile,
    block_digests,
    connect_read_only,
    disk_is_full,
    pwrite_all,
    writable,
)
from dvan.library.raster import TileWindow
from dvan.library.records import Caption, NewTile, SourceRecord, Tile

__all__ = ["Caption", "Library", "NewTile", "RowFile", "SourceRecord", "Tile"]

LIBRARY_FORMAT = 1
DB_NAME = "library.sqlite"
BACKBONE_FILE = "backbone.f16"
THUMBS_FILE = "thumbs.bin"
LOCK_FILE = ".lock"
GALLERY_DTYPES = {"float16": ("f16", np.float16), "float32": ("f32", np.float32)}

_DIGESTS_TABLE = ("CREATE TABLE IF NOT EXISTS digests (file TEXT NOT NULL, block INTEGER NOT NULL, rows INTEGER "
                  "NOT NULL, digest TEXT NOT NULL, PRIMARY KEY (file, block))")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS sources (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    hash TEXT NOT NULL,
    status TEXT NOT NULL,              -- 'importing' until every tile is committed, then 'complete'
    tile_size INTEGER NOT NULL,
    overlap INTEGER NOT NULL,
    windows INTEGER NOT NULL,          -- windows cut (tiles + all-nodata windows skipped)
    tiles INTEGER NOT NULL DEFAULT 0,  -- tiles committed
    skipped_nodata INTEGER NOT NULL DEFAULT 0,
    width INTEGER, height INTEGER, band_count INTEGER, dtype TEXT,
    crs TEXT, raster TEXT,             -- raster: JSON of RasterSource.describe()
    added REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tiles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    row INTEGER NOT NULL UNIQUE,
    source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    col_off INTEGER NOT NULL, row_off INTEGER NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    pixel_w REAL, pixel_h REAL,
    minx REAL, miny REAL, maxx REAL, maxy REAL,
    west REAL, south REAL, east REAL, north REAL,
    footprint TEXT,
    valid_fraction REAL NOT NULL,
    thumb_offset INTEGER NOT NULL, thumb_size INTEGER NOT NULL,
    UNIQUE (source_id, col_off, row_off, width, height)
);
CREATE INDEX IF NOT EXISTS tiles_by_source ON tiles (source_id);
CREATE VIRTUAL TABLE IF NOT EXISTS tiles_lonlat USING rtree (id, west, east, south, north);
CREATE TABLE IF NOT EXISTS captions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    row INTEGER NOT NULL UNIQUE,
    audio TEXT NOT NULL,
    image TEXT NOT NULL,
    label TEXT, split TEXT, text TEXT, speaker TEXT,
    audio_size INTEGER NOT NULL, audio_mtime_ns INTEGER NOT NULL,
    UNIQUE (audio, image)
);
""" + _DIGESTS_TABLE + ";\n"  # per-block digests of the array files (dvan.library.integrity)


def _tuple4(values: Sequence[Any]) -> tuple[float, float, float, float] | None:
    if any(v is None for v in values):
        return None
    return (float(values[0]), float(values[1]), float(values[2]), float(values[3]))


class Library:
    """An open tile library. Create with :meth:`create`, open with :meth:`open`."""

    def __init__(self, path: Path, connection: sqlite3.Connection, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._db = connection
        self._lock = threading.RLock()
        self._live_cache: tuple[int, np.ndarray] | None = None
        self._maps: dict[str, tuple[tuple[Path, int, int], np.ndarray]] = {}
        self._writer_depth = 0
        self._lock_fd: int | None = None

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path, backbone: str = "efficientnet-lite0", gallery_dtype: str = "float16",
               tile_size: int = 256, overlap: int = 0) -> Library:
        """Make a new, empty library folder.

        Args:
            path: folder to create (may exist if empty).
            backbone: image backbone whose features the library stores.
            gallery_dtype: "float16" (half the disk and memory; probabilities within about 1e-3
                of float32) or "float32" (exactly the full fusion's numbers).
            tile_size: default tile size in pixels for imports.
            overlap: default overlap between neighbouring tiles in pixels.

        Raises:
            LibraryError: the folder exists and is not empty, or an argument is invalid.
        """
        path = Path(path)
        if backbone not in BACKBONE_DIMS:
            raise LibraryError(f"unknown backbone {backbone!r}; use one of {sorted(BACKBONE_DIMS)}")
        if gallery_dtype not in GALLERY_DTYPES:
            raise LibraryError(f"unknown gallery dtype {gallery_dtype!r}; use float16 or float32")
        if tile_size < 16 or not 0 <= overlap < tile_size:
            raise LibraryError(f"tile size {tile_size} / overlap {overlap} invalid: tile size >= 16 and "
                               "0 <= overlap < tile size")
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            if (path / DB_NAME).exists():
                raise LibraryError(f"{path}: a library already exists there; add to it with 'dvan library add'")
            raise LibraryError(f"{path}: exists and is not an empty folder; choose a new folder for the library")
        path.mkdir(parents=True, exist_ok=True)
        connection = cls._connect(path / DB_NAME)
        with connection:
            connection.executescript(_SCHEMA)
            settings = {"format": LIBRARY_FORMAT, "backbone": backbone, "backbone_dim": BACKBONE_DIMS[backbone],
                        "gallery_dtype": gallery_dtype, "tile_size": tile_size, "overlap": overlap,
                        "next_row": 0, "thumbs_end": 0, "next_caption_row": 0, "generation": 0,
                        "gallery_key": "", "gallery_dim": 0, "gallery_rows": 0, "gallery_model": "",
                        "captions_key": "", "captions_dim": 0, "captions_model": "", "created": time.time()}
            connection.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                                   [(k, json.dumps(v)) for k, v in settings.items()])
        return cls(path, connection)

    @classmethod
    def open(cls, path: str | Path, verify: bool = True) -> Library:
        """Open an existing library (read-only when its folder cannot be written).

        Args:
            path: the library folder.
            verify: refuse a library whose array files are shorter than recorded or missing
                (``dvan library check`` opens without, to report and repair them).

        Raises:
            LibraryDamagedError: a file is damaged (names it and the repair command).
            LibraryError: no library there, or one written by another dvan version.
        """
        path = Path(path)
        database = path / DB_NAME
        if not database.is_file():
            raise LibraryError(f"{path}: no library here (no {DB_NAME}); create one with 'dvan library create {path}'")
        read_only = not writable(path, database)
        try:
            connection = cls._connect(database, read_only)
            rows = dict(connection.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            if disk_is_full(path):  # SQLite cannot make its shared-memory file: not damage
                raise DiskFullError(f"{path}: disk full: SQLite cannot open the library ({exc}); nothing saved is "
                                    "lost: free some space and run the command again") from exc
            raise LibraryError(f"{database}: unreadable library database ({exc}); restore it from a backup or "
                               "create a new library") from exc
        version = json.loads(rows.get("format", "null"))
        if version != LIBRARY_FORMAT:
            raise LibraryError(f"{path}: library format {version}, this dvan reads {LIBRARY_FORMAT}; create a new "
                               "library and add the sources again")
        library = cls(path, connection, read_only)
        if verify:
            from dvan.library.integrity import require_intact

            try:
                require_intact(library)
            except LibraryError:
                library.close()
                raise
        return library

    @staticmethod
    def _connect(database: Path, read_only: bool = False) -> sqlite3.Connection:
        if read_only:
            return connect_read_only(database)
        connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False, timeout=30.0)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA foreign_keys=ON")
        return connection

    def sql(self, query: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only SQL query (for checks and reports)."""
        with self._lock:
            return self._db.execute(query, parameters).fetchall()

    def close(self) -> None:
        """Close the database and drop the memory maps (the object is unusable afterwards)."""
        with self._lock:
            self._maps.clear()
            self._live_cache = None
            self._db.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- settings ------------------------------------------------------------------------------

    def meta(self, key: str) -> Any:
        """One stored setting (see :meth:`create`)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def _set_meta(self, values: dict[str, Any]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                             [(k, json.dumps(v)) for k, v in values.items()])

    @property
    def backbone_name(self) -> str:
        """The backbone whose features the library stores."""
        return str(self.meta("backbone"))

    @property
    def backbone_dim(self) -> int:
        """Width of the stored backbone features."""
        return int(self.meta("backbone_dim"))

    @property
    def next_row(self) -> int:
        """Committed rows of the feature arrays (live tiles and holes)."""
        return int(self.meta("next_row"))

    def check_backbone(self, backbone: str, model_name: str = "the model") -> None:
        """Refuse a model whose backbone differs from the library's.

        Raises:
            BackboneMismatchError: with the command that re-indexes the library.
        """
        if backbone != self.backbone_name:
            raise BackboneMismatchError(
                f"{self.path}: the library holds {self.backbone_name} features but {model_name} uses {backbone}; "
                f"re-index it (re-reads every raster): dvan library reindex {self.path} --backbone {backbone}"
            )

    # -- writing -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def writer(self, verify: bool = True) -> Iterator[None]:
        """Hold the library's write lock (one writing process at a time; re-entrant in this object).

        Args:
            verify: refuse to write to a damaged library (a file shorter than recorded, or
                missing): writing past a short file would fill the gap with zeros. Only the
                repair itself writes without.

        Raises:
            ReadOnlyLibraryError: the library's folder or files cannot be written.
            LibraryDamagedError: the library is damaged; names the file and the repair command.
            DiskFullError: the disk filled up inside the block (what was committed stays).
            LibraryError: another process is writing to the library.
        """
        with self._lock:
            if self._writer_depth == 0:
                if self.read_only:
                    raise ReadOnlyLibraryError(self._read_only_message())
                try:
                    fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
                except OSError as exc:
                    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                        raise ReadOnlyLibraryError(self._read_only_message()) from exc
                    raise
                try:
                    import fcntl

                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except ImportError:  # no advisory locks (Windows): single-writer by convention
                    pass
                except OSError as exc:
                    os.close(fd)
                    raise LibraryError(f"{self.path}: another dvan process is writing to this library "
                                       "(import, remove or reproject); wait for it to finish") from exc
                self._lock_fd = fd
                try:
                    self._db.execute(_DIGESTS_TABLE)  # libraries made before digests were kept
                    self._recover()
                    if verify:
                        from dvan.library.integrity import require_intact

                        require_intact(self)
                except BaseException:
                    os.close(fd)
                    self._lock_fd = None
                    raise
            self._writer_depth += 1
        try:
            yield
        except OSError as exc:
            if exc.errno in DISK_FULL:
                raise DiskFullError(self._disk_full_message(exc)) from exc
            raise
        except sqlite3.OperationalError as exc:
            if "full" in str(exc):
                raise DiskFullError(self._disk_full_message(exc)) from exc
            raise
        finally:
            with self._lock:
                self._writer_depth -= 1
                if self._writer_depth == 0 and self._lock_fd is not None:
                    os.close(self._lock_fd)  # closing releases the flock
                    self._lock_fd = None

    def _read_only_message(self) -> str:
        return (f"{self.path}: the library is read-only (its folder or files cannot be written); it can be "
                "searched with the projections it holds, but changing it needs a writable copy: copy the folder "
                "somewhere writable and use that")

    def _disk_full_message(self, exc: BaseException) -> str:
        reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else str(exc)
        return (f"{self.path}: disk full ({reason}); nothing saved before is lost (the last batch was not "
                "committed): free some space and run the same command again to go on where it stopped")

    def _require_writer(self) -> None:
        if self._writer_depth == 0:
            raise RuntimeError("library writes must happen inside 'with library.writer():'")

    def _recover(self) -> None:
        """Drop bytes past the committed counts and stale projection files (after a crash)."""
        next_row = self.next_row
        self.backbone_file().truncate(next_row)
        gallery = self.gallery_file()
        if gallery is not None:
            gallery.truncate(int(self.meta("gallery_rows")))
        captions = self.captions_file()
        if captions is not None:
            captions.truncate(int(self.meta("next_caption_row")))
        thumbs = self.path / THUMBS_FILE
        end = int(self.meta("thumbs_end"))
        if thumbs.exists() and thumbs.stat().st_size > end:
            os.truncate(thumbs, end)
        keep = {f.path.name for f in (gallery, captions) if f is not None}
        for stale in list(self.path.glob("gallery-*")) + list(self.path.glob("captions-*")):
            if stale.name not in keep:
                stale.unlink(missing_ok=True)

    def begin_source(self, path: Path, size: int, mtime_ns: int, digest: str, tile_size: int, overlap: int,
                     windows: int, raster: dict[str, Any]) -> int:
        """Register a source about to be imported (status 'importing'); returns its id."""
        self._require_writer()
        with self._lock, self._transaction():
            cursor = self._db.execute(
                "INSERT INTO sources (path, size, mtime_ns, hash, status, tile_size, overlap, windows, width, height,"
                " band_count, dtype, crs, raster, added) VALUES (?, ?, ?, ?, 'importing', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (str(path), size, mtime_ns, digest, tile_size, overlap, windows, raster["width"], raster["height"],
                 raster["count"], raster["dtype"], raster["crs"], json.dumps(raster), time.time()))
            assert cursor.lastrowid is not None
            return int(cursor.lastrowid)

    def touch_source(self, source_id: int, mtime_ns: int) -> None:
        """Record a new modification time for a source whose bytes did not change."""
        self._require_writer()
        with self._lock, self._transaction():
            self._db.execute("UPDATE sources SET mtime_ns = ? WHERE id = ?", (mtime_ns, source_id))

    def commit_tiles(self, tiles: Sequence[NewTile], features: np.ndarray, gallery: np.ndarray | None,
                     finished: dict[int, int] | None = None) -> list[int]:
        """Append tiles with their backbone features (and gallery projections) atomically.

        Args:
            tiles: the tiles, in the order of the feature rows.
            features: (n, backbone_dim) backbone features (stored as float16).
            gallery: (n, gallery_dim) projections for the active gallery key, or None when the
                library has no gallery yet or it lags behind (then it is caught up later).
            finished: source id -> windows skipped as all-nodata, for sources whose last window
                is in this batch; they are marked complete in the same transaction.

        Returns:
            The new tiles' ids.
        """
        self._require_writer()
        with self._lock:
            start = self.next_row
            count = len(tiles)
            thumbs_end = int(self.meta("thumbs_end"))
            gallery_rows = int(self.meta("gallery_rows"))
            write_gallery = gallery is not None and gallery_rows == start and bool(self.meta("gallery_key"))
            gallery_file = self.gallery_file() if write_gallery else None
            if count:
                # the row files first, synced: the transaction below only ever points at durable rows
                self._write_tile_rows(start, tiles, features, gallery, gallery_file, thumbs_end)
            digests = self._digests_of(self.backbone_file(), start, start + count)
            if gallery_file is not None:
                digests += self._digests_of(gallery_file, start, start + count)
            with self._transaction():
                self._record_digests(digests)
                ids, offset = self._insert_tiles(start, tiles, thumbs_end)
                self._count_source_tiles(tiles, finished or {})
                updates: dict[str, Any] = {"next_row": start + count, "thumbs_end": offset,
                                           "generation": int(self.meta("generation")) + 1}
                if gallery_file is not None:
                    updates["gallery_rows"] = start + count
                self._set_meta(updates)
            return ids

    def _write_tile_rows(self, start: int, tiles: Sequence[NewTile], features: np.ndarray, gallery: np.ndarray | None,
                         gallery_file: RowFile | None, thumbs_end: int) -> None:
        """Write and fsync the new tiles' feature rows, gallery rows (when ``gallery_file`` is given) and thumbnails."""
        self.backbone_file().write(start, features.astype(np.float16))
        if gallery_file is not None and gallery is not None:
            gallery_file.write(start, gallery)
        fd = os.open(self.path / THUMBS_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            pwrite_all(fd, b"".join(t.thumbnail for t in tiles), thumbs_end)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.backbone_file().sync()
        if gallery_file is not None:
            gallery_file.sync()

    def _insert_tiles(self, start: int, tiles: Sequence[NewTile], thumbs_end: int) -> tuple[list[int], int]:
        """Insert the tiles' records (inside the caller's transaction); their ids and the new thumbnails end."""
        ids: list[int] = []
        offset = thumbs_end
        for index, tile in enumerate(tiles):
            lonlat = tile.lonlat_bounds or (None, None, None, None)
            bounds = tile.bounds or (None, None, None, None)
            pixel = tile.pixel_size or (None, None)
            cursor = self._db.execute(
                "INSERT INTO tiles (row, source_id, col_off, row_off, width, height, pixel_w, pixel_h, minx,"
                " miny, maxx, maxy, west, south, east, north, footprint, valid_fraction, thumb_offset,"
                " thumb_size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (start + index, tile.source_id, *tile.window.as_tuple(), *pixel, *bounds, *lonlat,
                 tile.footprint, tile.valid_fraction, offset, len(tile.thumbnail)))
            assert cursor.lastrowid is not None
            ids.append(int(cursor.lastrowid))
            if tile.lonlat_bounds is not None:
                west, south, east, north = tile.lonlat_bounds
                self._db.execute("INSERT INTO tiles_lonlat (id, west, east, south, north) VALUES (?, ?, ?, ?, ?)",
                                 (cursor.lastrowid, west, east, south, north))
            offset += len(tile.thumbnail)
        return ids, offset

    def _count_source_tiles(self, tiles: Sequence[NewTile], finished: dict[int, int]) -> None:
        """Add the tiles to their sources' counts; mark finished sources complete (inside the caller's transaction)."""
        per_source: dict[int, int] = {}
        for tile in tiles:
            per_source[tile.source_id] = per_source.get(tile.source_id, 0) + 1
        for source_id, added in per_source.items():
            self._db.execute("UPDATE sources SET tiles = tiles + ? WHERE id = ?", (added, source_id))
        for source_id, skipped in finished.items():
            self._db.execute("UPDATE sources SET status = 'complete', skipped_nodata = ? WHERE id = ?",
                             (skipped, source_id))

    def delete_sources(self, source_ids: Iterable[int]) -> int:
        """Remove sources and their tiles (their rows become unused holes); returns tiles removed."""
        self._require_writer()
        removed = 0
        with self._lock, self._transaction():
            for source_id in source_ids:
                removed += self._db.execute("SELECT COUNT(*) FROM tiles WHERE source_id = ?", (source_id,)).fetchone()[0]
                self._db.execute("DELETE FROM tiles_lonlat WHERE id IN (SELECT id FROM tiles WHERE source_id = ?)",
                                 (source_id,))
                self._db.execute("DELETE FROM tiles WHERE source_id = ?", (source_id,))
                self._db.execute("DELETE FROM sources WHERE id = ?", (source_id,))
            self._set_meta({"generation": int(self.meta("generation")) + 1})
        return removed

    def reset_backbone(self, backbone: str) -> list[Path]:
        """Forget every tile and source and switch to another backbone (before re-importing).

        The source list is kept in the library until :meth:`finish_reindex`, so a re-index that
        is interrupted can be run again without losing the list.

        Returns:
            The source paths that were in the library, to import again.
        """
        self._require_writer()
        if backbone not in BACKBONE_DIMS:
            raise LibraryError(f"unknown backbone {backbone!r}; use one of {sorted(BACKBONE_DIMS)}")
        with self._lock:
            paths = [Path(p) for (p,) in self._db.execute("SELECT path FROM sources ORDER BY id")]
            pending = [Path(p) for p in (self.meta("reindex_pending") or [])]
            paths = list(dict.fromkeys(pending + paths))
            with self._transaction():
                self._db.execute("DELETE FROM tiles_lonlat")
                self._db.execute("DELETE FROM tiles")
                self._db.execute("DELETE FROM sources")
                self._db.execute("DELETE FROM digests")
                self._set_meta({"backbone": backbone, "backbone_dim": BACKBONE_DIMS[backbone], "next_row": 0,
                                "thumbs_end": 0, "gallery_key": "", "gallery_dim": 0, "gallery_rows": 0,
                                "gallery_model": "", "generation": int(self.meta("generation")) + 1,
                                "reindex_pending": [str(p) for p in paths]})
            # unlink (never truncate) mapped files: other processes may still read their old mapping
            (self.path / BACKBONE_FILE).unlink(missing_ok=True)
            self._recover()
        return paths

    def finish_reindex(self) -> None:
        """Forget the source list kept by :meth:`reset_backbone` (every source was imported again)."""
        self._require_writer()
        with self._lock, self._transaction():
            self._set_meta({"reindex_pending": []})

    # -- digests (checked by dvan.library.integrity) --------------------------------------------------

    @staticmethod
    def _digests_of(target: RowFile, start: int, end: int) -> list[tuple[str, int, int, str]]:
        """Digests of the blocks holding rows [start, end) of a file just written (read before the commit)."""
        return [(target.path.name, *found) for found in block_digests(target, start, end)]

    def _record_digests(self, digests: Sequence[tuple[str, int, int, str]]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO digests (file, block, rows, digest) VALUES (?, ?, ?, ?)",
                             digests)

    def _forget_digests(self, *names: str | None) -> None:
        for name in names:
            if name is not None:
                self._db.execute("DELETE FROM digests WHERE file = ?", (name,))

    def digests(self, name: str) -> dict[int, tuple[int, str]]:
        """Recorded digests of a library file: block -> (rows, digest); empty if none were kept."""
        try:
            rows = self.sql("SELECT block, rows, digest FROM digests WHERE file = ?", (name,))
        except sqlite3.OperationalError:  # a library made before digests were kept, opened read-only
            return {}
        return {int(block): (int(count), str(digest)) for block, count, digest in rows}

    def redigest(self, target: RowFile, rows: int) -> None:
        """Digest a file's first ``rows`` rows afresh (after a repair made its damaged rows unused holes)."""
        self._require_writer()
        digests = self._digests_of(target, 0, rows)
        with self._lock, self._transaction():
            self._forget_digests(target.path.name)
            self._record_digests(digests)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- projections -----------------------------------------------------------------------------

    def backbone_file(self) -> RowFile:
        """The backbone feature array file."""
        return RowFile(self.path / BACKBONE_FILE, self.backbone_dim, np.float16)

    def gallery_file(self, key: str | None = None, dim: int | None = None) -> RowFile | None:
        """The gallery projection file for ``key`` (default: the active one; None if there is none)."""
        key = key if key is not None else str(self.meta("gallery_key"))
        if not key:
            return None
        suffix, dtype = GALLERY_DTYPES[str(self.meta("gallery_dtype"))]
        return RowFile(self.path / f"gallery-{key}.{suffix}", int(dim or self.meta("gallery_dim")), dtype)

    def captions_file(self, key: str | None = None, dim: int | None = None) -> RowFile | None:
        """The caption query projection file for ``key`` (default: the active one)."""
        key = key if key is not None else str(self.meta("captions_key"))
        if not key:
            return None
        return RowFile(self.path / f"captions-{key}.f32", int(dim or self.meta("captions_dim")), np.float32)

    def activate_gallery(self, key: str, dim: int, rows: int, model: str) -> None:
        """Make a fully written gallery file the active one (after flushing it)."""
        self._require_writer()
        target = self.gallery_file(key, dim)
        assert target is not None
        target.sync()
        digests = self._digests_of(target, 0, rows)
        with self._lock:
            old = self.gallery_file()
            with self._transaction():
                self._forget_digests(target.path.name, old.path.name if old is not None else None)
                self._record_digests(digests)
                self._set_meta({"gallery_key": key, "gallery_dim": dim, "gallery_rows": rows, "gallery_model": model})
            if old is not None and old.path != target.path:
                old.path.unlink(missing_ok=True)

    def set_gallery_rows(self, rows: int) -> None:
        """Record that the active gallery file now covers ``rows`` rows (after flushing it)."""
        self._require_writer()
        gallery = self.gallery_file()
        assert gallery is not None
        gallery.sync()
        with self._lock:
            digests = self._digests_of(gallery, int(self.meta("gallery_rows")), rows)
            with self._transaction():
                self._record_digests(digests)
                self._set_meta({"gallery_rows": rows})

    def gallery_state(self) -> tuple[str, int, int]:
        """(active gallery key, rows it covers, committed rows)."""
        with self._lock:
            return str(self.meta("gallery_key")), int(self.meta("gallery_rows")), self.next_row

    def gallery(self) -> np.ndarray:
        """Read-only memory map (next_row, d4) of the active gallery projections.

        Raises:
            LibraryError: there is no up-to-date gallery (see SearchEngine.prepare).
        """
        key, rows, next_row = self.gallery_state()
        gallery = self.gallery_file()
        if gallery is None or rows != next_row:
            raise LibraryError(f"{self.path}: gallery projections are missing or behind the tiles; run "
                               f"'dvan library reproject {self.path} --model CKPT'")
        return self._mapped(gallery, rows)

    def backbone_features(self) -> np.ndarray:
        """Read-only memory map (next_row, backbone_dim) float16 of the backbone features."""
        return self._mapped(self.backbone_file(), self.next_row)

    def backbone_features_unchecked(self, rows: int) -> np.ndarray:
        """Memory map of the first ``rows`` feature rows the file holds (for checks of a damaged library)."""
        return self.backbone_file().view(rows)

    # -- repairs (dvan.library.integrity) ----------------------------------------------------------

    def drop_projections(self, kind: str) -> None:
        """Forget the active "gallery" or "captions" projections (recomputed on the next search/reproject)."""
        self._require_writer()
        target = self.gallery_file() if kind == "gallery" else self.captions_file()
        with self._lock, self._transaction():
            self._forget_digests(target.path.name if target is not None else None)
            if kind == "gallery":
                self._set_meta({"gallery_key": "", "gallery_dim": 0, "gallery_rows": 0, "gallery_model": ""})
            else:
                self._set_meta({"captions_key": "", "captions_model": ""})
        if target is not None:
            target.path.unlink(missing_ok=True)
        self._maps.clear()

    def sources_of_rows(self, rows: Sequence[int]) -> list[SourceRecord]:
        """The sources of the tiles at the given feature rows."""
        ids: set[int] = set()
        with self._lock:
            for start in range(0, len(rows), 500):
                chunk = [int(r) for r in rows[start:start + 500]]
                marks = ",".join("?" * len(chunk))
                ids.update(i for (i,) in self._db.execute(f"SELECT DISTINCT source_id FROM tiles WHERE row IN ({marks})",
                                                         chunk))
        return [s for s in self.sources() if s.id in ids]

    def pad_to_records(self) -> None:
        """Extend short array and thumbnail files with zeros to their recorded length (after their tiles
        were removed, so the zero rows are unused holes)."""
        from dvan.library.integrity import pad_file

        self._require_writer()
        pad_file(self.backbone_file().path, self.next_row * self.backbone_file().row_bytes)
        pad_file(self.path / THUMBS_FILE, int(self.meta("thumbs_end")))
        self._maps.clear()

    def _mapped(self, target: RowFile, rows: int) -> np.ndarray:
        """A memory map kept open between calls: re-mapping would fault every page in again per query."""
        with self._lock:
            stamp = (target.path, rows, target.path.stat().st_ino if target.path.exists() else 0)
            cached = self._maps.get(target.path.name)
            if cached is None or cached[0] != stamp:
                cached = (stamp, target.view(rows))
                self._maps[target.path.name] = cached
            return cached[1]

    # -- reading tiles ---------------------------------------------------------------------------

    def live_rows(self) -> np.ndarray:
        """Sorted int64 rows of every tile in the library (cached until the library changes)."""
        with self._lock:
            generation = int(self.meta("generation"))
            if self._live_cache is not None and self._live_cache[0] == generation:
                return self._live_cache[1]
            count = self._db.execute("SELECT COUNT(*) FROM tiles").fetchone()[0]
            next_row = self.next_row
            if count == next_row:  # no holes: every committed row is a live tile
                rows = np.arange(next_row, dtype=np.int64)
            else:
                rows = np.fromiter((r for (r,) in self._db.execute("SELECT row FROM tiles ORDER BY row")),
                                   dtype=np.int64, count=count)
            self._live_cache = (generation, rows)
            return rows

    def rows_in_bbox(self, west: float, south: float, east: float, north: float) -> np.ndarray:
        """Sorted rows of tiles whose WGS84 footprint intersects the box (west > east crosses 180°)."""
        boxes = [(west, south, east, north)] if west <= east else [(west, south, 180.0, north),
                                                                   (-180.0, south, east, north)]
        parts = []
        with self._lock:
            for w, s, e, n in boxes:
                cursor = self._db.execute(
                    "SELECT t.row FROM tiles_lonlat AS r JOIN tiles AS t ON t.id = r.id WHERE r.east >= ? AND "
                    "r.west <= ? AND r.north >= ? AND r.south <= ? AND t.east >= ? AND t.west <= ? AND t.north >= ? "
                    "AND t.south <= ?", (w, e, s, n, w, e, s, n))
                parts.append(np.fromiter((r for (r,) in cursor), dtype=np.int64))
        return np.unique(np.concatenate(parts))

    def rows_of_sources(self, paths: Iterable[str | Path]) -> np.ndarray:
        """Sorted rows of the tiles cut from the given files (or from files under given folders).

        Raises:
            LibraryError: a path matches no source of the library.
        """
        rows: set[int] = set()
        with self._lock:
            for path in paths:
                ids = self._source_ids_for(Path(path))
                if not ids:
                    raise LibraryError(f"{path}: not a source of library {self.path}; see 'dvan library info'")
                for source_id in ids:
                    rows.update(r for (r,) in self._db.execute("SELECT row FROM tiles WHERE source_id = ?",
                                                               (source_id,)))
        return np.array(sorted(rows), dtype=np.int64)

    def _source_ids_for(self, path: Path) -> list[int]:
        resolved = str(path.expanduser().resolve())
        exact = self._db.execute("SELECT id FROM sources WHERE path = ?", (resolved,)).fetchall()
        if exact:
            return [exact[0][0]]
        prefix = resolved.rstrip(os.sep) + os.sep
        under = self._db.execute("SELECT id, path FROM sources").fetchall()
        return [i for i, p in under if p.startswith(prefix)]

    def source_ids_for(self, path: str | Path) -> list[int]:
        """Ids of the source at ``path``, or of every source under the folder ``path``."""
        with self._lock:
            return self._source_ids_for(Path(path))

    _TILE_COLUMNS = ("t.id, t.row, s.path, t.col_off, t.row_off, t.width, t.height, t.pixel_w, t.pixel_h, s.crs, "
                     "t.minx, t.miny, t.maxx, t.maxy, t.west, t.south, t.east, t.north, t.footprint, t.valid_fraction")

    @staticmethod
    def _tile_from(row: Sequence[Any]) -> Tile:
        polygon = json.loads(row[18]) if row[18] else None
        return Tile(id=row[0], row=row[1], source=Path(row[2]), window=TileWindow(row[3], row[4], row[5], row[6]),
                    pixel_size=(row[7], row[8]) if row[7] is not None else None, crs=row[9],
                    bounds=_tuple4(row[10:14]), lonlat_bounds=_tuple4(row[14:18]),
                    lonlat_polygon=tuple((float(x), float(y)) for x, y in polygon) if polygon else None,
                    valid_fraction=row[19])

    def tiles_at_rows(self, rows: Sequence[int]) -> list[Tile]:
        """Tiles at the given feature rows, in that order."""
        with self._lock:
            found = {}
            for start in range(0, len(rows), 500):
                chunk = [int(r) for r in rows[start:start + 500]]
                marks = ",".join("?" * len(chunk))
                for row in self._db.execute(f"SELECT {self._TILE_COLUMNS} FROM tiles AS t JOIN sources AS s "
                                            f"ON s.id = t.source_id WHERE t.row IN ({marks})", chunk):
                    found[row[1]] = self._tile_from(row)
        return [found[int(r)] for r in rows]

    def tile(self, tile_id: int) -> Tile:
        """One tile by id.

        Raises:
            LibraryError: no such tile.
        """
        with self._lock:
            row = self._db.execute(f"SELECT {self._TILE_COLUMNS} FROM tiles AS t JOIN sources AS s "
                                   "ON s.id = t.source_id WHERE t.id = ?", (tile_id,)).fetchone()
        if row is None:
            raise LibraryError(f"{self.path}: no tile with id {tile_id}")
        return self._tile_from(row)

    def tiles(self, source: str | Path | None = None) -> list[Tile]:
        """Every tile (of one source, when given), by source and position."""
        with self._lock:
            query = (f"SELECT {self._TILE_COLUMNS} FROM tiles AS t JOIN sources AS s ON s.id = t.source_id")
            if source is None:
                rows = self._db.execute(query + " ORDER BY t.source_id, t.row_off, t.col_off").fetchall()
            else:
                ids = self._source_ids_for(Path(source))
                marks = ",".join("?" * len(ids)) or "NULL"
                rows = self._db.execute(query + f" WHERE t.source_id IN ({marks}) ORDER BY t.source_id, t.row_off,"
                                        " t.col_off", ids).fetchall()
        return [self._tile_from(r) for r in rows]

    def thumbnail(self, tile_id: int) -> bytes:
        """The tile's JPEG thumbnail (at most 128 px on its long side)."""
        with self._lock:
            row = self._db.execute("SELECT thumb_offset, thumb_size FROM tiles WHERE id = ?", (tile_id,)).fetchone()
        if row is None:
            raise LibraryError(f"{self.path}: no tile with id {tile_id}")
        with open(self.path / THUMBS_FILE, "rb") as handle:
            handle.seek(row[0])
            return handle.read(row[1])

    def read_tile_image(self, tile_id: int) -> np.ndarray:
        """The tile's pixels at full resolution, re-read from its source, as (H, W, 3) uint8.

        Raises:
            ImageError: the source file is gone or unreadable.
        """
        from dvan.library.raster import open_raster

        tile = self.tile(tile_id)
        with open_raster(tile.source) as source:
            return source.read_tile(tile.window)[0]

    def tile_features(self, tile_ids: Sequence[int]) -> np.ndarray:
        """Stored backbone features (n, backbone_dim) float32 of tiles."""
        tiles = [self.tile(i) for i in tile_ids]
        features = self.backbone_features()
        return np.asarray(features[[t.row for t in tiles]], dtype=np.float32)

    # -- sources ---------------------------------------------------------------------------------

    def sources(self) -> list[SourceRecord]:
        """Every source, in import order."""
        with self._lock:
            rows = self._db.execute("SELECT id, path, size, mtime_ns, hash, status, tile_size, overlap, windows, tiles,"
                                    " skipped_nodata, width, height, crs FROM sources ORDER BY id").fetchall()
        return [SourceRecord(r[0], Path(r[1]), *r[2:]) for r in rows]

    def source(self, path: str | Path) -> SourceRecord | None:
        """The source recorded for exactly this file, if any."""
        resolved = str(Path(path).expanduser().resolve())
        return next((s for s in self.sources() if str(s.path) == resolved), None)

    def committed_windows(self, source_id: int) -> set[tuple[int, int, int, int]]:
        """Windows of the tiles already committed for a source (to resume an interrupted import)."""
        with self._lock:
            return {tuple(r) for r in self._db.execute(  # type: ignore[misc]
                "SELECT col_off, row_off, width, height FROM tiles WHERE source_id = ?", (source_id,))}

    # -- captions --------------------------------------------------------------------------------

    def captions(self) -> list[Caption]:
        """Every spoken caption, in the order added."""
        with self._lock:
            rows = self._db.execute("SELECT id, row, audio, image, label, split, text, speaker FROM captions "
                                    "ORDER BY row").fetchall()
        return [Caption(r[0], r[1], Path(r[2]), Path(r[3]), *r[4:]) for r in rows]

    def captions_at_rows(self, rows: Sequence[int]) -> list[Caption]:
        """Captions at the given rows, in that order."""
        by_row = {c.row: c for c in self.captions()}
        return [by_row[int(r)] for r in rows]

    def caption_keys(self) -> set[tuple[str, str]]:
        """(audio, image) paths of the captions held (to skip those added again)."""
        with self._lock:
            return {(a, i) for a, i in self._db.execute("SELECT audio, image FROM captions")}

    def commit_captions(self, entries: Sequence[dict[str, Any]], projections: np.ndarray) -> None:
        """Append captions with their query projections for the active captions key, atomically."""
        self._require_writer()
        with self._lock:
            start = int(self.meta("next_caption_row"))
            target = self.captions_file()
            assert target is not None
            if len(entries):
                target.write(start, projections)
                target.sync()
            digests = self._digests_of(target, start, start + len(entries))
            with self._transaction():
                self._record_digests(digests)
                for index, entry in enumerate(entries):
                    self._db.execute(
                        "INSERT INTO captions (row, audio, image, label, split, text, speaker, audio_size,"
                        " audio_mtime_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (start + index, entry["audio"], entry["image"], entry.get("label"), entry.get("split"),
                         entry.get("text"), entry.get("speaker"), entry["audio_size"], entry["audio_mtime_ns"]))
                self._set_meta({"next_caption_row": start + len(entries)})

    def activate_captions(self, key: str, dim: int, model: str, rows: np.ndarray | None = None) -> None:
        """Switch the active captions key; with ``rows`` = kept caption rows, drop the others."""
        self._require_writer()
        target = self.captions_file(key, dim)
        assert target is not None
        if target.path.exists():
            target.sync()
        with self._lock:
            old = self.captions_file()
            digests = self._digests_of(target, 0, int(self.meta("next_caption_row"))) if target.path.exists() else []
            with self._transaction():
                self._forget_digests(target.path.name, old.path.name if old is not None else None)
                self._record_digests(digests)
                if rows is not None:
                    keep = {int(r) for r in rows}
                    for (row,) in self._db.execute("SELECT row FROM captions").fetchall():
                        if row not in keep:
                            self._db.execute("DELETE FROM captions WHERE row = ?", (row,))
                self._set_meta({"captions_key": key, "captions_dim": dim, "captions_model": model})
            if old is not None and old.path != target.path:
                old.path.unlink(missing_ok=True)

    def caption_projections(self) -> np.ndarray:
        """Read-only memory map (caption rows, d4) of the captions' query projections."""
        target = self.captions_file()
        rows = int(self.meta("next_caption_row"))
        if target is None:
            return np.zeros((0, 0), dtype=np.float32)
        return target.view(rows)

    # -- summary ---------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """JSON-ready summary (``dvan library info``)."""
        with self._lock:
            tiles = self._db.execute("SELECT COUNT(*) FROM tiles").fetchone()[0]
            by_status = dict(self._db.execute("SELECT status, COUNT(*) FROM sources GROUP BY status").fetchall())
            crs = [c or "none (plain image)" for (c,) in self._db.execute("SELECT DISTINCT crs FROM sources")]
            extent = self._db.execute("SELECT MIN(west), MIN(south), MAX(east), MAX(north) FROM tiles").fetchone()
            georef = self._db.execute("SELECT COUNT(*) FROM tiles WHERE west IS NOT NULL").fetchone()[0]
            captions = self._db.execute("SELECT COUNT(*) FROM captions").fetchone()[0]
            skipped = self._db.execute("SELECT COALESCE(SUM(skipped_nodata), 0) FROM sources").fetchone()[0]
        next_row = self.next_row
        key, gallery_rows, _ = self.gallery_state()
        sizes = {}
        for entry in os.scandir(self.path):  # dot files: the lock, and other processes' short-lived write probes
            if not entry.name.startswith("."):
                with contextlib.suppress(FileNotFoundError):
                    if entry.is_file():
                        sizes[entry.name] = entry.stat().st_size
        return {
            "path": str(self.path), "format": LIBRARY_FORMAT, "backbone": self.backbone_name,
            "tile_size": self.meta("tile_size"), "overlap": self.meta("overlap"),
            "gallery_dtype": self.meta("gallery_dtype"),
            "sources": sum(by_status.values()), "sources_complete": by_status.get("complete", 0),
            "sources_incomplete": by_status.get("importing", 0),
            "tiles": tiles, "tiles_georeferenced": georef, "nodata_windows_skipped": skipped,
            "rows": next_row, "unused_rows": next_row - tiles,
            "crs": sorted(crs), "lonlat_extent": list(extent) if extent[0] is not None else None,
            "model": {"gallery_key": key or None, "checkpoint": self.meta("gallery_model") or None,
                      "projected_rows": gallery_rows, "up_to_date": bool(key) and gallery_rows == next_row},
            "captions": captions, "captions_model": self.meta("captions_model") or None,
            "disk_bytes": sum(sizes.values()), "files": sizes,
        }
