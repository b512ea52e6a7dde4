"""Run-time shape ops of the `qnn` dialect: shape arithmetic that depends on a
symbolic dim stays in the graph and runs on i64 tensors. Re-exported by
`qcc.dialects.qnn`.

- `qnn.shape_of`: the shape of a value (ONNX Shape); folds when the value's type
  is static.
- `qnn.range`, `qnn.fill`, `qnn.dynamic_broadcast`, `qnn.dynamic_reshape`,
  `qnn.dynamic_slice`: ONNX Range, ConstantOfShape, Expand, Reshape and Slice whose
  result shape is decided by an operand's *value*. Their property `dims` is what is
  known of the result shape (`?` where the values decide; a static entry is
  checked when the op runs), so the result type is inferred from properties as for
  every qnn op. They fold (through `qnn_eval`) when their operands are constants
  and `dims` is static.

The element-wise, compare, gather, concat and where ops work on i64 as on f32, so
the rest of a shape computation needs no op of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from xdsl.dialects.builtin import DenseArrayBase, IntegerAttr, IntegerType, TensorType, i64
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.irdl import (
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
)
from xdsl.traits import HasFolder, Pure

from qcc.dialects.base import (
    DYN,
    QnnOp,
    ShapeError,
    fmt_shape,
    get_ints,
    like,
    shape_of,
    tensor,
)
from qcc.dialects.constants import dense
from qcc.dialects.qnn_eval import EVAL, Folds

AnyTensor = TensorType


def _vector(t: Attribute, what: str) -> int:
    """Length of a 1-D integer operand (a shape, starts, ends); DYN if symbolic."""
    shape = shape_of(t)
    assert isinstance(t, TensorType)
    if len(shape) != 1 or not isinstance(t.element_type, IntegerType):
        raise ShapeError(f"{what} must be a 1-D integer tensor, got {t}")
    return shape[0]


def _check_rank(dims: Sequence[int], rank: int, what: str) -> None:
    if rank != DYN and len(dims) != rank:
        raise ShapeError(f"dims {fmt_shape(dims)} have rank {len(dims)}, {what} {rank}")


class _FoldsShape(HasFolder):
    """`qnn.shape_of` of a value with a static type is a constant."""

    @classmethod
    def fold(cls, op: Operation) -> Sequence[SSAValue | Attribute] | None:
        t = op.operands[0].type
        if not isinstance(t, TensorType) or not t.has_static_shape():
            return None
        return [dense(np.array(t.get_shape(), np.int64))]


class ValueShapedOp(QnnOp):
    """An op whose result shape an operand's value decides: `dims` is what the
    type knows (`?` where the values decide)."""

    dims = prop_def(DenseArrayBase)
    traits = traits_def(Pure(), Folds())
    PROPS: ClassVar[dict[str, object]] = {"dims": None}


@irdl_op_definition
class ShapeOfOp(QnnOp):
    """The shape of `input` as a 1-D i64 tensor (ONNX Shape)."""

    name = "qnn.shape_of"
    input = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    traits = traits_def(Pure(), _FoldsShape())

    @classmethod
    def infer(cls, types, props):
        return [tensor([len(shape_of(types[0]))], i64)]


@irdl_op_definition
class RangeOp(ValueShapedOp):
    """start, start + delta, ... before limit (ONNX Range); scalar operands."""

    name = "qnn.range"
    start = operand_def(AnyTensor)
    limit = operand_def(AnyTensor)
    delta = operand_def(AnyTensor)
    output = result_def(AnyTensor)

    @classmethod
    def infer(cls, types, props):
        dims = get_ints(props["dims"])
        for t in types:
            if shape_of(t) not in ((), (1,)):
                raise ShapeError(f"start, limit and delta must be scalars, got {t}")
            assert isinstance(t, TensorType) and isinstance(types[0], TensorType)
            if t.element_type != types[0].element_type:
                raise ShapeError(f"element types differ: {types[0]} and {t}")
        _check_rank(dims, 1, "a range has rank")
        return [like(types[0], dims)]


@irdl_op_definition
class FillOp(ValueShapedOp):
    """A tensor of run-time `shape` filled with the one element of `value`
    (ONNX ConstantOfShape)."""

    name = "qnn.fill"
    shape = operand_def(AnyTensor)
    value = operand_def(AnyTensor)
    output = result_def(AnyTensor)

    @classmethod
    def infer(cls, types, props):
        dims = get_ints(props["dims"])
        _check_rank(dims, _vector(types[0], "shape"), "the shape operand has length")
        if shape_of(types[1]) not in ((), (1,)):
            raise ShapeError(f"value must have one element, got {types[1]}")
        return [like(types[1], dims)]


@irdl_op_definition
class DynamicBroadcastOp(ValueShapedOp):
    """Broadcast `input` with the run-time `shape` (ONNX Expand: numpy rules both
    ways, so a 1 in `shape` keeps the input's dim)."""

    name = "qnn.dynamic_broadcast"
    input = operand_def(AnyTensor)
    shape = operand_def(AnyTensor)
    output = result_def(AnyTensor)

    @classmethod
    def infer(cls, types, props):
        dims = get_ints(props["dims"])
        n = _vector(types[1], "shape")
        rank = len(shape_of(types[0]))
        _check_rank(dims, DYN if n == DYN else max(n, rank), "the broadcast has rank")
        return [like(types[0], dims)]


@irdl_op_definition
class DynamicReshapeOp(ValueShapedOp):
    """Reshape `input` to the run-time `shape` (ONNX Reshape: 0 copies the input's
    dim unless `allowzero`, one -1 is inferred)."""

    name = "qnn.dynamic_reshape"
    input = operand_def(AnyTensor)
    shape = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    allowzero = opt_prop_def(IntegerAttr)
    PROPS: ClassVar[dict[str, object]] = {"dims": None, "allowzero": None}

    @classmethod
    def infer(cls, types, props):
        dims = get_ints(props["dims"])
        _check_rank(dims, _vector(types[1], "shape"), "the shape operand has length")
        return [like(types[0], dims)]


@irdl_op_definition
class DynamicSliceOp(ValueShapedOp):
    """Slice `input` along `axes` with run-time `starts` and `ends` (ONNX Slice:
    negative indices count from the end, bounds clamp)."""

    name = "qnn.dynamic_slice"
    input = operand_def(AnyTensor)
    starts = operand_def(AnyTensor)
    ends = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    axes = prop_def(DenseArrayBase)
    steps = prop_def(DenseArrayBase)
    PROPS: ClassVar[dict[str, object]] = {"dims": None, "axes": None, "steps": None}

    @classmethod
    def infer(cls, types, props):
        dims, axes = get_ints(props["dims"]), get_ints(props["axes"])
        rank = len(shape_of(types[0]))
        _check_rank(dims, rank, "the input has rank")
        for what, t in (("starts", types[1]), ("ends", types[2])):
            n = _vector(t, what)
            if n not in (DYN, len(axes)):
                raise ShapeError(f"{what} has {n} entries for {len(axes)} axes")
        if len(get_ints(props["steps"])) != len(axes) or any(
                not -rank <= a < rank for a in axes):
            raise ShapeError(f"axes {list(axes)} and steps must match, within rank {rank}")
        if 0 in get_ints(props["steps"]):
            raise ShapeError("a step is 0")
        return [like(types[0], dims)]


VALUE_SHAPED = (RangeOp, FillOp, DynamicBroadcastOp, DynamicReshapeOp, DynamicSliceOp)
"""Ops whose result shape an operand's value decides (not their types)."""


# ------------------------------------------------------------------ semantics


def _checked(op, y: np.ndarray) -> np.ndarray:
    """`y`, after checking it against the static entries of `dims`."""
    dims = get_ints(op.properties.get("dims"))
    if len(dims) != y.ndim or any(d not in (DYN, s) for d, s in zip(dims, y.shape, strict=True)):
        name = op.attributes.get("name")
        label = f"'{name.data}' " if name is not None else ""
        raise ShapeError(f"op {label}({op.name}) computed shape {fmt_shape(y.shape)}, but "
                         f"its type says {fmt_shape(dims)}")
    return np.ascontiguousarray(y)


def _scalar(a: np.ndarray):
    return np.asarray(a).reshape(-1)[0]


def _shape_of(op, x):
    return np.array(x.shape, np.int64)


def _range(op, start, limit, delta):
    dtype = np.asarray(start).dtype
    s, lim, d = _scalar(start), _scalar(limit), _scalar(delta)
    n = max(int(np.ceil((lim - s) / d)), 0)  # ONNX's element count
    return _checked(op, (s + d * np.arange(n)).astype(dtype))


def _fill(op, shape, value):
    return _checked(op, np.full([int(d) for d in shape], _scalar(value), np.asarray(value).dtype))


def _dynamic_broadcast(op, x, shape):
    target = np.broadcast_shapes(x.shape, tuple(int(d) for d in shape))
    return _checked(op, np.broadcast_to(x, target))


def _dynamic_reshape(op, x, shape):
    keep_zero = int(op.properties["allowzero"].value.data) if "allowzero" in op.properties else 0
    target = [x.shape[i] if int(d) == 0 and not keep_zero else int(d)
              for i, d in enumerate(shape)]
    return _checked(op, x.reshape(target))


def _dynamic_slice(op, x, starts, ends):
    index = [slice(None)] * x.ndim
    axes, steps = get_ints(op.properties["axes"]), get_ints(op.properties["steps"])
    for b, e, a, s in zip(starts.tolist(), ends.tolist(), axes, steps, strict=True):
        dim = x.shape[a]
        b, e = b + dim if b < 0 else b, e + dim if e < 0 else e
        if s > 0:
            b, e = min(max(b, 0), dim), min(max(e, 0), dim)
        else:
            b, e = min(max(b, 0), dim - 1), min(max(e, -1), dim - 1)
            e = None if e < 0 else e  # -1 clamps to "before the first element"
        index[a] = slice(b, e, s)
    return _checked(op, x[tuple(index)])


EVAL.update({"qnn.shape_of": _shape_of, "qnn.range": _range, "qnn.fill": _fill,
             "qnn.dynamic_broadcast": _dynamic_broadcast,
             "qnn.dynamic_reshape": _dynamic_reshape, "qnn.dynamic_slice": _dynamic_slice})
