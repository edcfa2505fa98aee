"""A fused CPU kernel for the decomposed fusion score, for searching large galleries.

torch evaluates ``tanh(G + q) @ (w1 - w0)`` as three passes over an (N, d4) temporary; this
kernel does the add, tanh and dot product in one pass per row, in parallel over rows, with a
rational tanh that LLVM vectorises (Eigen's float approximation, within a few ULP of tanh).
numba comes with librosa already. Results equal the torch path to ~1e-6 in logit.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Eigen's generic_fast_tanh_float: tanh(x) = x P(x^2) / Q(x^2) on |x| <= 7.905..., where
# float32 tanh is already +-1.
_CLAMP = np.float32(7.90531110763549805)
_A13, _A11, _A9 = np.float32(-2.76076847742355e-16), np.float32(2.00018790482477e-13), np.float32(-8.60467152213735e-11)
_A7, _A5, _A3 = np.float32(5.12229709037114e-08), np.float32(1.48572235717979e-05), np.float32(6.37261928875436e-04)
_A1 = np.float32(4.89352455891786e-03)
_B6, _B4 = np.float32(1.19825839466702e-06), np.float32(1.18534705686654e-04)
_B2, _B0 = np.float32(2.26843463243900e-03), np.float32(4.89352518554385e-03)


@njit(parallel=True, fastmath=True, cache=True)
def _logits_kernel(gallery: np.ndarray, query: np.ndarray, direction: np.ndarray, offset: np.float32,
                   out: np.ndarray) -> None:  # pragma: no cover - compiled
    rows, width = gallery.shape
    for i in prange(rows):
        total = np.float32(0.0)
        for k in range(width):
            x = gallery[i, k] + query[k]
            x = min(max(x, -_CLAMP), _CLAMP)
            x2 = x * x
            p = x2 * _A13 + _A11
            p = x2 * p + _A9
            p = x2 * p + _A7
            p = x2 * p + _A5
            p = x2 * p + _A3
            p = x2 * p + _A1
            q = x2 * _B6 + _B4
            q = x2 * q + _B2
            q = x2 * q + _B0
            total += direction[k] * (x * p / q)
        out[i] = total + offset


def fast_logits(gallery: np.ndarray, query: np.ndarray, direction: np.ndarray, offset: float,
                out: np.ndarray | None = None) -> np.ndarray:
    """Match logits ``(w1-w0) . tanh(G_i + q) + (b1-b0)`` for every row of ``gallery``.

    Args:
        gallery: (N, d4) float32 gallery projections (a memory-mapped chunk is fine).
        query: (d4,) query projection q.
        direction: (d4,) w1 - w0 of the classifier.
        offset: b1 - b0.
        out: optional (N,) float32 array to write into.

    Returns:
        (N,) float32 logits; sigmoid of them is the match probability.
    """
    gallery = np.ascontiguousarray(gallery, dtype=np.float32)
    if out is None:
        out = np.empty(gallery.shape[0], dtype=np.float32)
    _logits_kernel(gallery, np.ascontiguousarray(query, dtype=np.float32),
                   np.ascontiguousarray(direction, dtype=np.float32), np.float32(offset), out)
    return out
