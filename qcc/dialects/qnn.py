"""The `qnn` dialect: value-semantics graph ops on ranked tensors, NCHW layout.

A *layer* that can be quantized is one op with its weights as operands
(`qnn.conv`, `qnn.conv_transpose`, `qnn.dense`, `qnn.matmul`, `qnn.avg_pool`).
Result types are inferred from operands and properties (see `base.QnnOp`).
Shape inference of the layer ops lives in `qnn_shapes.py`.
"""

from __future__ import annotations

from typing import ClassVar

from xdsl.dialect_interfaces.constant_materialization import ConstantMaterializationInterface
from xdsl.dialects.builtin import (
    AnyFloat,
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    DenseResourceAttr,
    FloatAttr,
    IntegerAttr,
    StringAttr,
    TensorType,
    TypeAttribute,
    i1,
    i64,
)
from xdsl.ir import Attribute, Dialect, Operation
from xdsl.irdl import (
    base,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
)
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import ConstantLike, Pure

from qcc.dialects import qnn_shapes as S
from qcc.dialects.base import (
    QnnOp,
    ShapeError,
    broadcast_shapes,
    get_int,
    get_ints,
    like,
    norm_axis,
    shape_of,
    shapes_match,
    tensor,
)
from qcc.dialects.constants import print_constant_value
from qcc.dialects.qnn_eval import Folds

AnyTensor = TensorType

# ------------------------------------------------------------------ constant


@irdl_op_definition
class ConstantOp(QnnOp):
    """A constant tensor: weights, biases, shapes. Large ones print as
    `dense_resource<key>` with their bytes in a sidecar file (see `qcc.ir`)."""

    name = "qnn.constant"
    value = prop_def(base(DenseIntOrFPElementsAttr) | base(DenseResourceAttr))
    output = result_def(AnyTensor)
    traits = traits_def(Pure(), ConstantLike())
    assembly_format = None  # custom print/parse below

    def __init__(self, value: DenseIntOrFPElementsAttr | DenseResourceAttr,
                 name: str | None = None):
        attributes = {"name": StringAttr(name)} if name else {}
        super().__init__(properties={"value": value}, result_types=[value.type],
                         attributes=attributes)

    @classmethod
    def infer(cls, types, props):
        return [props["value"].type]

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        print_constant_value(printer, self.value)
        printer.print_op_attributes(self.attributes)

    @classmethod
    def parse(cls, parser: Parser) -> ConstantOp:
        value = parser.parse_attribute()
        if not isinstance(value, DenseIntOrFPElementsAttr | DenseResourceAttr):
            parser.raise_error("expected dense<...> or dense_resource<...> : tensor<...>")
        attrs = parser.parse_optional_attr_dict()
        op = cls(value)
        op.attributes.update(attrs)
        return op


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


# -------------------------------------------------------------------- layers


@irdl_op_definition
class ConvOp(QnnOp):
    """N-d convolution (1-3 spatial dims). weight [O, C/groups, *K]; pads as
    ONNX (all begins, then all ends)."""

    name = "qnn.conv"
    input = operand_def(AnyTensor)
    weight = operand_def(AnyTensor)
    bias = opt_operand_def(AnyTensor)
    output = result_def(AnyTensor)
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    dilations = prop_def(DenseArrayBase)
    groups = prop_def(IntegerAttr)
    traits = traits_def(Pure(), Folds())
    PROPS: ClassVar[dict[str, object]] = {"strides": None, "pads": None, "dilations": None, "groups": 1}

    @classmethod
    def make(cls, x, w, b=None, *, name=None, strides=None, pads=None, dilations=None,
              groups=1):
        d = len(_type_of(w).get_shape()) - 2
        return super().make(x, w, b, name=name, strides=strides or (1,) * d,
                             pads=pads or (0,) * (2 * d), dilations=dilations or (1,) * d,
                             groups=groups)

    @classmethod
    def infer(cls, types, props):
        return [S.integer_layer(S.conv(types, props, transpose=False), types, 0, 1)]


@irdl_op_definition
class ConvTransposeOp(QnnOp):
    """N-d transposed convolution. weight [C, O/groups, *K]."""

    name = "qnn.conv_transpose"
    input = operand_def(AnyTensor)
    weight = operand_def(AnyTensor)
    bias = opt_operand_def(AnyTensor)
    output = result_def(AnyTensor)
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    dilations = prop_def(DenseArrayBase)
    output_padding = prop_def(DenseArrayBase)
    groups = prop_def(IntegerAttr)
    traits = traits_def(Pure(), Folds())
    PROPS: ClassVar[dict[str, object]] = {"strides": None, "pads": None, "dilations": None, "output_padding": None,
             "groups": 1}

    @classmethod
    def make(cls, x, w, b=None, *, name=None, strides=None, pads=None, dilations=None,
              output_padding=None, groups=1):
        d = len(_type_of(w).get_shape()) - 2
        return super().make(x, w, b, name=name, strides=strides or (1,) * d,
                             pads=pads or (0,) * (2 * d), dilations=dilations or (1,) * d,
                             output_padding=output_padding or (0,) * d, groups=groups)

    @classmethod
    def infer(cls, types, props):
        return [S.integer_layer(S.conv(types, props, transpose=True), types, 1, 1,
                                get_int(props.get("groups"), 1))]


@irdl_op_definition
class DenseOp(QnnOp):
    """Fully connected: y[..., N] = x[..., K] @ weight[N, K]^T + bias[N]."""

    name = "qnn.dense"
    input = operand_def(AnyTensor)
    weight = operand_def(AnyTensor)
    bias = opt_operand_def(AnyTensor)
    output = result_def(AnyTensor)
    traits = traits_def(Pure(), Folds())

    @classmethod
    def infer(cls, types, props):
        out = S.dense(types)
        return [S.integer_layer(out, types, 0, len(out.get_shape()) - 1)]


@irdl_op_definition
class MatmulOp(QnnOp):
    """Matrix product of two activations, numpy `matmul` broadcasting."""

    name = "qnn.matmul"
    lhs = operand_def(AnyTensor)
    rhs = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    traits = traits_def(Pure(), Folds())

    @classmethod
    def infer(cls, types, props):
        return [S.integer_matmul(S.matmul(types), types)]


class PoolOp(QnnOp):
    input = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    kernel = prop_def(DenseArrayBase)
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    ceil_mode = prop_def(IntegerAttr)
    traits = traits_def(Pure(), Folds())

    @classmethod
    def make(cls, x, *, kernel, name=None, strides=None, pads=None, **props):
        d = len(kernel)
        return super().make(x, name=name, kernel=kernel, strides=strides or (1,) * d,
                             pads=pads or (0,) * (2 * d), **props)

    @classmethod
    def infer(cls, types, props):
        return [S.pool(types[0], props)]


@irdl_op_definition
class AvgPoolOp(PoolOp):
    """Average pooling; `count_include_pad` as ONNX."""

    name = "qnn.avg_pool"
    count_include_pad = prop_def(IntegerAttr)
    dilations = opt_prop_def(DenseArrayBase)
    PROPS: ClassVar[dict[str, object]] = {"kernel": None, "strides": None, "pads": None, "ceil_mode": False,
             "count_include_pad": False, "dilations": None}

    @classmethod
    def infer(cls, types, props):
        return [S.integer_pool(S.pool(types[0], props))]


@irdl_op_definition
class MaxPoolOp(PoolOp):
    name = "qnn.max_pool"
    dilations = opt_prop_def(DenseArrayBase)
    PROPS: ClassVar[dict[str, object]] = {"kernel": None, "strides": None, "pads": None, "ceil_mode": False,
             "dilations": None}


@irdl_op_definition
class GlobalAvgPoolOp(QnnOp):
    """Mean over all spatial dims, kept as 1."""

    name = "qnn.global_avg_pool"
    input = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    traits = traits_def(Pure(), Folds())

    @classmethod
    def infer(cls, types, props):
        shape = shape_of(types[0])
        if len(shape) < 3:
            raise ShapeError(f"input must be N x C x spatial..., got rank {len(shape)}")
        return [like(types[0], shape[:2] + (1,) * (len(shape) - 2))]


# ------------------------------------------------------------- normalization


@irdl_op_definition
class BatchNormOp(QnnOp):
    """Inference batch norm over axis 1: (x - mean) / sqrt(var + eps) * scale + bias."""

    name = "qnn.batch_norm"
    input = operand_def(AnyTensor)
    scale = operand_def(AnyTensor)
    bias = operand_def(AnyTensor)
    mean = operand_def(AnyTensor)
    var = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    epsilon = prop_def(FloatAttr)
    traits = traits_def(Pure(), Folds())
    PROPS: ClassVar[dict[str, object]] = {"epsilon": 1e-5}

    @classmethod
    def infer(cls, types, props):
        return [S.per_channel(types, ("scale", "bias", "mean", "var"))]


@irdl_op_definition
class ScaleOp(QnnOp):
    """Per-channel affine over `axis` (default 1): x * scale + bias (Caffe Scale)."""

    name = "qnn.scale"
    input = operand_def(AnyTensor)
    scale = operand_def(AnyTensor)
    bias = opt_operand_def(AnyTensor)
    output = result_def(AnyTensor)
    axis = prop_def(IntegerAttr)
    traits = traits_def(Pure(), Folds())
    PROPS: ClassVar[dict[str, object]] = {"axis": 1}

    @classmethod
    def infer(cls, types, props):
        return [S.per_channel(types, ("scale", "bias"), get_int(props["axis"]))]


@irdl_op_definition
class LayerNormOp(QnnOp):
    """Normalize over dims `axis`..end, then affine scale (and optional bias) of those dims."""

    name = "qnn.layer_norm"
    input = operand_def(AnyTensor)
    scale = operand_def(AnyTensor)
    bias = opt_operand_def(AnyTensor)
    output = result_def(AnyTensor)
    axis = prop_def(IntegerAttr)
    epsilon = prop_def(FloatAttr)
    traits = traits_def(Pure(), Folds())
    PROPS: ClassVar[dict[str, object]] = {"axis": -1, "epsilon": 1e-5}

    @classmethod
    def infer(cls, types, props):
        shape = shape_of(types[0])
        axis = norm_axis(get_int(props["axis"]), len(shape))
        for t in types[1:]:
            if not shapes_match(shape_of(t), shape[axis:]):
                raise ShapeError(f"scale/bias shape {shape_of(t)} must be {shape[axis:]}")
        return [types[0]]


@irdl_op_definition
class SoftmaxOp(UnaryOp):
    name = "qnn.softmax"
    axis = prop_def(IntegerAttr)
    PROPS: ClassVar[dict[str, object]] = {"axis": -1}

    @classmethod
    def infer(cls, types, props):
        norm_axis(get_int(props["axis"]), len(shape_of(types[0])))
        return [types[0]]


@irdl_op_definition
class LrnOp(UnaryOp):
    """Local response normalization across channels (ONNX LRN)."""

    name = "qnn.lrn"
    size = prop_def(IntegerAttr)
    alpha = prop_def(FloatAttr)
    beta = prop_def(FloatAttr)
    bias = prop_def(FloatAttr)
    PROPS: ClassVar[dict[str, object]] = {"size": 5, "alpha": 1e-4, "beta": 0.75, "bias": 1.0}


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


# ------------------------------------------------------- data movement (qnn_data)

from qcc.dialects.qnn_data import (  # noqa: E402
    BroadcastOp,
    ConcatOp,
    GatherElementsOp,
    GatherNdOp,
    GatherOp,
    PadOp,
    ReshapeOp,
    ResizeOp,
    SliceOp,
    SplitOp,
    TransposeOp,
)
from qcc.dialects.qnn_dynamic import (  # noqa: E402
    DynamicBroadcastOp,
    DynamicReshapeOp,
    DynamicSliceOp,
    FillOp,
    RangeOp,
    ShapeOfOp,
)


def _type_of(v) -> TensorType:
    t = v.results[0].type if hasattr(v, "results") else v.type
    assert isinstance(t, TensorType)
    return t


QNN_OPS: list[type[Operation]] = [
    ConstantOp, ConvOp, ConvTransposeOp, DenseOp, MatmulOp, AvgPoolOp, MaxPoolOp,
    GlobalAvgPoolOp, BatchNormOp, ScaleOp, LayerNormOp, SoftmaxOp, LrnOp,
    ReluOp, LeakyReluOp, ClipOp, SigmoidOp, TanhOp, ErfOp, HardSigmoidOp, HardSwishOp,
    SqrtOp, ExpOp, LogOp, AbsOp, NegOp, ReciprocalOp, IdentityOp, DropoutOp, FloorOp,
    NotOp, GeluOp, PreluOp, CastOp,
    AddOp, SubOp, MulOp, DivOp, PowOp, MaxOp, MinOp, AndOp, OrOp, EqualOp, LessOp,
    GreaterOp, WhereOp,
    ReduceMeanOp, ReduceSumOp, ReduceMaxOp, ReduceMinOp, CumSumOp, ArgMaxOp,
    ReshapeOp, TransposeOp, BroadcastOp, ConcatOp, SplitOp, SliceOp, GatherOp,
    GatherElementsOp, GatherNdOp, PadOp, ResizeOp,
    ShapeOfOp, RangeOp, FillOp, DynamicBroadcastOp, DynamicReshapeOp, DynamicSliceOp,
]

LAYER_OPS = (ConvOp, ConvTransposeOp, DenseOp, MatmulOp, AvgPoolOp)
"""Ops that quantize as a layer: weights (if any) are operands."""

class _Materialize(ConstantMaterializationInterface):
    """Folded results become `qnn.constant`s."""

    def materialize_constant(self, value: Attribute, type: Attribute) -> Operation | None:
        if isinstance(value, DenseIntOrFPElementsAttr) and value.type == type:
            return ConstantOp(value)
        return None


QNN = Dialect("qnn", QNN_OPS, [], [_Materialize()])

__all__ = [c.__name__ for c in QNN_OPS] + ["QNN", "LAYER_OPS", "AnyFloat"]
