"""Training tab, section 1: the collection, its images' spoken captions, recording one, speaking text captions.

* Collection: a manifest (JSON Lines, :mod:`dvan.data.manifest`) or a folder of images with spoken
  captions beside them (:mod:`app.collection`).
* Record a caption for the selected image with the hold-to-record button (checked for speech);
  it is written beside the image and added to the collection.
* Generate spoken captions from a text caption file with the speak feature
  (:func:`dvan.data.speak.speak_captions`), a job of the tab's job controller like training.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from app import palette
from app.audio import AudioDeviceError
from app.collection import CollectionImage, add_caption_to_manifest, load_collection, next_caption_path
from app.training_common import TrainingTabBase, app_data_dir
from app.widgets import ImageLabel, microphone_icon
from app.worker import Worker
from dvan.audio.vad import detect_speech
from dvan.errors import DvanError


class CollectionSection(TrainingTabBase):
    """The collection table, the selected image with its captions, recording and speaking captions."""

    _recording_for: CollectionImage | None

    def _build_collection_box(self) -> QGroupBox:
        """1 · Collection: the path, Manifest / Folder / Speak, the images table and the message line."""
        collection = QGroupBox("1 · Collection")
        self.collection_edit = QLineEdit(self.settings.collection)
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
        return collection

    def _build_image_box(self) -> QGroupBox:
        """The selected image: preview, its spoken captions (click to hear), hold to record one."""
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
        return image_box

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
                    cell.setForeground(QColor(palette.ERROR))
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
        # in a job server like the other long jobs: its Python work (audio effects, WAV writing) stays off the GUI's GIL
        worker = self.jobs.start(speak_captions, captions, out, limit=limit, text="speaking captions…", process=True,
                                 on_finished=lambda report: self._spoken(report, out), on_failed=self.job_failed,
                                 on_done=self.refresh,
                                 on_cancelled=lambda: self.job_idle("speaking cancelled; files written so far are "
                                                                    "reused next time"))
        self.refresh()
        return worker

    def _spoken(self, report: Any, out: Path) -> None:
        manifest = getattr(report, "manifest", None) or out / "manifest.jsonl"
        skipped = len(getattr(report, "skipped", []) or [])
        self.job_idle(f"spoken captions written to {out}" + (f"; {skipped} skipped" if skipped else ""), done=True)
        self.load_collection(manifest)

