"""Entry point of the desktop viewer: ``dvan-app [--demo] [--library DIR] [--model CKPT] [--device D]``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of the viewer."""
    parser = argparse.ArgumentParser(prog="dvan-app", description="dvan desktop viewer: search imagery by voice.")
    parser.add_argument("--demo", action="store_true", help="open the demo library (built on first use)")
    parser.add_argument("--library", type=Path, help="open this library folder")
    parser.add_argument("--model", type=Path, help="use this checkpoint as the active model")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), help="compute device (saved in the settings)")
    parser.add_argument("--settings", type=Path, help="keep settings in this INI file instead of the user's settings")
    parser.add_argument("--tab", choices=("search", "map", "captions", "library", "training", "settings"),
                        help="tab shown first")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Start the viewer; returns the exit code.

    The window shows first; the model then loads and the library opens on workers, with a
    loading state in the Search tab (torch is not imported before the window has painted).
    """
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    import multiprocessing

    multiprocessing.freeze_support()  # job servers start with spawn; needed in frozen bundles
    from PySide6.QtWidgets import QApplication, QMessageBox

    from app.backend import Backend
    from app.main_window import MainWindow
    from app.settings import AppSettings

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication([sys.argv[0]])
    app.setApplicationName("dvan-app")
    app.setOrganizationName("dvan")
    app.setStyle("Fusion")
    apply_dark_palette(app)
    settings = AppSettings.from_file(args.settings) if args.settings else AppSettings()
    if args.device:
        settings.device = args.device
    if args.model:
        settings.active_model = str(args.model.resolve())
    backend = Backend(device=settings.device, backbone_weights=settings.backbone_weights or None,
                      model_path=settings.active_model or None)
    library = args.library
    if library is None and not args.demo and settings.library_path:
        library = Path(settings.library_path)
    # the model starts loading once the window has painted: torch's import holds the interpreter
    # for seconds and would otherwise delay the window
    window = MainWindow(backend, settings, start_loading=False)
    if args.tab:
        names = ["search", "map", "captions", "library", "training", "settings"]
        window.tabs.setCurrentIndex(names.index(args.tab))
    window.start_loading_after_paint()
    window.show()

    def warn(problem: str) -> None:
        if not os.environ.get("DVAN_APP_NO_DIALOGS"):
            QMessageBox.warning(window, "dvan", problem)

    if library is not None:
        window.open_library_in_background(library, on_failure=warn)
    if args.demo:
        window.open_demo()
    return int(app.exec())


def apply_dark_palette(app: object) -> None:
    """A dark Fusion palette (imagery reads better on dark grey)."""
    from PySide6.QtGui import QColor, QPalette
    from PySide6.QtWidgets import QApplication

    assert isinstance(app, QApplication)
    palette = QPalette()
    colours = {
        QPalette.ColorRole.Window: QColor(37, 40, 46), QPalette.ColorRole.WindowText: QColor(225, 225, 225),
        QPalette.ColorRole.Base: QColor(28, 30, 35), QPalette.ColorRole.AlternateBase: QColor(42, 45, 52),
        QPalette.ColorRole.ToolTipBase: QColor(50, 54, 62), QPalette.ColorRole.ToolTipText: QColor(230, 230, 230),
        QPalette.ColorRole.Text: QColor(225, 225, 225), QPalette.ColorRole.Button: QColor(50, 54, 62),
        QPalette.ColorRole.ButtonText: QColor(225, 225, 225), QPalette.ColorRole.BrightText: QColor(255, 80, 80),
        QPalette.ColorRole.Highlight: QColor(45, 108, 223), QPalette.ColorRole.HighlightedText: QColor(255, 255, 255),
        QPalette.ColorRole.Link: QColor(90, 170, 255), QPalette.ColorRole.PlaceholderText: QColor(140, 140, 140),
    }
    for role, colour in colours.items():
        palette.setColor(role, colour)
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor(120, 120, 120))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor(120, 120, 120))
    app.setPalette(palette)


if __name__ == "__main__":
    sys.exit(main())
