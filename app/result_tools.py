"""What the Search tab offers around its results: top-K / minimum-p filter, the match verdict, copying and export.

Kept apart from :mod:`app.search_panel` (recording and the grid) so each module stays small.
The probability ``p`` a result shows is the model's sigmoid output for (query, tile): a score
trained to be high for matching pairs, not a calibrated chance that the tile is what was said.
Below :data:`STRONG_MATCH_P` for the best tile the panel says so instead of presenting a match.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QSpinBox, QWidget

from app.settings import AppSettings
from app.types import Hit, TileInfo

#: Below this best p the results are shown as "no strong match".
STRONG_MATCH_P = 0.5
#: Most results the grid can show.
MAX_SHOWN = 200

P_EXPLAINED = ("p is the model's matching score for the query and a tile, between 0 and 1. It ranks tiles well, but "
               "it is not a calibrated probability: p = 0.9 does not mean 9 in 10 such tiles match. Compare tiles of "
               "one query with it; across queries and libraries its level varies.")


def no_strong_match_text(hits: list[Hit], threshold: float = STRONG_MATCH_P) -> str | None:
    """The "no strong match" message when the best hit is below ``threshold``; None when it is a match (or no hits)."""
    if not hits or hits[0].probability >= threshold:
        return None
    return (f"No strong match: the best tile has p = {hits[0].probability:.3f} (below {threshold:.2f}). The tiles "
            "below are the closest ones, not matches. Try other words, or the library may hold nothing like it.")


def result_row(hit: Hit, wkt: str | None) -> str:
    """A result as one tab-separated line (rank, p, source, window, CRS, WGS84 footprint WKT) for the clipboard."""
    tile: TileInfo = hit.tile
    col, row, width, height = tile.window
    return "\t".join([str(hit.rank), f"{hit.probability:.4f}", str(tile.source), f"{col},{row},{width},{height}",
                      tile.crs or "", wkt or ""])


class ResultFilter(QWidget):
    """"Show the best [K] tiles with p ≥ [x]": how many results the grid and the map get (saved in settings).

    Signals:
        changed(): either value changed.
    """

    changed = Signal()

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.top = QSpinBox()
        self.top.setRange(1, MAX_SHOWN)
        self.top.setValue(settings.results_top)
        self.top.setToolTip("How many of the best-ranked tiles to show (grid, map and export)")
        self.min_p = QDoubleSpinBox()
        self.min_p.setRange(0.0, 1.0)
        self.min_p.setSingleStep(0.05)
        self.min_p.setDecimals(2)
        self.min_p.setValue(settings.results_min_p)
        self.min_p.setToolTip("Hide tiles whose matching score p is below this. " + P_EXPLAINED)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Show the best"))
        layout.addWidget(self.top)
        layout.addWidget(QLabel("tiles with p ≥"))
        layout.addWidget(self.min_p)
        layout.addStretch(1)
        self.top.valueChanged.connect(self._changed)
        self.min_p.valueChanged.connect(self._changed)

    def _changed(self) -> None:
        self.settings.results_top = self.top.value()
        self.settings.results_min_p = self.min_p.value()
        self.changed.emit()

    def apply(self, hits: list[Hit]) -> list[Hit]:
        """The hits to show: the best ``top`` with p at least ``min_p`` (ranks unchanged)."""
        threshold = self.min_p.value()
        return [h for h in hits[: self.top.value()] if h.probability >= threshold]
