"""Search tab, query understanding: typed queries, the transcript under the button, refinement in hybrid mode.

Real Whisper tiny.en and all-MiniLM-L6-v2; the world's tiny model gets a text branch trained on its
own collection's words (seconds).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from app_support import (
    make_backend,
    make_settings,
    world_fixture,  # noqa: F401 - pytest fixtures, used by name
)
from PySide6.QtCore import Qt


@pytest.fixture(scope="module")
def text_backend(world: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """A backend on the world's model with a text branch added."""
    from dvan.train.text import TextTrainConfig, train_text_branch

    out = tmp_path_factory.mktemp("model") / "with_text.safetensors"
    train_text_branch(world["model"], [world["manifest"]], out, TextTrainConfig(epochs=60, batch_size=8, lr=1e-2),
                      device="cpu", cache_dir=world["cache"])
    backend = make_backend(world, model=out)
    backend.warm_up()
    return backend


def make_panel(qtbot, backend, tmp_path: Path, **settings: str):
    from app.search_panel import SearchPanel
    from app.thumbs import ImageCache

    panel = SearchPanel(backend, make_settings(tmp_path, **settings), ImageCache(backend))  # type: ignore[arg-type]
    qtbot.addWidget(panel)
    panel.resize(1200, 800)
    panel.show()
    return panel


def test_enter_in_the_search_box_ranks_by_the_typed_words(qtbot, text_backend, tmp_path: Path) -> None:
    panel = make_panel(qtbot, text_backend, tmp_path)
    panel.text_query.setText("  a smooth   green meadow ")
    with qtbot.waitSignal(panel.results_changed, timeout=30000) as blocker:
        qtbot.keyClick(panel.text_query, Qt.Key.Key_Return)
    hits = blocker.args[0]
    engine = text_backend.engine()
    expected = engine.search(engine.encode_text("a smooth green meadow"), top_k=len(hits))
    assert [h.tile.id for h in hits] == [h.tile.id for h in expected]
    assert panel.outcome.mode == "text" and "by words “a smooth green meadow”" in panel.summary.text()
    assert panel.heard.text() == ""  # nothing was spoken: no recogniser runs


def test_spoken_query_shows_audio_ranking_first_then_what_was_heard_and_the_hybrid_ranking(
        qtbot, text_backend, world, tmp_path: Path) -> None:
    panel = make_panel(qtbot, text_backend, tmp_path, query_mode="hybrid")
    assert panel.mode_box.currentData() == "hybrid" and text_backend.query_mode == "hybrid"
    first: list[str] = []
    panel.search_done.connect(lambda _ms: first.append(panel.outcome.mode))
    panel.search_file(world["query_meadow"])
    qtbot.waitUntil(lambda: panel.last_refined_ms is not None, timeout=60000)
    assert first == ["audio"]  # the audio branch's ranking was shown before the words were heard
    assert panel.heard.text().startswith("Heard: “") and "green" in panel.heard.text().lower()
    assert panel.outcome.mode == "hybrid" and "voice + words" in panel.summary.text()
    assert panel.last_latency_ms is not None and panel.last_latency_ms <= panel.last_heard_ms <= panel.last_refined_ms


def test_mode_choice_is_saved_and_a_model_without_text_branch_says_what_to_do(qtbot, world, tmp_path: Path) -> None:
    from app.settings import AppSettings

    backend = make_backend(world)
    panel = make_panel(qtbot, backend, tmp_path)
    panel.mode_box.setCurrentIndex(panel.mode_box.findData("text"))
    assert AppSettings.from_file(tmp_path / "settings.ini").query_mode == "text"
    panel.text_query.setText("dots")
    qtbot.keyClick(panel.text_query, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not panel.busy, timeout=30000)
    assert "no text branch" in panel.message.text() and "train-text" in panel.message.text()
    # spoken queries still rank (audio branch), and the transcript still comes
    with qtbot.waitSignal(panel.results_changed, timeout=30000):
        panel.search_file(world["query_dots"])
    qtbot.waitUntil(lambda: panel.heard.text().startswith(("Heard", "No transcript")), timeout=60000)
    assert panel.heard.text().startswith("Heard: “") and panel.outcome.mode == "audio"
