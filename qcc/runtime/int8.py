"""Integer kernels of the runtime: the layers of `qcc-realize-int8`'s IR on int8
activations with exact int32 accumulation, and requantization.

Semantics (vectorized numpy, int64 accumulation, cast to int32 at the end):

- conv / conv_transpose / dense / matmul:
  `acc = sum((x_q - z_x) * (w_q - z_w)) + b_q` in int32 (two's complement: a sum
  that leaves int32 wraps, as it would on the hardware; `qcc-realize-int8` only
  builds layers whose sums fit). Padding of a conv holds the real value 0, i.e. z_x.
- avg_pool on a quantized input returns the same quantized type:
  `y = z + round_half_to_even(sum(x_q - z) / count)`, clipped to the storage range;
  padded cells hold z (the real 0) and count as ONNX's `count_include_pad` says.
  This is QLinearAveragePool with y_scale = x_scale and y_zero_point = x_zero_point
  done in integers: onnxruntime averages dequantized floats, so where the mean is
  exactly k + 1/2 its float rounding error may tip it either way; qcc rounds exact
  ties to even, the same on every target.
- requantize of an i32 accumulator (a layer's output stage):
  `y = clip(rint(float32(acc) * float32(s_acc / s_y)) + z_y, qmin, qmax)`, the
  multiplier divided in float64 and rounded once to float32, the product in
  float32, `rint` half to even: bit-exact with onnxruntime's QLinearConv /
  QLinearMatMul output stage (MlasRequantizeOutput) given that multiplier. A
  requantize from a narrower type (8 -> 8 bits) keeps the table's rule,
  quantize(dequantize(q)), i.e. DequantizeLinear then QuantizeLinear, as the QDQ
  exporter writes it. (`requantize()` below applies the accumulator rule to any
  source, subtracting its zero point.)
- dequantize: `float32(q - z) * float32(s)` (the `quant.dequantize` kernel of
  `qcc.runtime.ops`, unchanged).

Int8 activations with int8 weights of zero point 0 (what calibration produces) run
the compiled kernels of `runtime/_int8.pyx` (SIMD, the same integers on every
instruction set) for conv and dense; everything else runs the numpy kernels, which
`QCC_REFERENCE_KERNELS=1` selects everywhere.

Registration: each layer kernel of `qcc.runtime.ops.KERNELS` is wrapped so that
integer operands go to the kernels here and float ones to the float kernel as
before; `quant.requantize` gets the rule above; `quant.quantize` of a constant (the
weights and biases of the integer IR) is computed on the first run of a plan and
reused by later runs while the constant's array is the same object (the plan holds
it), i.e. it is folded once per plan.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Callable, Sequence

import numpy as np
from xdsl.ir import Operation

from qcc.dialects import qnn, quant
from qcc.dialects.base import get_bool, get_int, get_ints
from qcc.dialects.quant import UniformQuantizedType
from qcc.runtime.kernels import _pad_or_crop, _pad_spatial, _pool_pads, _windows
from qcc.runtime.ops import KERNELS


def _compiled():
    if os.environ.get("QCC_REFERENCE_KERNELS") == "1":
        return None
    try:
        from qcc.runtime import _int8
    except ImportError:  # an uncompiled checkout: the numpy kernels still run
        return None
    return _int8


_C = _compiled()

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


# ------------------------------------------------------------ parameters


def zero_points(qtype: UniformQuantizedType, ndim: int) -> np.ndarray:
    """Zero points as int64, shaped to broadcast against an array of rank `ndim`."""
    z = np.asarray(qtype.zero_points, np.int64)
    if qtype.axis is None:
        return z.reshape(())
    shape = [1] * ndim
    shape[qtype.axis] = -1
    return z.reshape(shape)


def _centered(q: np.ndarray, z) -> np.ndarray:
    """q - z in int64."""
    return q.astype(np.int64) - z


def _to_int32(acc: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(acc.astype(np.int32))


# ------------------------------------------------------ numpy kernels


def conv(x, w, b, z_x, z_w, strides, pads, dilations, groups) -> np.ndarray:
    """int32 conv: x [N, C, *S], w [O, C/groups, *K], b int [O] or None; z_x a
    scalar, z_w a scalar or [O, 1, ...] (broadcasting against w)."""
    d = w.ndim - 2
    xs = _pad_spatial(_centered(x, z_x), pads)  # padded cells are z_x - z_x = 0
    ws = _centered(w, z_w)
    win = _windows(xs, w.shape[2:], strides, dilations)  # N, C, *out, *K
    n, c = x.shape[:2]
    o = w.shape[0]
    cg, og = c // groups, o // groups
    ys = []
    for g in range(groups):
        cols = np.moveaxis(win[:, g * cg:(g + 1) * cg], 1, 1 + d).reshape(
            n, *win.shape[2:2 + d], -1)
        ys.append(cols @ ws[g * og:(g + 1) * og].reshape(og, -1).T)
    y = np.moveaxis(np.concatenate(ys, axis=-1), -1, 1)
    if b is not None:
        y = y + np.asarray(b, np.int64).reshape((1, -1) + (1,) * d)
    return _to_int32(y)


def conv_transpose(x, w, b, z_x, z_w, strides, pads, dilations, groups,
                   output_padding) -> np.ndarray:
    """int32 transposed conv: x [N, C, *S], w [C, O/groups, *K]; z_w a scalar or
    [1, O/groups, 1, ...]."""
    d = w.ndim - 2
    xs, ws = _centered(x, z_x), _centered(w, z_w)
    n, c = x.shape[:2]
    og, k = w.shape[1], w.shape[2:]
    cg = c // groups
    full = [s * (i - 1) + (kk - 1) * dl + 1 + op for i, s, kk, dl, op in
            zip(x.shape[2:], strides, k, dilations, output_padding, strict=True)]
    y = np.zeros((n, og * groups, *full), np.int64)
    for g in range(groups):
        contrib = np.tensordot(xs[:, g * cg:(g + 1) * cg], ws[g * cg:(g + 1) * cg],
                               axes=([1], [0]))  # N, *in, O, *K
        contrib = np.moveaxis(contrib, 1 + d, 1)
        for kidx in np.ndindex(*k):
            index = [slice(None), slice(g * og, (g + 1) * og)]
            for j in range(d):
                start = kidx[j] * dilations[j]
                index.append(slice(start, start + strides[j] * (x.shape[2 + j] - 1) + 1,
                                   strides[j]))
            y[tuple(index)] += contrib[(slice(None),) * (2 + d) + kidx]
    y = y[(slice(None), slice(None)) + tuple(
        slice(pads[j], full[j] - pads[j + d]) for j in range(d))]
    if b is not None:
        y = y + np.asarray(b, np.int64).reshape((1, -1) + (1,) * d)
    return _to_int32(y)


def dense(x, w, b, z_x, z_w) -> np.ndarray:
    """int32 [..., N] = (x - z_x) @ (w - z_w)^T + b; w [N, K], z_w scalar or [N, 1]."""
    y = _centered(x, z_x) @ _centered(w, z_w).T
    return _to_int32(y if b is None else y + np.asarray(b, np.int64))


def matmul(a, b, z_a, z_b) -> np.ndarray:
    """int32 (a - z_a) @ (b - z_b) with numpy matmul broadcasting."""
    return _to_int32(np.matmul(_centered(a, z_a), _centered(b, z_b)))


def avg_pool(x, qtype: UniformQuantizedType, kernel, strides, pads, ceil_mode,
             count_include_pad, dilations=None) -> np.ndarray:
    """Average of quantized x in its own type (see the module docstring)."""
    d = len(kernel)
    dil = tuple(dilations) if dilations is not None else (1,) * d
    z = zero_points(qtype, x.ndim)
    p = _pool_pads(x, kernel, strides, pads, dil, ceil_mode)
    xs = _pad_or_crop(_centered(x, z), p[:d], p[d:], 0)
    mask = np.ones((1, 1, *x.shape[2:]), np.int64)
    if count_include_pad:  # declared padding counts; cells added for ceil_mode do not
        mask = _pad_spatial(mask, pads, 1)
        mask = _pad_or_crop(mask, [0] * d, [p[i + d] - pads[i + d] for i in range(d)], 0)
    else:
        mask = _pad_or_crop(mask, p[:d], p[d:], 0)
    axes = tuple(range(-d, 0))
    total = _windows(xs, kernel, strides, dil).sum(axis=axes)
    count = np.maximum(_windows(mask, kernel, strides, dil).sum(axis=axes), 1)
    # float64 division of integers below 2^53 is correctly rounded, so rint sees
    # exact halves: round half to even of the exact quotient
    y = np.rint(total / count) + z
    return np.clip(y, qtype.storage_min, qtype.storage_max).astype(qtype.numpy_dtype)


def multiplier(source: UniformQuantizedType, target: UniformQuantizedType,
               ndim: int) -> np.ndarray:
    """float32(s_source / s_target), divided in float64, shaped to broadcast."""
    def scales(q: UniformQuantizedType) -> np.ndarray:
        s = np.asarray(q.scales, np.float64)
        if q.axis is None:
            return s.reshape(())
        shape = [1] * ndim
        shape[q.axis] = -1
        return s.reshape(shape)

    return (scales(source) / scales(target)).astype(np.float32)


def requantize(q: np.ndarray, source: UniformQuantizedType,
               target: UniformQuantizedType) -> np.ndarray:
    """clip(rint(float32(q - z_q) * float32(s_q / s_y)) + z_y, qmin, qmax)."""
    v = _centered(q, zero_points(source, q.ndim)).astype(np.float32)
    r = np.rint(v * multiplier(source, target, q.ndim)).astype(np.float64)
    r = r + zero_points(target, q.ndim)
    return np.clip(r, target.storage_min, target.storage_max).astype(target.numpy_dtype)


# ----------------------------------------------- compiled fast path


def _fits_int32(k: int) -> bool:
    """The compiled kernels' u8 x s8 sums of length k cannot overflow int32."""
    return k * 255 * 128 <= INT32_MAX


def pack(w: np.ndarray, b: np.ndarray | None, z_x: int) -> tuple[np.ndarray, np.ndarray]:
    """Packed weights and offsets of the compiled kernels for int8 w [O, ...] (zero
    point 0): w flattened per output channel and zero-padded to the kernels' column
    length, and off[o] = b[o] - (z_x + 128) * sum(w[o]) (see runtime/_int8.pyx)."""
    assert _C is not None
    flat = w.reshape(w.shape[0], -1)
    k = flat.shape[1]
    wp = np.zeros((flat.shape[0], _C.padded_length(k)), np.int8)
    wp[:, :k] = flat
    off = -(z_x + 128) * flat.astype(np.int64).sum(axis=1)
    if b is not None:
        off = off + np.asarray(b, np.int64)
    if off.min(initial=0) < INT32_MIN or off.max(initial=0) > INT32_MAX:
        raise OverflowError("bias and weight sums do not fit int32")
    return wp, off.astype(np.int32)


_PACKED: weakref.WeakKeyDictionary[Operation, tuple] = weakref.WeakKeyDictionary()


def _packed(op: Operation, w: np.ndarray, b: np.ndarray | None, z_x: int):
    """`pack` once per op and weight/bias arrays (constants: the same each run)."""
    hit = _PACKED.get(op)
    if hit is not None and hit[0] is w and hit[1] is b:
        return hit[2]
    packed = pack(w, b, z_x)
    _PACKED[op] = (w, b, packed)
    return packed


def _compiled_ok(x: np.ndarray, w: np.ndarray, qw: UniformQuantizedType, k: int) -> bool:
    return (_C is not None and x.dtype == np.int8 and w.dtype == np.int8
            and not any(qw.zero_points) and k > 0 and _fits_int32(k))


# ---------------------------------------------------------- op kernels


def _qtype(value) -> UniformQuantizedType:
    q = quant.quantized_element(value.type)
    if q is None:
        raise TypeError(f"expected a quantized value, got {value.type}")
    return q


def _is_int(a) -> bool:
    return isinstance(a, np.ndarray) and np.issubdtype(a.dtype, np.integer)


def conv_kernel(op, x, w, b=None):
    qx, qw = _qtype(op.operands[0]), _qtype(op.operands[1])
    strides, pads = get_ints(op.strides), get_ints(op.pads)
    dilations, groups = get_ints(op.dilations), get_int(op.groups, 1)
    k = math.prod(w.shape[1:])
    if _compiled_ok(x, w, qw, k):
        wp, off = _packed(op, w, b, qx.zero_point)
        return _C.conv(x, wp, off, w.shape[2:], qx.zero_point, strides, pads, dilations,
                       groups)
    return conv(x, w, b, qx.zero_point, zero_points(qw, w.ndim), strides, pads,
                dilations, groups)


def conv_transpose_kernel(op, x, w, b=None):
    qx, qw = _qtype(op.operands[0]), _qtype(op.operands[1])
    return conv_transpose(x, w, b, qx.zero_point, zero_points(qw, w.ndim),
                          get_ints(op.strides), get_ints(op.pads), get_ints(op.dilations),
                          get_int(op.groups, 1), get_ints(op.output_padding))


def dense_kernel(op, x, w, b=None):
    qx, qw = _qtype(op.operands[0]), _qtype(op.operands[1])
    if _compiled_ok(x, w, qw, w.shape[1]):
        wp, off = _packed(op, w, b, qx.zero_point)
        y = _C.dense(x.reshape(-1, x.shape[-1]), wp, off)
        return y.reshape(*x.shape[:-1], w.shape[0])
    return dense(x, w, b, qx.zero_point, zero_points(qw, w.ndim))


def matmul_kernel(op, a, b):
    return matmul(a, b, _qtype(op.operands[0]).zero_point, _qtype(op.operands[1]).zero_point)


def avg_pool_kernel(op, x):
    k = get_ints(op.kernel)
    return avg_pool(x, _qtype(op.operands[0]), k, get_ints(op.strides), get_ints(op.pads),
                    get_bool(op.ceil_mode), get_bool(op.count_include_pad),
                    get_ints(op.properties.get("dilations"), (1,) * len(k)))


def _requantize_kernel(other: Callable[..., object]) -> Callable[..., object]:
    """The accumulator rule for i32 sources, `other` for the rest."""

    def run(op, q):
        source = _qtype(op.input)
        if source.bits != 32:
            return other(op, q)
        return requantize(q, source, op.properties["qtype"])

    run.other = other  # type: ignore[attr-defined]
    return run


# -------------------------------------------------------- registration


def _by_dtype(integer: Callable[..., object], floating: Callable[..., object]):
    """A kernel that runs `integer` when the first operand is an integer array."""

    def run(op, x, *rest):
        return integer(op, x, *rest) if _is_int(x) else floating(op, x, *rest)

    run.__name__ = getattr(integer, "__name__", "int8_kernel")
    run.float_kernel = floating  # type: ignore[attr-defined]
    return run


_FOLDED: weakref.WeakKeyDictionary[Operation, tuple] = weakref.WeakKeyDictionary()


def fold_constants(kernel: Callable[..., object]) -> Callable[..., object]:
    """`kernel`, computed once for an op whose operands are all constants: later
    calls with the same argument arrays (a plan's constants) return the first
    result (read-only)."""

    def run(op, *args):
        if not all(isinstance(v.owner, qnn.ConstantOp) for v in op.operands):
            return kernel(op, *args)
        hit = _FOLDED.get(op)
        if hit is not None and len(hit[0]) == len(args) and all(
                a is b for a, b in zip(hit[0], args, strict=True)):
            return hit[1]
        out = kernel(op, *args)
        if isinstance(out, np.ndarray):
            out.flags.writeable = False
        _FOLDED[op] = (args, out)
        return out

    run.unfolded = kernel  # type: ignore[attr-defined]
    return run


def register(table: dict[type, Callable[..., object]] = KERNELS) -> None:
    """Install the integer kernels in the runtime's kernel table (idempotent)."""
    layers: Sequence[tuple[type, Callable[..., object]]] = (
        (qnn.ConvOp, conv_kernel), (qnn.ConvTransposeOp, conv_transpose_kernel),
        (qnn.DenseOp, dense_kernel), (qnn.MatmulOp, matmul_kernel),
        (qnn.AvgPoolOp, avg_pool_kernel))
    for op_type, integer in layers:
        current = table[op_type]
        floating = getattr(current, "float_kernel", current)
        table[op_type] = _by_dtype(integer, floating)
    current = table[quant.RequantizeOp]
    table[quant.RequantizeOp] = _requantize_kernel(getattr(current, "other", current))
    quantize = table[quant.QuantizeOp]
    table[quant.QuantizeOp] = fold_constants(getattr(quantize, "unfolded", quantize))


register()
