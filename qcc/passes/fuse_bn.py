"""qcc-fuse-bn: fold batch norms and per-channel affines into the neighbouring layer.

An *affine* is `x * a + b` with one constant a, b per channel: `qnn.batch_norm`
(a = scale / sqrt(var + eps), b = bias - mean * a), `qnn.scale`, or a `qnn.mul` /
`qnn.add` by a constant that varies only along the channel axis (shape [C, 1, 1],
[1, C, 1, 1], or a scalar), as TensorFlow and ONNX exporters leave behind a conv.
Folding is done in float64 and stored as float32; a fused layer keeps its name and
its new constants are `<layer>.weight_fused` / `<layer>.bias_fused`.

Rules:
1. conv + affine -> conv with W[o] * a[o] and bias * a + b (depthwise too: groups = C).
2. conv_transpose + affine -> conv_transpose; its weight is [C_in, O/groups, *K], so
   a[o] lands on axis 1 of each group.
3. dense + affine over the last axis -> dense with W[n, :] * a[n] and bias * a + b.
4. affine + conv (the conv is the affine's only user) -> conv with W[o, c] * a[c] and
   bias + sum(W[o, c] * b[c]). Exact only when the conv has no padding or b is all
   zero (padding adds zeros after the shift, so the borders would differ): otherwise
   it does not fire and a remark says why. An affine that folds into the layer before
   it (rules 1-3) does that instead.
5. batch_norm / scale + affine -> one `qnn.scale` (Caffe BatchNorm + Scale, BN + Mul + Add).
6. A `qnn.batch_norm` left alone becomes a `qnn.scale` (`<bn>.scale` / `<bn>.bias`).

Rules 1-5 do not fire when the first op's output has another user (it needs the
unfolded value), when weights are not constants, or when an op involved is named in
`skip_layers` (comma-separated, AMCT's `skip_fusion_layers`). A batch norm or scale
left next to a layer gets a remark saying why (`qcc.passes.remarks`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from qcc import ir
from qcc.dialects import qnn
from qcc.dialects.base import get_float, get_int, get_ints
from qcc.dialects.layers import WEIGHTED_OPS, Layer, replace
from qcc.passes import remarks
from qcc.passes.common import is_f32 as _is_f32
from qcc.passes.common import op_label as _label
from qcc.passes.common import op_name as _name
from qcc.passes.common import tensor_type_of

AFFINES = (qnn.BatchNormOp, qnn.ScaleOp, qnn.MulOp, qnn.AddOp)


@dataclass(frozen=True)
class Affine:
    """`op` computes input * a + b along one axis (a, b float64, one per channel)."""

    op: Operation
    input: SSAValue
    a: np.ndarray
    b: np.ndarray


def affine_input(op: Operation) -> SSAValue | None:
    """The activation an affine op transforms (a mul/add's one non-constant operand)."""
    if isinstance(op, qnn.BatchNormOp | qnn.ScaleOp):
        return op.input
    if isinstance(op, qnn.MulOp | qnn.AddOp):
        values = [v for v in (op.lhs, op.rhs) if ir.constant_value(v) is None]
        return values[0] if len(values) == 1 else None
    return None


def affine_of(op: Operation, axis: int) -> Affine | None:
    """`op` as a constant per-channel affine over `axis` of its input, or None."""
    x = affine_input(op)
    if x is None or not _is_f32(x) or x.type != op.results[0].type:
        return None
    shape = tuple(tensor_type_of(x).get_shape())
    if isinstance(op, qnn.BatchNormOp | qnn.ScaleOp):
        own_axis = get_int(op.axis) % len(shape) if isinstance(op, qnn.ScaleOp) else 1
        params = [ir.constant_value(v) for v in op.operands[1:]]
        if own_axis != axis or any(p is None for p in params):
            return None
        p = [np.asarray(v, np.float64) for v in params]
        if isinstance(op, qnn.ScaleOp):
            return Affine(op, x, p[0], p[1] if len(p) > 1 else np.zeros_like(p[0]))
        gamma, beta, mean, var = p
        a = gamma / np.sqrt(var + get_float(op.epsilon))
        return Affine(op, x, a, beta - mean * a)
    assert isinstance(op, qnn.MulOp | qnn.AddOp)  # affine_input returned its input
    c = ir.constant_value(op.rhs if x is op.lhs else op.lhs)
    assert c is not None
    if c.ndim > len(shape):
        return None
    full = (1,) * (len(shape) - c.ndim) + c.shape
    if any(d != 1 and i != axis for i, d in enumerate(full)):
        return None
    channels = [shape[axis] if i == axis else 1 for i in range(len(shape))]
    v = np.broadcast_to(c.reshape(full), channels).reshape(-1).astype(np.float64)
    if isinstance(op, qnn.MulOp):
        return Affine(op, x, v, np.zeros_like(v))
    return Affine(op, x, np.ones_like(v), v)


# ------------------------------------------------------------- why not


def why_not_after(layer: Operation, op: Operation, skip: frozenset[str]) -> str | None:
    """Why affine `op` cannot fold into `layer`, which produces its input (None: it can)."""
    if skip & {_name(layer), _name(op)}:
        return "skip_layers names it"
    if not layer.results[0].has_one_use():
        return f"the output of {_label(layer)} has another user"
    if not _constant_weights(layer):
        return f"the weights of {_label(layer)} are not constants"
    if affine_of(op, Layer(layer).out_axis) is None:
        return f"it is not a constant per-channel affine over the outputs of {_label(layer)}"
    return None


def why_not_before(conv: qnn.ConvOp, op: Operation, skip: frozenset[str]) -> str | None:
    """Why affine `op`, used only by `conv`'s input, cannot fold into it (None: it can)."""
    if skip & {_name(conv), _name(op)}:
        return "skip_layers names it"
    if not _constant_weights(conv):
        return f"the weights of {_label(conv)} are not constants"
    aff = affine_of(op, 1)
    if aff is None:
        return f"it is not a constant per-channel affine over the inputs of {_label(conv)}"
    if any(get_ints(conv.pads)) and np.any(aff.b != 0):
        return (f"{_label(conv)} pads its input with zeros, so folding the nonzero shift "
                "would change the borders (exact only with no padding or a zero shift)")
    return None


# ------------------------------------------------------------- patterns


@dataclass(frozen=True)
class FoldIntoLayer(RewritePattern):
    """Rules 1-3."""

    skip: frozenset[str]

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        layer = _layer_before(op)
        if layer is None or why_not_after(layer, op, self.skip) is not None:
            return
        view = Layer(layer)
        aff = affine_of(op, view.out_axis)
        assert aff is not None
        w, bias = _weights(view)
        _fused(rewriter, view, view.scale_outputs(w, aff.a), bias * aff.a + aff.b, replacing=op)


@dataclass(frozen=True)
class FoldIntoConv(RewritePattern):
    """Rule 4."""

    skip: frozenset[str]

    @op_type_rewrite_pattern
    def match_and_rewrite(self, conv: qnn.ConvOp, rewriter: PatternRewriter, /):
        op = conv.input.owner
        if not isinstance(op, AFFINES) or conv.input.get_user_of_unique_use() is not conv:
            return
        layer = _layer_before(op)
        if layer is not None and why_not_after(layer, op, self.skip) is None:
            return  # rule 1-3 folds it into the layer before
        if why_not_before(conv, op, self.skip) is not None:
            return
        aff = affine_of(op, 1)
        assert aff is not None
        view = Layer(conv)
        w, bias = _weights(view)
        shift = view.constant_input_response(w, aff.b)
        _fused(rewriter, view, view.scale_inputs(w, aff.a), bias + shift, input=aff.input,
               erase=op)


@dataclass(frozen=True)
class MergeAffines(RewritePattern):
    """Rule 5."""

    skip: frozenset[str]

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        x = affine_input(op)
        first = x.owner if x is not None else None
        if x is None or not isinstance(first, qnn.BatchNormOp | qnn.ScaleOp) or not x.has_one_use():
            return
        if self.skip & {_name(first), _name(op)}:
            return
        axis = 1 if isinstance(first, qnn.BatchNormOp) else get_int(first.axis)
        axis %= len(tensor_type_of(first.input).get_shape())
        one, two = affine_of(first, axis), affine_of(op, axis)
        if one is None or two is None:
            return
        a, b = one.a * two.a, one.b * two.a + two.b
        replace(rewriter, op, _scale(first, one.input, a, b, axis), [first])


class BatchNormToScale(RewritePattern):
    """Rule 6."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: qnn.BatchNormOp, rewriter: PatternRewriter, /):
        aff = affine_of(op, 1)
        if aff is None:
            return
        replace(rewriter, op, _scale(op, aff.input, aff.a, aff.b, 1))


# -------------------------------------------------------------- helpers


def _layer_before(op: Operation) -> Operation | None:
    x = affine_input(op) if isinstance(op, AFFINES) else None
    return x.owner if x is not None and isinstance(x.owner, WEIGHTED_OPS) else None


def _constant_weights(layer: Operation) -> bool:
    view = Layer(layer)
    weights = [v for v in (view.weight, view.bias) if v is not None]
    return all(ir.constant_value(v) is not None for v in weights) and _is_f32(layer.results[0])


def _weights(layer: Layer) -> tuple[np.ndarray, np.ndarray]:
    """Weight and bias (zeros when absent) in float64."""
    assert layer.weight is not None
    w = np.asarray(ir.array_of(layer.weight), np.float64)
    bias = layer.bias
    return w, (np.zeros(layer.out_channels) if bias is None else
               np.asarray(ir.array_of(bias), np.float64))


def _fused(rewriter: PatternRewriter, layer: Layer, w: np.ndarray, bias: np.ndarray, *,
           input: SSAValue | None = None, replacing: Operation | None = None,
           erase: Operation | None = None) -> None:
    """`layer` rebuilt with float32 constants `<layer>.weight_fused`, `<layer>.bias_fused`."""
    name = _name(layer.op)
    wc = ir.constant(w.astype(np.float32), f"{name}.weight_fused" if name else None)
    bc = ir.constant(bias.astype(np.float32), f"{name}.bias_fused" if name else None)
    layer.rebuild(rewriter, input=input, weight=wc, bias=bc, replacing=replacing,
                  erase=[erase] if erase is not None else [])


def _scale(op: Operation, x: SSAValue, a: np.ndarray, b: np.ndarray, axis: int):
    """A `qnn.scale` named as `op` computing x * a + b over `axis`."""
    name = _name(op)
    sc = ir.constant(a.astype(np.float32), f"{name}.scale" if name else None)
    bc = ir.constant(b.astype(np.float32), f"{name}.bias" if name else None)
    return [sc, bc, qnn.ScaleOp.make(x, sc, bc, name=name, axis=axis)]


def _explain(module: ModuleOp, skip: frozenset[str]) -> None:
    """A remark for each batch norm or scale left next to a layer."""
    for op in module.walk():
        if not isinstance(op, qnn.BatchNormOp | qnn.ScaleOp):
            continue
        if isinstance(op, qnn.BatchNormOp) and affine_of(op, 1) is None:
            remarks.emit(op, "stays a batch norm: its parameters are not float32 constants")
        layer = _layer_before(op)
        reason = why_not_after(layer, op, skip) if layer is not None else None
        if layer is not None and reason is not None:
            remarks.emit(op, f"not folded into {_label(layer)}: {reason}")
        conv = op.output.get_user_of_unique_use()
        if isinstance(conv, qnn.ConvOp) and conv.input is op.output:
            reason = why_not_before(conv, op, skip)
            if reason is not None:
                remarks.emit(op, f"not folded into {_label(conv)}: {reason}")


@dataclass(frozen=True)
class FuseBnPass(ModulePass):
    """Fold batch norms and per-channel Mul/Add/Scale into convs, deconvs and dense."""

    name = "qcc-fuse-bn"

    skip_layers: str | tuple[str, ...] = ""
    """Layer names not to fuse: "conv1,conv2" (or a list, skip_layers=conv1,conv2)."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        names = self.skip_layers.split(",") if isinstance(self.skip_layers, str) else (
            self.skip_layers)
        skip = frozenset(n.strip() for n in names if n.strip())
        patterns = [FoldIntoLayer(skip), FoldIntoConv(skip), MergeAffines(skip)]
        PatternRewriteWalker(GreedyRewritePatternApplier(patterns, dce_enabled=False)
                             ).rewrite_module(op)
        _explain(op, skip)
        PatternRewriteWalker(BatchNormToScale()).rewrite_module(op)
