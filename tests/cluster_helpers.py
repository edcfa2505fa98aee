"""Shared set-up of the cluster tests: two shard libraries, their mount, and one library holding the same tiles."""

from __future__ import annotations

import functools
from pathlib import Path

from library_helpers import TILE, bundle, fixtures, workdir

from dvan.cluster.mount import write_mount
from dvan.library import Library, import_paths


def chips() -> list[Path]:
    """The six one-tile chips of the "many" folder, in name order."""
    return sorted(fixtures()["many"].glob("chip*.tif"))


def _library(path: Path, parts: list[list[Path]]) -> Path:
    library = Library.create(path, tile_size=TILE, gallery_dtype="float32")
    for paths in parts:
        import_paths(library, paths, bundle=bundle(0))
    library.close()
    return path


@functools.cache
def shards() -> tuple[Path, Path]:
    """(mount file of shards "big" and "chips", one library holding the same tiles in that order); do not modify."""
    base = workdir() / "shards"
    big = _library(base / "big", [[fixtures()["many_big"]]])
    small = _library(base / "chips", [chips()])
    _library(base / "single", [[fixtures()["many_big"]], chips()])
    write_mount(base / "all.mount.json", [big, small])
    return base / "all.mount.json", base / "single"
