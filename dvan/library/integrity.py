"""Integrity of a tile library: damage is detected, never masked, and repaired where it can be.

The library's records say how many rows each array file holds (``next_row`` for
``backbone.f16``, ``gallery_rows`` for the gallery file, ``next_caption_row`` for the captions
file, ``thumbs_end`` bytes of ``thumbs.bin``). A file may be longer than recorded (an import in
progress or killed writes past the committed rows) but never shorter, and a recorded file must
exist. :func:`size_problems` checks exactly that, at the cost of a few ``stat`` calls, so every
open, every search and every write checks it (:meth:`Library.open`, :meth:`Library.writer`):
a truncated or deleted file is a :class:`LibraryDamagedError` naming the file and
``dvan library check PATH --repair``, and an import never zero-fills missing rows.

:func:`check_library` (``dvan library check``) reads everything: SQLite's ``integrity_check``,
the sizes, NaN/Inf in the backbone features of live tiles, the gallery projections and the caption
projections, and the per-block digests recorded when the rows were committed (BLAKE2b of every
1024 rows of each array file, :data:`dvan.library.files.DIGEST_BLOCK_ROWS`; they catch bytes
overwritten with other finite values). With ``repair`` it fixes what can be recomputed:

* damaged projections (gallery or captions): dropped, so the next search or ``reproject``
  recomputes them from the stored features (and from the caption audio files);
* damaged backbone features or thumbnails: the tiles concerned and their sources are removed and
  the files padded back to their recorded length (the rows become unused holes); the caller
  re-imports those sources from their rasters (:func:`dvan.cli.library` does), and sources whose
  files are gone are listed so they can be added again.

A damaged SQLite database cannot be repaired here: restore it or build a new library.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dvan.errors import LibraryDamagedError
from dvan.library.files import DIGEST_BLOCK_ROWS, block_digests
from dvan.progress import CancelToken, Progress, ProgressCallback, no_progress

if TYPE_CHECKING:
    from dvan.library.files import RowFile
    from dvan.library.store import Library

#: Rows scanned for NaN/Inf per step.
SCAN_ROWS = 16384


def repair_hint(path: Path) -> str:
    """The command that repairs a library."""
    return f"run 'dvan library check {path} --repair'"


@dataclass(frozen=True)
class Problem:
    """One thing found wrong.

    Attributes:
        file: the library file at fault (a name inside the library folder).
        kind: "size", "missing", "nonfinite", "digest" or "thumbnails".
        message: one human-readable line.
        rows: feature rows affected (for "nonfinite"/"size" of features), empty otherwise.
    """

    file: str
    kind: str
    message: str
    rows: tuple[int, ...] = ()


@dataclass
class CheckReport:
    """What :func:`check_library` found and did.

    Attributes:
        problems: everything found wrong.
        dropped_projections: projection files dropped for recomputation.
        removed_sources: source files whose tiles were removed (to be imported again).
        missing_sources: of those, files that no longer exist (must be added again by hand).
    """

    problems: list[Problem] = field(default_factory=list)
    dropped_projections: list[str] = field(default_factory=list)
    removed_sources: list[Path] = field(default_factory=list)
    missing_sources: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether nothing was wrong."""
        return not self.problems

    def summary(self, library: Path) -> str:
        """Human-readable lines."""
        if self.ok:
            return f"library {library}: no problems found"
        lines = [f"library {library}: {len(self.problems)} problem(s)"]
        lines += [f"  {p.file}: {p.message}" for p in self.problems]
        if self.dropped_projections:
            lines.append("dropped projections (recomputed from stored features before the next search): "
                         + ", ".join(self.dropped_projections))
        for path in self.missing_sources:
            lines.append(f"  source gone, add it again when found: dvan library add {library} {path}")
        return "\n".join(lines)


def _short_rows(target: RowFile | None, rows: int, name: str, what: str) -> Problem | None:
    if target is None or rows == 0 and not target.path.exists():
        return None
    if not target.path.exists():
        return Problem(name, "missing", f"missing; the library records {rows} rows of {what}")
    size = target.path.stat().st_size
    if size < rows * target.row_bytes:
        held = size // target.row_bytes
        return Problem(name, "size", f"{size} bytes hold {held} rows of {what} but the library records {rows}",
                       tuple(range(held, rows)))
    return None


def size_problems(library: Library) -> list[Problem]:
    """Array and thumbnail files shorter than recorded, or missing (cheap: a few stat calls)."""
    from dvan.library.store import BACKBONE_FILE, THUMBS_FILE

    problems = []
    next_row = library.next_row
    backbone = _short_rows(library.backbone_file(), next_row, BACKBONE_FILE, "backbone features")
    if backbone is not None and (next_row > 0 or backbone.kind != "missing"):
        problems.append(backbone)
    gallery = library.gallery_file()
    if gallery is not None:
        found = _short_rows(gallery, int(library.meta("gallery_rows")), gallery.path.name, "gallery projections")
        if found is not None:
            problems.append(found)
    captions = library.captions_file()
    if captions is not None:
        found = _short_rows(captions, int(library.meta("next_caption_row")), captions.path.name,
                            "caption projections")
        if found is not None:
            problems.append(found)
    thumbs = library.path / THUMBS_FILE
    end = int(library.meta("thumbs_end"))
    size = thumbs.stat().st_size if thumbs.exists() else 0
    if size < end:
        problems.append(Problem(THUMBS_FILE, "thumbnails", f"{size} bytes but the library records {end}"))
    return problems


def require_intact(library: Library) -> None:
    """Refuse a library whose files are shorter than recorded or missing.

    Raises:
        LibraryDamagedError: naming the first damaged file and the repair command.
    """
    problems = size_problems(library)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise LibraryDamagedError(f"{library.path / first.file}: damaged: {first.message}{more}; nothing was "
                                  f"changed; {repair_hint(library.path)}")


def _nonfinite_rows(values: np.ndarray, rows: np.ndarray, progress: ProgressCallback, stage: str,
                    cancel: CancelToken | None) -> list[int]:
    bad: list[int] = []
    for start in range(0, rows.size, SCAN_ROWS):
        if cancel is not None:
            cancel.raise_if_cancelled()
        chunk = rows[start:start + SCAN_ROWS]
        block = np.asarray(values[chunk])  # only these rows are read, however far apart
        finite = np.isfinite(block).all(axis=1)
        bad.extend(int(r) for r in chunk[~finite])
        progress(Progress(stage, min(rows.size, start + SCAN_ROWS), int(rows.size), "checking for NaN/Inf"))
    return bad


def check_library(library: Library, repair: bool = False, progress: ProgressCallback = no_progress,
                  cancel: CancelToken | None = None) -> CheckReport:
    """Verify a library (see the module docstring); with ``repair``, fix what can be recomputed.

    Raises:
        LibraryDamagedError: the SQLite database itself is damaged (nothing can be repaired).
        ReadOnlyLibraryError: ``repair`` on a read-only library.
    """
    report = CheckReport()
    database = library.path / "library.sqlite"
    try:
        verdict = [row[0] for row in library.sql("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        verdict = [str(exc)]
    if verdict != ["ok"]:
        raise LibraryDamagedError(f"{database}: the database is damaged ({'; '.join(verdict[:3])}); restore the "
                                  "library folder from a backup, or create a new library and add the sources again")
    report.problems.extend(size_problems(library))
    live = library.live_rows()
    feature_rows: set[int] = set()
    for problem in report.problems:
        if problem.file == library.backbone_file().path.name:
            feature_rows.update(problem.rows if problem.kind == "size" else live.tolist())
    held = _rows_held(library.backbone_file(), library.next_row)
    if held:
        scan = live[live < held]
        bad = _nonfinite_rows(library.backbone_features_unchecked(held), scan, progress, "check features", cancel)
        if bad:
            report.problems.append(Problem(library.backbone_file().path.name, "nonfinite",
                                           f"{len(bad)} tile(s) with NaN/Inf backbone features", tuple(bad)))
            feature_rows.update(bad)
        changed = _digest_problem(library, library.backbone_file(), held, live, "backbone features")
        if changed is not None:
            report.problems.append(changed)
            feature_rows.update(changed.rows)
    damaged_thumbs = _thumbnail_rows(library, report)
    projections = _projection_problems(library, live, progress, cancel, report)
    if not repair or report.ok:
        return report
    with library.writer(verify=False):
        for name in projections:
            library.drop_projections(name)
            report.dropped_projections.append(name)
        rows = sorted(feature_rows | damaged_thumbs)
        if rows:
            sources = library.sources_of_rows(rows)
            library.delete_sources([s.id for s in sources])
            report.removed_sources = [s.path for s in sources]
            report.missing_sources = [s.path for s in sources if not s.path.is_file()]
        library.pad_to_records()
        library.redigest(library.backbone_file(), library.next_row)  # damaged rows are unused holes now
    return report


def _digest_problem(library: Library, target: RowFile, rows: int, live: np.ndarray, what: str) -> Problem | None:
    """Blocks of ``target`` whose bytes differ from the digests recorded at their commit (live rows in them)."""
    recorded = library.digests(target.path.name)
    if not recorded or not target.path.exists():
        return None
    changed: list[int] = []
    for block, (count, digest) in sorted(recorded.items()):
        first = block * DIGEST_BLOCK_ROWS
        if first + count > rows:  # beyond what the file holds: reported by the size check
            continue
        found = block_digests(target, first, first + count)
        if found and found[0][2] != digest:
            changed.append(block)
    if not changed:
        return None
    in_blocks = live[np.isin(live // DIGEST_BLOCK_ROWS, changed)]
    return Problem(target.path.name, "digest", f"{len(changed)} block(s) of {DIGEST_BLOCK_ROWS} rows of {what} "
                   "changed since they were written", tuple(int(r) for r in in_blocks))


def _rows_held(target: RowFile, rows: int) -> int:
    size = target.path.stat().st_size if target.path.exists() else 0
    return min(rows, size // target.row_bytes)


def _thumbnail_rows(library: Library, report: CheckReport) -> set[int]:
    """Rows of tiles whose thumbnails lie past the end of a short thumbnail file."""
    from dvan.library.store import THUMBS_FILE

    if not any(p.file == THUMBS_FILE for p in report.problems):
        return set()
    thumbs = library.path / THUMBS_FILE
    size = thumbs.stat().st_size if thumbs.exists() else 0
    return {int(r) for (r,) in library.sql("SELECT row FROM tiles WHERE thumb_offset + thumb_size > ?", (size,))}


def _projection_file_damaged(library: Library, file: RowFile, rows: int, scanned: np.ndarray, held: np.ndarray,
                             what: str, counted: str, stage: str, progress: ProgressCallback,
                             cancel: CancelToken | None, report: CheckReport) -> bool:
    """Whether a projection file is damaged: already reported (short, missing), or NaN/Inf rows or changed digests.

    Args:
        file: the projection file.
        rows: rows the file holds by the library's count.
        scanned: rows checked for NaN/Inf.
        held: rows the digests are checked over.
        what: the file's contents, for the digest message ("gallery projections").
        counted: what a bad row is called in the NaN/Inf message ("caption projection(s)").
        stage: the progress stage of the NaN/Inf scan.
    """
    if any(p.file == file.path.name for p in report.problems):
        return True
    bad = _nonfinite_rows(file.view(rows), scanned, progress, stage, cancel) if scanned.size else []
    if bad:
        report.problems.append(Problem(file.path.name, "nonfinite", f"{len(bad)} {counted} hold NaN/Inf", tuple(bad)))
    changed = _digest_problem(library, file, rows, held, what)
    if changed is not None:
        report.problems.append(changed)
    return bool(bad) or changed is not None


def _projection_problems(library: Library, live: np.ndarray, progress: ProgressCallback, cancel: CancelToken | None,
                         report: CheckReport) -> list[str]:
    """Which projection kinds ("gallery", "captions") are damaged (short, missing or non-finite)."""
    damaged: list[str] = []
    gallery = library.gallery_file()
    if gallery is not None:
        rows = int(library.meta("gallery_rows"))
        if _projection_file_damaged(library, gallery, rows, live[live < rows], live, "gallery projections",
                                    "row(s) of gallery projections", "check gallery", progress, cancel, report):
            damaged.append("gallery")
    captions = library.captions_file()
    if captions is not None:
        rows = int(library.meta("next_caption_row"))
        held = np.array(sorted(c.row for c in library.captions()), dtype=np.int64)
        if _projection_file_damaged(library, captions, rows, held, held, "caption projections",
                                    "caption projection(s)", "check captions", progress, cancel, report):
            damaged.append("captions")
    return damaged


def pad_file(path: Path, size: int) -> None:
    """Extend a file with zeros to ``size`` bytes (rows of removed tiles: never read as data)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)
