"""One ONNX node being lowered (`Node`), what the lowering modules (`onnx_ops`,
`onnx_shape_ops`, `onnx_qdq`, `onnx_ascend`) are written against; the importer
(`qcc.frontends.onnx`) drives them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper
from xdsl.dialects.builtin import StringAttr, TensorType
from xdsl.ir import Operation, SSAValue

from qcc import ir
from qcc.dialects import qnn
from qcc.frontends.errors import NotConstantError

Value = SSAValue | np.ndarray
"""A lowered ONNX value: a graph value, or a constant known at import."""

STANDARD_DOMAINS = ("", "ai.onnx")


def _attr_value(attr: onnx.AttributeProto) -> Any:
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode() for v in value]
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    return value


def _node_label(node: onnx.NodeProto) -> str:
    return node.name or (node.output[0] if node.output else node.op_type)


def _op_key(node: onnx.NodeProto) -> str:
    return node.op_type if node.domain in STANDARD_DOMAINS else f"{node.domain}.{node.op_type}"


# ----------------------------------------------------------------- one node


class Node:
    """An ONNX node being lowered: its attributes, its inputs as qnn values or
    constants, and an `emit` that builds qnn ops carrying the node's name."""

    def __init__(self, importer: Any, proto: onnx.NodeProto, version: int,
                 at_run_time: bool = False) -> None:
        """`importer` is the `qcc.frontends.onnx` importer running the model. A node
        lowered `at_run_time` computes a value the importer would otherwise fold:
        its inputs computed at run time are graph values (`onnx_dynamic`)."""
        self.importer = importer
        self.at_run_time = at_run_time
        self.proto = proto
        self.version = version
        self.op_type = proto.op_type
        self.name = _node_label(proto)
        self.attrs = {a.name: _attr_value(a) for a in proto.attribute}

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def has(self, i: int) -> bool:
        """Whether optional input `i` is given."""
        return i < len(self.proto.input) and self.proto.input[i] != ""

    def input(self, i: int) -> Value:
        if i >= len(self.proto.input) or not self.proto.input[i]:
            from qcc.frontends.errors import FrontendError

            raise FrontendError(
                f"{self.importer.source}: node '{self.proto.name}' ({self.proto.op_type}) "
                f"has no input #{i}, which its op needs; check the model with onnx.checker")
        name = self.proto.input[i]
        if self.at_run_time and name in self.importer.runtime:
            return self.importer.runtime[name]
        return self.importer.values[name]

    def inputs(self) -> list[Value]:
        return [self.input(i) for i in range(len(self.proto.input)) if self.has(i)]

    def array(self, i: int) -> np.ndarray:
        """Input `i` as a constant; a run-time value is a `NotConstantError`."""
        v = self.input(i)
        if isinstance(v, np.ndarray):
            return v
        name = self.proto.input[i]
        raise NotConstantError(
            f"input '{name}' must be a constant (qcc fixes shapes and parameters at "
            "import), but it is computed at run time", name)

    def optional_array(self, i: int) -> np.ndarray | None:
        return self.array(i) if self.has(i) else None

    def value(self, i: int) -> SSAValue:
        """Input `i` as a graph value (a constant becomes a named `qnn.constant`,
        one computed at run time is that computation's value)."""
        runtime = self.importer.runtime.get(self.proto.input[i]) if self.has(i) else None
        if runtime is not None:
            return runtime
        v = self.input(i)
        if isinstance(v, np.ndarray):
            return self.importer.materialize(self.proto.input[i])
        return v

    def optional_value(self, i: int) -> SSAValue | None:
        return self.value(i) if self.has(i) else None

    def shape(self, i: int) -> tuple[int, ...]:
        return shape_of(self.input(i))

    def dtype(self, i: int) -> np.dtype:
        v = self.input(i)
        if isinstance(v, np.ndarray):
            return v.dtype
        assert isinstance(v.type, TensorType)
        return ir.numpy_dtype(v.type.element_type)

    def uses(self, i: int) -> bool:
        """Whether output `i` is consumed by a node or a graph output."""
        out = self.proto.output
        return i < len(out) and out[i] != "" and out[i] in self.importer.consumed

    def constant(self, array: np.ndarray, name: str) -> SSAValue:
        """A derived constant (e.g. a transposed weight) named `name`."""
        return self.importer.add_constant(np.asarray(array), name)

    def emit_op(self, cls: Any, *operands: SSAValue | Sequence[SSAValue] | None, suffix: str = "",
                **props: Any) -> Operation:
        op = cls.make(*operands, name=self.name + suffix, **props)
        if isinstance(op, qnn.LAYER_OPS):
            # The framework op a layer came from: target rules depend on it.
            op.attributes["source"] = StringAttr(f"onnx.{self.proto.op_type}")
        self.importer.graph.add(op)
        return op

    def emit(self, cls: Any, *operands: SSAValue | Sequence[SSAValue] | None, suffix: str = "",
             **props: Any) -> SSAValue:
        """Build and append a qnn op; return its result."""
        return self.emit_op(cls, *operands, suffix=suffix, **props).results[0]


def shape_of(v: Value) -> tuple[int, ...]:
    if isinstance(v, np.ndarray):
        return tuple(v.shape)
    assert isinstance(v.type, TensorType)
    return tuple(v.type.get_shape())
