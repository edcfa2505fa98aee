"""The app's message colours and the one way a panel shows a message (its line, and the status bar).

The colours are chosen for the dark theme: light enough on its grey to read, distinct from one another.
"""

from __future__ import annotations

from PySide6.QtCore import SignalInstance
from PySide6.QtWidgets import QLabel

#: Problems: a failed file, an error message, a worse number.
ERROR = "#ff8a80"
#: Success: an imported file, a better number.
GOOD = "#7bd88f"
#: Neither better nor worse.
NEUTRAL = "#dddddd"
#: Skipped or inactive.
MUTED = "#b0b0b0"
#: A caution that is not an error (e.g. a validation split too small to compare models).
CAUTION = "#ffd27f"


def colour_style(colour: str) -> str:
    """A label's style sheet for text of ``colour``."""
    return f"color: {colour};"


def say(label: QLabel, status: SignalInstance, text: str, error: bool = False) -> None:
    """Show a message on a panel's message line (in the error colour for problems) and in the status bar.

    Args:
        label: the panel's message line.
        status: the panel's ``status(str)`` signal, which the main window shows in the status bar.
        text: the message.
        error: whether it reports a problem.
    """
    label.setText(text)
    label.setStyleSheet(colour_style(ERROR) if error else "")
    status.emit(text)
