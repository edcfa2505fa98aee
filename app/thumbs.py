"""Thumbnail and full-tile image cache shared by the results grid, the map and the tile view."""

from __future__ import annotations

from collections import OrderedDict

from PySide6.QtGui import QImage

from app.backend import Backend
from app.widgets import array_to_qimage, bytes_to_qimage
from dvan.errors import DvanError


class ImageCache:
    """LRU caches of tile thumbnails (small, many) and full tile images (large, few)."""

    def __init__(self, backend: Backend, thumbnails: int = 4096, full: int = 16) -> None:
        self.backend = backend
        self._thumbs: OrderedDict[int, QImage | None] = OrderedDict()
        self._full: OrderedDict[int, QImage | None] = OrderedDict()
        self._max_thumbs = thumbnails
        self._max_full = full

    def clear(self) -> None:
        """Forget everything (a library was opened or changed)."""
        self._thumbs.clear()
        self._full.clear()

    def thumbnail(self, tile_id: int) -> QImage | None:
        """The tile's thumbnail, or None when it cannot be read."""
        if tile_id in self._thumbs:
            self._thumbs.move_to_end(tile_id)
            return self._thumbs[tile_id]
        try:
            image: QImage | None = bytes_to_qimage(self.backend.thumbnail(tile_id))
        except (DvanError, OSError):
            image = None
        if image is not None and image.isNull():
            image = None
        self._thumbs[tile_id] = image
        if len(self._thumbs) > self._max_thumbs:
            self._thumbs.popitem(last=False)
        return image

    def full(self, tile_id: int) -> QImage | None:
        """The tile at full resolution (re-read from its source), or None when the source is gone."""
        if tile_id in self._full:
            self._full.move_to_end(tile_id)
            return self._full[tile_id]
        try:
            image: QImage | None = array_to_qimage(self.backend.tile_image(tile_id))
        except (DvanError, OSError):
            image = None
        self._full[tile_id] = image
        if len(self._full) > self._max_full:
            self._full.popitem(last=False)
        return image
