"""Library tab: create/open, import with progress, rate, cancel and per-file report.

How responsive the window stays during an import is measured by benchmarks/app_latency.py, not here.
"""

from __future__ import annotations

from pathlib import Path

from app_support import (
    make_settings,
    world_fixture,  # noqa: F401 - pytest fixtures, used by name
)


def make_panel(qtbot, world, tmp_path: Path):
    from app.backend import Backend, reserve_gui_core
    from app.library_panel import LibraryPanel

    reserve_gui_core()  # as app.main does
    backend = Backend(device="cpu", model_path=world["model"])
    backend.warm_up()  # as the main window does at start
    panel = LibraryPanel(backend, make_settings(tmp_path))  # type: ignore[arg-type]
    qtbot.addWidget(panel)
    panel.resize(1100, 700)
    panel.show()
    return panel


def test_create_import_and_report(qtbot, world, tmp_path: Path) -> None:
    panel = make_panel(qtbot, world, tmp_path)
    assert not panel.add_files_button.isEnabled()
    with qtbot.waitSignal(panel.library_changed):
        assert panel.create_library(tmp_path / "lib")
    assert panel.settings.library_path == str(tmp_path / "lib")
    assert panel.add_folder_button.isEnabled()
    assert panel.info_labels["tiles"].text() == "0"

    # the app starts its job server in the background after start-up (MainWindow.prestart_jobs); so does the test
    from app.jobs import prewarm
    from app.worker import Worker

    prestart = Worker(prewarm, *panel.backend.job_settings(), process=True).start()
    with qtbot.waitSignal(prestart.signals.done, timeout=120000):
        pass
    reports = []
    worker = panel.add_paths([world["rasters"], world["manifest"].parent / "images"])
    assert worker is not None and panel.busy
    worker.signals.progress.connect(reports.append)
    assert not panel.add_folder_button.isEnabled() and panel.job.cancel_button.isEnabled()
    with qtbot.waitSignal(panel.busy_changed, timeout=120000):
        pass
    report = panel.report
    assert report is not None and not report.cancelled
    assert report.tiles > 10

    assert reports and reports[-1].stage == "import"
    assert "tiles/s" in panel.job.label.text() or "tiles imported" in panel.job.label.text()
    rows = {panel.table.item(r, 0).text(): (panel.table.item(r, 1).text(), panel.table.item(r, 3).text())
            for r in range(panel.table.rowCount())}
    corrupt = str(world["rasters"] / "corrupt.tif")
    assert rows[corrupt][0] == "failed" and "not a readable raster" in rows[corrupt][1]
    assert rows[str(world["rasters"] / "utm_rgb.tif")][0] == "imported"
    assert "failed (see the report)" in panel.summary.text()
    assert panel.info_labels["tiles"].text() == str(report.tiles)
    assert int(panel.info_labels["georef"].text()) > 0
    assert "up to date" in panel.info_labels["model"].text()

    # importing the same folders again changes nothing
    panel.add_paths([world["rasters"]])
    with qtbot.waitSignal(panel.busy_changed, timeout=60000):
        pass
    assert panel.report is not None and panel.report.tiles == 0
    assert {panel.table.item(r, 1).text() for r in range(panel.table.rowCount())} <= {"skipped", "failed"}


def test_cancel_keeps_committed_tiles_and_a_second_import_completes(qtbot, world, tmp_path: Path) -> None:
    panel = make_panel(qtbot, world, tmp_path)
    panel.create_library(tmp_path / "lib")
    worker = panel.add_paths([world["manifest"].parent / "images", world["rasters"]])
    assert worker is not None
    worker.signals.progress.connect(lambda report: panel.cancel())  # at the first report, before any commit
    with qtbot.waitSignal(panel.busy_changed, timeout=120000):
        pass
    assert panel.report is not None and panel.report.cancelled
    assert "cancelled" in panel.summary.text()
    partial = int(panel.info_labels["tiles"].text())
    assert panel.add_paths([world["manifest"].parent / "images", world["rasters"]]) is not None
    with qtbot.waitSignal(panel.busy_changed, timeout=120000):
        pass
    assert panel.report is not None and not panel.report.cancelled
    assert int(panel.info_labels["tiles"].text()) > partial


def test_opening_something_that_is_not_a_library_is_a_message(qtbot, world, tmp_path: Path) -> None:
    panel = make_panel(qtbot, world, tmp_path)
    assert not panel.open_library(tmp_path)
    assert "is not a library" in panel.summary.text()
    # a folder of imagery: what to do in the app, not a command line
    assert not panel.open_library(world["rasters"])
    assert "holds imagery, not a library" in panel.summary.text() and "dvan library" not in panel.summary.text()
    # a new library in a folder that does not exist yet
    assert panel.create_library(tmp_path / "new" / "library")
    assert not panel.create_library(tmp_path / "new" / "library")
    assert "already a library: open it" in panel.summary.text()
    assert panel.open_library(world["library"])
    assert panel.path_label.text() == f"Library: {world['library']}"
    assert int(panel.info_labels["captions"].text()) > 0
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    assert not panel.create_library(tmp_path / "full")
    assert "not an empty folder" in panel.summary.text()


def test_spoken_captions_are_added_from_a_manifest(qtbot, world, tmp_path: Path) -> None:
    panel = make_panel(qtbot, world, tmp_path)
    panel.create_library(tmp_path / "lib")
    assert panel.add_captions_button.isEnabled()
    assert panel.add_captions(world["manifest"]) is not None
    with qtbot.waitSignal(panel.busy_changed, timeout=120000):
        pass
    assert panel.summary.text() == "30 spoken caption(s) added, 0 already in the library", panel.summary.text()
    assert panel.info_labels["captions"].text() == "30"


def test_progress_line_names_the_rate_once_and_the_time_left() -> None:
    from app.widgets import progress_text
    from dvan.progress import Progress

    report = Progress("import", 40, 100, "6.1 tiles/s, big_mosaic.tif")
    text = progress_text(report, 6.1, "tiles/s")
    assert text.count("tiles/s") == 1 and text.endswith("about 10 s left")
    assert progress_text(Progress("import", 10, 730, "big_mosaic.tif"), 6.0, "tiles/s") == \
        "6.0 tiles/s — big_mosaic.tif — about 2 min 00 s left"


def test_a_reindexed_file_reports_its_tile_count(qtbot, world, tmp_path: Path) -> None:
    import shutil

    import rasterio
    from app_support import copy_library

    from app.jobs import import_job

    library = copy_library(world, tmp_path / "lib")
    raster = shutil.copy(world["rasters"] / "utm_rgb.tif", tmp_path / "field.tif")
    first = import_job(library, [str(raster)], str(world["model"]), "cpu")
    assert [(f.status, f.tiles) for f in first.files] == [("imported", 6)]
    with rasterio.open(raster) as source:  # the same field, new pixels: a changed file is re-indexed
        profile, pixels = source.profile, source.read()
    with rasterio.open(raster, "w", **profile) as target:
        target.write(255 - pixels)
    second = import_job(library, [str(raster)], str(world["model"]), "cpu")
    assert [(f.status, f.tiles, f.message) for f in second.files] == [
        ("imported", 6, "changed since the last import: re-indexed")]
    panel = make_panel(qtbot, world, tmp_path)
    panel._finished(second)
    assert panel.table.item(0, 2).text() == "6"
