"""Crash safety: an import killed with SIGKILL leaves whole tiles only, and importing again completes it."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from library_helpers import TILE, bundle, checkpoint, clean_many, fixtures, read_commits
from PIL import Image

from dvan.library import Library, import_paths

# The child imports the "many" folder two tiles per commit and prints a line after each commit.
# With DVAN_TEST_DIE_IN_COMMIT=N it kills itself inside the N-th commit: after the feature, gallery and
# thumbnail bytes are written, before the SQLite transaction commits (the worst moment).
CHILD = r"""
import os, signal, sys
from dvan.library import Library, import_paths
from dvan.library import store
from dvan.model.factory import create_model

die_in = int(os.environ.get("DVAN_TEST_DIE_IN_COMMIT", "0"))
commits = [0]
original_commit = store.Library.commit_tiles

def commit_tiles(self, tiles, features, gallery, finished=None):
    commits[0] += 1
    if commits[0] == die_in:
        real_transaction = self._transaction
        def dying():
            os.kill(os.getpid(), signal.SIGKILL)
            return real_transaction()
        self._transaction = dying
    return original_commit(self, tiles, features, gallery, finished)

store.Library.commit_tiles = commit_tiles

def report(progress):
    if progress.stage == "import" and progress.done:
        print("committed", progress.done, flush=True)

library = Library.open(sys.argv[1])
bundle = create_model(checkpoint=sys.argv[3], device="cpu")
import_paths(library, [sys.argv[2]], bundle=bundle, batch_size=2, progress=report)
print("finished", flush=True)
"""


def _child(library: Path, die_in_commit: int = 0) -> subprocess.Popen[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", DVAN_TEST_DIE_IN_COMMIT=str(die_in_commit))
    return subprocess.Popen([sys.executable, "-c", CHILD, str(library), str(fixtures()["many"]), str(checkpoint(0))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _check_consistent(path: Path) -> int:
    """Open the library and check every committed tile is whole; returns the tile count."""
    with Library.open(path) as library:
        info = library.info()
        tiles = library.tiles()
        rows = library.next_row
        assert len(tiles) == info["tiles"] and len({t.row for t in tiles}) == len(tiles)
        assert all(0 <= t.row < rows for t in tiles)
        features = np.asarray(library.backbone_features())
        assert features.shape == (rows, 1280) and np.isfinite(features).all()
        assert np.abs(features[[t.row for t in tiles]]).sum(axis=1).min() > 0  # real feature rows, not zeros
        assert info["model"]["up_to_date"] and np.asarray(library.gallery()).shape[0] == rows
        for tile in tiles:
            Image.open(io.BytesIO(library.thumbnail(tile.id))).load()  # every thumbnail decodes whole
        for source in library.sources():
            assert source.tiles == sum(1 for t in tiles if t.source == source.path) <= source.windows
        return len(tiles)


def _snapshot(path: Path) -> dict[tuple[str, tuple[int, ...]], tuple[np.ndarray, np.ndarray]]:
    with Library.open(path) as library:
        features = np.asarray(library.backbone_features(), dtype=np.float32)
        gallery = np.asarray(library.gallery(), dtype=np.float32)
        return {(t.source.name, t.window.as_tuple()): (features[t.row], gallery[t.row]) for t in library.tiles()}


def _assert_same_library(resumed: Path, clean: Path) -> None:
    a, b = _snapshot(resumed), _snapshot(clean)
    assert sorted(a) == sorted(b) and len(a) == 12
    for key in a:
        np.testing.assert_allclose(a[key][0], b[key][0], rtol=4e-3, atol=4e-3)
        np.testing.assert_allclose(a[key][1], b[key][1], rtol=4e-3, atol=4e-3)


@pytest.fixture(scope="module")
def clean_library() -> Path:
    return clean_many()


def test_import_killed_from_outside_resumes_to_a_clean_import(tmp_path: Path, clean_library: Path) -> None:
    path = tmp_path / "lib"
    Library.create(path, tile_size=TILE).close()
    child = _child(path)
    committed = read_commits(child, 2)
    assert committed == 2, child.stderr.read() if child.stderr else ""
    os.kill(child.pid, signal.SIGKILL)  # while it works on the next batch
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    tiles = _check_consistent(path)
    assert 4 <= tiles < 12
    library = Library.open(path)
    report = import_paths(library, [fixtures()["many"]], bundle=bundle(0))
    library.close()
    assert report.tiles == 12 - tiles
    assert _check_consistent(path) == 12
    _assert_same_library(path, clean_library)


def test_import_killed_inside_a_commit_keeps_no_part_of_that_batch(tmp_path: Path, clean_library: Path) -> None:
    path = tmp_path / "lib"
    Library.create(path, tile_size=TILE).close()
    child = _child(path, die_in_commit=3)
    out, err = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, err
    assert out.count("committed") == 2  # two batches of 2 tiles made it

    with Library.open(path) as library:
        written = (path / "thumbs.bin").stat().st_size
        assert library.info()["tiles"] == 4 and library.next_row == 4
        assert written > int(library.meta("thumbs_end"))  # the third batch's bytes are on disk, uncommitted
    assert _check_consistent(path) == 4
    library = Library.open(path)
    report = import_paths(library, [fixtures()["many"]], bundle=bundle(0))
    library.close()
    assert report.tiles == 8 and report.resumed
    with Library.open(path) as library:
        assert (path / "thumbs.bin").stat().st_size == int(library.meta("thumbs_end"))
    _assert_same_library(path, clean_library)
