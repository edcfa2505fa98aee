"""Captions tab: an image file or a result tile dropped -> the library's spoken captions ranked; click plays."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_support import backend_fixture, drag_enter, drop_on, file_mime, make_settings, world_fixture  # noqa: F401 - pytest fixtures, used by name


class RecordingPlayer:
    """Stands in for app.audio.Player: remembers what it was asked to play."""

    def __init__(self) -> None:
        self.played: list[Path] = []

    def play_file(self, path: Path, device: str | None = None) -> float:
        self.played.append(Path(path))
        return 1.5

    def stop(self) -> None:
        pass


def make_panel(qtbot, backend, tmp_path: Path, player=None):
    from app.captions_panel import CaptionsPanel
    from app.thumbs import ImageCache

    panel = CaptionsPanel(backend, make_settings(tmp_path), ImageCache(backend), player=player)  # type: ignore[arg-type]
    qtbot.addWidget(panel)
    panel.resize(1100, 700)
    panel.show()
    return panel


def drop(widget, data) -> None:
    assert drag_enter(widget, data)
    drop_on(widget, data)


def test_dropped_result_tile_ranks_captions_like_the_engine(qtbot, backend, tmp_path: Path) -> None:
    from PySide6.QtCore import QByteArray, QMimeData

    from app.search_panel import TILE_MIME
    from dvan.search.engine import SearchEngine

    player = RecordingPlayer()
    panel = make_panel(qtbot, backend, tmp_path, player)
    tile = next(t for t in backend.tiles() if t.source.name.startswith("stripes"))
    data = QMimeData()
    data.setData(TILE_MIME, QByteArray(str(tile.id).encode()))
    with qtbot.waitSignal(panel.ranked, timeout=30000) as blocker:
        drop(panel.drop, data)
    hits = blocker.args[0]
    engine = SearchEngine(backend.library, backend.trained_bundle())
    expected = engine.captions(tile.id, top_k=len(hits))
    assert [str(h.audio) for h in hits] == [str(h.caption.audio) for h in expected]
    assert [h.probability for h in hits] == pytest.approx([h.probability for h in expected], abs=1e-6)
    assert panel.list.count() == len(hits) == len(backend.library.captions())
    assert panel.query_label.text() == f"Tile: {tile.name}"
    assert panel.preview.has_image()
    # clicking a caption plays it and shows its text from the manifest
    item = panel.list.item(2)
    panel.list.itemClicked.emit(item)
    assert player.played == [hits[2].audio]
    assert panel.caption_text.text() == hits[2].text


def test_dropped_image_file_ranks_captions(qtbot, backend, world, tmp_path: Path) -> None:
    from PySide6.QtCore import QMimeData, QUrl

    panel = make_panel(qtbot, backend, tmp_path, RecordingPlayer())
    image = world["manifest"].parent / "images" / "dots" / "dots03.png"
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(image))])
    with qtbot.waitSignal(panel.ranked, timeout=30000) as blocker:
        drop(panel.drop, data)
    hits = blocker.args[0]
    assert len(hits) == len(backend.library.captions())
    assert all(a.probability >= b.probability for a, b in zip(hits, hits[1:], strict=False))
    assert "spoken captions ranked for dots03.png" in panel.heading.text()
    assert panel.preview.has_image()


def test_not_an_image_is_refused_by_the_drop_area(qtbot, backend, world, tmp_path: Path) -> None:
    panel = make_panel(qtbot, backend, tmp_path)
    assert not drag_enter(panel.drop, file_mime(world["query_dots"]))


def test_playback_without_an_output_device_is_a_message(qtbot, backend, world, tmp_path: Path) -> None:
    from app.captions_panel import CaptionsPanel
    from app.thumbs import ImageCache
    from app.types import RankedCaption

    settings = make_settings(tmp_path, output_device="No Such Speaker")
    panel = CaptionsPanel(backend, settings, ImageCache(backend))  # type: ignore[arg-type]
    qtbot.addWidget(panel)
    audio = next(iter(backend.library.captions())).audio
    panel.play(RankedCaption(rank=1, probability=0.5, audio=audio, text="a text"))
    assert "Cannot play" in panel.heading.text() and "No Such Speaker" in panel.heading.text()
    assert panel.caption_text.text() == "a text"
