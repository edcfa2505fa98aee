"""The Search tab's results grid (rank, thumbnail, probability bar) and the selected tile's details.

A result can be dragged out of the grid (onto the Captions tab, say) as :data:`TILE_MIME`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QAbstractListModel, QByteArray, QMimeData, QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter
from PySide6.QtWidgets import (
    QFormLayout,
    QLabel,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from app.thumbs import ImageCache
from app.types import Hit, TileInfo
from app.widgets import ImageLabel, paint_probability_bar

#: MIME type of a dragged result tile (payload: the tile id as ASCII).
TILE_MIME = "application/x-dvan-tile-id"
#: Results shown in the grid (the map highlights fewer).
MAX_RESULTS = 200
#: A grid cell, and the thumbnail in it (pixels).
CELL = QSize(168, 214)
THUMB = 144


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


