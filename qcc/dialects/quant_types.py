"""Quantized element types of the `quant` dialect (MLIR's quant syntax):

    !quant.uniform<i8:f32, 0.0125:-3>              per-tensor, zero point -3
    !quant.uniform<u8:f32, 0.5>                    zero point 0 (omitted)
    !quant.uniform<i8<-127:127>:f32, 0.1>          narrow storage range
    !quant.uniform<i8:f32:0, {0.1,0.2:1}>          per-axis over dimension 0

Scales print as Python's shortest round-trip `repr` (`0.0125`, `1.0e-05`; MLIR
itself prints `1.250000e-02`, which also parses), so print -> parse -> print is
the identity and every scale is exact as a float64. Like MLIR, a zero point of
0 and a storage range equal to the full range of the storage type are omitted.
Re-exported by `qcc.dialects.quant`, which holds the ops.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
from xdsl.dialects.builtin import (
    ArrayAttr,
    BFloat16Type,
    Float16Type,
    Float32Type,
    FloatData,
    IntAttr,
    IntegerType,
    NoneAttr,
    Signedness,
    TensorType,
    f32,
)
from xdsl.ir import Attribute, ParametrizedAttribute, TypeAttribute
from xdsl.irdl import irdl_attr_definition
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.utils.exceptions import VerifyException
from xdsl.utils.lexer import Span

from qcc.errors import QccError

STORAGE_BITS = (4, 8, 16, 32)
"""Storage widths a quantized type may have (7-bit is `i8<-64:63>`)."""

EXPRESSED_TYPES = (Float32Type, Float16Type, BFloat16Type)

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
