"""qcc-lower-ascend: the integer graph (qcc-realize-int8's output) to the Ascend
quantization operators, as the Ascend flow (AMCT's deploy model) expresses it.

Rules:
1. `quant.quantize %x` of an activation to a per-tensor i8 type with the full
   range [-128, 127] -> `ascend.quant %x` (scale = 1 / scale_d, offset = zero
   point, sqrt_mode when 1 / scale_d passes float16's maximum, `round_mode`).
2. `quant.quantize %w` of a constant to an i8 type (a weight, per tensor or per
   channel) -> `ascend.weight_quant %w`; exporters write it as an int8 initializer.
   Biases (i32) stay `quant.quantize` of their constant (an int32 initializer).
3. `quant.dequantize %acc` of the i32 accumulator -> `ascend.dequant %acc, %deq`
   with `%deq` a `qnn.constant` of the packed uint64 deq_scale (one per channel of
   the accumulator's axis, or one), named `<layer>.dequant.param`; the result is
   `dtype`, then `qnn.cast` to the expressed type when they differ. A `qnn.relu`
   that is the dequantize's only user is folded into `relu_flag`.
4. `quant.requantize %acc` (i32 -> per-tensor full-range i8) -> `ascend.dequant`
   (`dtype`, no relu) then `ascend.quant` to the requantize's type. A type clamped
   at its zero point (`i8<z:127>`: qcc-realize-int8 folded a relu into the
   requantize) gets relu_flag on the dequant instead: relu, then quantize, is the
   clamp at z exactly.

Names: an `ascend.quant` without a name of its own is `<layer>.quant` after the
layer it feeds, an `ascend.dequant` `<layer>.dequant` after the layer it reads (as
AMCT names them).
5. `quant.dequantize %q` of a per-tensor i8 tensor -> `ascend.anti_quant %q` to the
   expressed type.
6. `quant.requantize %q` of a full-range per-tensor i8 tensor (an integer average
   pool's output) to another -> `ascend.anti_quant %q` (`dtype`) then `ascend.quant`
   to the requantize's type, as AMCT's deploy model goes back to float after a
   quantized AvgPool and quantizes again for the next layer.

Anything else is left as it is: other storage types (u8, 4 or 16 bits), per-axis
or narrow-range activations, per-axis i8 dequantize, and the
integer layers themselves (int8 in, i32 out, as on the device).

Options: `dtype` ("f16" or "f32": what AscendDequant produces; float16 is what the
hardware computes), `round_mode` of AscendQuant ("Round": half away from zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, TensorType, f16, f32
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from qcc import ir
from qcc.dialects import ascend, qnn, quant
from qcc.dialects.quant import UniformQuantizedType, storage_range
from qcc.passes.common import op_name as _name

_DTYPES: dict[str, Attribute] = {"f16": f16, "f32": f32}




def _is_i8(qtype: UniformQuantizedType | None) -> bool:
    return qtype is not None and qtype.bits == 8 and qtype.signed


def _is_activation_i8(qtype: UniformQuantizedType | None) -> bool:
    """Per-tensor i8 over the full range: what AscendQuant produces."""
    return (_is_i8(qtype) and qtype is not None and not qtype.is_per_axis
            and (qtype.storage_min, qtype.storage_max) == storage_range(8, True))


def _is_relu_i8(qtype: UniformQuantizedType | None) -> bool:
    """Per-tensor i8 clamped at its zero point: a relu folded into a requantize."""
    return (_is_i8(qtype) and qtype is not None and not qtype.is_per_axis
            and (qtype.storage_min, qtype.storage_max) == (qtype.zero_point, 127))


def _is_acc(qtype: UniformQuantizedType | None) -> bool:
    return qtype is not None and qtype.bits == 32 and qtype.signed


def _base(value: SSAValue, op: Operation) -> str:
    """Name of the layer that produced `value` (else the op's own name)."""
    owner = value.owner
    name = _name(owner) if isinstance(owner, Operation) else None
    return name or _name(op) or "acc"


def _quant_name(value: SSAValue) -> str | None:
    """`<layer>.quant` after the first named layer reading `value` (AMCT's name)."""
    for use in value.uses:
        if isinstance(use.operation, qnn.LAYER_OPS):
            name = _name(use.operation)
            if name is not None:
                return f"{name}.quant"
    return None


def dequant(value: SSAValue, qtype: UniformQuantizedType, dtype: Attribute, relu: bool,
            name: str) -> list[Operation]:
    """The packed deq_scale constant and the `ascend.dequant` of accumulator `value`."""
    deq = ir.constant(ascend.pack_deq_scale(np.asarray(qtype.scales, np.float32)),
                      name=f"{name}.param")
    assert isinstance(value.type, TensorType)
    rank = len(value.type.get_shape())
    axis = qtype.axis if qtype.axis is not None else (1 if rank > 1 else 0)
    op = ascend.DequantOp.make(value, deq.results[0], name=name, relu_flag=relu, axis=axis,
                               dtype=dtype)
    return [deq, op]


@dataclass(frozen=True)
class QuantizeToAscend(RewritePattern):
    """Rules 1 and 2."""

    round_mode: str

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: quant.QuantizeOp, rewriter: PatternRewriter, /):
        qtype = op.qtype
        if isinstance(op.input.owner, qnn.ConstantOp):
            if _is_i8(qtype):
                rewriter.replace(op, ascend.WeightQuantOp.make(op.input, name=_name(op),
                                                               qtype=qtype))
            return
        if _is_activation_i8(qtype):
            rewriter.replace(op, ascend.QuantOp.of(op.input, qtype, self.round_mode,
                                                   name=_name(op) or _quant_name(op.output)))


@dataclass(frozen=True)
class DequantizeToAscend(RewritePattern):
    """Rules 3 and 5."""

    dtype: Attribute

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: quant.DequantizeOp, rewriter: PatternRewriter, /):
        qtype = quant.quantized_element(op.input.type)
        expressed = op.output.type.element_type
        if expressed not in _DTYPES.values():
            return
        if _is_activation_i8(qtype):
            rewriter.replace(op, ascend.AntiQuantOp.of(op.input, expressed, name=_name(op)))
            return
        if not _is_acc(qtype) or qtype is None:
            return
        relu = op.results[0].get_user_of_unique_use()
        target: Operation = op
        if isinstance(relu, qnn.ReluOp) and relu.results[0].type == op.results[0].type:
            target = relu
        name = _name(op) or f"{_base(op.input, op)}.dequant"
        new = dequant(op.input, qtype, self.dtype, target is not op, name)
        if self.dtype != expressed:
            new.append(qnn.CastOp.make(new[-1].results[0], name=f"{name}.cast", to=expressed))
        if target is not op:
            rewriter.replace(target, new)
            rewriter.erase(op)
            return
        rewriter.replace(op, new)


@dataclass(frozen=True)
class RequantizeToAscend(RewritePattern):
    """Rules 4 and 6."""

    dtype: Attribute
    round_mode: str

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: quant.RequantizeOp, rewriter: PatternRewriter, /):
        source = quant.quantized_element(op.input.type)
        name = _name(op) or _quant_name(op.results[0])
        if _is_activation_i8(source) and _is_activation_i8(op.qtype):
            back = ascend.AntiQuantOp.of(op.input, self.dtype,
                                         name=f"{_base(op.input, op)}.anti_quant")
            rewriter.replace(op, [back, ascend.QuantOp.of(back.results[0], op.qtype,
                                                          self.round_mode, name=name)])
            return
        relu = _is_relu_i8(op.qtype) and not _is_activation_i8(op.qtype)
        if not _is_acc(source) or source is None or not (
                relu or _is_activation_i8(op.qtype)):
            return
        base = _base(op.input, op)
        new = dequant(op.input, source, self.dtype, relu, f"{base}.dequant")
        new.append(ascend.QuantOp.of(new[-1].results[0], op.qtype, self.round_mode,
                                     name=name))
        rewriter.replace(op, new)


@dataclass(frozen=True)
class LowerAscendPass(ModulePass):
    """Integer quant ops to `ascend.*` ops with packed deq_scale (rules 1-5)."""

    name = "qcc-lower-ascend"

    dtype: str = "f16"
    round_mode: str = "Round"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.dtype not in _DTYPES:
            raise ValueError(f"qcc-lower-ascend: dtype must be f16 or f32, got '{self.dtype}'")
        if self.round_mode not in ascend.ROUND_MODES:
            raise ValueError(f"qcc-lower-ascend: round_mode must be one of "
                             f"{', '.join(ascend.ROUND_MODES)}, got '{self.round_mode}'")
        dtype = _DTYPES[self.dtype]
        PatternRewriteWalker(GreedyRewritePatternApplier([
            QuantizeToAscend(self.round_mode),
            DequantizeToAscend(dtype),
            RequantizeToAscend(dtype, self.round_mode),
        ]), apply_recursively=False).rewrite_module(op)
