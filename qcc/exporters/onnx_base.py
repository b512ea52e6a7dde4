"""What the ONNX exporters share and op exports are written against: the export
table (`EXPORTS`, `@export`), `OpWriter` (one op's nodes), dtype mapping and errors.
The exporter itself (`qcc.exporters.onnx`) drives them; `onnx_ops` and `onnx_quant`
fill the table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ml_dtypes
import numpy as np
from onnx import TensorProto, helper
from xdsl.dialects.builtin import (
    StringAttr,
    TensorType,
)
from xdsl.ir import Attribute, Operation, SSAValue

from qcc import ir
from qcc.dialects import qnn
from qcc.dialects.quant import UniformQuantizedType, storage_range
from qcc.errors import QccError

MIN_OPSET = 13
"""Softmax, Split, Squeeze... and per-axis QuantizeLinear are written with their
opset-13 meaning; older opsets are refused."""

DEFAULT_OPSET = 17

class ExportError(QccError):
    """A module cannot be written as ONNX; the message lists every op that cannot."""


class Unsupported(QccError):
    """Raised by an op's export: why this op cannot be written (with this opset)."""


Export = Callable[["OpWriter"], None]
EXPORTS: dict[type, Export] = {}
"""op class -> function writing its nodes (filled by `onnx_ops` and `onnx_quant`)."""


def export(*op_types: type) -> Callable[[Export], Export]:
    def register(fn: Export) -> Export:
        for t in op_types:
            EXPORTS[t] = fn
        return fn

    return register


# ------------------------------------------------------------------- dtypes

_OPSET_FOR_TYPE: dict[int, int] = {
    TensorProto.FLOAT8E4M3FN: 19, TensorProto.FLOAT8E4M3FNUZ: 19, TensorProto.FLOAT8E5M2: 19,
    TensorProto.FLOAT8E5M2FNUZ: 19, TensorProto.INT4: 21, TensorProto.UINT4: 21,
    TensorProto.FLOAT4E2M1: 23, TensorProto.FLOAT8E8M0: 24, TensorProto.INT2: 25,
    TensorProto.UINT2: 25,
}
"""Element types that the default domain's ops (Cast, Identity...) accept only
from some opset on (and the IR version of that opset)."""


def onnx_dtype(dtype: np.dtype | type) -> int:
    """The ONNX element type of a numpy dtype (ml_dtypes ones included)."""
    try:
        return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    except (KeyError, TypeError, ValueError):
        raise Unsupported(f"ONNX has no element type for {np.dtype(dtype)}") from None


def qdq_storage(qtype: UniformQuantizedType, opset: int) -> np.dtype:
    """The numpy dtype QuantizeLinear writes for `qtype` at `opset`: int8/uint8;
    int4/uint4 and int16/uint16 from opset 21; 4-bit storage before opset 21
    is held in 8 bits (see `emit_qdq`)."""
    bits, signed = qtype.bits, qtype.signed
    if bits == 8 or (bits == 4 and opset < 21):
        return np.dtype(np.int8 if signed else np.uint8)
    if bits == 4:
        return np.dtype(ml_dtypes.int4 if signed else ml_dtypes.uint4)
    if bits == 16:
        if opset < 21:
            raise Unsupported("16-bit QuantizeLinear needs opset 21")
        return np.dtype(np.int16 if signed else np.uint16)
    raise Unsupported(f"ONNX has no QuantizeLinear to {bits}-bit integers")


def full_range(dtype: np.dtype) -> tuple[int, int]:
    if dtype in (np.dtype(ml_dtypes.int4), np.dtype(ml_dtypes.uint4)):
        return storage_range(4, dtype == np.dtype(ml_dtypes.int4))
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def element_dtype(t: Attribute, opset: int) -> np.dtype:
    """numpy dtype of the ONNX tensor holding values of type `t` (a quantized
    tensor is its storage)."""
    assert isinstance(t, TensorType), t
    et = t.element_type
    if isinstance(et, UniformQuantizedType):
        return qdq_storage(et, opset)
    try:
        return ir.numpy_dtype(et)
    except TypeError:
        raise Unsupported(f"no ONNX element type for {et}") from None


# ------------------------------------------------------------------- names


class _Names:
    """Unique names in one namespace: `base`, then `base_1`, `base_2`..."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def unique(self, base: str) -> str:
        name, n = base, 0
        while name in self.used:
            n += 1
            name = f"{base}_{n}"
        self.used.add(name)
        return name


def _attr_str(op: Operation, key: str) -> str | None:
    """A string attribute (or property, as `quant.observe`'s `id`) of `op`."""
    value = op.attributes.get(key) or op.properties.get(key)
    return value.data if isinstance(value, StringAttr) and value.data else None


# --------------------------------------------------------------- one op


class OpWriter:
    """Writes the nodes of one op: its operands as tensor names, new initializers,
    nodes named after the op."""

    def __init__(self, exporter: Any, op: Operation, base: str) -> None:
        """`exporter` is the driving exporter (`qcc.exporters.onnx._Exporter` or a
        subclass of it)."""
        self.exporter = exporter
        self.op = op
        self.base = base
        self.opset = exporter.opset
        self._named = False

    # -- operands and results

    def input(self, i: int) -> str:
        return self.tensor(self.op.operands[i])

    def tensor(self, value: SSAValue | None) -> str:
        """Tensor name of `value` ("" for an absent optional operand)."""
        return "" if value is None else self.exporter.tensor(value)

    def out(self, i: int = 0) -> str:
        return self.exporter.result_name(self.op.results[i])

    def array(self, value: SSAValue | None) -> np.ndarray | None:
        """The array of a `qnn.constant` operand, else None."""
        if value is None or not isinstance(value.owner, qnn.ConstantOp):
            return None
        return ir.array_of(value.owner)

    def shape(self, value: SSAValue) -> tuple[int, ...]:
        assert isinstance(value.type, TensorType)
        return tuple(value.type.get_shape())

    def dtype(self, value: SSAValue) -> np.dtype:
        return element_dtype(value.type, self.opset)

    def prop(self, key: str) -> Attribute | None:
        return self.op.properties.get(key)

    # -- new tensors

    def tmp(self, tag: str) -> str:
        """A fresh intermediate tensor name."""
        return self.exporter.tensors.unique(f"{self.base}_{tag}")

    def const(self, array: np.ndarray | np.generic | Sequence[int] | float, tag: str,
              dtype: np.dtype | type | None = None) -> str:
        """A new initializer `<node>_<tag>` (an int sequence is int64)."""
        a = np.asarray(array, dtype=dtype if dtype is not None else (
            np.int64 if isinstance(array, list | tuple) else None))
        return self.exporter.initializer(a, f"{self.base}_{tag}")

    def ints(self, values: Sequence[int], tag: str) -> str:
        return self.const(np.asarray([int(v) for v in values], np.int64), tag)

    def scalar(self, value: float | int, like: SSAValue | np.dtype, tag: str) -> str:
        """A 0-d initializer of `like`'s element type."""
        dtype = like if isinstance(like, np.dtype) else self.dtype(like)
        return self.const(np.asarray(value).astype(dtype), tag)

    def derived(self, value: SSAValue, key: str, fn: Callable[[np.ndarray], np.ndarray],
                ) -> str | None:
        """`fn` of a constant operand as an initializer named after the constant
        (made once per constant and `key`), or None when `value` is not constant."""
        array = self.array(value)
        if array is None:
            return None
        return self.exporter.derived(value, key, lambda: fn(array))

    # -- nodes

    def node(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str],
             suffix: str | None = None, doc_string: str | None = None, **attrs: Any) -> None:
        """Append a node. The first node without `suffix` takes the op's name; the
        others are `<name>/<suffix>` (or `<name>/<op_type>`)."""
        if suffix is None and not self._named:
            self._named = True
            name = self.base
        else:
            name = f"{self.base}/{suffix or op_type}"
        attrs = {k: v for k, v in attrs.items() if v is not None}
        node = helper.make_node(op_type, list(inputs), list(outputs),
                                name=self.exporter.node_names.unique(name),
                                doc_string=doc_string, **attrs)
        self.exporter.nodes.append(node)
