"""End to end through a real audio path: PulseAudio virtual microphone -> hold-to-speak -> ranked results.

The fixture starts a private PulseAudio server (user mode, also as root) with a 16 kHz mono null
sink ``vspk`` and a source ``vmic`` remapped from its monitor, both set as defaults. The test
holds the app's hold-to-speak button, plays a spoken query into ``vspk`` with ``paplay``,
releases, and checks that the app shows exactly the ranking and probabilities ``dvan search --wav``
prints for the same WAV (the recording is sample-exact; :func:`app.backend.frame_recording` puts it
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
