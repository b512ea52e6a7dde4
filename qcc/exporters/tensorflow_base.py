"""The GraphDef writer the TensorFlow exporter (`tensorflow.py`) runs: values and
their layout (`V`), nodes, constants, fake-quant, and the handler registry that
`tensorflow_ops.py` fills."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr, TensorType
from xdsl.ir import Operation, SSAValue

from qcc import ir
from qcc.dialects import qnn
from qcc.dialects.quant import FakeQuantOp, UniformQuantizedType
from qcc.exporters.onnx import ExportError
from qcc.frontends.tensorflow import graph_pb2 as pb
from qcc.frontends.tensorflow.graphdef import array_to_tensor, datatype_of

CL = {4: (0, 2, 3, 1), 5: (0, 2, 3, 4, 1)}
"""perm taking a channels-first value of that rank to channels-last."""
FLOAT = pb.DT_FLOAT



class V:
    """A qnn value as written: a TensorFlow tensor name, and whether that tensor is the
    value transposed to channels-last."""

    def __init__(self, name: str, cl: bool = False) -> None:
        self.name = name
        self.cl = cl


def shape_of(v: SSAValue) -> tuple[int, ...]:
    t = v.type
    assert isinstance(t, TensorType)
    return tuple(t.get_shape())


Handler = Callable[["Writer", Operation], list["V"]]
HANDLERS: dict[str, Handler] = {}
"""qnn op name -> handler; `tensorflow_ops` fills it."""


def handler(*names: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for n in names:
            HANDLERS[n] = fn
        return fn

    return register


class Writer:
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
            nd.attr["shape"].shape.dim.extend(pb.TensorShapeProto.Dim(size=max(d, -1))
                                              for d in t.get_shape())  # `?`: -1
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
        attrs.setdefault("T", ("type", FLOAT))
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

    def target_shape(self, dims: Sequence[int], suffix: str) -> str:
        """A Reshape target: a symbolic (`?`) dim is written as -1, which TensorFlow
        infers; more than one cannot be."""
        if sum(d < 0 for d in dims) > 1:
            raise ExportError(f"a reshape to {'x'.join('?' if d < 0 else str(d) for d in dims)}"
                              " (more than one symbolic dim)")
        return self.ints([-1 if d < 0 else d for d in dims], suffix)

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
        return self.transposed(v.name, tuple(int(i) for i in np.argsort(CL[len(shape_of(value))]))) \
            if v.cl else v.name

    def channels_last(self, value: SSAValue) -> str:
        v = self.get(value)
        rank = len(shape_of(value))
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
                f"{name}/transpose", T=("type", FLOAT), Tperm=("type", pb.DT_INT32)).name
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
                                f"{name}/transpose", T=("type", FLOAT),
                                Tperm=("type", pb.DT_INT32)).name
        if shape is not None:
            out = self.node("Reshape", [out, self.const(np.asarray(shape, np.int32),
                                                        f"{name}/shape")],
                            f"{name}/reshape", T=("type", FLOAT), Tshape=("type", pb.DT_INT32)).name
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
