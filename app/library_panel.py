"""Library: create or open a tile library, add files and folders with progress, rate, cancel and a report.

Imports run in a job server through the tab's job controller (:mod:`app.job_control`), so the window
stays responsive; the import itself is :func:`app.jobs.import_job` (:func:`dvan.library.importer.import_paths`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app import palette
from app.backend import Backend, is_library
from app.job_control import JobController
from app.settings import AppSettings
from app.types import ImportOutcome
from app.widgets import JobBar
from app.worker import Worker
from dvan.errors import DvanError
from dvan.library.files import RASTER_SUFFIXES as IMAGERY_SUFFIXES

STATUS_COLOURS = {"imported": palette.GOOD, "skipped": palette.MUTED, "failed": palette.ERROR}


def _not_a_library(path: Path) -> str:
    """What to do with a folder that is not a library (in the app's words, not the command line's)."""
    if path.is_dir() and any(p.suffix.lower() in IMAGERY_SUFFIXES for p in path.rglob("*") if p.is_file()):
        return (f"{path} holds imagery, not a library. Create a library with \"New library…\" (a new folder), "
                "then add this folder to it with \"Add folder…\".")
    return (f"{path} is not a library. Choose the folder of a library you created, or create one with "
            "\"New library…\".")


class LibraryPanel(QWidget):
    """The Library tab.

    Signals:
        library_changed(): a library was opened or created, or tiles were added.
        status(str): a line for the status bar.
        busy_changed(bool): an import started or ended.
    """

    library_changed = Signal()
    status = Signal(str)
    busy_changed = Signal(bool)

    def __init__(self, backend: Backend, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        self.settings = settings
        self.report: ImportOutcome | None = None
        self._kind = "import"
        layout = QVBoxLayout(self)
        layout.addLayout(self._build_library_row())
        layout.addWidget(self._build_contents())
        layout.addLayout(self._build_add_row())
        layout.addWidget(QLabel("Import report"))
        layout.addWidget(self._build_report(), 1)
        layout.addWidget(self.summary)
        self.refresh()

    def _build_library_row(self) -> QHBoxLayout:
        """The open library's path, and New / Open."""
        self.path_label = QLabel("No library open.")
        self.path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.path_label.font()
        font.setBold(True)
        self.path_label.setFont(font)
        self.new_button = QPushButton("New library…")
        self.open_button = QPushButton("Open library…")
        self.new_button.clicked.connect(self._choose_new)
        self.open_button.clicked.connect(self._choose_open)
        top = QHBoxLayout()
        top.addWidget(self.path_label, 1)
        top.addWidget(self.new_button)
        top.addWidget(self.open_button)
        return top

    def _build_contents(self) -> QGroupBox:
        """What the library holds: tiles, sources, captions, backbone, projections."""
        self.info_box = QGroupBox("Contents")
        self.info_grid = QGridLayout(self.info_box)
        self.info_labels: dict[str, QLabel] = {}
        for row, (key, title) in enumerate((("tiles", "Tiles"), ("sources", "Source files"),
                                            ("georef", "Georeferenced tiles"), ("captions", "Spoken captions"),
                                            ("backbone", "Image backbone"), ("model", "Projections"))):
            self.info_grid.addWidget(QLabel(title + ":"), row // 3, 2 * (row % 3))
            value = QLabel("–")
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.info_grid.addWidget(value, row // 3, 2 * (row % 3) + 1)
            self.info_labels[key] = value
        return self.info_box

    def _build_add_row(self) -> QHBoxLayout:
        """Add files / folder / spoken captions, and the job bar of the import."""
        self.add_files_button = QPushButton("Add files…")
        self.add_folder_button = QPushButton("Add folder…")
        self.add_files_button.clicked.connect(self._choose_files)
        self.add_folder_button.clicked.connect(self._choose_folder)
        self.add_captions_button = QPushButton("Add spoken captions…")
        self.add_captions_button.setToolTip("Add a collection's spoken captions (a manifest) for image -> audio "
                                            "search in the Captions tab")
        self.add_captions_button.clicked.connect(self._choose_captions)
        self.job = JobBar(rate_unit="tiles/s")
        self.jobs = JobController(self.job, rate_stage="import", cancel_text="cancelling after the current batch…")
        adds = QHBoxLayout()
        adds.addWidget(self.add_files_button)
        adds.addWidget(self.add_folder_button)
        adds.addWidget(self.add_captions_button)
        adds.addWidget(self.job, 1)
        return adds

    def _build_report(self) -> QTableWidget:
        """The per-file import report, and the summary line under it."""
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["File", "Result", "Tiles", "Details"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.summary = QLabel("Add GeoTIFF, JPEG2000, PNG or JPEG files, or whole folders.")
        self.summary.setWordWrap(True)
        return self.table

    # --- state -----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Whether an import runs."""
        return self.jobs.running

    def refresh(self) -> None:
        """Show the open library's path and contents."""
        has_library = self.backend.library is not None
        for button in (self.add_files_button, self.add_folder_button, self.add_captions_button):
            button.setEnabled(has_library and not self.busy)
        self.new_button.setEnabled(not self.busy)
        self.open_button.setEnabled(not self.busy)
        if not has_library:
            self.path_label.setText("No library open: create a new one or open an existing one.")
            for label in self.info_labels.values():
                label.setText("–")
            return
        self.path_label.setText(f"Library: {self.backend.library_path}")
        try:
            info = self.backend.library_info()
        except DvanError as exc:
            self.say(str(exc), error=True)
            return
        model = info.get("model") or {}
        self.info_labels["tiles"].setText(str(info.get("tiles", 0)))
        self.info_labels["sources"].setText(f"{info.get('sources', 0)}"
                                            + (f" ({info['sources_incomplete']} incomplete: add them again)"
                                               if info.get("sources_incomplete") else ""))
        self.info_labels["georef"].setText(str(info.get("tiles_georeferenced", 0)))
        self.info_labels["captions"].setText(str(info.get("captions", 0)))
        self.info_labels["backbone"].setText(str(info.get("backbone", "?")))
        checkpoint = model.get("checkpoint")
        state = "up to date" if model.get("up_to_date") else "not computed for every tile yet"
        self.info_labels["model"].setText(f"{Path(checkpoint).name if checkpoint else 'none'} ({state})")

    def say(self, text: str, error: bool = False) -> None:
        """Show a message under the report and in the status bar."""
        palette.say(self.summary, self.status, text, error)

    # --- opening ---------------------------------------------------------------------------
    def _choose_new(self) -> None:
        # a save dialog, not a folder picker: the new library's folder usually does not exist yet
        path, _ = QFileDialog.getSaveFileName(self, "Name a new (or empty) folder for the library",
                                              str(Path.home() / "dvan-library"))
        if path:
            self.create_library(path)

    def _choose_open(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a library folder")
        if path:
            self.open_library(path)

    def create_library(self, path: str | Path) -> bool:
        """Create and open a library; False (with a message) when that is impossible."""
        try:
            self.backend.create_library(path)
        except DvanError as exc:
            if is_library(path):
                self.say(f"{path} is already a library: open it with \"Open library…\" and add files to it.",
                         error=True)
            else:
                self.say(str(exc), error=True)
            return False
        self.settings.library_path = str(path)
        self.say(f"Created an empty library in {path}. Add files or folders.")
        self._changed()
        return True

    def open_library(self, path: str | Path) -> bool:
        """Open a library; False (with a message) when that is impossible."""
        try:
            self.backend.open_library(path)
        except DvanError as exc:
            self.say(_not_a_library(Path(path)) if not is_library(path) else str(exc), error=True)
            return False
        self.settings.library_path = str(path)
        self.say(f"Opened {path}.")
        self._changed()
        return True

    def _changed(self) -> None:
        self.refresh()
        self.library_changed.emit()

    # --- importing -------------------------------------------------------------------------
    def _choose_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Add raster files", "",
                                                "Rasters (*.tif *.tiff *.jp2 *.png *.jpg *.jpeg *.img *.vrt);;All files (*)")
        if files:
            self.add_paths(files)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of rasters (searched recursively)")
        if folder:
            self.add_paths([folder])

    def _choose_captions(self) -> None:
        manifest, _ = QFileDialog.getOpenFileName(self, "Spoken captions (a collection manifest)", "",
                                                  "Manifests (*.jsonl);;All files (*)")
        if manifest:
            self.add_captions(manifest)

    def add_captions(self, manifest: str | Path) -> Worker | None:
        """Start adding a manifest's spoken captions; returns the worker (None when a job already runs)."""
        from app.jobs import captions_job

        if self.busy or self.backend.library is None:
            return None
        model, device, weights = self.backend.job_settings()
        self._kind = "captions"
        return self._start(captions_job, str(self.backend.library_path), str(manifest), model, device, weights,
                           text="adding spoken captions…")

    def add_paths(self, paths: Sequence[str | Path]) -> Worker | None:
        """Start importing files and folders; returns the worker (None when one already runs)."""
        from app.jobs import import_job

        if self.busy or self.backend.library is None:
            return None
        model, device, weights = self.backend.job_settings()
        self._kind = "import"
        return self._start(import_job, str(self.backend.library_path), [str(p) for p in paths], model, device,
                           weights, text=f"importing {len(paths)} path(s)…")

    def _start(self, job: Callable[..., Any], *args: Any, text: str) -> Worker:
        self.table.setRowCount(0)
        worker = self.jobs.start(job, *args, text=text, process=True, on_finished=self._finished,
                                 on_failed=self._failed, on_cancelled=self._cancelled, on_done=self._done)
        self.busy_changed.emit(True)
        self.refresh()
        return worker

    def cancel(self) -> None:
        """Ask the running import to stop after its current batch (committed tiles stay)."""
        self.jobs.cancel()

    def _finished(self, report: ImportOutcome) -> None:
        self.report = report
        self.table.setRowCount(len(report.files))
        for row, entry in enumerate(report.files):
            counted = entry.status == "imported" and self._kind == "import"
            cells = [str(entry.path), entry.status, str(entry.tiles) if counted else "", entry.message]
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                if column == 1:
                    item.setForeground(QColor(STATUS_COLOURS.get(entry.status, "#ffffff")))
                self.table.setItem(row, column, item)
        failed = sum(1 for f in report.files if f.status == "failed")
        if self._kind == "captions" and report.files and not report.cancelled:
            text = report.files[0].message + (f"; {failed} caption file(s) failed (see the report)" if failed else "")
        elif report.cancelled:
            text = (f"Import cancelled after {report.seconds:.1f} s; the tiles committed so far stay "
                    "(adding the same files again completes the import).")
        else:
            text = (f"{report.tiles} tiles imported in {report.seconds:.1f} s ({report.tiles_per_second:.1f} tiles/s)"
                    f" from {len(report.files)} file(s)" + (f"; {failed} failed (see the report)" if failed else ""))
        self.job.set_idle(text, done=not report.cancelled)
        self.say(text, error=bool(failed))

    def _failed(self, error: BaseException) -> None:
        text = str(error) if isinstance(error, DvanError) else f"Import failed: {type(error).__name__}: {error}"
        self.job.set_idle("import failed")
        self.say(text, error=True)

    def _cancelled(self) -> None:
        self.job.set_idle("cancelled")
        self.say("Import cancelled; the tiles committed so far stay (add the same files again to complete it).")

    def _done(self) -> None:
        self.backend.reload()
        self.busy_changed.emit(False)
        self.refresh()
        self.library_changed.emit()
