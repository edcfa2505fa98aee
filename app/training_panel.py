"""Training: choose a collection, record or generate spoken captions, fine-tune with live curves, compare, activate.

* Collection: a manifest (JSON Lines, :mod:`dvan.data.manifest`) or a folder of images with spoken
  captions beside them (:mod:`app.collection`).
* Record a caption for the selected image with the hold-to-record button (checked for speech);
  it is written beside the image and added to the collection.
* Generate spoken captions from a text caption file with the speak feature
  (:func:`dvan.data.speak.speak_captions`).
* Fine-tune (:func:`dvan.train.loop.train`) on a worker; the loss and validation curves are read
  from the run's ``train_log.jsonl`` while it runs. Cancel keeps the last finished epoch; Resume
  continues from it.
* Before activating, the new model's validation numbers are shown beside the current model's
  (evaluated on the same validation split). Activating copies the checkpoint into the app's model
  folder, keeps the previous model restorable, and recomputes the library's projections.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QStandardPaths, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.audio import AudioDeviceError, Player, Recorder
from app.backend import Backend
from app.chart import LineChart, Series
from app.collection import (
    CollectionImage,
    TrainingCurves,
    add_caption_to_manifest,
    load_collection,
    next_caption_path,
    read_training_log,
)
from app.jobs import evaluate_val, fine_tune
from app.settings import AppSettings
from app.widgets import ImageLabel, JobBar, microphone_icon
from app.worker import Worker
from dvan.audio.vad import detect_speech
from dvan.errors import DvanError
from dvan.progress import Progress

#: Validation numbers compared before activating (key, label).
METRICS = (("map", "Overall ranking quality (MAP)"), ("a2i_map", "Voice → image ranking (MAP)"),
           ("i2a_map", "Image → voice ranking (MAP)"), ("a2i_p@10", "Right images in the top 10"),
           ("i2a_p@10", "Right captions in the top 10"), ("mR", "Pairs found, averaged (mean recall)"),
           ("matching_accuracy", "Match / no-match decisions right"))
#: What each number means, in plain words (row tooltips).
METRIC_HELP = {
    "map": "Mean average precision over both directions: 1 = every right answer ranked above every wrong one.",
    "a2i_map": "For each spoken caption, how high its image(s) rank among all validation images.",
    "i2a_map": "For each image, how high its spoken captions rank among all validation captions.",
    "a2i_p@10": "Share of the 10 best-ranked images that are right for a spoken caption (precision at 10).",
    "i2a_p@10": "Share of the 10 best-ranked captions that are right for an image (precision at 10).",
    "mR": "Share of right pairs found in the top 1, 5 and 10, averaged over both directions (mean recall).",
    "matching_accuracy": "How often the model's yes/no (p ≥ 0.5) agrees with whether caption and image belong together.",
}
#: Fewer validation captions than this cannot tell two models apart by a few points.
MIN_VAL_CAPTIONS = 100
DEFAULT_LABEL = "(shipped default model)"
RECOMPUTING = "the library's projections are being recomputed"


def app_data_dir() -> Path:
    """Where the app keeps training runs and activated models (``$DVAN_APP_DATA`` overrides it)."""
    import os

    base = os.environ.get("DVAN_APP_DATA") or QStandardPaths.writableLocation(
        QStandardPaths.StandardLocation.AppDataLocation)
    path = Path(base or Path.home() / ".local" / "share" / "dvan-app")
    path.mkdir(parents=True, exist_ok=True)
    return path


class TrainingPanel(QWidget):
    """The Training tab.

    Signals:
        status(str): a line for the status bar.
        model_activated(str): a checkpoint was activated (empty: the shipped default).
    """

    status = Signal(str)
    model_activated = Signal(str)

    def __init__(self, backend: Backend, settings: AppSettings, recorder: Recorder | None = None,
                 player: Player | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        self.settings = settings
        self.recorder = recorder or Recorder(self)
        self.player = player or Player(self)
        self.manifest: Path | None = None
        self.collection_path: Path | None = None
        self.images: list[CollectionImage] = []
        self.worker: Worker | None = None
        self.eval_worker: Worker | None = None
        self.run_dir: Path | None = None
        self.new_checkpoint: Path | None = None
        self.new_val: dict[str, Any] | None = None
        self.current_val: dict[str, Any] | None = None
        self.curves = TrainingCurves()
        self._recording_for: CollectionImage | None = None

        # -- collection ------------------------------------------------------------------------
        collection = QGroupBox("1 · Collection")
        self.collection_edit = QLineEdit(settings.collection)
        self.collection_edit.setPlaceholderText("a manifest (.jsonl) or a folder of images with spoken captions beside them")
        self.collection_edit.returnPressed.connect(lambda: self.load_collection(self.collection_edit.text()))
        manifest_button = QPushButton("Manifest…")
        manifest_button.clicked.connect(self._choose_manifest)
        folder_button = QPushButton("Folder…")
        folder_button.clicked.connect(self._choose_folder)
        self.speak_button = QPushButton("Speak text captions…")
        self.speak_button.setToolTip("Generate spoken captions from a text caption file (JSON Lines or UCM-captions "
                                     "JSON) with offline text-to-speech, and use them as the collection")
        self.speak_button.clicked.connect(self._choose_caption_file)
        row = QHBoxLayout()
        row.addWidget(self.collection_edit, 1)
        row.addWidget(manifest_button)
        row.addWidget(folder_button)
        row.addWidget(self.speak_button)
        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(["Image", "Label", "Split", "Captions", "Text"])
        for column in range(4):
            self.table.horizontalHeader().setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.currentCellChanged.connect(lambda r, *_: self._select_image(r))
        self.collection_summary = QLabel("No collection chosen.")
        self.collection_summary.setWordWrap(True)
        collection_layout = QVBoxLayout(collection)
        collection_layout.addLayout(row)
        collection_layout.addWidget(self.table, 1)
        collection_layout.addWidget(self.collection_summary)

        # -- selected image: preview, captions, record -----------------------------------------
        image_box = QGroupBox("Selected image")
        self.preview = ImageLabel("Select an image of the collection.")
        self.preview.setMinimumSize(96, 96)
        self.caption_list = QListWidget()
        self.caption_list.setWordWrap(True)
        self.caption_list.itemClicked.connect(self._play_caption)
        self.record_text = QLineEdit()
        self.record_text.setPlaceholderText("what you will say (optional, stored as the caption's text)")
        self.record_button = QPushButton("Hold to record a caption")
        self.record_button.setEnabled(False)
        self.record_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.record_button.setIcon(microphone_icon())
        self.record_button.pressed.connect(self.start_recording)
        self.record_button.released.connect(self.stop_recording)
        image_layout = QVBoxLayout(image_box)
        image_layout.addWidget(self.preview, 2)
        image_layout.addWidget(QLabel("Spoken captions (click to hear):"))
        image_layout.addWidget(self.caption_list, 1)
        image_layout.addWidget(self.record_text)
        image_layout.addWidget(self.record_button)

        # -- fine-tune ---------------------------------------------------------------------------
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
        self.job.cancel_requested.connect(self.cancel_training)
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

        # -- compare and activate ----------------------------------------------------------------
        compare = QGroupBox("3 · Compare and activate")
        self.compare_table = QTableWidget(len(METRICS), 2)
        self.compare_table.setHorizontalHeaderLabels(["Current model", "New model"])
        self.compare_table.setVerticalHeaderLabels([label for _, label in METRICS])
        for index, (key, _) in enumerate(METRICS):
            header = self.compare_table.verticalHeaderItem(index)
            if header is not None:
                header.setToolTip(METRIC_HELP[key])
        self.compare_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.compare_table.horizontalHeader().setMinimumSectionSize(90)
        self.compare_table.setMinimumWidth(320)
        self.compare_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.compare_explained = QLabel("From 0 to 1, higher is better; measured on the collection's validation "
                                        "images, which training never sees. Hover a row for what it counts.")
        self.compare_explained.setWordWrap(True)
        self.compare_note = QLabel("Validation numbers appear here when a run has a model.")
        self.compare_note.setWordWrap(True)
        self.activate_button = QPushButton("Activate new model")
        self.activate_button.setEnabled(False)
        self.activate_button.clicked.connect(self.activate_new_model)
        self.previous = QComboBox()
        self.restore_button = QPushButton("Restore")
        self.restore_button.clicked.connect(self.restore_previous)
        self.active_label = QLabel("")
        self.active_label.setWordWrap(True)
        restore_row = QHBoxLayout()
        restore_row.addWidget(QLabel("Previous models:"))
        restore_row.addWidget(self.previous, 1)
        restore_row.addWidget(self.restore_button)
        compare_layout = QVBoxLayout(compare)
        compare_layout.addWidget(self.active_label)
        compare_layout.addWidget(self.compare_explained)
        compare_layout.addWidget(self.compare_table, 1)
        compare_layout.addWidget(self.compare_note)
        compare_layout.addWidget(self.activate_button)
        compare_layout.addLayout(restore_row)

        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(collection)
        top.addWidget(image_box)
        top.setStretchFactor(0, 3)
        top.setStretchFactor(1, 2)
        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(tune)
        bottom.addWidget(compare)
        bottom.setStretchFactor(0, 3)
        bottom.setStretchFactor(1, 2)
        bottom.setSizes([860, 540])
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

        self.log_timer = QTimer(self)
        self.log_timer.setInterval(1000)
        self.log_timer.timeout.connect(self.refresh_curves)
        self.recorder_started = False
        self.refresh()
        if settings.collection:
            self.load_collection(settings.collection, quiet=True)

    # --- general -----------------------------------------------------------------------------
    def say(self, text: str, error: bool = False) -> None:
        """Show a message under the collection and in the status bar."""
        self.collection_summary.setText(text)
        self.collection_summary.setStyleSheet("color: #ff8a80;" if error else "")
        self.status.emit(text)

    @property
    def busy(self) -> bool:
        """Whether a training or speak job runs."""
        return self.worker is not None and self.worker.running

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
        self.resume_button.setEnabled(ready and self._run_dir_for_ui() is not None
                                      and (self._run_dir_for_ui() / "resume.safetensors").is_file())  # type: ignore[operator]
        self.speak_button.setEnabled(not self.busy)

    # --- collection --------------------------------------------------------------------------
    def _choose_manifest(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Collection manifest", "", "Manifests (*.jsonl);;All files (*)")
        if path:
            self.load_collection(path)

    def _choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder of images with spoken captions beside them")
        if path:
            self.load_collection(path)

    def load_collection(self, path: str | Path, quiet: bool = False) -> bool:
        """Use a manifest or a folder as the training collection."""
        path = Path(path).expanduser()
        try:
            manifest, images = load_collection(path)
        except DvanError as exc:
            if not quiet:
                self.say(str(exc), error=True)
            return False
        self.collection_path = path
        self.manifest = manifest
        self.images = images
        self.collection_edit.setText(str(path))
        self.settings.collection = str(path)
        self.table.setRowCount(len(images))
        for row, item in enumerate(images):
            texts = [t for t in item.texts if t]
            cells = [item.image.name, item.label, item.split, str(len(item.audio)), texts[0] if texts else ""]
            for column, text in enumerate(cells):
                cell = QTableWidgetItem(text)
                cell.setToolTip(str(item.image) if column == 0 else text)
                if column == 3 and not item.audio:
                    cell.setForeground(QColor("#ff8a80"))
                self.table.setItem(row, column, cell)
        captions = sum(len(i.audio) for i in images)
        splits = {s: sum(len(i.audio) for i in images if i.split == s) for s in ("train", "val", "test")}
        labels = len({i.label for i in images})
        self.say(f"{len(images)} images of {labels} classes, {captions} spoken captions (train {splits['train']}, "
                 f"val {splits['val']}, test {splits['test']})" +
                 ("" if manifest else " — no spoken captions yet: record some or generate them from text"))
        self.run_dir = None
        self.refresh()
        self.refresh_curves()
        if images:
            self.table.selectRow(0)
        return True

    def _select_image(self, row: int) -> None:
        if not 0 <= row < len(self.images):
            self.record_button.setEnabled(False)
            return
        item = self.images[row]
        image = QImage(str(item.image))
        self.preview.set_image(image if not image.isNull() else None)
        self.caption_list.clear()
        for audio, text in zip(item.audio, item.texts, strict=False):
            entry = QListWidgetItem(f"{audio.name}: {text}" if text else audio.name)
            entry.setData(Qt.ItemDataRole.UserRole, str(audio))
            self.caption_list.addItem(entry)
        self.record_button.setEnabled(not self.busy)

    def selected_image(self) -> CollectionImage | None:
        """The image selected in the table."""
        row = self.table.currentRow()
        return self.images[row] if 0 <= row < len(self.images) else None

    def _play_caption(self, entry: QListWidgetItem) -> None:
        try:
            self.player.play_file(entry.data(Qt.ItemDataRole.UserRole), self.settings.output_device or None)
        except DvanError as exc:
            self.say(f"Cannot play: {exc}", error=True)

    # --- recording a caption -----------------------------------------------------------------
    def start_recording(self) -> None:
        """Start recording a caption for the selected image."""
        item = self.selected_image()
        if item is None or self.recorder.recording:
            return
        try:
            self.recorder.start(self.settings.input_device or None)
        except AudioDeviceError as exc:
            self.say(f"Microphone problem: {exc}", error=True)
            return
        self._recording_for = item
        self.record_button.setText("Recording… release to save")

    def stop_recording(self) -> None:
        """Stop recording and save the caption (when speech was heard)."""
        if not self.recorder.recording or self._recording_for is None:
            return
        samples, rate = self.recorder.stop()
        self.record_button.setText("Hold to record a caption")
        item, self._recording_for = self._recording_for, None
        self.save_caption(item, samples, rate, self.record_text.text().strip() or None)

    def save_caption(self, item: CollectionImage, samples: np.ndarray, rate: int, text: str | None = None) -> Path | None:
        """Write a recorded caption beside its image and add it to the collection; None when nothing was said."""
        import soundfile as sf

        check = detect_speech(samples, rate)
        if not check.has_speech:
            self.say(check.message + " The caption was not saved.", error=True)
            return None
        target = next_caption_path(item.image)
        if not self._writable(target.parent):
            target = (self._manifest_dir() / "recorded" / target.name)
            target.parent.mkdir(parents=True, exist_ok=True)
        sf.write(target, np.asarray(samples, dtype=np.float32), int(rate), subtype="PCM_16")
        if self.collection_path is not None and self.collection_path.is_dir():
            self.load_collection(self.collection_path)
        elif self.manifest is not None:
            add_caption_to_manifest(self.manifest, item, target, text)
            self.load_collection(self.manifest)
        if text and self.collection_path is not None and self.collection_path.is_dir():
            self.say(f"Saved {target.name}; the text is kept only in manifests (folder collections read <image>.txt).")
        else:
            self.say(f"Saved {target.name} ({check.duration_s:.1f} s) for {item.image.name}.")
        return target

    @staticmethod
    def _writable(folder: Path) -> bool:
        import os

        return os.access(folder, os.W_OK)

    def _manifest_dir(self) -> Path:
        return self.manifest.parent if self.manifest is not None else app_data_dir()

    # --- speak -------------------------------------------------------------------------------
    def _choose_caption_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Text captions (JSON Lines or UCM-captions JSON)", "",
                                              "Captions (*.jsonl *.json);;All files (*)")
        if path:
            self.speak(path)

    def speak(self, captions: str | Path, out_dir: str | Path | None = None, limit: int | None = None) -> Worker | None:
        """Generate spoken captions from a text caption file; the result becomes the collection."""
        if self.busy:
            return None
        from dvan.data.speak import speak_captions

        captions = Path(captions)
        out = Path(out_dir) if out_dir else captions.parent / f"{captions.stem}-spoken"
        self.job.set_running("speaking captions…")
        worker = Worker(speak_captions, captions, out, limit=limit)
        worker.signals.progress.connect(self.job.show_progress)
        worker.signals.finished.connect(lambda report: self._spoken(report, out))
        worker.signals.failed.connect(self._job_failed)
        worker.signals.done.connect(self.refresh)
        worker.signals.cancelled.connect(lambda: self._job_idle("speaking cancelled; files written so far are reused "
                                                                "next time"))
        self.worker = worker.start()
        self.refresh()
        return self.worker

    def _spoken(self, report: Any, out: Path) -> None:
        manifest = getattr(report, "manifest", None) or out / "manifest.jsonl"
        skipped = len(getattr(report, "skipped", []) or [])
        self._job_idle(f"spoken captions written to {out}" + (f"; {skipped} skipped" if skipped else ""), done=True)
        self.load_collection(manifest)

    # --- training ----------------------------------------------------------------------------
    def _run_dirs(self) -> tuple[Path, list[Path]]:
        """The first run folder of this collection and recipe, and the existing runs oldest first (base, base-2, …)."""
        assert self.manifest is not None
        digest = hashlib.sha1(str(self.manifest.resolve()).encode()).hexdigest()[:10]
        base = app_data_dir() / "runs" / f"{self.manifest.parent.name}-{digest}-{self.preset.currentData()}"
        numbered = sorted((int(p.name[len(base.name) + 1:]), p) for p in base.parent.glob(f"{base.name}-*")
                          if p.is_dir() and p.name[len(base.name) + 1:].isdigit())
        return base, ([base] if base.is_dir() else []) + [p for _, p in numbered]

    def _run_dir_for_ui(self) -> Path | None:
        """The latest run of this collection and recipe (Resume continues it; its curves are shown)."""
        if self.manifest is None:
            return None
        base, runs = self._run_dirs()
        return runs[-1] if runs else base

    def _new_run_dir(self) -> Path | None:
        """A fresh folder for Start: a finished or cancelled run is never overwritten."""
        if self.manifest is None:
            return None
        base, runs = self._run_dirs()
        if not runs or not any(runs[-1].iterdir()):
            return runs[-1] if runs else base
        number = max([1] + [int(p.name[len(base.name) + 1:]) for p in runs if p != base]) + 1
        return base.with_name(f"{base.name}-{number}")

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
        worker = Worker(fine_tune, self.manifest, str(self.preset.currentData()), int(epochs or self.epochs.value()),
                        self.run_dir, base, self.backend.device, resume, self.settings.backbone_weights,
                        batch, float(self.lr.value()), log_every, process=True)
        worker.signals.progress.connect(self._train_progress)
        worker.signals.finished.connect(self._trained)
        worker.signals.failed.connect(self._job_failed)
        worker.signals.done.connect(self.refresh)
        worker.signals.cancelled.connect(lambda: self._job_idle("training cancelled: the last finished epoch is kept; "
                                                                "press Resume to continue"))
        self._train_started = time.perf_counter()
        self.job.set_running("preparing features…")
        start = f"fine-tuning {base.name}" if base is not None else "training the preset's model from scratch"
        self.run_label.setText(f"Run folder: {self.run_dir} ({start})")
        self.worker = worker.start()
        self.log_timer.start()
        self.refresh()
        return self.worker

    def cancel_training(self) -> None:
        """Ask the running job to stop (training keeps its last finished epoch)."""
        if self.worker is not None:
            self.worker.cancel()
            self.job.label.setText("cancelling…")

    def _train_progress(self, report: Progress) -> None:
        rate = None
        if report.stage == "train" and report.done:
            rate = report.done / max(1e-6, time.perf_counter() - self._train_started)
        self.job.show_progress(report, rate)

    def refresh_curves(self) -> None:
        """Redraw the curves from the run's training log."""
        run = self.run_dir or self._run_dir_for_ui()
        curves = read_training_log(run / "train_log.jsonl") if run is not None else TrainingCurves()
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
        self._job_idle(f"training finished ({result.stop_reason}, {result.epochs} epochs); best epoch "
                       f"{result.best_epoch}: val MAP {float(self.new_val.get('map', float('nan'))):.4f}", done=True)
        self.show_comparison()
        self.evaluate_current()

    def _job_failed(self, error: BaseException) -> None:
        self._job_idle(str(error) if isinstance(error, DvanError) else f"{type(error).__name__}: {error}", error=True)

    def _job_idle(self, text: str, error: bool = False, done: bool = False) -> None:
        self.job.set_idle(text, done=done)
        self.say(text, error=error)
        self.refresh_curves()
        self.refresh()

    # --- compare and activate ------------------------------------------------------------------
    def evaluate_current(self) -> Worker | None:
        """Evaluate the active model on the collection's val split, for the comparison."""
        status = self.backend.model_status()
        if self.manifest is None or status.path is None:
            self.current_val = None
            self.show_comparison()
            return None
        self.compare_note.setText("Evaluating the current model on the same validation split…")
        worker = Worker(evaluate_val, status.path, self.manifest, self.backend.device, process=True)
        worker.signals.finished.connect(self._current_evaluated)
        worker.signals.failed.connect(lambda exc: self.compare_note.setText(f"Current model not evaluated: {exc}"))
        self.eval_worker = worker.start()
        return self.eval_worker

    def _current_evaluated(self, val: dict[str, Any]) -> None:
        self.current_val = val
        self.show_comparison()

    def show_comparison(self) -> None:
        """Fill the comparison table and enable activation when there is a new model."""
        for row, (key, _) in enumerate(METRICS):
            for column, values in enumerate((self.current_val, self.new_val)):
                value = (values or {}).get(key)
                text = f"{value:.4f}" if isinstance(value, (int, float)) else "–"
                cell = QTableWidgetItem(text)
                cell.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                if column == 1 and isinstance(value, (int, float)):
                    old = (self.current_val or {}).get(key)
                    if isinstance(old, (int, float)):
                        new_shown, old_shown = round(float(value), 4), round(float(old), 4)
                        cell.setForeground(QColor("#7bd88f") if new_shown > old_shown else QColor("#ff8a80")
                                           if new_shown < old_shown else QColor("#dddddd"))
                self.compare_table.setItem(row, column, cell)
        if self.new_checkpoint is not None:
            self.compare_note.setText(f"New model: {self.new_checkpoint} (validation split of {self.manifest}). "
                                      "Activating keeps the current model restorable." + self.small_validation_warning())
            self.compare_note.setStyleSheet("color: #ffd27f;" if self.small_validation_warning() else "")
        self.activate_button.setEnabled(self.new_checkpoint is not None and self.new_checkpoint.is_file())

    def validation_captions(self) -> int:
        """Spoken captions in the collection's validation split."""
        return sum(len(image.audio) for image in self.images if image.split == "val")

    def small_validation_warning(self) -> str:
        """A warning when the validation split is too small to compare two models ("" otherwise)."""
        count = self.validation_captions()
        if not self.images or count >= MIN_VAL_CAPTIONS:
            return ""
        return (f" Only {count} spoken captions are in the validation split: too few to tell two models apart "
                f"(differences of several points can be chance). A collection with at least {MIN_VAL_CAPTIONS} "
                "validation captions gives numbers to choose by.")

    def activation_question(self) -> str:
        """What activating the new model does, with both models' overall numbers (asked before activating)."""
        new = (self.new_val or {}).get("map")
        old = (self.current_val or {}).get("map")
        numbers = (f" Overall ranking quality: {float(old):.3f} now, {float(new):.3f} with the new model."
                   if isinstance(new, (int, float)) and isinstance(old, (int, float)) else "")
        return ("Make the new model the active one? Searches then use it, and the library's projections are "
                "recomputed (a few minutes for a large library). The current model stays in \"Previous models\"."
                + numbers + self.small_validation_warning())

    def activate_new_model(self, confirm: bool = True) -> Path | None:
        """Copy the new checkpoint into the app's model folder and make it active (the old one stays restorable).

        Args:
            confirm: ask first (skipped when ``DVAN_APP_NO_DIALOGS`` is set).
        """
        if self.new_checkpoint is None:
            return None
        import os

        if confirm and not os.environ.get("DVAN_APP_NO_DIALOGS"):
            answer = QMessageBox.question(self, "Activate the new model", self.activation_question())
            if answer != QMessageBox.StandardButton.Yes:
                return None
        models = app_data_dir() / "models"
        models.mkdir(parents=True, exist_ok=True)
        target = models / f"model-{time.strftime('%Y%m%d-%H%M%S')}.safetensors"
        shutil.copy2(self.new_checkpoint, target)
        self._activate(str(target))
        self.new_checkpoint = None
        self.activate_button.setEnabled(False)
        self.say(f"Activated {target.name}; {RECOMPUTING}.")
        return target

    def projections_done(self) -> None:
        """The library's projections are current again: replace the "being recomputed" line."""
        text = self.collection_summary.text()
        if RECOMPUTING in text:
            self.say(text.replace(RECOMPUTING, "the library's projections are up to date for it"))

    def restore_previous(self) -> None:
        """Make the selected previous model active again."""
        if self.previous.count() == 0:
            return
        path = str(self.previous.currentData() or "")
        self._activate(path)
        self.say(f"Restored {Path(path).name if path else DEFAULT_LABEL}.")

    def _activate(self, path: str) -> None:
        current = self.settings.active_model
        history = [current] + [p for p in self.settings.previous_models if p not in (current, path)]
        self.settings.previous_models = history[:10]
        self.settings.active_model = path
        self.model_activated.emit(path)
        self.current_val = None
        self.refresh()
