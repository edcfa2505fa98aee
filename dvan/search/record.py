"""Recording a spoken query from the default microphone (sounddevice / PortAudio)."""

from __future__ import annotations

import numpy as np

from dvan.errors import AudioError

#: Rate asked of the microphone; the front end resamples anything else.
RECORD_RATE = 16000


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
