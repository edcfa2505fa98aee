"""The fused CPU score for a whole gallery array (a thin entry over :mod:`dvan.search._fused`).

torch evaluates ``tanh(G + q) @ (w1 - w0)`` as three passes over an (N, d4) temporary; the numba
kernel does the add, tanh and dot product in one pass per row, in parallel over rows. Results
equal the torch path to ~1e-6 in logit. The search engine calls the kernels directly with row
selections; this function serves benchmarks and the installer's self-check.
"""

from __future__ import annotations

import numpy as np


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
    from dvan.search._fused import logits_f32

    gallery = np.ascontiguousarray(gallery, dtype=np.float32)
    if out is None:
        out = np.empty(gallery.shape[0], dtype=np.float32)
    rows = np.arange(gallery.shape[0], dtype=np.int64)
    logits_f32(gallery, rows, np.ascontiguousarray(query, dtype=np.float32),
               np.ascontiguousarray(direction, dtype=np.float32), np.float32(offset), out)
    return out
