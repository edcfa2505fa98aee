"""The files under a library: row arrays written at offsets, flushed, memory-mapped; write and space probes.

Kept apart from :mod:`dvan.library.store` (the SQLite side); everything here works on plain paths.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np

from dvan.errors import LibraryDamagedError

#: File name endings tried as rasters when importing a folder; anything else is skipped quietly.
RASTER_SUFFIXES = (".tif", ".tiff", ".gtif", ".gtiff", ".jp2", ".j2k", ".jpf", ".jpx", ".png", ".jpg", ".jpeg", ".img",
                   ".vrt", ".bmp", ".gif", ".webp", ".ntf", ".nitf")
#: File name endings of plain images (a collection's pictures, an image to find captions for).
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".jp2", ".bmp", ".gif", ".webp")

#: Rows per digest block of an array file (re-hashing the last block on a commit reads at most
#: 1024 rows: 2.6 MB of efficientnet-lite0 features).
DIGEST_BLOCK_ROWS = 1024


class RowFile:
    """A raw row-major array file written at row offsets and read through a memory map."""

    def __init__(self, path: Path, width: int, dtype: Any) -> None:
        self.path = path
        self.width = width
        self.dtype = np.dtype(dtype)
        self.row_bytes = width * self.dtype.itemsize

    def write(self, start_row: int, rows: np.ndarray) -> None:
        """Write ``rows`` (n, width) starting at ``start_row`` (the file grows as needed)."""
        data = np.ascontiguousarray(rows, dtype=self.dtype)
        if data.ndim != 2 or data.shape[1] != self.width:
            raise ValueError(f"{self.path.name}: expected rows of width {self.width}, got shape {data.shape}")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            pwrite_all(fd, data.tobytes(), start_row * self.row_bytes)
        finally:
            os.close(fd)

    def sync(self) -> None:
        """Flush the file's data to disk."""
        if self.path.exists():
            fsync_path(self.path)

    def truncate(self, rows: int) -> None:
        """Cut the file to ``rows`` rows (drops bytes past the committed rows)."""
        if self.path.exists() and self.path.stat().st_size > rows * self.row_bytes:
            os.truncate(self.path, rows * self.row_bytes)

    def view(self, rows: int) -> np.ndarray:
        """A read-only (rows, width) memory map of the first ``rows`` rows."""
        if rows == 0:
            return np.zeros((0, self.width), dtype=self.dtype)
        size = self.path.stat().st_size if self.path.exists() else 0
        if size < rows * self.row_bytes:
            raise LibraryDamagedError(f"{self.path}: damaged: holds {size // self.row_bytes} rows but the library "
                                      f"records {rows}; run 'dvan library check {self.path.parent} --repair'")
        return np.memmap(self.path, dtype=self.dtype, mode="r", shape=(rows, self.width))


#: errno values that mean the disk (or the user's quota, or the file-size limit) is full.
DISK_FULL = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG) if e is not None)


def writable(folder: Path, database: Path) -> bool:
    """Whether the library can be written: permissions, then a real write probe (root ignores
    permissions, a read-only mount does not)."""
    if not (os.access(folder, os.W_OK) and os.access(database, os.W_OK)):
        return False
    try:
        fd, probe = tempfile.mkstemp(prefix=".dvan-write-probe-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def disk_is_full(folder: Path) -> bool:
    """Whether the file system of ``folder`` has (next to) no space left for this user."""
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):  # no statvfs (Windows): cannot tell
        return False
    return stats.f_bavail * stats.f_frsize < 64 * 1024


def connect_read_only(database: Path) -> sqlite3.Connection:
    """A read-only connection: ``mode=ro`` (sees a WAL others write), else ``immutable`` (when SQLite
    cannot even make its shared-memory file next to the database)."""
    uri = "file:" + urllib.parse.quote(str(database.resolve()))
    for suffix in ("?mode=ro", "?mode=ro&immutable=1"):
        connection = sqlite3.connect(uri + suffix, uri=True, isolation_level=None, check_same_thread=False,
                                     timeout=30.0)
        try:
            connection.execute("SELECT COUNT(*) FROM meta").fetchone()
            return connection
        except sqlite3.OperationalError:
            connection.close()
            if suffix.endswith("immutable=1"):
                raise
    raise AssertionError("unreachable")


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    if not hasattr(os, "pwrite"):  # Windows: seek + write on the same descriptor
        os.lseek(fd, offset, os.SEEK_SET)
        while view:
            view = view[os.write(fd, view):]
        return
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_hash(path: Path) -> str:
    """BLAKE2b digest of a file's bytes (changed-file detection)."""
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def block_digests(target: RowFile, start: int, end: int) -> list[tuple[int, int, str]]:
    """(block, rows, digest) of every digest block holding rows ``start`` to ``end`` - 1.

    A block covers rows ``block * DIGEST_BLOCK_ROWS`` onwards, cut at ``end``; ``rows`` says how
    many, so a block still filling up is re-hashed when rows are appended to it.
    """
    if end <= start:
        return []
    found = []
    with open(target.path, "rb") as handle:
        for block in range(start // DIGEST_BLOCK_ROWS, (end - 1) // DIGEST_BLOCK_ROWS + 1):
            first = block * DIGEST_BLOCK_ROWS
            rows = min(end, first + DIGEST_BLOCK_ROWS) - first
            handle.seek(first * target.row_bytes)
            data = handle.read(rows * target.row_bytes)
            found.append((block, rows, hashlib.blake2b(data, digest_size=16).hexdigest()))
    return found

