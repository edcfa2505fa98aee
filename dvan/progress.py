"""Progress reporting and cancellation for long jobs.

Long jobs (import, training, speaking captions, indexing) are plain functions taking a
``progress`` callback and a ``cancel`` token. The CLI wraps the callback in a progress bar;
the app turns it into a Qt signal. Neither the job nor this module knows about either.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from dvan.errors import Cancelled


@dataclass(frozen=True)
class Progress:
    """One progress report.

    Attributes:
        stage: short name of what is happening ("import", "train", "speak", ...).
        done: units finished so far.
        total: units in all, or None when unknown.
        message: a human-readable line about the current unit.
    """

    stage: str
    done: int
    total: int | None
    message: str = ""

    @property
    def fraction(self) -> float | None:
        """Done over total, or None when the total is unknown or zero."""
        if not self.total:
            return None
        return min(1.0, self.done / self.total)


ProgressCallback = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    """A progress callback that ignores every report."""


class CancelToken:
    """Thread-safe flag a caller sets to ask a running job to stop at its next check."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the job to stop."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """Whether cancel() was called."""
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise Cancelled if cancel() was called; jobs call this between units of work."""
        if self._event.is_set():
            raise Cancelled("cancelled by the user; everything finished so far is saved")


class TqdmProgress:
    """A progress callback that draws one tqdm bar per stage on stderr (for the CLI)."""

    def __init__(self, unit: str = "it", disable: bool = False) -> None:
        self._unit = unit
        self._disable = disable
        self._bars: dict[str, object] = {}

    def __call__(self, report: Progress) -> None:
        from tqdm import tqdm

        bar = self._bars.get(report.stage)
        if bar is None:
            bar = tqdm(total=report.total, desc=report.stage, unit=self._unit, disable=self._disable,
                       dynamic_ncols=True)
            self._bars[report.stage] = bar
        assert isinstance(bar, tqdm)
        if report.total is not None and bar.total != report.total:
            bar.total = report.total
        bar.n = report.done
        if report.message:
            bar.set_postfix_str(report.message, refresh=False)
        bar.refresh()

    def close(self) -> None:
        """Close every bar."""
        for bar in self._bars.values():
            bar.close()  # type: ignore[attr-defined]
        self._bars.clear()
