"""Runtime kernels of the `ascend` ops, registered into `qcc.runtime.ops.KERNELS`.

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
from qcc.runtime.ops import kernel


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


@kernel(ascend.QuantOp)
def _quant(op, x):
    h = np.asarray(x).astype(np.float16)
    scale = np.float16(get_float(op.properties["scale"]))
    y = h * scale
    if get_bool(op.properties["sqrt_mode"]):
        y = y * scale
    y = y + np.float16(get_float(op.properties["offset"]))
    y = _ROUND[get_str(op.properties["round_mode"], "Round")](y)
    return np.clip(y.astype(np.float32), -128, 127).astype(np.int8)


def channel_scale(deq: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """The scales of a deq_scale operand shaped to broadcast along `axis`."""
    scale = ascend.unpack_deq_scale(deq).scale if deq.dtype == np.uint64 else deq
    if scale.size == 1:
        return scale.reshape(())
    shape = [1] * ndim
    shape[axis % ndim] = scale.size
    return scale.reshape(shape)


@kernel(ascend.DequantOp)
def _dequant(op, acc, deq):
    scale = channel_scale(np.asarray(deq), acc.ndim, get_int(op.properties["axis"], 1))
    if scale.dtype == np.float16:  # the v100 form: float16 arithmetic
        y = acc.astype(np.float16) * scale
        if get_bool(op.properties["sqrt_mode"]):
            y = y * scale
    else:
        y = acc.astype(np.float32) * scale
    if get_bool(op.properties["relu_flag"]):
        y = np.maximum(y, 0)
    return y.astype(_dtype_of(op))


@kernel(ascend.AntiQuantOp)
def _anti_quant(op, x):
    scale = np.float16(get_float(op.properties["scale"]))
    y = (x.astype(np.float16) + np.float16(get_float(op.properties["offset"]))) * scale
    if get_bool(op.properties["sqrt_mode"]):
        y = y * scale
    return y.astype(_dtype_of(op))


@kernel(ascend.WeightQuantOp)
def _weight_quant(op, w):
    return op.properties["qtype"].quantize(w)
