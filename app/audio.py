"""Microphone recording and audio playback through sounddevice, as Qt objects.

:class:`Recorder` opens an ``sd.InputStream`` on the chosen input device when the user presses
hold-to-speak and closes it on release. The PortAudio callback only appends blocks and updates
the level under a lock; a GUI-thread timer polls the level for the meter and notices the 15 s
limit, so nothing touches Qt from the audio thread.

:class:`Player` plays a waveform or an audio file on the chosen output device through its own
``sd.OutputStream`` (``sd.play`` shares a global stream with ``sd.rec`` and would stop a running
recording).

A missing, busy or broken device raises :class:`AudioDeviceError` with a message that says what to
do; the app shows it and stays usable.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from dvan.errors import DvanError

#: Longest recording, in seconds; the recorder stops by itself there.
MAX_RECORD_SECONDS = 15.0
#: Preferred capture rate (the model's); devices that refuse it record at their own default rate.
PREFERRED_RATE = 16000
#: Streams open now (PortAudio must not be restarted under them).
_OPEN_STREAMS: set[object] = set()


class AudioDeviceError(DvanError):
    """A microphone or speaker cannot be used (missing, busy, refused its settings)."""


def _sounddevice() -> Any:
    try:
        import sounddevice as sd
    except OSError as exc:  # libportaudio missing
        raise AudioDeviceError(f"audio is unavailable: PortAudio cannot be loaded ({exc}); install libportaudio2") from exc
    return sd


@dataclass(frozen=True)
class AudioDevice:
    """One audio device as sounddevice lists it."""

    index: int
    name: str
    hostapi: str
    inputs: int
    outputs: int
    default_rate: float

    @property
    def label(self) -> str:
        """Name shown in the settings."""
        return f"{self.name} ({self.hostapi})"


def list_devices() -> list[AudioDevice]:
    """Every audio device PortAudio knows, or an empty list when audio is unavailable."""
    try:
        sd = _sounddevice()
        hostapis = sd.query_hostapis()
        devices = sd.query_devices()
    except (AudioDeviceError, Exception):  # noqa: BLE001 - any PortAudio failure means "no devices"
        return []
    return [AudioDevice(index=i, name=str(d["name"]), hostapi=str(hostapis[d["hostapi"]]["name"]),
                        inputs=int(d["max_input_channels"]), outputs=int(d["max_output_channels"]),
                        default_rate=float(d["default_samplerate"])) for i, d in enumerate(devices)]


def rescan_devices() -> bool:
    """Make PortAudio list the devices again (it lists them once, when it starts).

    A microphone plugged in, or a sound server started, after the app started appears only after
    this. Call it only while no stream is open. Returns False when audio is unavailable.
    """
    if _OPEN_STREAMS:
        return False
    try:
        sd = _sounddevice()
        terminate, initialize = getattr(sd, "_terminate", None), getattr(sd, "_initialize", None)
        if terminate is None or initialize is None:
            return False
        terminate()
        initialize()
    except Exception:  # noqa: BLE001 - PortAudio errors mean "no audio"
        return False
    return True


def _find(devices: list[AudioDevice], name: str, kind: str) -> int | None:
    for device in devices:
        count = device.inputs if kind == "input" else device.outputs
        if count > 0 and (device.name == name or device.label == name):
            return device.index
    return None


def resolve_device(name: str | None, kind: str) -> int | str | None:
    """The sounddevice device for a saved name ("" or None: the system default).

    A name that is not listed triggers one rescan (it may have been plugged in since).

    Raises:
        AudioDeviceError: the named device is not connected.
    """
    if not name:
        return None
    devices = list_devices()
    found = _find(devices, name, kind)
    if found is None and rescan_devices():
        devices = list_devices()
        found = _find(devices, name, kind)
    if found is not None:
        return found
    available = ", ".join(d.name for d in devices if (d.inputs if kind == "input" else d.outputs) > 0) or "none"
    raise AudioDeviceError(f"the {kind} device {name!r} is not connected (available: {available}); "
                           "choose another one in Settings")


class Recorder(QObject):
    """Hold-to-speak recorder: :meth:`start` on press, :meth:`stop` on release.

    Signals:
        level(float): input level 0..1 (RMS of the last block on a dB scale), about 30 times a second.
        limit_reached(): the recording hit :data:`MAX_RECORD_SECONDS` and stopped collecting.
    """

    level = Signal(float)
    limit_reached = Signal()

    def __init__(self, parent: QObject | None = None, max_seconds: float = MAX_RECORD_SECONDS) -> None:
        super().__init__(parent)
        self.max_seconds = max_seconds
        self._lock = threading.Lock()
        self._blocks: list[np.ndarray] = []
        self._frames = 0
        self._rate = PREFERRED_RATE
        self._level = 0.0
        self._limit_hit = False
        self._limit_signalled = False
        self._stream: Any = None
        self._timer = QTimer(self)
        self._timer.setInterval(33)
        self._timer.timeout.connect(self._poll)

    @property
    def recording(self) -> bool:
        """Whether a stream is open."""
        return self._stream is not None

    @property
    def rate(self) -> int:
        """Sample rate of the current or last recording."""
        return self._rate

    @property
    def seconds(self) -> float:
        """Length of what was recorded so far."""
        with self._lock:
            return self._frames / float(self._rate)

    def _callback(self, indata: np.ndarray, frames: int, _time: Any, _status: Any) -> None:
        block = indata[:, 0] if indata.ndim == 2 else indata
        limit = int(self.max_seconds * self._rate)
        with self._lock:
            room = limit - self._frames
            if room <= 0:
                self._limit_hit = True
                return
            kept = block[:room].astype(np.float32, copy=True)
            self._blocks.append(kept)
            self._frames += kept.size
            rms = float(np.sqrt(np.mean(kept.astype(np.float64) ** 2))) if kept.size else 0.0
            # -60 dBFS .. 0 dBFS onto 0..1
            self._level = float(np.clip((20 * np.log10(max(rms, 1e-6)) + 60) / 60, 0.0, 1.0))
            if self._frames >= limit:
                self._limit_hit = True

    def start(self, device: str | None = None) -> None:
        """Open the input device and start collecting.

        Args:
            device: saved device name, or None/"" for the system default.

        Raises:
            AudioDeviceError: no such device, or it is busy or refuses to record.
        """
        if self._stream is not None:
            return
        sd = _sounddevice()
        target = resolve_device(device, "input")
        with self._lock:
            self._blocks, self._frames, self._level = [], 0, 0.0
            self._limit_hit = self._limit_signalled = False
        stream = None
        errors: list[str] = []
        rates: list[int] = [PREFERRED_RATE]
        try:
            info = sd.query_devices(target, "input")
            if int(info["max_input_channels"]) < 1:
                raise AudioDeviceError(f"the device {info['name']!r} has no inputs; choose a microphone in Settings")
            rates.append(int(info["default_samplerate"]))
        except AudioDeviceError:
            raise
        except Exception as exc:  # noqa: BLE001 - PortAudio raises ValueError/PortAudioError for "no input device"
            raise AudioDeviceError(
                f"no microphone found ({exc}); connect one and choose it in Settings, or open a WAV file instead"
            ) from exc
        for rate in dict.fromkeys(rates):
            try:
                self._rate = rate
                stream = sd.InputStream(device=target, channels=1, samplerate=rate, dtype="float32",
                                        callback=self._callback)
                stream.start()
                break
            except Exception as exc:  # noqa: BLE001 - PortAudioError, ValueError on unsupported settings
                errors.append(f"{rate} Hz: {exc}")
                if stream is not None:
                    stream.close()
                stream = None
        if stream is None:
            raise AudioDeviceError(
                f"the microphone cannot be opened ({'; '.join(errors)}); it may be busy in another program or "
                "unplugged. Close the other program or choose another input in Settings, or open a WAV file instead"
            )
        self._stream = stream
        _OPEN_STREAMS.add(stream)
        self._timer.start()

    def stop(self) -> tuple[np.ndarray, int]:
        """Close the stream and return (mono float32 samples, sample rate)."""
        stream, self._stream = self._stream, None
        self._timer.stop()
        if stream is not None:
            _OPEN_STREAMS.discard(stream)
            try:
                stream.stop()
            finally:
                stream.close()
        self.level.emit(0.0)
        with self._lock:
            samples = np.concatenate(self._blocks) if self._blocks else np.zeros(0, dtype=np.float32)
        return samples, self._rate

    def _poll(self) -> None:
        with self._lock:
            level, limit = self._level, self._limit_hit
        self.level.emit(level)
        if limit and not self._limit_signalled:
            self._limit_signalled = True
            self.limit_reached.emit()


class Player(QObject):
    """Plays one waveform at a time on an output device; a new :meth:`play` replaces the current one.

    Signals:
        started(), finished(): playback began / ended or was stopped.
    """

    started = Signal()
    finished = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._stream: Any = None
        self._data = np.zeros(0, dtype=np.float32)
        self._pos = 0
        self._done = threading.Event()
        self._timer = QTimer(self)
        self._timer.setInterval(50)
        self._timer.timeout.connect(self._check)

    @property
    def playing(self) -> bool:
        """Whether something is playing."""
        return self._stream is not None

    def _callback(self, outdata: np.ndarray, frames: int, _time: Any, _status: Any) -> None:
        chunk = self._data[self._pos: self._pos + frames]
        outdata[: chunk.size, 0] = chunk
        outdata[chunk.size:, 0] = 0.0
        self._pos += chunk.size
        if chunk.size < frames:
            self._done.set()

    def play(self, samples: np.ndarray, rate: int, device: str | None = None) -> None:
        """Play mono samples at ``rate`` (resampled when the device refuses that rate).

        Raises:
            AudioDeviceError: the output device is missing or busy.
        """
        self.stop()
        sd = _sounddevice()
        target = resolve_device(device, "output")
        data = np.asarray(samples, dtype=np.float32)
        if data.ndim == 2:
            data = data.mean(axis=1)
        errors: list[str] = []
        try:
            fallback = int(sd.query_devices(target, "output")["default_samplerate"])
        except Exception as exc:  # noqa: BLE001
            raise AudioDeviceError(f"no audio output found ({exc}); choose a speaker in Settings") from exc
        for play_rate in dict.fromkeys([rate, fallback]):
            if play_rate != rate:
                import soxr

                self._data = soxr.resample(data, rate, play_rate).astype(np.float32)
            else:
                self._data = data
            self._pos = 0
            self._done.clear()
            stream = None
            try:
                stream = sd.OutputStream(device=target, channels=1, samplerate=play_rate, dtype="float32",
                                         callback=self._callback)
                stream.start()
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{play_rate} Hz: {exc}")
                if stream is not None:
                    stream.close()
                continue
            self._stream = stream
            _OPEN_STREAMS.add(stream)
            self._timer.start()
            self.started.emit()
            return
        raise AudioDeviceError(f"the audio output cannot be opened ({'; '.join(errors)}); "
                               "it may be busy; choose another output in Settings")

    def play_file(self, path: str | Path, device: str | None = None) -> float:
        """Play an audio file; returns its length in seconds.

        Raises:
            AudioDeviceError: the output is unavailable.
            dvan.errors.AudioDecodeError: the file cannot be read.
        """
        import soundfile as sf

        from dvan.errors import AudioDecodeError

        try:
            data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as exc:  # noqa: BLE001 - libsndfile errors
            raise AudioDecodeError(f"{path}: cannot be played ({exc})") from exc
        self.play(data.mean(axis=1), int(rate), device)
        return data.shape[0] / float(rate)

    def stop(self) -> None:
        """Stop playback now."""
        stream, self._stream = self._stream, None
        self._timer.stop()
        if stream is not None:
            _OPEN_STREAMS.discard(stream)
            try:
                stream.abort()
            finally:
                stream.close()
            self.finished.emit()

    def _check(self) -> None:
        if self._done.is_set():
            stream, self._stream = self._stream, None
            self._timer.stop()
            if stream is not None:
                _OPEN_STREAMS.discard(stream)
                stream.stop()
                stream.close()
            self.finished.emit()
