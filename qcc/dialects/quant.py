"""The `quant` dialect: quantized element types and the ops that produce and use them.

Types: `!quant.uniform<i8:f32, 0.0125:-3>` (per-tensor) and
`!quant.uniform<i8:f32:0, {0.1,0.2:1}>` (per-axis), MLIR's quant syntax; the
`UniformQuantizedType` and its helpers are defined in `quant_types.py` and
re-exported here.

Ops (generic syntax of `base.QnnOp`, result types inferred):

- `quant.observe`: a calibration point (which statistic, which algorithm).
- `quant.fake_quant`: quantize-dequantize in float; parameters from `qtype`, or,
  for range learning, from two extra operands `%scale, %zero_point`.
- `quant.quantize` / `quant.dequantize` / `quant.requantize`: float <-> quantized
  tensors and quantized -> quantized.
"""

from __future__ import annotations

from typing import ClassVar

from xdsl.dialects.builtin import DictionaryAttr, IntegerAttr, StringAttr, TensorType
from xdsl.ir import Attribute, Dialect, Operation, SSAValue
from xdsl.irdl import (
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.traits import Pure

from qcc.dialects.base import DYN, QnnOp, ShapeError, get_bool, get_int, get_str, shape_of, tensor
from qcc.dialects.quant_types import (
    EXPRESSED_TYPES,
    STORAGE_BITS,
    QuantTypeError,
    UniformQuantizedType,
    format_float,
    quantized_element,
    storage_range,
)

OBSERVER_KINDS = ("activation", "weight")
"""Statistics a `quant.observe` may ask for (IFMR/HFMG/ARQ are AMCT's)."""


# ------------------------------------------------------------------- op rules


def _float_tensor(t: Attribute, what: str) -> tuple[int, ...]:
    shape = shape_of(t)
    assert isinstance(t, TensorType)
    if not isinstance(t.element_type, EXPRESSED_TYPES):
        raise ShapeError(f"{what} must be a tensor of f32, f16 or bf16, got {t}")
    return shape


def _quantized_tensor(t: Attribute, what: str) -> tuple[tuple[int, ...], UniformQuantizedType]:
    shape = shape_of(t)
    qtype = quantized_element(t)
    if qtype is None:
        raise ShapeError(f"{what} must be a tensor of !quant.uniform, got {t}")
    _check_fits(qtype, shape, what)
    return shape, qtype


def _check_fits(qtype: UniformQuantizedType, shape: tuple[int, ...], what: str) -> None:
    """A per-axis type's axis is inside the rank and has one scale per index."""
    axis = qtype.axis
    if axis is None:
        return
    if axis >= len(shape):
        raise ShapeError(f"quantized axis {axis} of {what} is out of range for rank "
                         f"{len(shape)}")
    if shape[axis] != DYN and len(qtype.scales) != shape[axis]:
        raise ShapeError(f"{what} has {len(qtype.scales)} per-axis scales but dimension "
                         f"{axis} has size {shape[axis]}")


def _expressed_matches(t: Attribute, qtype: UniformQuantizedType, what: str) -> None:
    assert isinstance(t, TensorType)
    if t.element_type != qtype.expressed_type:
        raise ShapeError(f"{what} element type {t.element_type} differs from the "
                         f"expressed type {qtype.expressed_type} of qtype")


def _qtype(props: dict[str, Attribute]) -> UniformQuantizedType:
    qtype = props.get("qtype")
    if not isinstance(qtype, UniformQuantizedType):
        raise ShapeError("property qtype must be a !quant.uniform type")
    return qtype


# ------------------------------------------------------------------------ ops


@irdl_op_definition
class ObserveOp(QnnOp):
    """A calibration point: collect statistics of `input` for the quantizer `id`.

    `kind` is what is observed (activation or weight), `algorithm` how the range
    is computed (with its parameters in the optional dictionary `params`; required:
    which names exist and which is the default is the algorithm registry's to say,
    `qcc.quant.algorithms`),
    `bits`/`symmetric`/`narrow_range` the target grid, `axis` the channel axis
    (-1: per-tensor). The result is the input, unchanged.
    Not `Pure`: a calibration point stays until `qcc-calibrate` replaces it.
    """

    name = "quant.observe"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    kind = prop_def(StringAttr)
    algorithm = prop_def(StringAttr)
    bits = prop_def(IntegerAttr)
    symmetric = prop_def(IntegerAttr)
    axis = prop_def(IntegerAttr)
    narrow_range = prop_def(IntegerAttr)
    id = prop_def(StringAttr)
    params = opt_prop_def(DictionaryAttr)
    PROPS: ClassVar[dict[str, object]] = {
        "kind": "activation", "algorithm": None, "bits": 8, "symmetric": False,
        "axis": -1, "narrow_range": False, "id": None, "params": None,
    }

    @classmethod
    def infer(cls, types, props):
        shape = _float_tensor(types[0], "the observed value")
        kind = get_str(props.get("kind"))
        if kind not in OBSERVER_KINDS:
            raise ShapeError(f"kind must be one of {', '.join(OBSERVER_KINDS)}, got '{kind}'")
        algorithm = get_str(props.get("algorithm"))
        if not algorithm:  # which names exist is the algorithm registry's to say
            raise ShapeError("algorithm must name a calibration algorithm "
                             "(qcc.quant.algorithms)")
        bits = get_int(props.get("bits"))
        if not 2 <= bits <= 16:
            raise ShapeError(f"bits must be between 2 and 16, got {bits}")
        axis = get_int(props.get("axis"), -1)
        if axis != -1 and not 0 <= axis < len(shape):
            raise ShapeError(f"axis {axis} is out of range for rank {len(shape)} "
                             "(-1 means per-tensor)")
        if not get_str(props.get("id")):
            raise ShapeError("id must name the quantizer, e.g. \"conv1.input\"")
        return [types[0]]

    @property
    def per_channel(self) -> bool:
        return get_int(self.axis) != -1

    @property
    def is_symmetric(self) -> bool:
        return get_bool(self.symmetric)


@irdl_op_definition
class FakeQuantOp(QnnOp):
    """Quantize-dequantize in float: `qtype.fake_quant(x)`; result type = input type.

        quant.fake_quant %x {qtype = !quant.uniform<i8:f32, 0.1>}
        quant.fake_quant %x, %scale, %zero_point {qtype = ...}   (range learning)

    With the two `learned` operands (tensors of the expressed type, shape [] or
    [1] per-tensor, [C] per-axis) they replace the scales and zero points of
    `qtype`, which still supplies the storage range, axis and expressed type (its
    own scales are the values the operands started from); a learned zero point is
    a float, rounded half to even where it is applied. The operands are one
    variadic group of length 0 or 2: one op for passes to match, and no
    AttrSizedOperandSegments (which two optional operands would need in xDSL).
    """

    name = "quant.fake_quant"
    input = operand_def(TensorType)
    learned = var_operand_def(TensorType)
    output = result_def(TensorType)
    qtype = prop_def(UniformQuantizedType)
    traits = traits_def(Pure())
    PROPS: ClassVar[dict[str, object]] = {"qtype": None}

    @classmethod
    def infer(cls, types, props):
        qtype = _qtype(props)
        shape = _float_tensor(types[0], "the input")
        _expressed_matches(types[0], qtype, "the input")
        _check_fits(qtype, shape, "the input")
        if len(types) not in (1, 3):
            raise ShapeError("takes either no or both of the scale and zero_point operands")
        expected = ((), (1,)) if qtype.axis is None else ((len(qtype.scales),),)
        for what, t in zip(("scale", "zero_point"), types[1:], strict=False):
            if shape_of(t) not in expected or t.element_type != qtype.expressed_type:
                want = " or ".join(str(tensor(s, qtype.expressed_type)) for s in expected)
                raise ShapeError(f"the {what} operand must be {want}, got {t}")
        return [types[0]]

    @classmethod
    def _segments(cls, values):
        return [values[0], [v for v in values[1:] if v is not None]]

    @property
    def scale_operand(self) -> SSAValue | None:
        return self.learned[0] if self.learned else None

    @property
    def zero_point_operand(self) -> SSAValue | None:
        return self.learned[1] if self.learned else None


@irdl_op_definition
class QuantizeOp(QnnOp):
    """Float tensor to `tensor<shape x qtype>`: `qtype.quantize(x)`."""

    name = "quant.quantize"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    qtype = prop_def(UniformQuantizedType)
    traits = traits_def(Pure())
    PROPS: ClassVar[dict[str, object]] = {"qtype": None}

    @classmethod
    def infer(cls, types, props):
        qtype = _qtype(props)
        shape = _float_tensor(types[0], "the input")
        _expressed_matches(types[0], qtype, "the input")
        _check_fits(qtype, shape, "the input")
        return [tensor(shape, qtype)]


@irdl_op_definition
class DequantizeOp(QnnOp):
    """Quantized tensor to a tensor of its expressed type: `qtype.dequantize(q)`."""

    name = "quant.dequantize"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    traits = traits_def(Pure())

    @classmethod
    def infer(cls, types, props):
        shape, qtype = _quantized_tensor(types[0], "the input")
        return [tensor(shape, qtype.expressed_type)]


@irdl_op_definition
class RequantizeOp(QnnOp):
    """Quantized tensor to another quantized type of the same expressed type:
    `qtype.quantize(input_type.dequantize(q))`."""

    name = "quant.requantize"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    qtype = prop_def(UniformQuantizedType)
    traits = traits_def(Pure())
    PROPS: ClassVar[dict[str, object]] = {"qtype": None}

    @classmethod
    def infer(cls, types, props):
        qtype = _qtype(props)
        shape, source = _quantized_tensor(types[0], "the input")
        if source.expressed_type != qtype.expressed_type:
            raise ShapeError(f"expressed types differ: {source.expressed_type} of the "
                             f"input and {qtype.expressed_type} of qtype")
        _check_fits(qtype, shape, "the result")
        return [tensor(shape, qtype)]


QUANT_OPS: list[type[Operation]] = [ObserveOp, FakeQuantOp, QuantizeOp, DequantizeOp, RequantizeOp]

Quant = Dialect("quant", QUANT_OPS, [UniformQuantizedType])

__all__ = [
    "UniformQuantizedType", "ObserveOp", "FakeQuantOp", "QuantizeOp", "DequantizeOp",
    "RequantizeOp", "Quant", "storage_range", "format_float", "quantized_element",
    "STORAGE_BITS", "OBSERVER_KINDS", "QuantTypeError",
]
