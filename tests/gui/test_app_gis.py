"""The viewer as a GIS analyst uses it: views follow the library, captions of a result, export and copy,
menus and shortcuts, the map's fit, scale bar and coordinates, the result filter and the no-match state."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from app_support import (
    copy_library,
    make_backend,
    make_settings,
    world_fixture,  # noqa: F401 - pytest fixtures, used by name
)


def make_window(qtbot, world, tmp_path: Path, library: Path | None = None, settings=None):
    from app.main_window import MainWindow

    window = MainWindow(make_backend(world, library), settings or make_settings(tmp_path))  # type: ignore[arg-type]
    qtbot.addWidget(window)
    window.resize(1300, 850)
    window.show()
    return window


def search(qtbot, window, wav: Path) -> None:
    with qtbot.waitSignal(window.search.search_done, timeout=60000):
        window.search.search_file(wav)


def test_opening_another_library_shows_nothing_of_the_first(qtbot, world, tmp_path: Path) -> None:
    from PySide6.QtCore import QPoint
    from PySide6.QtTest import QTest

    # B is a copy of A: the same tile ids, so A's ranking would land on B's tiles unnoticed
    library_a = copy_library(world, tmp_path / "a")
    library_b = copy_library(world, tmp_path / "b")
    window = make_window(qtbot, world, tmp_path, library_a)
    search(qtbot, window, world["query_stripes"])
    assert window.search.model.rowCount() and window.map.view.highlighted()
    hit = window.search.model.hits[0]
    window._map_tile_selected(hit.tile.id)
    assert window.map_details.fields
    window.tabs.setCurrentWidget(window.map)
    QTest.mouseMove(window.map.view.viewport(), QPoint(200, 200))
    assert window.cursor_label.text().startswith("lon ")
    with qtbot.waitSignal(window.captions.ranked, timeout=30000):
        window.show_captions_for(hit.tile.id)
    window.captions.caption_text.setText("a caption of A")

    assert window.library.open_library(library_b)
    assert window.search.outcome is None and window.search.model.rowCount() == 0
    assert window.search.details.fields == {} and window.search.details.tile is None
    assert window.search.summary.text() == "No query yet." and not window.search.verdict.isVisible()
    assert window.map.view.highlighted() == {} and not window.map.view._labels
    assert window.map_details.fields == {} and window.map_details.tile is None
    assert window.cursor_label.text() == ""
    assert window.captions.list.count() == 0 and window.captions.caption_text.text() == ""
    assert window.captions.query_label.text() == "" and not window.captions.preview.has_image()
    # B's own search still works, and results of B are kept when B grows (same library)
    search(qtbot, window, world["query_dots"])
    shown = window.search.results()
    window.library_changed()
    assert window.search.results() == shown
    window.close()


def test_a_search_still_running_when_the_library_changes_is_dropped(qtbot, world, tmp_path: Path) -> None:
    window = make_window(qtbot, world, tmp_path)
    window.search.search_file(world["query_stripes"])
    worker = window.search.worker
    assert worker is not None and worker.running
    window.reset_views()  # what opening another library does, before the search's result arrives
    qtbot.waitUntil(lambda: not worker.running, timeout=60000)
    qtbot.wait(50)
    assert window.search.model.rowCount() == 0 and window.search.outcome is None
    assert "dropped" in window.search.message.text() and window.search.talk.isEnabled()
    window.close()


def test_captions_for_a_result_from_its_button_and_the_tab_bar_opening_on_drag(qtbot, world, tmp_path: Path) -> None:
    from PySide6.QtCore import QByteArray, QMimeData, QPointF, Qt
    from PySide6.QtGui import QDragMoveEvent

    from app.search_panel import TILE_MIME

    window = make_window(qtbot, world, tmp_path)
    placeholder = window.captions.preview
    assert placeholder.text().startswith("Drop an image file here") and not placeholder.has_image()
    search(qtbot, window, world["query_dots"])
    hit = window.search.model.hits[1]
    window.search.grid.setCurrentIndex(window.search.model.index(1))
    assert window.search.captions_button.isEnabled()
    with qtbot.waitSignal(window.captions.ranked, timeout=30000) as blocker:
        window.search.captions_button.click()
    assert window.tabs.currentWidget() is window.captions
    assert window.captions.query_label.text() == f"Tile: {hit.tile.name}" and blocker.args[0]
    window.captions.caption_text.setText("the caption played before")
    with qtbot.waitSignal(window.captions.ranked, timeout=30000):
        window.captions.rank_tile(window.search.model.hits[0].tile.id)
    assert window.captions.caption_text.text() == ""
    # back to the empty state: the placeholder is visible again (setPixmap(QPixmap()) used to blank it)
    window.captions.clear()
    assert window.captions.preview.text() == window.captions.preview.placeholder
    # a result dragged over the "Captions" tab title opens that tab
    window.tabs.setCurrentWidget(window.search)
    bar = window.tabs.tabBar()
    index = window.tabs.indexOf(window.captions)
    data = QMimeData()
    data.setData(TILE_MIME, QByteArray(str(hit.tile.id).encode()))
    move = QDragMoveEvent(QPointF(bar.tabRect(index).center()), Qt.DropAction.CopyAction, data,
                          Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    bar.dragMoveEvent(move)
    assert window.tabs.currentWidget() is window.captions and move.isAccepted()
    # the Map's selected-tile panel offers the same
    from PySide6.QtWidgets import QPushButton

    window.tabs.setCurrentWidget(window.map)
    window._map_tile_selected(hit.tile.id)
    button = next(b for b in window.map.findChildren(QPushButton) if b.text() == "Captions for this tile")
    with qtbot.waitSignal(window.captions.ranked, timeout=30000):
        button.click()
    assert window.tabs.currentWidget() is window.captions
    window.close()


def _ring(wkb: bytes) -> list[tuple[float, float]]:
    count = struct.unpack_from("<I", wkb, 9)[0]
    return [struct.unpack_from("<dd", wkb, 13 + 16 * i) for i in range(count)]


def test_export_from_the_app_and_copying_footprints(qtbot, world, tmp_path: Path) -> None:
    from pyogrio.raw import read
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    window = make_window(qtbot, world, tmp_path)
    search(qtbot, window, world["query_stripes"])
    window.search.filter.top.setValue(12)
    shown = window.search.model.hits
    assert len(shown) == 12
    with qtbot.waitSignal(window.search.exported) as blocker:
        written = window.search.export_results(tmp_path / "results.gpkg")
    assert blocker.args[0] == str(written) and window.desktop.last_export == str(written)
    meta, _, geometry, columns = read(written)
    values = dict(zip(meta["fields"], columns, strict=True))
    assert meta["crs"] == "EPSG:4326"
    assert [int(r) for r in values["rank"]] == [h.rank for h in shown]
    assert [str(s) for s in values["source"]] == [str(h.tile.source) for h in shown]
    assert set(values["query"]) == {world["query_stripes"].name}
    for hit, wkb, source_wkt in zip(shown, geometry, values["footprint_source_wkt"], strict=True):
        if hit.tile.georeferenced:
            corners = {(round(x, 9), round(y, 9)) for x, y in _ring(wkb)}
            assert corners == {(round(x, 9), round(y, 9)) for x, y in hit.tile.lonlat_polygon or ()}
            assert str(source_wkt).startswith("POLYGON ((")
        else:
            assert wkb is None and str(source_wkt) == ""
    # copy: the selected georeferenced result's footprint as WKT and GeoJSON; Ctrl+C copies the full row
    row = next(i for i, h in enumerate(shown) if h.tile.georeferenced)
    window.search.grid.setCurrentIndex(window.search.model.index(row))
    wkt = window.search.copy_footprint("wkt")
    assert wkt and wkt.startswith("POLYGON ((") and QApplication.clipboard().text() == wkt
    assert '"type": "Polygon"' in (window.search.copy_footprint("geojson") or "")
    window.search.grid.setFocus()
    qtbot.keyClick(window.search.grid, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    copied = QApplication.clipboard().text().split("\t")
    assert copied[0] == str(shown[row].rank) and copied[2] == str(shown[row].tile.source) and copied[5] == wkt
    plain = next((i for i, h in enumerate(shown) if not h.tile.georeferenced), None)
    if plain is not None:
        window.search.grid.setCurrentIndex(window.search.model.index(plain))
        assert window.search.copy_footprint("wkt") is None and "not georeferenced" in window.search.message.text()
    assert window.search.export_results(tmp_path / "results.kml") is None
    assert "unknown file type .kml" in window.search.message.text()
    window.close()


def test_filter_and_the_no_strong_match_state(qtbot, world, tmp_path: Path) -> None:
    from app.types import Hit, SearchOutcome

    window = make_window(qtbot, world, tmp_path)
    tiles = window.backend.tiles()[:6]
    scores = [0.3, 0.25, 0.2, 0.15, 0.1, 0.05]
    weak = SearchOutcome(hits=[Hit(rank=i + 1, tile=t, probability=p)
                               for i, (t, p) in enumerate(zip(tiles, scores, strict=True))],
                         seconds=0.01, source="weak.wav")
    window.search.show_outcome(weak)
    assert window.search.verdict.isVisible() and window.search.verdict.text().startswith("No strong match")
    window.search.filter.min_p.setValue(0.2)
    assert [h.probability for h in window.search.model.hits] == pytest.approx([0.3, 0.25, 0.2])
    assert set(window.map.view.highlighted().values()) <= {1, 2, 3}
    window.search.filter.min_p.setValue(0.0)
    window.search.filter.top.setValue(2)
    assert len(window.search.model.hits) == 2
    strong = SearchOutcome(hits=[Hit(rank=1, tile=tiles[0], probability=0.93)], seconds=0.01, source="strong.wav")
    window.search.show_outcome(strong)
    assert not window.search.verdict.isVisible()
    assert window.settings.results_top == 2  # the filter is remembered
    window.close()


def test_menus_shortcuts_help_and_remembered_geometry(qtbot, world, tmp_path: Path) -> None:
    from PySide6.QtGui import QKeySequence
    from PySide6.QtWidgets import QTextBrowser

    settings = make_settings(tmp_path)
    window = make_window(qtbot, world, tmp_path, settings=settings)
    shortcuts = {a.text().replace("&", ""): a.shortcut() for m in window.desktop.menus.values() for a in m.actions()}
    assert shortcuts["Open library…"] == QKeySequence(QKeySequence.StandardKey.Open)
    assert shortcuts["Quit"] == QKeySequence(QKeySequence.StandardKey.Quit)
    assert shortcuts["dvan Help"] == QKeySequence(QKeySequence.StandardKey.HelpContents)
    assert shortcuts["Export results…"] == QKeySequence("Ctrl+E")
    window.desktop.menus["Help"].actions()[0].trigger()
    text = window.desktop.help.findChild(QTextBrowser).toPlainText()  # type: ignore[union-attr]
    assert "What p means" in text and "not a calibrated probability" in text and "Ctrl+Q" in text
    window.desktop.help.close()  # type: ignore[union-attr]
    # the offscreen screen is 800 x 800: a height of 560 fits it and differs from the default 900
    window.setGeometry(0, 50, window.minimumSizeHint().width(), 560)
    closed_size = window.size()
    window.close()
    from app.main_window import MainWindow

    again = MainWindow(make_backend(world), settings)  # type: ignore[arg-type]
    qtbot.addWidget(again)
    again.show()
    assert again.size() == closed_size and closed_size.height() == 560
    again.desktop.light_theme.trigger()
    assert settings.theme == "light"
    again.desktop.light_theme.trigger()
    assert settings.theme == "dark"
    again.close()


def test_map_opens_fitted_fits_results_and_has_a_scale_bar_and_copyable_coordinates(qtbot, world, tmp_path: Path) -> None:
    from PySide6.QtCore import QPoint
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    window = make_window(qtbot, world, tmp_path)
    window.tabs.setCurrentWidget(window.map)
    qtbot.wait(20)
    view = window.map.view
    port = view.viewport().rect()
    shown = view.mapFromScene(view._tiles_rect).boundingRect()
    assert shown.width() > 0.6 * port.width() or shown.height() > 0.6 * port.height()
    # the scale bar's length matches the ground distance it names, at the view's latitude
    metres, pixels, label = view.scale_bar()
    assert 0 < pixels <= 140 and label.endswith(("m", "km"))
    left, right = view.mapToScene(QPoint(0, 0)), view.mapToScene(QPoint(pixels, 0))
    # scene x is lon * cos(lat0): one scene unit is a degree of latitude's length in either direction
    assert (right.x() - left.x()) * 111_320.0 == pytest.approx(metres, rel=0.02)
    # results: the view fits them (not the whole library)
    window.tabs.setCurrentWidget(window.search)
    search(qtbot, window, world["query_stripes"])
    window.tabs.setCurrentWidget(window.map)
    qtbot.wait(20)
    highlighted = list(view.highlighted())
    rect = view.items_by_id[highlighted[0]].boundingRect()
    for tile_id in highlighted[1:]:
        rect = rect.united(view.items_by_id[tile_id].boundingRect())
    on_screen = view.mapFromScene(rect).boundingRect()
    assert port.contains(on_screen.center())
    assert on_screen.width() > 0.6 * port.width() or on_screen.height() > 0.6 * port.height()
    QTest.mouseMove(view.viewport(), QPoint(123, 77))
    lon, lat = view.cursor_lonlat or (0.0, 0.0)
    assert window.map.copy_cursor() == f"{lat:.6f}, {lon:.6f}" == QApplication.clipboard().text()
    window.close()


def test_space_auto_repeat_as_release_press_pairs_is_one_recording(qtbot, world, tmp_path: Path) -> None:
    from PySide6.QtCore import Qt
    from test_app_search import ScriptedRecorder

    samples, rate = sf.read(world["query_meadow"], dtype="float32")
    window = make_window(qtbot, world, tmp_path)
    scripted = ScriptedRecorder(np.asarray(samples), rate)
    window.search.recorder = scripted
    window.search.grid.setFocus()
    qtbot.keyPress(window.search.grid, Qt.Key.Key_Space)
    for _ in range(3):  # X11 auto-repeat: release + press, neither flagged as a repeat
        qtbot.keyRelease(window.search.grid, Qt.Key.Key_Space)
        qtbot.keyPress(window.search.grid, Qt.Key.Key_Space)
    assert scripted.started == 1 and scripted.recording
    with qtbot.waitSignal(window.search.search_done, timeout=30000):
        qtbot.keyRelease(window.search.grid, Qt.Key.Key_Space)
    assert scripted.started == 1 and window.search.model.rowCount() > 0
    window.close()


def test_open_in_qgis_hands_the_export_to_qgis_on_path(qtbot, world, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    # a stand-in "qgis" executable on PATH that records what it was asked to open (QGIS itself is not installed)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    opened = tmp_path / "opened.txt"
    script = bin_dir / "qgis"
    script.write_text(f"#!/bin/sh\nprintf '%s' \"$1\" > {opened}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    window = make_window(qtbot, world, tmp_path)
    action = window.desktop.open_in_qgis
    assert action.isVisible() and not action.isEnabled()
    search(qtbot, window, world["query_dots"])
    written = window.search.export_results(tmp_path / "results.geojson")
    assert written is not None and action.isEnabled()
    action.trigger()
    qtbot.waitUntil(lambda: opened.is_file() and opened.read_text() == str(written), timeout=10000)
    window.close()
