"""qcc-balance: activation balance (SmoothQuant, Xiao et al. 2022): move the outliers
of a layer's input channels into its weights, where per-channel quantization absorbs them.

For a layer y = W x and each input channel c, s[c] = max|X[c]|^alpha / max|W[:, c]|^(1-alpha)
and y = (W diag(s)) (diag(1/s) x): the weights take s, the activation takes 1/s.
New weights are computed in float64 and stored as float32; factors stay float64.

Rules:
1. Targets are `qnn.dense` (input channel = last axis, W[:, c]), `qnn.conv` with
   groups = 1 (1-3 spatial dims, channel axis 1, W[:, c, ...]) and `qnn.conv_transpose`
   (channel axis 1, W[c, ...], any groups) with float32 constant weights. A grouped conv,
   a layer whose weight constant feeds another op (shared weights) and a layer with
   non-constant weights are left alone with a remark.
2. Layers that read the same activation over the same channel axis (Q, K, V after one
   layer norm) form a group with one s; max|W| is taken over all their weights.
3. max|X| per channel comes from one pass over the calibration batches (a running
   maximum per channel, never the tensors); max|W| from the weights before this pass.
   s = 1 where either maximum is 0 or not finite; s is clipped to [1e-5, 1e5].
4. Each layer's weight becomes W * s along its input channel (`<layer>.weight_balanced`)
   and s is recorded on the layer as `qcc.balance_factor` (array<f64>; a layer balanced
   twice records the product). `balance()` returns the factors by layer name.
5. 1/s folds into the op that produces the activation when every user of the
   activation is in the group and that op is per-channel over the same axis:
   `qnn.layer_norm` (normalized dims include the channel axis) and `qnn.batch_norm` /
   `qnn.scale`: scale and bias * 1/s; `qnn.dense`, `qnn.conv`, `qnn.conv_transpose`
   (weights not shared): output channel c of weight and bias * 1/s[c].
6. Otherwise a `qnn.scale` (scale = 1/s, axis = the channel axis, named
   `<first layer>.balance`) goes before the group's first layer and feeds the whole
   group; a remark says why 1/s did not fold.
7. With `outlier_ratio` k > 0, only groups whose input has outlier channels are
   balanced: the largest channel max|x| is above k times the median channel max
   (over channels that are not all zero). A remark on the group's first layer says
   whether it fired and the measured ratio. The default config balances this way
   (k = `qcc.quant.config.OUTLIER_RATIO`, 16): trained transformers carry a few
   hidden channels 20-100x larger than the rest; the CNNs in the tests measure
   below 8.

Options: `alpha` = migration strength in [0.2, 0.8] (default 0.5; more moves more of
the activation range into the weights), `data` = .npz with one array per model input
(first axis the batch), `batch_num` = how many model batches to use (default: all),
`layers` = comma-separated layer names to balance (default: every target),
`outlier_ratio` = k of rule 7 (default 0: every target). The factors s by layer name
go to the run's remarks (`results["qcc-balance"]`), the measured outlier ratio of
every target layer to `results["qcc-balance.outlier_ratio"]`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp, f64
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from qcc import ir, registry
from qcc.dialects import qnn
from qcc.dialects.base import get_int
from qcc.dialects.layers import WEIGHTED_OPS as LAYERS
from qcc.dialects.layers import Layer
from qcc.errors import QccError
from qcc.passes import remarks
from qcc.passes.common import is_f32 as _is_f32
from qcc.passes.common import op_label as _label
from qcc.passes.common import op_name as _name
from qcc.passes.common import tensor_type_of
from qcc.quant import inputs
from qcc.quant.calib_data import CalibrationError, model_batches
from qcc.quant.observers import COMPILED

FACTOR_ATTR = "qcc.balance_factor"
ALPHA_RANGE = (0.2, 0.8)
S_RANGE = (1e-5, 1e5)


class BalanceError(QccError, ValueError):
    """A bad option or calibration data that does not fit the model."""


def check_alpha(alpha: object) -> float:
    """`alpha` as a float, or a BalanceError saying what range is allowed."""
    lo, hi = ALPHA_RANGE
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not lo <= alpha <= hi:
        raise BalanceError(f"qcc-balance: alpha (migration strength) must be in [{lo}, {hi}], "
                           f"got {alpha!r}; 0.5 suits most models, raise it to move more of "
                           "the activation outliers into the weights")
    return float(alpha)


@dataclass
class Group:
    """Layers reading `x` over channel `axis`; they share one factor."""

    x: SSAValue
    axis: int
    layers: list[tuple[str, Operation]]

    @property
    def key(self) -> tuple[SSAValue, int]:
        return (self.x, self.axis)


# -------------------------------------------------------------- the pass


def balance(module: ModuleOp, batches: Iterable[Mapping[str, np.ndarray]],
            alpha: float = 0.5, layers: Sequence[str] | None = None,
            outlier_ratio: float = 0.0,
            ratios: dict[str, float] | None = None,
            measured: Mapping[tuple[SSAValue, int], np.ndarray] | None = None
            ) -> dict[str, np.ndarray]:
    """Rules 1-7 on `module` in place; returns s (float64) by layer name. `ratios`,
    when given, receives every target layer's measured outlier ratio (rule 7).
    `measured`: max|x| per channel by group key (`Group.key`), when the caller has
    already run the batches (the quantize flow shares one pass with calibration);
    then `batches` are not run."""
    alpha = check_alpha(alpha)
    groups = groups_of(module, layers)
    if not groups:
        return {}
    if measured is not None:
        amax = [measured[g.key] for g in groups]
    else:
        amax = _activation_max(groups, module, batches)
    factors: dict[str, np.ndarray] = {}
    for group, a in zip(groups, amax, strict=True):
        ratio = channel_outlier_ratio(a)
        if ratios is not None:
            ratios.update(dict.fromkeys((name for name, _ in group.layers), ratio))
        if outlier_ratio > 0:
            fired = ratio > outlier_ratio
            remarks.emit(group.layers[0][1], f"{'balanced' if fired else 'not balanced'}: "
                         f"largest channel max|x| is {ratio:.1f}x the median channel max "
                         f"({'above' if fired else 'not above'} {outlier_ratio:g})")
            if not fired:
                continue
        wmax = np.max([_weight_max(Layer(op)) for _, op in group.layers], axis=0)
        s = factor(a, wmax, alpha)
        factors.update(dict.fromkeys((name for name, _ in group.layers), s))
        _apply(group, s)
    return factors


def groups_of(module: ModuleOp, layers: Sequence[str] | None = None) -> list[Group]:
    """Rules 1-2: the groups to balance, in program order (remarks for the targets
    left alone)."""
    return _groups(_targets(module, layers))


def channel_outlier_ratio(amax: np.ndarray) -> float:
    """Rule 7: max over channels of max|x| / the median over the channels not all zero
    (1.0 when no channel is)."""
    a = np.asarray(amax, np.float64)
    live = a[np.isfinite(a) & (a > 0)]
    if live.size == 0:
        return 1.0
    return float(live.max() / np.median(live))


def factor(amax: np.ndarray, wmax: np.ndarray, alpha: float) -> np.ndarray:
    """Rule 3: s = amax^alpha / wmax^(1-alpha), 1 where a maximum is 0 or not finite."""
    amax, wmax = np.asarray(amax, np.float64), np.asarray(wmax, np.float64)
    ok = (amax > 0) & (wmax > 0) & np.isfinite(amax) & np.isfinite(wmax)
    s = np.ones_like(amax)
    s[ok] = amax[ok] ** alpha / wmax[ok] ** (1 - alpha)
    return np.clip(s, *S_RANGE)


def _targets(module: ModuleOp, only: Sequence[str] | None) -> list[tuple[str, Operation]]:
    """Rule 1: the layers to balance, by config name, in program order."""
    from qcc.passes.common import quantizable_layers

    named = {n: op for n, op in quantizable_layers(module).items() if isinstance(op, LAYERS)}
    if only is not None:
        unknown = [n for n in only if n not in named]
        if unknown:
            raise BalanceError(f"qcc-balance: no dense, conv or conv_transpose named "
                               f"{', '.join(map(repr, unknown))} in the model (its layers: "
                               f"{', '.join(named) or 'none'})")
        named = {n: op for n, op in named.items() if n in only}
    out: list[tuple[str, Operation]] = []
    for name, op in named.items():
        reason = _why_not(op)
        if reason is not None:
            remarks.emit(op, f"not balanced: {reason}")
            continue
        out.append((name, op))
    return out


def _why_not(op: Operation) -> str | None:
    w = op.operands[1]
    if ir.constant_value(w) is None or not _is_f32(w) or not _is_f32(op.operands[0]):
        return "its weights are not float32 constants"
    if isinstance(op, qnn.ConvOp) and get_int(op.groups) != 1:
        return (f"a grouped conv (groups = {get_int(op.groups)}); only groups = 1 is "
                "balanced")
    others = [u.operation for u in w.uses if u.operation is not op]
    if others:
        return f"it shares its weights with {_label(others[0])}"
    return None


def _groups(targets: list[tuple[str, Operation]]) -> list[Group]:
    """Rule 2."""
    groups: dict[tuple[SSAValue, int], Group] = {}
    for name, op in targets:
        x, axis = op.operands[0], Layer(op).in_axis
        groups.setdefault((x, axis), Group(x, axis, [])).layers.append((name, op))
    return list(groups.values())


def channel_absmax(x: np.ndarray, axis: int) -> np.ndarray:
    """`np.abs(x).max(axis=<every axis but axis>)`: for float32, one compiled pass
    without the copy (`qcc.quant._stats.channel_absmax_nan`, the same values, NaN
    for a channel holding a NaN)."""
    if COMPILED is not None and x.dtype == np.float32 and x.size and x.ndim:
        outer = math.prod(x.shape[:axis])
        return COMPILED.channel_absmax_nan(
            np.ascontiguousarray(x).reshape(outer, x.shape[axis], -1))
    return np.abs(x).max(axis=tuple(d for d in range(x.ndim) if d != axis))


def _activation_max(groups: list[Group], module: ModuleOp,
                    batches: Iterable[Mapping[str, np.ndarray]]) -> list[np.ndarray]:
    """Rule 3: per group, max|x| per channel over every batch (the first layer's kernel
    updates a running maximum, then runs as usual)."""
    amax = [np.zeros(_channels(g.x, g.axis)) for g in groups]

    def hook(i: int, axis: int):
        def run(kernel, op, x, *rest):
            np.fmax(amax[i], channel_absmax(x, axis), out=amax[i])
            return kernel(op, x, *rest)
        return run

    run_batch = registry.executor()(
        module, {g.layers[0][1]: hook(i, g.axis) for i, g in enumerate(groups)})
    n = 0
    for batch in batches:
        run_batch(batch)
        n += 1
    if n == 0:
        raise BalanceError("qcc-balance: no calibration batch (the data holds fewer "
                           "samples than one model batch)")
    return amax


# -------------------------------------------------------------- rewriting


def _apply(group: Group, s: np.ndarray) -> None:
    """Rules 4-6 for one group."""
    _divide_input(group, 1 / s)
    for _, op in group.layers:
        w = np.asarray(ir.array_of(op.operands[1]), np.float64)
        _set_operand(op, 1, Layer(op).scale_inputs(w, s), "weight")
        old = op.attributes.get(FACTOR_ATTR)
        total = s * np.asarray(old.get_values()) if isinstance(old, DenseArrayBase) else s
        op.attributes[FACTOR_ATTR] = DenseArrayBase.from_list(f64, [float(v) for v in total])


def _divide_input(group: Group, inv: np.ndarray) -> None:
    """Rules 5 and 6: the group's input times `inv`, folded or as a `qnn.scale`."""
    reason = _why_not_fold(group)
    if reason is None:
        assert isinstance(group.x.owner, Operation)
        _fold(group.x.owner, group.axis, inv)
        return
    first = group.layers[0][1]
    remarks.emit(first, f"1/s stays an explicit qnn.scale: {reason}")
    name = _name(first)
    c = ir.constant(inv.astype(np.float32), f"{name}.balance.scale" if name else None)
    scale = qnn.ScaleOp.make(group.x, c, name=f"{name}.balance" if name else None,
                             axis=group.axis)
    Rewriter.insert_op([c, scale], InsertPoint.before(first))
    for _, op in group.layers:
        op.operands[0] = scale.output


def _why_not_fold(group: Group) -> str | None:
    """Why 1/s cannot fold into the op producing the group's input (None: it can)."""
    producer = group.x.owner
    if not isinstance(producer, Operation):
        return "the activation is a model input"
    members = {id(op) for _, op in group.layers}
    if any(id(u.operation) not in members for u in group.x.uses):
        return "the activation has another user"
    what = f"{_label(producer)}, which produces it,"
    if not isinstance(producer, (*LAYERS, qnn.LayerNormOp, qnn.BatchNormOp, qnn.ScaleOp)):
        return f"{what} is not per-channel"
    if any(ir.constant_value(v) is None for v in producer.operands[1:]):
        return f"{what} has non-constant parameters"
    if group.axis not in _out_axes(producer):
        return f"{what} is not per-channel over axis {group.axis}"
    if isinstance(producer, LAYERS) and not producer.operands[1].has_one_use():
        return f"{what} shares its weights"
    return None


def _fold(producer: Operation, axis: int, inv: np.ndarray) -> None:
    """Rule 5: the output channels of `producer` (over `axis`) times `inv`."""
    params = [np.asarray(ir.array_of(v), np.float64) for v in producer.operands[1:]]
    if isinstance(producer, LAYERS):
        _set_operand(producer, 1, Layer(producer).scale_outputs(params[0], inv), "weight")
        if len(params) > 1:
            _set_operand(producer, 2, params[1] * inv, "bias")
        return
    if isinstance(producer, qnn.LayerNormOp):  # scale and bias: [*shape[start:]]
        rank = len(tensor_type_of(producer.results[0]).get_shape())
        start = get_int(producer.axis) % rank
        inv = inv.reshape([-1 if d == axis - start else 1 for d in range(rank - start)])
    for i, kind in ((1, "scale"), (2, "bias")):  # batch_norm's mean and var stay
        if i <= len(params):
            _set_operand(producer, i, params[i - 1] * inv, kind)


def _set_operand(op: Operation, index: int, array: np.ndarray, kind: str) -> None:
    """Operand `index` of `op` becomes a new float32 constant `<op>.<kind>_balanced`
    (inserted before `op`); the old constant goes when nothing else uses it."""
    name = _name(op)
    new = ir.constant(array.astype(np.float32), f"{name}.{kind}_balanced" if name else None)
    Rewriter.insert_op(new, InsertPoint.before(op))
    old = op.operands[index].owner
    op.operands[index] = new.output
    if isinstance(old, qnn.ConstantOp) and not old.output.uses:
        Rewriter.erase_op(old)


# ---------------------------------------------------------------- helpers


def _out_axes(op: Operation) -> tuple[int, ...]:
    """The axes over which `op`'s output can be scaled per channel through its parameters."""
    rank = len(tensor_type_of(op.results[0]).get_shape())
    if isinstance(op, qnn.LayerNormOp):
        return tuple(range(get_int(op.axis) % rank, rank))
    if isinstance(op, qnn.ScaleOp):
        return (get_int(op.axis) % rank,)
    return (Layer(op).out_axis if isinstance(op, LAYERS) else 1,)  # batch_norm: 1


def _channels(x: SSAValue, axis: int) -> int:
    return tensor_type_of(x).get_shape()[axis]


def _weight_max(layer: Layer) -> np.ndarray:
    """max|W| per input channel."""
    assert layer.weight is not None
    return layer.in_channel_max(np.asarray(ir.array_of(layer.weight), np.float64))


@dataclass(frozen=True)
class BalancePass(ModulePass):
    """Smooth activation outliers into the weights (SmoothQuant); factors from calibration."""

    name = "qcc-balance"

    alpha: float | int = 0.5
    """Migration strength in [0.2, 0.8] (an int is accepted to reject it clearly)."""

    data: str | None = None
    """Calibration data: .npz with one array per model input, first axis the batch."""

    batch_num: int | None = None
    """How many model batches of `data` to use (default: all)."""

    layers: str | tuple[str, ...] = ""
    """Layer names to balance: "fc1,fc2" (default: every dense, conv and conv_transpose)."""

    outlier_ratio: float | int = 0.0
    """Rule 7: balance only inputs whose largest channel max is above this times the
    median channel max (0: balance every target)."""

    def __post_init__(self) -> None:
        check_alpha(self.alpha)
        if isinstance(self.outlier_ratio, bool) or not isinstance(
                self.outlier_ratio, int | float) or self.outlier_ratio < 0:
            raise BalanceError(f"qcc-balance: outlier_ratio must be a number >= 0, got "
                               f"{self.outlier_ratio!r} (0 balances every layer)")

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        self.run(op)

    def only(self) -> list[str] | None:
        """The `layers` option as names (None: every target)."""
        names = self.layers.split(",") if isinstance(self.layers, str) else self.layers
        return [n.strip() for n in names if n.strip()] or None

    def run(self, op: ModuleOp,
            measured: Mapping[tuple[SSAValue, int], np.ndarray] | None = None) -> None:
        """`apply`, with the activation maxima already `measured` (see `balance`)."""
        if self.data is None:
            raise BalanceError("qcc-balance needs data=FILE.npz (calibration data, one "
                               "array per model input, first axis the batch)")
        arrays = inputs.npz(self.data, "calibration")
        try:
            ratios: dict[str, float] = {}
            factors = balance(op, model_batches(op, arrays, self.batch_num), self.alpha,
                              self.only(), float(self.outlier_ratio), ratios, measured)
            remarks.current().results[self.name] = factors
            remarks.current().results[f"{self.name}.outlier_ratio"] = ratios
        except CalibrationError as e:
            raise BalanceError(f"qcc-balance: {self.data}: {e}") from None


__all__ = ["BalancePass", "BalanceError", "balance", "check_alpha", "factor", "FACTOR_ATTR",
           "channel_outlier_ratio", "groups_of"]
