"""The app's persisted settings (QSettings), typed.

Keys: ``device`` (auto/cuda/cpu), ``audio/input`` and ``audio/output`` (device names, "" = system
default), ``library/path``, ``model/backbone_weights``, ``model/active`` (checkpoint in use),
``model/previous`` (checkpoints activated before, newest first), ``training/collection``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings

ORGANIZATION = "dvan"
APPLICATION = "dvan-app"


def _text(value: object) -> str:
    return "" if value is None else str(value)


#: Query modes of the search (dvan search --mode).
QUERY_MODES = ("auto", "audio", "text", "hybrid")


class AppSettings:
    """Typed access to a QSettings store.

    Args:
        store: the QSettings to use; the user's native store by default. Tests pass an INI file.
    """

    def __init__(self, store: QSettings | None = None) -> None:
        self.store = store if store is not None else QSettings(ORGANIZATION, APPLICATION)

    @classmethod
    def from_file(cls, path: str | Path) -> AppSettings:
        """Settings kept in an INI file (tests, portable installs)."""
        return cls(QSettings(str(path), QSettings.Format.IniFormat))

    def _get(self, key: str, default: str = "") -> str:
        value = self.store.value(key, default)
        return _text(value) if value is not None else default

    def _set(self, key: str, value: str) -> None:
        self.store.setValue(key, value)
        self.store.sync()

    @property
    def device(self) -> str:
        """Torch device: "auto", "cuda" or "cpu"."""
        value = self._get("device", "auto")
        return value if value in ("auto", "cuda", "cpu") else "auto"

    @device.setter
    def device(self, value: str) -> None:
        self._set("device", value)

    @property
    def input_device(self) -> str:
        """Microphone name ("" = system default)."""
        return self._get("audio/input")

    @input_device.setter
    def input_device(self, value: str) -> None:
        self._set("audio/input", value)

    @property
    def output_device(self) -> str:
        """Speaker name ("" = system default)."""
        return self._get("audio/output")

    @output_device.setter
    def output_device(self, value: str) -> None:
        self._set("audio/output", value)

    @property
    def library_path(self) -> str:
        """Folder of the library opened last."""
        return self._get("library/path")

    @library_path.setter
    def library_path(self, value: str) -> None:
        self._set("library/path", value)

    @property
    def backbone_weights(self) -> str:
        """Weights file of the paper's VGG16 backbone ("" = look in the torch hub cache)."""
        return self._get("model/backbone_weights")

    @backbone_weights.setter
    def backbone_weights(self, value: str) -> None:
        self._set("model/backbone_weights", value)

    @property
    def active_model(self) -> str:
        """Checkpoint in use ("" = the shipped default model)."""
        return self._get("model/active")

    @active_model.setter
    def active_model(self, value: str) -> None:
        self._set("model/active", value)

    @property
    def previous_models(self) -> list[str]:
        """Checkpoints that were active before, newest first."""
        value = self.store.value("model/previous", [])
        if isinstance(value, str):
            return [value] if value else []
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value]
        return []

    @previous_models.setter
    def previous_models(self, value: list[str]) -> None:
        self.store.setValue("model/previous", list(value))
        self.store.sync()

    @property
    def query_mode(self) -> str:
        """How a query ranks: "auto" (the model's choice), "audio", "text" or "hybrid"."""
        value = self._get("search/mode", "auto")
        return value if value in QUERY_MODES else "auto"

    @query_mode.setter
    def query_mode(self, value: str) -> None:
        self._set("search/mode", value)

    @property
    def collection(self) -> str:
        """Training collection chosen last (a manifest or a folder)."""
        return self._get("training/collection")

    @collection.setter
    def collection(self, value: str) -> None:
        self._set("training/collection", value)

    @property
    def results_top(self) -> int:
        """How many of the best results the Search tab shows."""
        try:
            return max(1, int(self._get("results/top", "50")))
        except ValueError:
            return 50

    @results_top.setter
    def results_top(self, value: int) -> None:
        self._set("results/top", str(int(value)))

    @property
    def results_min_p(self) -> float:
        """Results with a lower matching score are hidden."""
        try:
            return min(1.0, max(0.0, float(self._get("results/min_p", "0"))))
        except ValueError:
            return 0.0

    @results_min_p.setter
    def results_min_p(self, value: float) -> None:
        self._set("results/min_p", f"{float(value):g}")

    @property
    def theme(self) -> str:
        """"dark" (default: imagery reads better on dark grey) or "light"."""
        value = self._get("view/theme", "dark")
        return value if value in ("dark", "light") else "dark"

    @theme.setter
    def theme(self, value: str) -> None:
        self._set("view/theme", value)

    @property
    def window_geometry(self) -> bytes:
        """The main window's saved geometry (QWidget.saveGeometry), or b"" before the first close."""
        value: Any = self.store.value("view/geometry", b"")
        return bytes(value.data()) if hasattr(value, "data") else bytes(value or b"")

    @window_geometry.setter
    def window_geometry(self, value: bytes) -> None:
        from PySide6.QtCore import QByteArray

        self.store.setValue("view/geometry", QByteArray(bytes(value)))
        self.store.sync()
