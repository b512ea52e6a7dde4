"""The runtime's kernel table: qnn op class -> function(op, *arrays) -> array(s).

Layers go to the compiled kernels (`qcc.runtime.kernels`); element-wise, shape and
normalization ops run their numpy semantics from `qcc.dialects.qnn_eval`, the same
functions canonicalize folds constants with.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from xdsl.dialects.builtin import f32

from qcc.dialects import qnn, quant
from qcc.dialects.base import get_bool, get_float, get_int, get_ints, get_str
from qcc.dialects.qnn_eval import EVAL
from qcc.runtime import kernels as C

Kernel = Callable[..., object]
KERNELS: dict[type, Kernel] = {op: EVAL[op.name] for op in qnn.QNN_OPS if op.name in EVAL}


def kernel(*op_types: type) -> Callable[[Kernel], Kernel]:
    def register(fn: Kernel) -> Kernel:
        for t in op_types:
            KERNELS[t] = fn
        return fn

    return register


def _p(op, key: str):
    return op.properties.get(key)


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


# ------------------------------------------------------------------ layers


@kernel(qnn.ConvOp)
def _conv(op, x, w, b=None):
    return C.conv(_f32(x), _f32(w), None if b is None else _f32(b), get_ints(_p(op, "strides")),
                  get_ints(_p(op, "pads")), get_ints(_p(op, "dilations")),
                  get_int(_p(op, "groups"), 1))


@kernel(qnn.ConvTransposeOp)
def _conv_transpose(op, x, w, b=None):
    return C.conv_transpose(_f32(x), _f32(w), None if b is None else _f32(b),
                            get_ints(_p(op, "strides")), get_ints(_p(op, "pads")),
                            get_ints(_p(op, "dilations")), get_int(_p(op, "groups"), 1),
                            get_ints(_p(op, "output_padding")))


@kernel(qnn.DenseOp)
def _dense(op, x, w, b=None):
    lead = x.shape[:-1]
    y = C.dense(_f32(x).reshape(-1, x.shape[-1]), _f32(w), None if b is None else _f32(b))
    return y.reshape(*lead, w.shape[0])


@kernel(qnn.MaxPoolOp)
def _max_pool(op, x):
    k = get_ints(_p(op, "kernel"))
    if x.dtype != np.float32:  # integer pooling is exact through the reference kernel
        return C.reference_max_pool(x, k, get_ints(_p(op, "strides")),
                                    get_ints(_p(op, "pads")),
                                    get_ints(_p(op, "dilations"), (1,) * len(k)),
                                    get_bool(_p(op, "ceil_mode"))).astype(x.dtype)
    return C.max_pool(_f32(x), k, get_ints(_p(op, "strides")), get_ints(_p(op, "pads")),
                      get_ints(_p(op, "dilations"), (1,) * len(k)),
                      get_bool(_p(op, "ceil_mode")))


@kernel(qnn.AvgPoolOp)
def _avg_pool(op, x):
    k = get_ints(_p(op, "kernel"))
    dil = get_ints(_p(op, "dilations"), (1,) * len(k))
    if any(d != 1 for d in dil):
        return C.reference_avg_pool(_f32(x), k, get_ints(_p(op, "strides")),
                                    get_ints(_p(op, "pads")), get_bool(_p(op, "ceil_mode")),
                                    get_bool(_p(op, "count_include_pad")), dil)
    return C.avg_pool(_f32(x), get_ints(_p(op, "kernel")), get_ints(_p(op, "strides")),
                      get_ints(_p(op, "pads")), get_bool(_p(op, "ceil_mode")),
                      get_bool(_p(op, "count_include_pad")))


@kernel(qnn.ResizeOp)
def _resize(op, x):
    """Any dtype for nearest (a gather); linear and cubic return x's dtype."""
    return C.resize(np.asarray(x), get_ints(_p(op, "sizes")), get_str(_p(op, "mode"), "nearest"),
                    get_str(_p(op, "coordinate_transformation_mode"), "half_pixel"),
                    get_str(_p(op, "nearest_mode"), "round_prefer_floor"),
                    scales=qnn.ResizeOp.floats(_p(op, "scales")),
                    roi=qnn.ResizeOp.floats(_p(op, "roi")),
                    cubic_coeff_a=get_float(_p(op, "cubic_coeff_a"), -0.75),
                    exclude_outside=get_bool(_p(op, "exclude_outside")),
                    extrapolation_value=get_float(_p(op, "extrapolation_value")),
                    antialias=get_bool(_p(op, "antialias")))


# -------------------------------------------------------------------- quant


@kernel(quant.ObserveOp)
def _observe(op, x):
    return x  # calibration replaces this kernel to collect statistics


@kernel(quant.FakeQuantOp)
def _fake_quant(op, x, scale=None, zero_point=None):
    qtype = op.properties["qtype"]
    if scale is None:
        return qtype.fake_quant(x)
    # range learning: parameters are values (float zero point, rounded here)
    qmin, qmax = qtype.storage_min, qtype.storage_max
    shape = [1] * x.ndim
    if qtype.axis is not None:
        shape[qtype.axis] = -1
    s = np.asarray(scale, np.float32).reshape(shape if scale.size > 1 else ())
    z = np.rint(np.asarray(zero_point, np.float32)).reshape(shape if zero_point.size > 1 else ())
    q = np.clip(np.rint(x / s) + z, qmin, qmax)
    return ((q - z) * s).astype(np.float32)


def _fake_quant_into(qtype, x: np.ndarray) -> np.ndarray:
    """qtype.fake_quant(x) computed in place on the float32 buffer `x` (the same
    numbers: x / s and rint in float32, integers exact in float32, (q - z) * s)."""
    shape = [1] * x.ndim
    if qtype.axis is not None:
        shape[qtype.axis] = -1
    s = np.asarray(qtype.scales, np.float32).reshape(shape)
    z = np.asarray(qtype.zero_points, np.float32).reshape(shape)
    np.divide(x, s, out=x)
    np.rint(x, out=x)
    np.add(x, z, out=x)
    np.clip(x, qtype.storage_min, qtype.storage_max, out=x)
    np.subtract(x, z, out=x)
    np.multiply(x, s, out=x)
    return x


# Producers whose kernels return a fresh float32 buffer, never a view of an input.
_FRESH = (qnn.ConvOp, qnn.ConvTransposeOp, qnn.DenseOp, qnn.MatmulOp, qnn.AvgPoolOp,
          qnn.MaxPoolOp, qnn.GlobalAvgPoolOp, qnn.ReluOp, qnn.ClipOp, qnn.AddOp,
          qnn.SubOp, qnn.MulOp, qnn.BatchNormOp, qnn.ScaleOp, qnn.GeluOp, qnn.SigmoidOp,
          qnn.SoftmaxOp, qnn.LayerNormOp)


def fold_at_compile_time(op) -> bool:
    """Ops the plan evaluates once when all their operands are constants."""
    return isinstance(op, quant.FakeQuantOp)


def allocates_output(op) -> bool:
    return isinstance(op, _FRESH)


def fusable_fake_quant(op) -> bool:
    return (isinstance(op, quant.FakeQuantOp) and len(op.operands) == 1
            and quant.quantized_element(op.output.type) is None
            and op.output.type.element_type == f32)


def fuse_fake_quant(producer: Kernel, fq_op) -> Kernel:
    """A kernel running `producer` then `fq_op`'s fake quantization in place."""
    qtype = fq_op.properties["qtype"]

    def fused(op, *args):
        out = producer(op, *args)
        if not isinstance(out, np.ndarray) or out.dtype != np.float32 or \
                not out.flags.writeable or not out.flags.c_contiguous:
            return qtype.fake_quant(out)
        return _fake_quant_into(qtype, out)

    return fused


@kernel(quant.QuantizeOp)
def _quantize(op, x):
    return op.properties["qtype"].quantize(x)


@kernel(quant.DequantizeOp)
def _dequantize(op, q):
    return quant.quantized_element(op.input.type).dequantize(q)


@kernel(quant.RequantizeOp)
def _requantize(op, q):
    src = quant.quantized_element(op.input.type)
    return op.properties["qtype"].quantize(src.dequantize(q))
