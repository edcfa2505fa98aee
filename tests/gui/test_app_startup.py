"""Viewer start-up: the window comes first, the model loads and the library opens on workers.

While they load, the Search tab says so in a neutral banner (never the red "No library is
open"), hold-to-speak waits for the model only, and a query made while the library is still
opening is answered once it is open.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from app_support import (
    make_settings,
    world_fixture,  # noqa: F401 - pytest fixtures, used by name
)


def test_the_window_shows_a_loading_state_first_then_becomes_ready(qtbot, world, tmp_path: Path) -> None:
    from app.backend import Backend
    from app.main_window import MainWindow
    from app.search_panel import BANNER_LOADING

    backend = Backend(device="cpu", model_path=world["model"])
    window = MainWindow(backend, make_settings(tmp_path), start_loading=False)  # as app.main starts it
    qtbot.addWidget(window)
    window.show()
    window.open_library_in_background(world["library"])
    banner = window.search.model_banner
    assert not banner.isHidden() and banner.styleSheet() == BANNER_LOADING
    assert banner.text().startswith("Opening the library") and "No library is open" not in banner.text()
    with backend._bundle_lock:  # the model cannot finish loading while the test holds its lock
        window.start_loading()
        assert window.warm_worker is not None and window.model_loading()
        assert "loading the model" in banner.text().lower() and banner.styleSheet() == BANNER_LOADING
        assert not window.search.talk.isEnabled()
        window.search.press()  # hold-to-speak waits for the model, and says why
        assert not window.search.recorder.recording
        assert "Wait a moment: loading the model" in window.search.message.text()
    qtbot.waitUntil(lambda: backend.model_loaded and backend.library is not None and not window.loading_text(),
                    timeout=120000)
    qtbot.waitUntil(lambda: window.search.talk.isEnabled() and banner.isHidden(), timeout=30000)
    assert window.settings.library_path == str(world["library"]) and backend.tiles()
    with qtbot.waitSignal(window.search.results_changed, timeout=60000) as blocker:
        window.search.search_file(world["query_dots"])
    assert len(blocker.args[0]) == len(backend.tiles())
    qtbot.waitUntil(lambda: not window.warm_worker.running, timeout=120000)
    assert window.settings_panel.detected.text().startswith("Detected: ") and "once the model" not in \
        window.settings_panel.detected.text()


def test_a_library_that_cannot_be_opened_is_reported_and_search_says_so(qtbot, world, tmp_path: Path) -> None:
    from app.backend import Backend
    from app.main_window import MainWindow
    from app.search_panel import BANNER_PROBLEM

    backend = Backend(device="cpu", model_path=world["model"])
    window = MainWindow(backend, make_settings(tmp_path), start_loading=False)
    qtbot.addWidget(window)
    window.show()
    reported: list[str] = []
    worker = window.open_library_in_background(tmp_path / "no-library-here", on_failure=reported.append)
    qtbot.waitUntil(lambda: not worker.running, timeout=30000)
    assert len(reported) == 1 and "no-library-here" in reported[0]
    assert window.search.model_banner.text().startswith("No library is open")
    assert window.search.model_banner.styleSheet() == BANNER_PROBLEM
    assert not backend.library_opening


def test_a_query_made_while_the_library_opens_waits_for_it(world) -> None:
    from app.backend import Backend

    backend = Backend(device="cpu", model_path=world["model"])
    backend.trained_bundle()
    backend.expect_library()
    outcomes: list[object] = []
    searcher = threading.Thread(target=lambda: outcomes.append(backend.search_file(world["query_dots"])))
    searcher.start()
    waiting = backend._library_opened._cond._waiters  # type: ignore[attr-defined]
    for _ in range(3000):  # the search thread reaches the wait (it would fail at once without one)
        if waiting or not searcher.is_alive():
            break
        searcher.join(0.01)
    assert searcher.is_alive(), "the search did not wait for the library"
    backend.open_library(world["library"])
    searcher.join(120)
    assert len(outcomes) == 1 and outcomes[0].hits  # type: ignore[attr-defined]


def test_building_the_main_window_imports_no_torch(tmp_path: Path) -> None:
    code = ("import os, sys; os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
            "from PySide6.QtWidgets import QApplication\n"
            "app = QApplication([])\n"
            "from app.backend import Backend\n"
            "from app.main_window import MainWindow\n"
            "from app.settings import AppSettings\n"
            f"window = MainWindow(Backend(device='cpu'), AppSettings.from_file({str(tmp_path / 'settings.ini')!r}),"
            " start_loading=False)\n"
            "window.show(); app.processEvents()\n"
            "print(sorted(m for m in ('torch', 'librosa', 'rasterio', 'numba') if m in sys.modules))\n"
            "os._exit(0)\n")
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
