"""Recording a spoken query from the default microphone (sounddevice / PortAudio), and framing it.

Every recorded query, from ``dvan search --record`` or the app's hold-to-speak button, goes through
:func:`frame_recording` (inside :func:`dvan.audio.features.recording_features`), so the same speech
ranks the same whichever way it was recorded.
"""

from __future__ import annotations

import numpy as np

from dvan.errors import AudioError

#: Rate asked of the microphone; the front end resamples anything else.
RECORD_RATE = 16000

#: Digital silence put around a recorded query, in seconds (rounded to whole analysis hops).
QUERY_PADDING_S = 0.3


def frame_recording(samples: np.ndarray, rate: int, model_rate: int, hop: int) -> np.ndarray:
    """A recording as the search sees it: its signal between a fixed margin of digital silence.

    A device opened before it delivers signal (a sound server's idle source, a USB microphone
    starting up) fills the first blocks with exact zeros, as many as happened to pass; a real
    microphone never produces exact zeros otherwise. They are cut, and the same margin of zeros is
    put back on both ends: ``QUERY_PADDING_S`` rounded to a whole number of the front end's hops.
    The same speech then gives the same features however long before it recording started, and
    the same as a file of that speech with that margin (the front end's level trimming cuts at hop
    boundaries counted from the start, so a margin of another length would shift its frames).

    Args:
        samples: 1-D samples at ``rate``.
        rate: rate of ``samples`` in Hz.
        model_rate: the front end's sample rate in Hz.
        hop: the front end's hop length in samples at ``model_rate``.

    Returns:
        1-D float32 samples at ``rate``; all-zero samples come back as they are.
    """
    data = np.asarray(samples, dtype=np.float32).reshape(-1)
    nonzero = np.flatnonzero(data)
    if nonzero.size == 0:
        return data
    core = data[nonzero[0]: nonzero[-1] + 1]
    hops = max(1, round(QUERY_PADDING_S * model_rate / hop))
    pad = int(round(hops * hop * rate / model_rate))
    margin = np.zeros(pad, dtype=np.float32)
    return np.concatenate([margin, core, margin])


def record_query(seconds: float, sample_rate: int = RECORD_RATE, device: int | str | None = None) -> np.ndarray:
    """Record ``seconds`` of mono audio and return float32 samples at ``sample_rate``.

    Raises:
        AudioError: no PortAudio library, no input device, or the recording failed; the
            message says what to install or check.
    """
    if not 0 < seconds <= 60:
        raise AudioError(f"recording length must be between 0 and 60 seconds, got {seconds}")
    try:
        import sounddevice as sd
    except OSError as exc:  # PortAudio missing
        raise AudioError(f"cannot record: the PortAudio library is missing ({exc}); install it "
                         "(Debian: apt-get install libportaudio2) or pass --wav FILE") from exc
    try:
        samples = sd.rec(int(round(seconds * sample_rate)), samplerate=sample_rate, channels=1, dtype="float32",
                         device=device)
        sd.wait()
    except (sd.PortAudioError, ValueError) as exc:
        raise AudioError(f"cannot record from the microphone ({exc}); check that an input device is connected "
                         "and selected as default, or pass --wav FILE") from exc
    return np.asarray(samples, dtype=np.float32).reshape(-1)
