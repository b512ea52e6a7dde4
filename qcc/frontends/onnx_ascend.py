"""Lowerings of the Ascend deploy model (`qcc.exporters.deploy`, AMCT's
`<name>_deploy.onnx`) back to the `ascend` dialect, so that qcc runs it.

The Ascend ops are read in the default domain (as AMCT writes them) and in the
`ascend` domain (opset import `ascend`, any version):

- AscendQuant(x) {scale, offset, sqrt_mode, round_mode} -> `ascend.quant` to
  `!quant.uniform<i8:f32, scale_d:offset>` with scale_d = 1 / scale (1 / scale^2
  in sqrt_mode), or the exact type qcc's exporter wrote in the doc_string when it
  agrees with the attributes.
- AscendDequant(x, deq_scale) {dtype, relu_flag, sqrt_mode} -> `ascend.dequant`
  with the deq_scale initializer as a constant.
- AscendAntiQuant(x) {scale, offset, sqrt_mode, dtype} -> `ascend.anti_quant`.
- An integer layer: Conv, ConvTranspose, Gemm or MatMul whose input is a quantized
  tensor (an AscendQuant's output) and whose weight is an int8 initializer. Its
  weight becomes `ascend.weight_quant` of the dequantized float weight and its
  int32 bias `quant.quantize` of the dequantized float bias (both give back the
  integers exactly; a bias past float32's 24-bit integers is an error), with the
  types from the initializers' doc_string when qcc wrote them, else scale_w =
  deq_scale / scale_d and offset_w from the layer's AscendDequant (the one node
  that reads its output). A MatMul's bias is the int32 initializer of the Add
  after it, which then passes the layer's result on.
"""

from __future__ import annotations

import weakref

import numpy as np
import onnx
from xdsl.dialects.builtin import f16, f32
from xdsl.ir import SSAValue

from qcc.dialects import ascend, qnn, quant
from qcc.dialects.quant import UniformQuantizedType
from qcc.frontends import onnx_qdq
from qcc.frontends.errors import FrontendError
from qcc.frontends.onnx_node import Node
from qcc.frontends.onnx_ops import LOWERINGS, lowering

DOMAINS = ("", "ascend")
_DTYPES = {0: f32, 1: f16}  # GE's DataType numbers


def _ascend(*op_types: str):
    """Register a lowering under the op types of both domains."""
    keys = [t if d == "" else f"{d}.{t}" for t in op_types for d in DOMAINS]
    return lowering(*keys)


def _dtype(n: Node):
    value = int(n.attr("dtype", 0))
    if value not in _DTYPES:
        raise FrontendError(f"dtype {value} is not supported (0: float32, 1: float16)")
    return _DTYPES[value]


def _hint(proto) -> UniformQuantizedType | None:
    """The type qcc's exporter wrote in a node's or initializer's doc_string."""
    return onnx_qdq._hint(proto)


# ----------------------------------------------------------- ascend ops


@_ascend("AscendQuant")
def ascend_quant(n: Node):
    scale, offset = float(n.attr("scale")), float(n.attr("offset", 0.0))
    sqrt_mode = bool(n.attr("sqrt_mode", 0))
    dst = n.attr("dst_type", "INT8")
    if dst not in ("INT8", 2):
        raise FrontendError(f"dst_type {dst!r} is not supported (INT8 only)")
    if not (np.isfinite(scale) and scale > 0) or offset != round(offset):
        raise FrontendError(f"scale {scale} must be positive and offset {offset} an integer")
    applied = scale * scale if sqrt_mode else scale
    qtype = UniformQuantizedType.make(scale=1.0 / applied, zero_point=int(offset))
    hint = _hint(n.proto)
    if hint is not None and not hint.is_per_axis and hint.zero_point == qtype.zero_point \
            and abs(hint.scale * applied - 1) <= ascend.SCALE_TOLERANCE:
        qtype = hint
    op = ascend.QuantOp.make(n.value(0), name=n.name, scale=ascend.f32_attr(scale),
                             offset=ascend.f32_attr(offset), sqrt_mode=sqrt_mode,
                             round_mode=n.attr("round_mode", "Round"), qtype=qtype)
    n.importer.graph.add(op)
    return op.results[0]


@_ascend("AscendDequant")
def ascend_dequant(n: Node):
    x = n.value(0)
    qtype = quant.quantized_element(x.type)
    rank = len(n.shape(0))
    axis = qtype.axis if qtype is not None and qtype.axis is not None else (
        1 if rank > 1 else 0)
    return n.emit(ascend.DequantOp, x, n.value(1), relu_flag=bool(n.attr("relu_flag", 0)),
                  sqrt_mode=bool(n.attr("sqrt_mode", 0)), axis=axis, dtype=_dtype(n))


@_ascend("AscendAntiQuant")
def ascend_anti_quant(n: Node):
    return n.emit(ascend.AntiQuantOp, n.value(0), scale=ascend.f32_attr(float(n.attr("scale"))),
                  offset=ascend.f32_attr(float(n.attr("offset", 0.0))),
                  sqrt_mode=bool(n.attr("sqrt_mode", 0)), dtype=_dtype(n))


# -------------------------------------------------------- integer layers


def _integer(n: Node) -> UniformQuantizedType | None:
    """The input's quantized type when the node is an integer layer."""
    v = n.input(0)
    return None if isinstance(v, np.ndarray) else quant.quantized_element(v.type)


def _deq_scale(n: Node, output: str) -> ascend.DeqScale:
    index = onnx_qdq._index(n)
    users = index.consumers.get(output, [])
    if len(users) != 1 or users[0].op_type != "AscendDequant" or len(users[0].input) < 2:
        raise FrontendError("an integer layer's output must go to one AscendDequant (its "
                            "deq_scale gives the weight scales)")
    deq = n.importer.values.get(users[0].input[1])
    if not isinstance(deq, np.ndarray) or deq.dtype != np.uint64:
        raise FrontendError("the AscendDequant's deq_scale must be a uint64 initializer")
    return ascend.unpack_deq_scale(deq.reshape(-1))


def _initializer(n: Node, name: str) -> onnx.TensorProto | None:
    for init in n.importer.proto.graph.initializer:
        if init.name == name:
            return init
    return None


def _weight_qtype(n: Node, array: np.ndarray, init_name: str, xq: UniformQuantizedType,
                  output: str, axis: int) -> UniformQuantizedType:
    """The type of int8 weight `array` (initializer `init_name`): the initializer's
    hint, else scale_w = deq_scale / scale_d and offset_w from the deq_scale of
    the AscendDequant reading `output`."""
    init = _initializer(n, init_name)
    hint = _hint(init) if init is not None else None
    if hint is not None and np.array_equal(hint.quantize(hint.dequantize(array)), array):
        return hint
    fields = _deq_scale(n, output)
    scales = (fields.scale.astype(np.float64) / xq.scale).tolist()
    zps = fields.offset_w.astype(int).tolist()
    narrow = int(array.min(initial=0)) >= -127
    if len(scales) == 1:
        return UniformQuantizedType.make(scale=scales[0], zero_point=zps[0],
                                         narrow_range=narrow and zps[0] == 0)
    return UniformQuantizedType.make_per_axis(axis=axis, scales=scales, zero_points=zps,
                                              narrow_range=narrow and not any(zps))


def _exact(qtype: UniformQuantizedType, array: np.ndarray, what: str) -> np.ndarray:
    """The float tensor that `qtype` quantizes back to `array`."""
    values = qtype.dequantize(array.astype(np.int64))
    if not np.array_equal(qtype.quantize(values), array):
        raise FrontendError(f"the {what} does not survive float32 (a value past 2^24?)")
    return values


def _weight(n: Node, i: int, qtype: UniformQuantizedType) -> SSAValue:
    array = n.array(i)
    if array.dtype != np.int8:
        raise FrontendError(f"the weight of an integer layer must be int8, got {array.dtype}")
    name = n.proto.input[i].removesuffix("_quantized") or n.proto.input[i]
    w = n.constant(_exact(qtype, array, "weight"), name)
    return n.emit(ascend.WeightQuantOp, w, qtype=qtype, suffix="/weight_quant")


def _bias(n: Node, array: np.ndarray | None, acc: UniformQuantizedType) -> SSAValue | None:
    if array is None:
        return None
    if array.dtype != np.int32:
        raise FrontendError(f"the bias of an integer layer must be int32, got {array.dtype}")
    if acc.axis is None:
        qtype = UniformQuantizedType.make(scale=acc.scale, bits=32)
    else:
        qtype = UniformQuantizedType.make_per_axis(axis=0, scales=acc.scales, bits=32)
    b = n.constant(_exact(qtype, array.reshape(-1), "bias"), f"{n.name}.bias")
    return n.emit(quant.QuantizeOp, b, qtype=qtype, suffix="/bias_quantize")


def _accumulator(xq: UniformQuantizedType, wq: UniformQuantizedType, groups: int = 1,
                 ) -> UniformQuantizedType:
    """The accumulator type the layer's inference gives (for the bias type)."""
    scales = [xq.scale * s for s in wq.scales] * (groups if wq.is_per_axis else 1)
    if not wq.is_per_axis:
        return UniformQuantizedType.make(scale=scales[0], bits=32)
    return UniformQuantizedType.make_per_axis(axis=1, scales=scales, bits=32)


def _with(n: Node, float_lowering, values: dict[int, SSAValue]):
    """Run the float lowering with inputs `values` standing for initializers."""
    materialized = n.importer.materialized
    saved = {n.proto.input[i]: materialized.get(n.proto.input[i]) for i in values}
    for i, v in values.items():
        materialized[n.proto.input[i]] = v
    try:
        return float_lowering(n)
    finally:
        for name, old in saved.items():
            if old is None:
                materialized.pop(name, None)
            else:
                materialized[name] = old


_FLOAT = {op: LOWERINGS[op] for op in ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add")}


@lowering("Conv", "ConvTranspose")
def conv(n: Node):
    xq = _integer(n)
    if xq is None:
        return _FLOAT[n.op_type](n)
    transpose = n.op_type == "ConvTranspose"
    groups = int(n.attr("group", 1))
    wq = _weight_qtype(n, n.array(1), n.proto.input[1], xq, n.proto.output[0],
                       1 if transpose and groups == 1 else 0)
    values = {1: _weight(n, 1, wq)}
    if n.has(2):
        bias = _bias(n, n.array(2), _accumulator(xq, wq, groups if transpose else 1))
        assert bias is not None  # n.array(2) is an array
        values[2] = bias
    return _with(n, _FLOAT[n.op_type], values)


@lowering("Gemm")
def gemm(n: Node):
    xq = _integer(n)
    if xq is None:
        return _FLOAT["Gemm"](n)
    if n.attr("transA", 0) or float(n.attr("alpha", 1.0)) != 1 or \
            float(n.attr("beta", 1.0)) != 1:
        raise FrontendError("an integer Gemm must have transA = 0, alpha = beta = 1")
    if not n.attr("transB", 0):
        raise FrontendError("an integer Gemm must have transB = 1 (weight [out, in])")
    wq = _weight_qtype(n, n.array(1), n.proto.input[1], xq, n.proto.output[0], 0)
    w = _weight(n, 1, wq)
    bias = _bias(n, n.optional_array(2), _accumulator(xq, wq)) if n.has(2) else None
    return n.emit(qnn.DenseOp, n.value(0), w, bias)


_ADDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""importer -> names of the Add nodes whose bias an integer MatMul took."""


@lowering("MatMul")
def matmul(n: Node):
    xq = _integer(n)
    if xq is None:
        return _FLOAT["MatMul"](n)
    b = n.input(1)
    if not isinstance(b, np.ndarray):
        return _FLOAT["MatMul"](n)  # two activations: qnn.matmul of quantized values
    index = onnx_qdq._index(n)
    output = n.proto.output[0]
    users = index.consumers.get(output, [])
    bias, add = None, None
    if len(users) == 1 and users[0].op_type == "Add":
        other = [v for v in users[0].input if v != output]
        value = n.importer.values.get(other[0]) if len(other) == 1 else None
        if isinstance(value, np.ndarray) and value.dtype == np.int32:
            bias, add = value, users[0]
    out = add.output[0] if add is not None else output
    wt = np.ascontiguousarray(b.T)
    wq = _weight_qtype(n, wt, n.proto.input[1], xq, out, 0)
    name = n.proto.input[1].removesuffix("_quantized_t").removesuffix("_quantized")
    w = n.constant(_exact(wq, wt, "weight"), name)
    wv = n.emit(ascend.WeightQuantOp, w, qtype=wq, suffix="/weight_quant")
    acc = _accumulator(xq, wq)
    y = n.emit(qnn.DenseOp, n.value(0), wv, _bias(n, bias, acc))
    if add is not None:
        _ADDS.setdefault(n.importer, set()).add(add.name or add.output[0])
    return y


@lowering("Add")
def add(n: Node):
    if (n.proto.name or n.proto.output[0]) in _ADDS.get(n.importer, ()):
        v = n.input(0)
        return v if not isinstance(v, np.ndarray) else n.value(1)
    return _FLOAT["Add"](n)
