"""The `qnn` dialect: value-semantics graph ops on ranked tensors, NCHW layout.

A *layer* that can be quantized is one op with its weights as operands
(`qnn.conv`, `qnn.conv_transpose`, `qnn.dense`, `qnn.matmul`, `qnn.avg_pool`).
Result types are inferred from operands and properties (see `base.QnnOp`).
Shape inference of the layer ops lives in `qnn_shapes.py`; the element-wise ops and
reductions are in `qnn_elementwise.py`, data movement in `qnn_data.py`, run-time
shape ops in `qnn_dynamic.py` (all re-exported here).
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
    get_int,
    like,
    norm_axis,
    shape_of,
    shapes_match,
)
from qcc.dialects.constants import print_constant_value
from qcc.dialects.qnn_elementwise import (
    AbsOp,
    AddOp,
    AndOp,
    ArgMaxOp,
    BinaryOp,
    CastOp,
    ClipOp,
    CompareOp,
    CumSumOp,
    DivOp,
    DropoutOp,
    EqualOp,
    ErfOp,
    ExpOp,
    FloorOp,
    GeluOp,
    GreaterOp,
    HardSigmoidOp,
    HardSwishOp,
    IdentityOp,
    LeakyReluOp,
    LessOp,
    LogOp,
    MaxOp,
    MinOp,
    MulOp,
    NegOp,
    NotOp,
    OrOp,
    PowOp,
    PreluOp,
    ReciprocalOp,
    ReduceMaxOp,
    ReduceMeanOp,
    ReduceMinOp,
    ReduceOp,
    ReduceSumOp,
    ReluOp,
    SigmoidOp,
    SqrtOp,
    SubOp,
    TanhOp,
    UnaryOp,
    WhereOp,
)
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

__all__ = [c.__name__ for c in QNN_OPS] + ["QNN", "LAYER_OPS", "AnyFloat", "UnaryOp", "BinaryOp",
                                           "CompareOp", "ReduceOp"]
