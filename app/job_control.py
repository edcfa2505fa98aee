"""One job controller for every long job of the app: worker, progress bar, rate and cancel.

dvan's long jobs are plain functions taking a ``progress`` callback and a ``cancel`` token
(:mod:`dvan.progress`); :class:`app.worker.Worker` runs one off the GUI thread and turns what
happens into signals. A :class:`JobController` is what a view holds for one kind of job (an
import, a training run, a search): it starts the job on a worker, shows its progress and rate on a
:class:`~app.widgets.JobBar` when the view has one, cancels it, and says whether it runs. The view
keeps only what is its own: what the result means to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject

from app.widgets import JobBar
from app.worker import Worker
from dvan.progress import Progress


class JobController(QObject):
    """Runs a view's jobs of one kind, one at a time, with progress on an optional job bar.

    The controller is a child of its bar (or of ``parent``): when the view goes, Qt disconnects the
    controller and the view's own slots from a job that still runs, so its late reports reach nothing.

    Args:
        bar: where progress, the rate and Cancel are shown (None: a job without a bar, e.g. a search).
        rate_stage: the progress stage whose items per second are shown beside the bar (None: no rate).
        cancel_text: what the bar says between Cancel and the job's stop.
        parent: the owner when there is no bar (default: the bar).
    """

    def __init__(self, bar: JobBar | None = None, rate_stage: str | None = None, cancel_text: str = "cancelling…",
                 parent: QObject | None = None) -> None:
        super().__init__(parent if parent is not None else bar)
        self.bar = bar
        self.rate_stage = rate_stage
        self.cancel_text = cancel_text
        self.worker: Worker | None = None
        self.last_rate = 0.0
        self._started = 0.0
        if bar is not None:
            bar.cancel_requested.connect(self.cancel)

    @property
    def running(self) -> bool:
        """Whether this controller's current job runs (until its ``done`` signal)."""
        return self.worker is not None and self.worker.running

    def start(self, fn: Callable[..., Any], *args: Any, text: str = "starting…", process: bool = False,
              plain: bool = False, on_progress: Callable[[Progress], None] | None = None,
              on_finished: Callable[[Any], None] | None = None,
              on_failed: Callable[[BaseException], None] | None = None,
              on_cancelled: Callable[[], None] | None = None, on_done: Callable[[], None] | None = None,
              **kwargs: Any) -> Worker:
        """Start ``fn(*args, progress=..., cancel=..., **kwargs)`` (``plain``: without progress and cancel).

        Args:
            fn: the job (with ``process``, a picklable function, e.g. of :mod:`app.jobs`).
            *args: its positional arguments.
            text: what the job bar says until the first progress report.
            process: run it in a job-server process (see :mod:`app.worker`).
            plain: a short job that takes no progress callback or cancel token.
            on_progress: called with each (throttled) report.
            on_finished: called with the job's result.
            on_failed: called with the exception the job raised.
            on_cancelled: called when the job stopped on :meth:`cancel`.
            on_done: called last, whatever the outcome.
            **kwargs: the job's keyword arguments.

        Returns:
            The started worker (its signals can be connected to as well).
        """
        self._started = time.perf_counter()
        self.last_rate = 0.0
        if self.bar is not None:
            self.bar.set_running(text)
        worker = Worker(fn, *args, plain=plain, process=process, **kwargs)
        # a bound method of this QObject: Qt drops the connection when the view (and this child of it) goes
        worker.signals.progress.connect(self.show_progress)
        for signal, slot in ((worker.signals.progress, on_progress), (worker.signals.finished, on_finished),
                             (worker.signals.failed, on_failed), (worker.signals.cancelled, on_cancelled),
                             (worker.signals.done, on_done)):
            if slot is not None:
                signal.connect(slot)
        self.worker = worker.start()
        return self.worker

    def show_progress(self, report: Progress) -> None:
        """Show a report on the bar, with the rate of the rate stage (items since the start per second)."""
        rate = None
        if self.rate_stage is not None and report.stage == self.rate_stage and report.done:
            rate = self.last_rate = report.done / max(1e-6, time.perf_counter() - self._started)
        if self.bar is not None:
            self.bar.show_progress(report, rate)

    def release(self) -> None:
        """Forget the current job, so the next can start while this one's last signals are still on their way.

        The job's result has been used (e.g. a built demo library is being opened, which starts its
        projections); the released job's remaining callbacks still run.
        """
        self.worker = None

    def cancel(self) -> None:
        """Ask the running job to stop at its next cancellation check (the bar says so meanwhile)."""
        if not self.running:
            return
        assert self.worker is not None
        self.worker.cancel()
        if self.bar is not None:
            self.bar.label.setText(self.cancel_text)
