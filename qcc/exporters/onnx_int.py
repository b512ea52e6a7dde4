"""Integer ONNX: the integer graph (qcc-realize-int8's output) with standard
operators that onnxruntime runs.

    model = export_onnx_int(module, "net_int.onnx")

How the integer ops are written (the rest as `qcc.exporters.onnx` writes them):

1. `quant.quantize` of a constant (weights, i32 biases) and `ascend.weight_quant`
   are no node: their integers are an initializer `<constant>_quantized` (int8,
   int32), made once, whose doc_string is the exact type (`qcc qtype: ...`).
2. `quant.quantize` of an activation: QuantizeLinear; `quant.dequantize` of an i8
   tensor: DequantizeLinear (`qcc.exporters.onnx_quant`).
3. A layer on quantized operands whose i32 accumulator feeds only a
   `quant.requantize` to a per-tensor 8-bit type: QLinearConv (conv)
   or QLinearMatMul (dense without bias, matmul). onnxruntime requantizes with
   rint(acc * m) + z_y, m = x_scale * w_scale / y_scale formed in float32
   arithmetic, which differs in the last bit from qcc's float32(s_acc / s_y)
   (s_acc = s_x * s_w in float64) for many channels. So the scales are written
   folded: x_scale = y_scale = 1 and w_scale = float32(s_acc / s_y) per channel;
   m is then exactly qcc's multiplier and the integers are bit-identical. (The
   scales of x and y are those of the QuantizeLinear / DequantizeLinear around
   them; a QLinearConv's own scales only form m.)
4. Any other integer layer: ConvInteger / MatMulInteger (dense: by the transposed
   int8 weight) with the zero points, plus an int32 `Add` of the bias: the i32
   accumulator. Its `quant.dequantize`: `Cast` to float and `Mul` by the float32
   scales (per channel, reshaped to broadcast): float32(acc) * float32(s_acc).
   Its `quant.requantize`: `Cast`, `Mul` by float32(s_acc / s_y), QuantizeLinear
   with scale 1 and zero point z_y: clip(rint(float32(acc) * m) + z_y).
   A storage range narrower than the 8-bit type's (`i8<z:127>`, a relu folded into
   the requantize) is a Clip of the saturated integers.
5. `qnn.avg_pool` on a quantized tensor (its mean in the input's own type, rounded
   half to even; `qcc.runtime.int8`): ONNX has no integer AveragePool, so the window
   sums are a depthwise ConvInteger by int8 ones with the zero point as
   x_zero_point (padding holds it: the real 0), and the mean is
   Cast(sum -> double) / count, Round (half to even), + z, Cast to the storage. The
   counts per output position are a constant (declared padding counts with
   count_include_pad, cells added by ceil_mode never do; the ceil cells are extra
   end padding). A float64 quotient of integers below 2^53 is correctly rounded,
   so Round sees exact halves: the integers are the runtime's on every CPU.
6. Data movement (reshape, transpose, concat, slice, gather...) and max pooling
   read quantized tensors as their storage; any other op on quantized values
   (and conv_transpose, which has no integer ONNX op) is listed as unsupported.

Quantized tensors are their storage type (int8, uint8, int32) in the graph.
`IntExporter` is shared with `qcc.exporters.deploy`, which writes the Ascend ops.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.ir import Attribute, Operation, SSAValue

from qcc import ir
from qcc.dialects import ascend, qnn, quant
from qcc.dialects.base import get_bool, get_ints
from qcc.dialects.quant import UniformQuantizedType, storage_range
from qcc.exporters import onnx as base
from qcc.exporters.onnx import (
    DEFAULT_OPSET,
    OpWriter,
    Unsupported,
)
from qcc.exporters.onnx_quant import QTYPE_DOC

Export = Callable[[OpWriter], None]

INT_EXPORTS: dict[type, Export] = {}
"""op class -> export of the integer ONNX (falls back to `qcc.exporters.onnx`'s)."""

LAYERS = (qnn.ConvOp, qnn.ConvTransposeOp, qnn.DenseOp, qnn.MatmulOp)

INTEGER_OPS = (qnn.AvgPoolOp,)
"""Other qnn ops with an integer form (in the input's own quantized type)."""

MOVES_DATA = (qnn.ReshapeOp, qnn.TransposeOp, qnn.BroadcastOp, qnn.ConcatOp, qnn.SplitOp,
              qnn.SliceOp, qnn.GatherOp, qnn.GatherElementsOp, qnn.GatherNdOp,
              qnn.IdentityOp, qnn.DropoutOp, qnn.MaxPoolOp, qnn.DynamicBroadcastOp,
              qnn.DynamicReshapeOp, qnn.DynamicSliceOp)
"""qnn ops that only move (or pick) elements: a quantized tensor is its storage."""


def export(table: dict[type, Export], *op_types: type) -> Callable[[Export], Export]:
    def register(fn: Export) -> Export:
        for t in op_types:
            table[t] = fn
        return fn

    return register


# ------------------------------------------------------------------ helpers


def qtype_of(value: SSAValue) -> UniformQuantizedType | None:
    return quant.quantized_element(value.type)


def folded_array(value: SSAValue | None) -> np.ndarray | None:
    """The integers of a quantized constant (`quant.quantize` / `ascend.weight_quant`
    of a `qnn.constant`), else None."""
    if value is None:
        return None
    owner = value.owner
    if not isinstance(owner, quant.QuantizeOp | ascend.WeightQuantOp):
        return None
    array = ir.constant_value(owner.input)
    if array is None:
        return None
    qtype = owner.properties["qtype"]
    assert isinstance(qtype, UniformQuantizedType)
    return qtype.quantize(array).astype(qtype.numpy_dtype)


def is_folded(op: Operation) -> bool:
    return bool(op.results) and folded_array(op.results[0]) is not None


def storage_dtype(t: Attribute, opset: int) -> np.dtype:
    """The ONNX element type of a value: a quantized tensor is its storage."""
    assert isinstance(t, TensorType)
    qtype = quant.quantized_element(t)
    if qtype is not None:
        if qtype.bits not in (8, 16, 32):
            raise Unsupported(f"no ONNX storage for {qtype.bits}-bit {qtype}")
        return qtype.numpy_dtype
    return base.element_dtype(t, opset)


def scale_shape(qtype: UniformQuantizedType, rank: int) -> list[int]:
    """Shape of per-channel parameters broadcasting from `qtype`'s axis on."""
    if qtype.axis is None:
        return []
    return [len(qtype.scales)] + [1] * (rank - 1 - qtype.axis)


def zero_point_input(w: OpWriter, qtype: UniformQuantizedType, tag: str,
                     per_channel_ok: bool = True) -> str:
    """A zero point initializer: a scalar when all are equal, else 1-D."""
    zps = np.asarray(qtype.zero_points, np.int64)
    if (zps == zps[0]).all():
        return w.const(np.asarray(zps[0]).astype(qtype.numpy_dtype), tag)
    if not per_channel_ok:
        raise Unsupported(f"per-channel zero points of {qtype}")
    return w.const(zps.astype(qtype.numpy_dtype), tag)


def check_quantized(op: Operation) -> None:
    """Only the quant and ascend ops, the integer layers and data movement read
    or produce quantized values."""
    if isinstance(op, (*MOVES_DATA, *LAYERS, *INTEGER_OPS)) or \
            op.name.startswith(("quant.", "ascend.")):
        return
    for v in [*op.operands, *op.results]:
        if quant.quantized_element(v.type) is not None:
            raise Unsupported("operates on quantized integers with no integer ONNX form")


# ---------------------------------------------------------------- exporter


class IntExporter(base._Exporter):
    """`qcc.exporters.onnx`'s exporter with quantized tensors as their storage,
    quantized constants folded to initializers and an export table of its own.
    Exports may write an op's user too (`absorb`), which is then skipped."""

    def __init__(self, module: ModuleOp, opset: int, exports: dict[type, Export]) -> None:
        super().__init__(module, opset)
        self.exports = exports
        self.absorbed: set[Operation] = set()
        self.domains: dict[str, int] = {}

    def absorb(self, op: Operation) -> None:
        self.absorbed.add(op)

    def tensor(self, value: SSAValue) -> str:
        name = self.names.get(value)
        if name is not None:
            return name
        array = folded_array(value)
        if array is None:
            return super().tensor(value)
        owner = value.owner
        assert isinstance(owner, Operation)
        const = owner.operands[0].owner
        assert isinstance(const, qnn.ConstantOp)
        stem = base._attr_str(const, "name") or "const"
        name = self.initializer(array, f"{stem}_quantized")
        # the exact type, for qcc's frontend (as `onnx_quant.QTYPE_DOC` on QDQ nodes)
        self.model.graph.initializer[-1].doc_string = QTYPE_DOC + str(
            owner.properties["qtype"])
        self.names[value] = name
        return name

    quiet_after_failure = True
    what_fails = "cannot be written"

    def _skips(self, op: Operation) -> bool:
        return super()._skips(op) or is_folded(op) or op in self.absorbed

    def _export_of(self, op: Operation):
        return self.exports.get(type(op)) or base._exports().get(type(op))

    def _check(self, op: Operation) -> None:
        check_quantized(op)

    def run(self, model_name: str) -> onnx.ModelProto:
        model = super().run(model_name)
        for domain, version in sorted(self.domains.items()):
            model.opset_import.append(helper.make_opsetid(domain, version))
        return model

    def _element_dtype(self, t: Attribute):
        return storage_dtype(t, self.opset)  # quantized tensors are their storage


def write(exporter: IntExporter, path: str | os.PathLike | None, model_name: str | None,
          check: Callable[[onnx.ModelProto], None] | None = None) -> onnx.ModelProto:
    """Run `exporter`, check the model (`onnx.checker` unless `check` is given)
    and write it atomically to `path`."""
    name = model_name or (Path(path).stem if path is not None else "main")
    model = exporter.run(name)
    (check or onnx.checker.check_model)(model)
    if path is not None:
        base.save_atomic(model, Path(path))
    return model


# ------------------------------------------------------------ integer layers


def _conv_attrs(w: OpWriter) -> dict[str, Any]:
    from qcc.exporters.onnx_ops import _conv_attrs as attrs

    return attrs(w)


def _requantize_user(op: Operation) -> quant.RequantizeOp | None:
    """The `quant.requantize` to a per-tensor full-range 8-bit type that is the only
    user of a layer's accumulator (what QLinearConv / QLinearMatMul can write)."""
    user = op.results[0].get_user_of_unique_use()
    if not isinstance(user, quant.RequantizeOp):
        return None
    q = user.qtype
    if q.bits != 8 or q.is_per_axis:
        return None
    return user


def requantized(w: OpWriter, op: quant.RequantizeOp) -> tuple[str, Callable[[], None]]:
    """(the tensor a requantizing node writes, a function to call after writing it):
    a storage range narrower than the 8-bit type's (`i8<z:127>`, a folded relu) is a
    Clip of the node's saturated output to it."""
    out = w.exporter.result_name(op.results[0])
    q = op.qtype
    if (q.storage_min, q.storage_max) == storage_range(8, q.signed):
        return out, lambda: None
    full = w.tmp("saturated")

    def clamp() -> None:
        bounds = [w.const(np.asarray(v).astype(q.numpy_dtype), f"storage_{tag}")
                  for v, tag in ((q.storage_min, "min"), (q.storage_max, "max"))]
        w.node("Clip", [full, *bounds], [out], suffix="storage_range")

    return full, clamp


def _layer_qtypes(op: Operation) -> tuple[UniformQuantizedType, UniformQuantizedType]:
    x, wt = qtype_of(op.operands[0]), qtype_of(op.operands[1])
    assert x is not None and wt is not None
    return x, wt


def _integer_layer(w: OpWriter) -> tuple[UniformQuantizedType, UniformQuantizedType,
                                          np.ndarray] | None:
    """A conv's or dense's input and weight types and its folded integer weight; None
    when its input is float (then written as `qcc.exporters.onnx` writes it)."""
    op = w.op
    if qtype_of(op.operands[0]) is None:
        base._exports()[type(op)](w)
        return None
    xq, wq = _layer_qtypes(op)
    weight = folded_array(op.operands[1])
    if weight is None:
        raise Unsupported("the weight must be a quantized constant")
    return xq, wq, weight


def requantize_multiplier(op: quant.RequantizeOp) -> np.ndarray:
    """float32(s_acc / s_y): one per channel of the accumulator, or a scalar."""
    source = qtype_of(op.input)
    assert source is not None
    m = (np.asarray(source.scales, np.float64) / op.qtype.scale).astype(np.float32)
    return m if source.axis is not None else m.reshape(())


def _multiplier(w: OpWriter, op: quant.RequantizeOp, tag: str) -> str:
    return w.const(requantize_multiplier(op), tag)


def _unit(w: OpWriter, tag: str) -> str:
    return w.const(np.float32(1.0), tag)


def _bias_add(w: OpWriter, acc: str, bias: SSAValue | None, rank: int, axis: int,
              out: str) -> None:
    if bias is None:
        w.node("Identity", [acc], [out], suffix="acc")
        return
    array = folded_array(bias)
    if array is not None:
        shape = [array.size] + [1] * (rank - 1 - axis)
        b = w.const(array.reshape(shape).astype(np.int32), "bias")
    else:
        b = w.tensor(bias)
    w.node("Add", [acc, b], [out], suffix="bias")


@export(INT_EXPORTS, qnn.ConvOp)
def _conv(w: OpWriter) -> None:
    op = w.op
    assert isinstance(op, qnn.ConvOp)
    if (layer := _integer_layer(w)) is None:
        return
    xq, wq, _ = layer
    wname = w.tensor(op.weight)
    requant = _requantize_user(op)
    if requant is not None and (op.bias is None or folded_array(op.bias) is not None):
        y = requant.qtype
        inputs = [w.input(0), _unit(w, "x_scale"), zero_point_input(w, xq, "x_zero_point"),
                  wname, _multiplier(w, requant, "w_scale"),
                  zero_point_input(w, wq, "w_zero_point"), _unit(w, "y_scale"),
                  zero_point_input(w, y, "y_zero_point")]
        if op.bias is not None:
            inputs.append(w.tensor(op.bias))
        out, clamp = requantized(w, requant)
        w.node("QLinearConv", inputs, [out], **_conv_attrs(w))
        clamp()
        w.exporter.absorb(requant)
        return
    acc = w.tmp("acc")
    w.node("ConvInteger", [w.input(0), wname, zero_point_input(w, xq, "x_zero_point"),
                           zero_point_input(w, wq, "w_zero_point")], [acc], **_conv_attrs(w))
    _bias_add(w, acc, op.bias, len(w.shape(op.output)), 1, w.out())


@export(INT_EXPORTS, qnn.DenseOp)
def _dense(w: OpWriter) -> None:
    op = w.op
    assert isinstance(op, qnn.DenseOp)
    if (layer := _integer_layer(w)) is None:
        return
    xq, wq, weight = layer
    if wq.axis not in (None, 0):
        raise Unsupported(f"a dense weight quantized on axis {wq.axis}")
    wt = w.exporter.derived(op.weight.owner.operands[0], "int8T",  # type: ignore[union-attr]
                            lambda: np.ascontiguousarray(weight.T), suffix="_quantized_t")
    requant = _requantize_user(op)
    if requant is not None and op.bias is None:
        y = requant.qtype
        out, clamp = requantized(w, requant)
        w.node("QLinearMatMul", [
            w.input(0), _unit(w, "a_scale"), zero_point_input(w, xq, "a_zero_point"),
            wt, _multiplier(w, requant, "b_scale"), zero_point_input(w, wq, "b_zero_point"),
            _unit(w, "y_scale"), zero_point_input(w, y, "y_zero_point")],
            [out])
        clamp()
        w.exporter.absorb(requant)
        return
    acc = w.tmp("acc")
    w.node("MatMulInteger", [w.input(0), wt, zero_point_input(w, xq, "a_zero_point"),
                             zero_point_input(w, wq, "b_zero_point")], [acc])
    rank = len(w.shape(op.output))
    _bias_add(w, acc, op.bias, rank, rank - 1, w.out())


@export(INT_EXPORTS, qnn.MatmulOp)
def _matmul(w: OpWriter) -> None:
    op = w.op
    if qtype_of(op.operands[0]) is None:
        return base._exports()[qnn.MatmulOp](w)
    aq, bq = _layer_qtypes(op)
    requant = _requantize_user(op)
    if requant is not None:
        y = requant.qtype
        out, clamp = requantized(w, requant)
        w.node("QLinearMatMul", [
            w.input(0), _unit(w, "a_scale"), zero_point_input(w, aq, "a_zero_point"),
            w.input(1), _multiplier(w, requant, "b_scale"),
            zero_point_input(w, bq, "b_zero_point"), _unit(w, "y_scale"),
            zero_point_input(w, y, "y_zero_point")],
            [out])
        clamp()
        w.exporter.absorb(requant)
        return
    w.node("MatMulInteger", [w.input(0), w.input(1), zero_point_input(w, aq, "a_zero_point"),
                             zero_point_input(w, bq, "b_zero_point")], [w.out()])


@export(INT_EXPORTS, qnn.ConvTransposeOp)
def _conv_transpose(w: OpWriter) -> None:
    if qtype_of(w.op.operands[0]) is None:
        return base._exports()[qnn.ConvTransposeOp](w)
    raise Unsupported("ONNX has no integer ConvTranspose")


# ------------------------------------------------------------------ pooling


def pool_counts(size: int, k: int, s: int, dl: int, pb: int, pe: int, out: int,
                include_pad: bool) -> np.ndarray:
    """Cells each of `out` windows of one spatial dim counts: taps inside the input,
    plus those on the declared padding [-pb, 0) and [size, size + pe) with
    `include_pad` (cells past it, added by ceil_mode, never count)."""
    lo, hi = (-pb, size + pe) if include_pad else (0, size)
    pos = np.arange(out)[:, None] * s - pb + np.arange(k)[None, :] * dl
    return np.maximum(((pos >= lo) & (pos < hi)).sum(axis=1), 1)


@export(INT_EXPORTS, qnn.AvgPoolOp)
def _avg_pool(w: OpWriter) -> None:
    op = w.op
    assert isinstance(op, qnn.AvgPoolOp)
    q = qtype_of(op.operands[0])
    if q is None:
        return base._exports()[qnn.AvgPoolOp](w)
    if q.is_per_axis:
        raise Unsupported(f"an average pool of the per-axis type {q}")
    shape, out = w.shape(op.operands[0]), w.shape(op.results[0])
    d = len(shape) - 2
    if not all(isinstance(v, int) for v in [*shape[1:], *out[2:]]):
        raise Unsupported("an integer average pool needs static channels and spatial dims")
    k, st = list(get_ints(op.kernel)), list(get_ints(op.strides))
    pads = list(get_ints(op.pads))
    dl = list(get_ints(op.dilations)) if op.dilations is not None else [1] * d
    include = get_bool(op.count_include_pad)
    ends = [max(0, (out[2 + i] - 1) * st[i] + (k[i] - 1) * dl[i] + 1 - shape[2 + i] - pads[i])
            for i in range(d)]
    count = np.ones([1, 1], np.float64)
    for i in range(d):
        c = pool_counts(shape[2 + i], k[i], st[i], dl[i], pads[i], pads[d + i], out[2 + i],
                        include)
        count = np.multiply.outer(count, c)
    ones = w.const(np.ones([shape[1], 1, *k], q.numpy_dtype), "ones")
    total, mean, rounded = w.tmp("sum"), w.tmp("mean"), w.tmp("rounded")
    w.node("ConvInteger", [w.input(0), ones, zero_point_input(w, q, "x_zero_point")], [total],
           kernel_shape=k, strides=st, pads=pads[:d] + ends, dilations=dl, group=shape[1])
    as_double = w.tmp("sum_double")
    w.node("Cast", [total], [as_double], suffix="cast", to=TensorProto.DOUBLE)
    w.node("Div", [as_double, w.const(count, "count")], [mean], suffix="mean")
    w.node("Round", [mean], [rounded], suffix="round")
    shifted = w.tmp("shifted")
    w.node("Add", [rounded, w.const(np.float64(q.zero_point), "zero_point")], [shifted],
           suffix="zero_point")
    w.node("Cast", [shifted], [w.out()], suffix="storage",
           to=helper.np_dtype_to_tensor_dtype(q.numpy_dtype))


# ------------------------------------------------------- dequantize/requantize


def accumulator_float(w: OpWriter, x: str, qtype: UniformQuantizedType, rank: int,
                      scales: np.ndarray, out: str) -> None:
    """Cast(acc -> float) * scales (float32, per channel of `qtype`'s axis)."""
    f = w.tmp("float")
    w.node("Cast", [x], [f], suffix="cast", to=TensorProto.FLOAT)
    w.node("Mul", [f, w.const(scales.astype(np.float32).reshape(scale_shape(qtype, rank)),
                              "scale")], [out], suffix="scale")


@export(INT_EXPORTS, quant.DequantizeOp)
def _dequantize(w: OpWriter) -> None:
    op = w.op
    qtype = qtype_of(op.operands[0])
    assert qtype is not None
    if qtype.bits != 32:
        return base._exports()[quant.DequantizeOp](w)
    if qtype.zero_points != (0,) * len(qtype.zero_points):
        raise Unsupported("an i32 accumulator with a nonzero zero point")
    accumulator_float(w, w.input(0), qtype, len(w.shape(op.operands[0])),
                      np.asarray(qtype.scales, np.float64), w.out())


@export(INT_EXPORTS, quant.RequantizeOp)
def _requantize(w: OpWriter) -> None:
    op = w.op
    assert isinstance(op, quant.RequantizeOp)
    source = qtype_of(op.input)
    assert source is not None
    if source.bits != 32:
        return base._exports()[quant.RequantizeOp](w)
    y = op.qtype
    if y.is_per_axis:
        raise Unsupported("requantize to a per-axis type")
    if y.bits != 8:
        raise Unsupported(f"requantize to {y}: QuantizeLinear writes 8-bit types here")
    multiplier = np.asarray(source.scales, np.float64) / y.scale
    scaled = w.tmp("scaled")
    accumulator_float(w, w.input(0), source, len(w.shape(op.input)), multiplier, scaled)
    out, clamp = requantized(w, op)
    w.node("QuantizeLinear", [scaled, w.const(np.float32(1.0), "unit_scale"),
                              w.const(np.asarray(y.zero_point).astype(y.numpy_dtype),
                                      "zero_point")], [out], suffix="QuantizeLinear")
    clamp()


# -------------------------------------------------------------------- entry


def export_onnx_int(module: ModuleOp, path: str | os.PathLike | None = None, *,
                    opset: int = DEFAULT_OPSET, model_name: str | None = None,
                    ) -> onnx.ModelProto:
    """Write the integer graph `module` as standard ONNX (see the module doc);
    with `path`, save it atomically. Raises `ExportError` listing every op that
    has no integer form."""
    if not max(base.MIN_OPSET, 13) <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(f"opset {opset} is not supported: qcc writes opsets "
                         f"{base.MIN_OPSET} to {onnx.defs.onnx_opset_version()}")
    return write(IntExporter(module, opset, INT_EXPORTS), path, model_name)


__all__ = ["export_onnx_int", "IntExporter", "INT_EXPORTS", "folded_array", "write"]
