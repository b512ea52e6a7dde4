"""float16 conversions and the Ascend quant/dequant stages, numpy's numbers.

numpy converts float16 one element at a time in software (about ten times the cost
of a float32 add) and its float16 arithmetic converts every operand and result;
the compiled `runtime/_half.pyx` computes the same numbers in float32 registers in
one pass. Without it (an uncompiled checkout, QCC_REFERENCE_KERNELS=1) the numpy
definitions below run.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np


def _compiled():
    if os.environ.get("QCC_REFERENCE_KERNELS") == "1":
        return None
    try:
        from qcc.runtime import _half
    except ImportError:
        return None
    return _half


_C = _compiled()

ROUND_MODES = ("Round", "Rint", "Floor", "Ceil", "Trunc")


def round_half_away(v: np.ndarray) -> np.ndarray:
    """Round half away from zero (CANN's "Round"), exact in v's dtype."""
    a = np.abs(v)
    r = np.floor(a)
    r = np.where(a - r >= 0.5, r + 1, r)
    return np.copysign(r, v).astype(v.dtype)


_ROUND: dict[str, Callable[[np.ndarray], np.ndarray]] = dict(zip(
    ROUND_MODES, (round_half_away, np.rint, np.floor, np.ceil, np.trunc), strict=True))


def to_f16(x: np.ndarray) -> np.ndarray:
    if _C is not None and x.dtype == np.float32:
        return _C.to_f16(x)
    return x.astype(np.float16)


def to_f32(h: np.ndarray) -> np.ndarray:
    if _C is not None and h.dtype == np.float16:
        return _C.to_f32(h)
    return h.astype(np.float32)


def ascend_quant(x: np.ndarray, scale: np.float16, offset: np.float16, sqrt_mode: bool,
                 mode: str) -> np.ndarray:
    """int8 of round_mode(x * scale (* scale) + offset) in float16 arithmetic, x cast
    to float16 first, saturated to [-128, 127]."""
    x = np.asarray(x)
    if _C is not None and x.dtype in (np.float16, np.float32):
        return _C.ascend_quant(x, float(scale), float(offset), sqrt_mode,
                               ROUND_MODES.index(mode))
    y = x.astype(np.float16) * scale
    if sqrt_mode:
        y = y * scale
    y = _ROUND[mode](y + offset)
    return np.clip(y.astype(np.float32), -128, 127).astype(np.int8)


def ascend_dequant(acc: np.ndarray, scale: np.ndarray, axis: int, relu: bool,
                   dtype: np.dtype) -> np.ndarray:
    """float32(acc) * float32 scale (one, or one per index along `axis`, shaped to
    broadcast), relu'd, cast to `dtype` (float32 or float16)."""
    if _C is not None and acc.dtype == np.int32 and scale.dtype == np.float32 and \
            dtype in (np.float16, np.float32):
        return _C.ascend_dequant(acc, scale, axis % max(acc.ndim, 1), relu,
                                 dtype == np.float16)
    y = acc.astype(np.float32) * scale
    if relu:
        y = np.maximum(y, 0)
    return y.astype(dtype)
