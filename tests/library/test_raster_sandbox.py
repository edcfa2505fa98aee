"""Raster sandbox and bounded work: no request reaches the network, no file outside the folder is read,
a huge declared size allocates nothing, sparse rasters are skipped unread, lon/lat stays on the globe."""

from __future__ import annotations

import http.server
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
import rasterio
from library_helpers import backbone
from make_hostile_rasters import make_hostile_rasters

from dvan.errors import RasterTooLargeError, UnsafeRasterError
from dvan.library import Library, import_paths, open_raster, tile_windows
from dvan.library.sandbox import harden_gdal, roots_for
from dvan.progress import Progress


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    requests: list[str]

    def _count(self) -> None:
        self.requests.append(f"{self.command} {self.path}")
        self.send_response(404)
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._count()

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
        self._count()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[int, list[str]]]:
    """A real localhost HTTP server in a thread, recording every request it gets."""
    requests: list[str] = []
    handler = type("Handler", (_CountingHandler,), {"requests": requests})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], requests
    httpd.shutdown()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, server: tuple[int, list[str]]) -> dict[str, Path]:
    return make_hostile_rasters(tmp_path_factory.mktemp("hostile"), server[0])


def test_the_server_answers_requests(server: tuple[int, list[str]]) -> None:
    """The counting server really counts (so zero below means zero)."""
    import urllib.error
    import urllib.request

    port, requests = server
    before = len(requests)
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/probe", timeout=5)  # noqa: S310 - localhost
    assert requests[before:] == ["GET /probe"]
    del requests[before:]


def test_import_reports_hostile_files_by_name_and_sends_no_request(
        tmp_path: Path, hostile: dict[str, Path], server: tuple[int, list[str]]) -> None:
    _, requests = server
    library = Library.create(tmp_path / "lib", tile_size=128)
    report = import_paths(library, [hostile["drop"]], backbone=backbone())
    failed = {path.name: reason for path, reason in report.failed}
    assert requests == []
    assert sorted(p.name for p, _ in report.added) == ["good.tif", "inside.vrt"]
    assert set(failed) == {"network.vrt", "disguised.tif", "raw_outside.vrt", "source_outside.vrt", "loop.tif"}
    assert "refers to the network (/vsicurl)" in failed["network.vrt"]
    assert "refers to the network" in failed["disguised.tif"]
    assert f"{hostile['secret']}, outside the folders given" in failed["raw_outside.vrt"]
    assert f"{hostile['outside']}, outside the folders given" in failed["source_outside.vrt"]
    assert "symbolic link loop" in failed["loop.tif"]
    assert report.tiles == 2
    with library:
        thumbnails = [library.thumbnail(t.id) for t in library.tiles()]
    assert all(b"secret-bytes" not in t for t in thumbnails)


def test_gdal_itself_cannot_reach_the_network(hostile: dict[str, Path], server: tuple[int, list[str]]) -> None:
    """Below the sandbox's own checks, GDAL's configuration stops requests (defence in depth)."""
    port, requests = server
    harden_gdal()
    with pytest.raises(rasterio.errors.RasterioIOError):
        rasterio.open(f"/vsicurl/http://127.0.0.1:{port}/src.tif")
    with rasterio.open(hostile["network"]) as dataset, pytest.raises(rasterio.errors.RasterioIOError):
        dataset.read(1)
    assert requests == []


def test_a_file_given_by_name_may_read_its_own_folder_only(hostile: dict[str, Path]) -> None:
    with open_raster(hostile["inside"]) as raster:  # default roots: the file's folder
        assert (raster.width, raster.height) == (128, 128)
    with pytest.raises(UnsafeRasterError, match="outside the folders given"):
        open_raster(hostile["raw_outside"])
    with pytest.raises(UnsafeRasterError, match="refers to the network"):
        open_raster(f"/vsicurl/http://127.0.0.1:1/{hostile['good'].name}", roots_for([hostile["drop"]]))


def test_tile_windows_are_generated_lazily() -> None:
    tracemalloc.start()
    try:
        grid = tile_windows(2_000_000_000, 2_000_000_000, 256)
        count, last, first = len(grid), grid[-1], next(iter(grid))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 7_812_500 ** 2
    assert last.as_tuple() == (1_999_999_744, 1_999_999_744, 256, 256) and first.as_tuple() == (0, 0, 256, 256)
    assert peak < 100_000  # bytes: nothing proportional to the raster
    assert list(tile_windows(300, 200, 128))[-1] == tile_windows(300, 200, 128)[5]


def test_a_huge_declared_raster_is_refused_by_size(tmp_path: Path, hostile: dict[str, Path]) -> None:
    with pytest.raises(RasterTooLargeError, match=r"4e\+18 pixels, more than the limit of 5e\+09; raise it with "
                                                  r"--max-pixels"):
        open_raster(hostile["huge"], max_pixels=5_000_000_000)
    library = Library.create(tmp_path / "lib", tile_size=128)
    report = import_paths(library, [hostile["huge"], hostile["good"]], backbone=backbone())
    library.close()
    assert [p.name for p, _ in report.added] == ["good.tif"]
    assert [(p.name, "more than the limit" in r) for p, r in report.failed] == [("huge.vrt", True)]


def test_sparse_geotiff_windows_are_skipped_unread_with_progress_from_the_start(
        tmp_path: Path, hostile: dict[str, Path]) -> None:
    reports: list[Progress] = []
    library = Library.create(tmp_path / "lib", tile_size=256)
    report = import_paths(library, [hostile["sparse"], hostile["polar"]], backbone=backbone(), progress=reports.append)
    assert report.failed == []
    assert report.tiles == 2 and report.nodata_skipped == 255 and report.unread_skipped == 255
    assert (reports[0].stage, reports[0].done) == ("scan", 0)
    imports = [r for r in reports if r.stage == "import"]
    assert imports[-1].done == imports[-1].total == 257
    with library:
        sparse = library.tiles(hostile["sparse"])
        polar = library.tiles(hostile["polar"])
    assert [t.window.as_tuple() for t in sparse] == [(512, 256, 256, 256)]
    # the polar raster declares 80..100 N: stored lon/lat stops at the pole
    assert polar[0].lonlat_bounds == pytest.approx((10.0, 80.0, 42.0, 90.0))
    assert max(lat for _, lat in polar[0].lonlat_polygon) == 90.0
