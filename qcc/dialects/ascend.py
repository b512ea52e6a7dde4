"""The `ascend` dialect: the quantization operators of the Ascend AI Processor (CANN).

    ascend.quant       AscendQuant       float -> int8:  y = round(x * scale + offset)
    ascend.dequant     AscendDequant     int32 -> float: y = acc * deq_scale (+ relu)
    ascend.anti_quant  AscendAntiQuant   int8 -> float:  y = (x + offset) * scale
    ascend.weight_quant                  float weights -> int8 (offline, per channel)

Attributes are the operators' own, as CANN and AMCT's deploy models write them:
AscendQuant's `scale` is 1 / scale_d and its `offset` is offset_d (the zero
point); AscendAntiQuant's `scale` is scale_d and its `offset` is -offset_d. The
hardware applies float attributes in float16. A scale past the float16 maximum
(65504) is stored as its square root with `sqrt_mode` and applied twice.

`ascend.quant` rounds per `round_mode`: "Round" is CANN's default and rounds half
away from zero (Ascend C's CAST_ROUND, "四舍五入"; 2.5 -> 3, -2.5 -> -3); "Rint"
rounds half to even (CAST_RINT), "Floor", "Ceil" and "Trunc" as named. The result
saturates to [-128, 127].

AscendDequant's `deq_scale` is a uint64 per output channel (or one for the
tensor), packed as AMCT and MindSpore's Ascend export pack it (`pack_deq_scale`):

    bits 63..48  reserved, 0
    bits 47..40  offset_w, the weight zero point as int8 (0 for symmetric weights)
    bits 39..32  shift_N, the right shift of the Ascend 310 (v100) float16 path (0)
    bits 31..0   the float32 bits of scale_d * scale_w[c]

The relu is not in these bits: it is the operator's `relu_flag` attribute (CANN's
AscendDequant and its ONNX parser read `relu_flag`, `sqrt_mode` and `dtype`).
`sqrt_mode` only goes with a float16 `deq_scale` (the v100 form, applied twice);
CANN rejects it with a uint64 `deq_scale`, and so does the verifier.

Types: `ascend.quant` and `ascend.weight_quant` produce `!quant.uniform<i8...>`
tensors (the type the attributes stand for, named by `qtype`), so the integer
layers after them keep the types of the integer IR; `ascend.dequant` reads the
i32 accumulator (quantized or plain i32) and `ascend.anti_quant` an i8 tensor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, NamedTuple

import numpy as np
from xdsl.dialects.builtin import (
    Float16Type,
    Float32Type,
    FloatAttr,
    IntegerAttr,
    IntegerType,
    Signedness,
    StringAttr,
    TensorType,
    TypeAttribute,
    f16,
    f32,
)
from xdsl.ir import Attribute, Dialect, Operation, SSAValue
from xdsl.irdl import irdl_op_definition, operand_def, prop_def, result_def, traits_def
from xdsl.traits import ConstantLike, Pure

from qcc.dialects.base import (
    QnnOp,
    ShapeError,
    get_bool,
    get_float,
    get_int,
    get_str,
    norm_axis,
    shape_of,
    tensor,
)
from qcc.dialects.constants import array_of
from qcc.dialects.quant import UniformQuantizedType, quantized_element, storage_range

FP16_MAX = 65504.0
"""The largest finite float16: a quant scale above it needs `sqrt_mode`."""

ROUND_MODES = ("Round", "Rint", "Floor", "Ceil", "Trunc")

ui64 = IntegerType(64, Signedness.UNSIGNED)

SCALE_TOLERANCE = 1e-6
"""Relative difference allowed between an attribute and the type it stands for
(the attributes are float32, squared in sqrt_mode)."""

# ----------------------------------------------------------------- deq_scale


class DeqScale(NamedTuple):
    """The fields of packed deq_scale values (arrays of the packed shape)."""

    scale: np.ndarray  # float32
    offset_w: np.ndarray  # int8
    shift_bits: np.ndarray  # uint8


def pack_deq_scale(scale: np.ndarray | Sequence[float] | float,
                   offset_w: np.ndarray | Sequence[int] | int = 0,
                   shift_bits: np.ndarray | Sequence[int] | int = 0) -> np.ndarray:
    """AscendDequant's uint64 deq_scale: the float32 bits of `scale` in bits 31..0,
    `shift_bits` in 39..32, `offset_w` (int8) in 47..40 (see the module doc).

    `scale` is scale_d * scale_w (any float dtype; converted to float32). A negative,
    NaN or infinite scale, or one that float32 cannot hold (it overflows, or a
    positive value rounds to 0), is a ValueError naming the first bad index;
    float32 denormals and 0 are packed as they are."""
    s64 = np.asarray(scale, np.float64)
    with np.errstate(over="ignore"):
        s32 = s64.astype(np.float32)
    problems = [
        (~np.isfinite(s64), "is not finite"),
        (s64 < 0, "is negative (a dequantization scale is scale_d * scale_w > 0)"),
        (np.isfinite(s64) & ~np.isfinite(s32), "overflows float32"),
        ((s64 > 0) & (s32 == 0), "underflows float32 to 0"),
    ]
    for bad, why in problems:
        if bad.any():
            i = tuple(int(v) for v in np.argwhere(bad)[0])
            where = f" at index {i[0] if len(i) == 1 else i}" if i else ""
            raise ValueError(f"deq_scale {float(s64[bad].flat[0])!r}{where} {why}")
    offset = np.asarray(offset_w)
    if offset.size and (offset.min() < -128 or offset.max() > 127):
        raise ValueError(f"offset_w must be int8, got values in [{offset.min()}, {offset.max()}]")
    shift = np.asarray(shift_bits)
    if shift.size and (shift.min() < 0 or shift.max() > 255):
        raise ValueError(f"shift_bits must fit 8 bits, got [{shift.min()}, {shift.max()}]")
    shape = np.broadcast_shapes(s32.shape, offset.shape, shift.shape)
    bits = np.broadcast_to(s32, shape).view(np.uint32).astype(np.uint64)
    off = np.broadcast_to(offset.astype(np.int8).view(np.uint8), shape).astype(np.uint64)
    sh = np.broadcast_to(shift.astype(np.uint8), shape).astype(np.uint64)
    return bits | (sh << np.uint64(32)) | (off << np.uint64(40))


def unpack_deq_scale(packed: np.ndarray | Sequence[int] | int) -> DeqScale:
    """The fields of deq_scale values; reserved bits 63..48 must be 0."""
    u = np.asarray(packed)
    if u.dtype != np.uint64:
        if u.dtype.kind not in "iu" or (u.size and u.min() < 0):
            raise ValueError(f"deq_scale must be uint64, got {u.dtype}")
        u = u.astype(np.uint64)
    if u.size and (u >> np.uint64(48)).any():
        raise ValueError("deq_scale has bits set in the reserved bits 63..48")
    scale = (u & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.float32)
    shift = ((u >> np.uint64(32)) & np.uint64(0xFF)).astype(np.uint8)
    offset = ((u >> np.uint64(40)) & np.uint64(0xFF)).astype(np.uint8).view(np.int8)
    return DeqScale(scale, offset, shift)


# ------------------------------------------------------------------ helpers


def quant_attributes(qtype: UniformQuantizedType) -> tuple[float, float, bool]:
    """(scale, offset, sqrt_mode) of the AscendQuant that quantizes to `qtype`:
    scale = 1 / scale_d as float32, or its square root when that passes float16's
    maximum; offset = the zero point."""
    inverse = 1.0 / qtype.scale
    sqrt_mode = inverse > FP16_MAX
    scale = math.sqrt(inverse) if sqrt_mode else inverse
    return float(np.float32(scale)), float(qtype.zero_point), sqrt_mode


def anti_quant_attributes(qtype: UniformQuantizedType) -> tuple[float, float, bool]:
    """(scale, offset, sqrt_mode) of the AscendAntiQuant that dequantizes `qtype`:
    scale = scale_d (its square root below float16's smallest normal, 2^-14),
    offset = -zero point."""
    sqrt_mode = qtype.scale < 2.0**-14
    scale = math.sqrt(qtype.scale) if sqrt_mode else qtype.scale
    return float(np.float32(scale)), float(-qtype.zero_point), sqrt_mode


def f32_attr(value: float) -> FloatAttr:
    """A float32 attribute (the Ascend operators' float attributes are float32)."""
    return FloatAttr(float(np.float32(value)), f32)


def _float_tensor(t: Attribute, what: str) -> tuple[int, ...]:
    shape = shape_of(t)
    assert isinstance(t, TensorType)
    if not isinstance(t.element_type, Float32Type | Float16Type):
        raise ShapeError(f"{what} must be a tensor of f32 or f16, got {t}")
    return shape


def _i8_qtype(props: dict[str, Attribute], what: str) -> UniformQuantizedType:
    qtype = props.get("qtype")
    if not isinstance(qtype, UniformQuantizedType):
        raise ShapeError("property qtype must be a !quant.uniform type")
    if qtype.bits != 8 or not qtype.signed:
        raise ShapeError(f"{what} produces int8: qtype must have i8 storage, got {qtype}")
    return qtype


def _dtype(props: dict[str, Attribute]) -> Attribute:
    dtype = props.get("dtype")
    if not isinstance(dtype, Float16Type | Float32Type):
        raise ShapeError(f"dtype must be f16 or f32, got {dtype}")
    return dtype


def _scale_matches(attr_scale: float, sqrt_mode: bool, expected: float, what: str) -> None:
    applied = attr_scale * attr_scale if sqrt_mode else attr_scale
    if not (expected > 0 and abs(applied / expected - 1) <= SCALE_TOLERANCE):
        how = (f"scale^2 = {str(np.float32(applied))}" if sqrt_mode
               else f"scale {str(np.float32(applied))}")
        raise ShapeError(f"{how} does not match {what} {str(np.float32(expected))} of the type")


def _round_mode(props: dict[str, Attribute]) -> str:
    mode = get_str(props.get("round_mode"), "Round")
    if mode not in ROUND_MODES:
        raise ShapeError(f"round_mode must be one of {', '.join(ROUND_MODES)}, got '{mode}'")
    return mode


# ----------------------------------------------------------------------- ops


@irdl_op_definition
class QuantOp(QnnOp):
    """AscendQuant: float16/32 -> int8, y = saturate(round(x * scale + offset)),
    with x * scale * scale in sqrt_mode. The result is `tensor<..x qtype>`, which
    must be per-tensor i8 with the full storage range [-128, 127]; `scale` (times
    itself in sqrt_mode) is 1 / scale_d and `offset` the zero point of `qtype`.
    After an `ascend.dequant` with relu_flag, qtype may have the storage range
    [zero point, 127] (a relu folded into a requantize). Build with
    `QuantOp.of(x, qtype)`."""

    name = "ascend.quant"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    scale = prop_def(FloatAttr)
    offset = prop_def(FloatAttr)
    sqrt_mode = prop_def(IntegerAttr)
    round_mode = prop_def(StringAttr)
    qtype = prop_def(UniformQuantizedType)
    traits = traits_def(Pure())
    PROPS: ClassVar[dict[str, object]] = {
        "scale": None, "offset": None, "sqrt_mode": False, "round_mode": "Round",
        "qtype": None}

    @classmethod
    def of(cls, x: SSAValue, qtype: UniformQuantizedType, round_mode: str = "Round",
           name: str | None = None) -> QuantOp:
        scale, offset, sqrt_mode = quant_attributes(qtype)
        return cls.make(x, name=name, scale=f32_attr(scale), offset=f32_attr(offset),
                        sqrt_mode=sqrt_mode, round_mode=round_mode, qtype=qtype)

    @classmethod
    def infer(cls, types, props):
        shape = _float_tensor(types[0], "the input")
        qtype = _i8_qtype(props, "AscendQuant")
        if qtype.is_per_axis:
            raise ShapeError(f"AscendQuant quantizes per tensor: qtype must not be per-axis, "
                             f"got {qtype}")
        if (qtype.storage_min, qtype.storage_max) not in (
                storage_range(8, True), (qtype.zero_point, 127)):
            raise ShapeError("AscendQuant saturates to [-128, 127]: qtype must have the full "
                             "i8 storage range (or [zero point, 127] after a relu), got "
                             f"[{qtype.storage_min}, {qtype.storage_max}]")
        _round_mode(props)
        sqrt_mode = get_bool(props.get("sqrt_mode"))
        scale = get_float(props.get("scale"))
        _scale_matches(scale, sqrt_mode, 1.0 / qtype.scale, "1 / scale")
        if not sqrt_mode and scale > FP16_MAX:
            raise ShapeError(f"scale {scale!r} overflows float16 (max {FP16_MAX}): store its "
                             "square root with sqrt_mode = true")
        offset = get_float(props.get("offset"))
        if offset != qtype.zero_point:
            raise ShapeError(f"offset {offset!r} must be the zero point {qtype.zero_point} of "
                             "qtype")
        return [tensor(shape, qtype)]

    def verify_(self) -> None:
        super().verify_()
        qtype = self.qtype
        if (qtype.storage_min, qtype.storage_max) == storage_range(8, True):
            return
        owner = self.input.owner
        if not (isinstance(owner, DequantOp) and owner.is_relu):
            from xdsl.utils.exceptions import VerifyException

            raise VerifyException(
                f"'{self.name}': the storage range [{qtype.storage_min}, 127] of qtype holds "
                "only after a relu: the input must come from an ascend.dequant with "
                "relu_flag = true (AscendQuant itself saturates to [-128, 127])")

    @property
    def scale_value(self) -> float:
        return get_float(self.scale)

    @property
    def offset_value(self) -> float:
        return get_float(self.offset)

    @property
    def is_sqrt_mode(self) -> bool:
        return get_bool(self.sqrt_mode)


@irdl_op_definition
class DequantOp(QnnOp):
    """AscendDequant: int32 accumulator -> `dtype` (f16 or f32),
    y = float32(acc) * scale[c] (relu'd with `relu_flag`), `scale` unpacked from
    `deq_scale` (uint64, one per index of `axis` or one for the tensor; or the
    float16 scale of the v100 form, applied twice in `sqrt_mode`). When the input
    is a quantized i32 type, `axis` is its axis and, for a constant deq_scale, the
    unpacked scales are its scales in float32."""

    name = "ascend.dequant"
    input = operand_def(TensorType)
    deq_scale = operand_def(TensorType)
    output = result_def(TensorType)
    relu_flag = prop_def(IntegerAttr)
    sqrt_mode = prop_def(IntegerAttr)
    axis = prop_def(IntegerAttr)
    dtype = prop_def(TypeAttribute)
    traits = traits_def(Pure())
    PROPS: ClassVar[dict[str, object]] = {
        "relu_flag": False, "sqrt_mode": False, "axis": 1, "dtype": f16}

    @classmethod
    def infer(cls, types, props):
        shape = shape_of(types[0])
        x = types[0]
        assert isinstance(x, TensorType)
        qtype = quantized_element(x)
        if qtype is not None:
            if qtype.bits != 32 or not qtype.signed:
                raise ShapeError(f"the input must be the int32 accumulator, got {x}")
        elif x.element_type != IntegerType(32):
            raise ShapeError(f"the input must be a tensor of i32 (or a quantized i32 type), "
                             f"got {x}")
        deq = types[1]
        assert isinstance(deq, TensorType)
        if len(shape_of(deq)) > 1:
            raise ShapeError(f"deq_scale must be a scalar or 1-D, got {deq}")
        n = shape_of(deq)[0] if shape_of(deq) else 1
        if deq.element_type == ui64:
            if get_bool(props.get("sqrt_mode")):
                raise ShapeError("sqrt_mode needs a float16 deq_scale: with a uint64 "
                                 "deq_scale CANN supports only sqrt_mode = false")
        elif deq.element_type != f16:
            raise ShapeError(f"deq_scale must be a tensor of ui64 (or f16), got {deq}")
        axis = norm_axis(get_int(props.get("axis"), 1), len(shape))
        if qtype is not None and qtype.axis is not None and qtype.axis != axis:
            raise ShapeError(f"axis {axis} differs from the quantized axis {qtype.axis} of the "
                             "input")
        if n != 1 and n != shape[axis]:
            raise ShapeError(f"deq_scale has {n} values: expected 1 or {shape[axis]} (the size "
                             f"of axis {axis})")
        return [tensor(shape, _dtype(props))]

    def verify_(self) -> None:
        super().verify_()
        qtype = quantized_element(self.input.type)
        values = _constant_array(self.deq_scale)
        if qtype is None or values is None or values.dtype != np.uint64:
            return
        from xdsl.utils.exceptions import VerifyException

        try:
            scales = unpack_deq_scale(values).scale
        except ValueError as e:
            raise VerifyException(f"'{self.name}': {e}") from None
        expected = np.asarray(qtype.scales, np.float32)
        if not (scales.size == expected.size and np.array_equal(scales, expected)):
            raise VerifyException(
                f"'{self.name}': deq_scale holds the scales {scales.tolist()}, but the input "
                f"type has {expected.tolist()} (in float32)")

    @property
    def is_relu(self) -> bool:
        return get_bool(self.relu_flag)


@irdl_op_definition
class AntiQuantOp(QnnOp):
    """AscendAntiQuant: int8 -> `dtype`, y = (x + offset) * scale (* scale in
    sqrt_mode). For a quantized input, scale (squared in sqrt_mode) is its scale_d
    and offset its negated zero point. Build with `AntiQuantOp.of(x, dtype)`."""

    name = "ascend.anti_quant"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    scale = prop_def(FloatAttr)
    offset = prop_def(FloatAttr)
    sqrt_mode = prop_def(IntegerAttr)
    dtype = prop_def(TypeAttribute)
    traits = traits_def(Pure())
    PROPS: ClassVar[dict[str, object]] = {
        "scale": None, "offset": None, "sqrt_mode": False, "dtype": f32}

    @classmethod
    def of(cls, x: SSAValue, dtype: Attribute = f32, name: str | None = None) -> AntiQuantOp:
        qtype = quantized_element(x.type)
        assert qtype is not None, "AntiQuantOp.of needs a quantized input"
        scale, offset, sqrt_mode = anti_quant_attributes(qtype)
        return cls.make(x, name=name, scale=f32_attr(scale), offset=f32_attr(offset),
                        sqrt_mode=sqrt_mode, dtype=dtype)

    @classmethod
    def infer(cls, types, props):
        shape = shape_of(types[0])
        x = types[0]
        assert isinstance(x, TensorType)
        qtype = quantized_element(x)
        scale = get_float(props.get("scale"))
        sqrt_mode = get_bool(props.get("sqrt_mode"))
        offset = get_float(props.get("offset"))
        if qtype is not None:
            if qtype.bits != 8 or not qtype.signed or qtype.is_per_axis:
                raise ShapeError(f"the input must be per-tensor int8, got {x}")
            _scale_matches(scale, sqrt_mode, qtype.scale, "scale")
            if offset != -qtype.zero_point:
                raise ShapeError(f"offset {offset!r} must be the negated zero point "
                                 f"{-qtype.zero_point} of the input type")
        elif x.element_type != IntegerType(8):
            raise ShapeError(f"the input must be a tensor of i8 (or a quantized i8 type), "
                             f"got {x}")
        elif not (math.isfinite(scale) and scale > 0):
            raise ShapeError(f"scale must be positive and finite, got {scale!r}")
        return [tensor(shape, _dtype(props))]


@irdl_op_definition
class WeightQuantOp(QnnOp):
    """Weights to int8 offline: `qtype.quantize(w)` (round half to even, clip to
    the storage range), per tensor or per channel; `w` is a float tensor, normally
    a constant that exporters write as an int8 initializer."""

    name = "ascend.weight_quant"
    input = operand_def(TensorType)
    output = result_def(TensorType)
    qtype = prop_def(UniformQuantizedType)
    traits = traits_def(Pure())
    PROPS: ClassVar[dict[str, object]] = {"qtype": None}

    @classmethod
    def infer(cls, types, props):
        shape = _float_tensor(types[0], "the weight")
        qtype = _i8_qtype(props, "ascend.weight_quant")
        axis = qtype.axis
        if axis is not None and (axis >= len(shape) or shape[axis] != len(qtype.scales)):
            raise ShapeError(f"qtype has {len(qtype.scales)} per-axis scales on axis {axis}, "
                             f"the weight has shape {shape}")
        return [tensor(shape, qtype)]


def _constant_array(value: SSAValue) -> np.ndarray | None:
    owner = value.owner
    if isinstance(owner, Operation) and owner.has_trait(ConstantLike):
        return array_of(owner)
    return None


ASCEND_OPS: list[type[Operation]] = [QuantOp, DequantOp, AntiQuantOp, WeightQuantOp]

Ascend = Dialect("ascend", ASCEND_OPS, [])

__all__ = [
    "QuantOp", "DequantOp", "AntiQuantOp", "WeightQuantOp", "Ascend", "ASCEND_OPS",
    "pack_deq_scale", "unpack_deq_scale", "DeqScale", "quant_attributes",
    "anti_quant_attributes", "FP16_MAX", "ROUND_MODES", "ui64", "f32_attr",
]
