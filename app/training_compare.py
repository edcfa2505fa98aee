"""Training tab, section 3: the new model's validation numbers beside the current one's, activation and restore.

Before activating, the new model's validation numbers are shown beside the current model's
(evaluated on the same validation split). Activating copies the checkpoint into the app's model
folder (:func:`dvan.train.runs.install_checkpoint`), keeps the previous model restorable
(:func:`dvan.train.runs.activation_history`), and the main window recomputes the library's
projections.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from app import palette
from app.jobs import evaluate_val
from app.training_common import TrainingTabBase, app_data_dir
from app.worker import Worker
from dvan.train.runs import activation_history, install_checkpoint

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


class CompareSection(TrainingTabBase):
    """The comparison table, Activate, and the previous models to restore."""

    def _build_compare_box(self) -> QGroupBox:
        """3 · Compare and activate: the numbers, what they mean, Activate, Restore."""
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
        return compare

    def evaluate_current(self) -> Worker | None:
        """Evaluate the active model on the collection's val split, for the comparison."""
        status = self.backend.model_status()
        if self.manifest is None or status.path is None:
            self.current_val = None
            self.show_comparison()
            return None
        self.compare_note.setText("Evaluating the current model on the same validation split…")
        return self.eval_jobs.start(evaluate_val, status.path, self.manifest, self.backend.device, process=True,
                                    on_finished=self._current_evaluated,
                                    on_failed=lambda exc: self.compare_note.setText(f"Current model not evaluated: {exc}"))

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
                        colour = (palette.GOOD if new_shown > old_shown else palette.ERROR if new_shown < old_shown
                                  else palette.NEUTRAL)
                        cell.setForeground(QColor(colour))
                self.compare_table.setItem(row, column, cell)
        if self.new_checkpoint is not None:
            self.compare_note.setText(f"New model: {self.new_checkpoint} (validation split of {self.manifest}). "
                                      "Activating keeps the current model restorable." + self.small_validation_warning())
            self.compare_note.setStyleSheet(palette.colour_style(palette.CAUTION) if self.small_validation_warning()
                                            else "")
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
        if confirm and not os.environ.get("DVAN_APP_NO_DIALOGS"):
            answer = QMessageBox.question(self, "Activate the new model", self.activation_question())
            if answer != QMessageBox.StandardButton.Yes:
                return None
        target = install_checkpoint(self.new_checkpoint, app_data_dir() / "models")
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
        self.settings.previous_models = activation_history(self.settings.active_model, self.settings.previous_models,
                                                           path)
        self.settings.active_model = path
        self.model_activated.emit(path)
        self.current_val = None
        self.refresh()
