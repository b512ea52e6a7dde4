"""Runtime kernels of the `ascend` ops, registered in the kernel table of `qcc.runtime.ops`.

They compute what the Ascend operators compute (CANN's TBE implementations):

- `ascend.quant`: x and the attributes are cast to float16, y = x * scale (* scale
  in sqrt_mode) + offset in float16 arithmetic, rounded per `round_mode` and
  saturated to int8. So it can differ by one step from `quant.quantize` (float32,
  half to even) where x / scale_d is near a half.
- `ascend.dequant`: float32(acc) * float32 scale per channel, relu'd with
  `relu_flag`, then cast to `dtype` (float16 rounds to nearest even); with a
  float16 deq_scale (v100), the product is float16 and sqrt_mode multiplies twice.
  With dtype f32 it is exactly `quant.dequantize` of the i32 accumulator.
- `ascend.anti_quant`: (x + offset) * scale (* scale) in float16, cast to `dtype`.
- `ascend.weight_quant`: `qtype.quantize(w)`.
"""

from __future__ import annotations

import numpy as np
from xdsl.dialects.builtin import Float16Type

from qcc.dialects import ascend
from qcc.dialects.base import get_bool, get_float, get_int, get_str
from qcc.runtime.ops import Kernel, kernel


def round_half_away(v: np.ndarray) -> np.ndarray:
    """Round half away from zero (CANN's "Round"), exact in v's dtype."""
    a = np.abs(v)
    r = np.floor(a)
    r = np.where(a - r >= 0.5, r + 1, r)
    return np.copysign(r, v).astype(v.dtype)


_ROUND = {"Round": round_half_away, "Rint": np.rint, "Floor": np.floor, "Ceil": np.ceil,
          "Trunc": np.trunc}


def _dtype_of(op) -> np.dtype:
    return np.dtype(np.float16 if isinstance(op.properties["dtype"], Float16Type)
                    else np.float32)


def _f16(v: np.ndarray, buf: np.ndarray) -> np.ndarray:
    """v rounded to float16 and back, in place on the float32 array v."""
    np.copyto(buf, v, casting="same_kind")
    np.copyto(v, buf)
    return v


@kernel(ascend.QuantOp)
def _quant(op, consts):
    """float16 arithmetic done in float32, each result rounded to float16 (what numpy's
    float16 loops do: an op of two float16 values in float32, rounded once): the same
    numbers as the float16 computation, without its per-element conversions. A
    float16 value v is rounded half away from zero as trunc(v + copysign(0.5, v)),
    exact in float32 (v + 0.5 needs at most 24 significant bits)."""
    scale = np.float32(np.float16(get_float(op.properties["scale"])))
    offset = np.float32(np.float16(get_float(op.properties["offset"])))
    sqrt_mode = get_bool(op.properties["sqrt_mode"])
    mode = get_str(op.properties["round_mode"], "Round")
    rounding = {"Rint": np.rint, "Floor": np.floor, "Ceil": np.ceil, "Trunc": np.trunc}

    def run(x):
        buf = np.empty(np.shape(x), np.float16)
        np.copyto(buf, x, casting="unsafe")
        y = buf.astype(np.float32)
        _f16(np.multiply(y, scale, out=y), buf)
        if sqrt_mode:
            _f16(np.multiply(y, scale, out=y), buf)
        _f16(np.add(y, offset, out=y), buf)
        if mode == "Round":
            half = np.copysign(np.float32(0.5), y)
            np.add(y, half, out=y)
            np.trunc(y, out=y)
        else:
            rounding[mode](y, out=y)
        np.clip(y, np.float32(-128), np.float32(127), out=y)
        return y.astype(np.int8)

    if mode != "Round" and mode not in rounding:
        raise ValueError(f"ascend.quant: unknown round_mode {mode!r}")
    return Kernel(run, fresh=True)


def channel_scale(deq: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """The scales of a deq_scale operand shaped to broadcast along `axis`."""
    scale = ascend.unpack_deq_scale(deq).scale if deq.dtype == np.uint64 else deq
    if scale.size == 1:
        return scale.reshape(())
    shape = [1] * ndim
    shape[axis % ndim] = scale.size
    return scale.reshape(shape)


@kernel(ascend.DequantOp)
def _dequant(op, consts):
    axis = get_int(op.properties["axis"], 1)
    sqrt_mode, relu = get_bool(op.properties["sqrt_mode"]), get_bool(op.properties["relu_flag"])
    dtype = _dtype_of(op)
    ndim = len(op.operands[0].type.get_shape())
    known = None if consts[1] is None else channel_scale(np.asarray(consts[1]), ndim, axis)

    def run(acc, deq):
        scale = known if known is not None else channel_scale(np.asarray(deq), acc.ndim, axis)
        if scale.dtype == np.float16:  # the v100 form: float16 arithmetic
            y = acc.astype(np.float16) * scale
            if sqrt_mode:
                y = y * scale
        else:
            y = acc.astype(np.float32)
            y = np.multiply(y, scale, out=y) if scale.dtype == np.float32 else y * scale
        if relu:
            np.maximum(y, 0, out=y)
        return y.astype(dtype, copy=False)

    return Kernel(run, fresh=True)


@kernel(ascend.AntiQuantOp)
def _anti_quant(op, consts):
    scale = np.float16(get_float(op.properties["scale"]))
    offset = np.float16(get_float(op.properties["offset"]))
    sqrt_mode, dtype = get_bool(op.properties["sqrt_mode"]), _dtype_of(op)

    def run(x):
        y = (x.astype(np.float16) + offset) * scale
        if sqrt_mode:
            y = y * scale
        return y.astype(dtype)

    return Kernel(run, fresh=True)


@kernel(ascend.WeightQuantOp)
def _weight_quant(op, consts):
    return Kernel(op.properties["qtype"].quantize, fresh=True)
