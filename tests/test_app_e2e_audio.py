"""End to end through a real audio path: PulseAudio virtual microphone -> hold-to-speak -> ranked results.

The fixture starts a private PulseAudio server (user mode, also as root) with a 16 kHz mono null
sink ``vspk`` and a source ``vmic`` remapped from its monitor, both set as defaults. The test
holds the app's hold-to-speak button, plays a spoken query into ``vspk`` with ``paplay``,
releases, and checks that the app shows exactly the ranking ``dvan search --wav`` prints for the
same WAV. It skips, saying why, only where PulseAudio cannot be started.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from app_support import app_world, make_backend, make_settings

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _pulse_env(runtime: Path) -> dict[str, str]:
    return {"XDG_RUNTIME_DIR": str(runtime), "PULSE_RUNTIME_PATH": str(runtime / "pulse"),
            "PULSE_SERVER": f"unix:{runtime / 'pulse' / 'native'}", "PULSE_STATE_PATH": str(runtime / "state"),
            "PULSE_COOKIE": str(runtime / "cookie"), "HOME": str(runtime)}


@pytest.fixture(scope="module")
def virtual_microphone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A private PulseAudio server with the virtual microphone; yields its environment."""
    missing = [tool for tool in ("pulseaudio", "pactl", "paplay") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"PulseAudio cannot start: {', '.join(missing)} not installed (Debian: pulseaudio pulseaudio-utils)")
    runtime = tmp_path_factory.mktemp("pulse")
    (runtime / "pulse").mkdir()
    runtime.chmod(0o700)
    env = {**os.environ, **_pulse_env(runtime)}
    log = open(runtime / "pulseaudio.log", "w")  # noqa: SIM115 - closed at teardown
    # -n: no default.pa; --daemonize=no: we own the process; as root a warning is printed, it still runs
    server = subprocess.Popen(
        ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit", "--use-pid-file=no",
         "--disable-shm=yes", "--log-target=stderr", "--system=false",
         "-L", f"module-native-protocol-unix auth-anonymous=1 socket={runtime / 'pulse' / 'native'}",
         "-L", "module-null-sink sink_name=vspk rate=16000 channels=1",
         "-L", "module-remap-source source_name=vmic master=vspk.monitor",
         "-L", "module-always-sink"],
        env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    ready = False
    while time.monotonic() < deadline and server.poll() is None:
        probe = subprocess.run(["pactl", "info"], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if probe.returncode == 0:
            ready = True
            break
        time.sleep(0.2)
    if not ready:
        server.kill()
        server.wait()
        log.close()
        reason = (runtime / "pulseaudio.log").read_text(errors="replace").strip().splitlines()[-3:]
        pytest.skip(f"PulseAudio cannot start here: {' | '.join(reason) or 'no socket within 15 s'}")
    for command in (["pactl", "set-default-sink", "vspk"], ["pactl", "set-default-source", "vmic"],
                    ["pactl", "set-sink-volume", "vspk", "100%"], ["pactl", "set-source-volume", "vmic", "100%"]):
        subprocess.run(command, env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    saved = {key: os.environ.get(key) for key in _pulse_env(runtime)}
    os.environ.update(_pulse_env(runtime))
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def cli_ranking(library: Path, model: Path, wav: Path, top: int, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    """What ``dvan search --json`` prints for a WAV."""
    from dvan.cli.main import main

    capsys.readouterr()
    assert main(["search", str(library), "--wav", str(wav), "--model", str(model), "--top", str(top), "--json",
                 "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)["hits"]


def test_hold_to_speak_through_the_virtual_microphone(virtual_microphone: dict[str, str], qtbot, tmp_path: Path,
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
    player = subprocess.Popen(["paplay", "--device=vspk", str(wav)], env=virtual_microphone,
                              stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
        assert probability == pytest.approx(hit["probability"], abs=2e-3)
    print(f"key-release to results: {panel.last_latency_ms:.0f} ms")
    window.close()
