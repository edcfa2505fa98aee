"""Desktop conventions of the main window: the menu bar and its shortcuts, Help, theme, remembered geometry.

Every menu entry calls what a panel already offers (the panels stay usable without the menus);
shortcuts are the platform's standard keys where one exists (Ctrl+O, Ctrl+Q, F1).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QDialog, QDialogButtonBox, QMenu, QTextBrowser, QVBoxLayout, QWidget

from app.result_tools import P_EXPLAINED, STRONG_MATCH_P

if TYPE_CHECKING:
    from app.main_window import MainWindow

HELP_HTML = f"""
<h2>dvan: search imagery by voice</h2>
<h3>Asking</h3>
<p>Hold the big button (or <b>Space</b> while no text field has focus), say what you are looking for, release.
Describe what is <i>seen from above</i>, as a caption would: "many planes parked next to a long terminal",
"a river with a bridge and green fields on both sides", "dense houses with red roofs". Objects, their number,
arrangement and colour work better than place names or purposes ("a hospital"). Up to 10 s of speech is used.</p>
<h3>What p means</h3>
<p>{P_EXPLAINED}</p>
<p>When even the best tile has p below {STRONG_MATCH_P:.2f}, the Search tab says <b>No strong match</b>: the tiles
shown are the closest the library holds, not matches. "Show the best K tiles with p ≥ x" limits what the grid,
the map and an export get.</p>
<h3>Using the results</h3>
<p>Right-click a result: <b>Captions for this tile</b> (the library's spoken captions ranked for it), copy its
footprint as WKT (WGS84 or its own CRS) or GeoJSON, export all results shown. <b>File &gt; Export results</b> writes
a GeoPackage, GeoJSON or CSV with rank, p, query, source file, pixel window, CRS and footprints; QGIS opens each.
Dragging a result onto the <b>Captions</b> tab title opens that tab for the drop.</p>
<h3>Keys</h3>
<table cellpadding="3">
<tr><td><b>Space</b> (held)</td><td>record a spoken query (Search tab)</td></tr>
<tr><td><b>Ctrl+O</b> / <b>Ctrl+N</b></td><td>open / create a library</td></tr>
<tr><td><b>Ctrl+Shift+O</b></td><td>search with an audio file</td></tr>
<tr><td><b>Ctrl+E</b></td><td>export the results</td></tr>
<tr><td><b>Ctrl+C</b> (results grid)</td><td>copy the selected result (rank, p, source, window, CRS, WKT)</td></tr>
<tr><td><b>Ctrl+Shift+C</b> / <b>Ctrl+Alt+C</b></td><td>copy its footprint as WKT / GeoJSON</td></tr>
<tr><td><b>Ctrl+Shift+L</b></td><td>copy the map cursor's lat, lon</td></tr>
<tr><td><b>Ctrl+1</b> … <b>Ctrl+6</b></td><td>Search, Map, Captions, Library, Training, Settings</td></tr>
<tr><td><b>Ctrl+R</b> / <b>Ctrl+0</b></td><td>map: fit the results / show the whole library</td></tr>
<tr><td><b>F1</b></td><td>this help</td></tr>
<tr><td><b>Ctrl+Q</b></td><td>quit</td></tr>
</table>
<h3>The map</h3>
<p>Footprints in WGS84 on a local equirectangular view (no basemap, no network). Drag to pan, wheel to zoom, click
a footprint to open it. The scale bar is measured at the view's latitude; right-click copies the coordinates under
the cursor.</p>
"""


def install_desktop(window: MainWindow) -> Desktop:
    """Give the window its menu bar, restore its saved geometry and apply the saved theme."""
    desktop = Desktop(window)
    saved = window.settings.window_geometry
    if saved:
        window.restoreGeometry(QByteArray(saved))
    if window.settings.theme == "light":
        apply_theme("light")
    return desktop


def apply_theme(name: str) -> None:
    """Switch the application's palette: "dark" (the default) or "light" (Fusion's standard palette)."""
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        return
    if name == "light":
        app.setPalette(app.style().standardPalette())
    else:
        from app.main import apply_dark_palette

        apply_dark_palette(app)


Shortcut = QKeySequence | QKeySequence.StandardKey | str | None


def _action(menu: QMenu, text: str, slot: Callable[..., object], shortcut: Shortcut = None) -> QAction:
    action = menu.addAction(text)
    action.triggered.connect(slot)
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    return action


class Desktop:
    """The window's menu bar and what its entries remember (the last export, the theme).

    Attributes:
        menus: title -> menu ("File", "Edit", "View", "Help").
        open_in_qgis: "Open the last export in QGIS" (visible only when ``qgis`` is on PATH).
        light_theme: the checkable "Light theme" entry.
        last_export: the file the last export wrote, if any.
    """

    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self.last_export: str | None = None
        self.help: QDialog | None = None
        bar = window.menuBar()
        self.menus: dict[str, QMenu] = {}
        file = self.menus["File"] = bar.addMenu("&File")
        _action(file, "&Open library…", window.library._choose_open, QKeySequence.StandardKey.Open)
        _action(file, "&New library…", window.library._choose_new, QKeySequence.StandardKey.New)
        _action(file, "Search with an &audio file…", window.search._choose_file, "Ctrl+Shift+O")
        _action(file, "Rank captions for an &image file…", window.captions._choose_image)
        file.addSeparator()
        _action(file, "&Export results…", lambda: window.search.export_results(), "Ctrl+E")
        self.open_in_qgis = _action(file, "Open the last export in &QGIS", self._open_in_qgis)
        self.open_in_qgis.setEnabled(False)
        self.open_in_qgis.setVisible(shutil.which("qgis") is not None)
        window.search.exported.connect(self._exported)
        file.addSeparator()
        _action(file, "&Quit", window.close, QKeySequence.StandardKey.Quit)

        edit = self.menus["Edit"] = bar.addMenu("&Edit")
        _action(edit, "Copy the selected &result", window.search.copy_result)
        _action(edit, "Copy its footprint as &WKT", lambda: window.search.copy_footprint("wkt"), "Ctrl+Shift+C")
        _action(edit, "Copy its footprint as WKT in its source &CRS",
                lambda: window.search.copy_footprint("wkt-source"))
        _action(edit, "Copy its footprint as &GeoJSON", lambda: window.search.copy_footprint("geojson"), "Ctrl+Alt+C")
        _action(edit, "Copy the map cursor's &lat, lon", window.map.copy_cursor, "Ctrl+Shift+L")

        view = self.menus["View"] = bar.addMenu("&View")
        for number in range(window.tabs.count()):
            _action(view, f"&{window.tabs.tabText(number)}", partial(window.tabs.setCurrentIndex, number),
                    f"Ctrl+{number + 1}")
        view.addSeparator()
        _action(view, "Map: fit the &results", self._fit_results, "Ctrl+R")
        _action(view, "Map: show the whole &library", self._show_all, "Ctrl+0")
        view.addSeparator()
        self.light_theme = _action(view, "Li&ght theme", self._set_theme)
        self.light_theme.setCheckable(True)
        self.light_theme.setChecked(window.settings.theme == "light")

        help_menu = self.menus["Help"] = bar.addMenu("&Help")
        _action(help_menu, "dvan &Help", self.show_help, QKeySequence.StandardKey.HelpContents)
        _action(help_menu, "&About dvan", lambda: self.show_help(about=True))

    def _fit_results(self) -> None:
        self.window.tabs.setCurrentWidget(self.window.map)
        self.window.map.fit_results()

    def _show_all(self) -> None:
        self.window.tabs.setCurrentWidget(self.window.map)
        self.window.map.show_all()

    def _set_theme(self, light: bool) -> None:
        self.window.settings.theme = "light" if light else "dark"
        apply_theme(self.window.settings.theme)

    def _exported(self, path: str) -> None:
        self.last_export = path
        self.open_in_qgis.setEnabled(True)

    def _open_in_qgis(self) -> None:
        qgis = shutil.which("qgis")
        if qgis is None or not self.last_export:
            return
        # QGIS runs on its own: the viewer neither waits for it nor closes it
        subprocess.Popen([qgis, self.last_export], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
        self.window.show_message(f"Opening {self.last_export} in QGIS…")

    def show_help(self, about: bool = False) -> QDialog:
        """Open the Help (or About) window; non-modal, so the app stays usable beside it."""
        self.help = show_help(self.window, about)
        return self.help


def show_help(parent: QWidget, about: bool = False) -> QDialog:
    """The Help window (non-modal: the app stays usable beside it)."""
    from dvan import __version__

    dialog = QDialog(parent)
    dialog.setObjectName("HelpDialog")
    dialog.setWindowTitle("About dvan" if about else "dvan help")
    text = QTextBrowser()
    text.setObjectName("HelpText")
    text.setOpenExternalLinks(False)
    body = HELP_HTML if not about else ""
    text.setHtml(f"<p><b>dvan {__version__}</b>: offline voice-query imagery workstation (DVAN model).</p>" + body)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    buttons.rejected.connect(dialog.close)
    layout = QVBoxLayout(dialog)
    layout.addWidget(text)
    layout.addWidget(buttons)
    dialog.resize(720, 640 if not about else 160)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
    dialog.show()
    return dialog
