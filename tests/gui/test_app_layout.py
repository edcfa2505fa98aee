"""Readability: WCAG AA contrast of the probability bars, and the Training tab at 150 % scaling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Logical pixels a 1920 x 1080 screen at 150 % scaling leaves a window (less a 40-pixel panel).
SCALED_SCREEN = (1280, 680)

PROBE = r"""
import json, os, sys, tempfile
import app  # the PySide6 None-reference fix
from PySide6.QtWidgets import QApplication, QComboBox, QGroupBox, QLabel, QPushButton
qt = QApplication([])
from app.backend import Backend
from app.main_window import MainWindow
from app.settings import AppSettings
tmp = tempfile.mkdtemp()
os.environ["DVAN_APP_DATA"] = tmp
window = MainWindow(Backend(device="cpu", model_path=os.path.join(tmp, "none.safetensors")),
                    AppSettings.from_file(os.path.join(tmp, "settings.ini")))
window.tabs.setCurrentWidget(window.training)
width, height = int(sys.argv[1]), int(sys.argv[2])
window.resize(width, height)
window.show()
for _ in range(5):
    qt.processEvents()
cut = []
for widget in window.training.findChildren(QLabel) + window.training.findChildren(QPushButton) \
        + window.training.findChildren(QComboBox) + window.training.findChildren(QGroupBox):
    if not widget.isVisible():
        continue
    text = widget.title() if isinstance(widget, QGroupBox) else \
        widget.currentText() if isinstance(widget, QComboBox) else widget.text()
    if isinstance(widget, QLabel) and widget.wordWrap():
        if widget.height() < widget.heightForWidth(widget.width()):
            cut.append(text)
    elif widget.width() < widget.minimumSizeHint().width() or widget.width() < widget.sizeHint().width() and \
            not isinstance(widget, QGroupBox):
        cut.append(text)
hint = window.minimumSizeHint()
print(json.dumps({"ratio": qt.devicePixelRatio(), "size": [window.width(), window.height()],
                  "minimum": [hint.width(), hint.height()], "cut": cut}))
window.close()
"""


def test_probability_bar_text_reaches_wcag_aa_at_every_p() -> None:
    from app.widgets import BAR_TEXT, BAR_TRACK, contrast_ratio, probability_colour

    assert contrast_ratio(BAR_TEXT, BAR_TRACK) >= 4.5
    worst = min(contrast_ratio(BAR_TEXT, probability_colour(p / 100)) for p in range(101))
    assert worst >= 4.5, worst
    from PySide6.QtGui import QColor

    assert contrast_ratio(QColor("white"), QColor("black")) == pytest.approx(21.0)


def test_training_tab_fits_and_truncates_nothing_at_150_percent_scaling(tmp_path: Path) -> None:
    env = {**os.environ, "QT_SCALE_FACTOR": "1.5", "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT),
           "DVAN_APP_NO_PRESTART": "1", "DVAN_APP_NO_DIALOGS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", PROBE, *map(str, SCALED_SCREEN)], capture_output=True, text=True,
                          env=env, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ratio"] == 1.5
    assert result["minimum"][0] <= SCALED_SCREEN[0] and result["minimum"][1] <= SCALED_SCREEN[1], result
    assert result["size"] == list(SCALED_SCREEN)
    assert result["cut"] == [], result
