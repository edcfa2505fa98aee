"""Import and search on a real local Ray cluster (two CPU workers): the same library as a local import.

One cluster and one pool of two backbone workers serve the whole module (starting a worker
loads torch and the backbone). Faults are real: a worker process killed with SIGKILL mid-import,
a driver process killed with SIGKILL, a corrupt raster, and a batch a worker fails on.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from cluster_helpers import chips, shards
from library_helpers import TILE, bundle, checkpoint, clean_many, fixtures, read_commits
from PIL import Image

from dvan.library import Library, import_paths
from dvan.progress import Progress

ray = pytest.importorskip("ray", reason='Ray is not installed (pip install ".[cluster]"); the cluster tests need it')

from dvan.cluster.mount import open_mount  # noqa: E402
from dvan.cluster.ray_import import RayFeatureRunner  # noqa: E402
from dvan.cluster.sharded_search import ShardedSearch  # noqa: E402
from dvan.search.engine import SearchEngine  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray cluster on this machine; yields its address (other processes join it there)."""
    os.environ.setdefault("PYTHONPATH", str(ROOT))  # the workers import dvan from this tree
    for attempt in range(2):
        try:
            # 3 logical CPUs on 2 cores: the module's 2 workers hold 2, the killed driver's own worker takes the third
            ray.init(num_cpus=3, include_dashboard=False, object_store_memory=200 * 1024 ** 2, log_to_driver=False)
            break
        except Exception as exc:  # Ray gives its raylet 30 s to register: a saturated machine can miss that once
            ray.shutdown()
            if attempt or "timed out during startup" not in str(exc):
                raise
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def runner(cluster: str) -> Iterator[RayFeatureRunner]:
    """Two backbone workers on the cluster."""
    pool = RayFeatureRunner("efficientnet-lite0", workers=2)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="module")
def clean_library() -> Path:
    """The "many" folder imported here, without Ray."""
    return clean_many()


def _snapshot(path: Path) -> dict[tuple[str, tuple[int, ...]], tuple[object, ...]]:
    """Every tile by (source, window): features, gallery, footprint, bounds, pixel size, thumbnail."""
    with Library.open(path) as library:
        features = np.asarray(library.backbone_features(), dtype=np.float32)
        gallery = np.asarray(library.gallery(), dtype=np.float32)
        return {(t.source.name, t.window.as_tuple()): (features[t.row], gallery[t.row], t.lonlat_polygon, t.bounds,
                                                        t.lonlat_bounds, t.pixel_size, library.thumbnail(t.id))
                for t in library.tiles()}


def _assert_same_library(path: Path, clean: Path) -> None:
    a, b = _snapshot(path), _snapshot(clean)
    assert sorted(a) == sorted(b) and len(a) == 12
    for key, (features, gallery, *described) in a.items():
        np.testing.assert_allclose(features, b[key][0], rtol=4e-3, atol=4e-3)  # float16 storage precision
        np.testing.assert_allclose(gallery, b[key][1], rtol=4e-3, atol=4e-3)
        assert described == list(b[key][2:]), key  # footprints, bounds, pixel size, thumbnail: identical
    with Library.open(path) as library:
        assert all(s.status == "complete" for s in library.sources())
        assert library.info()["model"]["up_to_date"]


def _new(tmp_path: Path) -> Library:
    return Library.create(tmp_path / "lib", tile_size=TILE)


def test_ray_import_equals_local_import_and_reports_a_corrupt_raster(tmp_path: Path, runner: RayFeatureRunner,
                                                                     clean_library: Path) -> None:
    library = _new(tmp_path)
    report = import_paths(library, [fixtures()["many"], fixtures()["corrupt"]], bundle=bundle(0), backbone=runner,
                          batch_size=2)
    library.close()
    assert report.tiles == 12 and len(report.added) == 7
    assert [p.name for p, _ in report.failed] == ["corrupt.tif"]
    _assert_same_library(tmp_path / "lib", clean_library)


def test_worker_killed_mid_import_is_restarted_and_costs_nothing(tmp_path: Path, runner: RayFeatureRunner,
                                                                 clean_library: Path) -> None:
    victim = runner.workers[1]["pid"]
    killed: list[int] = []

    def kill_after_first_commit(progress: Progress) -> None:
        if progress.stage == "import" and progress.done and not killed:
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    library = _new(tmp_path)
    report = import_paths(library, [fixtures()["many"]], bundle=bundle(0), backbone=runner, batch_size=2,
                          progress=kill_after_first_commit)
    library.close()
    assert killed and report.tiles == 12 and not report.failed
    _assert_same_library(tmp_path / "lib", clean_library)
    # the loss is reported by worker; its batches were computed again on the other one
    assert runner.lost and all(f"pid {victim}" in line for line in runner.lost)
    runner.lost.clear()


def test_a_batch_the_workers_fail_on_fails_its_file_by_name_and_nothing_else(
        tmp_path: Path, runner: RayFeatureRunner, clean_library: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_submit = runner.submit

    def submit(images: list[np.ndarray], label: str) -> Callable[[], np.ndarray]:
        if "chip3.tif" in label:  # pixels the real backbone cannot take: the worker's task raises
            images = [np.zeros((0, 0, 3), dtype=np.uint8) for _ in images]
        return real_submit(images, label)

    monkeypatch.setattr(runner, "submit", submit)
    library = _new(tmp_path)
    report = import_paths(library, [fixtures()["many"]], bundle=bundle(0), backbone=runner, batch_size=1)
    assert [p.name for p, _ in report.failed] == ["chip3.tif"]
    assert "Ray worker on" in report.failed[0][1] and report.tiles == 11
    assert "chip3.tif" not in {p.name for p, _ in report.added}
    assert {s.path.name for s in library.sources()} == {p.name for p in fixtures()["many"].iterdir()} - {"chip3.tif"}
    monkeypatch.undo()
    again = import_paths(library, [fixtures()["many"]], bundle=bundle(0), backbone=runner)
    library.close()
    assert again.tiles == 1 and [p.name for p, _ in again.added] == ["chip3.tif"]
    _assert_same_library(tmp_path / "lib", clean_library)


# A driver joining the test's cluster imports the "many" folder two tiles per commit on one Ray worker,
# printing a line after each commit; the test kills it with SIGKILL once two commits are in.
DRIVER = r"""
import sys
import ray
from dvan.cluster.ray_import import RayFeatureRunner
from dvan.library import Library, import_paths
from dvan.model.factory import create_model

ray.init(address=sys.argv[1], log_to_driver=False)
runner = RayFeatureRunner("efficientnet-lite0", workers=1)
print("workers ready", flush=True)

def report(progress):
    if progress.stage == "import" and progress.done:
        print("committed", progress.done, flush=True)

library = Library.open(sys.argv[2])
import_paths(library, [sys.argv[3]], bundle=create_model(checkpoint=sys.argv[4], device="cpu"), backbone=runner,
             batch_size=2, progress=report)
print("finished", flush=True)
"""


def test_driver_killed_mid_import_resumes_to_a_clean_import(tmp_path: Path, cluster: str, runner: RayFeatureRunner,
                                                            clean_library: Path) -> None:
    _new(tmp_path).close()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen([sys.executable, "-c", DRIVER, cluster, str(tmp_path / "lib"), str(fixtures()["many"]),
                              str(checkpoint(0))], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    timer = threading.Timer(300, child.kill)  # readline blocks: a child that never prints is killed, not waited on
    timer.start()
    try:
        committed = read_commits(child, 2, 300)
    finally:
        timer.cancel()
    assert committed == 2, child.stderr.read() if child.stderr else ""
    os.kill(child.pid, signal.SIGKILL)  # while its worker computes the next batches
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    with Library.open(tmp_path / "lib") as library:
        tiles = library.tiles()
        assert 4 <= len(tiles) < 12 and library.next_row == len(tiles)
        for tile in tiles:
            Image.open(io.BytesIO(library.thumbnail(tile.id))).load()
        report = import_paths(library, [fixtures()["many"]], bundle=bundle(0), backbone=runner)
    assert report.tiles == 12 - len(tiles)
    _assert_same_library(tmp_path / "lib", clean_library)


def test_shards_scored_by_ray_tasks_merge_to_the_single_library_ranking(cluster: str) -> None:
    mount, single_path = shards()
    model = bundle(0)
    opened = open_mount(mount)
    try:
        engine = ShardedSearch(opened, model, ray_address="auto")
        with Library.open(single_path) as single:
            reference = SearchEngine(single, model)
            for wav in ("query", "query2"):
                query = reference.encode_file(fixtures()[wav])
                expected, merged = reference.search(query, top_k=12), engine.search(query, top_k=12)
                assert [(h.tile.source.name, h.tile.window) for h in merged] == \
                    [(h.tile.source.name, h.tile.window) for h in expected]
                np.testing.assert_allclose([h.logit for h in merged], [h.logit for h in expected], atol=1e-4)
            only = [chips()[1]]
            assert [h.tile.window for h in engine.search(query, top_k=5, sources=only)] == \
                [h.tile.window for h in reference.search(query, top_k=5, sources=only)]
    finally:
        for library in opened:
            library.close()
