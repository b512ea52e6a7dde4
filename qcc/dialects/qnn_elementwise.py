"""Element-wise ops of the `qnn` dialect (activations, arithmetic, comparisons,
cast, where) and reductions (reduce_*, cumsum, argmax), with their base op kinds.
Re-exported by `qcc.dialects.qnn`."""

from __future__ import annotations

from typing import ClassVar

from xdsl.dialects.builtin import (
    DenseArrayBase,
    FloatAttr,
    IntegerAttr,
    StringAttr,
    TensorType,
    TypeAttribute,
    i1,
    i64,
)
from xdsl.ir import Attribute
from xdsl.irdl import (
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
)
from xdsl.traits import Pure

from qcc.dialects.base import (
    QnnOp,
    ShapeError,
    broadcast_shapes,
    get_int,
    get_ints,
    like,
    norm_axis,
    shape_of,
    tensor,
)
from qcc.dialects.qnn_eval import Folds

AnyTensor = TensorType

# ------------------------------------------------------------ base op kinds


class UnaryOp(QnnOp):
    """Element-wise op of one operand; the result has the operand's type."""

    input = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    traits = traits_def(Pure(), Folds())

    @classmethod
    def infer(cls, types, props):
        shape_of(types[0])
        return [types[0]]


class BinaryOp(QnnOp):
    """Element-wise op of two operands with numpy broadcasting."""

    lhs = operand_def(AnyTensor)
    rhs = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    traits = traits_def(Pure(), Folds())

    @classmethod
    def infer(cls, types, props):
        a, b = types
        _same_element(a, b)
        return [like(a, broadcast_shapes(shape_of(a), shape_of(b)))]


class CompareOp(BinaryOp):
    """Element-wise comparison; the result is i1."""

    @classmethod
    def infer(cls, types, props):
        a, b = types
        _same_element(a, b)
        return [tensor(broadcast_shapes(shape_of(a), shape_of(b)), i1)]


class ReduceOp(QnnOp):
    """Reduction over `axes` (all when empty), keeping them as 1 when `keepdims`."""

    input = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    axes = prop_def(DenseArrayBase)
    keepdims = prop_def(IntegerAttr)
    traits = traits_def(Pure(), Folds())
    PROPS: ClassVar[dict[str, object]] = {"axes": (), "keepdims": True}

    @classmethod
    def infer(cls, types, props):
        shape = shape_of(types[0])
        axes = {norm_axis(a, len(shape)) for a in get_ints(props["axes"])} or set(
            range(len(shape)))
        keep = get_int(props["keepdims"]) != 0
        out = [1 if i in axes else d for i, d in enumerate(shape) if keep or i not in axes]
        return [like(types[0], out)]


def _same_element(a: Attribute, b: Attribute) -> None:
    assert isinstance(a, TensorType) and isinstance(b, TensorType)
    if a.element_type != b.element_type:
        raise ShapeError(f"element types differ: {a.element_type} and {b.element_type}")

# ---------------------------------------------------------------- activations


def _unary(op_name: str, doc: str, **props: object) -> type[UnaryOp]:
    """An element-wise op class; `props` are float properties with defaults."""
    fields = {k: prop_def(FloatAttr) for k in props}
    cls = type(op_name.split(".")[1].title().replace("_", "") + "Op", (UnaryOp,),
               {"name": op_name, "__doc__": doc, "PROPS": dict(props), **fields,
                "__module__": __name__,
                "__annotations__": {"PROPS": ClassVar[dict[str, object]]}})
    return irdl_op_definition(cls)


ReluOp = _unary("qnn.relu", "max(x, 0)")
LeakyReluOp = _unary("qnn.leaky_relu", "x if x >= 0 else alpha * x", alpha=0.01)
ClipOp = _unary("qnn.clip", "min(max(x, min), max); ReLU6 is clip 0..6", min=0.0, max=6.0)
SigmoidOp = _unary("qnn.sigmoid", "1 / (1 + exp(-x))")
TanhOp = _unary("qnn.tanh", "tanh(x)")
ErfOp = _unary("qnn.erf", "the error function")
HardSigmoidOp = _unary("qnn.hard_sigmoid", "max(0, min(1, alpha * x + beta))",
                       alpha=0.2, beta=0.5)
HardSwishOp = _unary("qnn.hard_swish", "x * max(0, min(1, x / 6 + 1 / 2))")
SqrtOp = _unary("qnn.sqrt", "square root")
ExpOp = _unary("qnn.exp", "exponential")
LogOp = _unary("qnn.log", "natural logarithm")
AbsOp = _unary("qnn.abs", "absolute value")
NegOp = _unary("qnn.neg", "-x")
ReciprocalOp = _unary("qnn.reciprocal", "1 / x")
IdentityOp = _unary("qnn.identity", "x (removed by canonicalize)")
DropoutOp = _unary("qnn.dropout", "x at inference (removed by canonicalize)", ratio=0.5)
FloorOp = _unary("qnn.floor", "round towards -inf")
NotOp = _unary("qnn.not", "logical not (i1)")


@irdl_op_definition
class GeluOp(UnaryOp):
    """x * Phi(x); `approximate` is "none" or "tanh"."""

    name = "qnn.gelu"
    approximate = prop_def(StringAttr)
    PROPS: ClassVar[dict[str, object]] = {"approximate": "none"}


@irdl_op_definition
class PreluOp(QnnOp):
    """x if x >= 0 else slope * x; slope broadcasts against x."""

    name = "qnn.prelu"
    input = operand_def(AnyTensor)
    slope = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    traits = traits_def(Pure(), Folds())

    @classmethod
    def infer(cls, types, props):
        x = shape_of(types[0])
        if broadcast_shapes(x, shape_of(types[1])) != x:
            raise ShapeError(f"slope {shape_of(types[1])} does not broadcast to {x}")
        return [types[0]]


@irdl_op_definition
class CastOp(QnnOp):
    """Element type conversion (float <-> int, bool, narrow floats). `saturate`
    (float8 targets) clips out-of-range values to the largest finite value."""

    name = "qnn.cast"
    input = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    to = prop_def(TypeAttribute)
    saturate = opt_prop_def(IntegerAttr)
    traits = traits_def(Pure(), Folds())
    PROPS: ClassVar[dict[str, object]] = {"to": None, "saturate": None}

    @classmethod
    def infer(cls, types, props):
        return [tensor(shape_of(types[0]), props["to"])]

# ---------------------------------------------------------- binary / compare


def _binary(op_name: str, doc: str, base: type[BinaryOp] = BinaryOp) -> type[BinaryOp]:
    cls = type(op_name.split(".")[1].title().replace("_", "") + "Op", (base,),
               {"name": op_name, "__doc__": doc, "__module__": __name__})
    return irdl_op_definition(cls)


AddOp = _binary("qnn.add", "a + b")
SubOp = _binary("qnn.sub", "a - b")
MulOp = _binary("qnn.mul", "a * b")
DivOp = _binary("qnn.div", "a / b (integer division truncates)")
PowOp = _binary("qnn.pow", "a ** b")
MaxOp = _binary("qnn.max", "element-wise maximum")
MinOp = _binary("qnn.min", "element-wise minimum")
AndOp = _binary("qnn.and", "logical and (i1)")
OrOp = _binary("qnn.or", "logical or (i1)")
EqualOp = _binary("qnn.equal", "a == b", CompareOp)
LessOp = _binary("qnn.less", "a < b", CompareOp)
GreaterOp = _binary("qnn.greater", "a > b", CompareOp)


@irdl_op_definition
class WhereOp(QnnOp):
    """cond ? a : b with broadcasting."""

    name = "qnn.where"
    cond = operand_def(AnyTensor)
    lhs = operand_def(AnyTensor)
    rhs = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    traits = traits_def(Pure(), Folds())

    @classmethod
    def infer(cls, types, props):
        c, a, b = types
        assert isinstance(c, TensorType)
        if c.element_type != i1:
            raise ShapeError(f"condition must be i1, got {c.element_type}")
        _same_element(a, b)
        return [like(a, broadcast_shapes(shape_of(c), shape_of(a), shape_of(b)))]

# ----------------------------------------------------------------- reductions


@irdl_op_definition
class ReduceMeanOp(ReduceOp):
    name = "qnn.reduce_mean"


@irdl_op_definition
class ReduceSumOp(ReduceOp):
    name = "qnn.reduce_sum"


@irdl_op_definition
class ReduceMaxOp(ReduceOp):
    name = "qnn.reduce_max"


@irdl_op_definition
class ReduceMinOp(ReduceOp):
    name = "qnn.reduce_min"


@irdl_op_definition
class CumSumOp(QnnOp):
    """Cumulative sum along `axis` (ONNX CumSum); `exclusive` leaves each element out
    of its own sum, `reverse` sums from the end."""

    name = "qnn.cumsum"
    input = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    axis = prop_def(IntegerAttr)
    exclusive = prop_def(IntegerAttr)
    reverse = prop_def(IntegerAttr)
    traits = traits_def(Pure(), Folds())
    PROPS: ClassVar[dict[str, object]] = {"axis": 0, "exclusive": False, "reverse": False}

    @classmethod
    def infer(cls, types, props):
        norm_axis(get_int(props["axis"]), len(shape_of(types[0])))
        return [types[0]]


@irdl_op_definition
class ArgMaxOp(QnnOp):
    """Index (i64) of the largest element along `axis` (ONNX ArgMax). `keepdims` keeps
    the axis as 1; `select_last_index` picks the last of equal maxima, else the first."""

    name = "qnn.argmax"
    input = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    axis = prop_def(IntegerAttr)
    keepdims = prop_def(IntegerAttr)
    select_last_index = prop_def(IntegerAttr)
    traits = traits_def(Pure(), Folds())
    PROPS: ClassVar[dict[str, object]] = {"axis": 0, "keepdims": True,
                                          "select_last_index": False}

    @classmethod
    def infer(cls, types, props):
        shape = shape_of(types[0])
        if not shape:
            raise ShapeError("the input must have rank >= 1")
        axis = norm_axis(get_int(props["axis"]), len(shape))
        keep = get_int(props["keepdims"]) != 0
        out = [1 if i == axis else d for i, d in enumerate(shape) if keep or i != axis]
        return [tensor(out, i64)]
