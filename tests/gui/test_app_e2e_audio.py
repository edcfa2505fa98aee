"""End to end through a real audio path: PulseAudio virtual microphone -> hold-to-speak -> ranked results.

The fixture starts a private PulseAudio server (user mode, also as root) with a 16 kHz mono null
sink ``vspk`` and a source ``vmic`` remapped from its monitor, both set as defaults. The test
holds the app's hold-to-speak button, plays a spoken query into ``vspk`` with ``paplay``,
releases, and checks that the app shows exactly the ranking and probabilities ``dvan search --wav``
prints for the same WAV (the recording is sample-exact; :func:`dvan.audio.record.frame_recording` puts it
between the same margin of digital silence as the WAV). It skips, saying why, only where
PulseAudio cannot be started.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from app_support import app_world, make_backend, make_settings
from virtual_mic import VirtualMicrophone, VirtualMicUnavailable, pulse_environment, start_virtual_microphone

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def virtual_microphone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualMicrophone]:
    """A private PulseAudio server with the virtual microphone (tests/data/virtual_mic.py)."""
    try:
        mic = start_virtual_microphone(tmp_path_factory.mktemp("pulse"))
    except VirtualMicUnavailable as exc:
        pytest.skip(f"PulseAudio cannot start here: {exc}")
    saved = {key: os.environ.get(key) for key in pulse_environment(mic.runtime)}
    os.environ.update(pulse_environment(mic.runtime))
    try:
        yield mic
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        mic.stop()


def cli_ranking(library: Path, model: Path, wav: Path, top: int, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    """What ``dvan search --json`` prints for a WAV."""
    from dvan.cli.main import main

    capsys.readouterr()
    assert main(["search", str(library), "--wav", str(wav), "--model", str(model), "--top", str(top), "--json",
                 "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)["hits"]


def test_hold_to_speak_through_the_virtual_microphone(virtual_microphone: VirtualMicrophone, qtbot, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from PySide6.QtCore import Qt

    from app.main_window import MainWindow

    world = app_world()
    settings = make_settings(tmp_path, input_device="pulse", output_device="pulse")
    window = MainWindow(make_backend(world), settings)  # type: ignore[arg-type]
    qtbot.addWidget(window)
    window.show()
    if window.warm_worker is not None:
        qtbot.waitUntil(lambda: not window.warm_worker.running, timeout=60000)
    panel = window.search
    wav = world["query_stripes"]

    qtbot.mousePress(panel.talk, Qt.MouseButton.LeftButton)
    assert panel.recorder.recording, panel.message.text()
    qtbot.wait(300)
    player = virtual_microphone.play(wav)
    qtbot.waitUntil(lambda: player.poll() is not None, timeout=20000)
    assert player.returncode == 0, player.stderr.read() if player.stderr else ""
    assert panel.meter.value >= 0.0
    qtbot.wait(400)
    with qtbot.waitSignal(panel.search_done, timeout=60000):
        qtbot.mouseRelease(panel.talk, Qt.MouseButton.LeftButton)
    recorded, rate = panel.query  # type: ignore[misc]
    assert rate == 16000 and recorded.size / rate > 2.0, "the virtual microphone delivered too little audio"

    expected = cli_ranking(world["library"], world["model"], wav, 10, capsys)
    shown = panel.results()[:10]
    assert [tile for tile, _ in shown] == [hit["id"] for hit in expected]
    for (_, probability), hit in zip(shown, expected, strict=True):
        assert probability == pytest.approx(hit["probability"], abs=1e-6)
    print(f"key-release to results: {panel.last_latency_ms:.0f} ms")
    window.close()


def test_cli_record_and_the_app_rank_one_recording_alike(virtual_microphone: VirtualMicrophone,
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """``dvan search --record`` and the app's backend frame a recording alike, so they rank it alike.

    The CLI records from the default device (the virtual microphone) while the query plays into it,
    starting a moment after the device opened, as a user speaks after pressing Enter: the recording
    holds digital silence before and after the speech. The app's backend then ranks those very
    samples, and both must give the ranking ``dvan search --wav`` gives for the file.
    """
    import threading

    import numpy as np
    import soundfile as sf

    import dvan.cli.search as cli_search
    from dvan.audio.record import record_query
    from dvan.cli.main import main

    world = app_world()
    wav = world["query_stripes"]
    speech_s = sf.info(str(wav)).duration
    recordings: list[np.ndarray] = []
    players: list[object] = []

    import sounddevice

    sounddevice.query_devices()  # PortAudio loaded before the clock starts: a slow start would miss the speech

    def record_while_the_query_plays(seconds: float) -> np.ndarray:
        speaker = threading.Timer(1.0, lambda: players.append(virtual_microphone.play(wav)))
        speaker.start()
        try:
            samples = record_query(seconds)  # the real PortAudio recording the CLI makes
        finally:
            speaker.join()
        recordings.append(samples)
        return samples

    monkeypatch.setattr(cli_search, "record_query", record_while_the_query_plays)
    capsys.readouterr()
    assert main(["search", str(world["library"]), "--record", f"{speech_s + 3.0:.2f}", "--model",
                 str(world["model"]), "--top", "10", "--json", "--device", "cpu", "--mode", "audio",
                 "--no-transcript"]) == 0
    from_cli = json.loads(capsys.readouterr().out)["hits"]
    [recorded] = recordings
    sounding = np.flatnonzero(recorded)
    assert sounding.size and sounding[0] > 1600 and sounding[-1] < recorded.size - 1600, \
        "the recording should hold silence before and after the speech"

    from_app = make_backend(world).search_waveform(recorded, 16000).hits[:10]  # type: ignore[attr-defined]
    from_file = cli_ranking(world["library"], world["model"], wav, 10, capsys)
    assert [hit["id"] for hit in from_cli] == [hit.tile.id for hit in from_app] == [hit["id"] for hit in from_file]
    for cli_hit, app_hit, file_hit in zip(from_cli, from_app, from_file, strict=True):
        assert cli_hit["probability"] == pytest.approx(app_hit.probability, abs=1e-6)
        assert cli_hit["probability"] == pytest.approx(file_hit["probability"], abs=1e-6)
