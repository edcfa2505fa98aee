"""Training tab: collections (manifest, folder), recorded and generated captions, fine-tuning with live curves,
cancel and resume, comparison, activation and restore."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from app_support import (
    make_settings,
    world_fixture,  # noqa: F401 - pytest fixtures, used by name
)


@pytest.fixture
def panel(qtbot, world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from app.backend import Backend
    from app.training_panel import TrainingPanel

    monkeypatch.setenv("DVAN_APP_DATA", str(tmp_path / "appdata"))
    monkeypatch.setenv("DVAN_CACHE", str(world["cache"]))
    backend = Backend(device="cpu", model_path=world["model"])
    backend.open_library(world["library"])
    settings = make_settings(tmp_path, active_model=str(world["model"]))
    widget = TrainingPanel(backend, settings)  # type: ignore[arg-type]
    qtbot.addWidget(widget)
    widget.resize(1300, 850)
    widget.show()
    return widget


def test_manifest_collection_is_listed_with_splits_and_captions(panel, world) -> None:
    assert panel.load_collection(world["manifest"])
    assert panel.table.rowCount() == 15
    assert panel.collection_summary.text().startswith("15 images of 3 classes, 30 spoken captions (train 18, val 6, "
                                                      "test 6)")
    panel.table.selectRow(3)
    assert panel.caption_list.count() == 2
    assert panel.preview.has_image()
    assert panel.record_button.isEnabled() and panel.start_button.isEnabled()


def test_folder_collection_gets_a_manifest_and_a_recorded_caption(panel, world, tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    for label in ("stripes", "dots"):
        shutil.copytree(world["manifest"].parent / "images" / label, folder / label)
    first = folder / "dots" / "dots00.png"
    shutil.copy(world["query_dots"], first.with_name("dots00_a.wav"))
    first.with_suffix(".txt").write_text("many round dots are scattered around\n")
    assert panel.load_collection(folder)
    assert panel.manifest == folder / "dvan_collection.jsonl"
    assert panel.table.rowCount() == 10
    assert "1 spoken captions" in panel.collection_summary.text()
    row = next(i for i, item in enumerate(panel.images) if item.image == first)
    assert panel.table.item(row, 4).text() == "many round dots are scattered around"

    target = next(i for i in panel.images if i.image.name == "stripes02.png")
    speech, rate = sf.read(world["query_stripes"], dtype="float32")
    saved = panel.save_caption(target, speech, rate)
    assert saved == folder / "stripes" / "stripes02_rec1.wav" and saved.is_file()
    assert panel.collection_summary.text().startswith("Saved stripes02_rec1.wav (")
    row = next(i for i, item in enumerate(panel.images) if item.image == target.image)
    assert panel.table.item(row, 3).text() == "1"
    assert sum(len(i.audio) for i in panel.images) == 2
    manifest_lines = panel.manifest.read_text().splitlines()
    assert any("stripes02_rec1.wav" in line for line in manifest_lines)
    # silence is refused
    assert panel.save_caption(target, np.zeros(16000, dtype=np.float32), 16000) is None
    assert panel.collection_summary.text().startswith("No speech heard")
    assert not (folder / "stripes" / "stripes02_rec2.wav").exists()


def test_fine_tune_curves_cancel_resume_compare_activate_restore(qtbot, panel, world, tmp_path: Path) -> None:
    panel.load_collection(world["manifest"])
    panel.preset.setCurrentIndex(panel.preset.findData("paper"))
    # cancel during the first epoch: the run stops, nothing is activated
    worker = panel.start_training(epochs=2)
    assert worker is not None and not panel.start_button.isEnabled()
    worker.signals.progress.connect(lambda r: panel.cancel_training() if r.stage == "train" and r.done >= 1 else None)
    with qtbot.waitSignal(worker.signals.done, timeout=120000):
        pass
    assert "training cancelled" in panel.collection_summary.text(), panel.collection_summary.text()
    assert not panel.activate_button.isEnabled()

    # a full (short) run: live curves from the training log, then the comparison
    worker = panel.start_training(resume=True, epochs=2)
    assert worker is not None
    with qtbot.waitSignal(worker.signals.done, timeout=180000):
        pass
    assert panel.new_checkpoint is not None, panel.collection_summary.text()
    assert "training finished" in panel.collection_summary.text()
    assert panel.curves.epochs == [1, 2]
    assert panel.loss_chart.point_count() >= 2 + len(panel.curves.steps)
    assert panel.val_chart.point_count() == 3 * 2
    assert panel.compare_table.item(0, 1).text() == f"{panel.new_val['map']:.4f}"  # type: ignore[index]
    qtbot.waitUntil(lambda: panel.current_val is not None, timeout=120000)
    assert panel.compare_table.item(0, 0).text() == f"{panel.current_val['map']:.4f}"  # type: ignore[index]
    assert panel.activate_button.isEnabled()

    with qtbot.waitSignal(panel.model_activated) as blocker:
        activated = panel.activate_new_model()
    assert activated is not None and activated.is_file()
    assert blocker.args == [str(activated)]
    assert panel.settings.active_model == str(activated)
    assert panel.settings.previous_models[0] == str(world["model"])
    assert panel.previous.count() == 1 and panel.restore_button.isEnabled()

    with qtbot.waitSignal(panel.model_activated) as blocker:
        panel.restore_previous()
    assert blocker.args == [str(world["model"])]
    assert panel.settings.active_model == str(world["model"])
    assert panel.settings.previous_models[0] == str(activated)


def test_speaking_text_captions_makes_a_collection(qtbot, panel, tmp_path: Path) -> None:
    from make_captions import make_captions

    files = make_captions(tmp_path / "captions")
    worker = panel.speak(files["jsonl"], tmp_path / "spoken", limit=3)
    assert worker is not None
    with qtbot.waitSignal(worker.signals.done, timeout=60000):
        pass
    assert panel.manifest == tmp_path / "spoken" / "manifest.jsonl", panel.collection_summary.text()
    assert panel.table.rowCount() >= 2
    assert len(list((tmp_path / "spoken").rglob("*.wav"))) == 3


def test_activating_a_model_recomputes_the_library_projections_with_progress(qtbot, world, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from app_support import copy_library, make_backend

    from app.main_window import MainWindow
    from dvan.model.checkpoint import load_checkpoint, save_checkpoint

    monkeypatch.setenv("DVAN_APP_DATA", str(tmp_path / "appdata"))
    library = copy_library(world, tmp_path / "library")
    model, info = load_checkpoint(world["model"])
    with torch.no_grad():
        model.fusion.image_proj.weight.mul_(0.9)  # another trained model: other gallery projections
    other = save_checkpoint(model, tmp_path / "other.safetensors", info={**info, "trained": True})
    backend = make_backend(world, library=library)
    window = MainWindow(backend, make_settings(tmp_path, active_model=str(world["model"])))  # type: ignore[arg-type]
    qtbot.addWidget(window)
    window.show()
    progress = []
    window.model_changed(str(other))
    worker = window.prepare_worker
    assert worker is not None and worker.running
    assert window.job_bar.isVisibleTo(window) and not window.search.talk.isEnabled()
    worker.signals.progress.connect(progress.append)
    with qtbot.waitSignal(window.projections_ready, timeout=120000):
        pass
    assert progress and {r.stage for r in progress} >= {"reproject"}
    assert not backend.needs_projection()
    assert window.search.talk.isEnabled() and not window.job_bar.isVisibleTo(window)
    assert window.settings.active_model == str(other)
    assert window.model_label.text() == "Model: other.safetensors"
    outcome = backend.search_file(world["query_dots"])
    assert outcome.hits and backend.trained_bundle().checkpoint == other


def test_start_keeps_earlier_runs_and_clears_the_old_comparison(qtbot, panel, world) -> None:
    panel.load_collection(world["manifest"])
    first = panel._new_run_dir()
    assert first is not None and panel._run_dir_for_ui() == first
    first.mkdir(parents=True)
    (first / "train_log.jsonl").write_text('{"kind": "epoch"}\n')  # a finished earlier run
    panel.new_val, panel.current_val = {"map": 0.75}, {"map": 0.5}
    panel.new_checkpoint = first / "best.safetensors"
    panel.show_comparison()
    assert panel.compare_table.item(0, 1).text() == "0.7500"
    worker = panel.start_training(epochs=1)
    assert worker is not None
    assert panel.run_dir is not None and panel.run_dir != first and panel.run_dir.name == f"{first.name}-2"
    assert panel.compare_table.item(0, 1).text() == "–" and "Training a new model" in panel.compare_note.text()
    worker.cancel()
    with qtbot.waitSignal(worker.signals.done, timeout=300000):  # the job server may still be starting
        pass
    assert (first / "train_log.jsonl").read_text() == '{"kind": "epoch"}\n'
    assert panel._run_dir_for_ui() == panel.run_dir  # Resume continues the newest run


def test_plain_numbers_small_validation_warning_and_projections_line(panel, world) -> None:
    from app.training_panel import METRIC_HELP, METRICS, RECOMPUTING

    panel.load_collection(world["manifest"])
    headers = [panel.compare_table.verticalHeaderItem(i) for i in range(len(METRICS))]
    assert headers[0].text() == "Overall ranking quality (MAP)"  # type: ignore[union-attr]
    assert [h.toolTip() for h in headers] == [METRIC_HELP[key] for key, _ in METRICS]  # type: ignore[union-attr]
    assert "in-batch" not in panel.preset.itemText(0) and "recommended" in panel.preset.itemText(0)
    assert panel.validation_captions() == 6
    panel.new_val, panel.current_val = {"map": 0.61}, {"map": 0.58}
    panel.new_checkpoint = world["model"]
    panel.show_comparison()
    assert "Only 6 spoken captions are in the validation split" in panel.compare_note.text()
    question = panel.activation_question()
    assert "0.580 now, 0.610 with the new model" in question and "Only 6 spoken captions" in question
    panel.say(f"Activated model-x.safetensors; {RECOMPUTING}.")
    panel.projections_done()
    assert panel.collection_summary.text() == ("Activated model-x.safetensors; the library's projections are up to "
                                               "date for it.")
