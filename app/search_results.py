"""The Search tab's results: the grid with its filter and export, the selected tile's details, a result's actions.

The ranking is shown as a grid (:mod:`app.result_grid`) filtered by probability and footprint
(:class:`app.result_tools.ResultFilter`); the selected result's details sit beside it. A result can
be copied (footprint as WKT or GeoJSON, or a tab-separated row), its spoken captions ranked in the
Captions tab, and the results shown exported for QGIS or ArcGIS.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from PySide6.QtCore import QModelIndex, QPoint, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListView,
    QMenu,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app import palette
from app.backend import Backend, export_suffixes, footprint_text
from app.result_grid import CELL, ResultDelegate, ResultsModel, TileDetails
from app.result_tools import P_EXPLAINED, ResultFilter, no_strong_match_text, result_row
from app.settings import AppSettings
from app.thumbs import ImageCache
from app.types import Hit, SearchOutcome
from app.widgets import split_pair
from dvan.errors import DvanError


class SearchResultsSection(QWidget):
    """The results part of the Search tab (its query part is :class:`app.search_panel.SearchPanel`).

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
    captions_requested = Signal(int)
    exported = Signal(str)

    # set up by SearchPanel.__init__ before the section is built
    backend: Backend
    settings: AppSettings
    images: ImageCache
    outcome: SearchOutcome | None
    #: counts library and model changes: a search started before one is dropped
    _generation: int
    #: the tab's message line (under the level meter)
    message: QLabel

    def say(self, text: str, error: bool = False) -> None:
        """Show a message under the meter (red for problems) and in the status bar."""
        palette.say(self.message, self.status, text, error)

    def _build_results(self) -> QSplitter:
        """The summary, the no-strong-match verdict, filter and export, the grid; the details beside them."""
        self.model = ResultsModel(self.images, self)
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
        self.filter = ResultFilter(self.settings)
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
        self.details = TileDetails(self.images)
        self.captions_button = QPushButton("Captions for this tile")
        self.captions_button.setToolTip("Rank the library's spoken captions for the selected result (Captions tab)")
        self.captions_button.setEnabled(False)
        self.captions_button.clicked.connect(self._captions_for_current)
        details = QWidget()
        details_layout = QVBoxLayout(details)
        details_layout.setContentsMargins(0, 0, 0, 0)
        details_layout.addWidget(self.details, 1)
        details_layout.addWidget(self.captions_button)
        return split_pair(results, details, (3, 2))

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

