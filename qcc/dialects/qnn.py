"""The `qnn` dialect: value-semantics graph ops on ranked tensors, NCHW layout.

A *layer* that can be quantized is one op with its weights as operands
(`qnn.conv`, `qnn.conv_transpose`, `qnn.dense`, `qnn.matmul`, `qnn.avg_pool`).
Result types are inferred from operands and properties (see `base.QnnOp`).
Shape inference of the layer ops lives in `qnn_shapes.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from xdsl.dialects.builtin import (
    AnyFloat,
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    DenseResourceAttr,
    FloatAttr,
    IntegerAttr,
    IntegerType,
    StringAttr,
    TensorType,
    TypeAttribute,
    i1,
)
from xdsl.ir import Attribute, Dialect
from xdsl.irdl import (
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
    var_operand_def,
    var_result_def,
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
    tensor,
)

AnyTensor = TensorType

# ------------------------------------------------------------------ constant


@irdl_op_definition
class ConstantOp(QnnOp):
    """A constant tensor: weights, biases, shapes. Large ones print as
    `dense_resource<key>` with their bytes in a sidecar file (see `qcc.ir`)."""

    name = "qnn.constant"
    value = prop_def(DenseIntOrFPElementsAttr | DenseResourceAttr)
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
        return [props["value"].type]  # type: ignore[union-attr]

    def print(self, printer: Printer) -> None:
        from qcc.ir import print_constant_value

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
    traits = traits_def(Pure())

    @classmethod
    def infer(cls, types, props):
        shape_of(types[0])
        return [types[0]]


class BinaryOp(QnnOp):
    """Element-wise op of two operands with numpy broadcasting."""

    lhs = operand_def(AnyTensor)
    rhs = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    traits = traits_def(Pure())

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
    traits = traits_def(Pure())
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
    traits = traits_def(Pure())
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
    traits = traits_def(Pure())
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
    traits = traits_def(Pure())

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
    traits = traits_def(Pure())

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
    traits = traits_def(Pure())

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
    traits = traits_def(Pure())

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
    traits = traits_def(Pure())
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
    traits = traits_def(Pure())
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
    traits = traits_def(Pure())
    PROPS: ClassVar[dict[str, object]] = {"axis": -1, "epsilon": 1e-5}

    @classmethod
    def infer(cls, types, props):
        shape = shape_of(types[0])
        axis = norm_axis(get_int(props["axis"]), len(shape))
        for t in types[1:]:
            if shape_of(t) != shape[axis:]:
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
    traits = traits_def(Pure())

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
    traits = traits_def(Pure())
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
    traits = traits_def(Pure())

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


# ---------------------------------------------------------------------- shape


@irdl_op_definition
class ReshapeOp(QnnOp):
    """Reshape to a static `shape` (same number of elements)."""

    name = "qnn.reshape"
    input = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    shape = prop_def(DenseArrayBase)
    traits = traits_def(Pure())
    PROPS: ClassVar[dict[str, object]] = {"shape": None}

    @classmethod
    def infer(cls, types, props):
        src, dst = shape_of(types[0]), get_ints(props["shape"])
        if any(d < 0 for d in dst) or _numel(src) != _numel(dst):
            raise ShapeError(f"cannot reshape {src} into {dst}")
        return [like(types[0], dst)]


@irdl_op_definition
class TransposeOp(QnnOp):
    name = "qnn.transpose"
    input = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    perm = prop_def(DenseArrayBase)
    traits = traits_def(Pure())
    PROPS: ClassVar[dict[str, object]] = {"perm": None}

    @classmethod
    def infer(cls, types, props):
        shape, perm = shape_of(types[0]), get_ints(props["perm"])
        if sorted(perm) != list(range(len(shape))):
            raise ShapeError(f"perm {perm} is not a permutation of rank {len(shape)}")
        return [like(types[0], [shape[p] for p in perm])]


@irdl_op_definition
class BroadcastOp(QnnOp):
    """Broadcast to `shape` (ONNX Expand, numpy rules)."""

    name = "qnn.broadcast"
    input = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    shape = prop_def(DenseArrayBase)
    traits = traits_def(Pure())
    PROPS: ClassVar[dict[str, object]] = {"shape": None}

    @classmethod
    def infer(cls, types, props):
        out = broadcast_shapes(shape_of(types[0]), get_ints(props["shape"]))
        return [like(types[0], out)]


@irdl_op_definition
class ConcatOp(QnnOp):
    name = "qnn.concat"
    inputs = var_operand_def(AnyTensor)
    output = result_def(AnyTensor)
    axis = prop_def(IntegerAttr)
    traits = traits_def(Pure())
    PROPS: ClassVar[dict[str, object]] = {"axis": 0}

    @classmethod
    def make(cls, inputs, *, axis, name=None):
        return super().make(*inputs, axis=axis, name=name)

    @classmethod
    def infer(cls, types, props):
        return [S.concat(types, get_int(props["axis"]))]


@irdl_op_definition
class SplitOp(QnnOp):
    """Split along `axis` into pieces of `sizes`."""

    name = "qnn.split"
    input = operand_def(AnyTensor)
    outputs = var_result_def(AnyTensor)
    axis = prop_def(IntegerAttr)
    sizes = prop_def(DenseArrayBase)
    traits = traits_def(Pure())
    PROPS: ClassVar[dict[str, object]] = {"axis": 0, "sizes": None}

    @classmethod
    def infer(cls, types, props):
        shape = shape_of(types[0])
        axis = norm_axis(get_int(props["axis"]), len(shape))
        sizes = get_ints(props["sizes"])
        if sum(sizes) != shape[axis] or any(s < 0 for s in sizes):
            raise ShapeError(f"sizes {sizes} do not add up to dim {axis} = {shape[axis]}")
        return [like(types[0], shape[:axis] + (s,) + shape[axis + 1:]) for s in sizes]


@irdl_op_definition
class SliceOp(QnnOp):
    """Strided slice, numpy semantics per axis (starts/ends already clamped)."""

    name = "qnn.slice"
    input = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    starts = prop_def(DenseArrayBase)
    ends = prop_def(DenseArrayBase)
    axes = prop_def(DenseArrayBase)
    steps = prop_def(DenseArrayBase)
    traits = traits_def(Pure())
    PROPS: ClassVar[dict[str, object]] = {"starts": None, "ends": None, "axes": None, "steps": None}

    @classmethod
    def infer(cls, types, props):
        return [S.slice_(types[0], *(get_ints(props[k]) for k in
                                     ("starts", "ends", "axes", "steps")))]


@irdl_op_definition
class GatherOp(QnnOp):
    """numpy.take(x, indices, axis)."""

    name = "qnn.gather"
    input = operand_def(AnyTensor)
    indices = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    axis = prop_def(IntegerAttr)
    traits = traits_def(Pure())
    PROPS: ClassVar[dict[str, object]] = {"axis": 0}

    @classmethod
    def infer(cls, types, props):
        shape = shape_of(types[0])
        idx_t = types[1]
        assert isinstance(idx_t, TensorType)
        if not isinstance(idx_t.element_type, IntegerType):
            raise ShapeError(f"indices must be integers, got {idx_t.element_type}")
        axis = norm_axis(get_int(props["axis"]), len(shape))
        return [like(types[0], shape[:axis] + shape_of(idx_t) + shape[axis + 1:])]


@irdl_op_definition
class PadOp(QnnOp):
    """Pad with `pads` (all begins, then all ends); mode constant/reflect/edge."""

    name = "qnn.pad"
    input = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    pads = prop_def(DenseArrayBase)
    mode = prop_def(StringAttr)
    value = prop_def(FloatAttr)
    traits = traits_def(Pure())
    PROPS: ClassVar[dict[str, object]] = {"pads": None, "mode": "constant", "value": 0.0}

    @classmethod
    def infer(cls, types, props):
        shape, pads = shape_of(types[0]), get_ints(props["pads"])
        r = len(shape)
        if len(pads) != 2 * r:
            raise ShapeError(f"pads has {len(pads)} values, expected {2 * r}")
        out = [d + pads[i] + pads[i + r] for i, d in enumerate(shape)]
        if any(d < 0 for d in out):
            raise ShapeError(f"pads {pads} make a negative dimension")
        return [like(types[0], out)]


@irdl_op_definition
class ResizeOp(QnnOp):
    """Resize to the static shape `sizes` with ONNX Resize semantics (opsets 10-19).

    Any axis may be resized. `scales` (one per axis, as the model gave them) set the
    sampling coordinates when present, since ONNX samples at the given scale even
    when an output size is floor(in * scale); without them the scale is out / in.
    `roi` ([starts..., ends...], 2 * rank) is read by `tf_crop_and_resize`, which
    writes `extrapolation_value` where it samples outside the input. `antialias`
    widens the linear/cubic filter by 1 / scale when downsampling; `exclude_outside`
    drops (and renormalizes away) taps outside the input. Absent optional properties
    take the ONNX defaults.
    """

    name = "qnn.resize"
    input = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    sizes = prop_def(DenseArrayBase)
    mode = prop_def(StringAttr)
    coordinate_transformation_mode = prop_def(StringAttr)
    nearest_mode = prop_def(StringAttr)
    scales = opt_prop_def(DenseArrayBase)
    roi = opt_prop_def(DenseArrayBase)
    cubic_coeff_a = opt_prop_def(FloatAttr)
    exclude_outside = opt_prop_def(IntegerAttr)
    extrapolation_value = opt_prop_def(FloatAttr)
    antialias = opt_prop_def(IntegerAttr)
    traits = traits_def(Pure())
    PROPS: ClassVar[dict[str, object]] = {
        "sizes": None, "mode": "nearest", "coordinate_transformation_mode": "half_pixel",
        "nearest_mode": "round_prefer_floor", "scales": None, "roi": None,
        "cubic_coeff_a": None, "exclude_outside": None, "extrapolation_value": None,
        "antialias": None}
    MODES: ClassVar[tuple[str, ...]] = ("nearest", "linear", "cubic")
    COORDINATE_MODES: ClassVar[tuple[str, ...]] = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel",
                        "align_corners", "asymmetric", "tf_crop_and_resize")
    NEAREST_MODES: ClassVar[tuple[str, ...]] = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")

    @classmethod
    def make(cls, *operands, name=None, **props):
        """As `QnnOp.make`; `scales` and `roi` may be float sequences (array<f64>)."""
        from xdsl.dialects.builtin import f64

        for key in ("scales", "roi"):
            value = props.get(key)
            if value is not None and not isinstance(value, Attribute):
                props[key] = DenseArrayBase.from_list(f64, [float(v) for v in value])
        return super().make(*operands, name=name, **props)

    @classmethod
    def infer(cls, types, props):
        shape, sizes = shape_of(types[0]), get_ints(props["sizes"])
        rank = len(shape)
        if len(sizes) != rank or any(d < 0 for d in sizes):
            raise ShapeError(f"sizes {list(sizes)} must be {rank} non-negative sizes for "
                             f"input shape {shape}")
        for key, allowed in (("mode", cls.MODES),
                             ("coordinate_transformation_mode", cls.COORDINATE_MODES),
                             ("nearest_mode", cls.NEAREST_MODES)):
            value = props.get(key)
            if isinstance(value, StringAttr) and value.data not in allowed:
                raise ShapeError(f"{key} '{value.data}' is not one of {', '.join(allowed)}")
        scales = cls.floats(props.get("scales"))
        if scales is not None:
            if len(scales) != rank:
                raise ShapeError(f"scales has {len(scales)} values, expected {rank}")
            if not all(s > 0 for s in scales):
                raise ShapeError(f"scales {list(scales)} must be positive")
        roi = cls.floats(props.get("roi"))
        if roi is not None and len(roi) != 2 * rank:
            raise ShapeError(f"roi has {len(roi)} values, expected {2 * rank}")
        return [like(types[0], sizes)]

    @staticmethod
    def floats(attr: Attribute | None) -> tuple[float, ...] | None:
        """The values of an optional float array property (`scales`, `roi`)."""
        if attr is None:
            return None
        assert isinstance(attr, DenseArrayBase)
        return tuple(float(v) for v in attr.get_values())


def _type_of(v) -> TensorType:
    t = v.results[0].type if hasattr(v, "results") else v.type
    assert isinstance(t, TensorType)
    return t


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


QNN_OPS = [
    ConstantOp, ConvOp, ConvTransposeOp, DenseOp, MatmulOp, AvgPoolOp, MaxPoolOp,
    GlobalAvgPoolOp, BatchNormOp, ScaleOp, LayerNormOp, SoftmaxOp, LrnOp,
    ReluOp, LeakyReluOp, ClipOp, SigmoidOp, TanhOp, ErfOp, HardSigmoidOp, HardSwishOp,
    SqrtOp, ExpOp, LogOp, AbsOp, NegOp, ReciprocalOp, IdentityOp, DropoutOp, FloorOp,
    NotOp, GeluOp, PreluOp, CastOp,
    AddOp, SubOp, MulOp, DivOp, PowOp, MaxOp, MinOp, AndOp, OrOp, EqualOp, LessOp,
    GreaterOp, WhereOp,
    ReduceMeanOp, ReduceSumOp, ReduceMaxOp, ReduceMinOp,
    ReshapeOp, TransposeOp, BroadcastOp, ConcatOp, SplitOp, SliceOp, GatherOp, PadOp,
    ResizeOp,
]

LAYER_OPS = (ConvOp, ConvTransposeOp, DenseOp, MatmulOp, AvgPoolOp)
"""Ops that quantize as a layer: weights (if any) are operands."""

QNN = Dialect("qnn", QNN_OPS, [])

__all__ = [c.__name__ for c in QNN_OPS] + ["QNN", "LAYER_OPS", "AnyFloat"]
