"""Map tab: footprints in WGS84, unplaced tiles listed, results by rank, pan/zoom, cursor lon/lat, thumbnails."""

from __future__ import annotations

import pytest
from app_support import backend_fixture, make_settings, world_fixture  # noqa: F401 - pytest fixtures, used by name


def make_map(qtbot, backend):
    from app.map_view import MapPanel
    from app.thumbs import ImageCache

    images = ImageCache(backend)
    panel = MapPanel(images.thumbnail)
    qtbot.addWidget(panel)
    panel.resize(1000, 700)
    panel.show()
    panel.set_tiles(backend.tiles())
    return panel


def test_georeferenced_tiles_are_placed_and_the_others_listed(qtbot, backend) -> None:
    panel = make_map(qtbot, backend)
    tiles = backend.tiles()
    placed = {t.id for t in tiles if t.georeferenced}
    unplaced = [t for t in tiles if not t.georeferenced]
    assert placed and unplaced
    assert set(panel.view.items_by_id) == placed
    assert panel.unplaced.count() == len(unplaced)
    assert {panel.unplaced.item(i).text() for i in range(panel.unplaced.count())} == {t.name for t in unplaced}
    assert panel.summary.text().startswith(f"{len(placed)} tiles on the map, {len(unplaced)} without")
    # a footprint's scene polygon maps back to its lon/lat corners
    tile = next(t for t in tiles if t.georeferenced)
    item = panel.view.items_by_id[tile.id]
    for corner, (lon, lat) in zip(item.polygon, tile.lonlat_polygon or (), strict=True):
        back = panel.view.projection.to_lonlat(corner)
        assert back[0] == pytest.approx(lon, abs=1e-9) and back[1] == pytest.approx(lat, abs=1e-9)


def test_results_are_highlighted_by_rank_and_listed(qtbot, backend, world) -> None:
    panel = make_map(qtbot, backend)
    outcome = backend.search_file(world["query_stripes"])
    panel.set_results(outcome.hits)
    highlighted = panel.view.highlighted()
    expected = {h.tile.id: h.rank for h in outcome.hits[:20] if h.tile.georeferenced}
    assert highlighted == expected
    labels = sorted(int(label.text()) for label in panel.view._labels)
    assert labels == sorted(expected.values())
    ranked_unplaced = [h for h in outcome.hits[:20] if not h.tile.georeferenced]
    texts = [panel.unplaced.item(i).text() for i in range(panel.unplaced.count())]
    assert any(t.endswith(f"— rank {ranked_unplaced[0].rank}") for t in texts)
    # a new query replaces the highlight
    panel.set_results(outcome.hits[-1:])
    assert len(panel.view.highlighted()) <= 1


def test_centre_on_tile_zoom_and_thumbnails(qtbot, backend) -> None:
    panel = make_map(qtbot, backend)
    view = panel.view
    tile = next(t for t in backend.tiles() if t.georeferenced)
    overview = view.scale_factor()
    assert panel.centre_on_tile(tile.id)
    assert view.scale_factor() > overview
    centre = view.mapToScene(view.viewport().rect().center())
    lon, lat = view.projection.to_lonlat(centre)
    assert (lon, lat) == pytest.approx(tile.centre, abs=1e-5)
    item = view.items_by_id[tile.id]
    assert item.selected_tile
    view.viewport().grab()  # paint: zoomed in, the footprint draws its thumbnail
    assert item._thumbnail_tried and item.thumbnail() is not None
    far = next(i for i in view.items_by_id.values() if i is not item)
    view.fit_all()
    # an unplaced tile is selected in the list instead
    other = next(t for t in backend.tiles() if not t.georeferenced)
    assert not panel.centre_on_tile(other.id)
    assert panel.unplaced.currentItem().text().startswith(other.name)
    assert far.tile.id in view.items_by_id


def test_wheel_zooms_drag_pans_and_cursor_reports_lon_lat(qtbot, backend) -> None:
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent

    panel = make_map(qtbot, backend)
    view = panel.view
    before = view.scale_factor()
    centre = QPointF(view.viewport().rect().center())
    wheel = QWheelEvent(centre, view.viewport().mapToGlobal(centre), QPoint(0, 0), QPoint(0, 240),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    view.wheelEvent(wheel)
    assert view.scale_factor() == pytest.approx(before * 1.25**2)

    with qtbot.waitSignal(panel.cursor_moved) as blocker:
        qtbot.mouseMove(view.viewport(), QPoint(200, 150))
    lon, lat = blocker.args
    expected = view.projection.to_lonlat(view.mapToScene(QPoint(200, 150)))
    assert (lon, lat) == pytest.approx(expected, abs=1e-9)
    assert -180 <= lon <= 180 and -90 <= lat <= 90

    start = view.mapToScene(view.viewport().rect().center())
    qtbot.mousePress(view.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(300, 300))
    qtbot.mouseMove(view.viewport(), QPoint(340, 330))
    qtbot.mouseMove(view.viewport(), QPoint(400, 360))
    qtbot.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(400, 360))
    moved = view.mapToScene(view.viewport().rect().center())
    assert (moved - start).manhattanLength() > 0


def test_clicking_a_footprint_selects_the_tile_and_the_status_bar_shows_lon_lat(qtbot, backend, tmp_path) -> None:
    from PySide6.QtCore import QPoint, Qt

    from app.main_window import MainWindow

    window = MainWindow(backend, make_settings(tmp_path))
    qtbot.addWidget(window)
    window.resize(1300, 850)
    window.show()
    window.tabs.setCurrentWidget(window.map)
    view = window.map.view
    tile = next(t for t in backend.tiles() if t.georeferenced)
    view.centre_on_tile(tile.id)
    point = view.mapFromScene(view.items_by_id[tile.id].polygon.boundingRect().center())
    qtbot.mouseMove(view.viewport(), point)
    assert window.cursor_label.text().startswith("lon ")
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(point))
    assert window.map_details.title.text().endswith(tile.name)
    assert window.map_details.fields["Source file"] == str(tile.source)
    window.close()
