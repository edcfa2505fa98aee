"""Training: choose a collection, record or generate spoken captions, fine-tune with live curves, compare, activate.

The tab is three sections: the collection and its captions (:mod:`app.training_collection`),
fine-tuning (here), comparing and activating (:mod:`app.training_compare`).

* Fine-tune (:func:`dvan.train.loop.train`) through the tab's job controller, in a job server; the
  loss and validation curves are read from the run's training log while it runs. Cancel keeps the
  last finished epoch; Resume continues from it. Which folder a run uses, and the files in it, are
  :mod:`dvan.train.runs`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.audio import Player, Recorder
from app.backend import Backend
from app.chart import LineChart, Series
from app.collection import TrainingCurves, read_training_log
from app.job_control import JobController
from app.jobs import fine_tune
from app.settings import AppSettings
from app.training_collection import CollectionSection
from app.training_common import app_data_dir
from app.training_compare import DEFAULT_LABEL, METRIC_HELP, METRICS, MIN_VAL_CAPTIONS, RECOMPUTING, CompareSection
from app.widgets import JobBar, split_pair
from app.worker import Worker
from dvan.train import runs

__all__ = ["DEFAULT_LABEL", "METRICS", "METRIC_HELP", "MIN_VAL_CAPTIONS", "RECOMPUTING", "TrainingPanel",
           "app_data_dir"]


class TrainingPanel(CollectionSection, CompareSection):
    """The Training tab.

    Signals:
        status(str): a line for the status bar.
        model_activated(str): a checkpoint was activated (empty: the shipped default).
    """

    def __init__(self, backend: Backend, settings: AppSettings, recorder: Recorder | None = None,
                 player: Player | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        self.settings = settings
        self.recorder = recorder or Recorder(self)
        self.player = player or Player(self)
        self.manifest = None
        self.collection_path = None
        self.images = []
        self.run_dir = None
        self.new_checkpoint = None
        self.new_val = None
        self.current_val = None
        self.curves = TrainingCurves()
        self._recording_for = None
        self.eval_jobs = JobController(parent=self)
        self._arrange(self._build_collection_box(), self._build_image_box(), self._build_tune_box(),
                      self._build_compare_box())
        self.log_timer = QTimer(self)
        self.log_timer.setInterval(1000)
        self.log_timer.timeout.connect(self.refresh_curves)
        self.refresh()
        if settings.collection:
            self.load_collection(settings.collection, quiet=True)

    def _build_tune_box(self) -> QGroupBox:
        """2 · Fine-tune: recipe, epochs, batch, learning rate, Start / Resume with the job bar, the curves."""
        tune = QGroupBox("2 · Fine-tune the active model")
        self.preset = QComboBox()
        self.preset.addItem("dvan-plus (recommended): each caption against every image of a batch, varied audio",
                            "dvan-plus")
        self.preset.addItem("paper: equal numbers of matching and non-matching pairs, as published", "paper")
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 500)
        self.epochs.setValue(10)
        self.batch = QSpinBox()
        self.batch.setRange(2, 1024)
        self.batch.setValue(32)
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(6)
        self.lr.setRange(1e-6, 1e-1)
        self.lr.setSingleStep(1e-5)
        self.lr.setValue(1e-4)
        self.start_button = QPushButton("Start")
        self.resume_button = QPushButton("Resume")
        self.start_button.clicked.connect(lambda: self.start_training(resume=False))
        self.resume_button.clicked.connect(lambda: self.start_training(resume=True))
        self.job = JobBar(rate_unit="steps/s")
        self.jobs = JobController(self.job, rate_stage="train")
        self.run_label = QLabel("")
        self.run_label.setWordWrap(True)
        self.run_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # two rows: in one, the form alone was wider than a 1920-pixel screen at 150 % scaling leaves
        form = QGridLayout()
        form.addWidget(QLabel("Recipe:"), 0, 0)
        form.addWidget(self.preset, 0, 1, 1, 5)
        for column, (label, widget) in enumerate((("Epochs (at most):", self.epochs), ("Batch:", self.batch),
                                                  ("Learning rate:", self.lr))):
            form.addWidget(QLabel(label), 1, 2 * column)
            form.addWidget(widget, 1, 2 * column + 1)
        form.setColumnStretch(6, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.resume_button)
        buttons.addWidget(self.job, 1)
        self.loss_chart = LineChart("Training loss", "step", "loss")
        self.val_chart = LineChart("Validation", "epoch", "metric")
        self.val_chart.y_range = (0.0, 1.0)
        charts = QHBoxLayout()
        charts.addWidget(self.loss_chart)
        charts.addWidget(self.val_chart)
        tune_layout = QVBoxLayout(tune)
        tune_layout.addLayout(form)
        tune_layout.addLayout(buttons)
        tune_layout.addWidget(self.run_label)
        tune_layout.addLayout(charts, 1)
        return tune

    def _arrange(self, collection: QWidget, image_box: QWidget, tune: QWidget, compare: QWidget) -> None:
        """The sections in splitters: collection and image above, fine-tune and compare below."""
        top = split_pair(collection, image_box, (3, 2))
        bottom = split_pair(tune, compare, (3, 2), [860, 540])
        outer = QSplitter(Qt.Orientation.Vertical)
        outer.addWidget(top)
        outer.addWidget(bottom)
        # on a small or scaled screen (1920 x 1080 at 150 % leaves 1280 x 680) the tab scrolls instead of
        # pushing the window past the screen's edge, where labels were cut off
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(outer)
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll, 0, 0)

    def refresh(self) -> None:
        """Update the buttons, the active model line and the list of previous models."""
        status = self.backend.model_status()
        name = status.path.name if status.path else "none"
        self.active_label.setText(f"Active model: {name}" + ("" if status.trained else " (untrained)"))
        self.previous.clear()
        for path in self.settings.previous_models:
            self.previous.addItem(Path(path).name if path else DEFAULT_LABEL, path)
        self.restore_button.setEnabled(self.previous.count() > 0 and not self.busy)
        ready = self.manifest is not None and not self.busy
        self.start_button.setEnabled(ready)
        latest = self._run_dir_for_ui()
        self.resume_button.setEnabled(ready and latest is not None and runs.can_resume(latest))
        self.speak_button.setEnabled(not self.busy)

    # --- training ----------------------------------------------------------------------------
    def _runs_root(self) -> Path:
        return app_data_dir() / "runs"

    def _run_dir_for_ui(self) -> Path | None:
        """The latest run of this collection and recipe (Resume continues it; its curves are shown)."""
        if self.manifest is None:
            return None
        return runs.latest_run(self._runs_root(), self.manifest, str(self.preset.currentData()))

    def _new_run_dir(self) -> Path | None:
        """A fresh folder for Start: a finished or cancelled run is never overwritten."""
        if self.manifest is None:
            return None
        return runs.new_run(self._runs_root(), self.manifest, str(self.preset.currentData()))

    def start_training(self, resume: bool = False, epochs: int | None = None) -> Worker | None:
        """Fine-tune on the collection (resume: continue the last run of this collection and recipe)."""
        if self.busy or self.manifest is None:
            return None
        self.run_dir = self._run_dir_for_ui() if resume else self._new_run_dir()
        assert self.run_dir is not None
        base = self.backend.model_status().path
        self.new_checkpoint, self.new_val = None, None
        self.show_comparison()  # the previous run's numbers must not stand beside the run now training
        self.compare_note.setText("Training a new model: its validation numbers appear here when the run finishes.")
        self.activate_button.setEnabled(False)
        batch = int(self.batch.value())
        train_captions = sum(len(i.audio) for i in self.images if i.split == "train")
        log_every = max(1, -(-train_captions // batch) // 10)
        start = f"fine-tuning {base.name}" if base is not None else "training the preset's model from scratch"
        self.run_label.setText(f"Run folder: {self.run_dir} ({start})")
        worker = self.jobs.start(
            fine_tune, self.manifest, str(self.preset.currentData()), int(epochs or self.epochs.value()),
            self.run_dir, base, self.backend.device, resume, self.settings.backbone_weights, batch,
            float(self.lr.value()), log_every, text="preparing features…", process=True,
            on_finished=self._trained, on_failed=self.job_failed, on_done=self.refresh,
            on_cancelled=lambda: self.job_idle("training cancelled: the last finished epoch is kept; press Resume "
                                               "to continue"))
        self.log_timer.start()
        self.refresh()
        return worker

    def cancel_training(self) -> None:
        """Ask the running job to stop (training keeps its last finished epoch)."""
        self.jobs.cancel()

    def refresh_curves(self) -> None:
        """Redraw the curves from the run's training log."""
        run = self.run_dir or self._run_dir_for_ui()
        curves = read_training_log(runs.log_path(run)) if run is not None else TrainingCurves()
        self.curves = curves
        self.loss_chart.set_series([
            Series("step loss", [float(s) for s in curves.steps], curves.step_loss, QColor(90, 170, 255)),
            Series("epoch mean", [float(s) for s in curves.epoch_step], curves.epoch_loss, QColor(255, 170, 60), True),
        ])
        epochs = [float(e) for e in curves.epochs]
        self.val_chart.set_series([
            Series("MAP", epochs, curves.val_series("map"), QColor(120, 220, 120), True),
            Series("MAP a→i", epochs, curves.val_series("a2i_map"), QColor(90, 170, 255), True),
            Series("MAP i→a", epochs, curves.val_series("i2a_map"), QColor(230, 120, 200), True),
        ])
        if not self.busy:
            self.log_timer.stop()

    def _trained(self, result: Any) -> None:
        self.refresh_curves()
        self.new_checkpoint = Path(result.checkpoint)
        self.new_val = dict(result.best_val or {})
        self.job_idle(f"training finished ({result.stop_reason}, {result.epochs} epochs); best epoch "
                      f"{result.best_epoch}: val MAP {float(self.new_val.get('map', float('nan'))):.4f}", done=True)
        self.show_comparison()
        self.evaluate_current()
