"""Numba kernels of the decomposed fusion score for the CPU (imported lazily by kernels.py).

``logit_i = (w1 - w0) . tanh(G_i + q) + (b1 - b0)`` is fused into one pass per row: no (N, d4)
temporary, and tanh is Eigen's rational approximation (``generic_fast_tanh_float``, maximum
error about 3e-7 against float32 tanh, the same accuracy class as torch's own vectorised tanh),
which vectorises where libm's tanh does not. Float16 galleries are widened in the kernel (F16C
``vcvtph2ps`` where the CPU has it, else integer bit operations; both exact for every finite
half), so they are read at half the memory traffic.
"""

from __future__ import annotations

import os

import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import types
from numba.extending import intrinsic

#: Cache compiled kernels next to this file (numba needs the .py file; frozen bundles compile once per run).
_CACHE = os.path.isfile(__file__)
_CLAMP = np.float32(7.90531110763549805)
_ALPHA = (np.float32(-2.76076847742355e-16), np.float32(2.00018790482477e-13), np.float32(-8.60467152213735e-11),
          np.float32(5.12229709037114e-08), np.float32(1.48572235717979e-05), np.float32(6.37261928875436e-04),
          np.float32(4.89352455891786e-03))
_BETA = (np.float32(1.19825839466702e-06), np.float32(1.18534705686654e-04), np.float32(2.26843463243900e-03),
         np.float32(4.89352518554385e-03))
_A0, _A1, _A2, _A3, _A4, _A5, _A6 = _ALPHA
_B0, _B1, _B2, _B3 = _BETA
#: Rows per parallel work unit of the float16 kernel (each unit widens its rows into a buffer).
_BLOCK = 32
#: 2**112: rescales a half's exponent field moved into a float32 (exact for normals and subnormals).
_HALF_SCALE = np.float32(2.0 ** 112)


@njit(fastmath=True, inline="always", cache=_CACHE)
def _tanh(x):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    x = min(max(x, -_CLAMP), _CLAMP)
    x2 = x * x
    p = x2 * _A0 + _A1
    p = x2 * p + _A2
    p = x2 * p + _A3
    p = x2 * p + _A4
    p = x2 * p + _A5
    p = x2 * p + _A6
    p = x * p
    q = x2 * _B0 + _B1
    q = x2 * q + _B2
    q = x2 * q + _B3
    return p / q


@njit(fastmath=True, parallel=True, cache=_CACHE)
def logits_f32(gallery, rows, query, direction, offset, out):  # type: ignore[no-untyped-def]  # pragma: no cover
    """out[j] = direction . tanh(gallery[rows[j]] + query) + offset, float32 gallery."""
    d = gallery.shape[1]
    for j in prange(rows.shape[0]):
        r = rows[j]
        acc = np.float32(0.0)
        for k in range(d):
            acc += direction[k] * _tanh(gallery[r, k] + query[k])
        out[j] = acc + offset


def _host_has_f16c() -> bool:
    try:
        from llvmlite import binding

        return bool(binding.get_host_cpu_features().get("f16c", False))
    except Exception:  # feature query unsupported: take the portable kernel
        return False


#: Whether the CPU converts float16 in hardware (x86 F16C); else the bit-operation kernel is used.
HAS_F16C = _host_has_f16c()


@intrinsic
def _half_to_float(typingctx, bits):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """float32 value of a float16 given as its uint16 bits (one vcvtph2ps per 8 values with F16C)."""
    signature = types.float32(types.uint16)

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return signature, codegen


@njit(fastmath=True, parallel=True, cache=_CACHE)
def logits_f16(gallery_bits, rows, query, direction, offset, out):  # type: ignore[no-untyped-def]  # pragma: no cover
    """As logits_f32 for a float16 gallery passed as its uint16 bit patterns (needs F16C)."""
    d = gallery_bits.shape[1]
    for j in prange(rows.shape[0]):
        r = rows[j]
        acc = np.float32(0.0)
        for k in range(d):
            acc += direction[k] * _tanh(_half_to_float(gallery_bits[r, k]) + query[k])  # type: ignore[call-arg]
        out[j] = acc + offset


@njit(fastmath=True, parallel=True, cache=_CACHE)
def logits_f16_bits(gallery_bits, rows, query, direction, offset, out):  # type: ignore[no-untyped-def]  # pragma: no cover
    """As logits_f16, widening halves with integer bit operations (any CPU)."""
    d = gallery_bits.shape[1]
    n = rows.shape[0]
    blocks = (n + _BLOCK - 1) // _BLOCK
    for b in prange(blocks):
        bits = np.empty(d, np.int32)
        values = bits.view(np.float32)
        for j in range(b * _BLOCK, min(n, (b + 1) * _BLOCK)):
            r = rows[j]
            for k in range(d):
                h = np.int32(gallery_bits[r, k])
                bits[k] = ((h & 0x7FFF) << 13) | ((h & 0x8000) << 16)
            acc = np.float32(0.0)
            for k in range(d):
                acc += direction[k] * _tanh(values[k] * _HALF_SCALE + query[k])
            out[j] = acc + offset
