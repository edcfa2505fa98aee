"""What the Training tab's sections share: the app's data folder, the tab's signals, state and message line.

The tab (:class:`app.training_panel.TrainingPanel`) is built from sections, each a class of its own
module over :class:`TrainingTabBase`: the collection and its captions
(:mod:`app.training_collection`), fine-tuning (:mod:`app.training_panel`), comparing and activating
(:mod:`app.training_compare`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QStandardPaths, Signal
from PySide6.QtWidgets import QLabel, QWidget

from app import palette
from app.audio import Player, Recorder
from app.backend import Backend
from app.collection import CollectionImage
from app.job_control import JobController
from app.settings import AppSettings
from app.widgets import JobBar
from dvan.errors import DvanError


def app_data_dir() -> Path:
    """Where the app keeps training runs and activated models (``$DVAN_APP_DATA`` overrides it)."""
    base = os.environ.get("DVAN_APP_DATA") or QStandardPaths.writableLocation(
        QStandardPaths.StandardLocation.AppDataLocation)
    path = Path(base or Path.home() / ".local" / "share" / "dvan-app")
    path.mkdir(parents=True, exist_ok=True)
    return path


class TrainingTabBase(QWidget):
    """The Training tab's signals, shared state and message line (its sections derive from this class).

    Signals:
        status(str): a line for the status bar.
        model_activated(str): a checkpoint was activated (empty: the shipped default).
    """

    status = Signal(str)
    model_activated = Signal(str)

    # set up by TrainingPanel.__init__ before any section is built
    backend: Backend
    settings: AppSettings
    recorder: Recorder
    player: Player
    manifest: Path | None
    collection_path: Path | None
    images: list[CollectionImage]
    run_dir: Path | None
    new_checkpoint: Path | None
    new_val: dict[str, Any] | None
    current_val: dict[str, Any] | None
    #: the training run or the caption speaking (one at a time, on the fine-tune section's bar)
    job: JobBar
    jobs: JobController
    #: the current model's evaluation, for the comparison
    eval_jobs: JobController
    #: the tab's message line (under the collection)
    collection_summary: QLabel

    def say(self, text: str, error: bool = False) -> None:
        """Show a message under the collection and in the status bar."""
        palette.say(self.collection_summary, self.status, text, error)

    @property
    def busy(self) -> bool:
        """Whether a training or speak job runs."""
        return self.jobs.running

    def refresh(self) -> None:
        """Update the buttons and the model lines (the tab's own method)."""
        raise NotImplementedError

    def refresh_curves(self) -> None:
        """Redraw the training curves (the fine-tune section's method)."""
        raise NotImplementedError

    def job_failed(self, error: BaseException) -> None:
        """A training or speak job failed: say why."""
        self.job_idle(str(error) if isinstance(error, DvanError) else f"{type(error).__name__}: {error}", error=True)

    def job_idle(self, text: str, error: bool = False, done: bool = False) -> None:
        """A training or speak job ended: its last word on the bar and the message line."""
        self.job.set_idle(text, done=done)
        self.say(text, error=error)
        self.refresh_curves()
        self.refresh()
