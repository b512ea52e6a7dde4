"""TensorFlow exporter: a qnn module (fp32 or fake-quant) as a frozen GraphDef that
TensorFlow runs, written with qcc's GraphDef schema (no TensorFlow needed).

    graph = export_graphdef(module, "net_fake_quant.pb")

How a module is written:

1. `@main`'s arguments are Placeholders and its results `Identity` nodes, under the
   names `qcc.ir.io_names` gives; shapes and layouts are the module's (a model
   imported from TensorFlow keeps its NHWC inputs and outputs).
2. Layout: TensorFlow's CPU convolutions and pools are channels-last, qnn is
   channels-first. A value is held either as is or channels-last; convolutions and
   pools produce channels-last values, element-wise ops and per-tensor fake-quant
   keep the layout, and one Transpose is written only where an op needs the other
   (a `qnn.transpose` to NCHW of a channels-last model input costs nothing).
3. Weights are Const nodes in TensorFlow's filter layouts (HWIO, depthwise HWCM,
   Conv2DBackpropInput HWOI, MatMul KN).
4. `quant.fake_quant` becomes FakeQuantWithMinMaxVars (per tensor) or
   FakeQuantWithMinMaxVarsPerChannel (per axis; the quantized axis is put last, where
   TensorFlow's op wants it): min = (qmin - z) s, max = (qmax - z) s, num_bits, and
   narrow_range when the storage range drops its lowest value. TensorFlow nudges
   min/max so zero is exact and rounds half up; qcc rounds half to even: the two
   agree within one quantization step.
5. Every op is tried before anything is reported: the ops without an export are
   listed in one ExportError, and no file is written.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr, TensorType
from xdsl.ir import Operation, SSAValue

from qcc import ir
from qcc.dialects import qnn
from qcc.dialects.base import get_float, get_int, get_ints
from qcc.dialects.quant import FakeQuantOp, UniformQuantizedType
from qcc.exporters.onnx import ExportError
from qcc.frontends.tensorflow import graph_pb2 as pb
from qcc.frontends.tensorflow.graphdef import array_to_tensor, datatype_of

CL = {4: (0, 2, 3, 1), 5: (0, 2, 3, 4, 1)}
"""perm taking a channels-first value of that rank to channels-last."""
_T = pb.DT_FLOAT

__all__ = ["export_graphdef", "ExportError"]


class V:
    """A qnn value as written: a TensorFlow tensor name, and whether that tensor is the
    value transposed to channels-last."""

    def __init__(self, name: str, cl: bool = False) -> None:
        self.name = name
        self.cl = cl


def export_graphdef(module: ModuleOp, path: str | os.PathLike | None = None) -> pb.GraphDef:
    """Write `module` as a GraphDef (atomically to `path` if given) and return it."""
    graph = _Writer(module).run()
    if path is not None:
        out = Path(path)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(graph.SerializeToString())
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return graph


def _shape(v: SSAValue) -> tuple[int, ...]:
    t = v.type
    assert isinstance(t, TensorType)
    return tuple(t.get_shape())


Handler = Callable[["_Writer", Operation], list[V]]
HANDLERS: dict[str, Handler] = {}


def handler(*names: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for n in names:
            HANDLERS[n] = fn
        return fn

    return register


class _Writer:
    def __init__(self, module: ModuleOp) -> None:
        self.fn = ir.main_func(module)
        self.graph = pb.GraphDef()
        self.graph.versions.producer = 1994  # TF 2.x GraphDefs; any recent value loads
        self.values: dict[SSAValue, V] = {}
        self.names: set[str] = set()
        self.converted: dict[tuple[str, bool], str] = {}
        self.op: Operation | None = None

    def run(self) -> pb.GraphDef:
        in_names, out_names = ir.io_names(self.fn)
        block = self.fn.body.block
        for arg, name in zip(block.args, in_names, strict=True):
            t = arg.type
            assert isinstance(t, TensorType)
            nd = self.node("Placeholder", [], name, dtype=("type", datatype_of(
                ir.numpy_dtype(t.element_type))))
            nd.attr["shape"].shape.dim.extend(pb.TensorShapeProto.Dim(size=d)
                                              for d in t.get_shape())
            self.values[arg] = V(nd.name)
        failed: dict[str, list[str]] = {}
        for op in block.ops:
            if isinstance(op, func.ReturnOp):
                for value, name in zip(op.operands, out_names, strict=True):
                    self.node("Identity", [self.plain(value)], name, T=("type", self.dt(value)))
                continue
            if isinstance(op, qnn.ConstantOp):
                continue  # written where used
            fn = HANDLERS.get(op.name)
            self.op = op
            try:
                if fn is None:
                    raise ExportError("no TensorFlow export")
                results = fn(self, op)
            except ExportError as e:
                failed.setdefault(f"{op.name} ({e})", []).append(self.label(op))
                results = [V(f"<failed {op.name}>")] * len(op.results)
            for r, v in zip(op.results, results, strict=True):
                self.values[r] = v
        if failed:
            lines = [f"  {what}: {', '.join(names)}" for what, names in sorted(failed.items())]
            raise ExportError(f"{len(failed)} kind{'s' if len(failed) > 1 else ''} of op "
                              "cannot be written as a TensorFlow GraphDef:\n" + "\n".join(lines))
        return self.graph

    # -- nodes

    def label(self, op: Operation) -> str:
        for key in ("name", "id"):
            a = op.attributes.get(key)
            if isinstance(a, StringAttr):
                return a.data
        return op.name.replace(".", "_")

    def unique(self, base: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_./]", "_", base) or "node"
        if not re.match(r"[A-Za-z0-9.]", base[0]):
            base = "n" + base
        name, i = base, 1
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def node(self, op: str, inputs: Sequence[str], name: str, **attrs: Any) -> pb.NodeDef:
        nd = self.graph.node.add(name=self.unique(name), op=op)
        nd.input.extend(inputs)
        for key, value in attrs.items():
            _set_attr(nd.attr[key], value)
        return nd

    def emit(self, op: str, inputs: Sequence[str], suffix: str = "", **attrs: Any) -> str:
        """A float node named after the op being written; returns its tensor."""
        assert self.op is not None
        attrs.setdefault("T", ("type", _T))
        return self.node(op, inputs, self.label(self.op) + suffix, **attrs).name

    def const(self, array: Any, name: str) -> str:
        a = np.asarray(array)
        if a.dtype == np.float64:
            a = a.astype(np.float32)
        nd = self.node("Const", [], name, dtype=("type", datatype_of(a.dtype)))
        nd.attr["value"].tensor.CopyFrom(array_to_tensor(a))
        return nd.name

    def ints(self, values: Sequence[int], suffix: str) -> str:
        return self.const(np.asarray(values, np.int32), self.label(self.op) + suffix)  # type: ignore[arg-type]

    def dt(self, value: SSAValue) -> int:
        t = value.type
        assert isinstance(t, TensorType)
        return datatype_of(ir.numpy_dtype(t.element_type))

    # -- values and layout

    def get(self, value: SSAValue) -> V:
        if value in self.values:
            return self.values[value]
        owner = value.owner
        if isinstance(owner, qnn.ConstantOp):
            v = V(self.const(ir.array_of(owner), self.label(owner)))
            self.values[value] = v
            return v
        raise ExportError(f"operand {value} is not written")

    def plain(self, value: SSAValue) -> str:
        v = self.get(value)
        return self.transposed(v.name, tuple(int(i) for i in np.argsort(CL[len(_shape(value))]))) \
            if v.cl else v.name

    def channels_last(self, value: SSAValue) -> str:
        v = self.get(value)
        rank = len(_shape(value))
        if rank not in CL:
            raise ExportError(f"a rank-{rank} input where channels-last needs rank 4 or 5")
        if v.cl:
            return v.name
        return self.transposed(v.name, CL[rank])

    def transposed(self, name: str, perm: tuple[int, ...]) -> str:
        key = (name, perm == CL.get(len(perm)))
        if key not in self.converted:
            self.converted[key] = self.node(
                "Transpose", [name, self.const(np.asarray(perm, np.int32), f"{name}/perm")],
                f"{name}/transpose", T=("type", _T), Tperm=("type", pb.DT_INT32)).name
        return self.converted[key]

    def weight(self, value: SSAValue, perm: Sequence[int], shape: Sequence[int] | None = None
               ) -> str:
        """Weight operand `value` (a constant, maybe fake-quantized) as
        `transpose(w, perm)` (then reshaped to `shape`): the TensorFlow filter layout."""
        owner = value.owner
        fq = owner if isinstance(owner, FakeQuantOp) else None
        source = fq.operands[0].owner if fq is not None else owner
        if not isinstance(source, qnn.ConstantOp):
            raise ExportError("weights must be constants")
        w = ir.array_of(source)
        name = self.label(source)
        perm = list(perm)
        if fq is None:
            out = self.const(np.transpose(w, perm), name)
        else:
            qtype = fq.properties["qtype"]
            assert isinstance(qtype, UniformQuantizedType)
            axis = qtype.axis
            if axis is None:
                out = self.fake_quant(self.const(np.transpose(w, perm), name), qtype, name)
                perm = list(range(w.ndim))
            else:  # the quantized axis last, then to the filter layout
                first = [d for d in range(w.ndim) if d != axis] + [axis]
                out = self.fake_quant(self.const(np.transpose(w, first), name), qtype, name)
                perm = [first.index(d) for d in perm]
            if perm != list(range(w.ndim)):
                out = self.node("Transpose", [out, self.const(np.asarray(perm, np.int32),
                                                              f"{name}/perm")],
                                f"{name}/transpose", T=("type", _T),
                                Tperm=("type", pb.DT_INT32)).name
        if shape is not None:
            out = self.node("Reshape", [out, self.const(np.asarray(shape, np.int32),
                                                        f"{name}/shape")],
                            f"{name}/reshape", T=("type", _T), Tshape=("type", pb.DT_INT32)).name
        return out

    def fake_quant(self, x: str, qtype: UniformQuantizedType, name: str) -> str:
        bits = qtype.bits
        qmin, qmax = qtype.storage_min, qtype.storage_max
        if qmax - qmin == 2 ** bits - 1:
            narrow = False
        elif qmax - qmin == 2 ** bits - 2:
            narrow = True
        else:
            raise ExportError(f"storage range [{qmin}, {qmax}] of {bits} bits has no "
                              "FakeQuantWithMinMaxVars equivalent")
        s = np.asarray(qtype.scales, np.float64)
        z = np.asarray(qtype.zero_points, np.float64)
        lo = ((qmin - z) * s).astype(np.float32)
        hi = ((qmax - z) * s).astype(np.float32)
        op = "FakeQuantWithMinMaxVarsPerChannel" if qtype.axis is not None else \
            "FakeQuantWithMinMaxVars"
        if qtype.axis is None:
            lo, hi = lo.reshape(()), hi.reshape(())
        return self.node(op, [x, self.const(lo, f"{name}/fq_min"), self.const(hi, f"{name}/fq_max")],
                         f"{name}/fake_quant", num_bits=("i", bits),
                         narrow_range=("b", narrow)).name


def _set_attr(a: pb.AttrValue, value: Any) -> None:
    if isinstance(value, tuple) and value and value[0] in ("type", "i", "b", "f", "s"):
        kind, v = value
        if kind == "type":
            a.type = v
        elif kind == "i":
            a.i = int(v)
        elif kind == "b":
            a.b = bool(v)
        elif kind == "f":
            a.f = float(v)
        else:
            a.s = str(v).encode()
        return
    if isinstance(value, list):
        a.list.i.extend(int(v) for v in value)
        if not value:
            a.list.SetInParent()
        return
    raise TypeError(f"attribute value {value!r}")


# --------------------------------------------------------------- handlers


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


def _bias(w: _Writer, out: str, op: Operation, index: int) -> str:
    if len(op.operands) <= index or op.operands[index] is None:
        return out
    return w.emit("BiasAdd", [out, w.plain(op.operands[index])], "/bias",
                  data_format=("s", "NHWC"))


@handler("qnn.conv")
def _conv(w: _Writer, op: Operation) -> list[V]:
    x, wt = _shape(op.operands[0]), _shape(op.operands[1])
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
def _conv_transpose(w: _Writer, op: Operation) -> list[V]:
    wt, y = _shape(op.operands[1]), _shape(op.results[0])
    if len(wt) != 4 or get_int(op.properties.get("groups"), 1) != 1:
        raise ExportError("only 2-d conv_transpose without groups")
    strides, dilations = _window(op, 2)
    pads = list(get_ints(op.properties.get("pads"), [0] * 4))
    pad: dict[str, Any] = {"padding": ("s", "VALID")}
    if any(pads):
        pad = {"padding": ("s", "EXPLICIT"),
               "explicit_paddings": [0, 0, pads[0], pads[2], pads[1], pads[3], 0, 0]}
    sizes = w.ints([y[0], y[2], y[3], y[1]], "/input_sizes")
    filt = w.weight(op.operands[1], (2, 3, 1, 0))  # [C_in, O, kh, kw] -> [kh, kw, O, C_in]
    out = w.emit("Conv2DBackpropInput", [sizes, filt, w.channels_last(op.operands[0])],
                 strides=[1, *strides, 1], dilations=[1, *dilations, 1], **pad)
    return [V(_bias(w, out, op, 2), cl=True)]


@handler("qnn.dense")
def _dense(w: _Writer, op: Operation) -> list[V]:
    x, wt = _shape(op.operands[0]), _shape(op.operands[1])
    xin = w.plain(op.operands[0])
    if len(x) != 2:
        xin = w.emit("Reshape", [xin, w.ints([-1, x[-1]], "/flat")], "/flatten",
                     Tshape=("type", pb.DT_INT32))
    out = w.emit("MatMul", [xin, w.weight(op.operands[1], (1, 0))],
                 transpose_a=("b", False), transpose_b=("b", False))
    out = _bias(w, out, op, 2)
    if len(x) != 2:
        out = w.emit("Reshape", [out, w.ints([*x[:-1], wt[0]], "/unflat")], "/unflatten",
                     Tshape=("type", pb.DT_INT32))
    return [V(out)]


@handler("qnn.matmul")
def _matmul(w: _Writer, op: Operation) -> list[V]:
    return [V(w.emit("BatchMatMulV2", [w.plain(op.operands[0]), w.plain(op.operands[1])]))]


@handler("qnn.max_pool", "qnn.avg_pool")
def _pool(w: _Writer, op: Operation) -> list[V]:
    x = _shape(op.operands[0])
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
def _global_avg_pool(w: _Writer, op: Operation) -> list[V]:
    rank = len(_shape(op.operands[0]))
    axes = w.ints(list(range(1, rank - 1)), "/axes")
    return [V(w.emit("Mean", [w.channels_last(op.operands[0]), axes], keep_dims=("b", True),
                     Tidx=("type", pb.DT_INT32)), cl=True)]


_UNARY = {"qnn.relu": "Relu", "qnn.sigmoid": "Sigmoid", "qnn.tanh": "Tanh", "qnn.erf": "Erf",
          "qnn.sqrt": "Sqrt", "qnn.exp": "Exp", "qnn.log": "Log", "qnn.abs": "Abs",
          "qnn.neg": "Neg", "qnn.reciprocal": "Reciprocal", "qnn.floor": "Floor",
          "qnn.identity": "Identity", "qnn.dropout": "Identity"}


@handler(*_UNARY)
def _unary(w: _Writer, op: Operation) -> list[V]:
    v = w.get(op.operands[0])
    return [V(w.emit(_UNARY[op.name], [v.name]), v.cl)]


@handler("qnn.leaky_relu")
def _leaky_relu(w: _Writer, op: Operation) -> list[V]:
    v = w.get(op.operands[0])
    return [V(w.emit("LeakyRelu", [v.name], alpha=("f", get_float(op.properties["alpha"]))),
              v.cl)]


@handler("qnn.clip")
def _clip(w: _Writer, op: Operation) -> list[V]:
    v = w.get(op.operands[0])
    lo, hi = get_float(op.properties["min"]), get_float(op.properties["max"])
    if (lo, hi) == (0.0, 6.0):
        return [V(w.emit("Relu6", [v.name]), v.cl)]
    label = w.label(op)
    return [V(w.emit("ClipByValue", [v.name, w.const(np.float32(lo), f"{label}/min"),
                                     w.const(np.float32(hi), f"{label}/max")]), v.cl)]


@handler("qnn.gelu")
def _gelu(w: _Writer, op: Operation) -> list[V]:
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
def _softmax(w: _Writer, op: Operation) -> list[V]:
    rank = len(_shape(op.operands[0]))
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


def _operands(w: _Writer, op: Operation) -> tuple[str, str, bool]:
    """Two operands of a broadcasting op in one layout."""
    a, b = op.operands[0], op.operands[1]
    va, vb = w.get(a), w.get(b)
    if va.cl == vb.cl:
        return va.name, vb.name, va.cl
    cl_side, other = (a, b) if va.cl else (b, a)
    rank = len(_shape(cl_side))
    owner = other.owner
    names: dict[SSAValue, str] = {}
    if isinstance(owner, qnn.ConstantOp) and len(_shape(other)) <= rank:
        c = ir.array_of(owner)
        full = c.reshape((1,) * (rank - c.ndim) + c.shape)
        names[other] = w.const(np.transpose(full, CL[rank]), f"{w.label(owner)}/channels_last")
        names[cl_side] = w.get(cl_side).name
        cl = True
    elif len(_shape(other)) == rank:
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
def _binary(w: _Writer, op: Operation) -> list[V]:
    a, b, cl = _operands(w, op)
    return [V(w.emit(_BINARY[op.name], [a, b]), cl)]


@handler("qnn.reduce_mean", "qnn.reduce_sum", "qnn.reduce_max", "qnn.reduce_min")
def _reduce(w: _Writer, op: Operation) -> list[V]:
    rank = len(_shape(op.operands[0]))
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
def _reshape(w: _Writer, op: Operation) -> list[V]:
    return [V(w.emit("Reshape", [w.plain(op.operands[0]), w.ints(_shape(op.results[0]), "/shape")],
                     Tshape=("type", pb.DT_INT32)))]


@handler("qnn.transpose")
def _transpose(w: _Writer, op: Operation) -> list[V]:
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
def _concat(w: _Writer, op: Operation) -> list[V]:
    rank = len(_shape(op.results[0]))
    axis = get_int(op.properties["axis"]) % rank
    vs = [w.get(x) for x in op.operands]
    if rank in CL and all(v.cl for v in vs):
        names, axis, cl = [v.name for v in vs], CL[rank].index(axis), True
    else:
        names, cl = [w.plain(x) for x in op.operands], False
    return [V(w.emit("ConcatV2", [*names, w.ints([axis], "/axis")[:]], N=("i", len(names)),
                     Tidx=("type", pb.DT_INT32)), cl)]


@handler("qnn.layer_norm")
def _layer_norm(w: _Writer, op: Operation) -> list[V]:
    rank = len(_shape(op.operands[0]))
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
def _affine(w: _Writer, op: Operation) -> list[V]:
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
    rank = len(_shape(op.operands[0]))
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
def _fake_quant(w: _Writer, op: Operation) -> list[V]:
    if op.operands[1:]:
        raise ExportError("learned ranges (fold them first)")
    qtype = op.properties["qtype"]
    assert isinstance(qtype, UniformQuantizedType)
    if all(isinstance(u.operation, qnn.LAYER_OPS) and u.index == 1 for u in op.results[0].uses) \
            and isinstance(op.operands[0].owner, qnn.ConstantOp):
        return [V("<weight written by its layer>")]
    v = w.get(op.operands[0])
    label = w.label(op)
    rank = len(_shape(op.operands[0]))
    if qtype.axis is None:
        return [V(w.fake_quant(v.name, qtype, label), v.cl)]
    axis = qtype.axis % rank
    if v.cl and axis == 1:
        return [V(w.fake_quant(v.name, qtype, label), cl=True)]
    if axis == rank - 1:
        return [V(w.fake_quant(w.plain(op.operands[0]), qtype, label))]
    raise ExportError("per-axis fake-quant of an activation on a middle axis")
