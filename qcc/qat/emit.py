"""The fake-quant IR as a torch.fx GraphModule: one fx node per IR op, so
`print(qmodel.code)` reads as the model does.

Rules:
1. a block argument is a placeholder named as the model input;
2. a `qnn.constant` is a get_attr of an nn.Parameter (float) or buffer (BatchNorm
   statistics, integers) installed at its source name (`conv1.weight`);
3. a `quant.fake_quant` / `quant.observe` with id `conv1.input` calls the
   FakeQuantize module `conv1.input_quant`;
4. with bn_fold, a conv whose only user is a `qnn.batch_norm` and that BatchNorm
   become one call of ConvBnFold `<conv>.bn_fold` (weight quantizer inside);
5. every other op is a call of the torch function with the op's semantics.
Each emitted constant and quantizer op gets the attribute `qat.target` (the fx
target) so that `convert` finds the trained value.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import Operation, SSAValue

from qcc import ir
from qcc.dialects import qnn, quant
from qcc.dialects.base import get_float, get_int, get_ints, get_str, shape_of
from qcc.qat.config import QatError

TARGET = "qat.target"

_UNARY: dict[str, Callable[..., Any]] = {
    "qnn.relu": F.relu, "qnn.sigmoid": torch.sigmoid, "qnn.tanh": torch.tanh,
    "qnn.erf": torch.erf, "qnn.hard_swish": F.hardswish, "qnn.sqrt": torch.sqrt,
    "qnn.exp": torch.exp, "qnn.log": torch.log, "qnn.abs": torch.abs, "qnn.neg": torch.neg,
    "qnn.reciprocal": torch.reciprocal, "qnn.floor": torch.floor,
}
_BINARY: dict[str, Callable[..., Any]] = {
    "qnn.add": operator.add, "qnn.sub": operator.sub, "qnn.mul": operator.mul,
    "qnn.div": operator.truediv, "qnn.pow": torch.pow, "qnn.max": torch.maximum,
    "qnn.min": torch.minimum, "qnn.matmul": torch.matmul,
}
_REDUCE: dict[str, Callable[..., Any]] = {"qnn.reduce_mean": torch.mean, "qnn.reduce_sum": torch.sum,
           "qnn.reduce_max": torch.amax, "qnn.reduce_min": torch.amin}


def attr_path(name: str) -> str:
    """A dotted torch attribute path from a source name (`/layer1/0/conv.weight`)."""
    parts = [re.sub(r"\W", "_", p) for p in name.strip("/").replace("/", ".").split(".")]
    parts = [("_" + p if not p or p[0].isdigit() else p) for p in parts if p != ""]
    return ".".join(parts) or "_"


def install(root: nn.Module, path: str, obj: object) -> None:
    *heads, last = path.split(".")
    mod = root
    for h in heads:
        if not hasattr(mod, h):
            mod.add_module(h, nn.Module())
        mod = getattr(mod, h)
    if isinstance(obj, nn.Parameter):
        mod.register_parameter(last, obj)
    elif isinstance(obj, nn.Module):
        mod.add_module(last, obj)
    else:
        mod.register_buffer(last, obj)  # type: ignore[arg-type]


class _Emitter:
    def __init__(self, module: ModuleOp, quantizers: dict[str, nn.Module],
                 bn_fold: dict[Operation, nn.Module]) -> None:
        self.fn: func.FuncOp = ir.main_func(module)
        self.quantizers, self.bn_fold = quantizers, bn_fold
        self.root = nn.Module()
        self.graph = fx.Graph()
        self.env: dict[SSAValue, fx.Node] = {}
        self.taken: set[str] = set()
        self.folded_convs = {bn.operands[0].owner for bn in bn_fold}

    def unique(self, path: str) -> str:
        base, i = path, 1
        while path in self.taken or any(t.startswith(path + ".") for t in self.taken):
            path, i = f"{base}_{i}", i + 1
        self.taken.add(path)
        return path

    def run(self) -> fx.GraphModule:
        names = ir.io_names(self.fn)
        for arg, name in zip(self.fn.body.block.args, names[0], strict=True):
            self.env[arg] = self.graph.placeholder(attr_path(name).replace(".", "_"))
        unsupported: list[str] = []
        for op in self.fn.body.block.ops:
            if isinstance(op, func.ReturnOp):
                outs = [self.value(v) for v in op.operands]
                self.graph.output(outs[0] if len(outs) == 1 else tuple(outs))
                continue
            if op in self.folded_convs or (isinstance(op, quant.ObserveOp) and get_str(
                    op.properties["kind"]) == "weight" and any(
                    u.operation in self.folded_convs for u in op.results[0].uses)):
                continue
            try:
                self.emit(op)
            except NotImplementedError:
                unsupported.append(f"{op.name} ({get_str(op.attributes.get('name')) or '?'})")
        if unsupported:
            raise QatError("QAT: no torch lowering for " + ", ".join(unsupported) +
                           "; train the model in its source framework or file an issue")
        self.graph.lint()
        return fx.GraphModule(self.root, self.graph, class_name="QatModule")

    def value(self, v: SSAValue) -> fx.Node:
        if v in self.env:
            return self.env[v]
        op = v.owner
        if isinstance(op, qnn.ConstantOp):
            self.constant(op)
            return self.env[v]
        raise QatError(f"QAT: value {v} is used before it is defined")

    def constant(self, op: qnn.ConstantOp, buffer: bool = False) -> None:
        array = np.array(ir.array_of(op))
        name = get_str(op.attributes.get("name")) or f"const{len(self.taken)}"
        path = self.unique(attr_path(name))
        t = torch.from_numpy(array)
        obj: object = t if buffer or not t.is_floating_point() else nn.Parameter(t)
        install(self.root, path, obj)
        op.attributes[TARGET] = StringAttr(path)
        self.env[op.results[0]] = self.graph.get_attr(path)

    def emit(self, op: Operation) -> None:
        call = self.graph.call_function
        args = op.operands

        def x(i: int = 0) -> fx.Node:
            return self.value(args[i])

        name = op.name
        if isinstance(op, qnn.ConstantOp):
            return  # rule 2: emitted where first used
        if isinstance(op, (quant.FakeQuantOp, quant.ObserveOp)):
            ident = get_str(op.properties.get("id") or op.attributes.get("id"))
            path = self.unique(attr_path(ident) + "_quant")
            install(self.root, path, self.quantizers[ident])
            op.attributes[TARGET] = StringAttr(path)
            out = self.graph.call_module(path, (x(),))
        elif op in self.bn_fold:
            conv = args[0].owner
            assert isinstance(conv, Operation)
            for v in (args[3], args[4]):
                if v not in self.env and isinstance(v.owner, qnn.ConstantOp):
                    self.constant(v.owner, buffer=True)
            w = conv.operands[1]
            w = w.owner.operands[0] if isinstance(w.owner, quant.ObserveOp) else w
            b = self.value(conv.operands[2]) if len(conv.operands) > 2 else None
            path = self.unique(attr_path(get_str(conv.attributes.get("name")) or "conv")
                               + ".bn_fold")
            install(self.root, path, self.bn_fold[op])
            op.attributes[TARGET] = StringAttr(path)
            out = self.graph.call_module(path, (self.value(conv.operands[0]), self.value(w), b,
                                                *(self.value(a) for a in args[1:])))
        elif name in ("qnn.identity", "qnn.dropout"):
            out = x()
        elif name in _UNARY:
            out = call(_UNARY[name], (x(),))
        elif name in _BINARY:
            out = call(_BINARY[name], (x(), x(1)))
        elif name == "qnn.conv":
            out = self.conv(op, x(), x(1), x(2) if len(args) > 2 else None)
        elif name == "qnn.dense":
            out = call(F.linear, (x(), x(1), x(2) if len(args) > 2 else None))
        elif name == "qnn.leaky_relu":
            out = call(F.leaky_relu, (x(), get_float(op.properties["alpha"])))
        elif name == "qnn.clip":
            out = call(torch.clamp, (x(), get_float(op.properties["min"]),
                                     get_float(op.properties["max"])))
        elif name == "qnn.gelu":
            out = call(F.gelu, (x(),), {"approximate": get_str(op.properties["approximate"])
                                        or "none"})
        elif name == "qnn.hard_sigmoid":
            y = call(operator.add, (call(operator.mul, (x(), get_float(
                op.properties["alpha"]))), get_float(op.properties["beta"])))
            out = call(torch.clamp, (y, 0.0, 1.0))
        elif name == "qnn.softmax":
            out = call(torch.softmax, (x(), get_int(op.properties["axis"])))
        elif name == "qnn.global_avg_pool":
            rank = len(shape_of(args[0].type))
            out = call(torch.mean, (x(), tuple(range(2, rank))), {"keepdim": True})
        elif name in ("qnn.max_pool", "qnn.avg_pool"):
            out = self.pool(op, x())
        elif name == "qnn.reshape":
            shape = get_ints(op.properties["shape"])
            src = shape_of(args[0].type)
            if shape and src and shape[0] == src[0]:
                dims: tuple = (self.graph.call_method("size", (x(), 0)), *shape[1:])
            else:
                dims = tuple(shape)
            out = call(torch.reshape, (x(), dims))
        elif name == "qnn.transpose":
            out = call(torch.permute, (x(), get_ints(op.properties["perm"])))
        elif name == "qnn.concat":
            out = call(torch.cat, ([self.value(v) for v in args],
                                   get_int(op.properties["axis"])))
        elif name in _REDUCE:
            out = call(_REDUCE[name], (x(), get_ints(op.properties["axes"])),
                       {"keepdim": bool(get_int(op.properties["keepdims"]))})
        elif name == "qnn.batch_norm":
            out = call(F.batch_norm, (x(), x(3), x(4), x(1), x(2)), {
                "training": False, "eps": get_float(op.properties["epsilon"])})
        elif name == "qnn.scale":
            axis, rank = get_int(op.properties["axis"], 1), len(shape_of(args[0].type))
            shape = tuple(-1 if d == axis % rank else 1 for d in range(rank))
            y = call(operator.mul, (x(), call(torch.reshape, (x(1), shape))))
            out = call(operator.add, (y, call(torch.reshape, (x(2), shape))))
        elif name == "qnn.layer_norm":
            axis, shape = get_int(op.properties["axis"]), shape_of(args[0].type)
            out = call(F.layer_norm, (x(), tuple(shape[axis:]), x(1), x(2),
                                      get_float(op.properties["epsilon"])))
        else:
            raise NotImplementedError(name)
        self.env[op.results[0]] = out

    def conv(self, op: Operation, x, w, b) -> fx.Node:
        pads, strides = get_ints(op.properties["pads"]), get_ints(op.properties["strides"])
        d = len(strides)
        begin, end = pads[:d], pads[d:]
        if begin != end:
            flat: list[int] = []
            for i in reversed(range(d)):
                flat += [begin[i], end[i]]
            x = self.graph.call_function(F.pad, (x, tuple(flat)))
            begin = (0,) * d
        fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[d]
        return self.graph.call_function(fn, (x, w, b), conv_kwargs(op, tuple(begin)))

    def pool(self, op: Operation, x) -> fx.Node:
        kernel, strides = get_ints(op.properties["kernel"]), get_ints(op.properties["strides"])
        pads, d = get_ints(op.properties["pads"]), len(kernel)
        if pads[:d] != pads[d:] or (op.properties.get("dilations") is not None and any(
                v != 1 for v in get_ints(op.properties["dilations"]))):
            raise NotImplementedError(op.name)
        fn: Callable[..., Any]
        kw: dict[str, Any] = {"kernel_size": kernel, "stride": strides, "padding": pads[:d],
              "ceil_mode": bool(get_int(op.properties["ceil_mode"]))}
        if op.name == "qnn.avg_pool":
            fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[d]
            kw["count_include_pad"] = bool(get_int(op.properties["count_include_pad"]))
        else:
            fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[d]
        return self.graph.call_function(fn, (x,), kw)


def conv_kwargs(op: Operation, padding: tuple[int, ...] | None = None) -> dict:
    pads = get_ints(op.properties["pads"])
    d = len(get_ints(op.properties["strides"]))
    return {"stride": get_ints(op.properties["strides"]),
            "padding": padding if padding is not None else pads[:d],
            "dilation": get_ints(op.properties["dilations"]),
            "groups": get_int(op.properties["groups"], 1)}


def emit(module: ModuleOp, quantizers: dict[str, nn.Module],
         bn_fold: dict[Operation, nn.Module]) -> fx.GraphModule:
    return _Emitter(module, quantizers, bn_fold).run()
