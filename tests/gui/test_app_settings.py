"""Settings tab and entry point: persisted choices (QSettings), detected compute, audio device lists, CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app_support import make_settings


def test_choices_are_saved_and_read_back(qtbot, tmp_path: Path) -> None:
    from app.settings import AppSettings
    from app.settings_panel import SettingsPanel

    settings = make_settings(tmp_path)
    panel = SettingsPanel(settings)  # type: ignore[arg-type]
    qtbot.addWidget(panel)
    assert panel.device.currentData() == "auto"
    assert panel.detected.text().startswith("Detected: ")
    with qtbot.waitSignal(panel.device_changed) as blocker:
        panel.device.setCurrentIndex(panel.device.findData("cpu"))
    assert blocker.args == ["cpu"]
    weights = tmp_path / "vgg16-397923af.pth"
    weights.write_bytes(b"not really weights")
    panel.weights.setText(str(weights))
    with qtbot.waitSignal(panel.weights_changed):
        panel.weights.editingFinished.emit()
    assert panel.weights_status.text() == f"VGG16 weights found: {weights}"
    with qtbot.waitSignal(panel.library_requested) as requested:
        panel.library.setText(str(tmp_path / "lib"))
        panel.library.editingFinished.emit()
    assert requested.args == [str(tmp_path / "lib")]
    panel.model.setText(str(tmp_path / "model.safetensors"))
    with qtbot.waitSignal(panel.model_changed):
        panel.model.editingFinished.emit()

    again = AppSettings.from_file(tmp_path / "settings.ini")
    assert again.device == "cpu"
    assert again.backbone_weights == str(weights)
    assert again.active_model == str(tmp_path / "model.safetensors")
    text = (tmp_path / "settings.ini").read_text()
    assert "device=cpu" in text
    reopened = SettingsPanel(again)
    qtbot.addWidget(reopened)
    assert reopened.device.currentData() == "cpu" and reopened.weights.text() == str(weights)


def test_audio_devices_listed_and_a_missing_saved_one_is_marked(qtbot, tmp_path: Path) -> None:
    from app.audio import list_devices
    from app.settings_panel import SettingsPanel

    settings = make_settings(tmp_path, input_device="Gone USB Microphone")
    panel = SettingsPanel(settings)  # type: ignore[arg-type]
    qtbot.addWidget(panel)
    inputs = [panel.input.itemText(i) for i in range(panel.input.count())]
    assert inputs[0] == "System default"
    assert panel.input.currentText() == "Gone USB Microphone (not connected)"
    devices = list_devices()
    assert len(inputs) == 2 + sum(1 for d in devices if d.inputs > 0)
    panel.input.setCurrentIndex(0)
    assert settings.input_device == ""  # type: ignore[attr-defined]
    panel.output.setCurrentIndex(panel.output.count() - 1)
    assert settings.output_device == str(panel.output.currentData() or "")  # type: ignore[attr-defined]


def test_previous_models_list_round_trips(tmp_path: Path) -> None:
    from app.settings import AppSettings

    settings = AppSettings.from_file(tmp_path / "s.ini")
    assert settings.previous_models == []
    settings.previous_models = ["", "/a/model.safetensors"]
    assert AppSettings.from_file(tmp_path / "s.ini").previous_models == ["", "/a/model.safetensors"]
    settings.previous_models = ["/only.safetensors"]
    assert AppSettings.from_file(tmp_path / "s.ini").previous_models == ["/only.safetensors"]


def test_python_m_app_help() -> None:
    result = subprocess.run([sys.executable, "-m", "app", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "--demo" in result.stdout and "--library" in result.stdout
