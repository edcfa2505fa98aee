"""Small reusable widgets: level meter, probability bar painting, image label, drop area, job bar."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QIcon,
    QImage,
    QPainter,
    QPaintEvent,
    QPen,
    QPixmap,
    QResizeEvent,
)
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTabBar,
    QWidget,
)

from dvan.progress import Progress


def array_to_qimage(rgb: np.ndarray) -> QImage:
    """A deep-copied QImage of an (H, W, 3) uint8 array (grey (H, W) is accepted too)."""
    data = np.asarray(rgb)
    if data.ndim == 2:
        data = np.repeat(data[:, :, None], 3, axis=2)
    data = np.ascontiguousarray(data[:, :, :3], dtype=np.uint8)
    height, width = data.shape[:2]
    image = QImage(data.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return image.copy()


def bytes_to_qimage(blob: bytes) -> QImage:
    """A QImage decoded from encoded bytes (JPEG/PNG); null when they do not decode."""
    image = QImage()
    image.loadFromData(blob)
    return image


def microphone_icon(colour: QColor | None = None, size: int = 64) -> QIcon:
    """A microphone drawn with QPainter (no icon theme or emoji font needed)."""
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    ink = colour or QColor(255, 255, 255)
    s = size / 64.0
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(ink)
    painter.drawRoundedRect(QRectF(22 * s, 6 * s, 20 * s, 32 * s), 10 * s, 10 * s)
    pen = QPen(ink, 4 * s)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    painter.setPen(pen)
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.drawArc(QRectF(14 * s, 14 * s, 36 * s, 34 * s), 180 * 16, 180 * 16)
    painter.drawLine(QPointF(32 * s, 48 * s), QPointF(32 * s, 57 * s))
    painter.drawLine(QPointF(22 * s, 58 * s), QPointF(42 * s, 58 * s))
    painter.end()
    return QIcon(pixmap)


def relative_luminance(colour: QColor) -> float:
    """WCAG 2 relative luminance of an opaque colour (0 black .. 1 white)."""
    def linear(channel: float) -> float:
        return channel / 12.92 if channel <= 0.04045 else ((channel + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(colour.redF()) + 0.7152 * linear(colour.greenF()) + 0.0722 * linear(colour.blueF())


def contrast_ratio(first: QColor, second: QColor) -> float:
    """WCAG 2 contrast ratio of two opaque colours (1 .. 21; text needs 4.5 for level AA)."""
    lighter, darker = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


#: Text on a probability bar, and the bar's empty part.
BAR_TEXT = QColor(255, 255, 255)
BAR_TRACK = QColor(60, 64, 72)


def probability_colour(p: float) -> QColor:
    """Bar colour of a matching probability: grey-blue when low, green when high.

    Dark enough at every p for the white "p = …" on it to reach WCAG AA (4.5:1); a bright green
    under white text was about 1.7:1.
    """
    p = float(min(1.0, max(0.0, p)))
    return QColor.fromHsvF(0.33 * p + 0.58 * (1 - p), 0.25 + 0.6 * p, 0.48)


def paint_probability_bar(painter: QPainter, rect: QRect | QRectF, p: float) -> None:
    """A horizontal bar filled to ``p`` with the probability written on it."""
    r = QRectF(rect)
    painter.save()
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(BAR_TRACK)
    painter.drawRoundedRect(r, 3, 3)
    filled = QRectF(r.x(), r.y(), r.width() * float(min(1.0, max(0.0, p))), r.height())
    painter.setBrush(probability_colour(p))
    painter.drawRoundedRect(filled, 3, 3)
    text = f"p = {p:.3f}"
    painter.setPen(QColor(0, 0, 0, 200))
    painter.drawText(r.translated(1, 1), Qt.AlignmentFlag.AlignCenter, text)
    painter.setPen(BAR_TEXT)
    painter.drawText(r, Qt.AlignmentFlag.AlignCenter, text)
    painter.restore()


class LevelMeter(QWidget):
    """Input level 0..1 as a green-yellow-red bar (the live microphone meter)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._level = 0.0
        self._peak = 0.0
        self.setMinimumHeight(14)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    @property
    def value(self) -> float:
        """Level shown now."""
        return self._level

    def set_level(self, level: float) -> None:
        """Show a new level; the peak marker decays slowly."""
        self._level = float(min(1.0, max(0.0, level)))
        self._peak = max(self._level, self._peak * 0.95)
        self.update()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(200, 14)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        r = self.rect().adjusted(0, 0, -1, -1)
        painter.setPen(QColor(90, 90, 90))
        painter.setBrush(QColor(35, 38, 44))
        painter.drawRect(r)
        width = int(r.width() * self._level)
        colour = QColor(80, 200, 90) if self._level < 0.7 else QColor(230, 200, 60) if self._level < 0.9 \
            else QColor(230, 70, 60)
        painter.fillRect(r.x() + 1, r.y() + 1, max(0, width - 1), r.height() - 1, colour)
        peak_x = r.x() + int(r.width() * self._peak)
        painter.setPen(QColor(240, 240, 240))
        painter.drawLine(peak_x, r.y() + 1, peak_x, r.bottom() - 1)


class ImageLabel(QLabel):
    """A label that shows an image scaled to fit, keeping its aspect ratio."""

    def __init__(self, placeholder: str = "", parent: QWidget | None = None) -> None:
        super().__init__(placeholder, parent)
        self.placeholder = placeholder
        self._pixmap: QPixmap | None = None
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(160, 160)
        # Ignored: the scaled pixmap must not drive the layout (it would grow on every resize)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setFrameShape(QFrame.Shape.StyledPanel)

    def set_image(self, image: QImage | None) -> None:
        """Show ``image``; None shows the placeholder text again."""
        self._pixmap = QPixmap.fromImage(image) if image is not None and not image.isNull() else None
        if self._pixmap is None:
            # setPixmap(QPixmap()) would leave an empty label: the placeholder is the empty state
            self.clear()
            self.setText(self.placeholder)
            return
        self._rescale()

    def has_image(self) -> bool:
        """Whether an image is shown."""
        return self._pixmap is not None

    def _rescale(self) -> None:
        if self._pixmap is None:
            return  # text (the placeholder or a message) is shown
        self.setPixmap(self._pixmap.scaled(self.size() * 0.98, Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.SmoothTransformation))

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._rescale()


class DropFilter:
    """Which dropped things a :class:`DropArea` accepts: local files by suffix, and/or a custom MIME type."""

    def __init__(self, suffixes: tuple[str, ...] = (), mime: str | None = None) -> None:
        self.suffixes = tuple(s.lower() for s in suffixes)
        self.mime = mime

    def files(self, event: QDragEnterEvent | QDropEvent) -> list[str]:
        """Dropped local files with an accepted suffix."""
        data = event.mimeData()
        if not data.hasUrls():
            return []
        paths = [url.toLocalFile() for url in data.urls() if url.isLocalFile()]
        return [p for p in paths if not self.suffixes or p.lower().endswith(self.suffixes)]

    def accepts(self, event: QDragEnterEvent | QDropEvent) -> bool:
        """Whether the drag carries something accepted."""
        if self.mime and event.mimeData().hasFormat(self.mime):
            return True
        return bool(self.files(event))


class DropArea(QFrame):
    """A framed area that highlights while something acceptable is dragged over it.

    Signals:
        files_dropped(list): accepted local file paths.
        mime_dropped(bytes): payload of the custom MIME type.
    """

    files_dropped = Signal(list)
    mime_dropped = Signal(bytes)

    def __init__(self, accept: DropFilter, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.filter = accept
        self.setAcceptDrops(True)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setObjectName("DropArea")
        self._set_hover(False)

    def _set_hover(self, hover: bool) -> None:
        self.setStyleSheet("#DropArea { border: 2px dashed %s; border-radius: 6px; }" %
                           ("#3fa7ff" if hover else "#5a5f68"))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        if self.filter.accepts(event):
            self._set_hover(True)
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragLeaveEvent(self, event: object) -> None:  # noqa: N802 - Qt override
        self._set_hover(False)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        self._set_hover(False)
        data = event.mimeData()
        if self.filter.mime and data.hasFormat(self.filter.mime):
            self.mime_dropped.emit(bytes(data.data(self.filter.mime).data()))
            event.acceptProposedAction()
            return
        files = self.filter.files(event)
        if files:
            self.files_dropped.emit(files)
            event.acceptProposedAction()
        else:
            event.ignore()


class DragHoverTabBar(QTabBar):
    """A tab bar that switches to the tab a drag hovers over, so a result can be dropped on another tab."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.setChangeCurrentOnDrag(True)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        self._switch(event)

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # noqa: N802 - Qt override
        self._switch(event)

    def _switch(self, event: QDragEnterEvent | QDragMoveEvent) -> None:
        index = self.tabAt(event.position().toPoint())
        if index >= 0 and index != self.currentIndex():
            self.setCurrentIndex(index)
        # accepted so the drag keeps hovering; nothing is dropped on the bar itself
        event.accept()


def split_pair(first: QWidget, second: QWidget, stretch: tuple[int, int], sizes: list[int] | None = None,
               orientation: Qt.Orientation = Qt.Orientation.Horizontal) -> QSplitter:
    """Two widgets in a splitter that share extra room by ``stretch`` (and start at ``sizes``, pixels)."""
    splitter = QSplitter(orientation)
    splitter.addWidget(first)
    splitter.addWidget(second)
    splitter.setStretchFactor(0, stretch[0])
    splitter.setStretchFactor(1, stretch[1])
    if sizes is not None:
        splitter.setSizes(sizes)
    return splitter


def format_duration(seconds: float) -> str:
    """"45 s", "3 min 05 s", "1 h 02 min"."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress_text(report: Progress, rate: float | None, unit: str) -> str:
    """The line beside a job's bar: its message, the rate once (dvan's messages may carry it already), the time left."""
    text = report.message or report.stage
    if rate is not None and rate > 0:
        if unit not in text:
            text = f"{rate:.1f} {unit} — {text}"
        if report.total and report.done < report.total:
            text += f" — about {format_duration((report.total - report.done) / rate)} left"
    return text


class JobBar(QWidget):
    """Progress bar, rate label and Cancel button for one long job.

    Args:
        parent: the parent widget.
        rate_unit: the unit of the rate shown beside the bar.
        compact: a narrow bar with no label, for the status bar (the message goes to the status line).
    """

    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None, rate_unit: str = "items/s", compact: bool = False) -> None:
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.label = QLabel("")
        self.label.setMinimumWidth(220)
        self.compact = compact
        if compact:
            self.bar.setMaximumWidth(220)
            self.label.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_requested)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bar, 1)
        layout.addWidget(self.label)
        layout.addWidget(self.cancel_button)
        self._unit = rate_unit
        self.set_idle("")

    def set_idle(self, text: str, done: bool = False) -> None:
        """No job running: a message, under an empty bar, or a full "done" bar when a job just finished."""
        self.bar.setRange(0, 1)
        self.bar.setValue(1 if done else 0)
        self.bar.setFormat("done" if done else "")
        self.label.setText(text)
        self.cancel_button.setEnabled(False)

    def set_running(self, text: str = "starting…") -> None:
        """A job started: busy bar until the first report."""
        self.bar.setRange(0, 0)
        self.label.setText(text)
        self.cancel_button.setEnabled(True)

    def show_progress(self, report: Progress, rate: float | None = None) -> None:
        """Show one progress report (and the rate, when known)."""
        if report.total:
            self.bar.setRange(0, int(report.total))
            self.bar.setValue(int(min(report.done, report.total)))
            self.bar.setFormat(f"{report.stage} %p%" if self.compact else f"{report.stage}: {report.done}/{report.total} (%p%)")
        else:
            self.bar.setRange(0, 0)
        self.label.setText(progress_text(report, rate, self._unit))
