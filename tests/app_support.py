"""Shared helpers of the app tests (tests/gui/test_app_*.py): the real world they drive, settings, windows.

The world (a trained tiny model, a library with tiles and spoken captions, spoken queries) is
built once per test process by ``tests/data/make_app_world.py`` and reused by every app test
module; each test copies the library when it changes it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("DVAN_APP_NO_DIALOGS", "1")
os.environ.setdefault("DVAN_APP_NO_PRESTART", "1")  # job servers start when a test's first job needs one

_WORLD: dict[str, Path] = {}


def app_world() -> dict[str, Path]:
    """The app tests' world, built on first use in this process."""
    if not _WORLD:
        from make_app_world import make_app_world

        root = Path(tempfile.mkdtemp(prefix="dvan-app-world-"))
        _WORLD.update(make_app_world(root / "world", epochs=2))
    return _WORLD


def copy_library(world: dict[str, Path], target: Path) -> Path:
    """A private copy of the world's library (for tests that add to it or change its model)."""
    shutil.copytree(world["library"], target)
    (target / ".lock").unlink(missing_ok=True)
    return target


def make_settings(tmp_path: Path, **values: str) -> object:
    """App settings in a private INI file, with the given values set."""
    from app.settings import AppSettings

    settings = AppSettings.from_file(tmp_path / "settings.ini")
    for key, value in values.items():
        setattr(settings, key, value)
    return settings


def make_backend(world: dict[str, Path], library: Path | None = None, model: Path | None = None) -> object:
    """A backend on the world's trained model and library, on the CPU."""
    from app.backend import Backend

    backend = Backend(device="cpu", model_path=model or world["model"])
    backend.open_library(library or world["library"])
    return backend


# --- fixtures shared by the app test modules: import them by name (``from app_support import world_fixture``);
# each module then gets its own module-scoped instance
@pytest.fixture(scope="module", name="world")
def world_fixture() -> dict[str, Path]:
    """The app tests' world (see :func:`app_world`)."""
    return app_world()


@pytest.fixture(scope="module", name="backend")
def backend_fixture(world: dict[str, Path]) -> object:
    """A backend on the world's trained model and library (see :func:`make_backend`)."""
    return make_backend(world)


# --- drag and drop, as Qt delivers it to a widget ---------------------------------------------
def file_mime(*paths: Path) -> object:
    """Drag data carrying local files."""
    from PySide6.QtCore import QMimeData, QUrl

    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(path)) for path in paths])
    return data


def drag_enter(widget: object, data: object) -> bool:
    """Drag ``data`` into ``widget``; whether it accepts it."""
    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtGui import QDragEnterEvent

    event = QDragEnterEvent(QPointF(5, 5), Qt.DropAction.CopyAction, data, Qt.MouseButton.LeftButton,  # type: ignore[arg-type]
                            Qt.KeyboardModifier.NoModifier)
    event.setAccepted(False)
    widget.dragEnterEvent(event)  # type: ignore[attr-defined]
    return event.isAccepted()


def drop_on(widget: object, data: object) -> None:
    """Drop ``data`` on ``widget``."""
    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtGui import QDropEvent

    widget.dropEvent(QDropEvent(QPointF(5, 5), Qt.DropAction.CopyAction, data,  # type: ignore[attr-defined, arg-type]
                                Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier))
