"""Settings: compute device, audio devices, library location, backbone weights, active model (QSettings)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.audio import list_devices, rescan_devices
from app.settings import AppSettings

DEVICE_CHOICES = (("auto", "Automatic (CUDA when available, else CPU)"), ("cuda", "CUDA GPU"), ("cpu", "CPU"))


def detected_compute() -> str:
    """What torch sees: the GPUs, or that there is none."""
    import torch

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return f"Detected: CUDA {torch.version.cuda} with {names}"
    threads = torch.get_num_threads()
    return (f"Detected: no CUDA GPU; CPU, torch {torch.__version__} computing on {threads} "
            f"thread{'s' if threads != 1 else ''}")


def _path_row(edit: QLineEdit, browse: QPushButton) -> QHBoxLayout:
    row = QHBoxLayout()
    row.addWidget(edit, 1)
    row.addWidget(browse)
    return row


class SettingsPanel(QWidget):
    """The Settings tab; every change is saved at once.

    Signals:
        device_changed(str), model_changed(str), library_requested(str), weights_changed(str).
    """

    device_changed = Signal(str)
    model_changed = Signal(str)
    library_requested = Signal(str)
    weights_changed = Signal(str)

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings

        compute = QGroupBox("Compute")
        compute_form = QFormLayout(compute)
        self.device = QComboBox()
        for key, text in DEVICE_CHOICES:
            self.device.addItem(text, key)
        self.device.setCurrentIndex(max(0, [k for k, _ in DEVICE_CHOICES].index(settings.device)))
        self.device.currentIndexChanged.connect(self._device_changed)
        # asking torch costs its import (seconds): filled in once the model has loaded, or when the tab is shown
        self.detected = QLabel("Detected: (known once the model has loaded)")
        self.detected.setWordWrap(True)
        self._detected_known = False
        compute_form.addRow("Device:", self.device)
        compute_form.addRow("", self.detected)

        audio = QGroupBox("Audio")
        audio_form = QFormLayout(audio)
        self.input = QComboBox()
        self.output = QComboBox()
        self.refresh_button = QPushButton("Rescan devices")
        self.refresh_button.clicked.connect(lambda: self.refresh_devices(rescan=True))
        self.audio_note = QLabel("")
        self.audio_note.setWordWrap(True)
        audio_form.addRow("Microphone:", self.input)
        audio_form.addRow("Speaker:", self.output)
        audio_form.addRow("", self.refresh_button)
        audio_form.addRow("", self.audio_note)
        self.input.currentIndexChanged.connect(lambda _: self._audio_changed("input"))
        self.output.currentIndexChanged.connect(lambda _: self._audio_changed("output"))

        files = QGroupBox("Locations")
        files_form = QFormLayout(files)
        self.library = QLineEdit(settings.library_path)
        self.library.setPlaceholderText("folder of the tile library opened at start")
        browse_library = QPushButton("Browse…")
        browse_library.clicked.connect(self._browse_library)
        self.library.editingFinished.connect(self._library_edited)
        self.weights = QLineEdit(settings.backbone_weights)
        self.weights.setPlaceholderText("vgg16-397923af.pth for the paper's VGG16 (empty: torch hub cache)")
        browse_weights = QPushButton("Browse…")
        browse_weights.clicked.connect(self._browse_weights)
        self.weights.editingFinished.connect(self._weights_edited)
        self.weights_status = QLabel("")
        self.weights_status.setWordWrap(True)
        self.model = QLineEdit(settings.active_model)
        self.model.setPlaceholderText("empty: the shipped default model")
        browse_model = QPushButton("Browse…")
        browse_model.clicked.connect(self._browse_model)
        self.model.editingFinished.connect(self._model_edited)
        files_form.addRow("Library:", _path_row(self.library, browse_library))
        files_form.addRow("Backbone weights:", _path_row(self.weights, browse_weights))
        files_form.addRow("", self.weights_status)
        files_form.addRow("Active model:", _path_row(self.model, browse_model))

        column = QWidget()
        column.setMaximumWidth(1100)
        column_layout = QVBoxLayout(column)
        column_layout.setContentsMargins(0, 0, 0, 0)
        column_layout.addWidget(compute)
        column_layout.addWidget(audio)
        column_layout.addWidget(files)
        column_layout.addStretch(1)
        layout = QHBoxLayout(self)
        layout.addWidget(column, 1)
        layout.addStretch(0)
        self.refresh_devices()
        self._update_weights_status()

    # --- audio -----------------------------------------------------------------------------
    def refresh_detected(self) -> None:
        """Show what torch sees (imports torch when nothing has yet)."""
        self.detected.setText(detected_compute())
        self._detected_known = True

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        if not self._detected_known:
            self.refresh_detected()
        super().showEvent(event)

    def refresh_devices(self, rescan: bool = False) -> None:
        """List the audio devices (asking PortAudio to look again with ``rescan``) and select the saved ones."""
        if rescan:
            rescan_devices()
        devices = list_devices()
        for combo, kind, saved in ((self.input, "input", self.settings.input_device),
                                   (self.output, "output", self.settings.output_device)):
            combo.blockSignals(True)
            combo.clear()
            combo.addItem("System default", "")
            for device in devices:
                if (device.inputs if kind == "input" else device.outputs) > 0:
                    combo.addItem(device.label, device.name)
            index = combo.findData(saved)
            if index < 0 and saved:
                combo.addItem(f"{saved} (not connected)", saved)
                index = combo.count() - 1
            combo.setCurrentIndex(max(0, index))
            combo.blockSignals(False)
        inputs = sum(1 for d in devices if d.inputs > 0)
        self.audio_note.setText("No audio devices found: recording is off, but queries can be opened from audio "
                                "files." if not devices else f"{inputs} input and "
                                f"{sum(1 for d in devices if d.outputs > 0)} output device(s) found.")

    def _audio_changed(self, kind: str) -> None:
        combo = self.input if kind == "input" else self.output
        value = str(combo.currentData() or "")
        if kind == "input":
            self.settings.input_device = value
        else:
            self.settings.output_device = value

    # --- compute ---------------------------------------------------------------------------
    def _device_changed(self) -> None:
        value = str(self.device.currentData())
        self.settings.device = value
        self.device_changed.emit(value)

    # --- paths -----------------------------------------------------------------------------
    def _browse_library(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Library folder", self.library.text())
        if path:
            self.library.setText(path)
            self._library_edited()

    def _library_edited(self) -> None:
        value = self.library.text().strip()
        if value and value != self.settings.library_path:
            self.library_requested.emit(value)

    def show_library(self, path: str) -> None:
        """Reflect the library opened elsewhere."""
        self.library.setText(path)

    def _browse_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "VGG16 ImageNet weights", self.weights.text(),
                                              "PyTorch weights (*.pth *.pt);;All files (*)")
        if path:
            self.weights.setText(path)
            self._weights_edited()

    def _weights_edited(self) -> None:
        value = self.weights.text().strip()
        if value != self.settings.backbone_weights:
            self.settings.backbone_weights = value
            self.weights_changed.emit(value)
        self._update_weights_status()

    def _update_weights_status(self) -> None:
        from dvan.model.weights import locate_weights

        value = self.settings.backbone_weights
        location = locate_weights("vgg16-fc7", value or None)
        if location.path is not None:
            self.weights_status.setText(f"VGG16 weights found: {location.path}")
        else:
            self.weights_status.setText(f"VGG16 weights not found (needed only for the paper's backbone): {location.fix}")

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model checkpoint", self.model.text(), "Checkpoints (*.safetensors)")
        if path:
            self.model.setText(path)
            self._model_edited()

    def _model_edited(self) -> None:
        value = self.model.text().strip()
        if value != self.settings.active_model:
            self.settings.active_model = value
            self.model_changed.emit(value)

    def show_model(self, path: Path | None) -> None:
        """Reflect the model activated elsewhere."""
        self.model.setText(str(path) if path else "")
