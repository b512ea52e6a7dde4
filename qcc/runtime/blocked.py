"""Plans that keep the values between their float convolutions in the blocked layout.

On a CPU with AVX-512 or AVX2 + FMA (within QCC_ISA: qcc.runtime.isa), `apply` rewrites a
fused plan so that chains of 2-D convolutions pass their values as blocked arrays
[N, ceil(C/16), H, W, 16] (runtime/_blocked.pyx) instead of NCHW: a depthwise conv
then reads 16 channels of a position as one vector, and a conv stores its tile as
the registers hold it (no transposes into NCHW, no gathers out of it), as
onnxruntime's NCHWc kernels do. Every value is the same float32 as in the NCHW plan.

A value is blocked when its producer can write it blocked and every user can read it
so, and it is not an output of the plan:
- a conv of constant weights (groups 1 or depthwise, a plane of more than one
  position) writes blocked; it reads a blocked or an NCHW input (a depthwise conv:
  blocked only) and a fused residual laid out as its output;
- a per-tensor fake-quant keeps its input's layout (it is element-wise);
- a product by a per-channel tensor [N or 1, C, 1, 1] (squeeze-and-excitation)
  reads and writes blocked;
- a global average pool reads blocked and writes NCHW;
- a 2-D max or average pool (an average without dilations; fused after it nothing,
  or a per-tensor fake-quant, which it applies in its pass) reads and writes blocked.
A conv whose result a per-tensor fake-quant reads beside another user (the next
block's residual) writes that fake-quant too, in the same pass (a tee: one step with
both results, its buffer [2, *blocked shape]), instead of the fake-quant reading the
result again; a conv whose NCHW input is a per-tensor fake-quant that nothing else
reads (the input quantizer before the stem) makes it as it copies its input into its
padded plane.
The decision is a fixpoint over the plan: a value stays blocked unless its producer
cannot write it so (an input it needs blocked is not), or nothing reads it blocked
while the producer reads nothing blocked either (then NCHW costs no copy). A user
that cannot read a blocked value (a pool, a reshape, a conv writing NCHW) reads an
NCHW copy made by a layout-copy step before it. A plan with observers (calibration)
stays NCHW, unless its observers stand aside (`apply`'s observers_aside: their
users read the value they observe, each observer an NCHW copy of it).
QCC_BLOCKED=0 in the environment turns the layout off.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from qcc.dialects import qnn, quant
from qcc.dialects.base import get_bool, get_ints
from qcc.runtime import ops as K

B: Any
try:
    from qcc.runtime import _blocked as B
except ImportError:  # an uncompiled checkout
    B = None

ENV = "QCC_BLOCKED"


def enabled() -> bool:
    """Whether plans compiled now use the blocked layout."""
    return B is not None and os.environ.get(ENV, "1") != "0" and B.supported()


def blocked_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """The array shape of a blocked NCHW tensor of `shape` (runtime/_blocked.pyx)."""
    return B.blocked_shape(shape)


def _shape(v: Any) -> tuple[int, ...] | None:
    """The static shape of a float32 value, its batch (first) dim allowed symbolic
    (-1): the blocked kernels take any batch."""
    t = v.type
    if not hasattr(t, "get_shape") or not K.is_f32(v):
        return None
    s = tuple(t.get_shape())
    return s if s and all(d > 0 for d in s[1:]) and s[0] != 0 else None


def _kind(step: Any, constants: dict[int, np.ndarray]) -> str | None:
    """conv, gap, scale, pool or lanewise (what a step can do on blocked values), or
    None."""
    op = step.op
    if getattr(step, "opaque", False):   # a fused chain: its fn is not op's kernel
        return None
    spec = getattr(step.fn, "conv_spec", None)
    if spec is not None and isinstance(op, qnn.ConvOp):
        x, out = _shape(op.operands[0]), _shape(op.results[0])
        w = constants.get(step.args[1])
        if x is None or out is None or len(x) != 4 or w is None or w.ndim != 4 \
                or out[2] * out[3] < 2:
            return None
        if len(op.operands) > 2 and step.args[2] not in constants:
            return None
        if spec.groups == 1:
            return "conv"
        return "conv" if spec.groups == x[1] == out[1] and w.shape[1] == 1 else None
    if isinstance(op, qnn.GlobalAvgPoolOp):
        x = _shape(op.operands[0])
        # its followers run on its NCHW result, whatever they are
        return "gap" if x is not None and len(x) == 4 else None
    if isinstance(op, (qnn.MaxPoolOp, qnn.AvgPoolOp)) and step.takes_out \
            and not _fused_fake_quant(_followers(step.fn))[0]:
        x, out = _shape(op.operands[0]), _shape(op.results[0])
        k = get_ints(op.properties.get("kernel"))
        dilated = isinstance(op, qnn.AvgPoolOp) and \
            any(d != 1 for d in get_ints(op.properties.get("dilations")))
        return "pool" if x is not None and out is not None and len(x) == 4 and len(k) == 2 \
            and K.is_f32(op.results[0]) and not dilated else None
    if isinstance(op, qnn.MulOp) and len(op.operands) == 2 and len(step.args) == 2:
        return "scale" if _scale_operand(step) is not None and _lanewise(step.fn) else None
    if isinstance(op, quant.FakeQuantOp) and len(op.operands) == 1 and step.takes_out:
        qtype: Any = op.properties["qtype"]
        x = _shape(op.operands[0])
        if qtype.axis is None and x is not None and len(x) == 4 and K.is_f32(op.results[0]):
            return "lanewise"
    return None


def _lanewise(fn: Callable[..., Any]) -> bool:
    """Whether every follower fused after the step's kernel works lane by lane."""
    return all(getattr(f, "lanewise", False) for f in getattr(fn, "followers", ()))


def _scale_operand(step: Any) -> int | None:
    """The operand (0 or 1) of the product that is the [N, C, H, W] tensor, the other
    being per channel [1 or N, C, 1, 1]."""
    op = step.op
    out = _shape(op.results[0])
    if out is None or len(out) != 4 or out[2] * out[3] < 2:
        return None
    for i in (0, 1):
        x, s = _shape(op.operands[i]), _shape(op.operands[1 - i])
        if x == out and s is not None and len(s) == 4 and s[1:] == (out[1], 1, 1) \
                and s[0] in (1, out[0]) and step.args[0] != step.args[1]:
            return i
    return None


def apply(steps: list[Any], outputs: set[int], constants: dict[int, np.ndarray],
          n_slots: int, observers_aside: bool = False,
          observers_flat: bool = False) -> tuple[list[Any], frozenset[int], int]:
    """The steps with the blocked kernels where the rules above allow, the slots that
    hold blocked arrays, and the slot count (a layout copy takes a new slot). With
    `observers_aside`, the users of each observer read its input (`_aside`); with
    `observers_flat` too (their hooks look at the values, not at their layout: a
    per-tensor range and histogram), an observer of a blocked value whose channels
    fill their blocks of 16 reads it blocked, the same values in another order, with
    no NCHW copy (`_observes_flat`)."""
    observed = any(isinstance(s.op, quant.ObserveOp) for s in steps)
    if not enabled() or (observed and not observers_aside):
        return steps, frozenset(), n_slots
    if observed:
        steps = _aside(steps, outputs)
    kinds = [_kind(s, constants) for s in steps]
    producer = {r: i for i, s in enumerate(steps) for r in s.results}
    users: dict[int, list[tuple[int, int]]] = {}
    for i, s in enumerate(steps):
        for pos, a in enumerate(s.args):
            users.setdefault(a, []).append((i, pos))
    cand = {s.results[0] for s, k in zip(steps, kinds, strict=True)
            if k in ("conv", "scale", "pool", "lanewise") and len(s.results) == 1}
    changed = True
    while changed:
        changed = False
        for slot in sorted(cand):
            i = producer[slot]
            if slot in outputs or not _inputs_ready(steps[i], kinds[i], cand) or (
                    not any(a in cand for a in steps[i].args) and not any(
                        _reads_blocked(steps[j], kinds[j], pos, cand)
                        for j, pos in users.get(slot, ()))):
                cand.discard(slot)
                changed = True
    if not cand:
        return steps, frozenset(), n_slots
    tees = _tees(steps, kinds, users, cand, outputs)
    folds = _input_fake_quants(steps, kinds, users, producer, cand, outputs)
    out: list[Any] = []
    copies: dict[int, int] = {}   # blocked slot -> its NCHW copy
    skipped = set(tees.values()) | set(folds.values())
    for i, (s, k) in enumerate(zip(steps, kinds, strict=True)):
        if i in skipped:   # a fake-quant that the conv writing or reading it computes
            continue
        args = list(s.args)
        if i in folds:   # the conv reads the fake-quant's input, fake-quantized as it pads
            args[0] = steps[folds[i]].args[0]
        for pos, a in enumerate(args):
            if a in cand and observers_flat and _observes_flat(s, steps[producer[a]]):
                s = replace(s, flat=True)   # it reads the blocked array
            elif a in cand and not _reads_blocked(s, k, pos, cand):
                if a not in copies:
                    copies[a] = n_slots
                    n_slots += 1
                    src = steps[producer[a]]
                    out.append(replace(src, fn=_to_nchw(_shape(src.op.results[0])[1]),  # type: ignore[index]
                                       args=(a,), results=(copies[a],), dead=(), fresh=True,
                                       takes_out=True, blocked=False, layout_copy=True))
                args[pos] = copies[a]
        if k == "gap" and s.args[0] in cand:
            s = replace(s, fn=_gap(s))
        elif k is not None and s.results[0] in cand:
            tee = tees.get(s.results[0])
            in_fq = steps[folds[i]].op if i in folds else None
            if tee is not None:   # the conv writes the fake-quant's value too
                s = replace(s, fn=_conv(s, constants, steps[tee].op, in_fq), blocked=True,
                            tee=True, results=(*s.results, steps[tee].results[0]))
            elif k == "conv":
                s = replace(s, fn=_conv(s, constants, None, in_fq), blocked=True)
            else:
                fn = _scale(s) if k == "scale" else _pool(s) if k == "pool" else s.fn
                s = replace(s, fn=fn, blocked=True)
        out.append(replace(s, args=tuple(args)))
    return out, frozenset(cand), n_slots


def _aside(steps: list[Any], outputs: set[int]) -> list[Any]:
    """The steps with every user of a `quant.observe`'s result but the plan's outputs
    reading the observer's input (the same value) instead: the observers stand
    aside, each the only reader of its result, and read an NCHW copy where the
    value is blocked (calibration of ResNet-18 at batch 32 then runs the blocked
    kernels: 178-187 -> 165-173 ms a batch, against the NCHW plan)."""
    source: dict[int, int] = {}
    for s in steps:
        if isinstance(s.op, quant.ObserveOp) and len(s.args) == 1 and len(s.results) == 1 \
                and s.results[0] not in outputs:
            source[s.results[0]] = source.get(s.args[0], s.args[0])
    if not source:
        return steps
    return [s if isinstance(s.op, quant.ObserveOp)
            else replace(s, args=tuple(source.get(a, a) for a in s.args)) for s in steps]


def _input_fake_quants(steps: list[Any], kinds: list[str | None],
                       users: dict[int, list[tuple[int, int]]], producer: dict[int, int],
                       cand: set[int], outputs: set[int]) -> dict[int, int]:
    """Blocked convs (groups 1) whose NCHW input is a per-tensor fake-quant that only
    they read (the model's input quantizer before the stem): the conv makes it as it
    copies its input into its padded plane, a pass less. Maps the conv's step to the
    fake-quant's."""
    folds: dict[int, int] = {}
    for i, (s, k) in enumerate(zip(steps, kinds, strict=True)):
        if k != "conv" or s.results[0] not in cand or s.fn.conv_spec.groups != 1 \
                or s.args[0] in cand or s.args[0] not in producer:
            continue
        j = producer[s.args[0]]
        fq = steps[j]
        if kinds[j] == "lanewise" and fq.args[0] not in cand and fq.results[0] not in outputs \
                and users.get(fq.results[0]) == [(i, 0)] and not getattr(fq.fn, "followers", ()) \
                and K.per_tensor_fake_quant(fq.op) is not None:
            folds[i] = j
    return folds


def _tees(steps: list[Any], kinds: list[str | None], users: dict[int, list[tuple[int, int]]],
          cand: set[int], outputs: set[int]) -> dict[int, int]:
    """Blocked convs whose result a per-tensor fake-quant reads while another step
    reads it too (a residual: the fake-quant could not join the conv's epilogue): the
    conv writes both its result and the fake-quant in one pass (a tee), so that the
    fake-quant does not read the result again. Maps the conv's result slot to the
    fake-quant's step."""
    tees: dict[int, int] = {}
    for s, k in zip(steps, kinds, strict=True):
        if k != "conv" or s.results[0] not in cand or \
                (s.fn.conv_spec.epilogue is not None and
                 s.fn.conv_spec.epilogue.fake_quant is not None):
            continue
        for j, pos in users.get(s.results[0], ()):
            fq = steps[j]
            if kinds[j] == "lanewise" and pos == 0 and fq.results[0] in cand and \
                    fq.results[0] not in outputs and not getattr(fq.fn, "followers", ()):
                tees[s.results[0]] = j
                break
    return tees


def _inputs_ready(step: Any, kind: str | None, cand: set[int]) -> bool:
    """Whether the inputs a blocked run of `step` must read blocked are."""
    if kind == "conv":
        n_conv = len(step.op.operands)
        if step.fn.conv_spec.groups > 1 and step.args[0] not in cand:
            return False
        return len(step.args) <= n_conv or step.args[n_conv] in cand   # the residual
    if kind in ("lanewise", "pool"):
        return step.args[0] in cand
    if kind == "scale":
        return step.args[_scale_operand(step) or 0] in cand
    return False


def _reads_blocked(step: Any, kind: str | None, pos: int, cand: set[int]) -> bool:
    """Whether `step` reads its operand `pos` blocked (given the blocked slots)."""
    if kind == "gap":
        return True
    if kind is None or step.results[0] not in cand:
        return False
    if kind == "conv":
        return pos == 0 or pos == len(step.op.operands)
    if kind == "scale":
        return pos == _scale_operand(step)
    return pos == 0


def _observes_flat(step: Any, src: Any) -> bool:
    """Whether `step` is an observer that may read the blocked value `src` writes as it
    lies: whole blocks of 16 channels (no zero lanes past them), so that the blocked
    array holds exactly the NCHW array's values."""
    shape = _shape(src.op.results[0])
    return isinstance(step.op, quant.ObserveOp) and shape is not None and len(shape) == 4 \
        and shape[1] % 16 == 0


def _to_nchw(c: int) -> Callable[..., Any]:
    def to_nchw(y, out=None):
        return B.to_nchw(y, c, out=out)
    return to_nchw


def _followers(fn: Callable[..., Any]) -> tuple[Callable[..., Any], ...]:
    return tuple(getattr(fn, "followers", ()))


def _conv(step: Any, constants: dict[int, np.ndarray], tee: Any = None,
          in_fq: Any = None) -> Callable[..., Any]:
    """The blocked conv of `step`; with `tee`, a fake-quant op of its result, whose
    value it writes too; with `in_fq`, the per-tensor fake-quant op of its input, which
    it makes as it pads (it is given the fake-quant's input)."""
    spec = step.fn.conv_spec
    n_conv = len(step.op.operands)
    w = constants[step.args[1]]
    b = constants[step.args[2]] if n_conv > 2 else None
    e = spec.epilogue or K.Epilogue()
    fake_quant = e.fake_quant if tee is None else K.per_tensor_fake_quant(tee)
    conv = B.Conv(w, b, spec.strides, spec.pads, spec.dilations, spec.groups,
                  e.activation, fake_quant, e.affine, tee=tee is not None,
                  in_fake_quant=None if in_fq is None else K.per_tensor_fake_quant(in_fq))
    if e.residual:
        def with_residual(*args, out=None):
            return conv(args[0], residual=args[n_conv], out=out)
        return with_residual

    def run(*args, out=None):
        return conv(args[0], out=out)
    return run


def _fused_fake_quant(followers: tuple[Callable[..., Any], ...],
                      ) -> tuple[tuple[Callable[..., Any], ...], Any]:
    """A per-tensor fake-quant first among the followers, which the kernel then runs
    in its own pass: the other followers and its parameters (or None)."""
    fq = getattr(followers[0], "fake_quant", None) if followers else None
    return (followers[1:], fq) if fq is not None else (followers, None)


def _gap(step: Any) -> Callable[..., Any]:
    c = _shape(step.op.operands[0])[1]  # type: ignore[index]
    followers = _followers(step.fn)
    s = _channel_scale(followers[0], c) if followers else None
    if s is not None:   # a per-channel scale of the means first (a squeeze-and-excitation's)
        followers = followers[1:]
    followers, fq = _fused_fake_quant(followers)

    def run(y, out=None):
        r = B.means(y, c, out=out, fake_quant=fq, scale=s)
        for f in followers:
            r = f(r)
        return r
    return run


def _channel_scale(follower: Callable[..., Any], c: int) -> np.ndarray | None:
    """The c float32 factors of a follower multiplying its [N, C, 1, 1] input by one
    factor a channel (`quant_ops.in_place` of a qnn.scale), or None."""
    found = getattr(follower, "channel_scale", None)
    if found is None:
        return None
    s, axis = found
    if axis % 4 != 1 or s.dtype != np.float32 or s.size != c:
        return None
    return np.ascontiguousarray(s.reshape(-1))


def _pool(step: Any) -> Callable[..., Any]:
    op = step.op
    c, oh, ow = _shape(op.results[0])[1:]  # type: ignore[index]
    kind = "max" if isinstance(op, qnn.MaxPoolOp) else \
        "avg_pad" if get_bool(op.properties.get("count_include_pad")) else "avg"
    fq = _fused_fake_quant(_followers(step.fn))[1]
    kernel = get_ints(op.properties.get("kernel"))
    strides = get_ints(op.properties.get("strides"), (1, 1))
    pads = get_ints(op.properties.get("pads"), (0, 0, 0, 0))
    dilations = get_ints(op.properties.get("dilations"), (1, 1))

    def run(y, out=None):
        return B.pool(y, c, kind, kernel, strides, pads, dilations, (oh, ow), out=out,
                      fake_quant=fq)
    return run


def _scale(step: Any) -> Callable[..., Any]:
    at = _scale_operand(step)
    followers, fq = _fused_fake_quant(_followers(step.fn))

    def run(a, b, out=None):
        x, s = (a, b) if at == 0 else (b, a)
        r = B.scale(x, s, out=out, fake_quant=fq)
        for f in followers:
            r = f(r)
        return r
    return run
