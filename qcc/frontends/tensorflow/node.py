"""The pieces the TensorFlow translations share with the importer: `Tensor` (a
lowered TensorFlow value and its layout), `Node` (one NodeDef being translated) and
the `TRANSLATIONS` registry that `ops.py` and `shape_ops.py` fill."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from qcc.frontends.errors import FrontendError
from qcc.frontends.tensorflow import graphdef as gd

NCHW = {4: (0, 3, 1, 2), 5: (0, 4, 1, 2, 3)}
"""perm taking a channels-last value of that rank to channels-first."""
FREEZE_HINT = ("freeze it first: in TensorFlow, `from tensorflow.python.framework."
               "convert_to_constants import convert_variables_to_constants_v2` on the "
               "concrete function, then write `.graph.as_graph_def()`; or pass the "
               "SavedModel directory or Keras model to qcc.load, which freezes it")


class Tensor:
    """A TensorFlow tensor as lowered: an ONNX value name, and `perm` when that value
    is the TensorFlow value transposed to channels-first (`perm` = NCHW[rank])."""

    def __init__(self, name: str, perm: tuple[int, ...] | None = None) -> None:
        self.name = name
        self.perm = perm


Translation = Callable[["Node"], Any]
TRANSLATIONS: dict[str, Translation] = {}


def translation(*ops: str) -> Callable[[Translation], Translation]:
    def register(fn: Translation) -> Translation:
        for op in ops:
            TRANSLATIONS[op] = fn
        return fn

    return register


class Node:
    """One NodeDef being translated: attributes, inputs (tensor names), emit."""

    def __init__(self, imp: Any, proto: gd.NodeDef) -> None:
        """`imp` is the `importer.Importer` reading the graph."""
        self.imp = imp
        self.proto = proto
        self.name = proto.name
        self.op = proto.op
        self.inputs = [gd.tensor_name(i) for i in proto.input if not i.startswith("^")]

    def attr(self, key: str, default: Any = None) -> Any:
        if key not in self.proto.attr:
            return default
        return gd.attr_value(self.proto.attr[key], f"attribute '{key}'")

    def value(self, i: int) -> Tensor:
        v = self.imp.value(self.inputs[i])
        assert isinstance(v, Tensor)
        return v

    def tf(self, i: int) -> str:
        return self.imp.tf_layout(self.inputs[i])

    def array(self, i: int, what: str = "") -> np.ndarray:
        a = self.imp.array(self.inputs[i])
        if a is None and gd.node_of(self.inputs[i]) in self.imp.input_names:
            raise FrontendError(f"input {i} ('{self.inputs[i]}'{what}) must be a constant, "
                                "but it is a graph input (a tensor captured without "
                                f"freezing?); {FREEZE_HINT}")
        if a is None:
            raise FrontendError(f"input {i} ('{self.inputs[i]}'{what}) must be a constant "
                                "(qcc fixes shapes and weights at import), but it is "
                                "computed at run time")
        return a

    def shape(self, i: int) -> tuple[int, ...]:
        return self.imp.shape(self.value(i).name)

    def rank(self, i: int) -> int:
        return len(self.shape(i))

    def emit(self, op_type: str, inputs: Sequence[str], suffix: str = "", n_out: int = 1,
             **attrs: Any) -> list[str]:
        return self.imp.emit(op_type, inputs, self.name + suffix, n_out, **attrs)

    def const(self, array: Any, suffix: str = "/const") -> str:
        return self.imp.constant(np.asarray(array), self.name + suffix)

    def layer(self, **flags: bool) -> None:
        """Record that this node's main ONNX node is a layer (its source and flags)."""
        self.imp.layer_info[self.name] = (self.op, dict(flags))

    def channels_last(self) -> bool:
        fmt = self.attr("data_format", "NHWC")
        return not fmt.startswith("NC")


def in_order(values: Sequence[int], channels_last: bool) -> list[int]:
    """A per-dim list in the data format's order as channels-first spatial values."""
    v = list(values)
    return v[1:-1] if channels_last else v[2:]


