"""qnn ops -> TensorFlow nodes for the GraphDef exporter (`tensorflow.py`):
`HANDLERS[op name](writer, op) -> [V, ...]`, one V a result. A handler raises
ExportError for what it cannot write; the writer lists them all."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from xdsl.dialects.builtin import StringAttr
from xdsl.ir import Operation, SSAValue

from qcc import ir
from qcc.dialects import qnn
from qcc.dialects.base import get_float, get_int, get_ints
from qcc.dialects.quant import UniformQuantizedType
from qcc.exporters.onnx import ExportError
from qcc.exporters.tensorflow_base import CL, V, Writer, handler, shape_of
from qcc.frontends.tensorflow import graph_pb2 as pb


def _padding(op: Operation, x: tuple[int, ...], kernel: Sequence[int], strides: Sequence[int],
             dilations: Sequence[int]) -> dict[str, Any]:
    """VALID, SAME, or EXPLICIT (channels-last explicit_paddings) for qnn pads."""
    d = len(kernel)
    pads = list(get_ints(op.properties.get("pads"), [0] * 2 * d))
    if not any(pads):
        return {"padding": ("s", "VALID")}
    same = []
    for size, k, s, dl in zip(x[2:], kernel, strides, dilations, strict=True):
        total = max((-(-size // s) - 1) * s + (k - 1) * dl + 1 - size, 0)
        same.append((total // 2, total - total // 2))
    if pads == [b for b, _ in same] + [e for _, e in same]:
        return {"padding": ("s", "SAME")}
    explicit = [0, 0] + [v for i in range(d) for v in (pads[i], pads[i + d])] + [0, 0]
    return {"padding": ("s", "EXPLICIT"), "explicit_paddings": explicit}


def _window(op: Operation, d: int) -> tuple[list[int], list[int]]:
    strides = list(get_ints(op.properties.get("strides"), [1] * d))
    dilations = list(get_ints(op.properties.get("dilations"), [1] * d))
    return strides, dilations


def _bias(w: Writer, out: str, op: Operation, index: int) -> str:
    if len(op.operands) <= index or op.operands[index] is None:
        return out
    return w.emit("BiasAdd", [out, w.plain(op.operands[index])], "/bias",
                  data_format=("s", "NHWC"))


@handler("qnn.conv")
def _conv(w: Writer, op: Operation) -> list[V]:
    x, wt = shape_of(op.operands[0]), shape_of(op.operands[1])
    d = len(wt) - 2
    if d not in (2, 3):
        raise ExportError(f"{d}-d convolution")
    groups = get_int(op.properties.get("groups"), 1)
    strides, dilations = _window(op, d)
    pad = _padding(op, x, wt[2:], strides, dilations)
    common = {"strides": [1, *strides, 1], "dilations": [1, *dilations, 1], **pad}
    xin = w.channels_last(op.operands[0])
    if groups > 1 and groups == x[1] and wt[1] == 1 and d == 2:
        c, m = x[1], wt[0] // x[1]
        filt = w.weight(op.operands[1], (2, 3, 1, 0), (wt[2], wt[3], c, m))
        out = w.emit("DepthwiseConv2dNative", [xin, filt], **common)
    else:
        if d == 3 and (pad["padding"][1] == "EXPLICIT" or groups > 1):
            raise ExportError("Conv3D with explicit padding or groups")
        filt = w.weight(op.operands[1], (*range(2, d + 2), 1, 0))
        out = w.emit("Conv2D" if d == 2 else "Conv3D", [xin, filt], **common)
    return [V(_bias(w, out, op, 2), cl=True)]


@handler("qnn.conv_transpose")
def _conv_transpose(w: Writer, op: Operation) -> list[V]:
    wt, y = shape_of(op.operands[1]), shape_of(op.results[0])
    if len(wt) != 4 or get_int(op.properties.get("groups"), 1) != 1:
        raise ExportError("only 2-d conv_transpose without groups")
    strides, dilations = _window(op, 2)
    pads = list(get_ints(op.properties.get("pads"), [0] * 4))
    pad: dict[str, Any] = {"padding": ("s", "VALID")}
    if any(pads):
        pad = {"padding": ("s", "EXPLICIT"),
               "explicit_paddings": [0, 0, pads[0], pads[2], pads[1], pads[3], 0, 0]}
    if y[0] < 0:  # a symbolic batch: take it from the input at run time
        xs = w.emit("Shape", [w.channels_last(op.operands[0])], "/in_shape",
                    out_type=("type", pb.DT_INT32))
        batch = w.emit("StridedSlice", [xs, w.ints([0], "/b0"), w.ints([1], "/b1"),
                                        w.ints([1], "/b2")], "/batch",
                       Index=("type", pb.DT_INT32), T=("type", pb.DT_INT32))
        sizes = w.emit("ConcatV2", [batch, w.ints([y[2], y[3], y[1]], "/hwc"),
                                    w.const(np.asarray(0, np.int32), w.label(op) + "/axis")],
                       "/input_sizes",
                       T=("type", pb.DT_INT32), N=("i", 2), Tidx=("type", pb.DT_INT32))
    else:
        sizes = w.ints([y[0], y[2], y[3], y[1]], "/input_sizes")
    filt = w.weight(op.operands[1], (2, 3, 1, 0))  # [C_in, O, kh, kw] -> [kh, kw, O, C_in]
    out = w.emit("Conv2DBackpropInput", [sizes, filt, w.channels_last(op.operands[0])],
                 strides=[1, *strides, 1], dilations=[1, *dilations, 1], **pad)
    return [V(_bias(w, out, op, 2), cl=True)]


@handler("qnn.dense")
def _dense(w: Writer, op: Operation) -> list[V]:
    x, wt = shape_of(op.operands[0]), shape_of(op.operands[1])
    xin = w.plain(op.operands[0])
    if len(x) != 2:
        xin = w.emit("Reshape", [xin, w.ints([-1, x[-1]], "/flat")], "/flatten",
                     Tshape=("type", pb.DT_INT32))
    out = w.emit("MatMul", [xin, w.weight(op.operands[1], (1, 0))],
                 transpose_a=("b", False), transpose_b=("b", False))
    out = _bias(w, out, op, 2)
    if len(x) != 2:
        out = w.emit("Reshape", [out, w.target_shape([*x[:-1], wt[0]], "/unflat")], "/unflatten",
                     Tshape=("type", pb.DT_INT32))
    return [V(out)]


@handler("qnn.matmul")
def _matmul(w: Writer, op: Operation) -> list[V]:
    return [V(w.emit("BatchMatMulV2", [w.plain(op.operands[0]), w.plain(op.operands[1])]))]


@handler("qnn.max_pool", "qnn.avg_pool")
def _pool(w: Writer, op: Operation) -> list[V]:
    x = shape_of(op.operands[0])
    kernel = list(get_ints(op.properties["kernel"]))
    d = len(kernel)
    strides, dilations = _window(op, d)
    if any(dl != 1 for dl in dilations) or get_int(op.properties.get("ceil_mode"), 0):
        raise ExportError("dilated or ceil_mode pooling")
    pad = _padding(op, x, kernel, strides, dilations)
    if pad["padding"][1] == "EXPLICIT":
        raise ExportError("pooling pads that are neither VALID nor SAME")
    avg = op.name == "qnn.avg_pool"
    if avg and pad["padding"][1] == "SAME" and get_int(op.properties.get("count_include_pad"), 0):
        raise ExportError("average pooling that counts the padding")
    kind = ("AvgPool" if avg else "MaxPool") + ("3D" if d == 3 else "")
    out = w.emit(kind, [w.channels_last(op.operands[0])], ksize=[1, *kernel, 1],
                 strides=[1, *strides, 1], **pad)
    return [V(out, cl=True)]


@handler("qnn.global_avg_pool")
def _global_avg_pool(w: Writer, op: Operation) -> list[V]:
    rank = len(shape_of(op.operands[0]))
    axes = w.ints(list(range(1, rank - 1)), "/axes")
    return [V(w.emit("Mean", [w.channels_last(op.operands[0]), axes], keep_dims=("b", True),
                     Tidx=("type", pb.DT_INT32)), cl=True)]


_UNARY = {"qnn.relu": "Relu", "qnn.sigmoid": "Sigmoid", "qnn.tanh": "Tanh", "qnn.erf": "Erf",
          "qnn.sqrt": "Sqrt", "qnn.exp": "Exp", "qnn.log": "Log", "qnn.abs": "Abs",
          "qnn.neg": "Neg", "qnn.reciprocal": "Reciprocal", "qnn.floor": "Floor",
          "qnn.identity": "Identity", "qnn.dropout": "Identity"}


@handler(*_UNARY)
def _unary(w: Writer, op: Operation) -> list[V]:
    v = w.get(op.operands[0])
    return [V(w.emit(_UNARY[op.name], [v.name]), v.cl)]


@handler("qnn.leaky_relu")
def _leaky_relu(w: Writer, op: Operation) -> list[V]:
    v = w.get(op.operands[0])
    return [V(w.emit("LeakyRelu", [v.name], alpha=("f", get_float(op.properties["alpha"]))),
              v.cl)]


@handler("qnn.clip")
def _clip(w: Writer, op: Operation) -> list[V]:
    v = w.get(op.operands[0])
    lo, hi = get_float(op.properties["min"]), get_float(op.properties["max"])
    if (lo, hi) == (0.0, 6.0):
        return [V(w.emit("Relu6", [v.name]), v.cl)]
    label = w.label(op)
    return [V(w.emit("ClipByValue", [v.name, w.const(np.float32(lo), f"{label}/min"),
                                     w.const(np.float32(hi), f"{label}/max")]), v.cl)]


@handler("qnn.gelu")
def _gelu(w: Writer, op: Operation) -> list[V]:
    if op.properties.get("approximate") not in (None, StringAttr("none")):
        raise ExportError("tanh-approximate gelu")
    v = w.get(op.operands[0])
    label = w.label(op)
    # x * 0.5 * (1 + erf(x / sqrt(2)))
    t = w.emit("Mul", [v.name, w.const(np.float32(1 / np.sqrt(2)), f"{label}/rsqrt2")], "/scaled")
    e = w.emit("Erf", [t], "/erf")
    e1 = w.emit("AddV2", [e, w.const(np.float32(1), f"{label}/one")], "/erf1")
    h = w.emit("Mul", [v.name, w.const(np.float32(0.5), f"{label}/half")], "/half_x")
    return [V(w.emit("Mul", [h, e1]), v.cl)]


@handler("qnn.softmax")
def _softmax(w: Writer, op: Operation) -> list[V]:
    rank = len(shape_of(op.operands[0]))
    axis = get_int(op.properties.get("axis"), -1) % rank
    v = w.get(op.operands[0])
    if v.cl and axis == 1:
        return [V(w.emit("Softmax", [v.name]), cl=True)]
    x = w.plain(op.operands[0])
    if axis == rank - 1:
        return [V(w.emit("Softmax", [x]))]
    perm = [d for d in range(rank) if d != axis] + [axis]
    t = w.emit("Transpose", [x, w.ints(perm, "/perm")], "/to_last", Tperm=("type", pb.DT_INT32))
    s = w.emit("Softmax", [t], "/softmax")
    back = [int(i) for i in np.argsort(perm)]
    return [V(w.emit("Transpose", [s, w.ints(back, "/perm_back")], Tperm=("type", pb.DT_INT32)))]


def _operands(w: Writer, op: Operation) -> tuple[str, str, bool]:
    """Two operands of a broadcasting op in one layout."""
    a, b = op.operands[0], op.operands[1]
    va, vb = w.get(a), w.get(b)
    if va.cl == vb.cl:
        return va.name, vb.name, va.cl
    cl_side, other = (a, b) if va.cl else (b, a)
    rank = len(shape_of(cl_side))
    owner = other.owner
    names: dict[SSAValue, str] = {}
    if isinstance(owner, qnn.ConstantOp) and len(shape_of(other)) <= rank:
        c = ir.array_of(owner)
        full = c.reshape((1,) * (rank - c.ndim) + c.shape)
        names[other] = w.const(np.transpose(full, CL[rank]), f"{w.label(owner)}/channels_last")
        names[cl_side] = w.get(cl_side).name
        cl = True
    elif len(shape_of(other)) == rank:
        names[other] = w.channels_last(other)
        names[cl_side] = w.get(cl_side).name
        cl = True
    else:
        names = {a: w.plain(a), b: w.plain(b)}
        cl = False
    return names[a], names[b], cl


_BINARY = {"qnn.add": "AddV2", "qnn.sub": "Sub", "qnn.mul": "Mul", "qnn.div": "RealDiv",
           "qnn.max": "Maximum", "qnn.min": "Minimum", "qnn.pow": "Pow"}


@handler(*_BINARY)
def _binary(w: Writer, op: Operation) -> list[V]:
    a, b, cl = _operands(w, op)
    return [V(w.emit(_BINARY[op.name], [a, b]), cl)]


@handler("qnn.reduce_mean", "qnn.reduce_sum", "qnn.reduce_max", "qnn.reduce_min")
def _reduce(w: Writer, op: Operation) -> list[V]:
    rank = len(shape_of(op.operands[0]))
    axes = [a % rank for a in get_ints(op.properties.get("axes"))] or list(range(rank))
    keep = bool(get_int(op.properties.get("keepdims"), 1))
    kind = {"qnn.reduce_mean": "Mean", "qnn.reduce_sum": "Sum", "qnn.reduce_max": "Max",
            "qnn.reduce_min": "Min"}[op.name]
    v = w.get(op.operands[0])
    if v.cl:
        perm = CL[rank]
        remaining = [d for d in perm if d not in axes]
        if keep or remaining == sorted(remaining):
            tf_axes = sorted(perm.index(a) for a in axes)
            return [V(w.emit(kind, [v.name, w.ints(tf_axes, "/axes")], keep_dims=("b", keep),
                             Tidx=("type", pb.DT_INT32)), cl=keep)]
    return [V(w.emit(kind, [w.plain(op.operands[0]), w.ints(axes, "/axes")],
                     keep_dims=("b", keep), Tidx=("type", pb.DT_INT32)))]


@handler("qnn.reshape")
def _reshape(w: Writer, op: Operation) -> list[V]:
    return [V(w.emit("Reshape", [w.plain(op.operands[0]), w.target_shape(shape_of(op.results[0]), "/shape")],
                     Tshape=("type", pb.DT_INT32)))]


@handler("qnn.transpose")
def _transpose(w: Writer, op: Operation) -> list[V]:
    perm = tuple(get_ints(op.properties["perm"]))
    rank = len(perm)
    v = w.get(op.operands[0])
    if rank in CL and not v.cl and perm == tuple(int(i) for i in np.argsort(CL[rank])):
        return [V(v.name, cl=True)]  # NHWC -> NCHW: the value is already channels-last
    if rank in CL and v.cl and perm == CL[rank]:
        return [V(v.name)]
    return [V(w.emit("Transpose", [w.plain(op.operands[0]), w.ints(perm, "/perm")],
                     Tperm=("type", pb.DT_INT32)))]


@handler("qnn.concat")
def _concat(w: Writer, op: Operation) -> list[V]:
    rank = len(shape_of(op.results[0]))
    axis = get_int(op.properties["axis"]) % rank
    vs = [w.get(x) for x in op.operands]
    if rank in CL and all(v.cl for v in vs):
        names, axis, cl = [v.name for v in vs], CL[rank].index(axis), True
    else:
        names, cl = [w.plain(x) for x in op.operands], False
    return [V(w.emit("ConcatV2", [*names, w.const(np.int32(axis), f"{w.label(op)}/axis")], N=("i", len(names)),
                     Tidx=("type", pb.DT_INT32)), cl)]


@handler("qnn.layer_norm")
def _layer_norm(w: Writer, op: Operation) -> list[V]:
    rank = len(shape_of(op.operands[0]))
    axis = get_int(op.properties["axis"]) % rank
    eps = get_float(op.properties["epsilon"])
    x = w.plain(op.operands[0])
    label = w.label(op)
    axes = w.ints(list(range(axis, rank)), "/axes")
    mean = w.emit("Mean", [x, axes], "/mean", keep_dims=("b", True), Tidx=("type", pb.DT_INT32))
    var = w.emit("Mean", [w.emit("SquaredDifference", [x, mean], "/sqdiff"), axes], "/var",
                 keep_dims=("b", True), Tidx=("type", pb.DT_INT32))
    inv = w.emit("Rsqrt", [w.emit("AddV2", [var, w.const(np.float32(eps), f"{label}/eps")],
                                  "/var_eps")], "/rsqrt")
    y = w.emit("Mul", [w.emit("Sub", [x, mean], "/centered"), inv], "/normalized")
    y = w.emit("Mul", [y, w.plain(op.operands[1])], "/scaled" if len(op.operands) > 2 else "")
    if len(op.operands) > 2 and op.operands[2] is not None:
        y = w.emit("AddV2", [y, w.plain(op.operands[2])])
    return [V(y)]


@handler("qnn.batch_norm", "qnn.scale")
def _affine(w: Writer, op: Operation) -> list[V]:
    consts = []
    for operand in op.operands[1:]:
        owner = operand.owner
        if not isinstance(owner, qnn.ConstantOp):
            raise ExportError("non-constant parameters")
        consts.append(ir.array_of(owner).astype(np.float64))
    if op.name == "qnn.batch_norm":
        scale, bias, mean, var = consts
        a = scale / np.sqrt(var + get_float(op.properties["epsilon"]))
        b = bias - mean * a
        axis = 1
    else:
        a = consts[0]
        b = consts[1] if len(consts) > 1 else np.zeros_like(a)
        axis = get_int(op.properties.get("axis"), 1)
    rank = len(shape_of(op.operands[0]))
    v = w.get(op.operands[0])
    label = w.label(op)
    shape: tuple[int, ...] = (-1,)  # channels-last: the channel axis is last
    if v.cl and axis % rank == 1:
        x = v.name
    else:
        x, shape = w.plain(op.operands[0]), (-1,) + (1,) * (rank - 1 - axis % rank)
    y = w.emit("Mul", [x, w.const(a.reshape(shape), f"{label}/a")], "/mul")
    return [V(w.emit("AddV2", [y, w.const(b.reshape(shape), f"{label}/b")]), v.cl and axis == 1)]


@handler("quant.fake_quant")
def _fake_quant(w: Writer, op: Operation) -> list[V]:
    if op.operands[1:]:
        raise ExportError("learned ranges (fold them first)")
    qtype = op.properties["qtype"]
    assert isinstance(qtype, UniformQuantizedType)
    if all(isinstance(u.operation, qnn.LAYER_OPS) and u.index == 1 for u in op.results[0].uses) \
            and isinstance(op.operands[0].owner, qnn.ConstantOp):
        return [V("<weight written by its layer>")]
    v = w.get(op.operands[0])
    label = w.label(op)
    rank = len(shape_of(op.operands[0]))
    if qtype.axis is None:
        return [V(w.fake_quant(v.name, qtype, label), v.cl)]
    axis = qtype.axis % rank
    if v.cl and axis == 1:
        return [V(w.fake_quant(v.name, qtype, label), cl=True)]
    if axis == rank - 1:
        return [V(w.fake_quant(w.plain(op.operands[0]), qtype, label))]
    raise ExportError("per-axis fake-quant of an activation on a middle axis")
