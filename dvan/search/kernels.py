"""Chunked top-k scoring of one query against a memory-mapped gallery (decomposed fusion).

For each chunk of candidate rows, ``logit = (w1-w0) . tanh(G_i + q) + (b1-b0)`` is computed and
the chunk's best k are merged into the running best k, so memory stays at one chunk plus k
whatever the gallery size (the gallery itself is read through the page cache, never copied
whole). Two interchangeable backends:

* ``numba``: fused CPU kernels (see :mod:`dvan.search._fused`), the default on the CPU (for a
  small gallery only once they are loaded: see :data:`NUMBA_MIN_ROWS`);
* ``torch``: :func:`dvan.model.fusion.decomposed_logits` per chunk, on CUDA when present
  (chunks are copied to the GPU as stored, float16 included, and widened there).

Both rank by logit (sigmoid is monotonic, and logits keep their resolution where
probabilities round to 1.0); ties are broken by row, so results are deterministic. A NaN score
(damaged projections, or a model with NaN weights) never enters a ranking: :func:`top_k` raises
FloatingPointError, and the caller says what is damaged.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dvan.model.fusion import decomposed_logits

#: Candidate rows scored per chunk.
DEFAULT_CHUNK_ROWS = 65536

_NUMBA: dict[str, Any] = {}


def numba_available() -> bool:
    """Whether the fused CPU kernels can be used (numba imports and compiles)."""
    if "ok" not in _NUMBA:
        try:
            from dvan.search import _fused

            _NUMBA["module"] = _fused
            _NUMBA["ok"] = True
        except Exception:  # numba missing or broken: the torch backend still works
            _NUMBA["ok"] = False
    return bool(_NUMBA["ok"])


#: Fewest rows for which the fused kernel is worth loading numba for: in a fresh process that costs
#: about half a second even from the on-disk cache (numba's import and its typing registries), while
#: torch scores 10,000 rows in about 16 ms. Once the kernels are loaded they are used for any size.
NUMBA_MIN_ROWS = 50_000


def default_backend(device: torch.device, rows: int | None = None) -> str:
    """"torch" on CUDA; on the CPU "numba" (when available) unless ``rows`` is small and numba is not loaded yet."""
    if device.type != "cpu":
        return "torch"
    if rows is not None and rows < NUMBA_MIN_ROWS and "module" not in _NUMBA:
        return "torch"
    return "numba" if numba_available() else "torch"


def _set_numba_threads() -> None:
    import numba

    numba.set_num_threads(max(1, min(torch.get_num_threads(), int(numba.config.NUMBA_NUM_THREADS))))  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Decision:
    """The scorer's decision vector: logit = direction . tanh(G + q) + offset."""

    direction: np.ndarray  # (d4,) float32
    offset: float

    @classmethod
    def from_scorer(cls, scorer: Any) -> Decision:
        """From a :class:`dvan.model.fusion.FusionScorer`."""
        with torch.no_grad():
            direction, offset = scorer.decision_vector()
        return cls(direction.detach().float().cpu().numpy().astype(np.float32), float(offset))


class TopK:
    """Running best k (row, logit) pairs, merged chunk by chunk."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.rows = np.zeros(0, dtype=np.int64)
        self.logits = np.zeros(0, dtype=np.float32)
        self.nonfinite = 0

    def add(self, rows: np.ndarray, logits: np.ndarray) -> None:
        """Merge one chunk's scores (NaN scores are counted in ``nonfinite`` and never kept)."""
        if self.k <= 0 or rows.size == 0:
            return
        finite = ~np.isnan(logits)
        if not finite.all():
            self.nonfinite += int(rows.size - finite.sum())
            rows, logits = rows[finite], logits[finite]
            if rows.size == 0:
                return
        if rows.size > self.k:
            keep = np.argpartition(-logits, self.k - 1)[:self.k]
            rows, logits = rows[keep], logits[keep]
        all_rows = np.concatenate([self.rows, rows])
        all_logits = np.concatenate([self.logits, logits.astype(np.float32)])
        order = np.lexsort((all_rows, -all_logits))[:self.k]
        self.rows, self.logits = all_rows[order], all_logits[order]

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, logits), best first."""
        return self.rows, self.logits


def chunk_logits(gallery: np.ndarray, rows: np.ndarray, query: np.ndarray, decision: Decision, backend: str,
                 device: torch.device | None = None) -> np.ndarray:
    """Logits (len(rows),) float32 of ``query`` against ``gallery[rows]``."""
    if rows.size == 0:
        return np.zeros(0, dtype=np.float32)
    if backend == "numba":
        fused = _NUMBA["module"] if numba_available() else None
        if fused is None:
            raise RuntimeError("the numba backend is not available; use backend='torch'")
        out = np.empty(rows.size, dtype=np.float32)
        query32 = np.ascontiguousarray(query, dtype=np.float32)
        rows64 = np.ascontiguousarray(rows, dtype=np.int64)
        base = np.asarray(gallery).view()
        base.setflags(write=False)  # one compiled specialisation: memory maps are read-only anyway
        if base.dtype == np.float16:
            kernel = fused.logits_f16 if fused.HAS_F16C else fused.logits_f16_bits
            kernel(base.view(np.uint16), rows64, query32, decision.direction, np.float32(decision.offset), out)
        else:
            fused.logits_f32(np.asarray(base, dtype=np.float32), rows64, query32, decision.direction,
                             np.float32(decision.offset), out)
        return out
    if backend == "torch":
        device = device or torch.device("cpu")
        first, last = int(rows[0]), int(rows[-1])
        block = gallery[first:last + 1] if last - first + 1 == rows.size else gallery[rows]
        with warnings.catch_warnings():  # a read-only memory map: torch warns, the tensor is only read
            warnings.simplefilter("ignore", UserWarning)
            values = torch.from_numpy(np.ascontiguousarray(block)).to(device).float()
        q = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32)).to(device)
        direction = torch.from_numpy(decision.direction).to(device)
        offset = torch.tensor(decision.offset, dtype=torch.float32, device=device)
        with torch.inference_mode():
            return decomposed_logits(values, q[None], direction, offset)[0].float().cpu().numpy()
    raise ValueError(f"unknown scoring backend {backend!r}; use 'numba' or 'torch'")


def top_k(gallery: np.ndarray, candidates: np.ndarray, query: np.ndarray, decision: Decision, k: int,
          backend: str = "numba", device: torch.device | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS,
          check: Callable[[], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` rows of ``gallery`` among ``candidates`` (sorted rows) for one query.

    Args:
        gallery: (rows, d4) float16 or float32 array, typically a memory map.
        candidates: sorted int64 rows to score.
        query: (d4,) query projection.
        decision: the scorer's decision vector.
        k: how many to keep.
        backend: "numba" or "torch".
        device: torch device of the torch backend.
        chunk_rows: rows scored per chunk.
        check: called between chunks (a cancel check).

    Returns:
        (rows, logits) of the best k, best first.

    Raises:
        FloatingPointError: some scores are NaN (the message says how many): no ranking.
    """
    if backend == "numba":
        _set_numba_threads()
    best = TopK(max(k, 1))
    for start in range(0, candidates.size, chunk_rows):
        if check is not None:
            check()
        rows = candidates[start:start + chunk_rows]
        best.add(rows, chunk_logits(gallery, rows, query, decision, backend, device))
    if best.nonfinite:
        raise FloatingPointError(f"{best.nonfinite} of {candidates.size} scores are NaN")
    rows, logits = best.result()
    return rows[:k], logits[:k]


def fast_logits(gallery: np.ndarray, query: np.ndarray, direction: np.ndarray, offset: float,
                out: np.ndarray | None = None) -> np.ndarray:
    """Match logits ``(w1-w0) . tanh(G_i + q) + (b1-b0)`` for every row of ``gallery``.

    Args:
        gallery: (N, d4) float32 gallery projections (a memory-mapped array is fine).
        query: (d4,) query projection q.
        direction: (d4,) w1 - w0 of the classifier.
        offset: b1 - b0.
        out: optional (N,) float32 array to write into.

    Returns:
        (N,) float32 logits; sigmoid of them is the match probability.
    """
    from dvan.search._fused import logits_f32  # numba loads only when called

    gallery = np.ascontiguousarray(gallery, dtype=np.float32)
    if out is None:
        out = np.empty(gallery.shape[0], dtype=np.float32)
    rows = np.arange(gallery.shape[0], dtype=np.int64)
    logits_f32(gallery, rows, np.ascontiguousarray(query, dtype=np.float32),
               np.ascontiguousarray(direction, dtype=np.float32), np.float32(offset), out)
    return out
