"""Lowerings of ONNX shape arithmetic that stays computable at run time.

A model with symbolic dims is imported at two probe sizes (`onnx_symbolic`). A
value that a Shape-rooted subgraph computes from a symbolic dim (BERT's position
ids, a causal mask, ViT's class token expanded to the batch) differs between the
two imports; when it reaches the graph (not only a reshape's target or a slice
bound, which `onnx_symbolic` generalizes), the importer lowers the chain of nodes
that computes it instead of folding it. Each node of the chain lowers with the
entry here for its op type, or else with its ordinary lowering (Gather, Concat,
Unsqueeze, Add, Where, ... work on i64 graph values as on float ones):

1. Shape becomes `qnn.shape_of` (then `qnn.slice` for start/end);
2. Range, ConstantOfShape become `qnn.range`, `qnn.fill`;
3. Expand, Reshape, Slice whose shape, starts or ends are computed at run time
   become `qnn.dynamic_broadcast`, `qnn.dynamic_reshape`, `qnn.dynamic_slice`
   (with constant ones, their ordinary lowering);
4. GreaterOrEqual and LessOrEqual become `qnn.not` of `qnn.less` / `qnn.greater`.

The result's `dims` are this probe's folded shape; `onnx_symbolic` keeps those
that differ between the probes as `?`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from xdsl.ir import SSAValue

from qcc.dialects import qnn
from qcc.frontends import onnx_shape_ops
from qcc.frontends.onnx_node import Node
from qcc.frontends.onnx_ops import LOWERINGS, norm_axes

RUNTIME_LOWERINGS: dict[str, Callable[[Node, np.ndarray], Any]] = {}
"""op type -> fn(node, its folded result at this probe) -> graph value."""


def runtime_lowering(*op_types: str):
    def register(fn):
        for t in op_types:
            RUNTIME_LOWERINGS[t] = fn
        return fn

    return register


def _dims(folded: np.ndarray) -> tuple[int, ...]:
    return tuple(int(d) for d in folded.shape)


def _runtime(n: Node, i: int) -> bool:
    return n.has(i) and isinstance(n.input(i), SSAValue)


@runtime_lowering("Shape")
def shape(n: Node, folded: np.ndarray) -> Any:
    y = n.emit(qnn.ShapeOfOp, n.value(0))
    rank = len(n.shape(0))
    start, end = n.attr("start", 0), n.attr("end", rank)
    start, end = (max(min(b + rank if b < 0 else b, rank), 0) for b in (start, end))
    if (start, end) == (0, rank):
        return y
    return n.emit(qnn.SliceOp, y, starts=(start,), ends=(max(end, start),), axes=(0,),
                  steps=(1,), suffix="/slice")


@runtime_lowering("Range")
def range_(n: Node, folded: np.ndarray) -> Any:
    return n.emit(qnn.RangeOp, n.value(0), n.value(1), n.value(2), dims=_dims(folded))


@runtime_lowering("ConstantOfShape")
def constant_of_shape(n: Node, folded: np.ndarray) -> Any:
    given = n.attr("value")
    value = np.zeros(1, np.float32) if given is None else np.asarray(given).reshape(1)
    fill = n.constant(value, f"{n.name}.value")
    return n.emit(qnn.FillOp, n.value(0), fill, dims=_dims(folded))


@runtime_lowering("Expand")
def expand(n: Node, folded: np.ndarray) -> Any:
    if not _runtime(n, 1):
        return onnx_shape_ops.expand(n)
    return n.emit(qnn.DynamicBroadcastOp, n.value(0), n.value(1), dims=_dims(folded))


@runtime_lowering("Reshape")
def reshape(n: Node, folded: np.ndarray) -> Any:
    if not _runtime(n, 1):
        return onnx_shape_ops.reshape(n)
    return n.emit(qnn.DynamicReshapeOp, n.value(0), n.value(1), dims=_dims(folded),
                  allowzero=n.attr("allowzero", 0) or None)


@runtime_lowering("Slice")
def slice_(n: Node, folded: np.ndarray) -> Any:
    if n.version < 10 or not (_runtime(n, 1) or _runtime(n, 2)):
        return onnx_shape_ops.slice_(n)
    rank = len(n.shape(0))
    count = len(n.shape(1))
    given_axes, given_steps = n.optional_array(3), n.optional_array(4)
    axes = range(count) if given_axes is None else norm_axes(given_axes.tolist(), rank)
    steps = [1] * count if given_steps is None else given_steps.tolist()
    return n.emit(qnn.DynamicSliceOp, n.value(0), n.value(1), n.value(2), dims=_dims(folded),
                  axes=tuple(axes), steps=tuple(steps))


def _not(compare: type) -> Callable[[Node], SSAValue]:
    def lower(n: Node) -> SSAValue:
        return n.emit(qnn.NotOp, n.emit(compare, n.value(0), n.value(1), suffix="/compare"))

    return lower


LOWERINGS.setdefault("GreaterOrEqual", _not(qnn.LessOp))
LOWERINGS.setdefault("LessOrEqual", _not(qnn.GreaterOp))
