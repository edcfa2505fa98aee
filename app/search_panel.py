"""Search by voice: hold-to-speak, live level, ranked results grid, tile details.

Press and hold the big button (or Space when no text field has focus), speak, release. The
recording is checked for speech (:func:`dvan.audio.vad.check_speech`) and cut to it; without speech the panel
says "No speech heard" and does not search. Otherwise the query is searched on a worker thread
and the ranked tiles appear as a grid: rank, thumbnail, matching probability as number and bar.
Only then does a second job transcribe the query: the words heard appear under the button, and
in text or hybrid mode (the "Mode" choice, saved in the settings) the ranking is refined with them
when they arrive. Typing words in the search box and pressing Enter searches by text.
Selecting a tile shows it at full resolution with its metadata and asks the map to centre on it.
A query can also come from an audio file (button, or drop it onto the panel), and the last query
can be replayed.
"""


from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QElapsedTimer, QSize, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app import palette
from app.audio import MAX_RECORD_SECONDS, AudioDeviceError, Player, Recorder
from app.backend import Backend
from app.job_control import JobController
from app.result_grid import TILE_MIME, ResultsModel, TileDetails, describe_tile
from app.search_results import SearchResultsSection
from app.settings import QUERY_MODES, AppSettings
from app.thumbs import ImageCache
from app.types import Heard, SearchOutcome
from app.widgets import DropArea, DropFilter, LevelMeter, microphone_icon
from app.worker import Worker
from dvan.audio.io import AUDIO_SUFFIXES
from dvan.audio.vad import check_speech
from dvan.errors import DvanError

__all__ = ["BANNER_LOADING", "BANNER_PROBLEM", "TILE_MIME", "ResultsModel", "SearchPanel", "TileDetails",
           "describe_tile"]
HOLD_TEXT = "Hold to speak"
#: The banner's look for a problem that keeps search off (no trained model, no library).
BANNER_PROBLEM = "background: #5a2a1a; color: #ffd9c9; padding: 6px; border-radius: 4px;"
#: Its look while the model or the library loads at start-up: a state, not an error.
BANNER_LOADING = "background: #1f3550; color: #d6e6ff; padding: 6px; border-radius: 4px;"
LISTEN_TEXT = "Listening… release to search"
#: How each query mode is offered in the Mode box.
MODE_LABELS = {"auto": "Auto (model's choice)", "audio": "Audio (voice only)", "text": "Text (words heard or typed)",
               "hybrid": "Hybrid (voice + words)"}


def _understand(backend: Backend, serial: int, spoken: tuple[np.ndarray, int] | Path,
                source: str) -> tuple[int, Heard | BaseException]:
    """Worker job: the transcript (and refined ranking) of query number ``serial``, or the error it met."""
    try:
        return serial, backend.understand(spoken, source)
    except Exception as exc:  # noqa: BLE001 - shown under the button; the audio ranking stands
        return serial, exc


class SearchPanel(SearchResultsSection):
    """The Search tab: the query controls (here) above the results (:class:`app.search_results.SearchResultsSection`).

    Signals:
        results_changed(list): new ranked hits (for the map).
        tile_selected(int): a result was selected (the map centres on it).
        status(str): a line for the status bar.
        search_done(float): a search's results are shown (milliseconds since the key release).
        captions_requested(int): "Captions for this tile" was chosen for a result.
        exported(str): results were written to this file.
    """

    search_done = Signal(float)

    def __init__(self, backend: Backend, settings: AppSettings, images: ImageCache, recorder: Recorder | None = None,
                 player: Player | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        self.settings = settings
        self.images = images
        self.recorder = recorder or Recorder(self)
        self.player = player or Player(self)
        self.query: tuple[np.ndarray, int] | None = None
        self.query_file: Path | None = None
        self.outcome: SearchOutcome | None = None
        self.last_latency_ms: float | None = None
        #: key release -> transcript shown, and -> refined (text/hybrid) ranking shown, of the last spoken query
        self.last_heard_ms: float | None = None
        self.last_refined_ms: float | None = None
        self._serial = 0
        self._spoken: tuple[np.ndarray, int] | Path | None = None
        self._since_query = QElapsedTimer()
        self._since_release = QElapsedTimer()
        self._stopped_by_limit = False
        self.loading = ""  # what is still loading at start-up ("" when nothing); see set_loading
        # results of a search started before the library or model changed are dropped
        self._generation = 0
        self.search_jobs = JobController(parent=self)
        #: the transcript of the last spoken query, after its audio ranking is shown
        self.heard_jobs = JobController(parent=self)
        layout = QVBoxLayout(self)
        layout.addWidget(self._build_query_controls())
        layout.addWidget(self._build_results(), 1)
        self.recorder.level.connect(self.meter.set_level)
        self.recorder.limit_reached.connect(self._limit_reached)
        self.refresh_model_state()

    def _build_talk_column(self) -> QVBoxLayout:
        """The hold-to-speak button and, under it, the words heard."""
        self.talk = QPushButton(HOLD_TEXT)
        self.talk.setObjectName("HoldToSpeak")
        self.talk.setMinimumHeight(72)
        self.talk.setMinimumWidth(260)
        self.talk.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.talk.setStyleSheet("#HoldToSpeak { font-size: 18pt; font-weight: bold; border-radius: 10px; "
                                "background: #2d6cdf; color: white; padding: 8px 18px; }"
                                "#HoldToSpeak:pressed, #HoldToSpeak[recording=\"true\"] { background: #d33c3c; }"
                                "#HoldToSpeak:disabled { background: #555; color: #aaa; }")
        self.talk.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.talk.setIcon(microphone_icon())
        self.talk.setIconSize(QSize(34, 34))
        self.talk.setToolTip("Press and hold (or hold the Space key), say what you are looking for, release. "
                             f"At most {MAX_RECORD_SECONDS:.0f} s.")
        self.talk.pressed.connect(self.press)
        self.talk.released.connect(self.release)
        self.heard = QLabel("")
        self.heard.setObjectName("Heard")
        self.heard.setWordWrap(True)
        self.heard.setMaximumWidth(320)
        self.heard.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.heard.setToolTip("What the speech recogniser heard (offline Whisper tiny.en)")
        talk_column = QVBoxLayout()
        talk_column.addWidget(self.talk)
        talk_column.addWidget(self.heard)
        talk_column.addStretch(1)
        return talk_column

    def _build_query_controls(self) -> DropArea:
        """Hold to speak, the level meter and message, typed words and mode, file and replay, the model banner.

        The whole area accepts a dropped audio file as a query.
        """
        talk_column = self._build_talk_column()
        self.text_query = QLineEdit()
        self.text_query.setPlaceholderText("…or type what you are looking for and press Enter")
        self.text_query.setClearButtonEnabled(True)
        self.text_query.returnPressed.connect(self.search_typed)
        self.mode_box = QComboBox()
        for mode in QUERY_MODES:
            self.mode_box.addItem(MODE_LABELS[mode], mode)
        self.mode_box.setCurrentIndex(QUERY_MODES.index(self.settings.query_mode))
        self.mode_box.setToolTip("How spoken queries rank: the audio branch alone, the words heard through the text "
                                 "branch, or both. The audio ranking is always shown first.")
        self.mode_box.currentIndexChanged.connect(self._mode_changed)
        self.backend.query_mode = self.settings.query_mode
        self.meter = LevelMeter()
        self.message = QLabel("Hold the button or the Space key, say what you are looking for, release.")
        self.message.setWordWrap(True)
        self.open_button = QPushButton("Open audio file…")
        self.open_button.clicked.connect(self._choose_file)
        self.replay_button = QPushButton("▶ Replay query")
        self.replay_button.setEnabled(False)
        self.replay_button.clicked.connect(self.replay)
        self.model_banner = QLabel("")
        self.model_banner.setObjectName("ModelBanner")
        self.model_banner.setWordWrap(True)
        self.model_banner.setStyleSheet(BANNER_PROBLEM)
        self.model_banner.hide()

        side = QVBoxLayout()
        meter_row = QHBoxLayout()
        meter_row.addWidget(QLabel("Input level"))
        meter_row.addWidget(self.meter, 1)
        side.addLayout(meter_row)
        side.addWidget(self.message)
        typed = QHBoxLayout()
        typed.addWidget(self.text_query, 1)
        typed.addWidget(QLabel("Mode"))
        typed.addWidget(self.mode_box)
        side.addLayout(typed)
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.replay_button)
        buttons.addStretch(1)
        side.addLayout(buttons)
        top = QHBoxLayout()
        top.addLayout(talk_column)
        top.addLayout(side, 1)

        self.drop = DropArea(DropFilter(AUDIO_SUFFIXES))
        self.drop.files_dropped.connect(lambda files: self.search_file(files[0]))
        drop_layout = QVBoxLayout(self.drop)
        drop_layout.addLayout(top)
        drop_layout.addWidget(self.model_banner)
        return self.drop

    @property
    def worker(self) -> Worker | None:
        """The running or last search."""
        return self.search_jobs.worker

    # --- state -----------------------------------------------------------------------------
    def set_loading(self, text: str) -> None:
        """Show what is still loading at start-up (a neutral banner, not a problem); "" when all is loaded."""
        self.loading = text
        self.refresh_model_state()

    def refresh_model_state(self) -> None:
        """Show whether searching is possible with the active model and library."""
        status = self.backend.model_status()
        problem = ""
        if not status.trained:
            problem = "Search is off: " + (status.message or "no trained model.")
        elif self.backend.library is None and not self.loading:
            problem = "No library is open: create or open one in the Library tab (or start with --demo)."
        if problem:
            self.model_banner.setStyleSheet(BANNER_PROBLEM)
            self.model_banner.setText(problem)
            self.model_banner.show()
        elif self.loading:
            self.model_banner.setStyleSheet(BANNER_LOADING)
            self.model_banner.setText(self.loading)
            self.model_banner.show()
        else:
            self.model_banner.hide()



    @property
    def busy(self) -> bool:
        """Whether a search is running."""
        return self.search_jobs.running

    # --- recording -------------------------------------------------------------------------
    def press(self) -> None:
        """Start recording (button or Space pressed)."""
        if self.recorder.recording or self.busy:
            return
        if not self.talk.isEnabled():
            self.say(f"Wait a moment: {self.loading[0].lower() + self.loading[1:]}" if self.loading else
                     "Wait a moment: the library's projections for the active model are being computed "
                     "(progress in the status bar).", error=True)
            return
        self._stopped_by_limit = False
        try:
            self.recorder.start(self.settings.input_device or None)
        except AudioDeviceError as exc:
            self.say(f"Microphone problem: {exc}", error=True)
            return
        self.talk.setProperty("recording", True)
        self.talk.style().polish(self.talk)
        self.talk.setText(LISTEN_TEXT)
        self.say(f"Listening… (at most {self.recorder.max_seconds:.0f} s)")

    def release(self) -> None:
        """Stop recording and search (button or Space released)."""
        if not self.recorder.recording:
            return
        self._since_release.start()
        samples, rate = self.recorder.stop()
        self._reset_button()
        self.handle_recording(samples, rate)

    def _reset_button(self) -> None:
        self.talk.setProperty("recording", False)
        self.talk.style().polish(self.talk)
        self.talk.setText(HOLD_TEXT)

    def _limit_reached(self) -> None:
        self._stopped_by_limit = True
        self._since_release.start()
        samples, rate = self.recorder.stop()
        self._reset_button()
        self.handle_recording(samples, rate,
                              note=f"Recording stopped at the {self.recorder.max_seconds:.0f} s limit; searching with it.")

    def handle_recording(self, samples: np.ndarray, rate: int, note: str = "") -> bool:
        """Check a recording for speech and search with it; False when nothing was said."""
        check = check_speech(samples, rate)
        if not check.has_speech:
            self.say(check.message, error=True)
            return False
        # both branches hear the speech alone: noise before and after it only misleads them
        self.query = (check.trim(samples), int(rate))
        self.query_file = None
        self._spoken = self.query
        self.replay_button.setEnabled(True)
        if not self._since_release.isValid():
            self._since_release.start()
        self._run_search(self.backend.search_waveform, self.query[0], rate,
                         note or f"Searching with {check.duration_s:.1f} s of audio…")
        return True

    def search_file(self, path: str | Path) -> None:
        """Search with a spoken query in an audio file."""
        self.query_file = Path(path)
        self.query = None
        self._spoken = self.query_file
        self.replay_button.setEnabled(True)
        self._since_release.start()
        self._run_search(self.backend.search_file, self.query_file, f"Searching with {self.query_file.name}…")

    def search_typed(self) -> None:
        """Search with the words in the search box (Enter)."""
        text = " ".join(self.text_query.text().split())
        if not text:
            self.say("Type what you are looking for, e.g. “airplanes parked at a terminal”, then press Enter.",
                     error=True)
            return
        self._spoken = None
        self._since_release.start()
        self._run_search(self.backend.search_text, text, f"Searching for “{text}”…")

    def _mode_changed(self, index: int) -> None:
        mode = str(self.mode_box.itemData(index))
        self.settings.query_mode = mode
        self.backend.query_mode = mode

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a spoken query", "", "Audio (*.wav *.flac *.ogg *.oga)")
        if path:
            self.search_file(path)

    def _run_search(self, fn: Any, *args: Any) -> None:
        *call_args, text = args
        if self.busy:
            return
        self.say(text)
        self.talk.setEnabled(False)
        generation = self._generation
        self._serial += 1
        self._since_query.start()
        self.last_heard_ms = self.last_refined_ms = None
        self.heard.setText("")
        self.search_jobs.start(fn, *call_args, plain=True,
                               on_finished=lambda outcome: self._search_finished(outcome)
                               if generation == self._generation else self._search_dropped(),
                               on_failed=lambda exc: self._search_failed(exc) if generation == self._generation
                               else self._search_dropped())

    def _search_dropped(self) -> None:
        self.talk.setEnabled(True)
        self._since_release.invalidate()
        self.say("The library or the model changed during the search; its results were dropped. Ask again.")


    def _search_finished(self, outcome: SearchOutcome) -> None:
        self.talk.setEnabled(True)
        self.show_outcome(outcome)
        self.last_latency_ms = float(self._since_release.elapsed())
        self._since_release.invalidate()
        self.search_done.emit(self.last_latency_ms)
        if self._spoken is not None:
            self._start_listening_to_words(self._spoken)

    # --- what was heard ------------------------------------------------------------------------
    def _start_listening_to_words(self, spoken: tuple[np.ndarray, int] | Path) -> None:
        """Transcribe the query just ranked (and refine the ranking in text/hybrid mode) on a worker."""
        self.heard.setText("Hearing the words…")
        self.heard.setStyleSheet("color: #9aa0a6; font-style: italic;")
        source = self.outcome.source if self.outcome is not None else "microphone"
        # a bound slot: disconnected if the panel goes first
        self.heard_jobs.start(_understand, self.backend, self._serial, spoken, source, plain=True,
                              on_finished=self._heard)

    def _heard(self, result: tuple[int, Heard | BaseException]) -> None:
        serial, heard = result
        if serial != self._serial:  # a newer query was made meanwhile
            return
        if isinstance(heard, BaseException):
            self.heard.setStyleSheet(palette.colour_style(palette.ERROR))
            self.heard.setText(f"No transcript: {heard}" if isinstance(heard, DvanError)
                               else f"No transcript: {type(heard).__name__}: {heard}")
            return
        self.last_heard_ms = float(self._since_query.elapsed())
        self.heard.setStyleSheet("")
        self.heard.setText(f"Heard: “{heard.text}”" if heard.text else "Heard: (no words recognised)")
        self.heard.setToolTip(heard.note or "What the speech recogniser heard (offline Whisper tiny.en)")
        if heard.refined is not None:
            self.show_outcome(heard.refined)
            self.last_refined_ms = float(self._since_query.elapsed())

    def _search_failed(self, error: BaseException) -> None:
        self.talk.setEnabled(True)
        self._since_release.invalidate()
        if isinstance(error, DvanError):
            self.say(str(error), error=True)
        else:
            self.say(f"Search failed: {type(error).__name__}: {error}", error=True)
        self.refresh_model_state()

    def show_outcome(self, outcome: SearchOutcome) -> None:
        """Show ranked results (the best ones the filter lets through), or say there is no strong match."""
        self.outcome = outcome
        self._refilter()
        self.say(f"{len(outcome.hits)} results in {outcome.seconds * 1000:.0f} ms" +
                 (f" — recording was cut at the {self.recorder.max_seconds:.0f} s limit" if self._stopped_by_limit else ""))


    # --- playback --------------------------------------------------------------------------
    def replay(self) -> None:
        """Play the last query back."""
        try:
            if self.query is not None:
                self.player.play(self.query[0], self.query[1], self.settings.output_device or None)
            elif self.query_file is not None:
                self.player.play_file(self.query_file, self.settings.output_device or None)
        except DvanError as exc:
            self.say(f"Cannot play the query: {exc}", error=True)
