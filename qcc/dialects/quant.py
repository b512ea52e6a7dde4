"""The `quant` dialect: quantized element types and the ops that produce and use them.

Types (MLIR's quant syntax):

    !quant.uniform<i8:f32, 0.0125:-3>              per-tensor, zero point -3
    !quant.uniform<u8:f32, 0.5>                    zero point 0 (omitted)
    !quant.uniform<i8<-127:127>:f32, 0.1>          narrow storage range
    !quant.uniform<i8:f32:0, {0.1,0.2:1}>          per-axis over dimension 0

Scales print as Python's shortest round-trip `repr` (`0.0125`, `1.0e-05`; MLIR
itself prints `1.250000e-02`, which also parses), so print -> parse -> print is
the identity and every scale is exact as a float64. Like MLIR, a zero point of
0 and a storage range equal to the full range of the storage type are omitted.

Ops (generic syntax of `base.QnnOp`, result types inferred):

- `quant.observe`: a calibration point (which statistic, which algorithm).
- `quant.fake_quant`: quantize-dequantize in float; parameters from `qtype`, or,
  for range learning, from two extra operands `%scale, %zero_point`.
- `quant.quantize` / `quant.dequantize` / `quant.requantize`: float <-> quantized
  tensors and quantized -> quantized.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from xdsl.dialects.builtin import (
    ArrayAttr,
    BFloat16Type,
    DictionaryAttr,
    Float16Type,
    Float32Type,
    FloatData,
    IntAttr,
    IntegerAttr,
    IntegerType,
    NoneAttr,
    Signedness,
    StringAttr,
    TensorType,
    f32,
)
from xdsl.ir import Attribute, Dialect, Operation, ParametrizedAttribute, SSAValue, TypeAttribute
from xdsl.irdl import (
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException
from xdsl.utils.lexer import Span

from qcc.dialects.base import DYN, QnnOp, ShapeError, get_bool, get_int, get_str, shape_of, tensor
from qcc.errors import QccError

STORAGE_BITS = (4, 8, 16, 32)
"""Storage widths a quantized type may have (7-bit is `i8<-64:63>`)."""

EXPRESSED_TYPES = (Float32Type, Float16Type, BFloat16Type)

OBSERVER_KINDS = ("activation", "weight")
"""Statistics a `quant.observe` may ask for (IFMR/HFMG/ARQ are AMCT's)."""

_STORAGE_RE = re.compile(r"([iu])([0-9]+)")


# --------------------------------------------------------------------- helpers


class QuantTypeError(QccError, VerifyException):
    """A parsed `!quant.uniform` breaks a rule; prints the source line with the type
    underlined. A `VerifyException`, so `--verify-diagnostics` reports it; like
    `ParseError.span`, `span.line_offset` may be set by a driver that splits input."""

    def __init__(self, span: Span, msg: str) -> None:
        super().__init__(msg)
        self.span, self.msg = span, msg

    def __str__(self) -> str:
        return self.span.print_with_context(self.msg)


def storage_range(bits: int, signed: bool, narrow_range: bool = False) -> tuple[int, int]:
    """Full range of an integer type; narrow range drops the lowest value
    ([-127, 127] for i8, [1, 255] for u8), as TensorFlow's `narrow_range`."""
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return (lo + 1 if narrow_range else lo), hi


def format_float(value: float) -> str:
    """Shortest text that parses back to exactly `value` as an MLIR float literal
    (MLIR needs a `.` in a float: `1e-05` becomes `1.0e-05`)."""
    text = repr(float(value))
    mantissa, e, exponent = text.partition("e")
    if e and "." not in mantissa:
        return f"{mantissa}.0e{exponent}"
    return text


# ------------------------------------------------------------------------ type


@irdl_attr_definition
class UniformQuantizedType(ParametrizedAttribute, TypeAttribute):
    """A uniformly quantized element type: real = scale * (stored - zero_point).

    One class for both granularities: per-tensor when `axis` is None (one scale
    and zero point), per-axis when `axis` is a dimension index (one scale and zero
    point per index of that dimension). Build with `make` / `make_per_axis`.
    """

    name = "quant.uniform"

    storage_type: IntegerType
    """`si<bits>` for `i<bits>` storage, `ui<bits>` for `u<bits>`."""
    expressed_type: Attribute
    storage_min_attr: IntAttr
    storage_max_attr: IntAttr
    scales_attr: ArrayAttr[FloatData]
    zero_points_attr: ArrayAttr[IntAttr]
    axis_attr: IntAttr | NoneAttr

    # ------------------------------------------------------------ builders

    @classmethod
    def make(cls, *, scale: float, zero_point: int = 0, bits: int = 8, signed: bool = True,
             narrow_range: bool = False, expressed_type: Attribute = f32,
             storage_min: int | None = None, storage_max: int | None = None,
             ) -> UniformQuantizedType:
        """A per-tensor type, e.g. `make(scale=0.1, zero_point=-3)` is
        `!quant.uniform<i8:f32, 0.1:-3>`; the storage range defaults to the full
        range of `bits`/`signed` (minus the lowest value with `narrow_range`)."""
        lo, hi = storage_range(bits, signed, narrow_range)
        return cls.new(_parameters(bits, signed, expressed_type, _or(storage_min, lo),
                                   _or(storage_max, hi), [scale], [zero_point], None))

    @classmethod
    def make_per_axis(cls, *, axis: int, scales: Sequence[float],
                      zero_points: Sequence[int] | None = None, bits: int = 8,
                      signed: bool = True, narrow_range: bool = False,
                      expressed_type: Attribute = f32, storage_min: int | None = None,
                      storage_max: int | None = None) -> UniformQuantizedType:
        """A per-axis type over dimension `axis`; zero points default to 0."""
        lo, hi = storage_range(bits, signed, narrow_range)
        zero_points = [0] * len(scales) if zero_points is None else zero_points
        return cls.new(_parameters(bits, signed, expressed_type, _or(storage_min, lo),
                                   _or(storage_max, hi), scales, zero_points, axis))

    # ----------------------------------------------------------- accessors

    @property
    def bits(self) -> int:
        return self.storage_type.width.data

    @property
    def signed(self) -> bool:
        return self.storage_type.signedness.data != Signedness.UNSIGNED

    @property
    def storage_min(self) -> int:
        return self.storage_min_attr.data

    @property
    def storage_max(self) -> int:
        return self.storage_max_attr.data

    @property
    def narrow_range(self) -> bool:
        """The storage range is the full range minus its lowest value."""
        return (self.storage_min, self.storage_max) == storage_range(
            self.bits, self.signed, True)

    @property
    def axis(self) -> int | None:
        """The quantized dimension, None for a per-tensor type."""
        return self.axis_attr.data if isinstance(self.axis_attr, IntAttr) else None

    @property
    def is_per_axis(self) -> bool:
        return self.axis is not None

    @property
    def scales(self) -> tuple[float, ...]:
        return tuple(s.data for s in self.scales_attr.data)

    @property
    def zero_points(self) -> tuple[int, ...]:
        return tuple(z.data for z in self.zero_points_attr.data)

    @property
    def scale(self) -> float:
        """The scale of a per-tensor type."""
        if self.is_per_axis:
            raise ValueError(f"{self} is per-axis: use `scales`")
        return self.scales[0]

    @property
    def zero_point(self) -> int:
        """The zero point of a per-tensor type."""
        if self.is_per_axis:
            raise ValueError(f"{self} is per-axis: use `zero_points`")
        return self.zero_points[0]

    @property
    def numpy_dtype(self) -> np.dtype:
        """The smallest numpy integer dtype holding the storage (4-bit in 8)."""
        width = max(self.bits, 8)
        return np.dtype(f"{'i' if self.signed else 'u'}{width // 8}")

    # ------------------------------------------------------------- numerics

    def _params(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Scales (float32) and zero points (float64) shaped to broadcast."""
        scale = np.asarray(self.scales, np.float32)
        zero_point = np.asarray(self.zero_points, np.float64)
        axis = self.axis
        if axis is None:
            return scale.reshape(()), zero_point.reshape(())
        if axis >= len(shape) or shape[axis] != len(scale):
            raise ValueError(f"{self} does not fit an array of shape {shape}")
        target = [1] * len(shape)
        target[axis] = len(scale)
        return scale.reshape(target), zero_point.reshape(target)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """q = clip(round_half_to_even(x / scale) + zero_point, storage_min, storage_max).

        Like ONNX QuantizeLinear (and onnxruntime), `x / scale` is computed in
        float32 with the scale rounded to float32; `np.rint` rounds half to even
        (0.5 -> 0, 1.5 -> 2, -2.5 -> -2). Returns `numpy_dtype`.
        """
        x = np.asarray(x, np.float32)
        scale, zero_point = self._params(x.shape)
        q = np.rint(x / scale).astype(np.float64) + zero_point
        return np.clip(q, self.storage_min, self.storage_max).astype(self.numpy_dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """x = (q - zero_point) * scale in float32 (as ONNX DequantizeLinear), then
        cast to the expressed type (float16 for f16; bf16 stays float32)."""
        q = np.asarray(q)
        scale, zero_point = self._params(q.shape)
        x = (q.astype(np.float64) - zero_point).astype(np.float32) * scale
        return x.astype(np.float16) if isinstance(self.expressed_type, Float16Type) else x

    def fake_quant(self, x: np.ndarray) -> np.ndarray:
        """dequantize(quantize(x)): the float value the quantized tensor stands for."""
        return self.dequantize(self.quantize(x))

    # -------------------------------------------------------------- verifier

    def verify(self) -> None:
        def fail(rule: str) -> VerifyException:
            return VerifyException(f"!quant.uniform: {rule}")

        bits, signed = self.bits, self.signed
        if bits not in STORAGE_BITS:
            raise fail(f"storage type must have 4, 8, 16 or 32 bits, got {bits}")
        if self.storage_type.signedness.data == Signedness.SIGNLESS:
            raise fail("storage type must be signed or unsigned, got signless")
        if not isinstance(self.expressed_type, EXPRESSED_TYPES):
            raise fail(f"expressed type must be f32, f16 or bf16, got {self.expressed_type}")
        lo, hi = storage_range(bits, signed)
        name = f"{'i' if signed else 'u'}{bits}"
        qmin, qmax = self.storage_min, self.storage_max
        if not lo <= qmin <= qmax <= hi:
            raise fail(f"storage range [{qmin}, {qmax}] must be ordered and inside "
                       f"[{lo}, {hi}] of {name}")
        scales, zero_points = self.scales, self.zero_points
        if self.axis is None and len(scales) != 1:
            raise fail(f"a per-tensor type has one scale, got {len(scales)}")
        if self.axis is not None and self.axis < 0:
            raise fail(f"axis must be non-negative, got {self.axis}")
        if len(scales) != len(zero_points):
            raise fail(f"{len(scales)} scales but {len(zero_points)} zero points")
        if not scales:
            raise fail("a per-axis type needs at least one scale")
        for s in scales:
            if not (math.isfinite(s) and s > 0):
                raise fail(f"scale {s} must be positive and finite")
        for z in zero_points:
            if not qmin <= z <= qmax:
                raise fail(f"zero point {z} is outside the storage range [{qmin}, {qmax}]")

    # ------------------------------------------------------- print and parse

    def print_parameters(self, printer: Printer) -> None:
        text = f"<{'i' if self.signed else 'u'}{self.bits}"
        if (self.storage_min, self.storage_max) != storage_range(self.bits, self.signed):
            text += f"<{self.storage_min}:{self.storage_max}>"
        printer.print_string(text + ":")
        printer.print_attribute(self.expressed_type)
        params = [format_float(s) + (f":{z}" if z else "")
                  for s, z in zip(self.scales, self.zero_points, strict=True)]
        if self.axis is None:
            printer.print_string(f", {params[0]}>")
        else:
            printer.print_string(f":{self.axis}, {{{','.join(params)}}}>")

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> list[Attribute]:
        start = parser.pos
        params = cls._parse_body(parser)
        try:
            cls.new(params)
        except VerifyException as e:
            raise QuantTypeError(Span(start, parser.pos, parser.lexer.input), str(e)) from None
        parser.parse_punctuation(">", " to close !quant.uniform")
        return params

    @classmethod
    def _parse_body(cls, parser: AttrParser) -> list[Attribute]:
        """Everything between `<` and the closing `>` (left for the caller)."""
        parser.parse_punctuation("<", " to open !quant.uniform")
        storage = parser.parse_identifier(" (storage type like i8 or u8)")
        match = _STORAGE_RE.fullmatch(storage)
        if match is None:
            parser.raise_error(f"expected a storage type like i8 or u8, got '{storage}'")
        signed, bits = match.group(1) == "i", int(match.group(2))
        if bits > 64:
            parser.raise_error(f"storage type {storage} is wider than 64 bits")
        qmin, qmax = storage_range(bits, signed) if bits else (0, 0)
        if parser.parse_optional_punctuation("<") is not None:
            qmin = parser.parse_integer(False, True, " (storage min)")
            parser.parse_punctuation(":", " between storage min and max")
            qmax = parser.parse_integer(False, True, " (storage max)")
            parser.parse_punctuation(">", " to close the storage range")
        parser.parse_punctuation(":", " before the expressed type")
        expressed = parser.parse_type()
        axis: int | None = None
        if parser.parse_optional_punctuation(":") is not None:
            axis = parser.parse_integer(False, False, " (quantized axis)")
        parser.parse_punctuation(",", " before scale and zero point")
        if axis is None:
            if parser.parse_optional_punctuation("{") is not None:
                parser.raise_error("per-axis scales need an axis: i8:f32:<axis>, {...}")
            params = [_parse_scale_zero_point(parser)]
        else:
            params = parser.parse_comma_separated_list(
                parser.Delimiter.BRACES, lambda: _parse_scale_zero_point(parser),
                " (per-axis scales)")
        return _parameters(bits, signed, expressed, qmin, qmax,
                           [s for s, _ in params], [z for _, z in params], axis)


def _parameters(bits: int, signed: bool, expressed: Attribute, qmin: int, qmax: int,
                scales: Sequence[float], zero_points: Sequence[int],
                axis: int | None) -> list[Attribute]:
    """The parameters of `UniformQuantizedType`, in order."""
    return [
        IntegerType(bits, Signedness.SIGNED if signed else Signedness.UNSIGNED),
        expressed,
        IntAttr(int(qmin)),
        IntAttr(int(qmax)),
        ArrayAttr([FloatData(float(s)) for s in scales]),
        ArrayAttr([IntAttr(int(z)) for z in zero_points]),
        NoneAttr() if axis is None else IntAttr(int(axis)),
    ]


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def _parse_scale_zero_point(parser: AttrParser) -> tuple[float, int]:
    scale = float(parser.parse_number(context_msg=" (scale)"))
    zero_point = 0
    if parser.parse_optional_punctuation(":") is not None:
        zero_point = parser.parse_integer(False, True, " (zero point)")
    return scale, zero_point


def quantized_element(t: Attribute) -> UniformQuantizedType | None:
    """The quantized element type of a tensor type, else None."""
    if isinstance(t, TensorType) and isinstance(t.element_type, UniformQuantizedType):
        return t.element_type
    return None


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
