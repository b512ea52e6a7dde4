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

Registration: the builders at the end of this file register in the one kernel
table of `qcc.runtime.ops` for integer operands (`on="int"`); the plan picks them
from the IR's types when it is compiled, and packs constant weights then, once
(the plan owns the packed arrays). A compiled conv or dense runs the single users
after its int32 result (a `quant.requantize` to int8, or the deploy model's
`ascend.dequant` -> cast to float32 -> `ascend.quant`) as output stages of its own
step (`fused`, called when the plan fuses steps); after a conv's dequant to float32
values, a residual add, its relu and the next layer's quant join the stage too
(`residual`, `teed`: the step then also reads the add's other operand, and gives
the sum and its quant both where both are used). `quant.quantize` of a constant (the weights and
biases of the integer IR) is folded into a constant of the plan when it is compiled.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import numpy as np
from xdsl.dialects.builtin import Float16Type, Float32Type, TensorType

from qcc.dialects import ascend, qnn, quant
from qcc.dialects.base import get_bool, get_int, get_ints
from qcc.dialects.quant import UniformQuantizedType
from qcc.runtime import ascend_ops
from qcc.runtime.kernels import _pad_or_crop, _pad_spatial, _pool_pads, _windows, aligned
from qcc.runtime.ops import Kernel, kernel


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
    wp = aligned((flat.shape[0], _C.padded_length(k)), zero=True, dtype=np.int8)
    wp[:, :k] = flat
    off = -(z_x + 128) * flat.astype(np.int64).sum(axis=1)
    if b is not None:
        off = off + np.asarray(b, np.int64)
    if off.min(initial=0) < INT32_MIN or off.max(initial=0) > INT32_MAX:
        raise OverflowError("bias and weight sums do not fit int32")
    return wp, off.astype(np.int32)


def pack_lanes(w: np.ndarray) -> np.ndarray:
    """The weights of the AVX-512 VNNI conv with the output channels in the vector
    lanes (runtime/_int8_lanes.h), for int8 w [O, C, *kernel] of one group:
    wl[cb, q, j, t] = w[64*cb + j, 4*c4 + t, tap], q running over (tap, c4) (c4
    fastest: a position's words in the padded copy), zero past O and C."""
    assert _C is not None
    o, c = w.shape[:2]
    taps = math.prod(w.shape[2:])
    blocks, steps, lanes, _ = _C.lanes_shape(o, c, taps)
    full = np.zeros((blocks * lanes, steps // taps * 4, taps), np.int8)
    full[:o, :c] = w.reshape(o, c, taps)
    out = aligned((blocks, taps, steps // taps, lanes, 4), dtype=np.int8)
    out[...] = full.reshape(blocks, lanes, steps // taps, 4, taps).transpose(0, 4, 2, 1, 3)
    return out.reshape(blocks, steps, lanes, 4)


def _compiled_ok(x_type, w_type, qw: UniformQuantizedType, k: int) -> bool:
    """The compiled kernels take int8 activations and int8 weights of zero point 0
    whose sums of length k fit int32 (read from the IR's types)."""
    return (_C is not None and _storage(x_type) == np.int8 and _storage(w_type) == np.int8
            and not any(qw.zero_points) and k > 0 and _fits_int32(k))


def _storage(value_type) -> np.dtype | None:
    q = quant.quantized_element(value_type)
    return None if q is None else q.numpy_dtype


# ---------------------------------------------------------- op kernels
#
# Builders (see `qcc.runtime.ops`): run once per op when a plan is compiled, they
# decode the op's qtypes and attributes and pack its constant weights; the plan
# keeps what they return.


def _qtype(value) -> UniformQuantizedType:
    q = quant.quantized_element(value.type)
    if q is None:
        raise TypeError(f"expected a quantized value, got {value.type}")
    return q


def _packer(z_x: int, w_const, b_const, n_operands: int, lanes: bool = False):
    """pack() of the weights and bias (and, with `lanes`, pack_lanes() of the
    weights): once now when they are constants of the plan, else on every call."""
    def packs(w, b):
        return (*pack(w, b, z_x), pack_lanes(w) if lanes else None)

    if w_const is not None and (n_operands < 3 or b_const is not None):
        packed = packs(w_const, b_const)
        return lambda w, b: packed
    return packs


@kernel(qnn.ConvOp, on="int")
def _conv_int(op, consts):
    fast = _conv_compiled(op, consts)
    if fast is not None:
        return fast
    qw = _qtype(op.operands[1])
    strides, pads = get_ints(op.strides), get_ints(op.pads)
    dilations, groups = get_ints(op.dilations), get_int(op.groups, 1)
    z_x = _qtype(op.operands[0]).zero_point
    z_w = zero_points(qw, len(op.operands[1].type.get_shape()))

    def exact(x, w, b=None):
        return conv(x, w, b, z_x, z_w, strides, pads, dilations, groups)

    return Kernel(exact, fresh=True)


class _Packed:
    """A compiled layer's step: its packed weights (`packed(w, b)`) and its output
    stage (None: the int32 accumulator; see `fused`). `out` names what the stage
    writes, `channel` the result's output channel axis, `dequant` the scale and relu
    of a fused ascend.dequant (for the stages that follow it)."""

    def __init__(self, run: Callable[..., np.ndarray], packed: Callable[..., tuple],
                 channel: int, stage: tuple | None = None, out: str | None = None,
                 dequant: tuple | None = None) -> None:
        self.run, self.packed, self.channel = run, packed, channel
        self.stage, self.out, self.dequant = stage, out, dequant

    def __call__(self, x, w, b=None) -> np.ndarray:
        return self.run(x, self.packed(w, b), self.stage)

    def staged(self, stage: tuple, out: str, dequant: tuple | None = None) -> _Packed:
        """The same layer with output stage `stage` (the packed weights shared)."""
        return _Packed(self.run, self.packed, self.channel, stage, out, dequant)


class _Residual(_Packed):
    """A compiled conv whose dequant stage (float32 values) is followed by a
    residual add (`_C.residual_stage`), its step then reading the add's other
    operand last, after the conv's own operands; or by an ascend.quant that is not
    the only user of those values (a tee: no add, the step gives both). `after` =
    (res_first, or None without an add; the relu after the add; the quant
    parameters or None; whether the float32 values are kept); `out` "sum", "int8" or
    "both" (the tuple of the two)."""

    def __init__(self, base: _Packed, after: tuple) -> None:
        super().__init__(base.run, base.packed, base.channel, base.stage,
                         "both" if after[2] is not None and after[3]
                         else "int8" if after[2] is not None else "sum", base.dequant)
        self.after = after
        res_first, relu, q, keep = after
        # made (and checked) once, when the plan is compiled; a call gives its residual
        self.full_stage = _C.residual_stage(base.stage, None, bool(res_first), relu, q, keep)

    def __call__(self, x, *rest):
        if self.after[0] is None:
            return self.run(x, self.packed(*rest), self.full_stage)
        *wb, skip = rest
        return self.run(x, self.packed(*wb), _C.with_residual(self.full_stage, skip))

    def then(self, relu: bool | None = None, quant: tuple | None = None,
             keep_sum: bool = True) -> _Residual:
        res_first, relu0, _, _ = self.after
        return _Residual(self, (res_first, relu0 if relu is None else relu, quant, keep_sum))


def _float_dequant(step_fn: Callable[..., object]) -> bool:
    """Whether `step_fn` is a compiled conv with a dequant stage writing float32
    values (float32, or float16 values as float32), channels on axis 1."""
    return (type(step_fn) is _Packed and step_fn.channel == 1 and step_fn.dequant is not None
            and step_fn.out in ("float32", "float16_as_float32") and _C is not None)


def residual(step_fn: Callable[..., object], add, at: int) -> _Residual | None:
    """The compiled conv `step_fn` with a dequant stage writing float32 values
    followed by the float32 `add` of its result (operand `at` of the add) and
    another tensor of the same type, the sum computed in the conv's output pass (its
    step then reads the other operand last); None when that does not apply."""
    if not _float_dequant(step_fn) or not isinstance(add, qnn.AddOp) \
            or len(add.operands) != 2:
        return None
    t = add.results[0].type
    if not (isinstance(t, TensorType) and isinstance(t.element_type, Float32Type)
            and t.has_static_shape() and all(v.type == t for v in add.operands)):
        return None
    return _Residual(step_fn, (at == 1, False, None, True))  # type: ignore[arg-type]


def teed(step_fn: Callable[..., object], follower) -> _Residual | None:
    """`step_fn` (a `residual` conv keeping its float32 sum, or a conv with a dequant
    stage writing float32 values) also writing the ascend.quant `follower` of those
    values, its second result; None otherwise."""
    if not isinstance(follower, ascend.QuantOp):
        return None
    if isinstance(step_fn, _Residual) and step_fn.out == "sum":
        return step_fn.then(quant=ascend_ops.quant_params(follower))
    if _float_dequant(step_fn):
        return _Residual(step_fn, (None, False, ascend_ops.quant_params(follower),  # type: ignore[arg-type]
                                   True))
    return None


def _conv_compiled(op, consts) -> Kernel | None:
    """The compiled int32 conv of `op` (None when its types do not allow it)."""
    qx, qw = _qtype(op.operands[0]), _qtype(op.operands[1])
    strides, pads = get_ints(op.strides), get_ints(op.pads)
    dilations, groups = get_ints(op.dilations), get_int(op.groups, 1)
    z_x = qx.zero_point
    w_shape = tuple(op.operands[1].type.get_shape())
    if not _compiled_ok(op.operands[0].type, op.operands[1].type, qw,
                        math.prod(w_shape[1:])):
        return None
    packed = _packer(z_x, consts[1], consts[2] if len(consts) > 2 else None,
                     len(op.operands), lanes=groups == 1)
    kshape, conv_c = w_shape[2:], _C.conv

    def run(x, packs, stage):
        wp, off, wl = packs
        return conv_c(x, wp, off, kshape, z_x, strides, pads, dilations, groups, stage, wl)

    return Kernel(_Packed(run, packed, 1), fresh=True)


@kernel(qnn.ConvTransposeOp, on="int")
def _conv_transpose_int(op, consts):
    qx, qw = _qtype(op.operands[0]), _qtype(op.operands[1])
    z_x, z_w = qx.zero_point, zero_points(qw, len(op.operands[1].type.get_shape()))
    attrs = (get_ints(op.strides), get_ints(op.pads), get_ints(op.dilations),
             get_int(op.groups, 1), get_ints(op.output_padding))
    return Kernel(lambda x, w, b=None: conv_transpose(x, w, b, z_x, z_w, *attrs), fresh=True)


@kernel(qnn.DenseOp, on="int")
def _dense_int(op, consts):
    fast = _dense_compiled(op, consts)
    if fast is not None:
        return fast
    qx, qw = _qtype(op.operands[0]), _qtype(op.operands[1])
    z_x, z_w = qx.zero_point, zero_points(qw, len(op.operands[1].type.get_shape()))
    return Kernel(lambda x, w, b=None: dense(x, w, b, z_x, z_w), fresh=True)


def _dense_compiled(op, consts) -> Kernel | None:
    """The compiled int32 dense of `op` (None when its types do not allow it)."""
    qx, qw = _qtype(op.operands[0]), _qtype(op.operands[1])
    w_shape = tuple(op.operands[1].type.get_shape())
    z_x = qx.zero_point
    if not _compiled_ok(op.operands[0].type, op.operands[1].type, qw, w_shape[1]):
        return None
    packed = _packer(z_x, consts[1], consts[2] if len(consts) > 2 else None,
                     len(op.operands))
    n, dense_c = w_shape[0], _C.dense

    def run(x, packs, stage):
        wp, off, _ = packs
        return dense_c(x.reshape(-1, x.shape[-1]), wp, off, stage).reshape(*x.shape[:-1], n)

    return Kernel(_Packed(run, packed, len(op.results[0].type.get_shape()) - 1), fresh=True)


def fused(step_fn: Callable[..., object], follower, consts: list) -> _Packed | None:
    """The compiled int8 layer step `step_fn` with `follower` (the only user of its
    result; `consts` its operands' constants) as its output stage, computed in the
    same pass; None when `step_fn` is not such a step or `follower` cannot be a stage.
    Stages, each with the integers or floats of the follower's own kernel:
    1. int32 -> `quant.requantize` to per-tensor int8 (accumulator zero point 0,
       per-channel scales along the output channels);
    2. int32 -> `ascend.dequant` with a constant float32 deq_scale (one, or one per
       output channel) to float16 or float32;
    3. dequant to float16 -> `qnn.cast` to float32 (float16 values in float32);
    4. dequant (float16, float16 as float32, or float32) -> `ascend.quant` (which
       casts its input to float16 first: the same float16 value)."""
    if not isinstance(step_fn, _Packed):
        return None
    if isinstance(step_fn, _Residual):   # the sum's relu, then its quant
        if step_fn.out != "sum":
            return None
        if isinstance(follower, qnn.ReluOp) and not step_fn.after[1] and \
                follower.results[0].type == follower.operands[0].type:
            return step_fn.then(relu=True)
        if isinstance(follower, ascend.QuantOp):
            return step_fn.then(quant=ascend_ops.quant_params(follower), keep_sum=False)
        return None
    if step_fn.out is None and isinstance(follower, quant.RequantizeOp):
        return _requantized(step_fn, follower)
    if step_fn.out is None and isinstance(follower, ascend.DequantOp):
        return _dequantized(step_fn, follower, consts)
    if step_fn.dequant is None:
        return None
    scale, relu = step_fn.dequant
    if (step_fn.out == "float16" and isinstance(follower, qnn.CastOp)
            and isinstance(follower.properties["to"], Float32Type)):
        return step_fn.staged(_C.dequant_stage(scale, relu, "float16_as_float32"),
                              "float16_as_float32", step_fn.dequant)
    if isinstance(follower, ascend.QuantOp):
        params = ascend_ops.quant_params(follower)
        return step_fn.staged(_C.dequant_stage(scale, relu, "int8", params), "int8")
    return None


def _requantized(step_fn: _Packed, req) -> _Packed | None:
    """The layer requantized to int8 in its own pass: `_requantize`'s integers
    (float32(acc) * float32 multiplier, rint half to even, + z_y, clip)."""
    source, target = _qtype(req.input), req.properties["qtype"]
    ndim = len(req.input.type.get_shape())
    if (source.bits != 32 or any(source.zero_points) or target.axis is not None
            or target.numpy_dtype != np.int8 or source.axis not in (None, step_fn.channel)):
        return None
    m = np.ascontiguousarray(multiplier(source, target, ndim).reshape(-1), np.float32)
    stage = _C.requantize_stage(m, int(target.zero_point), int(target.storage_min),
                                int(target.storage_max))
    return step_fn.staged(stage, "requantize")


def _dequantized(step_fn: _Packed, deq, consts: list) -> _Packed | None:
    """The layer's ascend.dequant in its own pass (float32 deq_scale, constant)."""
    if len(consts) < 2 or consts[1] is None:
        return None
    packed = np.asarray(consts[1])
    scale = ascend.unpack_deq_scale(packed).scale if packed.dtype == np.uint64 else packed
    ndim = len(deq.operands[0].type.get_shape())
    shape = deq.operands[0].type.get_shape()
    axis = get_int(deq.properties["axis"], 1) % max(ndim, 1)
    if scale.dtype != np.float32:  # the float16 (v100) form: float16 arithmetic
        return None
    if scale.size != 1 and (axis != step_fn.channel or shape[axis] != scale.size):
        return None
    dtype = deq.properties["dtype"]
    out = "float16" if isinstance(dtype, Float16Type) else "float32"
    scale = np.ascontiguousarray(scale.reshape(-1), np.float32)
    relu = get_bool(deq.properties["relu_flag"])
    return step_fn.staged(_C.dequant_stage(scale, relu, out), out, (scale, relu))


@kernel(qnn.MatmulOp, on="int")
def _matmul_int(op, consts):
    z_a, z_b = _qtype(op.operands[0]).zero_point, _qtype(op.operands[1]).zero_point
    return Kernel(lambda a, b: matmul(a, b, z_a, z_b), fresh=True)


@kernel(qnn.AvgPoolOp, on="int")
def _avg_pool_int(op, consts):
    qx = _qtype(op.operands[0])
    k = get_ints(op.kernel)
    attrs = (k, get_ints(op.strides), get_ints(op.pads), get_bool(op.ceil_mode),
             get_bool(op.count_include_pad),
             get_ints(op.properties.get("dilations"), (1,) * len(k)))
    return Kernel(lambda x: avg_pool(x, qx, *attrs), fresh=True)


@kernel(quant.RequantizeOp)
def _requantize(op, consts):
    """The accumulator rule for i32 sources; quantize(dequantize(q)) for the rest."""
    source, target = _qtype(op.input), op.properties["qtype"]
    if source.bits != 32:
        return Kernel(lambda q: target.quantize(source.dequantize(q)), fresh=True)
    ndim = len(op.input.type.get_shape())
    m = multiplier(source, target, ndim)
    if any(source.zero_points) or target.bits > 16:
        return Kernel(lambda q: requantize(q, source, target), fresh=True)
    # float32 throughout: q - 0 converts exactly as through int64, and with a target
    # of at most 16 bits rint(v) + z is exact in float32 wherever the clip keeps it
    z = zero_points(target, ndim).astype(np.float32)
    lo, hi, dtype = np.float32(target.storage_min), np.float32(target.storage_max), \
        target.numpy_dtype

    def fast(q):
        v = q.astype(np.float32)
        np.multiply(v, m, out=v)
        np.rint(v, out=v)
        np.add(v, z, out=v)
        np.clip(v, lo, hi, out=v)
        return v.astype(dtype)

    return Kernel(fast, fresh=True)
