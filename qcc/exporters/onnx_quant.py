"""ONNX exports of the quant ops (`qcc.exporters.onnx` has the machinery).

- `quant.fake_quant`: QuantizeLinear + DequantizeLinear (`emit_qdq`); a 32-bit
  type (a bias) as DequantizeLinear of the quantized int32 constant; learned
  scale/zero point operands as run-time inputs of the pair.
- `quant.quantize` / `quant.dequantize`: QuantizeLinear / DequantizeLinear;
  `quant.requantize`: DequantizeLinear then QuantizeLinear.
- `quant.observe`: none (a calibration point; calibrate first).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from onnx import TensorProto
from xdsl.dialects.builtin import Float16Type, Float32Type
from xdsl.ir import SSAValue

from qcc.dialects import qnn, quant
from qcc.dialects.quant import UniformQuantizedType
from qcc.exporters.onnx_base import (
    OpWriter,
    Unsupported,
    export,
    full_range,
    onnx_dtype,
    qdq_storage,
)

QTYPE_DOC = "qcc qtype: "
"""The node that quantizes (QuantizeLinear, or the DequantizeLinear of a constant)
carries its type in `doc_string` as `qcc qtype: !quant.uniform<...>`: the float64
scales and storage width that float32 scales and int8 storage cannot hold. The
ONNX frontend uses it when it agrees with the node's own parameters."""

# --------------------------------------------------------------- quant ops


def emit_qdq(w: OpWriter, x: str, qtype: UniformQuantizedType, rank: int,
             out: str | None, *, quantize: bool = True, dequantize: bool = True) -> str:
    """QuantizeLinear and/or DequantizeLinear of `qtype` from tensor `x` (float32
    when quantizing, storage when only dequantizing); returns the last output.

    Parameters are initializers `<node>_scale` (float32: a scalar, or one per index
    of `axis`) and `<node>_zero_point` (the storage type, same shape), shared by
    the pair; per-axis nodes carry `axis`.

    Storage that QuantizeLinear lacks: before opset 21 there is no int4, so 4-bit
    types are stored in int8/uint8 with the scale and zero point as they are (the
    integers of a 4-bit grid are int8 integers, so dequantized values are the same).
    A storage range narrower than the ONNX storage type (4 bits in 8, a narrow
    range such as `i8<-127:127>`, 7 bits as `i8<-64:63>`) cannot be said in
    QuantizeLinear, which saturates to its type's full range: the input is first
    clipped to the dequantized bounds `scale * (storage_min - zero_point)` and
    `scale * (storage_max - zero_point)` (`Clip` per tensor, `Max`/`Min` with
    per-channel bounds per axis). `x / scale` then rounds into the narrow range
    exactly, so the pair computes what `qtype.fake_quant` does, bit for bit, for
    inputs outside the range too. The frontend reads the clip back into the
    storage range. 16-bit storage needs opset 21; 32-bit has no QuantizeLinear.
    """
    storage = qdq_storage(qtype, w.opset)
    axis = qtype.axis
    scales = np.asarray(qtype.scales, np.float32)
    zero_points = np.asarray(qtype.zero_points, np.int64).astype(storage)
    if axis is None:
        scales, zero_points = scales.reshape(()), zero_points.reshape(())
    attrs = {"axis": axis} if axis is not None else {}
    s = w.const(scales, "scale")
    z = w.const(zero_points, "zero_point")
    if quantize:
        if (qtype.storage_min, qtype.storage_max) != full_range(storage):
            x = _clip_to_range(w, x, qtype, rank)
        q = w.tmp("quantized") if dequantize or out is None else out
        w.node("QuantizeLinear", [x, s, z], [q], suffix="QuantizeLinear",
               doc_string=QTYPE_DOC + str(qtype), **attrs)
        x = q
    if dequantize:
        dq = out if out is not None else w.tmp("dequantized")
        doc = None if quantize else QTYPE_DOC + str(qtype)
        w.node("DequantizeLinear", [x, s, z], [dq], suffix="DequantizeLinear", doc_string=doc,
               **attrs)
        x = dq
    return x


def _range_bounds(qtype: UniformQuantizedType, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Dequantized storage_min and storage_max, computed as `qtype.dequantize`
    does in float32: a scalar each, or [C, 1, ..., 1] to broadcast from `axis` on."""
    scales = np.asarray(qtype.scales, np.float32)
    zero_points = np.asarray(qtype.zero_points, np.float64)
    lo, hi = ((q - zero_points).astype(np.float32) * scales
              for q in (qtype.storage_min, qtype.storage_max))
    shape = [] if qtype.axis is None else [len(scales)] + [1] * (rank - 1 - qtype.axis)
    return lo.reshape(shape), hi.reshape(shape)


def _clip_to_range(w: OpWriter, x: str, qtype: UniformQuantizedType, rank: int) -> str:
    lo, hi = _range_bounds(qtype, rank)
    if qtype.axis is None:
        y = w.tmp("clipped")
        w.node("Clip", [x, w.const(lo, "min"), w.const(hi, "max")], [y], suffix="clip")
        return y
    low = w.tmp("clipped_low")
    w.node("Max", [x, w.const(lo, "min")], [low], suffix="clip_min")
    y = w.tmp("clipped")
    w.node("Min", [low, w.const(hi, "max")], [y], suffix="clip_max")
    return y


def _fold_learned(w: OpWriter, qtype: UniformQuantizedType,
                  learned: Sequence[SSAValue]) -> UniformQuantizedType | None:
    """`qtype` with constant learned operands read in (the zero point rounded half
    to even, as the runtime does); None when they are computed at run time."""
    arrays = [w.array(v) for v in learned]
    if any(a is None for a in arrays):
        return None
    scales = np.asarray(arrays[0], np.float64).reshape(-1).tolist()
    zero_points = np.rint(np.asarray(arrays[1], np.float64)).reshape(-1).astype(int).tolist()
    common: dict[str, Any] = {"bits": qtype.bits, "signed": qtype.signed,
                              "expressed_type": qtype.expressed_type,
                              "storage_min": qtype.storage_min, "storage_max": qtype.storage_max}
    try:
        if qtype.axis is None:
            folded = UniformQuantizedType.make(scale=scales[0], zero_point=zero_points[0],
                                               **common)
        else:
            folded = UniformQuantizedType.make_per_axis(
                axis=qtype.axis, scales=scales, zero_points=zero_points, **common)
        folded.verify()
    except Exception as e:
        raise Unsupported(f"the learned scale/zero point make no valid type: {e}") from None
    return folded


@export(quant.FakeQuantOp)
def _fake_quant(w: OpWriter) -> None:
    op = w.op
    assert isinstance(op, quant.FakeQuantOp)
    qtype = op.qtype
    rank = len(w.shape(op.input))
    if op.learned:
        folded = _fold_learned(w, qtype, list(op.learned))
        if folded is None:
            _learned_qdq(w, qtype, rank)
            return
        qtype = folded
    if qtype.bits == 32:
        _dequantized_constant(w, qtype)
        return
    x = w.input(0)
    expressed = qtype.expressed_type
    if isinstance(expressed, Float32Type):
        emit_qdq(w, x, qtype, rank, w.out())
        return
    # f16 / bf16: quantize the float32 value with the float32 scale, as
    # `UniformQuantizedType.fake_quant` does, and cast back
    x32 = w.tmp("float32")
    w.node("Cast", [x], [x32], suffix="to_float32", to=TensorProto.FLOAT)
    y = emit_qdq(w, x32, qtype, rank, None)
    to = TensorProto.FLOAT16 if isinstance(expressed, Float16Type) else TensorProto.BFLOAT16
    w.node("Cast", [y], [w.out()], suffix="to_expressed", to=to)


def _dequantized_constant(w: OpWriter, qtype: UniformQuantizedType) -> None:
    """32-bit storage (a bias quantized with scale_x * scale_w) has no
    QuantizeLinear; a constant is quantized here and written as an int32
    initializer `<constant>_quantized` read by DequantizeLinear, as onnxruntime's
    quantizer writes biases."""
    op = w.op
    assert isinstance(op, quant.FakeQuantOp)
    array = w.array(op.input)
    if array is None or not qtype.signed or not isinstance(qtype.expressed_type, Float32Type):
        raise Unsupported("32-bit storage has no QuantizeLinear: only an i32 fake_quant of "
                          "an f32 constant is written (as DequantizeLinear of int32)")
    owner = op.input.owner
    assert isinstance(owner, qnn.ConstantOp)
    name = w.exporter.derived(op.input, "i32", lambda: qtype.quantize(array).astype(np.int32),
                              suffix="_quantized")
    axis = qtype.axis
    scales = np.asarray(qtype.scales, np.float32)
    zero_points = np.asarray(qtype.zero_points, np.int32)
    if axis is None:
        scales, zero_points = scales.reshape(()), zero_points.reshape(())
    w.node("DequantizeLinear",
           [name, w.const(scales, "scale"), w.const(zero_points, "zero_point")], [w.out()],
           suffix="DequantizeLinear", doc_string=QTYPE_DOC + str(qtype),
           **({"axis": axis} if axis is not None else {}))


def _learned_qdq(w: OpWriter, qtype: UniformQuantizedType, rank: int) -> None:
    """Range learning with parameters computed at run time: the zero point is
    rounded half to even (Round) and cast to the storage type; a narrow storage
    range clips with bounds computed from them."""
    op = w.op
    assert isinstance(op, quant.FakeQuantOp)
    if not isinstance(qtype.expressed_type, Float32Type):
        raise Unsupported("learned parameters of a f16/bf16 fake_quant")
    storage = qdq_storage(qtype, w.opset)
    s, z = w.tensor(op.learned[0]), w.tensor(op.learned[1])
    shape = () if qtype.axis is None else (len(qtype.scales),)
    if w.shape(op.learned[0]) != shape:
        s2 = w.tmp("scale")
        w.node("Reshape", [s, w.ints(shape, "scale_shape")], [s2], suffix="scale_reshape")
        s = s2
    if w.shape(op.learned[1]) != shape:
        z2 = w.tmp("zero_point_float")
        w.node("Reshape", [z, w.ints(shape, "zero_point_shape")], [z2],
               suffix="zero_point_reshape")
        z = z2
    z_round = w.tmp("zero_point_rounded")
    w.node("Round", [z], [z_round], suffix="zero_point_round")
    z_int = w.tmp("zero_point")
    w.node("Cast", [z_round], [z_int], suffix="zero_point_cast", to=onnx_dtype(storage))
    attrs: dict[str, Any] = {"axis": qtype.axis} if qtype.axis is not None else {}
    x = w.input(0)
    if (qtype.storage_min, qtype.storage_max) != full_range(storage):
        x = _learned_clip(w, x, s, z_round, qtype, rank)
    q = w.tmp("quantized")
    w.node("QuantizeLinear", [x, s, z_int], [q], suffix="QuantizeLinear", **attrs)
    w.node("DequantizeLinear", [q, s, z_int], [w.out()], suffix="DequantizeLinear", **attrs)


def _learned_clip(w: OpWriter, x: str, s: str, z: str, qtype: UniformQuantizedType,
                  rank: int) -> str:
    """Max/Min with bounds (storage_min - z) * s, (storage_max - z) * s."""
    if qtype.axis is not None and qtype.axis != rank - 1:
        keep = [len(qtype.scales)] + [1] * (rank - 1 - qtype.axis)
        s2, z2 = w.tmp("scale_b"), w.tmp("zero_point_b")
        w.node("Reshape", [s, w.ints(keep, "bound_shape")], [s2], suffix="scale_b")
        w.node("Reshape", [z, w.ints(keep, "bound_shape_z")], [z2], suffix="zero_point_b")
        s, z = s2, z2
    y = x
    for tag, q, onnx_op in (("min", qtype.storage_min, "Max"),
                            ("max", qtype.storage_max, "Min")):
        d = w.tmp(f"{tag}_steps")
        w.node("Sub", [w.const(np.float32(q), f"storage_{tag}"), z], [d], suffix=f"{tag}_sub")
        bound = w.tmp(f"{tag}_bound")
        w.node("Mul", [d, s], [bound], suffix=f"{tag}_mul")
        clipped = w.tmp(f"clipped_{tag}")
        w.node(onnx_op, [y, bound], [clipped], suffix=f"clip_{tag}")
        y = clipped
    return y


@export(quant.QuantizeOp)
def _quantize(w: OpWriter) -> None:
    op = w.op
    assert isinstance(op, quant.QuantizeOp)
    if not isinstance(op.qtype.expressed_type, Float32Type):
        raise Unsupported("only f32 expressed types")
    emit_qdq(w, w.input(0), op.qtype, len(w.shape(op.input)), w.out(), dequantize=False)


@export(quant.DequantizeOp)
def _dequantize(w: OpWriter) -> None:
    op = w.op
    qtype = quant.quantized_element(op.operands[0].type)
    assert qtype is not None
    if not isinstance(qtype.expressed_type, Float32Type):
        raise Unsupported("only f32 expressed types")
    emit_qdq(w, w.input(0), qtype, len(w.shape(op.operands[0])), w.out(), quantize=False)


@export(quant.RequantizeOp)
def _requantize(w: OpWriter) -> None:
    op = w.op
    assert isinstance(op, quant.RequantizeOp)
    source = quant.quantized_element(op.input.type)
    assert source is not None
    if not isinstance(op.qtype.expressed_type, Float32Type):
        raise Unsupported("only f32 expressed types")
    rank = len(w.shape(op.input))
    inner = OpWriter(w.exporter, op, f"{w.base}/source")
    x = emit_qdq(inner, w.input(0), source, rank, None, quantize=False)
    emit_qdq(w, x, op.qtype, rank, w.out(), dequantize=False)


@export(quant.ObserveOp)
def _observe(w: OpWriter) -> None:
    raise Unsupported("a calibration point (run qcc-calibrate first: observers become "
                      "quant.fake_quant)")
