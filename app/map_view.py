"""The map: every tile's footprint in WGS84 on a QGraphicsView, results highlighted by rank.

Scene coordinates are a local equirectangular projection, ``x = lon * cos(lat0)``, ``y = -lat``
with ``lat0`` the library's middle latitude, so footprints keep their shape at any latitude a
library covers. There is no basemap and no network: only the tiles themselves, with their
thumbnails drawn inside their footprints once a footprint is large enough on screen.

Mouse: drag to pan, wheel to zoom about the cursor, click a footprint to select its tile.
Tiles without georeferencing cannot be placed; :class:`MapPanel` lists them beside the map.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from PySide6.QtCore import QPoint, QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QImage,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPen,
    QPolygonF,
    QResizeEvent,
    QShowEvent,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QApplication,
    QGraphicsItem,
    QGraphicsScene,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QStyleOptionGraphicsItem,
    QVBoxLayout,
    QWidget,
)

from app.types import Hit, TileInfo
from app.widgets import split_pair

ThumbnailProvider = Callable[[int], QImage | None]

#: Footprints smaller than this on screen (pixels, shorter side) show no thumbnail.
THUMBNAIL_MIN_PX = 40.0
#: Results highlighted on the map (best first).
HIGHLIGHT_TOP = 20
#: Ground metres of one degree of latitude (the scene's y unit), for the scale bar.
METRES_PER_DEGREE = 111_320.0
#: Longest scale bar on screen, in pixels.
SCALE_BAR_PX = 140


def rank_colour(rank: int, top: int = HIGHLIGHT_TOP) -> QColor:
    """Colour of the result with 1-based ``rank``: red for the best, to yellow for the last highlighted."""
    t = 0.0 if top <= 1 else min(1.0, (rank - 1) / (top - 1))
    return QColor.fromHsvF(t * 0.16, 0.9, 1.0)


class Projection:
    """lon/lat <-> scene coordinates (see the module docstring)."""

    def __init__(self, lat0: float = 0.0) -> None:
        self.k = max(0.05, math.cos(math.radians(lat0)))

    def to_scene(self, lon: float, lat: float) -> QPointF:
        """Scene point of a lon/lat."""
        return QPointF(lon * self.k, -lat)

    def to_lonlat(self, point: QPointF) -> tuple[float, float]:
        """(lon, lat) of a scene point."""
        return point.x() / self.k, -point.y()


class TileItem(QGraphicsItem):
    """A tile's footprint; draws the thumbnail inside when zoomed in, and its rank colour when a result."""

    def __init__(self, tile: TileInfo, polygon: QPolygonF, thumbnails: ThumbnailProvider | None) -> None:
        super().__init__()
        self.tile = tile
        self.polygon = polygon
        self._thumbnails = thumbnails
        self._thumbnail: QImage | None = None
        self._thumbnail_tried = False
        self.rank = 0
        self.selected_tile = False
        self._bounds = polygon.boundingRect()
        self.setToolTip(tile.name)
        self.setAcceptHoverEvents(False)

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt override
        return self._bounds

    def shape(self) -> QPainterPath:
        path = QPainterPath()
        path.addPolygon(self.polygon)
        path.closeSubpath()
        return path

    def thumbnail(self) -> QImage | None:
        """The thumbnail, loaded once on first need."""
        if not self._thumbnail_tried and self._thumbnails is not None:
            self._thumbnail_tried = True
            image = self._thumbnails(self.tile.id)
            self._thumbnail = image if image is not None and not image.isNull() else None
        return self._thumbnail

    def set_rank(self, rank: int) -> None:
        """Highlight as result ``rank`` (0 = not a result)."""
        self.rank = rank
        self.setZValue(2000 - rank if rank else (3000 if self.selected_tile else 0))
        self.update()

    def set_selected_tile(self, selected: bool) -> None:
        """Outline as the selected tile."""
        self.selected_tile = selected
        self.setZValue(3000 if selected else (2000 - self.rank if self.rank else 0))
        self.update()

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        lod = option.levelOfDetailFromTransform(painter.worldTransform())
        on_screen = min(self._bounds.width(), self._bounds.height()) * lod
        if on_screen >= THUMBNAIL_MIN_PX:
            image = self.thumbnail()
            if image is not None:
                source = QPolygonF([QPointF(0, 0), QPointF(image.width(), 0), QPointF(image.width(), image.height()),
                                    QPointF(0, image.height())])
                transform = QTransform()
                if QTransform.quadToQuad(source, self.polygon, transform):
                    painter.save()
                    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
                    painter.setTransform(transform, True)
                    painter.drawImage(QPointF(0, 0), image)
                    painter.restore()
        pen = QPen(QColor(70, 110, 160), 0)
        brush = QBrush(QColor(70, 110, 160, 40))
        if self.rank:
            colour = rank_colour(self.rank)
            pen = QPen(colour, 2.5)
            pen.setCosmetic(True)
            fill = QColor(colour)
            fill.setAlpha(0 if on_screen >= THUMBNAIL_MIN_PX else 150)  # over a thumbnail the border says it
            brush = QBrush(fill)
        if self.selected_tile:
            pen = QPen(QColor(0, 200, 255), 3.5)
            pen.setCosmetic(True)
        painter.setPen(pen)
        painter.setBrush(brush)
        painter.drawPolygon(self.polygon)


class RankBadge(QGraphicsItem):
    """A result's rank in a small dark box at a footprint's corner, drawn at screen size."""

    def __init__(self, rank: int) -> None:
        super().__init__()
        self.rank = rank
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)
        self._rect = QRectF(0, 0, 14 + 8 * len(str(rank)), 18)

    def text(self) -> str:
        """The rank as shown."""
        return str(self.rank)

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt override
        return self._rect

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        painter.setPen(QPen(rank_colour(self.rank), 1.5))
        painter.setBrush(QColor(0, 0, 0, 190))
        painter.drawRoundedRect(self._rect.adjusted(1, 1, -1, -1), 3, 3)
        font = painter.font()
        font.setBold(True)
        painter.setFont(font)
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(self._rect, Qt.AlignmentFlag.AlignCenter, self.text())


class MapView(QGraphicsView):
    """Pan/zoom canvas of tile footprints.

    Signals:
        cursor_moved(float, float): lon, lat under the mouse.
        tile_clicked(int): id of the footprint clicked (the top-most one).
    """

    cursor_moved = Signal(float, float)
    tile_clicked = Signal(int)

    def __init__(self, thumbnails: ThumbnailProvider | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setMouseTracking(True)
        self.setBackgroundBrush(QColor(24, 28, 34))
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.thumbnails = thumbnails
        self.projection = Projection()
        self.items_by_id: dict[int, TileItem] = {}
        self._labels: list[RankBadge] = []
        self._selected: int | None = None
        self._press: QPointF | None = None
        self._tiles_rect = QRectF()
        self._results_rect = QRectF()
        # fit the whole library (or the results) on every resize and show until the user zooms or pans
        self.auto_fit = True
        self.cursor_lonlat: tuple[float, float] | None = None

    # --- content ---------------------------------------------------------------------------
    def set_tiles(self, tiles: list[TileInfo]) -> None:
        """Show these tiles (those without a footprint are ignored here)."""
        scene = self.scene()
        scene.clear()
        self.items_by_id.clear()
        self._labels.clear()
        self._selected = None
        self._results_rect = QRectF()
        placed = [t for t in tiles if t.lonlat_polygon]
        if placed:
            lats = [p[1] for t in placed for p in t.lonlat_polygon or ()]
            self.projection = Projection((min(lats) + max(lats)) / 2)
        for tile in placed:
            polygon = QPolygonF([self.projection.to_scene(lon, lat) for lon, lat in tile.lonlat_polygon or ()])
            item = TileItem(tile, polygon, self.thumbnails)
            scene.addItem(item)
            self.items_by_id[tile.id] = item
        rect = QRectF()
        for item in self.items_by_id.values():
            rect = rect.united(item.boundingRect())
        self._tiles_rect = rect
        margin = max(rect.width(), rect.height(), 1e-4) * 0.5
        scene.setSceneRect(rect.adjusted(-margin, -margin, margin, margin))
        self.auto_fit = True
        self.fit_all()

    def set_results(self, hits: list[Hit], top: int = HIGHLIGHT_TOP) -> None:
        """Highlight the best ``top`` hits by rank colour with their rank number, and fit the view to them."""
        for label in self._labels:
            self.scene().removeItem(label)
        self._labels.clear()
        for placed in self.items_by_id.values():
            if placed.rank:
                placed.set_rank(0)
        for hit in hits[:top]:
            item = self.items_by_id.get(hit.tile.id)
            if item is None:
                continue
            item.set_rank(hit.rank)
            label = RankBadge(hit.rank)
            corner = item.polygon.boundingRect().topLeft()
            label.setPos(corner)
            label.setZValue(5000 - hit.rank)
            self.scene().addItem(label)
            self._labels.append(label)
        rect = QRectF()
        for tile_id in self.highlighted():
            rect = rect.united(self.items_by_id[tile_id].boundingRect())
        self._results_rect = rect
        if not rect.isNull():
            self.auto_fit = True
        self.fit_all()
        self.viewport().update()

    def highlighted(self) -> dict[int, int]:
        """tile id -> rank of the tiles highlighted now."""
        return {tid: item.rank for tid, item in self.items_by_id.items() if item.rank}

    # --- navigation ------------------------------------------------------------------------
    def fit_all(self) -> None:
        """Zoom to show the highlighted results, or every footprint without results (rank labels do not count)."""
        rect = self._results_rect if not self._results_rect.isNull() else self._tiles_rect
        if not self.items_by_id or rect.isNull():
            return
        pad = max(rect.width(), rect.height(), 1e-4) * 0.05
        self.fitInView(rect.adjusted(-pad, -pad, pad, pad), Qt.AspectRatioMode.KeepAspectRatio)

    def fit_library(self) -> None:
        """Zoom to show every footprint of the library, results or not."""
        self._results_rect = QRectF()
        self.auto_fit = True
        self.fit_all()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        # a hidden tab's view has no real size yet: fitting then left a small blob in the corner
        if self.auto_fit:
            self.fit_all()

    # --- scale bar -------------------------------------------------------------------------
    def metres_per_pixel(self) -> float:
        """Ground metres per screen pixel at the view's centre (scene y is degrees of latitude)."""
        return METRES_PER_DEGREE / max(self.scale_factor(), 1e-12)

    def scale_bar(self) -> tuple[float, int, str]:
        """(metres, pixels, label) of the scale bar: a 1-2-5 length that is at most ``SCALE_BAR_PX`` long."""
        per_pixel = self.metres_per_pixel()
        target = per_pixel * SCALE_BAR_PX
        step = 10 ** math.floor(math.log10(target)) if target > 0 else 1.0
        metres = max((m * step for m in (1, 2, 5) if m * step <= target), default=step)
        pixels = int(round(metres / per_pixel))
        label = f"{metres / 1000:g} km" if metres >= 1000 else f"{metres:g} m"
        return metres, pixels, label

    def drawForeground(self, painter: QPainter, rect: QRectF | QRect) -> None:  # noqa: N802 - Qt override
        super().drawForeground(painter, rect)
        if not self.items_by_id:
            return
        _, pixels, label = self.scale_bar()
        painter.save()
        painter.resetTransform()
        x, y = 14, self.viewport().height() - 16
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(0, 0, 0, 170))
        painter.drawRoundedRect(QRectF(x - 6, y - 22, pixels + 12, 30), 4, 4)
        pen = QPen(QColor(255, 255, 255), 2)
        painter.setPen(pen)
        painter.drawLine(x, y, x + pixels, y)
        painter.drawLine(x, y - 5, x, y)
        painter.drawLine(x + pixels, y - 5, x + pixels, y)
        painter.drawText(QRectF(x, y - 21, pixels, 16), Qt.AlignmentFlag.AlignCenter, label)
        painter.restore()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if self.auto_fit:
            self.fit_all()

    def centre_on_tile(self, tile_id: int, zoom: bool = True) -> bool:
        """Select and centre a tile; with ``zoom``, zoom so its footprint fills about a third of the view.

        Returns:
            False when the tile is not on the map (no georeferencing).
        """
        if self._selected is not None and self._selected in self.items_by_id:
            self.items_by_id[self._selected].set_selected_tile(False)
        found = self.items_by_id.get(tile_id)
        self._selected = tile_id if found is not None else None
        if found is None:
            return False
        found.set_selected_tile(True)
        rect = found.polygon.boundingRect()
        if zoom:
            self.auto_fit = False
            grow = max(rect.width(), rect.height())
            self.fitInView(rect.adjusted(-grow, -grow, grow, grow), Qt.AspectRatioMode.KeepAspectRatio)
        self.centerOn(rect.center())
        return True

    def zoom_by(self, factor: float) -> None:
        """Zoom about the view centre."""
        self.auto_fit = False
        anchor = self.transformationAnchor()
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.scale(factor, factor)
        self.setTransformationAnchor(anchor)

    def scale_factor(self) -> float:
        """Screen pixels per scene unit."""
        return self.transform().m11()

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 - Qt override
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.auto_fit = False
            factor = 1.25 ** steps
            if 1e-3 < self.scale_factor() * factor < 1e9:
                self.scale(factor, factor)
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        lon, lat = self.projection.to_lonlat(self.mapToScene(event.position().toPoint()))
        self.cursor_lonlat = (lon, lat)
        self.cursor_moved.emit(lon, lat)
        super().mouseMoveEvent(event)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        self._press = event.position()
        super().mousePressEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        super().mouseReleaseEvent(event)
        if self._press is None or event.button() != Qt.MouseButton.LeftButton:
            return
        moved = (event.position() - self._press).manhattanLength()
        self._press = None
        if moved > 4:
            self.auto_fit = False
            return  # a drag, not a click
        for item in self.items(event.position().toPoint()):
            if isinstance(item, TileItem):
                self.tile_clicked.emit(item.tile.id)
                return


class MapPanel(QWidget):
    """The map with zoom buttons, a rank legend and the list of tiles that cannot be placed.

    Signals:
        cursor_moved(float, float): forwarded from the view for the status bar.
        tile_selected(int): a footprint or an unplaced tile was clicked.
    """

    cursor_moved = Signal(float, float)
    tile_selected = Signal(int)

    def __init__(self, thumbnails: ThumbnailProvider | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = MapView(thumbnails, self)
        self.view.cursor_moved.connect(self.cursor_moved)
        self.view.tile_clicked.connect(self.tile_selected)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._menu)
        self.summary = QLabel("No library open.")
        self.unplaced = QListWidget()
        self.unplaced.itemActivated.connect(lambda item: self.tile_selected.emit(int(item.data(Qt.ItemDataRole.UserRole))))
        self.unplaced.itemClicked.connect(lambda item: self.tile_selected.emit(int(item.data(Qt.ItemDataRole.UserRole))))

        buttons = QHBoxLayout()
        for text, slot in (("Zoom in", lambda: self.view.zoom_by(1.5)), ("Zoom out", lambda: self.view.zoom_by(1 / 1.5)),
                           ("Fit results", self.fit_results), ("Show all", self.show_all)):
            button = QPushButton(text)
            button.clicked.connect(slot)
            buttons.addWidget(button)
        buttons.addStretch(1)
        legend = QLabel(self._legend_html())
        buttons.addWidget(legend)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addLayout(buttons)
        left_layout.addWidget(self.view, 1)
        left_layout.addWidget(self.summary)

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        self.unplaced_title = QLabel("Not georeferenced (not on the map)")
        right_layout.addWidget(self.unplaced_title)
        right_layout.addWidget(self.unplaced, 1)

        layout = QVBoxLayout(self)
        layout.addWidget(split_pair(left, right, (3, 1), [1000, 400]))

    def show_all(self) -> None:
        """Fit every footprint, and keep fitting on resize."""
        self.view.fit_library()

    def fit_results(self) -> None:
        """Fit the highlighted results (every footprint when there are none)."""
        self.view.auto_fit = True
        self.view.fit_all()

    def copy_cursor(self) -> str | None:
        """Copy the last cursor position as "lat, lon" (decimal degrees, WGS84) to the clipboard; returns it."""
        if self.view.cursor_lonlat is None:
            return None
        lon, lat = self.view.cursor_lonlat
        text = f"{lat:.6f}, {lon:.6f}"
        QApplication.clipboard().setText(text)
        return text

    def _menu(self, position: QPoint) -> None:
        menu = QMenu(self.view)
        menu.addAction("Copy coordinates here (lat, lon)", self.copy_cursor)
        menu.addAction("Fit results", self.fit_results)
        menu.addAction("Show all", self.show_all)
        menu.popup(self.view.viewport().mapToGlobal(position))

    @staticmethod
    def _legend_html() -> str:
        swatches = "".join(f'<span style="background:{rank_colour(r).name()}">&nbsp;{r}&nbsp;</span>'
                           for r in (1, 5, 10, 15, 20))
        return f"Result rank: {swatches}"

    def set_tiles(self, tiles: list[TileInfo]) -> None:
        """Place the georeferenced tiles and list the others."""
        self.view.set_tiles(tiles)
        self.unplaced.clear()
        unplaced = [t for t in tiles if not t.georeferenced]
        for tile in unplaced:
            item = QListWidgetItem(tile.name)
            item.setData(Qt.ItemDataRole.UserRole, tile.id)
            self.unplaced.addItem(item)
        self.unplaced_title.setText(f"Not georeferenced, not on the map: {len(unplaced)}")
        placed = len(tiles) - len(unplaced)
        self.summary.setText(f"{placed} tiles on the map, {len(unplaced)} without georeferencing. "
                             "Drag to pan, wheel to zoom, click a footprint to open the tile.")

    def set_results(self, hits: list[Hit]) -> None:
        """Highlight search results by rank."""
        self.view.set_results(hits)
        ranks = {h.tile.id: h.rank for h in hits}
        for row in range(self.unplaced.count()):
            item = self.unplaced.item(row)
            tile_id = int(item.data(Qt.ItemDataRole.UserRole))
            base = item.text().split("  — rank ")[0]
            rank = ranks.get(tile_id)
            item.setText(f"{base}  — rank {rank}" if rank and rank <= HIGHLIGHT_TOP else base)

    def centre_on_tile(self, tile_id: int) -> bool:
        """Centre the map on a tile, or select it in the unplaced list; False when it is not on the map."""
        placed = self.view.centre_on_tile(tile_id)
        if not placed:
            for row in range(self.unplaced.count()):
                if int(self.unplaced.item(row).data(Qt.ItemDataRole.UserRole)) == tile_id:
                    self.unplaced.setCurrentRow(row)
        return placed
