"""One fx node of an exported program being lowered (`Node`), and what the lowerings
ask of torch's metadata: traced shapes, module paths, source locations."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from xdsl.dialects.builtin import StringAttr, TensorType
from xdsl.ir import Operation, SSAValue

from qcc import ir
from qcc.dialects import qnn
from qcc.frontends.errors import FrontendError


def _dims(val: Any, bindings: Mapping[Any, int] | None = None) -> tuple[int, ...]:
    """IR shape of a traced tensor: symbolic dims take their bound values (from
    `input_shapes`), else their example values."""
    return tuple(_int(d, bindings) for d in val.shape)


def _int(d: Any, bindings: Mapping[Any, int] | None = None) -> int:
    if isinstance(d, int):
        return d
    node = getattr(d, "node", None)
    if node is not None and bindings:
        expr = node.expr
        value = expr.xreplace(bindings) if hasattr(expr, "xreplace") else expr
        if getattr(value, "is_number", True):
            return int(value)
    hint = getattr(node, "hint", None)
    if hint is None:
        raise FrontendError(f"dimension {d} has no example value")
    return int(hint)


def location(node: Any) -> str:
    """`file.py:line` of the user's code that made `node` (the last frame outside
    torch), else the node's name."""
    trace = node.meta.get("stack_trace") or ""
    best = None
    for line in trace.splitlines():
        line = line.strip()
        if not line.startswith('File "'):
            continue
        path, _, rest = line[6:].partition('", line ')
        lineno = rest.split(",")[0]
        if f"{os.sep}torch{os.sep}" in path:
            continue
        best = f"{os.path.basename(path)}:{lineno}"
    return best or node.name


def module_path(node: Any) -> tuple[str, str] | None:
    """(path, class name) of the innermost module that made `node`."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None
    path, cls = list(stack.values())[-1]
    cls_name = cls if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
    return path, cls_name.rsplit(".", 1)[-1]


class Node:
    """One fx node being lowered: its arguments as qnn values, constants or Python
    values, and an `emit` that builds qnn ops named after the node."""

    def __init__(self, importer: Any, fx: Any) -> None:
        self.importer = importer
        self.fx = fx
        self.op = _op_name(fx.target)
        self.args = [importer.resolve(a) for a in fx.args]
        self.kwargs = {k: importer.resolve(v) for k, v in fx.kwargs.items()}
        self.name = fx.name

    def arg(self, i: int, key: str | None = None, default: Any = None) -> Any:
        if i < len(self.args):
            return self.args[i]
        if key is not None and key in self.kwargs:
            return self.kwargs[key]
        return default

    def value(self, v: Any, like: Any = None) -> SSAValue:
        """`v` as a graph value; numbers take the dtype of `like` (f32 by default)."""
        if isinstance(v, SSAValue):
            return v
        if isinstance(v, np.ndarray):
            return self.importer.constant(v, self.importer.const_name(v, self.name))
        dtype = np.float32 if like is None else dtype_of(like)
        return self.importer.constant(np.array(v, dtype), f"{self.name}.const")

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape torch traced for this node's (first) result."""
        val = self.fx.meta.get("val")
        if isinstance(val, list | tuple):
            val = val[0]
        return _dims(val, self.importer.bindings)

    @property
    def dtype(self) -> np.dtype:
        import torch

        val = self.fx.meta.get("val")
        if isinstance(val, list | tuple):
            val = val[0]
        return torch.empty((), dtype=val.dtype).numpy().dtype

    def layer_name(self) -> str:
        owner = module_path(self.fx)
        return owner[0] if owner and owner[0] else self.name

    def emit_op(self, cls: Any, *operands: Any, suffix: str = "", source: str | None = None,
                **props: Any) -> Operation:
        base = self.layer_name() if isinstance_layer(cls) else self.name
        op = cls.make(*operands, name=self.importer.unique(base + suffix), **props)
        if isinstance(op, qnn.LAYER_OPS):
            op.attributes["source"] = StringAttr(f"pytorch.{source or self.source_op(cls)}")
        self.importer.graph.add(op)
        return op

    def emit(self, cls: Any, *operands: Any, suffix: str = "", **props: Any) -> SSAValue:
        return self.emit_op(cls, *operands, suffix=suffix, **props).results[0]

    def source_op(self, cls: Any) -> str:
        """The torch.nn class a layer came from: the owning module's class when it is
        a layer class, else derived from the ATen op (functional calls)."""
        owner = module_path(self.fx)
        if owner and owner[1] in LAYER_CLASSES:
            return owner[1]
        return {"qnn.matmul": "matmul", "qnn.dense": "Linear"}.get(cls.name, self.op)


LAYER_CLASSES = {"Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
                 "ConvTranspose3d", "Linear", "AvgPool1d", "AvgPool2d", "AvgPool3d",
                 "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
                 "MultiheadAttention"}


def isinstance_layer(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, qnn.LAYER_OPS)


def dtype_of(v: Any) -> np.dtype:
    if isinstance(v, np.ndarray):
        return v.dtype
    if isinstance(v, SSAValue):
        assert isinstance(v.type, TensorType)
        return ir.numpy_dtype(v.type.element_type)
    return np.dtype(np.float32 if isinstance(v, float) else np.int64)


def shape_of(v: Any) -> tuple[int, ...]:
    if isinstance(v, np.ndarray):
        return tuple(v.shape)
    assert isinstance(v, SSAValue) and isinstance(v.type, TensorType)
    return tuple(v.type.get_shape())


def _op_name(target: Any) -> str:
    """`conv2d` for aten.conv2d.default, `getitem` for operator.getitem."""
    packet = getattr(target, "overloadpacket", None)
    if packet is not None:
        return packet.__name__
    return getattr(target, "__name__", str(target))


