"""ONNX exports of the run-time shape ops (`qcc.dialects.qnn_dynamic`), the inverse
of `qcc.frontends.onnx_dynamic`:

| qnn | ONNX |
|---|---|
| shape_of, range, fill | Shape, Range (scalar operands), ConstantOfShape (a constant value; else Expand) |
| dynamic_broadcast, dynamic_reshape, dynamic_slice | Expand, Reshape (allowzero: opset 14), Slice with the run-time operands |
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qcc.dialects import qnn
from qcc.dialects.base import get_int, get_ints
from qcc.exporters.onnx_base import OpWriter, Unsupported, export


@export(qnn.ShapeOfOp)
def _shape_of(w: OpWriter) -> None:
    w.node("Shape", [w.input(0)], [w.out()])


@export(qnn.RangeOp)
def _range(w: OpWriter) -> None:
    scalars = []
    for i, v in enumerate(w.op.operands):
        name = w.tensor(v)
        if w.shape(v) != ():  # ONNX Range takes scalars
            scalars.append(w.tmp(f"scalar{i}"))
            w.node("Reshape", [name, w.ints([], f"scalar{i}_shape")], [scalars[-1]],
                   suffix=f"scalar{i}")
        else:
            scalars.append(name)
    w.node("Range", scalars, [w.out()])


@export(qnn.FillOp)
def _fill(w: OpWriter) -> None:
    value = w.array(w.op.operands[1])
    if value is None:  # Expand of the value does the same as ConstantOfShape
        w.node("Expand", [w.input(1), w.input(0)], [w.out()])
        return
    from onnx import numpy_helper

    w.node("ConstantOfShape", [w.input(0)], [w.out()],
           value=numpy_helper.from_array(np.asarray(value).reshape(1), "value"))


@export(qnn.DynamicBroadcastOp)
def _dynamic_broadcast(w: OpWriter) -> None:
    w.node("Expand", [w.input(0), w.input(1)], [w.out()])


@export(qnn.DynamicReshapeOp)
def _dynamic_reshape(w: OpWriter) -> None:
    attrs: dict[str, Any] = {}
    if get_int(w.prop("allowzero")):
        if w.opset < 14:
            raise Unsupported("a reshape with allowzero needs opset 14")
        attrs["allowzero"] = 1
    w.node("Reshape", [w.input(0), w.input(1)], [w.out()], **attrs)


@export(qnn.DynamicSliceOp)
def _dynamic_slice(w: OpWriter) -> None:
    axes, steps = (list(get_ints(w.prop(k))) for k in ("axes", "steps"))
    w.node("Slice", [w.input(0), w.input(1), w.input(2), w.ints(axes, "axes"),
                     w.ints(steps, "steps")], [w.out()])
