"""Job-server side of :class:`app.worker.Worker` with ``process=True`` (no Qt is imported here).

A job server is a child process that runs jobs one after the other: it receives
``(fn, args, kwargs, interval)`` on its pipe, runs ``fn`` with a progress callback and a cancel
token, and sends back ``(kind, payload)`` messages, kind "progress", "finished", "failed" or
"cancelled". The cancel token reads a ``multiprocessing`` event the GUI process sets. Reusing
the process keeps torch and the models loaded between jobs (a new process needs seconds to start).
"""

from __future__ import annotations

import pickle
import time
import traceback
from collections.abc import Callable
from typing import Any

from dvan.errors import Cancelled
from dvan.progress import CancelToken, Progress

#: Niceness added to job servers (imports, training) so the GUI stays first in line for the CPU.
JOB_NICENESS = 5


class EventCancelToken(CancelToken):
    """A cancel token backed by a ``multiprocessing`` event, so another process can cancel the job."""

    def __init__(self, event: Any) -> None:
        super().__init__()
        self._event = event


def _picklable_error(exc: BaseException) -> BaseException:
    try:
        pickle.dumps(exc)
        return exc
    except Exception:  # noqa: BLE001 - anything that does not pickle is sent as text
        return RuntimeError(f"{type(exc).__name__}: {exc}")


class ProgressThrottle:
    """Passes at most one progress report per interval on, so a job reporting every tile cannot flood its reader.

    The first report of a stage and a report whose ``done`` reaches ``total`` always get through.
    One implementation for both sides of :class:`app.worker.Worker`: the job's thread and a job server.

    Args:
        forward: receives the reports that get through.
        interval: least time between two forwarded reports, in seconds.
    """

    def __init__(self, forward: Callable[[Progress], None], interval: float) -> None:
        self.forward = forward
        self.interval = interval
        self.last_time = 0.0
        self.last_stage = ""

    def __call__(self, report: Progress) -> None:
        now = time.monotonic()
        final = report.total is not None and report.done >= report.total
        if report.stage != self.last_stage or final or now - self.last_time >= self.interval:
            self.last_time, self.last_stage = now, report.stage
            self.forward(report)


def run_one(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], send: Callable[[Any], None],
            event: Any, interval: float) -> None:
    """Run one job in this process and report through ``send``."""
    report = ProgressThrottle(lambda progress: send(("progress", progress)), interval)

    try:
        result = fn(*args, progress=report, cancel=EventCancelToken(event), **kwargs)
    except Cancelled:
        send(("cancelled", None))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the GUI
        error = _picklable_error(exc)
        error.__dict__.setdefault("formatted_traceback", traceback.format_exc())
        send(("failed", error))
    else:
        try:
            send(("finished", result))
        except Exception as exc:  # noqa: BLE001 - an unpicklable result
            send(("failed", RuntimeError(f"the job's result cannot be sent back: {exc}")))


def serve(conn: Any, event: Any) -> None:
    """Job-server main loop: run the jobs received on ``conn`` until ``None`` or a closed pipe."""
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        os.nice(JOB_NICENESS)  # batch work: the GUI process wins when they compete for a core
    except OSError:
        pass
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        fn, args, kwargs, interval = message
        run_one(fn, args, kwargs, conn.send, event, interval)
