"""Image -> audio: drop an image (or a result tile) and hear the library's spoken captions that match it.

The captions are ranked by matching probability on a worker thread; clicking one plays it on the
chosen output device and shows its text when the manifest had one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from app import palette
from app.audio import Player
from app.backend import Backend
from app.job_control import JobController
from app.result_grid import TILE_MIME
from app.settings import AppSettings
from app.thumbs import ImageCache
from app.types import RankedCaption
from app.widgets import DropArea, DropFilter, ImageLabel, paint_probability_bar, split_pair
from dvan.errors import DvanError
from dvan.library.files import IMAGE_SUFFIXES

HIT_ROLE = Qt.ItemDataRole.UserRole + 1
HEADING = "Spoken captions of the library, ranked by matching probability. Click one to hear it."


class CaptionDelegate(QStyledItemDelegate):
    """Rank, probability bar and caption text of one spoken caption."""

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:  # noqa: N802
        return QSize(400, 46)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> None:
        hit: RankedCaption | None = index.data(HIT_ROLE)
        if hit is None:
            return
        painter.save()
        r: QRect = option.rect.adjusted(2, 2, -2, -2)  # type: ignore[attr-defined]
        if option.state & QStyle.StateFlag.State_Selected:  # type: ignore[attr-defined]
            painter.fillRect(r, QColor(40, 70, 100))
        painter.setPen(QColor(230, 230, 230))
        painter.drawText(QRect(r.x() + 4, r.y(), 40, r.height()), Qt.AlignmentFlag.AlignVCenter, f"#{hit.rank}")
        paint_probability_bar(painter, QRect(r.x() + 46, r.y() + (r.height() - 18) // 2, 120, 18), hit.probability)
        text = hit.text or f"({hit.audio.name}: no text in the manifest)"
        text_rect = QRect(r.x() + 176, r.y(), r.width() - 180, r.height())
        painter.setPen(QColor(235, 235, 235) if hit.text else QColor(150, 150, 150))
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignVCenter | Qt.TextFlag.TextWordWrap,
                         painter.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, text_rect.width() * 2))
        painter.restore()


class CaptionsPanel(QWidget):
    """The Captions tab.

    Signals:
        status(str): a line for the status bar.
        ranked(list): the caption hits shown.
    """

    status = Signal(str)
    ranked = Signal(list)

    def __init__(self, backend: Backend, settings: AppSettings, images: ImageCache, player: Player | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        self.settings = settings
        self.images = images
        self.player = player or Player(self)
        self.jobs = JobController(parent=self)
        self.hits: list[RankedCaption] = []
        self.query_name = ""
        self._generation = 0

        self.drop = DropArea(DropFilter(IMAGE_SUFFIXES, TILE_MIME))
        self.drop.files_dropped.connect(lambda files: self.rank_image(files[0]))
        self.drop.mime_dropped.connect(lambda payload: self.rank_tile(int(payload.decode())))
        self.preview = ImageLabel("Drop an image file here, or drag a result tile from the Search tab\n"
                                  "(or right-click a result: \"Captions for this tile\").")
        self.preview.setMinimumSize(240, 240)
        self.query_label = QLabel("")
        self.query_label.setWordWrap(True)
        open_button = QPushButton("Open image…")
        open_button.clicked.connect(self._choose_image)
        drop_layout = QVBoxLayout(self.drop)
        drop_layout.addWidget(self.preview, 1)
        drop_layout.addWidget(self.query_label)
        drop_layout.addWidget(open_button)

        self.list = QListWidget()
        self.list.setItemDelegate(CaptionDelegate(self.list))
        self.list.setUniformItemSizes(True)
        self.list.itemClicked.connect(self._play_item)
        self.list.itemActivated.connect(self._play_item)
        self.heading = QLabel(HEADING)
        self.heading.setWordWrap(True)
        self.caption_text = QLabel("")
        self.caption_text.setWordWrap(True)
        self.caption_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.caption_text.setStyleSheet("font-size: 13pt; padding: 6px;")
        stop = QPushButton("■ Stop")
        stop.clicked.connect(self.player.stop)
        bottom = QHBoxLayout()
        bottom.addWidget(self.caption_text, 1)
        bottom.addWidget(stop)

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.heading)
        right_layout.addWidget(self.list, 1)
        right_layout.addLayout(bottom)

        layout = QVBoxLayout(self)
        layout.addWidget(split_pair(self.drop, right, (2, 3)))

    def clear(self) -> None:
        """Back to the empty state (the library or the model changed); a ranking still running is dropped."""
        self._generation += 1
        self.hits = []
        self.list.clear()
        self.query_name = ""
        self.query_label.setText("")
        self.caption_text.setText("")
        self.preview.set_image(None)
        self.heading.setText(HEADING)
        self.heading.setStyleSheet("")

    def say(self, text: str, error: bool = False) -> None:
        """Show a message under the list and in the status bar."""
        palette.say(self.heading, self.status, text, error)

    def _choose_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open an image", "",
                                              "Images (" + " ".join("*" + s for s in IMAGE_SUFFIXES) + ")")
        if path:
            self.rank_image(path)

    def rank_image(self, path: str | Path) -> None:
        """Rank the library's captions for an image file."""
        path = Path(path)
        image = QImage(str(path))
        self.preview.set_image(image if not image.isNull() else None)
        if image.isNull():
            self.preview.setText(path.name)
        self.query_name = path.name
        self.query_label.setText(f"Image: {path}")
        self._run(self.backend.rank_captions_for_image, path)

    def rank_tile(self, tile_id: int) -> None:
        """Rank the library's captions for one of its tiles."""
        try:
            tile = self.backend.tile(tile_id)
        except DvanError as exc:
            self.say(str(exc), error=True)
            return
        self.preview.set_image(self.images.full(tile_id) or self.images.thumbnail(tile_id))
        self.query_name = tile.name
        self.query_label.setText(f"Tile: {tile.name}")
        self._run(self.backend.rank_captions_for_tile, tile_id)

    def _run(self, fn: Any, arg: Any) -> None:
        self._generation += 1
        generation = self._generation
        self.list.clear()
        self.hits = []
        self.caption_text.setText("")  # the text of a caption of the previous image
        self.say(f"Ranking the library's spoken captions for {self.query_name}…")
        # a newer drop supersedes an older one still running: its results are dropped
        self.jobs.start(fn, arg, plain=True,
                        on_finished=lambda hits: self.show_hits(hits) if generation == self._generation else None,
                        on_failed=lambda exc: self._failed(exc) if generation == self._generation else None)

    def _failed(self, error: BaseException) -> None:
        self.say(str(error) if isinstance(error, DvanError) else f"{type(error).__name__}: {error}", error=True)

    def show_hits(self, hits: list[RankedCaption]) -> None:
        """Show ranked captions."""
        self.hits = hits
        self.list.clear()
        for hit in hits:
            item = QListWidgetItem(hit.text or hit.audio.name)
            item.setData(HIT_ROLE, hit)
            item.setToolTip(f"Rank {hit.rank}, p = {hit.probability:.4f}\n{hit.audio}")
            self.list.addItem(item)
        if hits:
            self.say(f"{len(hits)} spoken captions ranked for {self.query_name}; best p = {hits[0].probability:.3f}. "
                     "Click one to hear it.")
        else:
            self.say("The library holds no spoken captions yet: add a collection with 'dvan captions add' "
                     "or in the Training tab.")
        self.ranked.emit(hits)

    def _play_item(self, item: QListWidgetItem) -> None:
        hit: RankedCaption = item.data(HIT_ROLE)
        self.play(hit)

    def play(self, hit: RankedCaption) -> None:
        """Play one caption and show its text."""
        self.caption_text.setText(hit.text or f"{hit.audio.name} (the manifest has no text for this caption)")
        try:
            seconds = self.player.play_file(hit.audio, self.settings.output_device or None)
            self.status.emit(f"Playing caption #{hit.rank} ({seconds:.1f} s)")
        except DvanError as exc:
            self.say(f"Cannot play {hit.audio.name}: {exc}", error=True)
