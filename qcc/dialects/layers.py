"""The layer interface: what passes, targets and the config know about a quantizable
layer (`qnn.LAYER_OPS`) without knowing each op's layout.

`layer_of(op)` views a layer op as a `Layer`:

- operand roles: `activations` (the input; both operands of `qnn.matmul`), `weight` and
  `bias` (conv, conv_transpose, dense; None otherwise);
- channel axes: `in_axis` / `out_axis` of the activation and the result (1, or the last
  axis for dense and matmul), and of the weight under groups: `weight_out_axis` /
  `weight_in_axis` (conv [O, C/g, *K]: 0 / 1; conv_transpose [C, O/g, *K]: 1 / 0,
  output channels repeat per group; dense [N, K]: 0 / 1);
- per-channel scaling of the weight: `scale_outputs(w, a)` gives the weight of the layer
  whose output channel o is multiplied by a[o] (the bias times a is layout-free);
  `scale_inputs(w, s)` the weight whose input channel c is multiplied by s[c], so that
  the layer on x / s computes what it did on x; `out_factor` / `in_factor` are the
  factors these multiply by, broadcast to the weight's shape;
- per-channel statistics: `out_channel_max`, `in_channel_max` (max |W|),
  `constant_input_response(w, c)` (per output channel, what the weights add up to when
  input channel i is the constant c[i]: a bias shift);
- `rebuild(...)`: the layer again with new operands (new constants), in place of itself
  or of another op, erasing what became dead.

Arrays are numpy; reading and making constants is `qcc.ir`'s business.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.pattern_rewriter import PatternRewriter

from qcc.dialects import qnn
from qcc.dialects.base import get_int

WEIGHTED_OPS = (qnn.ConvOp, qnn.ConvTransposeOp, qnn.DenseOp)
"""Layer ops with a weight (operand 1) and an optional bias (operand 2)."""
WEIGHTED = tuple(op.name for op in WEIGHTED_OPS)
NO_WEIGHT = tuple(op.name for op in qnn.LAYER_OPS if op not in WEIGHTED_OPS)


def _shape(value: SSAValue) -> tuple[int, ...]:
    assert isinstance(value.type, TensorType)
    return tuple(value.type.get_shape())


@dataclass(frozen=True)
class Layer:
    """A view of one layer op (`layer_of`)."""

    op: Operation

    # ------------------------------------------------------------ operands

    @property
    def activation_indices(self) -> tuple[int, ...]:
        return (0, 1) if isinstance(self.op, qnn.MatmulOp) else (0,)

    @property
    def activations(self) -> tuple[SSAValue, ...]:
        return tuple(self.op.operands[i] for i in self.activation_indices)

    @property
    def has_weight(self) -> bool:
        return isinstance(self.op, WEIGHTED_OPS)

    @property
    def weight(self) -> SSAValue | None:
        return self.op.operands[1] if self.has_weight else None

    @property
    def bias(self) -> SSAValue | None:
        return self.op.operands[2] if self.has_weight and len(self.op.operands) > 2 else None

    # ---------------------------------------------------------------- axes

    @property
    def groups(self) -> int:
        groups = self.op.properties.get("groups")
        return get_int(groups, 1) if isinstance(self.op, qnn.ConvOp | qnn.ConvTransposeOp) else 1

    @property
    def in_axis(self) -> int:
        """The channel axis of the (first) activation: last for dense and matmul, else 1."""
        return self._channel_axis(len(_shape(self.op.operands[0])))

    @property
    def out_axis(self) -> int:
        """The channel axis of the result: last for dense and matmul, else 1."""
        return self._channel_axis(len(_shape(self.op.results[0])))

    def _channel_axis(self, rank: int) -> int:
        return rank - 1 if isinstance(self.op, qnn.DenseOp | qnn.MatmulOp) else 1

    @property
    def in_channels(self) -> int:
        return _shape(self.op.operands[0])[self.in_axis]

    @property
    def out_channels(self) -> int:
        return _shape(self.op.results[0])[self.out_axis]

    @property
    def weight_out_axis(self) -> int:
        """The weight axis of the output channels (within a group for conv_transpose)."""
        return 1 if isinstance(self.op, qnn.ConvTransposeOp) else 0

    @property
    def weight_in_axis(self) -> int:
        """The weight axis of the input channels (within a group for conv)."""
        return 0 if isinstance(self.op, qnn.ConvTransposeOp) else 1

    @property
    def out_axis_repeats(self) -> int:
        """How often the weight's output-channel axis repeats over the output channels
        (the groups of a conv_transpose, else 1)."""
        return self.groups if isinstance(self.op, qnn.ConvTransposeOp) else 1

    @property
    def per_channel_axis(self) -> int | None:
        """The weight axis that one scale per output channel quantizes along, None when
        no single axis holds the output channels (a grouped conv_transpose)."""
        return None if self.out_axis_repeats > 1 else self.weight_out_axis

    @property
    def products_per_output(self) -> int:
        """How many products at most add up in one output element."""
        if self.weight is None:
            return _shape(self.op.operands[0])[-1] if isinstance(self.op, qnn.MatmulOp) else 0
        w = _shape(self.weight)
        return math.prod(w) // w[self.weight_out_axis]

    # ------------------------------------------------------ weight scaling

    def out_factor(self, a: np.ndarray) -> np.ndarray:
        """a[o] for each weight of output channel o, broadcastable to the weight."""
        w_shape = _shape(self.op.operands[1])
        ones = (1,) * (len(w_shape) - 2)
        if not isinstance(self.op, qnn.ConvTransposeOp):
            return np.asarray(a).reshape(-1, 1, *ones)
        rows = np.arange(w_shape[0]) // (w_shape[0] // self.groups)  # group of weight row c
        return np.asarray(a).reshape(self.groups, -1)[rows].reshape(*w_shape[:2], *ones)

    def in_factor(self, s: np.ndarray) -> np.ndarray:
        """s[c] for each weight reading input channel c, broadcastable to the weight."""
        w_shape = _shape(self.op.operands[1])
        s = np.asarray(s)
        if isinstance(self.op, qnn.DenseOp):
            return s.reshape(1, -1)
        if isinstance(self.op, qnn.ConvTransposeOp):
            return s.reshape(-1, *(1,) * (len(w_shape) - 1))
        return s[self._input_channel(w_shape)].reshape(*w_shape[:2], *(1,) * (len(w_shape) - 2))

    def _input_channel(self, w_shape: Sequence[int]) -> np.ndarray:
        """[O, C/g]: the input channel weight W[o, j] of a conv reads."""
        out, per_in = w_shape[:2]
        per_out = out // self.groups
        return (np.arange(out) // per_out)[:, None] * per_in + np.arange(per_in)

    def scale_outputs(self, w: np.ndarray, a: np.ndarray) -> np.ndarray:
        """`w` with the weights of output channel o multiplied by a[o]."""
        return w * self.out_factor(a)

    def scale_inputs(self, w: np.ndarray, s: np.ndarray) -> np.ndarray:
        """`w` with the weights reading input channel c multiplied by s[c]."""
        return w * self.in_factor(s)

    # --------------------------------------------------- weight statistics

    def _grouped(self, w: np.ndarray) -> np.ndarray:
        """`w` as [groups, O/groups, C/groups, taps]."""
        g = self.groups
        if isinstance(self.op, qnn.ConvTransposeOp):  # [C, O/g, *K]
            return w.reshape(g, w.shape[0] // g, w.shape[1], -1).transpose(0, 2, 1, 3)
        return w.reshape(g, w.shape[0] // g, w.shape[1], -1)

    def out_channel_max(self, w: np.ndarray) -> np.ndarray:
        """max |W| per output channel."""
        return np.abs(self._grouped(w)).max(axis=(2, 3)).reshape(-1)

    def in_channel_max(self, w: np.ndarray) -> np.ndarray:
        """max |W| per input channel."""
        return np.abs(self._grouped(w)).max(axis=(1, 3)).reshape(-1)

    def constant_input_response(self, w: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Per output channel, sum of W over its taps times c[i] of the input channel i
        each weight reads: the output, without bias, when input channel i is the constant
        c[i] (away from padded borders)."""
        grouped = self._grouped(w)
        g, _, per_in, _ = grouped.shape
        return (grouped.sum(-1) * np.asarray(c).reshape(g, 1, per_in)).sum(-1).reshape(-1)

    # ------------------------------------------------------------- rebuild

    def rebuild(self, rewriter: PatternRewriter | None = None, *,
                input: SSAValue | None = None, weight: Operation | SSAValue | None = None,
                bias: Operation | SSAValue | None = None, replacing: Operation | None = None,
                erase: Iterable[Operation] = ()) -> Operation:
        """The layer again on `input`, `weight`, `bias` where given (a new constant op
        is inserted before it), with the same properties and attributes. It replaces
        `replacing` (default: the layer, else the layer is erased too), then `erase`
        and the constants no op uses any more are erased. Returns the new layer."""
        op = self.op
        new_ops = [v for v in (weight, bias) if isinstance(v, Operation)]
        values = [v.results[0] if isinstance(v, Operation) else v for v in (weight, bias)]
        operands = [op.operands[0] if input is None else input,
                    op.operands[1] if values[0] is None else values[0],
                    self.bias if values[1] is None else values[1]]
        new = type(op).make(*operands, **dict(op.properties))  # type: ignore[attr-defined]
        new.attributes.update(op.attributes)
        dead = [op] if replacing is not None and replacing is not op else []
        replace(rewriter or PatternRewriter(op), replacing or op, [*new_ops, new],
                [*dead, *erase])
        return new


def layer_of(op: Operation) -> Layer | None:
    """`op` as a `Layer` (None when it is not one of `qnn.LAYER_OPS`)."""
    return Layer(op) if isinstance(op, qnn.LAYER_OPS) else None


def replace(rewriter: PatternRewriter, op: Operation, new_ops: Sequence[Operation],
            erase: Iterable[Operation] = ()) -> None:
    """Replace `op` by `new_ops` (its results by the last one's), erase the ops in
    `erase` (which fed only `op`), then the constants that fed any of them and that
    nothing uses any more."""
    erase = list(erase)
    owners = [v.owner for o in (op, *erase) for v in o.operands]
    rewriter.replace(op, list(new_ops))
    for dead in erase:
        rewriter.erase(dead)
    for owner in dict.fromkeys(owners):
        if isinstance(owner, qnn.ConstantOp) and not owner.output.uses:
            rewriter.erase(owner)
