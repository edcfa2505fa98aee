"""Search by voice: hold-to-speak, live level, ranked results grid, tile details.

Press and hold the big button (or Space when no text field has focus), speak, release. The
recording is checked for speech (:func:`dvan.audio.vad.check_speech`) and cut to it; without speech the panel
says "No speech heard" and does not search. Otherwise the query is searched on a worker thread
and the ranked tiles appear as a grid: rank, thumbnail, matching probability as number and bar.
Only then does a second job transcribe the query: the words heard appear under the button, and
in text or hybrid mode (the "Mode" choice, saved in the settings) the ranking is refined with them
when they arrive. Typing words in the search box and pressing Enter searches by text.
Selecting a tile shows it at full resolution with its metadata and asks the map to centre on it.
A query can also come from an audio file (button, or drop it onto the panel), and the last query
can be replayed.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import (
    QAbstractListModel,
    QByteArray,
    QElapsedTimer,
    QMimeData,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QRect,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import QAction, QColor, QFont, QImage, QKeySequence, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from app.audio import MAX_RECORD_SECONDS, AudioDeviceError, Player, Recorder
from app.backend import Backend, export_suffixes, footprint_text
from app.result_tools import P_EXPLAINED, ResultFilter, no_strong_match_text, result_row
from app.settings import QUERY_MODES, AppSettings
from app.thumbs import ImageCache
from app.types import Heard, Hit, SearchOutcome, TileInfo
from app.widgets import DropArea, DropFilter, ImageLabel, LevelMeter, microphone_icon, paint_probability_bar
from app.worker import Worker
from dvan.audio.io import AUDIO_SUFFIXES
from dvan.audio.vad import check_speech
from dvan.errors import DvanError

#: MIME type of a dragged result tile (payload: the tile id as ASCII).
TILE_MIME = "application/x-dvan-tile-id"
#: Results shown in the grid (the map highlights fewer).
MAX_RESULTS = 200

CELL = QSize(168, 214)
HOLD_TEXT = "Hold to speak"
#: The banner's look for a problem that keeps search off (no trained model, no library).
BANNER_PROBLEM = "background: #5a2a1a; color: #ffd9c9; padding: 6px; border-radius: 4px;"
#: Its look while the model or the library loads at start-up: a state, not an error.
BANNER_LOADING = "background: #1f3550; color: #d6e6ff; padding: 6px; border-radius: 4px;"
LISTEN_TEXT = "Listening… release to search"
THUMB = 144
#: How each query mode is offered in the Mode box.
MODE_LABELS = {"auto": "Auto (model's choice)", "audio": "Audio (voice only)", "text": "Text (words heard or typed)",
               "hybrid": "Hybrid (voice + words)"}


def describe_tile(tile: TileInfo) -> list[tuple[str, str]]:
    """Label/value rows of a tile's metadata for the details form."""
    col, row, width, height = tile.window
    rows = [("Source file", str(tile.source)), ("Pixel window", f"columns {col}–{col + width}, rows {row}–{row + height} "
                                                                f"({width} × {height} px)")]
    rows.append(("CRS", _short_crs(tile.crs) if tile.crs else "none (plain image, not georeferenced)"))
    if tile.pixel_size:
        rows.append(("Pixel size", f"{abs(tile.pixel_size[0]):.6g} × {abs(tile.pixel_size[1]):.6g} (CRS units)"))
    else:
        rows.append(("Pixel size", "unknown"))
    if tile.lonlat_polygon:
        corners = "\n".join(f"{name}: {lon:.6f}, {lat:.6f}" for name, (lon, lat) in
                            zip(("top-left", "top-right", "bottom-right", "bottom-left"), tile.lonlat_polygon,
                                strict=False))
        rows.append(("Footprint (lon, lat)", corners))
    else:
        rows.append(("Footprint", "not georeferenced: listed beside the map, not placed"))
    return rows


def _short_crs(crs: str) -> str:
    if crs.upper().startswith("EPSG:"):
        return crs.upper()
    try:
        from rasterio.crs import CRS

        parsed = CRS.from_user_input(crs)
        epsg = parsed.to_epsg()
        if epsg:
            return f"EPSG:{epsg}"
        return parsed.to_string()[:120]
    except Exception:  # noqa: BLE001 - any parsing failure: show the start of the WKT
        return crs[:120]


class ResultsModel(QAbstractListModel):
    """Ranked hits for the grid; drags carry the tile id (for the captions panel)."""

    HitRole = Qt.ItemDataRole.UserRole + 1

    def __init__(self, images: ImageCache, parent: Any = None) -> None:
        super().__init__(parent)
        self.images = images
        self.hits: list[Hit] = []

    def set_hits(self, hits: list[Hit]) -> None:
        """Replace the results."""
        self.beginResetModel()
        self.hits = hits[:MAX_RESULTS]
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.hits)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self.hits):
            return None
        hit = self.hits[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return f"#{hit.rank} {hit.tile.name}"
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"Rank {hit.rank}, matching probability {hit.probability:.4f}\n{hit.tile.name}"
        if role == Qt.ItemDataRole.DecorationRole:
            return self.images.thumbnail(hit.tile.id)
        if role == self.HitRole:
            return hit
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        base = super().flags(index)
        return base | Qt.ItemFlag.ItemIsDragEnabled if index.isValid() else base

    def mimeTypes(self) -> list[str]:  # noqa: N802 - Qt override
        return [TILE_MIME]

    def mimeData(self, indexes: Sequence[QModelIndex]) -> QMimeData:  # noqa: N802 - Qt override
        data = QMimeData()
        if indexes:
            hit = self.hits[indexes[0].row()]
            data.setData(TILE_MIME, QByteArray(str(hit.tile.id).encode()))
            data.setText(hit.tile.name)
        return data


class ResultDelegate(QStyledItemDelegate):
    """Paints one result: rank badge, thumbnail, probability bar with its number, tile name."""

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:  # noqa: N802
        return CELL

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> None:
        hit = index.data(ResultsModel.HitRole)
        if hit is None:
            return
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        r: QRect = option.rect.adjusted(4, 4, -4, -4)  # type: ignore[attr-defined]
        selected = bool(option.state & QStyle.StateFlag.State_Selected)  # type: ignore[attr-defined]
        painter.setPen(QColor(0, 170, 255) if selected else QColor(70, 74, 82))
        painter.setBrush(QColor(40, 60, 80) if selected else QColor(44, 47, 54))
        painter.drawRoundedRect(r, 6, 6)
        image = index.data(Qt.ItemDataRole.DecorationRole)
        thumb_rect = QRect(r.x() + (r.width() - THUMB) // 2, r.y() + 6, THUMB, THUMB)
        if isinstance(image, QImage) and not image.isNull():
            scaled = image.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                  Qt.TransformationMode.SmoothTransformation)
            x = thumb_rect.x() + (THUMB - scaled.width()) // 2
            y = thumb_rect.y() + (THUMB - scaled.height()) // 2
            painter.drawImage(x, y, scaled)
        else:
            painter.fillRect(thumb_rect, QColor(30, 30, 30))
            painter.setPen(QColor(160, 160, 160))
            painter.drawText(thumb_rect, Qt.AlignmentFlag.AlignCenter, "no preview")
        badge = QRect(thumb_rect.x() + 4, thumb_rect.y() + 4, 34, 22)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(0, 0, 0, 170))
        painter.drawRoundedRect(badge, 4, 4)
        font = QFont(painter.font())
        font.setBold(True)
        painter.setFont(font)
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, f"#{hit.rank}")
        bar = QRect(r.x() + 8, thumb_rect.bottom() + 6, r.width() - 16, 18)
        paint_probability_bar(painter, bar, hit.probability)
        name_rect = QRect(r.x() + 6, bar.bottom() + 4, r.width() - 12, r.bottom() - bar.bottom() - 4)
        font.setBold(False)
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        painter.setFont(font)
        painter.setPen(QColor(200, 200, 200))
        painter.drawText(name_rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop,
                         painter.fontMetrics().elidedText(hit.tile.short_name, Qt.TextElideMode.ElideMiddle,
                                                          name_rect.width()))
        painter.restore()


class TileDetails(QWidget):
    """The selected tile at full resolution with its metadata."""

    def __init__(self, images: ImageCache, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.images = images
        self.title = QLabel("Select a result to see the tile.")
        self.title.setWordWrap(True)
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.image = ImageLabel("")
        self.form = QFormLayout()
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.image, 1)
        layout.addLayout(self.form)
        self.fields: dict[str, str] = {}
        self.tile: TileInfo | None = None

    def clear(self) -> None:
        """Show no tile (the library or the model changed)."""
        self.tile = None
        self.title.setText("Select a result to see the tile.")
        self.image.set_image(None)
        while self.form.rowCount():
            self.form.removeRow(0)
        self.fields = {}

    def show_tile(self, tile: TileInfo, hit: Hit | None = None) -> None:
        """Show one tile (and its rank/probability when it is a result)."""
        prefix = f"#{hit.rank} · p = {hit.probability:.4f} · " if hit is not None else ""
        self.title.setText(prefix + tile.name)
        self.tile = tile
        image = self.images.full(tile.id)
        self.image.set_image(image)
        if image is None:
            self.image.setText("The source file cannot be read (moved or deleted?).")
        while self.form.rowCount():
            self.form.removeRow(0)
        self.fields = dict(describe_tile(tile))
        for label, value in describe_tile(tile):
            text = QLabel(value)
            text.setWordWrap(True)
            text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.form.addRow(label + ":", text)


def _understand(backend: Backend, serial: int, spoken: tuple[np.ndarray, int] | Path,
                source: str) -> tuple[int, Heard | BaseException]:
    """Worker job: the transcript (and refined ranking) of query number ``serial``, or the error it met."""
    try:
        return serial, backend.understand(spoken, source)
    except Exception as exc:  # noqa: BLE001 - shown under the button; the audio ranking stands
        return serial, exc


class SearchPanel(QWidget):
    """The Search tab.

    Signals:
        results_changed(list): new ranked hits (for the map).
        tile_selected(int): a result was selected (the map centres on it).
        status(str): a line for the status bar.
        captions_requested(int): "Captions for this tile" was chosen for a result.
        exported(str): results were written to this file.
    """

    results_changed = Signal(list)
    tile_selected = Signal(int)
    status = Signal(str)
    search_done = Signal(float)
    captions_requested = Signal(int)
    exported = Signal(str)

    def __init__(self, backend: Backend, settings: AppSettings, images: ImageCache, recorder: Recorder | None = None,
                 player: Player | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        self.settings = settings
        self.images = images
        self.recorder = recorder or Recorder(self)
        self.player = player or Player(self)
        self.query: tuple[np.ndarray, int] | None = None
        self.query_file: Path | None = None
        self.outcome: SearchOutcome | None = None
        self.worker: Worker | None = None
        self.last_latency_ms: float | None = None
        #: key release -> transcript shown, and -> refined (text/hybrid) ranking shown, of the last spoken query
        self.last_heard_ms: float | None = None
        self.last_refined_ms: float | None = None
        self.heard_worker: Worker | None = None
        self._serial = 0
        self._spoken: tuple[np.ndarray, int] | Path | None = None
        self._since_query = QElapsedTimer()
        self._since_release = QElapsedTimer()
        self._stopped_by_limit = False
        self.loading = ""  # what is still loading at start-up ("" when nothing); see set_loading
        # results of a search started before the library or model changed are dropped
        self._generation = 0

        self.talk = QPushButton(HOLD_TEXT)
        self.talk.setObjectName("HoldToSpeak")
        self.talk.setMinimumHeight(72)
        self.talk.setMinimumWidth(260)
        self.talk.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.talk.setStyleSheet("#HoldToSpeak { font-size: 18pt; font-weight: bold; border-radius: 10px; "
                                "background: #2d6cdf; color: white; padding: 8px 18px; }"
                                "#HoldToSpeak:pressed, #HoldToSpeak[recording=\"true\"] { background: #d33c3c; }"
                                "#HoldToSpeak:disabled { background: #555; color: #aaa; }")
        self.talk.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.talk.setIcon(microphone_icon())
        self.talk.setIconSize(QSize(34, 34))
        self.talk.setToolTip("Press and hold (or hold the Space key), say what you are looking for, release. "
                             f"At most {MAX_RECORD_SECONDS:.0f} s.")
        self.talk.pressed.connect(self.press)
        self.talk.released.connect(self.release)
        self.heard = QLabel("")
        self.heard.setObjectName("Heard")
        self.heard.setWordWrap(True)
        self.heard.setMaximumWidth(320)
        self.heard.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.heard.setToolTip("What the speech recogniser heard (offline Whisper tiny.en)")
        self.text_query = QLineEdit()
        self.text_query.setPlaceholderText("…or type what you are looking for and press Enter")
        self.text_query.setClearButtonEnabled(True)
        self.text_query.returnPressed.connect(self.search_typed)
        self.mode_box = QComboBox()
        for mode in QUERY_MODES:
            self.mode_box.addItem(MODE_LABELS[mode], mode)
        self.mode_box.setCurrentIndex(QUERY_MODES.index(self.settings.query_mode))
        self.mode_box.setToolTip("How spoken queries rank: the audio branch alone, the words heard through the text "
                                 "branch, or both. The audio ranking is always shown first.")
        self.mode_box.currentIndexChanged.connect(self._mode_changed)
        self.backend.query_mode = self.settings.query_mode
        self.meter = LevelMeter()
        self.message = QLabel("Hold the button or the Space key, say what you are looking for, release.")
        self.message.setWordWrap(True)
        self.open_button = QPushButton("Open audio file…")
        self.open_button.clicked.connect(self._choose_file)
        self.replay_button = QPushButton("▶ Replay query")
        self.replay_button.setEnabled(False)
        self.replay_button.clicked.connect(self.replay)
        self.model_banner = QLabel("")
        self.model_banner.setObjectName("ModelBanner")
        self.model_banner.setWordWrap(True)
        self.model_banner.setStyleSheet(BANNER_PROBLEM)
        self.model_banner.hide()

        side = QVBoxLayout()
        meter_row = QHBoxLayout()
        meter_row.addWidget(QLabel("Input level"))
        meter_row.addWidget(self.meter, 1)
        side.addLayout(meter_row)
        side.addWidget(self.message)
        typed = QHBoxLayout()
        typed.addWidget(self.text_query, 1)
        typed.addWidget(QLabel("Mode"))
        typed.addWidget(self.mode_box)
        side.addLayout(typed)
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.replay_button)
        buttons.addStretch(1)
        side.addLayout(buttons)
        talk_column = QVBoxLayout()
        talk_column.addWidget(self.talk)
        talk_column.addWidget(self.heard)
        talk_column.addStretch(1)
        top = QHBoxLayout()
        top.addLayout(talk_column)
        top.addLayout(side, 1)

        self.drop = DropArea(DropFilter(AUDIO_SUFFIXES))
        self.drop.files_dropped.connect(lambda files: self.search_file(files[0]))
        drop_layout = QVBoxLayout(self.drop)
        drop_layout.addLayout(top)
        drop_layout.addWidget(self.model_banner)

        self.model = ResultsModel(images, self)
        self.grid = QListView()
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setUniformItemSizes(True)
        self.grid.setGridSize(CELL)
        self.grid.setSpacing(0)
        self.grid.setWrapping(True)
        self.grid.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.grid.setDragEnabled(True)
        self.grid.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.grid.setItemDelegate(ResultDelegate(self.grid))
        self.grid.setModel(self.model)
        self.grid.selectionModel().currentChanged.connect(self._current_changed)
        self.grid.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.grid.customContextMenuRequested.connect(self._grid_menu)
        copy_row = QAction("Copy result", self.grid)
        copy_row.setShortcut(QKeySequence.StandardKey.Copy)
        copy_row.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        copy_row.triggered.connect(self.copy_result)
        self.grid.addAction(copy_row)
        self.summary = QLabel("No query yet.")
        self.summary.setWordWrap(True)
        self.summary.setToolTip(P_EXPLAINED)
        self.verdict = QLabel("")
        self.verdict.setObjectName("NoStrongMatch")
        self.verdict.setWordWrap(True)
        self.verdict.setStyleSheet("#NoStrongMatch { background: #4a3b00; color: #ffe08a; padding: 6px; "
                                   "border-radius: 4px; }")
        self.verdict.hide()
        self.filter = ResultFilter(settings)
        self.filter.changed.connect(self._refilter)
        self.export_button = QPushButton("Export results…")
        self.export_button.setToolTip("Write the results shown, with their footprints, to a GeoPackage, GeoJSON or "
                                      "CSV file (for QGIS or ArcGIS)")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(lambda: self.export_results())
        filter_row = QHBoxLayout()
        filter_row.addWidget(self.filter, 1)
        filter_row.addWidget(self.export_button)

        results = QWidget()
        results_layout = QVBoxLayout(results)
        results_layout.setContentsMargins(0, 0, 0, 0)
        results_layout.addWidget(self.summary)
        results_layout.addWidget(self.verdict)
        results_layout.addLayout(filter_row)
        results_layout.addWidget(self.grid, 1)
        self.details = TileDetails(images)
        self.captions_button = QPushButton("Captions for this tile")
        self.captions_button.setToolTip("Rank the library's spoken captions for the selected result (Captions tab)")
        self.captions_button.setEnabled(False)
        self.captions_button.clicked.connect(self._captions_for_current)
        details = QWidget()
        details_layout = QVBoxLayout(details)
        details_layout.setContentsMargins(0, 0, 0, 0)
        details_layout.addWidget(self.details, 1)
        details_layout.addWidget(self.captions_button)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(results)
        splitter.addWidget(details)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)

        layout = QVBoxLayout(self)
        layout.addWidget(self.drop)
        layout.addWidget(splitter, 1)

        self.recorder.level.connect(self.meter.set_level)
        self.recorder.limit_reached.connect(self._limit_reached)
        self.refresh_model_state()

    # --- state -----------------------------------------------------------------------------
    def set_loading(self, text: str) -> None:
        """Show what is still loading at start-up (a neutral banner, not a problem); "" when all is loaded."""
        self.loading = text
        self.refresh_model_state()

    def refresh_model_state(self) -> None:
        """Show whether searching is possible with the active model and library."""
        status = self.backend.model_status()
        problem = ""
        if not status.trained:
            problem = "Search is off: " + (status.message or "no trained model.")
        elif self.backend.library is None and not self.loading:
            problem = "No library is open: create or open one in the Library tab (or start with --demo)."
        if problem:
            self.model_banner.setStyleSheet(BANNER_PROBLEM)
            self.model_banner.setText(problem)
            self.model_banner.show()
        elif self.loading:
            self.model_banner.setStyleSheet(BANNER_LOADING)
            self.model_banner.setText(self.loading)
            self.model_banner.show()
        else:
            self.model_banner.hide()

    def say(self, text: str, error: bool = False) -> None:
        """Show a message under the meter (red for problems) and in the status bar."""
        self.message.setText(text)
        self.message.setStyleSheet("color: #ff8a80;" if error else "")
        self.status.emit(text)

    @property
    def busy(self) -> bool:
        """Whether a search is running."""
        return self.worker is not None and self.worker.running

    # --- recording -------------------------------------------------------------------------
    def press(self) -> None:
        """Start recording (button or Space pressed)."""
        if self.recorder.recording or self.busy:
            return
        if not self.talk.isEnabled():
            self.say(f"Wait a moment: {self.loading[0].lower() + self.loading[1:]}" if self.loading else
                     "Wait a moment: the library's projections for the active model are being computed "
                     "(progress in the status bar).", error=True)
            return
        self._stopped_by_limit = False
        try:
            self.recorder.start(self.settings.input_device or None)
        except AudioDeviceError as exc:
            self.say(f"Microphone problem: {exc}", error=True)
            return
        self.talk.setProperty("recording", True)
        self.talk.style().polish(self.talk)
        self.talk.setText(LISTEN_TEXT)
        self.say(f"Listening… (at most {self.recorder.max_seconds:.0f} s)")

    def release(self) -> None:
        """Stop recording and search (button or Space released)."""
        if not self.recorder.recording:
            return
        self._since_release.start()
        samples, rate = self.recorder.stop()
        self._reset_button()
        self.handle_recording(samples, rate)

    def _reset_button(self) -> None:
        self.talk.setProperty("recording", False)
        self.talk.style().polish(self.talk)
        self.talk.setText(HOLD_TEXT)

    def _limit_reached(self) -> None:
        self._stopped_by_limit = True
        self._since_release.start()
        samples, rate = self.recorder.stop()
        self._reset_button()
        self.handle_recording(samples, rate,
                              note=f"Recording stopped at the {self.recorder.max_seconds:.0f} s limit; searching with it.")

    def handle_recording(self, samples: np.ndarray, rate: int, note: str = "") -> bool:
        """Check a recording for speech and search with it; False when nothing was said."""
        check = check_speech(samples, rate)
        if not check.has_speech:
            self.say(check.message, error=True)
            return False
        # both branches hear the speech alone: noise before and after it only misleads them
        self.query = (check.trim(samples), int(rate))
        self.query_file = None
        self._spoken = self.query
        self.replay_button.setEnabled(True)
        if not self._since_release.isValid():
            self._since_release.start()
        self._run_search(self.backend.search_waveform, self.query[0], rate,
                         note or f"Searching with {check.duration_s:.1f} s of audio…")
        return True

    def search_file(self, path: str | Path) -> None:
        """Search with a spoken query in an audio file."""
        self.query_file = Path(path)
        self.query = None
        self._spoken = self.query_file
        self.replay_button.setEnabled(True)
        self._since_release.start()
        self._run_search(self.backend.search_file, self.query_file, f"Searching with {self.query_file.name}…")

    def search_typed(self) -> None:
        """Search with the words in the search box (Enter)."""
        text = " ".join(self.text_query.text().split())
        if not text:
            self.say("Type what you are looking for, e.g. “airplanes parked at a terminal”, then press Enter.",
                     error=True)
            return
        self._spoken = None
        self._since_release.start()
        self._run_search(self.backend.search_text, text, f"Searching for “{text}”…")

    def _mode_changed(self, index: int) -> None:
        mode = str(self.mode_box.itemData(index))
        self.settings.query_mode = mode
        self.backend.query_mode = mode

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a spoken query", "", "Audio (*.wav *.flac *.ogg *.oga)")
        if path:
            self.search_file(path)

    def _run_search(self, fn: Any, *args: Any) -> None:
        *call_args, text = args
        if self.busy:
            return
        self.say(text)
        self.talk.setEnabled(False)
        generation = self._generation
        self._serial += 1
        self._since_query.start()
        self.last_heard_ms = self.last_refined_ms = None
        self.heard.setText("")
        worker = Worker(fn, *call_args, plain=True)
        worker.signals.finished.connect(lambda outcome: self._search_finished(outcome) if generation == self._generation
                                        else self._search_dropped())
        worker.signals.failed.connect(lambda exc: self._search_failed(exc) if generation == self._generation
                                      else self._search_dropped())
        self.worker = worker.start()

    def _search_dropped(self) -> None:
        self.talk.setEnabled(True)
        self._since_release.invalidate()
        self.say("The library or the model changed during the search; its results were dropped. Ask again.")

    def clear_results(self) -> None:
        """Forget the results (the library or the model changed: they would point at other tiles)."""
        self._generation += 1
        self.outcome = None
        self.model.set_hits([])
        self.details.clear()
        self.summary.setText("No query yet.")
        self.verdict.hide()
        self.export_button.setEnabled(False)
        self.captions_button.setEnabled(False)
        self.results_changed.emit([])

    def _search_finished(self, outcome: SearchOutcome) -> None:
        self.talk.setEnabled(True)
        self.show_outcome(outcome)
        self.last_latency_ms = float(self._since_release.elapsed())
        self._since_release.invalidate()
        self.search_done.emit(self.last_latency_ms)
        if self._spoken is not None:
            self._start_listening_to_words(self._spoken)

    # --- what was heard ------------------------------------------------------------------------
    def _start_listening_to_words(self, spoken: tuple[np.ndarray, int] | Path) -> None:
        """Transcribe the query just ranked (and refine the ranking in text/hybrid mode) on a worker."""
        self.heard.setText("Hearing the words…")
        self.heard.setStyleSheet("color: #9aa0a6; font-style: italic;")
        source = self.outcome.source if self.outcome is not None else "microphone"
        worker = Worker(_understand, self.backend, self._serial, spoken, source, plain=True)
        worker.signals.finished.connect(self._heard)  # a bound slot: disconnected if the panel goes first
        self.heard_worker = worker.start()

    def _heard(self, result: tuple[int, Heard | BaseException]) -> None:
        serial, heard = result
        if serial != self._serial:  # a newer query was made meanwhile
            return
        if isinstance(heard, BaseException):
            self.heard.setStyleSheet("color: #ff8a80;")
            self.heard.setText(f"No transcript: {heard}" if isinstance(heard, DvanError)
                               else f"No transcript: {type(heard).__name__}: {heard}")
            return
        self.last_heard_ms = float(self._since_query.elapsed())
        self.heard.setStyleSheet("")
        self.heard.setText(f"Heard: “{heard.text}”" if heard.text else "Heard: (no words recognised)")
        self.heard.setToolTip(heard.note or "What the speech recogniser heard (offline Whisper tiny.en)")
        if heard.refined is not None:
            self.show_outcome(heard.refined)
            self.last_refined_ms = float(self._since_query.elapsed())

    def _search_failed(self, error: BaseException) -> None:
        self.talk.setEnabled(True)
        self._since_release.invalidate()
        if isinstance(error, DvanError):
            self.say(str(error), error=True)
        else:
            self.say(f"Search failed: {type(error).__name__}: {error}", error=True)
        self.refresh_model_state()

    def show_outcome(self, outcome: SearchOutcome) -> None:
        """Show ranked results (the best ones the filter lets through), or say there is no strong match."""
        self.outcome = outcome
        self._refilter()
        self.say(f"{len(outcome.hits)} results in {outcome.seconds * 1000:.0f} ms" +
                 (f" — recording was cut at the {self.recorder.max_seconds:.0f} s limit" if self._stopped_by_limit else ""))

    def _refilter(self) -> None:
        outcome = self.outcome
        if outcome is None:
            return
        shown = self.filter.apply(outcome.hits)
        self.model.set_hits(shown)
        top = outcome.hits[0] if outcome.hits else None
        extra = " (query longer than the model's 10 s: cut)" if outcome.truncated else ""
        how = {"audio": "voice", "text": "words", "hybrid": "voice + words"}.get(outcome.mode, outcome.mode)
        words = f" “{outcome.text}”" if outcome.text else ""
        self.summary.setText(f"{len(shown)} of {len(outcome.hits)} ranked tiles shown for "
                             f"{outcome.source or 'the query'}{extra} by {how}{words}; "
                             + (f"best p = {top.probability:.3f}" if top else "the library is empty"))
        verdict = no_strong_match_text(outcome.hits)
        self.verdict.setText(verdict or "")
        self.verdict.setVisible(verdict is not None)
        self.export_button.setEnabled(bool(shown))
        self.captions_button.setEnabled(False)
        if shown:
            self.grid.setCurrentIndex(self.model.index(0))
        else:
            self.details.clear()
        # after the selection: the map centres on #1, then fits every result shown
        self.results_changed.emit(shown)

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        hit = current.data(ResultsModel.HitRole) if current.isValid() else None
        if hit is None:
            return
        self.details.show_tile(hit.tile, hit)
        self.captions_button.setEnabled(True)
        self.tile_selected.emit(hit.tile.id)

    # --- a result's actions: captions, copy, export ------------------------------------------
    def current_hit(self) -> Hit | None:
        """The selected result."""
        index = self.grid.currentIndex()
        return index.data(ResultsModel.HitRole) if index.isValid() else None

    def _captions_for_current(self) -> None:
        hit = self.current_hit()
        if hit is not None:
            self.captions_requested.emit(hit.tile.id)

    def _grid_menu(self, position: QPoint) -> None:
        index = self.grid.indexAt(position)
        if not index.isValid():
            return
        self.grid.setCurrentIndex(index)
        hit: Hit = index.data(ResultsModel.HitRole)
        menu = QMenu(self.grid)
        menu.addAction("Captions for this tile", lambda: self.captions_requested.emit(hit.tile.id))
        menu.addSeparator()
        for text, kind in (("Copy footprint as WKT (WGS84)", "wkt"), ("Copy footprint as WKT (source CRS)", "wkt-source"),
                           ("Copy footprint as GeoJSON", "geojson")):
            action = menu.addAction(text, partial(self.copy_footprint, kind))
            action.setEnabled(hit.tile.georeferenced)
        menu.addAction("Copy result", self.copy_result)
        menu.addSeparator()
        menu.addAction("Export results…", lambda: self.export_results())
        menu.popup(self.grid.viewport().mapToGlobal(position))

    def copy_footprint(self, kind: str = "wkt") -> str | None:
        """Copy the selected result's footprint ("wkt", "wkt-source" or "geojson") to the clipboard; returns it."""
        hit = self.current_hit()
        if hit is None:
            self.say("Select a result first.", error=True)
            return None
        text = footprint_text(hit, kind)
        if text is None:
            self.say(f"#{hit.rank} {hit.tile.name} is not georeferenced: it has no footprint to copy.", error=True)
            return None
        QApplication.clipboard().setText(text)
        label = {"wkt": "WKT (WGS84 lon/lat)", "wkt-source": "WKT in its source CRS", "geojson": "GeoJSON"}[kind]
        self.say(f"Copied the footprint of #{hit.rank} as {label}.")
        return text

    def copy_result(self) -> str | None:
        """Copy the selected result as one tab-separated line (rank, p, source, window, CRS, WKT)."""
        hit = self.current_hit()
        if hit is None:
            return None
        text = result_row(hit, footprint_text(hit, "wkt"))
        QApplication.clipboard().setText(text)
        self.say(f"Copied #{hit.rank} (rank, p, source, window, CRS, footprint WKT).")
        return text

    def export_results(self, path: str | Path | None = None) -> Path | None:
        """Write the results shown to a GeoPackage, GeoJSON or CSV file (asks for the file without ``path``)."""
        if self.outcome is None or not self.model.hits:
            self.say("No results to export: search first.", error=True)
            return None
        if path is None:
            filters = ";;".join(f"{name} (*{suffix})" for suffix, name in export_suffixes().items() if suffix != ".json")
            chosen, _ = QFileDialog.getSaveFileName(self, "Export results", "results.gpkg", filters)
            if not chosen:
                return None
            path = chosen
        try:
            written = self.backend.export_hits(self.model.hits, path, query=self.outcome.source or "query",
                                               transcript=getattr(self.outcome, "transcript", None))
        except DvanError as exc:
            self.say(str(exc), error=True)
            return None
        self.say(f"Exported {len(self.model.hits)} results to {written}.")
        self.exported.emit(str(written))
        return written

    def show_tile(self, tile_id: int) -> None:
        """Show a tile chosen elsewhere (the map), selecting it in the grid when it is a result."""
        for row, hit in enumerate(self.model.hits):
            if hit.tile.id == tile_id:
                self.grid.setCurrentIndex(self.model.index(row))
                return
        try:
            self.details.show_tile(self.backend.tile(tile_id))
        except DvanError as exc:
            self.say(str(exc), error=True)

    def results(self) -> list[tuple[int, float]]:
        """(tile id, probability) of the results shown, best first."""
        return [(h.tile.id, h.probability) for h in self.model.hits]

    # --- playback --------------------------------------------------------------------------
    def replay(self) -> None:
        """Play the last query back."""
        try:
            if self.query is not None:
                self.player.play(self.query[0], self.query[1], self.settings.output_device or None)
            elif self.query_file is not None:
                self.player.play_file(self.query_file, self.settings.output_device or None)
        except DvanError as exc:
            self.say(f"Cannot play the query: {exc}", error=True)
