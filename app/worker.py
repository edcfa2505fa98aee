"""One generic worker that runs a plain dvan job off the GUI thread.

dvan's long jobs are plain functions taking ``progress`` and ``cancel`` keyword arguments
(:mod:`dvan.progress`). :class:`Worker` runs such a function on its own Python thread and turns
what happens into Qt signals of ``worker.signals``, always emitted on the GUI thread:

* ``progress(Progress)``: throttled to one report per ``min_interval_s`` by
  :class:`app._child.ProgressThrottle` (the first report of a stage and any report whose ``done``
  reaches ``total`` always get through), so a job reporting every tile cannot flood the event loop;
* ``finished(object)``: the job's return value;
* ``failed(object)``: the exception it raised (a :class:`~dvan.errors.DvanError` carries a message
  meant for the user);
* ``cancelled()``: the job raised :class:`~dvan.errors.Cancelled` after :meth:`Worker.cancel`.

Exactly one of finished/failed/cancelled is emitted, then ``done()``.

With ``process=True`` the job runs in a job-server process (``multiprocessing``, spawn;
:mod:`app._child`): its Python work then never competes with the GUI for the GIL. The job and its
arguments must pickle (plain functions of :mod:`app.jobs` with paths and settings); progress, the
result or the error come back through a pipe, and :meth:`Worker.cancel` sets an event the job's
cancel token reads. Idle servers are kept and reused, so only the first job pays for starting
Python, torch and the models.

The job's thread never touches Qt. It puts its events on a thread-safe queue, and a timer in the
GUI thread (:class:`_Dispatcher`, every ``POLL_MS`` while jobs run) takes them off and emits the
signals. Reason: with PySide6 6.12, emitting any signal from a non-GUI thread (a ``threading``
thread, a ``QThread`` or a ``QRunnable``) corrupts the reference count of ``None`` now and then
("Fatal Python error: none_dealloc"); a few hundred cross-thread emits crash the interpreter here,
while queue + GUI-thread timer never did.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from app._child import ProgressThrottle
from dvan.errors import Cancelled
from dvan.progress import CancelToken

#: How often the GUI thread collects the jobs' events, in milliseconds.
POLL_MS = 15


class WorkerSignals(QObject):
    """Signals of a :class:`Worker`; the object lives in, and emits from, the GUI thread."""

    progress = Signal(object)
    finished = Signal(object)
    failed = Signal(object)
    cancelled = Signal()
    done = Signal()


class _Dispatcher(QObject):
    """GUI-thread side: drains the jobs' event queue on a timer and emits their signals."""

    def __init__(self) -> None:
        super().__init__()
        self.events: queue.SimpleQueue[tuple[Worker, str, Any]] = queue.SimpleQueue()
        self.active: set[Worker] = set()
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.drain)

    def add(self, worker: Worker) -> None:
        self.active.add(worker)
        if not self.timer.isActive():
            self.timer.start()

    def drain(self) -> None:
        """Emit every queued event (GUI thread)."""
        while True:
            try:
                worker, kind, payload = self.events.get_nowait()
            except queue.Empty:
                break
            signals = worker.signals
            if kind == "progress":
                signals.progress.emit(payload)
            elif kind == "finished":
                signals.finished.emit(payload)
            elif kind == "failed":
                signals.failed.emit(payload)
            elif kind == "cancelled":
                signals.cancelled.emit()
            elif kind == "done":
                worker.running = False
                self.active.discard(worker)
                signals.done.emit()
        if not self.active:
            self.timer.stop()


_DISPATCHER: _Dispatcher | None = None


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start a spawned process without making it re-run the parent's main script.

    ``multiprocessing`` (spawn) imports the parent's ``__main__`` again in the child, which runs a
    script without an ``if __name__ == "__main__"`` guard a second time. The job server only needs
    :mod:`app._child` and the jobs' own modules, so the main module's name and file are hidden while
    the process starts.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    spec = getattr(main, "__spec__", None)
    has_file = hasattr(main, "__file__")
    path = getattr(main, "__file__", None)
    try:
        main.__spec__ = None
        if has_file:
            del main.__file__
        yield
    finally:
        main.__spec__ = spec
        if has_file:
            main.__file__ = path


class _JobServer:
    """A child process that runs jobs one at a time (see :mod:`app._child`)."""

    def __init__(self) -> None:
        import multiprocessing

        from app._child import serve

        context = multiprocessing.get_context("spawn")
        self.event = context.Event()
        self.conn, child_conn = context.Pipe(duplex=True)
        self.process = context.Process(target=serve, args=(child_conn, self.event), daemon=True,
                                       name="dvan-job-server")
        with _main_module_hidden():
            self.process.start()
        child_conn.close()

    def alive(self) -> bool:
        return self.process.is_alive()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(timeout=2)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def process_jobs_available() -> bool:
    """Whether jobs may run in job-server processes.

    Always from a normal Python. In a frozen bundle (PyInstaller) a spawned process re-runs the
    bundle's executable, which must call ``multiprocessing.freeze_support()`` before anything else;
    an entry point that does sets ``DVAN_APP_PROCESS_JOBS=1``, otherwise jobs run on threads.
    """
    if not getattr(sys, "frozen", False):
        return True
    return os.environ.get("DVAN_APP_PROCESS_JOBS") == "1"


_IDLE_SERVERS: list[_JobServer] = []
_SERVERS_LOCK = threading.Lock()


def _take_server() -> _JobServer:
    with _SERVERS_LOCK:
        while _IDLE_SERVERS:
            server = _IDLE_SERVERS.pop()
            if server.alive():
                return server
    return _JobServer()


def _give_back(server: _JobServer) -> None:
    if server.alive():
        with _SERVERS_LOCK:
            _IDLE_SERVERS.append(server)


def shutdown_job_servers() -> None:
    """Stop the idle job servers (at exit; busy ones end with the app, they are daemons)."""
    with _SERVERS_LOCK:
        servers = list(_IDLE_SERVERS)
        _IDLE_SERVERS.clear()
    for server in servers:  # ask them all first, they exit in parallel
        try:
            server.conn.send(None)
        except (OSError, ValueError):
            pass
    for server in servers:
        server.stop()


def _dispatcher() -> _Dispatcher:
    global _DISPATCHER
    if _DISPATCHER is None:
        _DISPATCHER = _Dispatcher()
    return _DISPATCHER


class Worker:
    """Runs ``fn(*args, progress=..., cancel=..., **kwargs)`` on a background thread.

    Create and start it in the GUI thread; connect to ``worker.signals`` before :meth:`start`.

    Args:
        fn: the job; it must accept ``progress`` and ``cancel`` keyword arguments unless
            ``plain`` is true.
        *args: positional arguments of ``fn``.
        plain: call ``fn(*args, **kwargs)`` without progress and cancel (short jobs).
        process: run the job in a child process (it must pickle; see the module docstring).
        min_interval_s: least time between two forwarded progress reports.
        **kwargs: keyword arguments of ``fn``.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, plain: bool = False, process: bool = False,
                 min_interval_s: float = 0.05, **kwargs: Any) -> None:
        self.signals = WorkerSignals()
        self.token = CancelToken()
        self._fn = fn
        self._args = args
        self._kwargs = kwargs
        self._plain = plain
        self._process = process and process_jobs_available()
        self._server: _JobServer | None = None
        self._server_lock = threading.Lock()
        self._interval = min_interval_s
        self._report = ProgressThrottle(lambda report: self._post("progress", report), min_interval_s)
        self._events: queue.SimpleQueue[tuple[Worker, str, Any]] | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.running = False
        self.thread: threading.Thread | None = None

    # --- control (GUI thread) ---------------------------------------------------------------
    def start(self) -> Worker:
        """Start the job on a new daemon thread and return self."""
        dispatcher = _dispatcher()
        self._events = dispatcher.events
        self.running = True
        dispatcher.add(self)
        target = self._relay if self._process else self._run
        self.thread = threading.Thread(target=target, name=f"dvan-{getattr(self._fn, '__name__', 'job')}", daemon=True)
        self.thread.start()
        return self

    def cancel(self) -> None:
        """Ask the job to stop at its next cancellation check."""
        self.token.cancel()
        with self._server_lock:
            if self._server is not None:
                self._server.event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job's thread ends (its signals still need the event loop); True when it has."""
        if self.thread is None:
            return True
        self.thread.join(timeout)
        return not self.thread.is_alive()

    # --- job thread -----------------------------------------------------------------------
    def _post(self, kind: str, payload: Any = None) -> None:
        assert self._events is not None
        self._events.put((self, kind, payload))

    def _run(self) -> None:
        try:
            if self._plain:
                result = self._fn(*self._args, **self._kwargs)
            else:
                result = self._fn(*self._args, progress=self._report, cancel=self.token, **self._kwargs)
        except Cancelled:
            self._post("cancelled")
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the GUI as a signal
            self.error = exc
            exc.__dict__.setdefault("formatted_traceback", traceback.format_exc())
            self._post("failed", exc)
        else:
            self.result = result
            self._post("finished", result)
        finally:
            self._post("done")

    def _relay(self) -> None:
        """Run the job on a job server and pass its messages on (a thread of the GUI process; it only waits)."""
        server: _JobServer | None = None
        finished = False
        try:
            server = _take_server()
            server.event.clear()
            with self._server_lock:
                self._server = server
                if self.token.cancelled:
                    server.event.set()
            server.conn.send((self._fn, self._args, self._kwargs, self._interval))
            while True:
                if not server.conn.poll(0.5):
                    if not server.alive():
                        raise RuntimeError(f"the job's process ended unexpectedly (exit code {server.process.exitcode});"
                                           " see the terminal for its output")
                    continue
                kind, payload = server.conn.recv()
                if kind == "finished":
                    self.result = payload
                elif kind == "failed":
                    self.error = payload
                self._post(kind, payload)
                if kind != "progress":
                    finished = True
                    break
        except BaseException as exc:  # noqa: BLE001 - the job could not run or its process died
            self.error = exc
            self._post("failed", exc)
        finally:
            with self._server_lock:
                self._server = None
            if server is not None:
                if finished:
                    _give_back(server)
                else:
                    server.stop()
            self._post("done")
