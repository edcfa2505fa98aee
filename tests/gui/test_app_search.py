"""Search tab: ranked grid equal to the search engine's, tile details, no-speech and microphone errors, Space key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from app_support import (
    drop_on,
    file_mime,
    make_backend,
    make_settings,
    world_fixture,  # noqa: F401 - pytest fixtures, used by name
)

from app.audio import Recorder


class ScriptedRecorder(Recorder):
    """A recorder whose "microphone" returns prepared samples (for key and button wiring tests)."""

    def __init__(self, samples: np.ndarray, rate: int) -> None:
        super().__init__()
        self.samples, self.sample_rate = samples, rate
        self.started = 0
        self._open = False

    @property
    def recording(self) -> bool:
        return self._open

    def start(self, device: str | None = None) -> None:
        self.started += 1
        self._open = True

    def stop(self) -> tuple[np.ndarray, int]:
        self._open = False
        return self.samples, self.sample_rate


@pytest.fixture(scope="module")
def backend(world: dict[str, Path]):
    backend = make_backend(world)
    backend.warm_up()
    return backend


def make_panel(qtbot, backend, tmp_path: Path, recorder: Recorder | None = None, **settings: str):
    from app.search_panel import SearchPanel
    from app.thumbs import ImageCache

    panel = SearchPanel(backend, make_settings(tmp_path, **settings), ImageCache(backend), recorder=recorder)  # type: ignore[arg-type]
    qtbot.addWidget(panel)
    panel.resize(1200, 800)
    panel.show()
    return panel


def test_file_query_shows_the_engines_ranking_with_probabilities(qtbot, backend, world, tmp_path: Path) -> None:
    from dvan.search.engine import SearchEngine

    panel = make_panel(qtbot, backend, tmp_path)
    assert panel.model_banner.isHidden()
    with qtbot.waitSignal(panel.results_changed, timeout=30000) as blocker:
        panel.search_file(world["query_dots"])
    hits = blocker.args[0]
    engine = SearchEngine(backend.library, backend.trained_bundle())
    expected = engine.search(engine.encode_file(world["query_dots"]), top_k=len(hits))
    assert [h.tile.id for h in hits] == [h.tile.id for h in expected]
    assert [h.probability for h in hits] == pytest.approx([h.probability for h in expected], abs=1e-6)
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    # the grid shows them in order, each with rank and probability
    model = panel.model
    assert model.rowCount() == len(hits) == len(backend.tiles())
    first = model.index(0)
    assert model.data(first).startswith("#1 ")
    assert f"{hits[0].probability:.4f}" in model.data(first, 3)  # tooltip: rank and probability
    assert "results in" in panel.message.text()
    # the best result is selected and shown with its metadata
    assert panel.details.title.text().startswith(f"#1 · p = {hits[0].probability:.4f}")
    assert panel.details.fields["Source file"] == str(hits[0].tile.source)
    assert panel.replay_button.isEnabled()


def test_selecting_a_georeferenced_result_shows_crs_footprint_and_asks_the_map(qtbot, backend, world,
                                                                               tmp_path: Path) -> None:
    panel = make_panel(qtbot, backend, tmp_path)
    with qtbot.waitSignal(panel.results_changed, timeout=30000):
        panel.search_file(world["query_stripes"])
    row = next(i for i, h in enumerate(panel.model.hits) if h.tile.georeferenced and h.tile.crs == "EPSG:32611")
    tile = panel.model.hits[row].tile
    other = 1 if row == 0 else 0
    panel.grid.setCurrentIndex(panel.model.index(other))  # the best result starts selected
    with qtbot.waitSignal(panel.tile_selected) as blocker:
        panel.grid.setCurrentIndex(panel.model.index(row))
    assert blocker.args == [tile.id]
    fields = panel.details.fields
    assert fields["CRS"] == "EPSG:32611"
    assert fields["Pixel size"].startswith("0.5 × 0.5")
    col, top, width, height = tile.window
    assert fields["Pixel window"].startswith(f"columns {col}–{col + width}, rows {top}–{top + height}")
    lon, lat = tile.lonlat_polygon[0]  # type: ignore[index]
    assert f"top-left: {lon:.6f}, {lat:.6f}" in fields["Footprint (lon, lat)"]
    assert panel.details.image.has_image()


def test_silence_and_a_short_press_say_no_speech_and_do_not_search(qtbot, backend, tmp_path: Path) -> None:
    panel = make_panel(qtbot, backend, tmp_path)
    with qtbot.assertNotEmitted(panel.results_changed, wait=300):
        assert panel.handle_recording(np.zeros(32000, dtype=np.float32), 16000) is False
    assert panel.message.text().startswith("No speech heard")
    rng = np.random.default_rng(0)
    with qtbot.assertNotEmitted(panel.results_changed, wait=300):
        assert panel.handle_recording(rng.normal(0, 0.05, 2400).astype(np.float32), 16000) is False
    assert "No speech heard" in panel.message.text() and "0.15 s" in panel.message.text()
    assert panel.model.rowCount() == 0 and panel.query is None


def test_a_recording_is_cut_to_its_speech_before_it_is_searched(qtbot, backend, world, tmp_path: Path) -> None:
    samples, rate = sf.read(world["query_dots"], dtype="float32")
    silence = np.zeros(rate, dtype=np.float32)
    recording = np.concatenate([silence, samples, silence])  # a second before and after the speech
    recording += np.random.default_rng(1).normal(0, 0.003, recording.size).astype(np.float32)  # room noise throughout
    panel = make_panel(qtbot, backend, tmp_path)
    with qtbot.waitSignal(panel.search_done, timeout=30000):
        assert panel.handle_recording(recording, rate)
    assert panel.query is not None  # what both branches (the ranking, then the transcript) are given
    loud = np.flatnonzero(np.abs(samples) > 0.02)
    speech_length = loud[-1] - loud[0]
    # the padding is gone, the speech is kept
    assert 0.9 * speech_length < panel.query[0].size <= samples.size  # type: ignore[index]
    assert panel.model.rowCount() > 0


def test_space_key_holds_to_speak_and_searches(qtbot, backend, world, tmp_path: Path) -> None:
    from PySide6.QtCore import Qt

    from app.main_window import MainWindow

    samples, rate = sf.read(world["query_meadow"], dtype="float32")
    window = MainWindow(backend, make_settings(tmp_path))  # type: ignore[arg-type]
    qtbot.addWidget(window)
    scripted = ScriptedRecorder(samples, rate)
    window.search.recorder = scripted
    window.show()
    window.search.grid.setFocus()
    qtbot.keyPress(window.search.grid, Qt.Key.Key_Space)
    assert scripted.recording and scripted.started == 1
    qtbot.keyPress(window.search.grid, Qt.Key.Key_Space, delay=-1)  # auto-repeat is ignored while held
    with qtbot.waitSignal(window.search.search_done, timeout=30000) as blocker:
        qtbot.keyRelease(window.search.grid, Qt.Key.Key_Space)
    assert blocker.args[0] < 30000
    assert window.search.model.rowCount() > 0
    assert window.map.view.highlighted()  # results reached the map
    # Space typed into a text field is text, not a recording
    window.tabs.setCurrentWidget(window.training)
    window.training.record_text.setFocus()
    qtbot.keyClick(window.training.record_text, Qt.Key.Key_Space)
    assert scripted.started == 1
    window.close()


def test_missing_microphone_is_a_clear_message_and_the_app_stays_usable(qtbot, backend, world, tmp_path: Path) -> None:
    panel = make_panel(qtbot, backend, tmp_path, input_device="No Such Microphone 3000")
    panel.press()
    assert not panel.recorder.recording
    text = panel.message.text()
    assert text.startswith("Microphone problem:") and "No Such Microphone 3000" in text and "Settings" in text
    panel.release()  # releasing without a recording does nothing
    with qtbot.waitSignal(panel.results_changed, timeout=30000):
        panel.search_file(world["query_dots"])
    assert panel.model.rowCount() > 0


def test_dropping_an_audio_file_searches(qtbot, backend, world, tmp_path: Path) -> None:
    panel = make_panel(qtbot, backend, tmp_path)
    with qtbot.waitSignal(panel.results_changed, timeout=30000):
        drop_on(panel.drop, file_mime(world["query_stripes"]))
    assert panel.query_file == world["query_stripes"]


def test_untrained_model_never_shows_results(qtbot, world, tmp_path: Path) -> None:
    from app.backend import Backend
    from dvan.config import ModelConfig
    from dvan.model.checkpoint import save_checkpoint
    from dvan.model.dvan import DVAN

    untrained = save_checkpoint(DVAN(ModelConfig()), tmp_path / "untrained.safetensors", info={"preset": "none"})
    backend = Backend(device="cpu", model_path=untrained)
    backend.open_library(world["library"])
    panel = make_panel(qtbot, backend, tmp_path)
    assert not panel.model_banner.isHidden()
    assert "untrained" in panel.model_banner.text()
    with qtbot.waitSignal(panel.worker.signals.done if panel.worker else panel.status, timeout=30000):
        panel.search_file(world["query_dots"])
    qtbot.waitUntil(lambda: not panel.busy, timeout=30000)
    assert panel.model.rowCount() == 0
    assert "not marked as trained" in panel.message.text()


def test_a_recording_searches_like_its_file_however_late_the_speech_starts(backend, world) -> None:
    from dvan.audio.record import frame_recording

    samples, rate = sf.read(world["query_stripes"], dtype="float32")
    from_file = backend.search_file(world["query_stripes"])
    for lead in (0, 37, 1234):  # zeros a device delivered before the signal
        recorded = np.concatenate([np.zeros(lead, dtype=np.float32), samples, np.zeros(500, dtype=np.float32)])
        outcome = backend.search_waveform(recorded, rate)
        assert [h.tile.id for h in outcome.hits] == [h.tile.id for h in from_file.hits]
        assert [h.probability for h in outcome.hits] == pytest.approx([h.probability for h in from_file.hits],
                                                                       abs=1e-6)
    framed = frame_recording(np.array([0, 0, 0.5, -0.5, 0], dtype=np.float32), 16000, 16000, 80)
    assert framed.size == 2 * 4800 + 2 and framed[4800] == 0.5


def test_recording_stops_at_the_limit_with_a_message_and_searches(qtbot, backend, world, tmp_path: Path) -> None:
    samples, rate = sf.read(world["query_dots"], dtype="float32")
    recorder = Recorder(max_seconds=1.0)
    panel = make_panel(qtbot, backend, tmp_path, recorder=recorder)
    # what the PortAudio callback would deliver: 512-sample blocks of speech, past the limit
    class OpenStream:
        def stop(self) -> None:
            pass

        def close(self) -> None:
            pass

    recorder._stream = OpenStream()  # an open stream, as far as the panel can tell
    recorder._rate = rate
    for start in range(0, samples.size, 512):
        recorder._callback(samples[start:start + 512, None], 512, None, None)
    assert recorder.seconds == pytest.approx(1.0)
    with qtbot.waitSignal(panel.search_done, timeout=30000):
        recorder._poll()  # the GUI timer notices the limit
    assert not recorder.recording
    assert "recording was cut at the 1 s limit" in panel.message.text()
    # the second recorded, cut to its speech (dvan.audio.vad.check_speech)
    assert panel.query is not None and 0.5 * rate < panel.query[0].size <= rate  # type: ignore[index]
    assert panel.model.rowCount() > 0


def test_replay_plays_the_last_query(qtbot, backend, world, tmp_path: Path) -> None:
    panel = make_panel(qtbot, backend, tmp_path)
    played: list[tuple[int, int]] = []
    panel.player.play = lambda samples, rate, device=None: played.append((len(samples), rate))  # type: ignore[method-assign]
    samples, rate = sf.read(world["query_meadow"], dtype="float32")
    with qtbot.waitSignal(panel.search_done, timeout=30000):
        panel.handle_recording(samples, rate)
    panel.replay_button.click()
    # what was searched: the recording cut to its speech
    assert panel.query is not None and played == [(panel.query[0].size, rate)]
    assert 0.5 * samples.size < panel.query[0].size <= samples.size


def test_result_tiles_drag_as_tile_ids(qtbot, backend, world, tmp_path: Path) -> None:
    from app.search_panel import TILE_MIME

    panel = make_panel(qtbot, backend, tmp_path)
    with qtbot.waitSignal(panel.results_changed, timeout=30000):
        panel.search_file(world["query_dots"])
    data = panel.model.mimeData([panel.model.index(1)])
    assert bytes(data.data(TILE_MIME).data()).decode() == str(panel.model.hits[1].tile.id)
    assert panel.grid.dragEnabled()


def test_a_missing_model_turns_search_off_with_what_to_do(qtbot, world, tmp_path: Path) -> None:
    from app.backend import Backend

    backend = Backend(device="cpu", model_path=tmp_path / "gone.safetensors")
    backend.open_library(world["library"])
    panel = make_panel(qtbot, backend, tmp_path)
    assert not panel.model_banner.isHidden()
    text = panel.model_banner.text()
    assert "gone.safetensors is not there" in text and "Settings" in text
