"""A small line chart (QPainter) for training curves: no plotting library needed in the GUI thread."""

from __future__ import annotations

import math
from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget


@dataclass
class Series:
    """One curve: x and y values, a name and a colour."""

    name: str
    xs: list[float]
    ys: list[float]
    colour: QColor
    markers: bool = False


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        return []
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks: list[float] = []
    value = start
    while value <= high + step * 0.5 and len(ticks) < 50:
        if value >= low - step * 1e-9:
            ticks.append(round(value, 10))
        value += step
    return ticks


class LineChart(QWidget):
    """Curves with axes, ticks, a title and a legend."""

    def __init__(self, title: str, x_label: str, y_label: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.x_label = x_label
        self.y_label = y_label
        self.series: list[Series] = []
        self.y_range: tuple[float, float] | None = None
        self.setMinimumSize(280, 190)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(420, 240)

    def set_series(self, series: list[Series]) -> None:
        """Replace the curves."""
        self.series = series
        self.update()

    def point_count(self) -> int:
        """Number of finite points drawn (for tests)."""
        return sum(1 for s in self.series for x, y in zip(s.xs, s.ys, strict=False)
                   if math.isfinite(x) and math.isfinite(y))

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.fillRect(self.rect(), QColor(30, 33, 38))
        # title and legend in a band above the plot: inside it, the legend covered curves near the top (MAP 1)
        # and the top tick's label was cut at the widget's edge
        plot = QRectF(self.rect()).adjusted(58, 46, -14, -40)
        painter.setPen(QColor(220, 220, 220))
        painter.drawText(QRectF(0, 4, self.width(), 20), Qt.AlignmentFlag.AlignHCenter, self.title)
        points = [(x, y) for s in self.series for x, y in zip(s.xs, s.ys, strict=False)
                  if math.isfinite(x) and math.isfinite(y)]
        painter.setPen(QColor(90, 95, 105))
        painter.drawRect(plot)
        if not points:
            painter.setPen(QColor(150, 150, 150))
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, "no data yet")
            return
        x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
        y0, y1 = self.y_range or (min(p[1] for p in points), max(p[1] for p in points))
        if x1 <= x0:
            x0, x1 = x0 - 1, x1 + 1
        if y1 <= y0:
            y0, y1 = y0 - 0.5, y1 + 0.5
        pad = (y1 - y0) * 0.05
        y0, y1 = y0 - pad, y1 + pad

        def to_px(x: float, y: float) -> QPointF:
            return QPointF(plot.left() + (x - x0) / (x1 - x0) * plot.width(),
                           plot.bottom() - (y - y0) / (y1 - y0) * plot.height())

        painter.setPen(QColor(160, 160, 160))
        for tick in nice_ticks(y0, y1):
            p = to_px(x0, tick)
            painter.setPen(QPen(QColor(55, 60, 68), 1, Qt.PenStyle.DotLine))
            painter.drawLine(QPointF(plot.left(), p.y()), QPointF(plot.right(), p.y()))
            painter.setPen(QColor(170, 170, 170))
            painter.drawText(QRectF(0, p.y() - 8, plot.left() - 6, 16), Qt.AlignmentFlag.AlignRight, f"{tick:g}")
        for tick in nice_ticks(x0, x1):
            p = to_px(tick, y0)
            painter.drawText(QRectF(p.x() - 30, plot.bottom() + 4, 60, 16), Qt.AlignmentFlag.AlignHCenter, f"{tick:g}")
        painter.drawText(QRectF(plot.left(), plot.bottom() + 20, plot.width(), 16), Qt.AlignmentFlag.AlignHCenter,
                         self.x_label)
        painter.save()
        painter.translate(12, plot.center().y())
        painter.rotate(-90)
        painter.drawText(QRectF(-plot.height() / 2, -8, plot.height(), 16), Qt.AlignmentFlag.AlignHCenter, self.y_label)
        painter.restore()

        legend_x = plot.left()
        legend_y = plot.top() - 14
        for series in self.series:
            pen = QPen(series.colour, 2)
            painter.setPen(pen)
            path = QPainterPath()
            started = False
            for x, y in zip(series.xs, series.ys, strict=False):
                if not (math.isfinite(x) and math.isfinite(y)):
                    started = False
                    continue
                p = to_px(x, y)
                if started:
                    path.lineTo(p)
                else:
                    path.moveTo(p)
                    started = True
                if series.markers:
                    painter.setBrush(series.colour)
                    painter.drawEllipse(p, 3, 3)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawPath(path)
            painter.drawLine(QPointF(legend_x, legend_y), QPointF(legend_x + 16, legend_y))
            painter.setPen(QColor(220, 220, 220))
            width = painter.fontMetrics().horizontalAdvance(series.name)
            painter.drawText(QPointF(legend_x + 20, legend_y + 4), series.name)
            legend_x += 36 + width
