"""canonicalize: xDSL's canonicalization driver plus the qnn rewrite rules.

Rules (each a pattern below):
1. `qnn.identity x` and `qnn.dropout x` (inference) -> x.
2. `reshape(reshape(x))` -> `reshape(x)` (a dim the outer one copies must be one the
   inner one copied); a reshape to the operand's own type -> x (with `?` dims too:
   each is copied or the one inferred from the element count).
3. `transpose(transpose(x, p), q)` -> `transpose(x, p[q])`; the identity perm -> x.
4. A qnn op whose operands are all `qnn.constant` is evaluated by the runtime's
   kernel and becomes one `qnn.constant` (shape arithmetic, weight transposes).
5. Ops without side effects whose results are unused are erased (region DCE).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.transforms.canonicalize import CanonicalizationRewritePattern
from xdsl.transforms.dead_code_elimination import region_dce

from qcc import ir
from qcc.dialects import qnn
from qcc.dialects.base import QnnOp, get_ints
from qcc.passes.common import op_name as _name
from qcc.passes.common import tensor_type_of

FOLD_LIMIT = 1 << 24
"""Largest constant (elements) that folding may create."""


class DropIdentity(RewritePattern):
    """Rule 1."""

    def match_and_rewrite(self, op, rewriter: PatternRewriter, /):
        if isinstance(op, qnn.IdentityOp | qnn.DropoutOp):
            rewriter.replace(op, [], [op.input])


class MergeReshapes(RewritePattern):
    """Rule 2."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: qnn.ReshapeOp, rewriter: PatternRewriter, /):
        if op.input.type == op.output.type:
            rewriter.replace(op, [], [op.input])
            return
        inner = op.input.owner
        if not isinstance(inner, qnn.ReshapeOp):
            return
        copy = get_ints(op.copy_dims)
        # a copied (symbolic) dim must be the same dim of the inner reshape's input
        if not set(copy) <= set(get_ints(inner.copy_dims)):
            return
        rewriter.replace(op, qnn.ReshapeOp.make(inner.input, shape=get_ints(op.shape),
                                                copy_dims=copy or None, name=_name(op)))


class MergeTransposes(RewritePattern):
    """Rule 3."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: qnn.TransposeOp, rewriter: PatternRewriter, /):
        perm = get_ints(op.perm)
        if perm == tuple(range(len(perm))):
            rewriter.replace(op, [], [op.input])
            return
        inner = op.input.owner
        if isinstance(inner, qnn.TransposeOp):
            inner_perm = get_ints(inner.perm)
            merged = tuple(inner_perm[p] for p in perm)
            rewriter.replace(op, qnn.TransposeOp.make(inner.input, perm=merged,
                                                      name=_name(op)))


class FoldConstants(RewritePattern):
    """Rule 4."""

    def match_and_rewrite(self, op, rewriter: PatternRewriter, /):
        if not isinstance(op, QnnOp) or isinstance(op, qnn.ConstantOp):
            return
        if not op.operands or not all(isinstance(v.owner, qnn.ConstantOp)
                                      for v in op.operands):
            return
        if sum(int(np.prod(tensor_type_of(r).get_shape())) for r in op.results) > FOLD_LIMIT:
            return
        from qcc.runtime.ops import KERNELS

        kernel = KERNELS.get(type(op))
        if kernel is None:
            return
        out: Any = kernel(op, *[np.array(ir.array_of(v)) for v in op.operands])  # array(s)
        outs = list(out) if len(op.results) > 1 else [out]
        new_ops = []
        for r, value in zip(op.results, outs, strict=True):
            dtype = ir.numpy_dtype(tensor_type_of(r).element_type)
            value = np.asarray(value, dtype=dtype).reshape(tensor_type_of(r).get_shape())
            new_ops.append(ir.constant(value, name=_name(op)))
        rewriter.replace(op, new_ops, [c.results[0] for c in new_ops])




PATTERNS: list[RewritePattern] = [DropIdentity(), MergeReshapes(), MergeTransposes(),
                                  FoldConstants()]


@dataclass(frozen=True)
class CanonicalizePass(ModulePass):
    """Drop identity/dropout, merge reshapes and transposes, fold constants, dead code."""

    name = "canonicalize"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        pattern = GreedyRewritePatternApplier(
            [*PATTERNS, CanonicalizationRewritePattern()], ctx=ctx, folding_enabled=True)
        PatternRewriteWalker(pattern, post_walk_func=region_dce).rewrite_module(op)
