"""canonicalize: xDSL's canonicalization driver plus the qnn rewrite rules.

Rules (each a pattern below):
1. `qnn.identity x` and `qnn.dropout x` (inference) -> x.
2. `reshape(reshape(x))` -> `reshape(x)`; a reshape to the operand's own shape -> x.
3. `transpose(transpose(x, p), q)` -> `transpose(x, p[q])`; the identity perm -> x.
4. A pure qnn op whose operands are all `qnn.constant` folds through its fold hook
   (`qcc.dialects.qnn_eval`: numpy semantics, the runtime's own for these ops) into
   `qnn.constant`s (shape arithmetic, weight transposes). Layers and quant ops
   never fold: a weight's observer or fake_quant stays for calibration and
   realize-int8.
5. Ops without side effects whose results are unused are erased (region DCE).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.folder import Folder
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.traits import ConstantLike
from xdsl.transforms.canonicalize import CanonicalizationRewritePattern
from xdsl.transforms.dead_code_elimination import region_dce

from qcc.dialects import qnn
from qcc.dialects.base import get_ints
from qcc.passes.common import op_name as _name


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
        if isinstance(inner, qnn.ReshapeOp):
            rewriter.replace(op, qnn.ReshapeOp.make(inner.input, shape=get_ints(op.shape),
                                                    name=_name(op)))


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
    """Rule 4, through the ops' own fold hooks (`HasFolder`); the constants keep the
    folded op's name."""

    def __init__(self, folder: Folder) -> None:
        self.folder = folder

    def match_and_rewrite(self, op, rewriter: PatternRewriter, /):
        if op.has_trait(ConstantLike):
            return
        folded = self.folder.try_fold(op)
        if folded is None:
            return
        values, new_ops = folded
        name = _name(op)
        for c in new_ops:
            if name:
                c.attributes["name"] = StringAttr(name)
        rewriter.replace(op, new_ops, values)


PATTERNS: list[RewritePattern] = [DropIdentity(), MergeReshapes(), MergeTransposes()]


@dataclass(frozen=True)
class CanonicalizePass(ModulePass):
    """Drop identity/dropout, merge reshapes and transposes, fold constants, dead code."""

    name = "canonicalize"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        pattern = GreedyRewritePatternApplier(
            [*PATTERNS, FoldConstants(Folder(ctx)), CanonicalizationRewritePattern()])
        PatternRewriteWalker(pattern, post_walk_func=region_dce).rewrite_module(op)
