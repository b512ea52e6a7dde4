"""qcc-equalize: cross-layer equalization and high-bias absorption (Nagel et al. 2019,
"Data-Free Quantization Through Weight Equalization and Bias Correction", §4.1-4.2;
AIMET's CLE).

A *pair* is layer 1 whose output channel i is input channel i of layer 2: conv -> conv
(any groups, so depthwise-separable blocks too) or dense -> dense, joined by nothing,
a `qnn.relu`, or a `qnn.clip` from 0 (rule 3). Pairs sharing a layer form a *chain*:
conv -> depthwise -> conv is one chain with two joints. With r1_i = max|W1[i, ...]|
(output channel i of layer 1) and r2_i = max|W2[:, i, ...]| (the weights that read
input channel i; for a grouped layer 2, those of the group holding i), the scale
s_i = sqrt(r1_i * r2_i) / r2_i gives both ranges the value sqrt(r1_i * r2_i).
Arithmetic is float64, stored as float32.

Rules:
1. Pair: W1[i] /= s_i, b1[i] /= s_i, W2[:, i] *= s_i. Exact: relu(z / s) = relu(z) / s
   for s > 0, and zero padding stays zero. A channel with r1_i or r2_i zero keeps s_i = 1.
2. Chain: rule 1 joint by joint, round after round, until no round moves the channels
   of a joint against one another by more than 1e-6, or 20 rounds. What rounds leave,
   one scale per joint common to its channels, only diffuses along the chain (rounds
   grow with its length squared) and is linear in log scale, so it is solved at once.
   A joint's s_i is the product of all of these; its remark gives the rounds and, when
   they did not converge, the largest |s_i - 1| another round would apply.
3. ReLU6: a `qnn.clip` from 0 to max does not commute with the scaling (its bound
   would have to become max / s_i per channel), so it blocks the pair, unless
   `relu6_as_relu=true` (AIMET replaces ReLU6 by ReLU before CLE): then it becomes a
   `qnn.relu` and a remark says so; outputs change wherever its input exceeded max.
   A clip with another lower bound always blocks.
4. High-bias absorption (`absorb_bias=true`, Nagel §4.2), after rules 1-2: with a
   per-channel mean m and std d of layer 1's output, c = max(0, m - 3 d);
   b1 -= c and b2 += sum(W2[:, i] * c_i). Exact where layer 1's output is at least c
   (all but ~0.1% of a Gaussian; always when nothing joins the pair). Without data
   the only honest d is one the module carries: the discardable attribute
   `qcc.output_std` on layer 1 (|gamma| of the batch norm folded into it, or a
   calibration). m is `qcc.output_mean` (beta) when present, else b1 (the output's
   mean when the layer's input has zero mean). Without `qcc.output_std` nothing is
   absorbed (a bias is no estimate of a spread) and a remark says so; nor into a
   padded conv (zero padding after the shift changes the borders, as qcc-fuse-bn rule 4).
   Rules 1 and 4 keep these attributes in step with the channels they change.

A pair is not equalized, with a remark saying why, when layer 1's or the activation's
output has another user, when a weight or bias is not a float32 constant, or by rule 3.
A chain whose scales are all within 1e-6 of 1 and that absorbs nothing is left as it
is (a second run changes nothing). Rewritten layers keep their names; their new
constants are `<layer>.weight_eq` and `<layer>.bias_eq`. Layer 2 carries
`qcc.equalize_scales` (array<f64>: s_i); the run's `Remarks` holds them for the
report (`scales_of(remarks)`), and each pair gets a remark with its smallest and
largest scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import DenseArrayBase, Float32Type, ModuleOp, f64
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from qcc import ir
from qcc.dialects import qnn
from qcc.dialects.base import get_float, get_ints
from qcc.dialects.layers import Layer as LayerView
from qcc.passes import remarks
from qcc.passes.common import op_label as _label
from qcc.passes.common import op_name as _name

LAYERS = (qnn.ConvOp, qnn.DenseOp)
ACTIVATIONS = (qnn.ReluOp, qnn.ClipOp)
SCALES, MEAN, STD = "qcc.equalize_scales", "qcc.output_mean", "qcc.output_std"
ROUNDS, TOLERANCE = 20, 1e-6



def scales_of(collected: remarks.Remarks) -> dict[tuple[str, str], list[float]]:
    """The scales of the run `collected` holds: {(layer 1, layer 2): [s_i]}, layers
    by name ({} when qcc-equalize did not run)."""
    return dict(collected.results.get(EqualizePass.name, {}))


@dataclass
class Layer:
    """A layer's weights in float64 while the pass changes them."""

    view: LayerView
    w: np.ndarray
    b: np.ndarray | None
    stats: dict[str, np.ndarray]  # qcc.output_mean / qcc.output_std, when present
    new_bias: bool = False

    @property
    def op(self) -> Operation:
        return self.view.op

    @staticmethod
    def of(op: Operation) -> Layer:
        view = LayerView(op)
        assert view.weight is not None
        w = np.asarray(ir.array_of(view.weight), np.float64)
        b = np.asarray(ir.array_of(view.bias), np.float64) if view.bias is not None else None
        stats = {k: np.array(a.get_values(), np.float64) for k in (MEAN, STD)
                 if isinstance(a := op.attributes.get(k), DenseArrayBase)}
        out = view.out_channels
        return Layer(view, w, b, {k: v for k, v in stats.items() if v.shape == (out,)})

    def divide_outputs(self, s: np.ndarray) -> None:
        self.w = self.w / self.view.out_factor(s)
        if self.b is not None:
            self.b, self.new_bias = self.b / s, True
        self.stats = {k: v / s for k, v in self.stats.items()}


@dataclass
class Joint:
    one: Layer
    act: Operation | None
    two: Layer
    scales: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.scales = np.ones(self.one.view.out_channels)

    def log_ratio(self) -> np.ndarray:
        """log(r1_i / r2_i); NaN where a range is zero (those channels keep s_i = 1)."""
        r1 = self.one.view.out_channel_max(self.one.w)
        r2 = self.two.view.in_channel_max(self.two.w)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where((r1 > 0) & (r2 > 0), np.log(r1 / r2), np.nan)

    def apply(self, log_s: np.ndarray) -> None:
        s = np.exp(np.nan_to_num(log_s))
        self.one.divide_outputs(s)
        self.two.w = self.two.view.scale_inputs(self.two.w, s)
        self.scales *= s


def equalize(chain: list[Joint]) -> tuple[int, float]:
    """Rules 1-2 on a chain: the rounds used and the largest |s_i - 1| a further round
    would apply."""
    rounds = 1
    while _round(chain) >= TOLERANCE and rounds < ROUNDS:
        rounds += 1
    # What the rounds leave is one scale per joint, common to its channels. It only
    # diffuses along the chain (rounds grow with its length squared), and it is linear:
    # scaling joint k by e^a[k] moves its log ratio by a[k-1] - 2 a[k] + a[k+1] (a = 0
    # outside the chain), so solve that tridiagonal system for the mean log ratios.
    n = len(chain)
    laplacian = np.eye(n, k=-1) - 2 * np.eye(n) + np.eye(n, k=1)
    a = np.linalg.solve(laplacian, -np.array([_mean(j.log_ratio()) for j in chain]))
    for joint, a_k in zip(chain, a, strict=True):
        joint.apply(np.where(np.isnan(joint.log_ratio()), np.nan, a_k))
    return rounds, max(_largest(np.expm1(j.log_ratio() / 2)) for j in chain)


def _round(chain: list[Joint]) -> float:
    """Rule 1 on each joint in turn; how far it moved channels against one another."""
    moved = 0.0
    for joint in chain:
        log_s = joint.log_ratio() / 2  # s = sqrt(r1 / r2)
        joint.apply(log_s)
        moved = max(moved, _largest(np.expm1(log_s - _mean(log_s))))
    return moved


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else 0.0


def _largest(values: np.ndarray) -> float:
    return float(np.abs(np.nan_to_num(values)).max(initial=0.0))


# ------------------------------------------------------------- finding pairs


def pair_before(two: Operation) -> tuple[Operation, Operation | None] | None:
    """(layer 1, activation or None) feeding layer `two`, by structure alone."""
    if not isinstance(two, LAYERS):
        return None
    x = two.operands[0]
    act = x.owner if isinstance(x.owner, ACTIVATIONS) else None
    one = act.operands[0].owner if act is not None else x.owner
    return (one, act) if type(one) is type(two) else None


def why_not(one: Operation, act: Operation | None, two: Operation,
            relu6_as_relu: bool) -> str | None:
    """Why the pair cannot be equalized (None: it can)."""
    for op in (one, act):
        if op is not None and not op.results[0].has_one_use():
            return f"the output of {_label(op)} has another user"
    for layer in (one, two):
        if not _constant_weights(layer):
            return f"the weights of {_label(layer)} are not float32 constants"
    if not isinstance(act, qnn.ClipOp):
        return None
    lo, hi = get_float(act.properties["min"]), get_float(act.properties["max"])
    if lo != 0 or hi <= 0:
        return f"{_label(act)} clips to [{lo:g}, {hi:g}], which no scaling commutes with"
    if not relu6_as_relu:
        return (f"{_label(act)} (clip to [0, {hi:g}]) does not commute with the scaling; "
                "relu6_as_relu=true treats it as a relu")
    return None


def chains(module: ModuleOp, relu6_as_relu: bool) -> list[list[Joint]]:
    """The pairs that can be equalized, linked into chains; a remark for the others."""
    after: dict[Operation, tuple[Operation | None, Operation]] = {}
    for two in module.walk():
        found = pair_before(two)
        if found is None:
            continue
        one, act = found
        reason = why_not(one, act, two, relu6_as_relu)
        if reason is not None:
            remarks.emit(one, f"not equalized with {_label(two)}: {reason}")
            continue
        after[one] = (act, two)
    seconds = {two for _, two in after.values()}
    out = []
    for start in [op for op in after if op not in seconds]:
        chain, one_layer = [], Layer.of(start)
        while one_layer.op in after:
            act, two_op = after[one_layer.op]
            two_layer = Layer.of(two_op)
            chain.append(Joint(one_layer, act, two_layer))
            one_layer = two_layer
        out.append(chain)
    return out


# -------------------------------------------------------------- absorption


def absorb(joint: Joint) -> np.ndarray | str:
    """Rule 4 on one joint: the absorbed c, or why nothing was absorbed."""
    one, two = joint.one, joint.two
    if STD not in one.stats:
        return (f"{_label(one.op)} carries no per-channel std of its output ({STD}), "
                "and its bias alone estimates no spread")
    if isinstance(two.op, qnn.ConvOp) and any(get_ints(two.op.pads)):
        return f"{_label(two.op)} pads its input with zeros, so the shift would change the borders"
    b1 = one.b if one.b is not None else np.zeros(one.view.out_channels)
    mean, std = one.stats.get(MEAN, b1), one.stats[STD]
    c = mean - 3 * std
    c[c <= 1e-5 * (np.abs(mean) + 3 * std)] = 0  # float32 rounding of an earlier absorption
    if not c.any():
        return "mean - 3 std is not positive on any channel"
    shift = two.view.constant_input_response(two.w, c)
    one.b, one.new_bias = b1 - c, True
    if MEAN in one.stats:
        one.stats[MEAN] = one.stats[MEAN] - c
    two.b = (two.b if two.b is not None else np.zeros(two.view.out_channels)) + shift
    two.new_bias = True
    return c


# ---------------------------------------------------------------- rewriting


def rebuild(layer: Layer, scales: np.ndarray | None) -> None:
    """Replace `layer.op` with its new weights, stats and scales."""
    name = _name(layer.op)
    weight = ir.constant(layer.w.astype(np.float32), f"{name}.weight_eq" if name else None)
    bias = None
    if layer.new_bias:
        assert layer.b is not None
        bias = ir.constant(layer.b.astype(np.float32), f"{name}.bias_eq" if name else None)
    new = layer.view.rebuild(weight=weight, bias=bias)
    for key, value in layer.stats.items():
        new.attributes[key] = DenseArrayBase.from_list(f64, [float(v) for v in value])
    if scales is not None:
        new.attributes[SCALES] = DenseArrayBase.from_list(f64, [float(v) for v in scales])


def relu_for(clip: Operation) -> None:
    relu = qnn.ReluOp.make(clip.operands[0], name=_name(clip))
    relu.attributes.update(clip.attributes)
    Rewriter.replace_op(clip, relu)


# ------------------------------------------------------------------ helpers


def _constant_weights(layer: Operation) -> bool:
    values = [layer.results[0], *layer.operands[1:]]
    return all(ir.constant_value(v) is not None for v in values[1:]) and all(
        isinstance(t := v.type, qnn.AnyTensor) and isinstance(t.element_type, Float32Type)
        for v in values)






def _key(op: Operation, index: dict[Operation, int]) -> str:
    return _name(op) or f"{op.name}#{index[op]}"


@dataclass(frozen=True)
class EqualizePass(ModulePass):
    """Balance the per-channel weight ranges of consecutive layers (CLE)."""

    name = "qcc-equalize"

    relu6_as_relu: bool = False
    """Treat a clip from 0 (ReLU6) between a pair as a relu, and make it one."""

    absorb_bias: bool = False
    """Absorb high biases into the next layer (rule 4; needs qcc.output_std)."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        scales: dict[tuple[str, str], list[float]] = {}
        remarks.current().results[self.name] = scales
        index = {o: i for i, o in enumerate(op.walk())}
        for chain in chains(op, self.relu6_as_relu):
            rounds, worst = equalize(chain)
            absorbed = [absorb(joint) if self.absorb_bias else "" for joint in chain]
            self._finish(chain, rounds, worst, absorbed, index, scales)

    def _finish(self, chain: list[Joint], rounds: int, worst: float,
                absorbed: list[np.ndarray | str], index: dict[Operation, int],
                scales_out: dict[tuple[str, str], list[float]]) -> None:
        """Remarks, scales and the rewrite of one chain."""
        moved = any(np.abs(j.scales - 1).max() >= TOLERANCE for j in chain) or any(
            not isinstance(c, str) for c in absorbed)
        for joint, c in zip(chain, absorbed, strict=True):
            one, two, s = joint.one.op, joint.two.op, joint.scales
            scales_out[(_key(one, index), _key(two, index))] = [float(v) for v in s]
            converged = (f"{rounds} round{'s' * (rounds > 1)}" if worst < TOLERANCE else
                         f"stopped after {rounds} rounds, last max |s - 1| = {worst:.2g}")
            remarks.emit(one, f"equalized with {_label(two)}: {len(s)} scales in "
                         f"[{s.min():.4g}, {s.max():.4g}] ({converged})")
            if isinstance(c, str) and c:
                remarks.emit(one, f"no high bias absorbed into {_label(two)}: {c}")
            elif not isinstance(c, str):
                remarks.emit(one, f"absorbed {np.count_nonzero(c)} of {len(c)} channel biases "
                             f"(up to {c.max():.4g}) into {_label(two)} (mean - 3 std rule)")
            if isinstance(joint.act, qnn.ClipOp) and moved:
                hi = get_float(joint.act.properties["max"])
                remarks.emit(joint.act, f"replaced by qnn.relu to equalize {_label(one)} and "
                             f"{_label(two)} (relu6_as_relu=true): outputs change where its "
                             f"input exceeded {hi:g}")
        if not moved:
            return  # already equalized: leave the weights as they are
        for joint in chain:
            if isinstance(joint.act, qnn.ClipOp):
                relu_for(joint.act)
        layers = [chain[0].one] + [j.two for j in chain]
        scales = [None] + [j.scales for j in chain]
        for layer, layer_scales in zip(layers, scales, strict=True):
            rebuild(layer, layer_scales)
