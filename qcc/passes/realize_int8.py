"""qcc-realize-int8: turn a calibrated fake-quant graph into integer arithmetic.

A layer is *realizable* when each of its activation inputs (both for `qnn.matmul`)
is a `quant.fake_quant` with a per-tensor type of at most 8 bits, its weight (conv,
conv_transpose, dense) is a `quant.fake_quant` of a constant, per-tensor or per
output channel (axis 0; axis 1 for conv_transpose), its bias (if any) is a constant,
and its int32 sums cannot overflow (a symbolic contracting dim bounds nothing, so such
a `qnn.matmul` stays float). Rules:

1. Activation: `%xq = quant.quantize %x {qtype = <the fake_quant's qtype>}`, one per
   fake_quant, shared by the layers reading it.
2. Weight: `%wq = quant.quantize %w {qtype = <the weight fake_quant's qtype>}` of the
   float constant (the runtime folds it once per plan).
3. Bias: `%bq = quant.quantize %b {qtype = !quant.uniform<i32:f32[:0], {s_x*s_w:0}>}`,
   i.e. round(b / (s_x * s_w)) per output channel (ONNX QLinearConv's rule).
4. Layer: the same op on the quantized operands; its result is the i32 accumulator
   (`qnn_shapes.integer_layer`), or for `qnn.avg_pool` the input's own type. Its
   float users read `%f = quant.dequantize %acc`.
5. Requantize: when the value a fake_quant reads is a `quant.dequantize`, directly
   or through one single-use `qnn.relu`, and every user of the fake_quant is a
   realizable layer, rule 1 becomes `%y = quant.requantize %acc {qtype}`. A relu is
   folded into it as a clamp at the zero point: the storage range of qtype becomes
   [z, qmax] (`i8<z:127>`; unchanged when z is already qmin, as after calibrating a
   relu output). With the option `commute`, the path may also hold `qnn.clip`
   (clamped to [quantize(min), quantize(max)]), `qnn.max_pool`, `qnn.reshape` and
   `qnn.transpose` (single-use, any number), which then run on the integers:
   quantization is monotone, so it commutes with them exactly. The float ops and the
   dequantize go away.
6. Everything else stays float: layers that are not realizable (with a remark when
   they have a fake_quant), and the ops between layers (add, concat, softmax, ...),
   which read dequantized values. The module's outputs stay float.

Residual difference from the fake-quant graph. Both graphs quantize the same tensors
with the same parameters; they differ only in where rounding happens. The fake-quant
graph computes a layer in float32 from the fake-quantized values and the float
bias, then rounds `y / s_y` (float32) for the next layer. The integer graph sums the
integers exactly, rounds the bias to the accumulator grid (off by at most
s_x*s_w/2, about a thousandth of an output step), and rounds
`float32(acc) * float32(s_acc / s_y)`, whose multiplier and product carry float32
errors of a few ulps (and float32(acc) is inexact above 2^24). So only values within
that tiny distance of a rounding boundary (k + 1/2) * s_y land on the other integer:
each requantization differs from the fake-quant rounding by at most one step, on a
small fraction of elements, and those flips then propagate through later layers.
A quantized avg_pool adds its own rounding: its mean is rounded to the input's grid
(half a step at most) where the fake-quant graph keeps the float mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.utils.exceptions import VerifyException

from qcc import ir
from qcc.dialects import qnn, quant
from qcc.dialects.base import get_float
from qcc.dialects.layers import Layer
from qcc.dialects.quant import UniformQuantizedType as QType
from qcc.passes import remarks
from qcc.passes.common import is_f32 as _is_f32

INT32_MAX = (1 << 31) - 1
COMMUTING = (qnn.ReluOp, qnn.ClipOp, qnn.MaxPoolOp, qnn.ReshapeOp, qnn.TransposeOp)
"""Float ops between a dequantize and a quantize that rule 5 may move to integers
(with `commute`; only one relu without)."""


def _fake_quant(value: SSAValue | None) -> quant.FakeQuantOp | None:
    op = value.owner if value is not None else None
    if isinstance(op, quant.FakeQuantOp) and not op.learned and _is_f32(op.input):
        return op
    return None




def why_not(op: Operation) -> str | None:
    """Why `op` stays float (None: it is realizable)."""
    layer, qtypes = Layer(op), list[QType]()
    for i, x in zip(layer.activation_indices, layer.activations, strict=True):
        fq = _fake_quant(x)
        if fq is None:
            return f"input {i} is not fake-quantized"
        if fq.qtype.axis is not None or fq.qtype.bits > 8:
            return f"input {i} is not quantized per-tensor with at most 8 bits ({fq.qtype})"
        qtypes.append(fq.qtype)
    if layer.has_weight:
        fw = _fake_quant(layer.weight)
        if fw is None or ir.constant_value(fw.input) is None:
            return "its weight is not a fake-quantized constant"
        channel = layer.weight_out_axis
        if fw.qtype.bits > 8 or fw.qtype.axis not in (None, channel):
            return (f"its weight type {fw.qtype} is not per-tensor or per-channel on "
                    f"axis {channel}")
        qtypes.append(fw.qtype)
        bias = layer.bias
        if bias is not None and (ir.constant_value(bias) is None or not _is_f32(bias)):
            return "its bias is not a float32 constant"
    bound = _max_sum(layer, *qtypes) if len(qtypes) == 2 else 0.0
    if bound == math.inf:
        return "its contracting dim is symbolic, so no bound keeps its int32 sums from overflowing"
    if bound > INT32_MAX:
        return "its int32 sums could overflow"
    return None


def _max_sum(layer: Layer, qa: QType, qb: QType) -> float:
    """A bound of |acc|: (products per output) * max|a - z_a| * max|b - z_b| + max|b_q|."""

    def reach(q: QType) -> int:
        return max(max(z - q.storage_min, q.storage_max - z) for z in q.zero_points)

    if layer.products_per_output < 0:  # a symbolic contracting dim: no size bounds the sums
        return math.inf
    bound = float(layer.products_per_output) * reach(qa) * reach(qb)
    if layer.bias is not None:
        bias = np.abs(np.asarray(ir.array_of(layer.bias), np.float64))
        # the smallest scale of rule 3's bias type (x -> s_a * x is monotone)
        smallest = qa.scale * (qb.scale if qb.axis is None else min(qb.scales))
        bound += float(bias.max(initial=0)) / smallest + 1
    return bound


def bias_type(qx: QType, qw: QType, groups: int) -> QType:
    """Rule 3's i32 type: scale s_x * s_w (per output channel when the weight is)."""
    if qw.axis is None:
        return QType.make(scale=qx.scale * qw.scale, bits=32)
    sx = qx.scale
    return QType.make_per_axis(axis=0, scales=[sx * s for s in qw.scales] * groups, bits=32)


def _clamped(q: QType, lo: int, hi: int) -> QType | None:
    """`q` with storage range [lo, hi] (None if the zero point falls outside)."""
    if (lo, hi) == (q.storage_min, q.storage_max):
        return q
    try:
        return QType.make(scale=q.scale, zero_point=q.zero_point, bits=q.bits,
                          signed=q.signed, expressed_type=q.expressed_type,
                          storage_min=lo, storage_max=hi)
    except VerifyException:
        return None


def _rebuild(op: Operation, operand: SSAValue) -> Operation:
    """`op` (one operand, properties as keywords) on `operand`, same attributes."""
    new = type(op).make(operand, **dict(op.properties))  # type: ignore[attr-defined]
    new.attributes.update(op.attributes)
    return new


@dataclass
class Realizer:
    """Rules 1-6 over one module, layer by layer in program order."""

    commute: bool = False
    quantized: dict[quant.FakeQuantOp, SSAValue] = field(default_factory=dict)
    maybe_dead: list[Operation] = field(default_factory=list)

    def layer(self, op: Operation) -> None:
        reason = why_not(op)
        if reason is not None:
            if any(_fake_quant(v) is not None for v in op.operands):
                remarks.emit(op, f"stays float: {reason}")
            return
        layer, rewriter = Layer(op), PatternRewriter(op)
        operands = [self._activation(_fake_quant(x))  # type: ignore[arg-type]
                    for x in layer.activations]
        new_ops: list[Operation] = []
        fw = _fake_quant(layer.weight)
        if fw is not None:
            qx, qw = self._qtype(layer.activations[0]), fw.qtype
            operands.append(self._quantized_value(fw))
            if layer.bias is not None:
                qb = bias_type(qx, qw, layer.out_axis_repeats)
                new_ops.append(quant.QuantizeOp.make(layer.bias, qtype=qb))
                operands.append(new_ops[-1].results[0])
        int_layer = type(op).make(*operands, **dict(op.properties))  # type: ignore[attr-defined]
        int_layer.attributes.update(op.attributes)
        rewriter.replace(op, [*new_ops, int_layer, quant.DequantizeOp.make(int_layer)])

    def _qtype(self, value: SSAValue) -> QType:
        fq = _fake_quant(value)
        assert fq is not None
        return fq.qtype

    def _activation(self, fq: quant.FakeQuantOp) -> SSAValue:
        """Rules 1 and 5: the quantized value standing for `fq`."""
        cached = self.quantized.get(fq)
        return cached if cached is not None else self._quantized_value(
            fq, self._requantized(fq))

    def _quantized_value(self, fq: quant.FakeQuantOp, value: SSAValue | None = None,
                         ) -> SSAValue:
        """Rules 1 and 2: `value`, or a quantize of what `fq` reads; made once."""
        if fq in self.quantized:
            return self.quantized[fq]
        self.maybe_dead.append(fq)
        if value is None:
            q = quant.QuantizeOp.make(fq.input, qtype=fq.qtype)
            Rewriter.insert_op(q, InsertPoint.after(fq))
            value = q.results[0]
        self.quantized[fq] = value
        return value

    def _requantized(self, fq: quant.FakeQuantOp) -> SSAValue | None:
        """Rule 5, or None when it does not apply."""
        value = fq.input
        if not value.has_one_use() or any(
                not isinstance(u.operation, qnn.LAYER_OPS) or why_not(u.operation) is not None
                or u.index not in Layer(u.operation).activation_indices
                for u in fq.output.uses):
            return None
        chain: list[Operation] = []
        source = value.owner
        while isinstance(source, COMMUTING if self.commute else qnn.ReluOp):
            if chain and not self.commute:
                return None
            chain.append(source)
            if not source.operands[0].has_one_use():
                return None
            source = source.operands[0].owner
        if not isinstance(source, quant.DequantizeOp):
            return None
        q = fq.qtype
        lo, hi = q.storage_min, q.storage_max
        for op in chain:
            if isinstance(op, qnn.ReluOp | qnn.ClipOp):
                bounds = (0.0, math.inf) if isinstance(op, qnn.ReluOp) else (
                    get_float(op.properties["min"]), get_float(op.properties["max"]))
                qlo, qhi = q.quantize(np.array(bounds, np.float32))
                lo, hi = max(lo, int(qlo)), min(hi, int(qhi))
        target = _clamped(q, lo, hi) if lo <= hi else None
        if target is None:
            return None
        new_ops: list[Operation] = [quant.RequantizeOp.make(source.input, qtype=target)]
        for op in reversed(chain):
            if not isinstance(op, qnn.ReluOp | qnn.ClipOp):
                new_ops.append(_rebuild(op, new_ops[-1].results[0]))
        Rewriter.insert_op(new_ops, InsertPoint.after(value.owner))  # type: ignore[arg-type]
        self.maybe_dead += [source, *reversed(chain)]
        return new_ops[-1].results[0]

    def erase_dead(self) -> None:
        """Erase the fake_quants and float ops no one reads any more."""
        changed = True
        while changed:
            changed = False
            for op in list(self.maybe_dead):
                if op.parent is not None and all(not r.uses for r in op.results):
                    Rewriter.erase_op(op)
                    self.maybe_dead.remove(op)
                    changed = True


def realize(module: ModuleOp, commute: bool = False) -> None:
    realizer = Realizer(commute)
    for op in [o for o in module.walk() if isinstance(o, qnn.LAYER_OPS)]:
        realizer.layer(op)
    realizer.erase_dead()


@dataclass(frozen=True)
class RealizeInt8Pass(ModulePass):
    """Fake-quant graph to integer arithmetic: int8 layers with i32 accumulators.

    Quantize, the layer on quantized operands, then requantize or dequantize."""

    name = "qcc-realize-int8"

    commute: bool = False
    """Also requantize through clip, max_pool, reshape and transpose (rule 5)."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        realize(op, self.commute)
