"""The runtime's kernel table: qnn op class -> function(op, *arrays) -> array(s).

Layers go to the compiled kernels (`qcc.runtime.kernels`); element-wise and shape
ops are single vectorized numpy calls.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_dtypes
import numpy as np
from scipy import special
from xdsl.dialects.builtin import f32

from qcc import ir
from qcc.dialects import qnn, quant
from qcc.dialects.base import get_bool, get_float, get_int, get_ints, get_str
from qcc.runtime import kernels as C

Kernel = Callable[..., object]
KERNELS: dict[type, Kernel] = {}


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


@kernel(qnn.MatmulOp)
def _matmul(op, a, b):
    return np.matmul(a, b)


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


@kernel(qnn.GlobalAvgPoolOp)
def _global_avg_pool(op, x):
    return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True, dtype=np.float32)


# ----------------------------------------------------------- normalization


def _channel(v: np.ndarray, ndim: int, axis: int = 1) -> np.ndarray:
    shape = [1] * ndim
    shape[axis % ndim] = -1
    return v.reshape(shape)


@kernel(qnn.BatchNormOp)
def _batch_norm(op, x, scale, bias, mean, var):
    eps = get_float(_p(op, "epsilon"), 1e-5)
    a = (scale / np.sqrt(var.astype(np.float64) + eps)).astype(np.float32)
    b = (bias - mean * a).astype(np.float32)
    return x * _channel(a, x.ndim) + _channel(b, x.ndim)


@kernel(qnn.ScaleOp)
def _scale(op, x, scale, bias=None):
    axis = get_int(_p(op, "axis"), 1)
    y = x * _channel(scale, x.ndim, axis)
    return y if bias is None else y + _channel(bias, x.ndim, axis)


@kernel(qnn.LayerNormOp)
def _layer_norm(op, x, scale, bias=None):
    axis = get_int(_p(op, "axis"), -1) % x.ndim
    axes = tuple(range(axis, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    d = x - mean
    var = (d * d).mean(axis=axes, keepdims=True)
    y = d / np.sqrt(var + np.float32(get_float(_p(op, "epsilon"), 1e-5))) * scale
    return y if bias is None else y + bias


@kernel(qnn.SoftmaxOp)
def _softmax(op, x):
    axis = get_int(_p(op, "axis"), -1)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@kernel(qnn.LrnOp)
def _lrn(op, x):
    size = get_int(_p(op, "size"), 5)
    alpha, beta = get_float(_p(op, "alpha"), 1e-4), get_float(_p(op, "beta"), 0.75)
    bias = get_float(_p(op, "bias"), 1.0)
    sq = np.square(x)
    pad = [(0, 0)] * x.ndim
    pad[1] = ((size - 1) // 2, size // 2)
    c = np.cumsum(np.pad(sq, pad), axis=1)
    c = np.concatenate([np.zeros_like(c[:, :1]), c], axis=1)
    window = c[:, size:] - c[:, :-size]
    return (x / (bias + alpha / size * window) ** beta).astype(np.float32)


# -------------------------------------------------------------- element-wise

_UNARY: dict[type, Callable[[np.ndarray], np.ndarray]] = {
    qnn.ReluOp: lambda x: np.maximum(x, 0, dtype=x.dtype),
    qnn.SigmoidOp: lambda x: special.expit(x),
    qnn.TanhOp: np.tanh,
    qnn.ErfOp: lambda x: special.erf(x).astype(x.dtype),
    qnn.SqrtOp: np.sqrt,
    qnn.ExpOp: np.exp,
    qnn.LogOp: np.log,
    qnn.AbsOp: np.abs,
    qnn.NegOp: np.negative,
    qnn.ReciprocalOp: np.reciprocal,
    qnn.IdentityOp: lambda x: x,
    qnn.DropoutOp: lambda x: x,
    qnn.FloorOp: np.floor,
    qnn.NotOp: np.logical_not,
    qnn.HardSwishOp: lambda x: x * np.clip(x / 6 + 0.5, 0, 1).astype(x.dtype),
}

_f: Callable[..., np.ndarray]
for _t, _f in _UNARY.items():
    KERNELS[_t] = (lambda f: lambda op, x: f(x))(_f)


@kernel(qnn.LeakyReluOp)
def _leaky_relu(op, x):
    return np.where(x >= 0, x, x * np.float32(get_float(_p(op, "alpha"), 0.01)))


@kernel(qnn.ClipOp)
def _clip(op, x):
    lo, hi = get_float(_p(op, "min")), get_float(_p(op, "max"))
    return np.clip(x, x.dtype.type(lo), x.dtype.type(hi))


@kernel(qnn.HardSigmoidOp)
def _hard_sigmoid(op, x):
    a, b = get_float(_p(op, "alpha"), 0.2), get_float(_p(op, "beta"), 0.5)
    return np.clip(x * np.float32(a) + np.float32(b), 0, 1).astype(x.dtype)


@kernel(qnn.GeluOp)
def _gelu(op, x):
    if get_str(_p(op, "approximate"), "none") == "tanh":
        inner = np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)
        return (0.5 * x * (1 + np.tanh(inner))).astype(x.dtype)
    return (0.5 * x * (1 + special.erf(x / np.sqrt(2)))).astype(x.dtype)


@kernel(qnn.PreluOp)
def _prelu(op, x, slope):
    return np.where(x >= 0, x, x * slope)


@kernel(qnn.CastOp)
def _cast(op, x):
    to = ir.numpy_dtype(_p(op, "to"))
    if get_bool(_p(op, "saturate")):
        x = _saturate(x, to)
    return x.astype(to)


def _saturate(x: np.ndarray, to: np.dtype) -> np.ndarray:
    """ONNX Cast saturate=1 for float8: clip to the finite range (inf -> max)."""
    info = ml_dtypes.finfo(to)
    return np.clip(x, info.min, info.max)


_BINARY: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    qnn.AddOp: np.add, qnn.SubOp: np.subtract, qnn.MulOp: np.multiply,
    qnn.PowOp: np.power, qnn.MaxOp: np.maximum, qnn.MinOp: np.minimum,
    qnn.AndOp: np.logical_and, qnn.OrOp: np.logical_or, qnn.EqualOp: np.equal,
    qnn.LessOp: np.less, qnn.GreaterOp: np.greater,
}

for _t, _f in _BINARY.items():
    KERNELS[_t] = (lambda f: lambda op, a, b: f(a, b))(_f)


@kernel(qnn.DivOp)
def _div(op, a, b):
    if np.issubdtype(a.dtype, np.integer):
        return (np.trunc(a / b)).astype(a.dtype)  # ONNX integer Div truncates
    return np.divide(a, b)


@kernel(qnn.WhereOp)
def _where(op, c, a, b):
    return np.where(c, a, b)


def _reduce(fn, empty: float | None = None):
    """`empty` is the value of a reduction over no elements (max: -inf, min: +inf)."""

    def run(op, x):
        axes = get_ints(_p(op, "axes")) or tuple(range(x.ndim))
        keep = get_bool(_p(op, "keepdims"), True)
        if x.size == 0 and empty is not None:
            shape = op.results[0].type.get_shape()
            if x.dtype == np.bool_:
                return np.full(shape, empty > 0, np.bool_)
            if np.issubdtype(x.dtype, np.floating):
                return np.full(shape, empty, x.dtype)
            info = np.iinfo(x.dtype)
            return np.full(shape, info.min if empty < 0 else info.max, x.dtype)
        return fn(x, axis=tuple(axes), keepdims=keep).astype(x.dtype, copy=False)

    return run


@kernel(qnn.CumSumOp)
def _cumsum(op, x):
    axis = get_int(_p(op, "axis"))
    reverse = get_bool(_p(op, "reverse"))
    y = np.flip(x, axis) if reverse else x
    if get_bool(_p(op, "exclusive")) and x.shape[axis]:  # leave each own element out
        head = np.zeros_like(np.take(y, [0], axis=axis))
        y = np.concatenate([head, np.delete(y, -1, axis=axis)], axis=axis)
    total = np.cumsum(y, axis=axis, dtype=x.dtype)
    return np.ascontiguousarray(np.flip(total, axis) if reverse else total)


KERNELS[qnn.ReduceMeanOp] = _reduce(np.mean)
KERNELS[qnn.ReduceSumOp] = _reduce(np.sum)
KERNELS[qnn.ReduceMaxOp] = _reduce(np.max, -np.inf)
KERNELS[qnn.ReduceMinOp] = _reduce(np.min, np.inf)


# -------------------------------------------------------------------- shape


@kernel(qnn.ReshapeOp)
def _reshape(op, x):
    return x.reshape(get_ints(_p(op, "shape")))


@kernel(qnn.TransposeOp)
def _transpose(op, x):
    return np.ascontiguousarray(x.transpose(get_ints(_p(op, "perm"))))


@kernel(qnn.BroadcastOp)
def _broadcast(op, x):
    shape = tuple(op.results[0].type.get_shape())
    return np.ascontiguousarray(np.broadcast_to(x, shape))


@kernel(qnn.ConcatOp)
def _concat(op, *xs):
    return np.concatenate(xs, axis=get_int(_p(op, "axis")))


@kernel(qnn.SplitOp)
def _split(op, x):
    sizes = get_ints(_p(op, "sizes"))
    return [np.ascontiguousarray(p) for p in
            np.split(x, np.cumsum(sizes)[:-1], axis=get_int(_p(op, "axis")))]


@kernel(qnn.SliceOp)
def _slice(op, x):
    index = [slice(None)] * x.ndim
    for st, en, ax, sp in zip(*(get_ints(_p(op, k)) for k in ("starts", "ends", "axes", "steps")),
                              strict=True):
        index[ax] = slice(st, en, sp)
    return np.ascontiguousarray(x[tuple(index)])


@kernel(qnn.GatherOp)
def _gather(op, x, idx):
    return np.take(x, idx, axis=get_int(_p(op, "axis")))


@kernel(qnn.GatherElementsOp)
def _gather_elements(op, x, idx):
    axis = get_int(_p(op, "axis")) % x.ndim
    # the indices may be smaller than x off the axis (torch.gather): crop x to them
    crop = tuple(slice(None) if a == axis else slice(0, d) for a, d in enumerate(idx.shape))
    idx = np.where(idx < 0, idx + x.shape[axis], idx)
    return np.ascontiguousarray(np.take_along_axis(x[crop], idx, axis=axis))


@kernel(qnn.GatherNdOp)
def _gather_nd(op, x, idx):
    b = get_int(_p(op, "batch_dims"))
    k = idx.shape[-1]
    lead = x.shape[:b]
    idx = np.where(idx < 0, idx + np.array(x.shape[b:b + k], idx.dtype), idx)
    xs = x.reshape(-1, *x.shape[b:])  # one batch axis
    ids = idx.reshape(xs.shape[0], -1, k)  # [batch, points, k]
    batch = np.arange(xs.shape[0])[:, None]
    picked = xs[(batch, *(ids[..., j] for j in range(k)))]
    return np.ascontiguousarray(picked.reshape(*lead, *idx.shape[b:-1], *x.shape[b + k:]))


@kernel(qnn.PadOp)
def _pad(op, x):
    pads = get_ints(_p(op, "pads"))
    r = x.ndim
    width = [(pads[i], pads[i + r]) for i in range(r)]
    mode = get_str(_p(op, "mode"), "constant")
    if mode == "constant":
        return np.pad(x, width, constant_values=get_float(_p(op, "value")))
    return np.pad(x, width, mode={"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode])


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


# Integer kernels (int8 layers, requantize) wrap entries of the table above; the
# Ascend ops (AscendQuant, AscendDequant, ...) add theirs.
from qcc.runtime import ascend_ops as _ascend_ops  # noqa: E402, F401
from qcc.runtime import int8 as _int8  # noqa: E402, F401
