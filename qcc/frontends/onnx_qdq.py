"""Lowerings of ONNX QuantizeLinear / DequantizeLinear to `quant.fake_quant`.

The QDQ format (what `qcc.exporters.onnx` writes for a fake-quant module, and what
onnxruntime's `quantize_static(quant_format=QDQ)` and other quantizers write):

- `QuantizeLinear -> DequantizeLinear` with the same scale and zero point (and
  axis) is one `quant.fake_quant` whose `qtype` has the zero point's storage type
  (int8 `i8`, uint8 `u8`, int4/uint4, int16/uint16), the scale(s) and zero
  point(s) of the initializers, and `axis` when the scale is 1-D with more than
  one element (per-axis; a one-element scale is per-tensor, as onnxruntime reads
  it). Several DequantizeLinear may read the same QuantizeLinear.
- `DequantizeLinear` of an integer initializer (a weight or bias quantized
  offline, as onnxruntime's quantizer stores them) is the dequantized float
  constant, named after the initializer (less a `_quantized` suffix), followed by
  the same `quant.fake_quant` (which leaves those values unchanged); int32
  storage (biases) is `i32`.
- A narrower storage range, as `qcc.exporters.onnx_quant.emit_qdq` writes it: the
  QuantizeLinear's input is `Clip(x, lo, hi)` (per tensor) or `Min(Max(x, lo),
  hi)` (per axis) whose bounds are exactly the dequantized integers `qmin`,
  `qmax`; the clip is dropped and the type gets the storage range `<qmin:qmax>`,
  4-bit storage when that range is a 4-bit one (full or narrow).
- Anything else is a FrontendError naming the node: a QuantizeLinear whose
  output goes anywhere but DequantizeLinear nodes, a DequantizeLinear of a
  run-time value that no QuantizeLinear produced (integer tensors at run time are
  not supported yet), parameters that are not constants, blocked quantization,
  float8 storage.

qcc's exporter also writes the exact type in the quantizing node's `doc_string`
(`qcc qtype: !quant.uniform<...>`); when it agrees with the node's parameters it
is the imported type, so float64 scales and 4-bit widths come back as they were.

The names: the fake_quant is named after the QuantizeLinear (or, for a weight,
the DequantizeLinear) node with a trailing `/QuantizeLinear`, `_QuantizeLinear`
(or `DequantizeLinear`) removed.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Sequence

import ml_dtypes
import numpy as np
import onnx
from xdsl.dialects.builtin import TensorType
from xdsl.ir import OpResult, SSAValue
from xdsl.parser import Parser

from qcc import ir
from qcc.dialects import qnn, quant
from qcc.dialects.quant import UniformQuantizedType, storage_range
from qcc.frontends.errors import FrontendError
from qcc.frontends.onnx_node import Node
from qcc.frontends.onnx_ops import lowering

_STORAGE: dict[np.dtype, tuple[int, bool]] = {
    np.dtype(np.int8): (8, True), np.dtype(np.uint8): (8, False),
    np.dtype(np.int16): (16, True), np.dtype(np.uint16): (16, False),
    np.dtype(np.int32): (32, True),
    np.dtype(ml_dtypes.int4): (4, True), np.dtype(ml_dtypes.uint4): (4, False),
}
"""zero point dtype -> (bits, signed) of the storage type."""


# ------------------------------------------------------------ graph index


class _Index:
    """Producer and consumers of every tensor of a graph (built once per import)."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.output:
                if name:
                    self.producer[name] = node
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
        self.outputs = {o.name for o in graph.output}


_INDEX: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _index(n: Node) -> _Index:
    index = _INDEX.get(n.importer)
    if index is None:
        index = _INDEX[n.importer] = _Index(n.importer.proto.graph)
    return index


# ----------------------------------------------------------------- params


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _constant(n: Node, name: str, what: str) -> np.ndarray:
    value = n.importer.values.get(name)
    if not isinstance(value, np.ndarray):
        raise FrontendError(f"the {what} '{name}' must be a constant (an initializer)")
    return value


def _params(n: Node, node: onnx.NodeProto, rank: int, default: np.dtype | None = None,
            ) -> tuple[np.ndarray, np.ndarray, int | None, np.dtype]:
    """(scales, zero points, axis or None, storage dtype) of a Q or DQ node; without
    a zero point, the storage is `default` (a DQ's input type), else Q's
    `output_dtype`, else uint8."""
    attrs = _attrs(node)
    if attrs.get("block_size", 0):
        raise FrontendError("blocked quantization (block_size) is not supported")
    scale = _constant(n, node.input[1], "scale")
    has_zp = len(node.input) > 2 and node.input[2]
    if has_zp:
        zp = _constant(n, node.input[2], "zero point")
    else:
        out = attrs.get("output_dtype", 0)
        dtype = default if default is not None else (
            onnx.helper.tensor_dtype_to_np_dtype(out) if out else np.dtype(np.uint8))
        zp = np.zeros(scale.shape, dtype)
    if zp.dtype not in _STORAGE:
        raise FrontendError(f"zero point type {zp.dtype} is not an integer storage type qcc "
                            "supports (int4/8/16/32, uint4/8/16)")
    if zp.size != scale.size:
        raise FrontendError(f"scale shape {scale.shape} and zero point shape {zp.shape} differ")
    axis = None
    if scale.ndim == 1 and scale.size > 1:
        axis = int(attrs.get("axis", 1))
        axis = axis + rank if axis < 0 else axis
    elif scale.ndim > 1:
        raise FrontendError(f"scale of shape {scale.shape}: only scalars and 1-D per-axis "
                            "scales are supported")
    return scale.reshape(-1), zp.reshape(-1), axis, zp.dtype


def _same_params(a: tuple, b: tuple) -> bool:
    return (a[2] == b[2] and a[3] == b[3] and np.array_equal(a[0], b[0])
            and np.array_equal(a[1], b[1]))


QTYPE_DOC = "qcc qtype: "
"""Prefix of the type qcc's exporter writes in a quantizing node's doc_string
(`qcc.exporters.onnx_quant.QTYPE_DOC`)."""


@functools.cache
def _context():
    from qcc.registry import make_context

    return make_context()


def _hint(node: onnx.NodeProto) -> UniformQuantizedType | None:
    """The type qcc's exporter wrote in the node's doc_string, if any."""
    if not node.doc_string.startswith(QTYPE_DOC):
        return None
    try:
        attr = Parser(_context(), node.doc_string[len(QTYPE_DOC):]).parse_attribute()
    except Exception:
        return None
    return attr if isinstance(attr, UniformQuantizedType) else None


def _agrees(hint: UniformQuantizedType | None, qtype: UniformQuantizedType) -> bool:
    """`hint` means what the node's parameters say: same storage range,
    signedness, axis, zero points, expressed type, and scales equal in float32."""
    if hint is None:
        return False
    same = (hint.storage_min, hint.storage_max, hint.signed, hint.axis, hint.zero_points,
            hint.expressed_type) == (qtype.storage_min, qtype.storage_max, qtype.signed,
                                     qtype.axis, qtype.zero_points, qtype.expressed_type)
    return same and np.array_equal(np.asarray(hint.scales, np.float32),
                                   np.asarray(qtype.scales, np.float32))


def _qtype(scales: np.ndarray, zero_points: np.ndarray, axis: int | None, dtype: np.dtype,
           expressed, qrange: tuple[int, int] | None,
           hint: UniformQuantizedType | None = None) -> UniformQuantizedType:
    """The type the parameters define, or `hint` (qcc's own, with float64 scales
    and the storage width) when it agrees with them."""
    bits, signed = _STORAGE[dtype]
    lo, hi = qrange if qrange is not None else storage_range(bits, signed)
    if qrange is not None:
        for small in (storage_range(4, signed), storage_range(4, signed, True)):
            if (lo, hi) == small:
                bits = 4
    common = {"bits": bits, "signed": signed, "expressed_type": expressed,
              "storage_min": lo, "storage_max": hi}
    s = [_shortest(v) for v in scales]
    z = [int(v) for v in zero_points.astype(np.int64)]
    try:
        if axis is None:
            qtype = UniformQuantizedType.make(scale=s[0], zero_point=z[0], **common)
        else:
            qtype = UniformQuantizedType.make_per_axis(axis=axis, scales=s, zero_points=z,
                                                       **common)
        qtype.verify()
    except Exception as e:
        raise FrontendError(f"the scale and zero point make no valid quantized type: {e}") \
            from None
    return hint if _agrees(hint, qtype) else qtype  # type: ignore[return-value]


def _shortest(scale: np.generic) -> float:
    """A float32 scale as the shortest decimal that rounds to it (0.02, not
    0.019999999552965164): qcc applies scales in float32, so the type means the
    same and prints as it was written. Other dtypes keep their exact value."""
    if scale.dtype == np.float32:
        return float(str(scale))
    return float(scale)


def _op_name(node: onnx.NodeProto) -> str:
    name = node.name or node.output[0]
    for suffix in ("/QuantizeLinear", "_QuantizeLinear", "/DequantizeLinear",
                   "_DequantizeLinear"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)]
    return name


def _expressed(n: Node, value) -> object:
    if isinstance(value, np.ndarray):
        return ir.element_type(value.dtype)
    assert isinstance(value.type, TensorType)
    return value.type.element_type


def _emit(n: Node, x: SSAValue, qtype: UniformQuantizedType, name: str) -> SSAValue:
    op = quant.FakeQuantOp.make(x, qtype=qtype, name=name)
    n.importer.graph.add(op)
    return op.results[0]


# ------------------------------------------------------------ narrow range


def _range_clip(n: Node, q: onnx.NodeProto, scales: np.ndarray, zero_points: np.ndarray,
                axis: int | None, dtype: np.dtype, rank: int,
                ) -> tuple[str, tuple[int, int], list[str]] | None:
    """If Q's input is a clip to dequantized integer bounds (the exporter's narrow
    range), return (the clip's input, (qmin, qmax), the clip's outputs)."""
    index = _index(n)
    x_name = q.input[0]
    clip = index.producer.get(x_name)
    if clip is None or not _only_feeds(index, x_name, q):
        return None
    if axis is None and clip.op_type == "Clip" and len(clip.input) == 3:
        source, bound_names, chain = clip.input[0], (clip.input[1], clip.input[2]), [x_name]
    elif axis is not None and clip.op_type == "Min" and len(clip.input) == 2:
        low = index.producer.get(clip.input[0])
        if low is None or low.op_type != "Max" or len(low.input) != 2 or \
                not _only_feeds(index, clip.input[0], clip):
            return None
        source, bound_names = low.input[0], (low.input[1], clip.input[1])
        chain = [x_name, clip.input[0]]
    else:
        return None
    values = n.importer.values
    bounds = [values.get(b) for b in bound_names]
    if not all(isinstance(b, np.ndarray) and b.dtype == np.float32 for b in bounds):
        return None
    full = storage_range(*_STORAGE[dtype])
    ks = []
    for b in bounds:
        assert isinstance(b, np.ndarray)  # checked above
        flat = b.reshape(-1)
        if flat.size != scales.size or (axis is not None and
                                        b.shape != _bound_shape(scales.size, axis, rank)):
            return None
        k = np.rint(flat.astype(np.float64) / scales.astype(np.float64)) + zero_points
        if not (k == k[0]).all():
            return None
        exact = ((k - zero_points).astype(np.float32) * scales.astype(np.float32))
        if not np.array_equal(exact, flat):
            return None
        ks.append(int(k[0]))
    lo, hi = ks
    if not full[0] <= lo <= hi <= full[1] or (lo, hi) == full:
        return None
    return source, (lo, hi), chain


def _bound_shape(c: int, axis: int, rank: int) -> tuple[int, ...]:
    return (c,) + (1,) * (rank - 1 - axis)


def _only_feeds(index: _Index, name: str, node: onnx.NodeProto) -> bool:
    users = index.consumers.get(name, [])
    return name not in index.outputs and len(users) == 1 and users[0] is node


def _drop_lowered(n: Node, names: Sequence[str]) -> None:
    """Erase the qnn ops lowered for the clip tensors `names` (outermost first),
    and constants left without uses."""
    for name in names:
        value = n.importer.values.get(name)
        if isinstance(value, OpResult) and not value.uses:
            _erase(n, value.op)


def _erase(n: Node, op) -> None:
    operands = list(op.operands)
    op.detach()
    op.erase()
    for v in operands:
        if isinstance(v, OpResult) and not v.uses and isinstance(v.op, qnn.ConstantOp):
            materialized = n.importer.materialized
            for key in [k for k, s in materialized.items() if s is v]:
                del materialized[key]
            v.op.detach()
            v.op.erase()


# --------------------------------------------------------------- lowerings


@lowering("QuantizeLinear")
def quantize_linear(n: Node):
    """Q -> DQ: one quant.fake_quant (the DQ lowering passes its value on)."""
    index = _index(n)
    out = n.proto.output[0]
    users = index.consumers.get(out, [])
    if out in index.outputs or not users or any(u.op_type != "DequantizeLinear"
                                                 for u in users):
        raise FrontendError(
            "a QuantizeLinear must be followed by DequantizeLinear only (qcc imports "
            "the pair as quant.fake_quant); integer tensors that reach other ops or the "
            "graph outputs are not supported yet")
    rank = len(n.shape(0))
    params = _params(n, n.proto, rank)
    for dq in users:
        if not _same_params(params, _params(n, dq, rank, default=params[3])):
            raise FrontendError(f"DequantizeLinear '{dq.name or dq.output[0]}' does not use "
                                "this QuantizeLinear's scale, zero point and axis")
    scales, zero_points, axis, dtype = params
    narrow = _range_clip(n, n.proto, scales, zero_points, axis, dtype, rank)
    if narrow is None:
        x, qrange = n.value(0), None
    else:
        source, qrange, chain = narrow
        value = n.importer.values[source]
        x = n.importer.materialize(source) if isinstance(value, np.ndarray) else value
        _drop_lowered(n, chain)
    qtype = _qtype(scales, zero_points, axis, dtype, _expressed(n, n.input(0)), qrange,
                   _hint(n.proto))
    return _emit(n, x, qtype, _op_name(n.proto))


@lowering("DequantizeLinear")
def dequantize_linear(n: Node):
    """The second half of a Q -> DQ pair, or the weight pattern DQ(initializer)."""
    index = _index(n)
    producer = index.producer.get(n.proto.input[0])
    if producer is not None and producer.op_type == "QuantizeLinear":
        return n.value(0)  # the fake_quant the QuantizeLinear lowering made
    q = n.input(0)
    if not isinstance(q, np.ndarray):
        raise FrontendError(
            "a DequantizeLinear must read a QuantizeLinear (the pair is quant.fake_quant) "
            "or an integer initializer (a weight quantized offline); integer tensors "
            "computed at run time are not supported yet")
    if q.dtype not in _STORAGE:
        raise FrontendError(f"input of type {q.dtype} is not an integer storage type qcc "
                            "supports")
    scales, zero_points, axis, dtype = _params(n, n.proto, q.ndim, default=q.dtype)
    if q.dtype != dtype:
        raise FrontendError(f"input type {q.dtype} and zero point type {dtype} differ")
    scale = _constant(n, n.proto.input[1], "scale")
    qtype = _qtype(scales, zero_points, axis, dtype, ir.element_type(scale.dtype), None,
                   _hint(n.proto))
    values = qtype.dequantize(q.astype(np.int64)).astype(scale.dtype)
    name = n.proto.input[0]
    if name.endswith("_quantized") and len(name) > len("_quantized"):
        name = name[:-len("_quantized")]
    return _emit(n, n.constant(values, name), qtype, _op_name(n.proto))
