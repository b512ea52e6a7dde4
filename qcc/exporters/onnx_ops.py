"""ONNX exports of the qnn ops: `EXPORTS[op class](writer)` appends the nodes of one
op (`qcc.exporters.onnx.OpWriter`). The inverse of `qcc.frontends.onnx_ops` and
`onnx_shape_ops`, for opsets 13 and newer (the run-time shape ops: `onnx_dynamic`):

| qnn | ONNX |
|---|---|
| conv, conv_transpose | Conv, ConvTranspose (kernel_shape from the weight) |
| dense | Gemm(transB=1) for a 2-D input, else MatMul by the transposed weight (+ Add) |
| matmul | MatMul |
| max_pool, avg_pool, global_avg_pool | MaxPool, AveragePool (dilations: opset 19), GlobalAveragePool |
| batch_norm | BatchNormalization |
| scale | Mul (+ Add) by the scale (bias) reshaped to [C, 1, ...] |
| layer_norm | LayerNormalization (opset 17; before, its ReduceMean/Sqrt/Div expansion) |
| softmax, lrn | Softmax (opset-13 meaning: one axis), LRN |
| relu, sigmoid, tanh, erf, sqrt, exp, log, abs, neg, reciprocal, floor, not, identity | the op of the same name |
| dropout | Identity (inference) |
| leaky_relu, hard_sigmoid, prelu | LeakyRelu, HardSigmoid, PRelu |
| clip | Clip with min/max inputs (an infinite bound is left out) |
| hard_swish | HardSwish (opset 14; before, x * HardSigmoid(x, 1/6, 1/2)) |
| gelu | Gelu (opset 20); before, the Erf (or Tanh) expansion exporters write |
| cast | Cast (saturate for float8 targets) |
| add ... greater, where | the element-wise op of the same name, Where |
| reduce_* | ReduceMean/Sum/Max/Min (axes an attribute or an input by opset) |
| reshape, broadcast | Reshape, Expand with an int64 shape initializer |
| transpose, concat, split, slice, gather, pad | Transpose, Concat, Split, Slice, Gather, Pad |
| gather_elements, gather_nd, cumsum | GatherElements, GatherND, CumSum (axis an int64 input) |
| argmax | ArgMax |
| resize | Resize with scales (when the op keeps them) or sizes, roi, and the attributes |
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from qcc import ir
from qcc.dialects import qnn
from qcc.dialects.base import DYN as DYNAMIC_INDEX
from qcc.dialects.base import get_bool, get_float, get_int, get_ints, get_str
from qcc.exporters.onnx_base import EXPORTS, OpWriter, Unsupported, export, onnx_dtype

# ------------------------------------------------------------------- helpers


def _ints(w: OpWriter, key: str, default: Sequence[int] = ()) -> list[int]:
    return list(get_ints(w.prop(key), default))


def _present(*names: str) -> list[str]:
    """Inputs with trailing absent optionals dropped (inner ones stay "")."""
    out = list(names)
    while out and not out[-1]:
        out.pop()
    return out


def reduce_node(w: OpWriter, op_type: str, x: str, axes: Sequence[int], keepdims: bool,
                out: str, suffix: str | None = None) -> None:
    """ReduceX over `axes` (all when empty): an input from opset 13 (ReduceSum) or
    18 (the others), an attribute before."""
    attrs: dict[str, Any] = {"keepdims": int(keepdims)}
    inputs = [x]
    if axes:
        if op_type == "ReduceSum" or w.opset >= 18:
            inputs.append(w.ints(axes, f"{suffix or 'reduce'}_axes"))
        else:
            attrs["axes"] = [int(a) for a in axes]
    w.node(op_type, inputs, [out], suffix=suffix, **attrs)


def _per_channel(w: OpWriter, value, shape: list[int], tag: str) -> str:
    """A [C] operand reshaped to `shape` (a derived initializer when constant)."""
    if len(shape) == 1:
        return w.tensor(value)
    name = w.derived(value, f"reshape{shape}", lambda a: np.ascontiguousarray(a).reshape(shape))
    if name is None:
        name = w.tmp(tag)
        w.node("Reshape", [w.tensor(value), w.ints(shape, f"{tag}_shape")], [name],
               suffix=f"{tag}_reshape")
    return name


def _float_const(w: OpWriter, value: float, like, tag: str) -> str:
    dtype = w.dtype(like)
    if not np.issubdtype(dtype, np.floating) and dtype.kind != "V":
        dtype = np.dtype(np.float32)
    return w.const(np.asarray(value, np.float64).astype(dtype), tag)


# -------------------------------------------------------------------- layers


def _conv_attrs(w: OpWriter) -> dict[str, Any]:
    op = w.op
    assert isinstance(op, qnn.ConvOp | qnn.ConvTransposeOp)
    return {"kernel_shape": list(w.shape(op.weight)[2:]), "strides": _ints(w, "strides"),
            "pads": _ints(w, "pads"), "dilations": _ints(w, "dilations"),
            "group": get_int(w.prop("groups"), 1)}


@export(qnn.ConvOp)
def _conv(w: OpWriter) -> None:
    op = w.op
    assert isinstance(op, qnn.ConvOp)
    w.node("Conv", _present(w.input(0), w.tensor(op.weight), w.tensor(op.bias)), [w.out()],
           **_conv_attrs(w))


@export(qnn.ConvTransposeOp)
def _conv_transpose(w: OpWriter) -> None:
    op = w.op
    assert isinstance(op, qnn.ConvTransposeOp)
    attrs = _conv_attrs(w)
    attrs["output_padding"] = _ints(w, "output_padding")
    w.node("ConvTranspose", _present(w.input(0), w.tensor(op.weight), w.tensor(op.bias)),
           [w.out()], **attrs)


@export(qnn.DenseOp)
def _dense(w: OpWriter) -> None:
    op = w.op
    assert isinstance(op, qnn.DenseOp)
    x, rank = w.input(0), len(w.shape(op.input))
    bias = w.tensor(op.bias)
    if rank == 2:
        w.node("Gemm", _present(x, w.tensor(op.weight), bias), [w.out()], transB=1)
        return
    weight = w.derived(op.weight, "T", lambda a: np.ascontiguousarray(a.T))
    if weight is None:
        weight = w.tmp("weight_t")
        w.node("Transpose", [w.tensor(op.weight)], [weight], suffix="weight_transpose",
               perm=[1, 0])
    if not bias:
        w.node("MatMul", [x, weight], [w.out()])
        return
    y = w.tmp("matmul")
    w.node("MatMul", [x, weight], [y])
    w.node("Add", [y, bias], [w.out()], suffix="bias")


@export(qnn.MatmulOp)
def _matmul(w: OpWriter) -> None:
    w.node("MatMul", [w.input(0), w.input(1)], [w.out()])


def _pool_attrs(w: OpWriter) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "kernel_shape": _ints(w, "kernel"), "strides": _ints(w, "strides"),
        "pads": _ints(w, "pads"), "ceil_mode": int(get_bool(w.prop("ceil_mode")))}
    dilations = _ints(w, "dilations")
    if dilations and any(d != 1 for d in dilations):
        attrs["dilations"] = dilations
    return attrs


@export(qnn.MaxPoolOp)
def _max_pool(w: OpWriter) -> None:
    w.node("MaxPool", [w.input(0)], [w.out()], **_pool_attrs(w))


@export(qnn.AvgPoolOp)
def _avg_pool(w: OpWriter) -> None:
    attrs = _pool_attrs(w)
    if "dilations" in attrs and w.opset < 19:
        raise Unsupported("dilated AveragePool needs opset 19")
    w.node("AveragePool", [w.input(0)], [w.out()],
           count_include_pad=int(get_bool(w.prop("count_include_pad"))), **attrs)


@export(qnn.GlobalAvgPoolOp)
def _global_avg_pool(w: OpWriter) -> None:
    w.node("GlobalAveragePool", [w.input(0)], [w.out()])


# ------------------------------------------------------------- normalization


@export(qnn.BatchNormOp)
def _batch_norm(w: OpWriter) -> None:
    w.node("BatchNormalization", [w.input(i) for i in range(5)], [w.out()],
           epsilon=get_float(w.prop("epsilon"), 1e-5))


@export(qnn.ScaleOp)
def _scale(w: OpWriter) -> None:
    op = w.op
    assert isinstance(op, qnn.ScaleOp)
    rank = len(w.shape(op.input))
    axis = get_int(w.prop("axis"), 1) % rank
    shape = [w.shape(op.input)[axis]] + [1] * (rank - 1 - axis)
    scale = _per_channel(w, op.scale, shape, "scale")
    if op.bias is None:
        w.node("Mul", [w.input(0), scale], [w.out()])
        return
    y = w.tmp("scaled")
    w.node("Mul", [w.input(0), scale], [y])
    w.node("Add", [y, _per_channel(w, op.bias, shape, "bias")], [w.out()], suffix="bias")


@export(qnn.LayerNormOp)
def _layer_norm(w: OpWriter) -> None:
    op = w.op
    assert isinstance(op, qnn.LayerNormOp)
    rank = len(w.shape(op.input))
    axis = get_int(w.prop("axis"), -1) % rank
    eps = get_float(w.prop("epsilon"), 1e-5)
    scale, bias = w.tensor(op.scale), w.tensor(op.bias)
    if w.opset >= 17:
        w.node("LayerNormalization", _present(w.input(0), scale, bias), [w.out()],
               axis=axis, epsilon=eps)
        return
    x, axes = w.input(0), list(range(axis, rank))
    mean, d, sq, var, ve, std, norm = (w.tmp(t) for t in (
        "mean", "centered", "square", "var", "var_eps", "std", "normalized"))
    reduce_node(w, "ReduceMean", x, axes, True, mean, suffix="mean")
    w.node("Sub", [x, mean], [d], suffix="centered")
    w.node("Mul", [d, d], [sq], suffix="square")
    reduce_node(w, "ReduceMean", sq, axes, True, var, suffix="var")
    w.node("Add", [var, _float_const(w, eps, op.input, "epsilon")], [ve], suffix="var_eps")
    w.node("Sqrt", [ve], [std], suffix="std")
    w.node("Div", [d, std], [norm], suffix="normalized")
    if not bias:
        w.node("Mul", [norm, scale], [w.out()], suffix="scale")
        return
    y = w.tmp("scaled")
    w.node("Mul", [norm, scale], [y], suffix="scale")
    w.node("Add", [y, bias], [w.out()], suffix="bias")


@export(qnn.SoftmaxOp)
def _softmax(w: OpWriter) -> None:
    rank = len(w.shape(w.op.operands[0]))
    w.node("Softmax", [w.input(0)], [w.out()], axis=get_int(w.prop("axis"), -1) % rank)


@export(qnn.LrnOp)
def _lrn(w: OpWriter) -> None:
    w.node("LRN", [w.input(0)], [w.out()], size=get_int(w.prop("size"), 5),
           alpha=get_float(w.prop("alpha"), 1e-4), beta=get_float(w.prop("beta"), 0.75),
           bias=get_float(w.prop("bias"), 1.0))


# --------------------------------------------------------------- activations

UNARY = {
    qnn.ReluOp: "Relu", qnn.SigmoidOp: "Sigmoid", qnn.TanhOp: "Tanh", qnn.ErfOp: "Erf",
    qnn.SqrtOp: "Sqrt", qnn.ExpOp: "Exp", qnn.LogOp: "Log", qnn.AbsOp: "Abs",
    qnn.NegOp: "Neg", qnn.ReciprocalOp: "Reciprocal", qnn.FloorOp: "Floor",
    qnn.NotOp: "Not", qnn.IdentityOp: "Identity", qnn.DropoutOp: "Identity",
}


def _unary(op_type: str):
    def write(w: OpWriter) -> None:
        w.node(op_type, [w.input(0)], [w.out()])

    return write


_cls: type
for _cls, _op_type in UNARY.items():
    EXPORTS[_cls] = _unary(_op_type)


@export(qnn.LeakyReluOp)
def _leaky_relu(w: OpWriter) -> None:
    w.node("LeakyRelu", [w.input(0)], [w.out()], alpha=get_float(w.prop("alpha"), 0.01))


@export(qnn.HardSigmoidOp)
def _hard_sigmoid(w: OpWriter) -> None:
    w.node("HardSigmoid", [w.input(0)], [w.out()], alpha=get_float(w.prop("alpha"), 0.2),
           beta=get_float(w.prop("beta"), 0.5))


@export(qnn.HardSwishOp)
def _hard_swish(w: OpWriter) -> None:
    if w.opset >= 14:
        w.node("HardSwish", [w.input(0)], [w.out()])
        return
    gate = w.tmp("gate")
    w.node("HardSigmoid", [w.input(0)], [gate], suffix="gate", alpha=1.0 / 6, beta=0.5)
    w.node("Mul", [w.input(0), gate], [w.out()])


@export(qnn.PreluOp)
def _prelu(w: OpWriter) -> None:
    w.node("PRelu", [w.input(0), w.input(1)], [w.out()])


@export(qnn.ClipOp)
def _clip(w: OpWriter) -> None:
    """Bounds are inputs of x's type; one that clips nothing (an infinity, or the
    integer type's own limit) is left out. Integer bounds truncate, as the runtime's."""
    x = w.op.operands[0]
    dtype = w.dtype(x)
    bounds = []
    for key, default in (("min", 0.0), ("max", 6.0)):
        v = get_float(w.prop(key), default)
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            b = v if math.isinf(v) else int(v)
            if (key == "min" and b <= info.min) or (key == "max" and b >= info.max):
                bounds.append("")
            else:
                bounds.append(w.const(np.asarray(b, dtype), key))
        elif math.isinf(v):
            bounds.append("")
        else:
            bounds.append(w.const(np.asarray(v).astype(dtype), key))
    w.node("Clip", _present(w.input(0), *bounds), [w.out()])


@export(qnn.GeluOp)
def _gelu(w: OpWriter) -> None:
    """Gelu from opset 20; before, the expansion torch.onnx writes:
    x * 0.5 * (1 + Erf(x / sqrt(2))), or for "tanh"
    x * 0.5 * (1 + Tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))."""
    approximate = get_str(w.prop("approximate"), "none")
    x_value = w.op.operands[0]
    if w.opset >= 20:
        w.node("Gelu", [w.input(0)], [w.out()], approximate=approximate)
        return
    x = w.input(0)

    def k(v: float, tag: str) -> str:
        return _float_const(w, v, x_value, tag)

    inner = w.tmp("inner")
    if approximate == "tanh":
        x2, x3, cx3, s, act = (w.tmp(t) for t in ("x2", "x3", "cx3", "sum", "tanh"))
        w.node("Mul", [x, x], [x2], suffix="x2")
        w.node("Mul", [x2, x], [x3], suffix="x3")
        w.node("Mul", [x3, k(0.044715, "coeff")], [cx3], suffix="cx3")
        w.node("Add", [x, cx3], [s], suffix="sum")
        w.node("Mul", [s, k(math.sqrt(2 / math.pi), "sqrt_2_over_pi")], [inner],
               suffix="inner")
        w.node("Tanh", [inner], [act], suffix="Tanh")
    else:
        act = w.tmp("erf")
        w.node("Div", [x, k(math.sqrt(2.0), "sqrt_2")], [inner], suffix="Div")
        w.node("Erf", [inner], [act], suffix="Erf")
    one, prod = w.tmp("one_plus"), w.tmp("mul")
    w.node("Add", [act, k(1.0, "one")], [one], suffix="Add")
    w.node("Mul", [x, one], [prod], suffix="Mul")
    w.node("Mul", [prod, k(0.5, "half")], [w.out()], suffix="Mul_1")


@export(qnn.CastOp)
def _cast(w: OpWriter) -> None:
    op = w.op
    assert isinstance(op, qnn.CastOp)
    to = ir.numpy_dtype(op.to)
    attrs: dict[str, Any] = {"to": onnx_dtype(to)}
    if to.name.startswith("float8") and w.opset >= 19:
        attrs["saturate"] = int(get_bool(w.prop("saturate")))
    w.node("Cast", [w.input(0)], [w.out()], **attrs)


# -------------------------------------------------------------- element-wise

BINARY = {
    qnn.AddOp: "Add", qnn.SubOp: "Sub", qnn.MulOp: "Mul", qnn.DivOp: "Div",
    qnn.PowOp: "Pow", qnn.MaxOp: "Max", qnn.MinOp: "Min", qnn.AndOp: "And",
    qnn.OrOp: "Or", qnn.EqualOp: "Equal", qnn.LessOp: "Less", qnn.GreaterOp: "Greater",
}


def _binary(op_type: str):
    def write(w: OpWriter) -> None:
        w.node(op_type, [w.input(0), w.input(1)], [w.out()])

    return write


for _cls, _op_type in BINARY.items():
    EXPORTS[_cls] = _binary(_op_type)


@export(qnn.WhereOp)
def _where(w: OpWriter) -> None:
    w.node("Where", [w.input(0), w.input(1), w.input(2)], [w.out()])


REDUCE = {qnn.ReduceMeanOp: "ReduceMean", qnn.ReduceSumOp: "ReduceSum",
          qnn.ReduceMaxOp: "ReduceMax", qnn.ReduceMinOp: "ReduceMin"}


def _reduce(op_type: str):
    def write(w: OpWriter) -> None:
        rank = len(w.shape(w.op.operands[0]))
        axes = sorted({a % rank for a in get_ints(w.prop("axes"))}) if rank else []
        reduce_node(w, op_type, w.input(0), axes, get_bool(w.prop("keepdims"), True),
                    w.out())

    return write


for _cls, _op_type in REDUCE.items():
    EXPORTS[_cls] = _reduce(_op_type)


# --------------------------------------------------------------------- shape


@export(qnn.ReshapeOp)
def _reshape(w: OpWriter) -> None:
    shape = _ints(w, "shape")
    attrs: dict[str, Any] = {}
    if get_ints(w.prop("copy_dims")):  # its 0s copy the input's (symbolic) dims
        if any(d == 0 and i not in get_ints(w.prop("copy_dims")) for i, d in enumerate(shape)):
            raise Unsupported("a reshape both to a 0-sized dim and copying a dim")
    elif 0 in shape:  # a 0 copies the input's dim unless allowzero
        if w.opset >= 14:
            attrs["allowzero"] = 1
        else:
            src = w.shape(w.op.operands[0])
            if any(d == 0 and (i >= len(src) or src[i] != 0) for i, d in enumerate(shape)):
                raise Unsupported("a reshape to a 0-sized dim needs opset 14 (allowzero)")
    w.node("Reshape", [w.input(0), w.ints(shape, "shape")], [w.out()], **attrs)


@export(qnn.TransposeOp)
def _transpose(w: OpWriter) -> None:
    w.node("Transpose", [w.input(0)], [w.out()], perm=_ints(w, "perm"))


@export(qnn.BroadcastOp)
def _broadcast(w: OpWriter) -> None:
    shape = list(w.shape(w.op.results[0]))
    if DYNAMIC_INDEX in shape:  # -1 keeps the input's dim: Expand's 1 does the same
        shape = [1 if d == -1 else d for d in _ints(w, "shape")]
    w.node("Expand", [w.input(0), w.ints(shape, "shape")], [w.out()])


@export(qnn.ConcatOp)
def _concat(w: OpWriter) -> None:
    w.node("Concat", [w.tensor(v) for v in w.op.operands], [w.out()],
           axis=get_int(w.prop("axis")))


@export(qnn.SplitOp)
def _split(w: OpWriter) -> None:
    outs = [w.out(i) for i in range(len(w.op.results))]
    w.node("Split", [w.input(0), w.ints(_ints(w, "sizes"), "split")], outs,
           axis=get_int(w.prop("axis")))


@export(qnn.SliceOp)
def _slice(w: OpWriter) -> None:
    """qnn.slice reads starts/ends as Python slices do; each axis is written as the
    bounds ONNX clamps to the same elements (an empty one as 0:0)."""
    shape = w.shape(w.op.operands[0])
    rank = len(shape)
    starts, ends, axes, steps = (_ints(w, k) for k in ("starts", "ends", "axes", "steps"))
    out_starts, out_ends, out_axes = [], [], []
    for st, en, ax, sp in zip(starts, ends, axes, steps, strict=True):
        ax %= rank
        dim = shape[ax]
        first, stop, step = slice(st, en, sp).indices(dim)
        if not len(range(first, stop, step)):
            first, stop = 0, 0
        elif step < 0 and stop < 0:
            stop = -dim - 1  # before the first element (-1 would be the last)
        out_starts.append(first)
        out_ends.append(stop)
        out_axes.append(ax)
    w.node("Slice", [w.input(0), w.ints(out_starts, "starts"), w.ints(out_ends, "ends"),
                     w.ints(out_axes, "axes"), w.ints(steps, "steps")], [w.out()])


@export(qnn.GatherOp)
def _gather(w: OpWriter) -> None:
    w.node("Gather", [w.input(0), w.input(1)], [w.out()], axis=get_int(w.prop("axis")))


@export(qnn.GatherElementsOp)
def _gather_elements(w: OpWriter) -> None:
    w.node("GatherElements", [w.input(0), w.input(1)], [w.out()], axis=get_int(w.prop("axis")))


@export(qnn.GatherNdOp)
def _gather_nd(w: OpWriter) -> None:
    w.node("GatherND", [w.input(0), w.input(1)], [w.out()],
           batch_dims=get_int(w.prop("batch_dims")))


@export(qnn.CumSumOp)
def _cumsum(w: OpWriter) -> None:
    axis = w.const(np.array(get_int(w.prop("axis")), np.int64), "axis")
    w.node("CumSum", [w.input(0), axis], [w.out()],
           exclusive=int(get_bool(w.prop("exclusive"))), reverse=int(get_bool(w.prop("reverse"))))


@export(qnn.ArgMaxOp)
def _argmax(w: OpWriter) -> None:
    attrs: dict[str, Any] = {"axis": get_int(w.prop("axis")),
                             "keepdims": int(get_bool(w.prop("keepdims"), True))}
    if get_bool(w.prop("select_last_index")):  # an attribute since opset 12
        attrs["select_last_index"] = 1
    w.node("ArgMax", [w.input(0)], [w.out()], **attrs)


@export(qnn.PadOp)
def _pad(w: OpWriter) -> None:
    mode = get_str(w.prop("mode"), "constant")
    if mode == "wrap" and w.opset < 19:
        raise Unsupported("Pad mode 'wrap' needs opset 19")
    inputs = [w.input(0), w.ints(_ints(w, "pads"), "pads")]
    value = get_float(w.prop("value"))
    if mode == "constant" and value != 0.0:
        inputs.append(w.scalar(value, w.op.operands[0], "value"))
    w.node("Pad", inputs, [w.out()], mode=mode)


@export(qnn.ResizeOp)
def _resize(w: OpWriter) -> None:
    """Resize with `scales` when the op keeps them (ONNX then samples at those
    scales and makes floor(in * scale) elements, which must be `sizes`), else
    with `sizes`; `roi` for tf_crop_and_resize (full-rank, as qnn holds it)."""
    op = w.op
    shape = w.shape(op.operands[0])
    sizes = _ints(w, "sizes")
    ctm = get_str(w.prop("coordinate_transformation_mode"), "half_pixel")
    if ctm == "half_pixel_symmetric" and w.opset < 19:
        raise Unsupported("coordinate_transformation_mode 'half_pixel_symmetric' needs opset 19")
    antialias = get_bool(w.prop("antialias"))
    if antialias and w.opset < 18:
        raise Unsupported("antialias needs opset 18")
    scales = qnn.ResizeOp.floats(w.prop("scales"))
    roi = qnn.ResizeOp.floats(w.prop("roi"))
    if -1 in sizes:  # symbolic dims that are not resized: scale 1 there, scales elsewhere
        if scales is None:
            scales = tuple(1.0 if o == -1 else float(np.float32(o) / np.float32(d))
                           for o, d in zip(sizes, shape, strict=True))
        if any(d == DYNAMIC_INDEX and f != 1.0 for d, f in zip(shape, scales, strict=True)):
            raise Unsupported("a resize of a symbolic dim has no ONNX form")
        sizes = [d if o == -1 else o for o, d in zip(sizes, shape, strict=True)]
    roi_name = ""
    if ctm == "tf_crop_and_resize":
        r = len(shape)
        roi_name = w.const(np.asarray(roi if roi is not None else [0.0] * r + [1.0] * r,
                                      np.float32), "roi")
    if scales is not None:
        made = [d if d == DYNAMIC_INDEX else int(np.floor(np.float32(s) * np.float32(d)))
                for s, d in zip(scales, shape, strict=True)]
        if made != sizes:
            raise Unsupported(f"sizes {sizes} are not floor(in * scales) = {made}, which "
                              "ONNX Resize with scales makes")
        inputs = [w.input(0), roi_name, w.const(np.asarray(scales, np.float32), "scales")]
    else:
        inputs = [w.input(0), roi_name, "", w.ints(sizes, "sizes")]
    attrs: dict[str, Any] = {
        "mode": get_str(w.prop("mode"), "nearest"), "coordinate_transformation_mode": ctm,
        "nearest_mode": get_str(w.prop("nearest_mode"), "round_prefer_floor")}
    if w.prop("cubic_coeff_a") is not None:
        attrs["cubic_coeff_a"] = get_float(w.prop("cubic_coeff_a"))
    if w.prop("exclude_outside") is not None:
        attrs["exclude_outside"] = int(get_bool(w.prop("exclude_outside")))
    if w.prop("extrapolation_value") is not None:
        attrs["extrapolation_value"] = get_float(w.prop("extrapolation_value"))
    if antialias:
        attrs["antialias"] = 1
    w.node("Resize", inputs, [w.out()], **attrs)


__all__ = ["UNARY", "BINARY", "REDUCE", "reduce_node"]
