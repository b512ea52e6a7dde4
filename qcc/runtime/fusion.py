"""The executor's in-place fusion of plan steps (`fuse_in_place`, run by
`qcc.runtime.executor.compile_module` after `qcc.runtime.patterns`): a fake-quant,
activation, batch norm or element-wise op of constants joins the step producing its
input; after a float conv, a batch norm, a residual add, an activation and a
fake-quant become the compiled conv's epilogue; an int8 conv or dense takes its output
stages, and after an int8 conv's dequant to float32 values, a residual add, a relu and
an ascend.quant (`_int8_residual`). Steps are the executor's `Step`s (built here as
`type(step)(...)`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
from xdsl.ir import Operation

from qcc.dialects import qnn
from qcc.runtime import int8 as _int8
from qcc.runtime import ops as K


def fuse_in_place(steps: list[Any], outputs: set[int],
                  constants: dict[int, np.ndarray]) -> list[Any]:
    """Fold each fake-quant / activation / batch_norm / element-wise-of-a-constant
    step into the step before it when it consumes that step's fresh float32 result,
    which nothing else uses (its other operands constants). After a float conv, a
    batch_norm, a residual add (of another float32 tensor of the same shape), an
    activation, then a fake-quant become the compiled conv's epilogue (the same bits); the
    others run in place after it."""
    fused: list[Any] = []
    chain: dict[int, tuple[Any, list, list]] = {}  # index in fused -> producer, followers
    epilogues: dict[int, tuple[Any, K.Epilogue]] = {}  # index -> the conv's step, epilogue
    for step in steps:
        if step.opaque or len(step.args) != len(step.op.operands):
            # a pattern's step (patterns.py): nothing below may take it for its op's
            # kernel, nor its args for the op's operands
            fused.append(step)
            continue
        prev = fused[-1] if fused else None
        last = len(fused) - 1
        taken = _int8_residual(prev, step, outputs, constants)
        if taken is not None:  # an int8 conv's dequantized result + a residual, ...
            fused[-1] = taken
            chain[last] = (taken, [], [])
            continue
        if (prev is not None and len(prev.results) == 1 and step.args[:1] == prev.results
                and prev.results[0] not in outputs and step.op.operands[0].has_one_use()):
            both = _int8.fused(prev.fn, step.op, [constants.get(a) for a in step.args])
            if both is not None:  # int8 conv / dense and its output stages in one pass
                fused[-1] = type(prev)(both, prev.op, prev.args, step.results, fresh=True)
                chain[last] = (fused[-1], [], [])
                continue
        if prev is not None and last not in chain:
            conv_step, spec = epilogues.get(last, (prev, K.Epilogue()))
            extended = _conv_epilogue(conv_step.op, spec, prev, step, outputs, constants)
            if extended is not None:
                spec, extra = extended
                kernel = K.conv_kernel(conv_step.op, epilogue=spec,
                                       constant_weights=conv_step.args[1] in constants)
                fused[-1] = type(prev)(kernel.fn, conv_step.op, prev.args + extra, step.results,
                                 fresh=True, takes_out=kernel.takes_out)
                epilogues[last] = (conv_step, spec)
                continue
        if (prev is not None and last not in chain and last not in epilogues
                and len(prev.results) == 1 and step.args == prev.results
                and prev.results[0] not in outputs and step.op.operands[0].has_one_use()
                and len(prev.args) == 2 and not any(a in constants for a in prev.args)):
            summed = K.add_activation(prev.op, step.op)
            if summed is not None:  # a + b, then relu / clip / ...: one pass
                fused[-1] = type(prev)(summed.fn, prev.op, prev.args, step.results, fresh=True,
                                 takes_out=True)
                chain[last] = (fused[-1], [], [])
                continue
        params = [constants[a] for a in step.args[1:] if a in constants]
        follower = K.in_place(step.op, params) if len(params) == len(step.args) - 1 \
            else None
        if (prev is not None and follower is not None and prev.fresh
                and len(prev.results) == 1 and step.args[:1] == prev.results
                and prev.results[0] not in outputs and K.is_f32(prev.op.results[0])
                and step.op.operands[0].has_one_use()):
            base, followers, fallbacks = chain.get(last, (prev, [], []))
            followers = followers + [follower]
            fallbacks = fallbacks + [partial(_first_arg, step.fn, params)]
            kernel = K.fuse(K.Kernel(base.fn, base.fresh, base.takes_out), followers,
                            fallbacks)
            fused[-1] = type(prev)(kernel.fn, prev.op, prev.args, step.results, fresh=True,
                             takes_out=kernel.takes_out)
            chain[last] = (base, followers, fallbacks)
            continue
        fused.append(step)
    return fused


def _int8_residual(prev: Any, step: Any, outputs: set[int],
                   constants: dict[int, np.ndarray]) -> Any | None:
    """The int8 conv step `prev` (its output stage a dequant to float32 values) taking
    `step` into that stage: the residual add of its result and another float32
    tensor (the step then reads that tensor too), or, after the add (and a relu), an
    ascend.quant of the sum that is not the sum's only user: the step then writes
    both, the sum and its int8 values. None when `step` is neither."""
    if prev is None or len(prev.results) != 1 or len(step.results) != 1:
        return None
    mine = prev.results[0]
    if isinstance(step.op, qnn.AddOp):
        if (mine in outputs or len(step.args) != 2 or mine not in step.args
                or step.args[0] == step.args[1]):
            return None
        at = step.args.index(mine)
        skip = step.args[1 - at]
        if skip in constants or not step.op.operands[at].has_one_use():
            return None
        fn = _int8.residual(prev.fn, step.op, at)
        return None if fn is None else type(prev)(fn, prev.op, prev.args + (skip,),
                                                  step.results, fresh=True)
    if step.args[:1] != prev.results or step.op.operands[0].has_one_use():
        return None
    fn = _int8.teed(prev.fn, step.op)
    return None if fn is None else type(prev)(fn, prev.op, prev.args,
                                              prev.results + step.results, fresh=True)


def _conv_epilogue(conv: Operation, spec: K.Epilogue, prev: Any, step: Any,
                   outputs: set[int], constants: dict[int, np.ndarray],
                   ) -> tuple[K.Epilogue, tuple[int, ...]] | None:
    """When `prev` is the float conv `conv` with epilogue `spec` so far, its result's
    only user `step`, and `step` extends the epilogue: the extended epilogue and the
    operands the step gains (a residual's slot)."""
    if not (isinstance(conv, qnn.ConvOp) and K.operand_kind(conv) == "float"
            and len(prev.results) == 1 and prev.results[0] not in outputs
            and prev.results[0] in step.args and len(step.results) == 1):
        return None
    at = step.args.index(prev.results[0])
    value = step.op.operands[at]
    if not value.has_one_use():
        return None
    if isinstance(step.op, qnn.AddOp):  # conv + skip: the residual
        if spec.stage > 1 or len(step.args) != 2 or step.args[0] == step.args[1] \
                or not K.epilogue_runs(conv):
            return None
        skip, other = step.args[1 - at], step.op.operands[1 - at]
        if skip in constants or not (K.is_f32(other) and other.type == value.type
                                     and step.op.results[0].type == value.type):
            return None
        return replace(spec, residual=True), (skip,)
    if at != 0 or any(a not in constants for a in step.args[1:]):
        return None
    extended = K.extend_epilogue(conv, spec, step.op, [constants[a] for a in step.args[1:]])
    return None if extended is None else (extended, ())


def _first_arg(fn: Callable[..., Any], rest: list, x: np.ndarray) -> Any:
    return fn(x, *rest)
