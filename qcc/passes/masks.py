"""Attention masks, recognised from the graph's structure (never from the size of values).

A mask lives on the path `mask -> Add / Where -> ... -> Softmax input`. Rules:
1. From each `qnn.softmax`, the *score path* runs backward from its input through
   ops that keep the scores what they are: reshape, transpose, broadcast, cast,
   `qnn.mul` / `qnn.div` by a constant, `qnn.add` of a constant (a bias), and the
   mask adds and wheres of rules 2 and 3.
2. A `qnn.add` on the score path one of whose operands carries a large negative
   constant (rule 4) and is not computed from a layer is a mask add: that operand is
   an additive mask (`(1 - m) * -1e9`, a precomputed causal mask,
   `Where(m, 0, finfo.min)`, a position bias plus a mask); the path continues into
   the other operand, the scores.
3. A `qnn.where(c, a, b)` on the score path whose `a` or `b` carries a large
   negative constant and is not computed from a layer applies a mask
   (`Where(m, scores, -inf)`); the path continues into the other branch.
4. A value *carries a large negative constant* when it is a `qnn.constant` with an
   element <= -1e4 (`LARGE`, -10000 being the smallest in use: original BERT) or
   -inf, or is computed from one within `DEPTH` ops that are not layers.
5. `mask_values` are the mask operands, every value computed on the way from the
   constant to them, and the *masked scores*: the result of each mask add / where
   and the score path from it to the softmax input. None of these may reach a
   quantizer's statistics: a layer reading one stays float (`mask_inputs`).
"""

from __future__ import annotations

import numpy as np
from xdsl.ir import Operation, SSAValue

from qcc import ir
from qcc.dialects import qnn

LARGE = 1e4
"""A constant element <= -LARGE (or -inf) makes an additive mask (rule 4)."""

DEPTH = 8
"""How many non-layer ops a mask may pass through after its constant (rule 4)."""

_SHAPE_OPS = frozenset({"qnn.reshape", "qnn.transpose", "qnn.broadcast", "qnn.cast",
                        "qnn.identity"})


def _owner(value: SSAValue) -> Operation | None:
    owner = value.owner
    return owner if isinstance(owner, Operation) else None


def _mask_cone(value: SSAValue, depth: int = DEPTH) -> set[SSAValue] | None:
    """Rule 4: the values from a large negative constant to `value` (None if none)."""
    op = _owner(value)
    if op is None or isinstance(op, qnn.LAYER_OPS):
        return None
    if isinstance(op, qnn.ConstantOp):
        array = ir.constant_value(value)
        if array is None or array.dtype.kind != "f" or array.size == 0:
            return None
        return {value} if float(np.min(array)) <= -LARGE else None
    if depth == 0:
        return None
    cone: set[SSAValue] = set()
    for operand in op.operands:
        found = _mask_cone(operand, depth - 1)
        if found is not None:
            cone |= found
    return cone | {value} if cone else None


def _reaches_layer(value: SSAValue, depth: int = DEPTH) -> bool:
    """Whether `value` is computed from a layer's result within `depth` ops (scores
    are, masks never are)."""
    op = _owner(value)
    if op is None:
        return False
    if isinstance(op, qnn.LAYER_OPS):
        return True
    return depth > 0 and any(_reaches_layer(v, depth - 1) for v in op.operands)


def _scores_operand(op: Operation) -> tuple[SSAValue, set[SSAValue]] | None:
    """Rules 2 and 3: (the scores operand, the mask cone) of a mask add or where. The
    mask carries a large negative constant and is not computed from a layer (scores
    masked once already, `Where(m, scores, min)`, carry one too)."""
    if isinstance(op, qnn.AddOp):
        pair = tuple(op.operands)
    elif isinstance(op, qnn.WhereOp):
        pair = tuple(op.operands[1:])
    else:
        return None
    a, b = pair
    for scores, mask in ((a, b), (b, a)):
        cone = _mask_cone(mask)
        if cone is not None and not _reaches_layer(mask):
            return scores, cone
    return None


def _next_on_path(op: Operation) -> SSAValue | None:
    """Rule 1: the operand the score path continues into from `op` (None: it ends)."""
    if op.name in _SHAPE_OPS:
        return op.operands[0]
    if isinstance(op, qnn.MulOp | qnn.DivOp):
        a, b = op.operands
        if ir.constant_value(b) is not None:
            return a
        if isinstance(op, qnn.MulOp) and ir.constant_value(a) is not None:
            return b
    return None


def mask_values(module) -> set[SSAValue]:
    """Rule 5: every mask value and masked score tensor of `module`."""
    out: set[SSAValue] = set()
    for softmax in (o for o in module.walk() if isinstance(o, qnn.SoftmaxOp)):
        path: list[SSAValue] = []
        value: SSAValue | None = softmax.operands[0]
        for _ in range(4 * DEPTH):
            if value is None:
                break
            op = _owner(value)
            if op is None:
                break
            path.append(value)
            found = _scores_operand(op)
            if found is not None:
                out |= found[1] | set(path)
                value = found[0]
                continue
            if isinstance(op, qnn.AddOp):  # a bias: follow the operand that is not constant
                a, b = op.operands
                value = a if ir.constant_value(b) is not None else (
                    b if ir.constant_value(a) is not None else None)
                continue
            value = _next_on_path(op)
    return out


def mask_inputs(module) -> dict[Operation, list[int]]:
    """Layers with an activation input that is a mask value: op -> operand indices."""
    from qcc.dialects.layers import Layer

    masks = mask_values(module)
    if not masks:
        return {}
    out: dict[Operation, list[int]] = {}
    for op in module.walk():
        if not isinstance(op, qnn.LAYER_OPS):
            continue
        hit = [i for i in Layer(op).activation_indices if op.operands[i] in masks]
        if hit:
            out[op] = hit
    return out


__all__ = ["LARGE", "DEPTH", "mask_values", "mask_inputs"]
