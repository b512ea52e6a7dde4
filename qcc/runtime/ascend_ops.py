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
from qcc.runtime import half
from qcc.runtime.ops import Kernel, kernel

round_half_away = half.round_half_away


def _dtype_of(op) -> np.dtype:
    return np.dtype(np.float16 if isinstance(op.properties["dtype"], Float16Type)
                    else np.float32)


def quant_params(op: ascend.QuantOp) -> tuple[float, float, bool, int]:
    """(scale, offset, sqrt_mode, index of round_mode in half.ROUND_MODES) of an
    `ascend.quant`, scale and offset as float16 values."""
    mode = get_str(op.properties["round_mode"], "Round")
    if mode not in half.ROUND_MODES:
        raise ValueError(f"ascend.quant: round_mode {mode!r} is not one of "
                         f"{', '.join(half.ROUND_MODES)}")
    return (float(np.float16(get_float(op.properties["scale"]))),
            float(np.float16(get_float(op.properties["offset"]))),
            get_bool(op.properties["sqrt_mode"]), half.ROUND_MODES.index(mode))


@kernel(ascend.QuantOp)
def _quant(op, consts):
    scale, offset, sqrt_mode, index = quant_params(op)
    mode = half.ROUND_MODES[index]
    return Kernel(lambda x: half.ascend_quant(x, np.float16(scale), np.float16(offset),
                                              sqrt_mode, mode), fresh=True)


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
            if relu:
                y = np.maximum(y, 0)
            return y.astype(dtype)
        return half.ascend_dequant(acc, scale, axis, relu, dtype)

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
