"""Constants as numpy arrays, below the IR builder: numpy dtypes <-> element types,
`dense` attributes and zero-copy arrays of them, and how `qnn.constant` prints its
value (inline, hex, or `dense_resource<key>` into the sink of the module being
printed: `qcc.ir.print_module` sets `SINK` for the duration of one print).

`qcc.ir` re-exports these; dialects and fold hooks use them from here so that no
dialect imports `qcc.ir`."""

from __future__ import annotations

import contextvars
import re
from collections.abc import Sequence

import ml_dtypes
import numpy as np
from xdsl.dialects.builtin import (
    BytesAttr,
    DenseIntOrFPElementsAttr,
    DenseResourceAttr,
    Float4E2M1FNType,
    Float8E4M3FNType,
    Float8E4M3FNUZType,
    Float8E5M2FNUZType,
    Float8E5M2Type,
    Float8E8M0FNUType,
    Float16Type,
    Float32Type,
    Float64Type,
    IntegerType,
    Signedness,
    TensorType,
    bf16,
    f16,
    f32,
    f64,
    i1,
    i8,
    i32,
    i64,
)
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.printer import Printer
from xdsl.traits import ConstantLike

INLINE_LIMIT = 64
"""Constants with more elements than this print as `dense_resource`."""

# ---------------------------------------------------------------- dtypes

u8 = IntegerType(8, Signedness.UNSIGNED)

_TO_NUMPY: list[tuple[Attribute, np.dtype]] = [
    (f32, np.dtype(np.float32)),
    (f64, np.dtype(np.float64)),
    (f16, np.dtype(np.float16)),
    (i64, np.dtype(np.int64)),
    (i32, np.dtype(np.int32)),
    (i8, np.dtype(np.int8)),
    (u8, np.dtype(np.uint8)),
    (i1, np.dtype(np.bool_)),
    (IntegerType(16), np.dtype(np.int16)),
    (IntegerType(16, Signedness.UNSIGNED), np.dtype(np.uint16)),
    (IntegerType(32, Signedness.UNSIGNED), np.dtype(np.uint32)),
    (IntegerType(64, Signedness.UNSIGNED), np.dtype(np.uint64)),
    # Narrow types through ml_dtypes (one element a byte, as numpy holds them).
    (bf16, np.dtype(ml_dtypes.bfloat16)),
    (Float8E4M3FNType(), np.dtype(ml_dtypes.float8_e4m3fn)),
    (Float8E4M3FNUZType(), np.dtype(ml_dtypes.float8_e4m3fnuz)),
    (Float8E5M2Type(), np.dtype(ml_dtypes.float8_e5m2)),
    (Float8E5M2FNUZType(), np.dtype(ml_dtypes.float8_e5m2fnuz)),
    (Float4E2M1FNType(), np.dtype(ml_dtypes.float4_e2m1fn)),
    (Float8E8M0FNUType(), np.dtype(ml_dtypes.float8_e8m0fnu)),
    (IntegerType(4), np.dtype(ml_dtypes.int4)),
    (IntegerType(4, Signedness.UNSIGNED), np.dtype(ml_dtypes.uint4)),
    (IntegerType(2), np.dtype(ml_dtypes.int2)),
    (IntegerType(2, Signedness.UNSIGNED), np.dtype(ml_dtypes.uint2)),
]


def numpy_dtype(element_type: Attribute) -> np.dtype:
    for t, d in _TO_NUMPY:
        if t == element_type:
            return d
    if isinstance(element_type, Float32Type | Float64Type | Float16Type):
        return np.dtype(f"f{element_type.bitwidth // 8}")
    raise TypeError(f"no numpy dtype for element type {element_type}")


def element_type(dtype: np.dtype | type) -> Attribute:
    dtype = np.dtype(dtype)
    for t, d in _TO_NUMPY:
        if d == dtype:
            return t
    raise TypeError(f"unsupported array dtype {dtype}")


def tensor_type(shape: Sequence[int], dtype: np.dtype | type | Attribute = np.float32):
    et = dtype if isinstance(dtype, Attribute) else element_type(dtype)
    return TensorType(et, [int(d) for d in shape])


# ------------------------------------------------------------- constants


def dense(array: np.ndarray | float | int) -> DenseIntOrFPElementsAttr:
    """A dense attribute holding a copy of `array`'s bytes."""
    a = np.asarray(array)
    if a.dtype == np.float64 and not isinstance(array, np.ndarray):
        a = a.astype(np.float32)
    a = np.ascontiguousarray(a).reshape(a.shape)  # keeps 0-d arrays 0-d
    t = tensor_type(a.shape, a.dtype)
    return DenseIntOrFPElementsAttr(t, BytesAttr(a.tobytes()))


def array_of(value: SSAValue | Operation | Attribute) -> np.ndarray:
    """The numpy array of a constant (read-only view of its bytes)."""
    attr = value
    if isinstance(value, SSAValue):
        attr = value.owner  # type: ignore[assignment]
    if isinstance(attr, Operation) and attr.has_trait(ConstantLike):
        attr = attr.properties["value"]  # qnn.constant
    if isinstance(attr, DenseResourceAttr):
        raise ValueError(f"dense_resource<{attr.resource_handle.data}> was never resolved")
    if not isinstance(attr, DenseIntOrFPElementsAttr):
        raise TypeError(f"not a constant: {value}")
    t = attr.type
    dtype = numpy_dtype(t.element_type)
    flat = np.frombuffer(attr.data.data, dtype=dtype)
    shape = tuple(t.get_shape())
    if flat.size == 1 and int(np.prod(shape)) != 1:
        return np.broadcast_to(flat[0], shape)  # splat
    return flat.reshape(shape)


# ------------------------------------------------------------- printing

SINK: contextvars.ContextVar[ResourceSink | None] = contextvars.ContextVar(
    "qcc_resource_sink", default=None)


class ResourceSink:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.arrays: dict[str, DenseIntOrFPElementsAttr] = {}
        self._by_id: dict[int, str] = {}
        self.hints: dict[int, str] = {}

    def key_for(self, attr: DenseIntOrFPElementsAttr, hint: str) -> str:
        existing = self._by_id.get(id(attr))
        if existing is not None:
            return existing
        base = re.sub(r"[^A-Za-z0-9_]", "_", hint) or "cst"
        if base[0].isdigit():
            base = "w" + base
        key, n = base, 0
        while key in self.arrays:
            n += 1
            key = f"{base}_{n}"
        self.arrays[key] = attr
        self._by_id[id(attr)] = key
        return key


def print_constant_value(printer: Printer, value: Attribute) -> None:
    """Called by `qnn.constant`'s printer: inline, resource or hex."""
    sink = SINK.get()
    if isinstance(value, DenseIntOrFPElementsAttr) and _is_large(value):
        if sink is not None:
            key = sink.key_for(value, sink.hints.get(id(value), "cst"))
            printer.print_string(f"dense_resource<{key}> : ")
            printer.print_attribute(value.type)
            return
        printer.print_string(f'dense<"0x{value.data.data.hex().upper()}"> : ')
        printer.print_attribute(value.type)
        return
    if isinstance(value, DenseIntOrFPElementsAttr) and not _all_finite(value):
        # xDSL prints inf/nan as bit patterns that its parser reads back as integers;
        # the hex-string form carries the exact bytes (a splat is written out in full).
        data = np.broadcast_to(array_of(value), value.type.get_shape()).tobytes()
        printer.print_string(f'dense<"0x{data.hex().upper()}"> : ')
        printer.print_attribute(value.type)
        return
    printer.print_attribute(value)


def _all_finite(value: DenseIntOrFPElementsAttr) -> bool:
    dtype = numpy_dtype(value.type.element_type)
    if dtype.kind in "biu":
        return True
    flat = np.frombuffer(value.data.data, dtype)
    return bool(np.isfinite(flat.astype(np.float32, copy=False)).all())


def _is_large(value: DenseIntOrFPElementsAttr) -> bool:
    """More than INLINE_LIMIT elements and not a splat (splats print as `dense<v>`)."""
    if len(value) <= INLINE_LIMIT:
        return False
    flat = np.frombuffer(value.data.data, numpy_dtype(value.type.element_type))
    return not bool((flat.view(np.uint8).reshape(len(flat), -1) == flat[:1].view(
        np.uint8)).all())
