"""The main window: tabs for Search, Map, Captions, Library, Training, Settings, and the status bar.

The window owns the one :class:`~app.backend.Backend` and wires the panels together (results to
the map, a selected tile to the map, library changes to every view). Space held anywhere while no
text field has focus is the hold-to-speak key.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QKeyEvent
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLabel,
    QLineEdit,
    QMainWindow,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTabWidget,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from app.audio import Player, Recorder
from app.backend import Backend, demo_library
from app.captions_panel import CaptionsPanel
from app.job_control import JobController
from app.library_panel import LibraryPanel
from app.map_view import MapPanel
from app.result_grid import TileDetails
from app.search_panel import SearchPanel
from app.settings import AppSettings
from app.settings_panel import SettingsPanel
from app.thumbs import ImageCache
from app.widgets import DragHoverTabBar, JobBar
from app.worker import Worker
from dvan.errors import DvanError
from dvan.progress import Progress

#: A Space release followed by a press within this many milliseconds is key auto-repeat, not a new press.
SPACE_REPEAT_MS = 50


def text_input_has_focus(widget: QWidget | None) -> bool:
    """Whether keyboard focus is in a widget that takes typed text (Space must type there)."""
    if widget is None:
        return False
    if isinstance(widget, (QLineEdit, QTextEdit, QPlainTextEdit, QAbstractSpinBox)):
        return True
    return isinstance(widget, QComboBox) and widget.isEditable()


class MainWindow(QMainWindow):
    """The dvan viewer.

    Signals:
        projections_ready(): the library's projections are current for the active model.
    """

    projections_ready = Signal()

    def __init__(self, backend: Backend, settings: AppSettings, parent: QWidget | None = None,
                 start_loading: bool = True) -> None:
        super().__init__(parent)
        # False (the entry point): the model waits for start_loading(), after the window has painted, and
        # its first load runs on a worker; windows built otherwise load it when first needed, as they always did
        self._loading_held = not start_loading
        self._background_start = not start_loading
        self.backend = backend
        self.settings = settings
        self.setWindowTitle("dvan — voice query imagery workstation")
        self.resize(1400, 900)
        self.images = ImageCache(backend)
        self.recorder = Recorder(self)
        self.player = Player(self)
        # the library's projections and the demo library's build share the status bar's job bar
        self.job_bar = JobBar(compact=True)
        self.job_bar.hide()
        self.prepare_jobs = JobController(self.job_bar)
        self.warm_jobs = JobController(parent=self)
        self.library_jobs = JobController(parent=self)
        self.prestart_control = JobController(parent=self)
        self._building_demo = False
        self._warmed: tuple[str, str, str] | None = None
        self._prestarted = False

        self._build_tabs()
        self._build_status_bar()
        self._connect_panels()
        QApplication.instance().installEventFilter(self)  # type: ignore[union-attr]
        self._views_of: tuple[str, ...] | None = None
        # X11 auto-repeat without detectable auto-repeat sends release+press pairs, not flagged as repeats, while a
        # key is held: a release counts once no press follows it within SPACE_REPEAT_MS
        self._space_release = QTimer(self)
        self._space_release.setSingleShot(True)
        self._space_release.setInterval(SPACE_REPEAT_MS)
        self._space_release.timeout.connect(self.search.release)
        self.library_changed()
        from app.desktop import install_desktop

        self.desktop = install_desktop(self)

    def _build_tabs(self) -> None:
        """Search, Map (with the selected tile's details), Captions, Library, Training, Settings."""
        self.tabs = QTabWidget()
        self.tabs.setTabBar(DragHoverTabBar())  # a result dragged over "Captions" opens that tab
        self.search = SearchPanel(self.backend, self.settings, self.images, self.recorder, self.player)
        self.map = MapPanel(self.images.thumbnail)
        self.map_details = TileDetails(self.images)
        self._attach_map_details()
        self.captions = CaptionsPanel(self.backend, self.settings, self.images, self.player)
        self.library = LibraryPanel(self.backend, self.settings)
        from app.training_panel import TrainingPanel

        self.training = TrainingPanel(self.backend, self.settings, self.recorder, self.player)
        self.settings_panel = SettingsPanel(self.settings)
        for widget, title in ((self.search, "Search"), (self.map, "Map"), (self.captions, "Captions"),
                              (self.library, "Library"), (self.training, "Training"), (self.settings_panel, "Settings")):
            self.tabs.addTab(widget, title)
        self.setCentralWidget(self.tabs)

    def _build_status_bar(self) -> None:
        """The job bar, the map cursor's coordinates and the active model, right of the status line."""
        self.cursor_label = QLabel("")
        self.cursor_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.model_label = QLabel("")
        status = self.statusBar()
        status.addPermanentWidget(self.job_bar)
        status.addPermanentWidget(self.cursor_label)
        status.addPermanentWidget(self.model_label)

    def _connect_panels(self) -> None:
        """Results to the map, a selected tile to the map, messages to the status bar, changes to every view."""
        self.search.results_changed.connect(self.map.set_results)
        self.search.tile_selected.connect(self.map.centre_on_tile)
        self.search.captions_requested.connect(self.show_captions_for)
        self.map.tile_selected.connect(self._map_tile_selected)
        self.map.cursor_moved.connect(lambda lon, lat: self.cursor_label.setText(f"lon {lon:.6f}, lat {lat:.6f}"))
        for panel in (self.search, self.captions, self.library, self.training):
            panel.status.connect(self.show_message)
        self.library.library_changed.connect(self.library_changed)
        self.training.model_activated.connect(self.model_changed)
        self.projections_ready.connect(self.training.projections_done)
        self.settings_panel.device_changed.connect(self._device_changed)
        self.settings_panel.model_changed.connect(lambda path: self.model_changed(path or None))
        self.settings_panel.weights_changed.connect(self._weights_changed)
        self.settings_panel.library_requested.connect(self.library.open_library)

    def _attach_map_details(self) -> None:
        splitter = self.map.findChild(QSplitter)
        if splitter is None:
            return
        right = splitter.widget(1)
        layout = right.layout() if right is not None else None
        if isinstance(layout, QVBoxLayout):
            layout.addWidget(QLabel("Selected tile"))
            layout.addWidget(self.map_details, 3)
            captions = QPushButton("Captions for this tile")
            captions.clicked.connect(lambda: self.show_captions_for(self.map_details.tile.id) if self.map_details.tile
                                     else None)
            layout.addWidget(captions)

    @property
    def prepare_worker(self) -> Worker | None:
        """The running or last projections (or demo build) job."""
        return self.prepare_jobs.worker

    @property
    def warm_worker(self) -> Worker | None:
        """The running or last model load."""
        return self.warm_jobs.worker

    # --- messages --------------------------------------------------------------------------
    def show_message(self, text: str) -> None:
        """Show a line in the status bar."""
        self.statusBar().showMessage(text, 15000)

    def _update_model_label(self) -> None:
        status = self.backend.model_status()
        if status.path is None:
            self.model_label.setText("Model: none")
        else:
            self.model_label.setText(f"Model: {status.path.name}" + ("" if status.trained else " (untrained)"))

    # --- wiring ----------------------------------------------------------------------------
    def _map_tile_selected(self, tile_id: int) -> None:
        try:
            tile = self.backend.tile(tile_id)
        except DvanError as exc:
            self.show_message(str(exc))
            return
        hit = next((h for h in (self.search.outcome.hits if self.search.outcome else []) if h.tile.id == tile_id), None)
        self.map_details.show_tile(tile, hit)
        self.map.centre_on_tile(tile_id) if not tile.georeferenced else self.map.view.centre_on_tile(tile_id, zoom=False)

    def show_captions_for(self, tile_id: int) -> None:
        """Open the Captions tab and rank the library's spoken captions for a tile."""
        self.tabs.setCurrentWidget(self.captions)
        self.captions.rank_tile(tile_id)

    def reset_views(self) -> None:
        """Forget everything shown of the previous library or model: results, map highlight, selection, captions."""
        self.search.clear_results()
        self.map.set_results([])
        self.map_details.clear()
        self.cursor_label.setText("")
        self.captions.clear()

    def library_changed(self) -> None:
        """Reload every view from the library (opened, created or grown)."""
        shown_for = (str(self.backend.library_path), str(self.backend.model_path), str(self.backend.backbone_weights))
        if shown_for != self._views_of:
            # tile ids of another library (or another model's scores) would be drawn on the wrong tiles
            self._views_of = shown_for
            self.reset_views()
        self.images.clear()
        try:
            tiles = self.backend.tiles(refresh=True)
        except DvanError as exc:
            self.show_message(str(exc))
            tiles = []
        self.map.set_tiles(tiles)
        if self.search.outcome is not None:
            self.map.set_results(self.search.outcome.hits)
        path = self.backend.library_path
        if path is not None:
            self.settings_panel.show_library(str(path))
        self._update_model_label()
        self.search.refresh_model_state()
        self.library.refresh()
        self.training.refresh()
        self.prepare_projections()

    def model_changed(self, path: str | Path | None) -> None:
        """Make a checkpoint active and bring the library's projections up to date for it."""
        self.backend.set_model(path)
        self.settings.active_model = str(path) if path else ""
        self.settings_panel.show_model(Path(path) if path else None)
        self.library_changed()

    def _weights_changed(self, path: str) -> None:
        self.backend.set_backbone_weights(path or None)
        self.library_changed()

    def _device_changed(self, device: str) -> None:
        self.backend.set_device(device)
        self.show_message(f"Compute device: {device} (used from the next model load)")

    # --- start-up: the window first, then the model and the library in the background -------
    def open_library_in_background(self, path: str | Path, on_failure: Any = None) -> Worker:
        """Open a library on a worker (the window stays responsive); the views follow once it is open.

        A query spoken meanwhile waits for it (:meth:`~app.backend.Backend.expect_library`).
        ``on_failure(message)`` is called when it cannot be opened.
        """
        target = Path(path)
        self.backend.expect_library()
        worker = self.library_jobs.start(self.backend.open_library, target, plain=True,
                                         on_finished=lambda _: self._library_opened(target),
                                         on_failed=lambda exc: self._library_failed(exc, on_failure),
                                         on_done=self.update_loading)  # the worker counts as running until done
        self.update_loading()
        return worker

    def _library_opened(self, path: Path) -> None:
        self.settings.library_path = str(path)
        self.library.say(f"Opened {path}.")
        self.library_changed()
        self.update_loading()

    def _library_failed(self, error: BaseException, on_failure: Any) -> None:
        text = str(error) if isinstance(error, DvanError) else f"The library cannot be opened: {error}"
        self.show_message(text)
        self.update_loading()
        if on_failure is not None:
            on_failure(text)

    def start_loading(self) -> None:
        """Start loading the model (and the projections it needs) if the constructor was told to wait."""
        if self._loading_held:
            self._loading_held = False
            self.prepare_projections()

    def start_loading_after_paint(self) -> None:
        """Call :meth:`start_loading` once the window has painted for the first time."""
        window = self

        class FirstPaint(QObject):
            def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
                if event.type() == QEvent.Type.Paint:
                    window.removeEventFilter(self)
                    QTimer.singleShot(0, window.start_loading)  # after this paint completes
                return False

        self._first_paint = FirstPaint(self)
        self.installEventFilter(self._first_paint)

    def loading_text(self) -> str:
        """What is still loading, as the Search tab's banner says it ("" when nothing is)."""
        parts = []
        if self.model_loading():
            parts.append("loading the model")
        if self.backend.library_opening or self.library_jobs.running:
            parts.append("opening the library")  # until the views have it too
        if self._building_demo:
            parts.append("preparing the demo library (first start only)")
        if not parts:
            return ""
        text = " and ".join(parts)
        hint = " Hold to speak works as soon as the model is loaded." if self.model_loading() else ""
        return f"{text[0].upper()}{text[1:]}…{hint}"

    def model_loading(self) -> bool:
        """Whether the active trained model is being loaded (searching waits for it)."""
        return self.warm_jobs.running and not self.backend.model_loaded and self.backend.model_status().trained

    def update_loading(self) -> None:
        """Show the loading state in the Search tab; hold-to-speak is off only while the model loads."""
        self.search.set_loading(self.loading_text())
        if self.model_loading():
            self.search.talk.setEnabled(False)

    def _warm_progress(self, report: Progress) -> None:
        if report.stage == "model":
            self._model_ready()

    def _model_ready(self) -> None:
        if self.backend.model_loaded:
            self._background_start = False  # torch is in: later model changes load as they always did
        if not self.search.talk.isEnabled() and not self.search.busy and not self.prepare_jobs.running:
            self.search.talk.setEnabled(True)
        self.update_loading()
        if self.backend.library is not None:
            self.prepare_projections()

    # --- demo ------------------------------------------------------------------------------
    def open_demo(self, path: str | Path | None = None) -> Worker:
        """Open the demo library, building it first on first use (progress in the status bar)."""
        from app.jobs import demo_job

        target, ready = demo_library(path)
        if ready:
            worker = self.open_library_in_background(target)
            worker.signals.finished.connect(lambda _: self._demo_message(target))
            return worker
        model, device, _ = self.backend.job_settings()
        # without a trained model only backbone features are stored; projections follow once one is active
        self.job_bar.show()
        self.show_message(f"Preparing the demo library in {target}…")
        self._building_demo = True
        worker = self.prepare_jobs.start(
            demo_job, str(target), model, device, process=True,
            on_finished=lambda folder: self._demo_ready(Path(folder)),
            on_failed=lambda exc: self._prepare_done(f"The demo library cannot be built: {exc}"),
            on_cancelled=lambda: self._prepare_done("Building the demo library was cancelled; start with --demo "
                                                    "again to complete it."),
            on_done=self._demo_job_done)
        self.update_loading()
        return worker

    def _demo_job_done(self) -> None:
        self._building_demo = False
        self.update_loading()

    def _demo_ready(self, folder: Path) -> None:
        self.job_bar.hide()
        self.prepare_jobs.release()  # opening the library starts its projections on the same controller
        self._building_demo = False
        self.library.open_library(folder)
        self._demo_message(folder)

    def _demo_message(self, folder: Path) -> None:
        self.show_message(f"Demo library {folder}: UC Merced test images; their coordinates are illustrative. "
                          "Hold Space and say e.g. \"many planes parked next to a long terminal\".")

    # --- projections -----------------------------------------------------------------------
    def prepare_projections(self) -> Worker | None:
        """Compute the library's projections for the active model on a worker, with progress, when needed."""
        if self.prepare_jobs.running:
            return self.prepare_jobs.worker
        if self._loading_held:
            return None  # start_loading() comes back here
        if self._background_start and self.backend.library is not None and not self.backend.model_loaded \
                and self.backend.model_status().trained:
            # at start-up the model loads on a worker first (the GUI never waits for torch's import);
            # _model_ready comes back here
            loading = self.warm_up()
            if loading is not None:
                return None
        try:
            needed = self.backend.needs_projection()
        except DvanError as exc:
            self.show_message(str(exc))
            return None
        if not needed:
            self.warm_up()
            return None
        self.search.talk.setEnabled(False)
        self.job_bar.show()
        self.show_message("Computing the library's projections for the active model…")
        from app.jobs import reproject_job

        model, device, weights = self.backend.job_settings()
        return self.prepare_jobs.start(
            reproject_job, str(self.backend.library_path), model, device, weights, process=True,
            on_finished=lambda _: self._prepare_done("Projections up to date for the active model."),
            on_failed=lambda exc: self._prepare_done(f"Projections failed: {exc}"),
            on_cancelled=lambda: self._prepare_done("Projections cancelled; search stays off until they are "
                                                    "computed."))

    def warm_up(self) -> Worker | None:
        """Load the model and the audio front end in the background (the first query is then fast)."""
        status = self.backend.model_status()
        if not status.trained or self._loading_held:
            return None
        if self.warm_jobs.running:
            return self.warm_jobs.worker
        key = (str(status.path), self.backend.device, str(self.backend.library_path))
        if key == self._warmed:
            return None
        self._warmed = key
        worker = self.warm_jobs.start(self.backend.warm_up, on_progress=self._warm_progress, on_done=self._warm_done,
                                      on_failed=lambda exc: self.show_message(f"The model cannot be loaded: {exc}"))
        self.update_loading()
        return worker

    def _warm_done(self) -> None:
        if "torch" in sys.modules:  # loaded by now: asking it costs nothing
            self.settings_panel.refresh_detected()
        # loaded or failed (the failure is in the status bar, and a search would say it again): hold-to-speak
        # is back on either way; after the "model" report this only repeats cheap checks
        self._model_ready()
        self.prestart_jobs()

    def prestart_jobs(self) -> Worker | None:
        """Start a job server in the background (once), so an import or a training run starts without a pause.

        Starting a process forks this one, which stalls the GUI for a moment (measured 0.27 s here);
        at start-up nobody notices. ``DVAN_APP_NO_PRESTART=1`` turns it off (tests).
        """
        import os

        if self._prestarted or os.environ.get("DVAN_APP_NO_PRESTART"):
            return None
        from app.jobs import prewarm

        self._prestarted = True
        model, device, weights = self.backend.job_settings()
        return self.prestart_control.start(prewarm, model, device, weights, process=True)

    def _prepare_done(self, text: str) -> None:
        self.backend.reload()
        self.warm_up()
        self.job_bar.hide()
        self.search.talk.setEnabled(True)
        self.show_message(text)
        self.library.refresh()
        self.projections_ready.emit()

    # --- keyboard: Space = hold to speak ----------------------------------------------------
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        kind = event.type()
        if kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease) and isinstance(event, QKeyEvent) \
                and event.key() == Qt.Key.Key_Space and isinstance(watched, QWidget) and watched.window() is self \
                and self.tabs.currentWidget() is self.search \
                and not text_input_has_focus(QApplication.focusWidget()):
            if event.isAutoRepeat():
                return True
            if kind == QEvent.Type.KeyPress:
                if self._space_release.isActive():
                    self._space_release.stop()  # a release followed at once by a press: key auto-repeat
                else:
                    self.search.press()
            else:
                self._space_release.start()
            return True
        return super().eventFilter(watched, event)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        if self.recorder.recording:
            self.recorder.stop()
        self.player.stop()
        for jobs in (self.library.jobs, self.prepare_jobs, self.training.jobs):
            jobs.cancel()
        QApplication.instance().removeEventFilter(self)  # type: ignore[union-attr]
        self.settings.window_geometry = bytes(self.saveGeometry().data())
        from app.worker import shutdown_job_servers

        shutdown_job_servers()
        super().closeEvent(event)
