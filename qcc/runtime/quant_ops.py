"""The kernel table's quant ops (observe, fake-quant, quantize, dequantize) and the float
element-wise steps run in place: binary ops, followers, `fuse` (see `qcc.runtime.ops`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
from xdsl.dialects.builtin import f32
from xdsl.ir import Operation

from qcc.dialects import qnn, quant
from qcc.dialects.base import get_int
from qcc.dialects.qnn_eval import EVAL, channel
from qcc.runtime.kernel_table import ELTWISE, Kernel, _p, build, is_f32, kernel
from qcc.runtime.layer_ops import _clip_bounds, activation_args, activation_of, batch_norm_affine

# -------------------------------------------------------------------- quant


@kernel(quant.ObserveOp)
def _observe(op, consts):
    return lambda x: x  # calibration replaces this kernel to collect statistics


@kernel(quant.FakeQuantOp)
def _fake_quant(op, consts):
    qtype = op.properties["qtype"]
    if len(op.operands) == 1:
        compiled = _compiled_fake_quant(op)
        return compiled if compiled is not None else Kernel(qtype.fake_quant, fresh=True)
    # range learning: parameters are values (float zero point, rounded here)
    qmin, qmax = qtype.storage_min, qtype.storage_max
    axis = qtype.axis

    def learned(x, scale, zero_point):
        shape = [1] * x.ndim
        if axis is not None:
            shape[axis] = -1
        s = np.asarray(scale, np.float32).reshape(shape if scale.size > 1 else ())
        z = np.rint(np.asarray(zero_point, np.float32)).reshape(
            shape if zero_point.size > 1 else ())
        q = np.clip(np.rint(x / s) + z, qmin, qmax)
        return ((q - z) * s).astype(np.float32)

    return Kernel(learned, fresh=True)


def _compiled_fake_quant(op) -> Kernel | None:
    """A float32 fake-quant with its parameters as attributes on the compiled kernel:
    the numbers of `fake_quant_into` (those of qtype.fake_quant but for NaN, which
    stays NaN)."""
    if ELTWISE is None or not (is_f32(op.operands[0]) and is_f32(op.output)) or \
            quant.quantized_element(op.output.type) is not None:
        return None
    qtype: Any = op.properties["qtype"]
    s = np.asarray(qtype.scales, np.float32)
    z = np.asarray(qtype.zero_points, np.float32)
    qmin, qmax, axis = qtype.storage_min, qtype.storage_max, qtype.axis
    fake_quant, copy = ELTWISE.fake_quant, ELTWISE.transpose
    params = None if axis is not None or s.size != 1 or z.size != 1 else \
        (float(s.reshape(-1)[0]), float(z.reshape(-1)[0]), float(qmin), float(qmax))

    def run(x, out=None):
        if axis is not None and (axis >= x.ndim or x.shape[axis] != s.size):
            raise ValueError(f"{qtype} does not fit an array of shape {x.shape}")
        if params is not None and out is not None and isinstance(x, np.ndarray) \
                and x.dtype == np.float32 and not x.flags.c_contiguous:
            return copy(x, None, out=out, fake_quant=params)   # a view: one pass
        return fake_quant(x, s, z, qmin, qmax, axis, out=out)

    return Kernel(run, fresh=True, takes_out=True)


def per_tensor_fake_quant(op: Any) -> tuple[float, float, float, float] | None:
    """(scale, zero point, qmin, qmax) of a float32 -> float32 fake-quant with one
    scale that the compiled fake-quant kernel runs (the values a kernel applies to its
    output as it writes it), or None for another op."""
    if not isinstance(op, quant.FakeQuantOp) or len(op.operands) != 1 or \
            _compiled_fake_quant(op) is None:
        return None
    qtype: Any = op.properties["qtype"]
    s = np.asarray(qtype.scales, np.float32).reshape(-1)
    z = np.asarray(qtype.zero_points, np.float32).reshape(-1)
    if qtype.axis is not None or s.size != 1 or z.size != 1:
        return None
    return float(s[0]), float(z[0]), float(qtype.storage_min), float(qtype.storage_max)


def fake_quant_params(qtype, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 scales and zero points of `qtype` shaped to broadcast at rank `ndim`."""
    shape = [1] * ndim
    if qtype.axis is not None:
        shape[qtype.axis] = -1
    return (np.asarray(qtype.scales, np.float32).reshape(shape),
            np.asarray(qtype.zero_points, np.float32).reshape(shape))


def fake_quant_into(s: np.ndarray, z: np.ndarray, qmin: float, qmax: float,
                    x: np.ndarray) -> np.ndarray:
    """qtype.fake_quant(x) computed in place on the float32 buffer `x` (the same
    numbers: x / s and rint in float32, integers exact in float32, (q - z) * s)."""
    np.divide(x, s, out=x)
    np.rint(x, out=x)
    np.add(x, z, out=x)
    np.clip(x, qmin, qmax, out=x)
    np.subtract(x, z, out=x)
    np.multiply(x, s, out=x)
    return x


def fold_at_compile_time(op) -> bool:
    """Ops the plan evaluates once when all their operands are constants (the
    quantized and fake-quantized weights and biases)."""
    from qcc.dialects import ascend
    return isinstance(op, (quant.FakeQuantOp, quant.QuantizeOp, ascend.WeightQuantOp))


_BINARY_IN_PLACE: dict[type, np.ufunc] = {qnn.AddOp: np.add, qnn.SubOp: np.subtract,
                                         qnn.MulOp: np.multiply, qnn.DivOp: np.divide}
"""Float element-wise ops whose `y op constant` runs in place (numpy's ufunc with
out=, the same numbers as without it)."""


@kernel(qnn.AddOp, qnn.SubOp, qnn.MulOp, qnn.DivOp, on="float")
def _binary(op, consts):
    """float32 `a op b` (broadcasting) into the step's preallocated buffer: numpy's
    ufunc with out=, the same numbers as qnn_eval's without it."""
    if len(op.operands) != 2 or not all(is_f32(v) for v in (*op.operands, op.results[0])):
        return Kernel(partial(EVAL[op.name], op), fresh=True)
    ufunc = _BINARY_IN_PLACE[type(op)]
    compiled = add_activation(op)
    if compiled is not None:
        return compiled

    def run(a, b, out=None):
        return ufunc(a, b, out=out)

    # a sum of two tensors of one type, symbolic dims allowed (patterns.dense_epilogues)
    same = op.operands[0].type == op.operands[1].type == op.results[0].type
    run.plain_add = isinstance(op, qnn.AddOp) and same
    return Kernel(run, fresh=True, takes_out=True)


def add_activation(op, then: Operation | None = None) -> Kernel | None:
    """The compiled, threaded a + b of the float32 add `op` of two operands of its
    result's static shape, followed by the activation op `then` (its only user) if
    given: numpy's sum, then the activation's numbers, in one pass (an int8 model's
    residual add and relu between two quantized convs); None when it does not apply."""
    if ELTWISE is None or not isinstance(op, qnn.AddOp) or len(op.operands) != 2:
        return None
    t = op.results[0].type
    if not all(is_f32(v) and v.type == t for v in (*op.operands, op.results[0])) \
            or any(d < 0 for d in t.get_shape()):  # type: ignore[attr-defined]
        return None
    act = None if then is None else activation_of(then)
    if then is not None and (act is None or len(then.operands) != 1
                             or not (is_f32(then.results[0]) and then.results[0].type == t)):
        return None
    kind, lo, hi = (None, 0.0, 0.0) if act is None else activation_args(act)
    add = ELTWISE.add

    def run(a, b, out=None):
        return add(a, b, kind, lo, hi, out=out)

    # patterns.dense_epilogues
    run.plain_add = act is None  # type: ignore[attr-defined]
    return Kernel(run, fresh=True, takes_out=True)


def _fits_in(c: tuple[int, ...], x: tuple[int, ...]) -> bool:
    """Whether a constant of shape `c` broadcasts against `x` without growing it,
    whatever sizes x's symbolic dims take (its dims other than 1 are x's static ones)."""
    return len(c) <= len(x) and all(
        d == 1 or d == e for d, e in zip(reversed(c), reversed(x), strict=False))


def in_place(op, params: Sequence[np.ndarray] = ()
             ) -> Callable[[np.ndarray], np.ndarray] | None:
    """For an op that can run in place on its first operand's fresh float32 buffer
    (fake-quant, relu, clip, hard_swish, hard_sigmoid, sigmoid, batch_norm, scale of
    float32 constants, add / sub / mul / div of a float32 constant; `params` the constant arrays of its other operands), the function
    doing so; None otherwise."""
    if not is_f32(op.operands[0]) or not is_f32(op.results[0]):
        return None
    if isinstance(op, qnn.BatchNormOp):
        if any(p.dtype != np.float32 for p in params):
            return None
        a, b = batch_norm_affine(op, *params)
        ndim = len(op.operands[0].type.get_shape())  # type: ignore[attr-defined]
        a, b = channel(a, ndim), channel(b, ndim)
        return lambda y: np.add(np.multiply(y, a, out=y), b, out=y)
    if isinstance(op, qnn.ScaleOp):   # x * scale (+ bias) per channel, as qnn_eval
        shape = tuple(op.operands[0].type.get_shape())  # type: ignore[attr-defined]
        if not shape or len(params) != len(op.operands) - 1 or any(
                p.dtype != np.float32 for p in params):
            return None
        axis = get_int(_p(op, "axis"), 1)
        per_channel = [channel(p, len(shape), axis) for p in params]
        if not all(_fits_in(v.shape, shape) for v in per_channel):
            return None
        s = per_channel[0]
        if len(per_channel) == 1:
            def scaled(y):
                return np.multiply(y, s, out=y)
            # for kernels applying it as they write y (qcc.runtime.blocked's means)
            scaled.channel_scale = (s, axis)  # type: ignore[attr-defined]
            return scaled
        b = per_channel[1]
        return lambda y: np.add(np.multiply(y, s, out=y), b, out=y)
    if type(op) in _BINARY_IN_PLACE:
        c = params[0] if len(params) == 1 else None
        if c is None or c.dtype != np.float32 or \
                not _fits_in(c.shape, tuple(op.operands[0].type.get_shape())):
            return None  # only `y op constant` keeping y's shape and float32
        ufunc = _BINARY_IN_PLACE[type(op)]
        return lambda y: ufunc(y, c, out=y)
    if len(op.operands) != 1:
        return None
    if isinstance(op, quant.FakeQuantOp):
        if quant.quantized_element(op.output.type) is not None or \
                op.output.type.element_type != f32:
            return None
        qtype: Any = op.properties["qtype"]
        compiled = _compiled_fake_quant(op)
        if compiled is not None:
            f = _lanewise(partial(_out_is_arg, compiled.fn), qtype.axis is None)
            fq = per_tensor_fake_quant(op)
            if fq is not None:   # for kernels fusing it (qcc.runtime.blocked)
                f.fake_quant = fq  # type: ignore[attr-defined]
            return f
        ndim = len(op.operands[0].type.get_shape())  # type: ignore[attr-defined]
        s, z = fake_quant_params(qtype, ndim)
        return partial(fake_quant_into, s, z, qtype.storage_min, qtype.storage_max)
    if isinstance(op, qnn.ReluOp):
        return _lanewise(lambda y: np.maximum(y, np.float32(0), out=y))
    if isinstance(op, qnn.ClipOp):
        lo, hi = _clip_bounds(op)
        return _lanewise(lambda y: np.clip(y, lo, hi, out=y))
    if isinstance(op, (qnn.HardSwishOp, qnn.HardSigmoidOp, qnn.SigmoidOp)) and \
            ELTWISE is not None:
        kernel = build(op, [None])
        return None if kernel is None else _lanewise(partial(_out_is_arg, kernel.fn))
    return None


def _out_is_arg(fn: Callable[..., Any], y: np.ndarray) -> Any:
    return fn(y, out=y)


def _lanewise(f: Callable[..., Any], lanewise: bool = True) -> Callable[..., Any]:
    """f, marked as computing each element from itself alone when `lanewise` (so it
    runs on any layout of the tensor: qcc.runtime.blocked)."""
    f.lanewise = lanewise  # type: ignore[attr-defined]
    return f


def fuse(producer: Kernel, followers: Sequence[Callable[[np.ndarray], np.ndarray]],
         fallbacks: Sequence[Callable[[np.ndarray], np.ndarray]]) -> Kernel:
    """A kernel running `producer`, then each follower in place on its result (the
    follower's own kernel, `fallbacks[i]`, when the result is not a writable
    contiguous float32 array)."""
    fn = producer.fn

    def apply(y):
        if not isinstance(y, np.ndarray) or y.dtype != np.float32 or \
                not y.flags.writeable or not y.flags.c_contiguous:
            for f in fallbacks:
                y = f(y)
            return y
        for f in followers:
            y = f(y)
        return y

    if producer.takes_out:
        def fused_out(*args, out=None):
            return apply(fn(*args, out=out))
        fused_out.followers = tuple(followers)  # type: ignore[attr-defined]
        return Kernel(fused_out, fresh=True, takes_out=True)
    return Kernel(lambda *args: apply(fn(*args)), fresh=True)


@kernel(quant.QuantizeOp)
def _quantize(op, consts):
    return Kernel(op.properties["qtype"].quantize, fresh=True)


@kernel(quant.DequantizeOp)
def _dequantize(op, consts):
    return Kernel(quant.quantized_element(op.input.type).dequantize, fresh=True)
