"""Chains of plan steps that run as one compiled kernel: layers that exporters write
as several nodes.

Rules (`fuse`, called once by `executor.compile_module` when it fuses):

1. GELU, as PyTorch exports it: `y = (x * (erf(x / c) + 1)) * 0.5` with c the
   float32 sqrt(2) (the Add and the Muls in either operand order) -> one step of the
   compiled GELU (`_norm.gelu`: the same float32 steps, so the same bits as the
   chain with the compiled erf). With a per-tensor float32 fake-quant of y (its only
   user), the step applies it to each chunk it computes (the fake-quant step's bits).
2. LayerNorm, decomposed (opset < 17, TorchScript exports): `m = mean(x)`,
   `d = x - m`, `v = mean(d ** 2)` (or `d * d`), `y = d / sqrt(v + eps)`, then
   optionally `* gamma` and `+ beta` (constants), both means over the same trailing
   dims with keepdims -> one step of the compiled layer norm (`_norm.layer_norm`:
   the moments summed in double, then the same float32 steps; within an ulp or two
   of the chain). A per-tensor fake-quant of y joins the step as in rule 1.
3. Dense bias: `dense(x, w) + b` (either order) with b a float32 constant of the
   dense's N values -> the dense with bias b (the compiled dense adds it as sgemm's
   C operand: one rounding of the product plus b, as the Add).
4. Residual add before a quant: `ascend.quant(relu?(a + b))` with a and b float32
   tensors of the result's shape (an int8 deploy model's residual block) -> one pass
   of `_half.ascend_add_quant` writing the int8 values (the same numbers as the
   three steps, without the float32 sum in memory). An add of an int8 conv's
   dequantized result is left to that conv's output stage (qcc.runtime.fusion),
   which takes the add, the relu and the quant in the conv's own pass.
5. Softmax then fake-quant: `fake_quant(softmax(x))` with a per-tensor float32
   fake-quant -> one step of the compiled softmax applying the fake-quant as it
   writes its results (`_norm.softmax(..., fake_quant=)`: the same float32 steps as
   the fake-quant's own kernel, so the same bits; an attention's probabilities in a
   fake-quantized transformer).
6. Copy then fake-quant: `fake_quant(reshape*(mul?(reshape*(transpose(x)))))`, or
   `fake_quant(reshape*(mul(x, c)))`, with c a float32 scalar constant (either
   operand), the reshapes optional and the fake-quant per tensor, of a static shape
   -> one step of `_eltwise.transpose` writing the fake-quantized (and multiplied)
   values of x's elements in the transposed order (numpy's float32 product, then the
   fake-quant kernel's steps: the same bits; a reshape moves no element, and each
   element is computed alone). An attention's query, key and context in a
   fake-quantized transformer: a copy or multiply, then a fake-quant pass, each a
   step, became one pass.

7. Dense epilogue: a float32 dense (with its bias) whose result only a plain add of
   another float32 tensor of its shape reads (a transformer's residual), or only a
   GELU step of rule 1 (with its fake-quant) -> the dense with that epilogue, run on
   each block of outputs as the dense kernel finishes it, while it is in cache
   (`_conv.Dense`'s residual, gelu and fake_quant: the add's, GELU's and
   fake-quant's bits). Run after the rules above and the executor's in-place fusion
   (`dense_epilogues`), on their steps: the fused step takes the place of the add or
   GELU step and gives its result; it keeps the dense's op and reads the dense's
   operands, then the residual.

A chain fuses only when every value inside it has no user outside it and is not an
output of the plan, and its ops are float32. The fused step takes the place of the
chain's last op and gives its result. Rules 1 and 2 keep that op (for names and
shapes) and read the chain's input once per operand of it (so that its result
shape is inferred from them, and no later fusion takes it for an op of a constant);
rule 3 is the dense's step with the bias; rule 4 keeps the quant op and reads a and
b; rule 5 keeps the softmax op (with the fake-quant's result) and reads x; rule 6
keeps the fake-quant op and reads x (a step the executor runs as it is: its `opaque`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
from xdsl.ir import Operation, SSAValue

from qcc.dialects import ascend, qnn
from qcc.dialects.base import get_bool, get_int, get_ints
from qcc.runtime import half
from qcc.runtime import int8 as _int8
from qcc.runtime import ops as K
from qcc.runtime.ascend_ops import quant_params

SQRT2 = np.float32(np.sqrt(2))


def fuse(steps: Sequence[Any], outputs: set[int], constants: dict[int, np.ndarray],
         slot_of: dict[SSAValue, int]) -> list[Any]:
    """`steps` (the executor's `Step`s) with every chain of the rules above replaced
    by one step."""
    if not K.C.compiled:
        return list(steps)
    ctx = _Context(steps, outputs, constants, slot_of)
    replaced: dict[int, Any] = {}   # index of a chain's last step -> the fused step
    dropped: set[int] = set()
    for i, step in enumerate(steps):
        if i in dropped:
            continue
        for rule in (_gelu, _layer_norm, _dense_bias, _add_quant, _softmax_fake_quant,
                     _copy_fake_quant):
            found = rule(ctx, step)
            if found is None:
                continue
            chain, op, args, fn = found[:4]
            takes_out = found[4] if len(found) > 4 else True   # a float32 result
            idx = [ctx.index[o] for o in chain]
            if any(j in dropped or j in replaced for j in idx):
                continue
            replaced[max(idx)] = replace(steps[max(idx)], op=op, fn=fn,
                                         args=tuple(ctx.slot_of[v] for v in args),
                                         fresh=True, takes_out=takes_out, opaque=True)
            dropped.update(j for j in idx if j != max(idx))
            break
    return [replaced.get(i, s) for i, s in enumerate(steps) if i not in dropped]


def _reading(kernel: K.Kernel, params: tuple[np.ndarray | None, ...]
             ) -> Callable[..., object]:
    """The fused step's fn: `kernel.fn(x, *params)` (x passed once per operand of
    the chain's last op)."""
    fn = kernel.fn

    def run(x, *_, out=None):
        return fn(x, *params, out=out)

    return run


class _Context:
    def __init__(self, steps: Sequence[Any], outputs: set[int],
                 constants: dict[int, np.ndarray], slot_of: dict[SSAValue, int]):
        self.index = {s.op: i for i, s in enumerate(steps)}
        self.steps = steps
        self.outputs = outputs
        self.constants = constants
        self.slot_of = slot_of

    def const(self, v: SSAValue) -> np.ndarray | None:
        s = self.slot_of.get(v)
        return None if s is None else self.constants.get(s)

    def scalar(self, v: SSAValue) -> float | None:
        c = self.const(v)
        if c is None or c.size != 1 or c.dtype != np.float32:
            return None
        return float(c.reshape(()))

    def sole_user(self, v: SSAValue) -> Operation | None:
        """The one op using `v` (a step of the plan), when `v` is not an output."""
        if self.slot_of.get(v) in self.outputs:
            return None
        users = {u.operation for u in v.uses}
        if len(users) != 1 or sum(1 for _ in v.uses) != 1:
            return None
        (user,) = users
        return user if user in self.index else None



def _other(op: Operation, v: SSAValue) -> SSAValue | None:
    """The operand of the binary `op` that is not `v` (None when both are `v`)."""
    a, b = op.operands
    if a is v and b is not v:
        return b
    if b is v and a is not v:
        return a
    return None


def _f32(*ops: Operation) -> bool:
    return all(K.is_f32(op.results[0]) for op in ops)


def _elementwise(ctx: _Context, chain: Sequence[Operation], x: SSAValue,
                 kernel: Callable[..., K.Kernel], params: tuple[np.ndarray | None, ...]):
    """A chain keeping x's shape as the step of its last op, reading x once per operand;
    `kernel(fake_quant)` its kernel, given the per-tensor fake-quant of its result when
    one is that result's only user (which then joins the chain: the step gives its
    result)."""
    last = chain[-1]
    fq = ctx.sole_user(last.results[0])
    fake_quant = None if fq is None else K.per_tensor_fake_quant(fq)
    if fake_quant is not None and _shape(fq) == _shape(last):  # type: ignore[arg-type]
        chain = [*chain, fq]  # type: ignore[list-item]
    else:
        fake_quant = None
    run = _reading(kernel(fake_quant), params)
    run.chain_fake_quant = fake_quant  # type: ignore[attr-defined]
    return chain, last, (x,) * len(last.operands), run


def _gelu(ctx: _Context, step: Any):
    """Rule 1, anchored at the Div."""
    div = step.op
    if not isinstance(div, qnn.DivOp) or ctx.scalar(div.operands[1]) != float(SQRT2):
        return None
    x = div.operands[0]
    if not K.is_f32(x):
        return None
    erf = ctx.sole_user(div.results[0])
    if not isinstance(erf, qnn.ErfOp):
        return None
    add = ctx.sole_user(erf.results[0])
    if not isinstance(add, qnn.AddOp):
        return None
    one = _other(add, erf.results[0])
    if one is None or ctx.scalar(one) != 1.0:
        return None
    mul = ctx.sole_user(add.results[0])
    if not isinstance(mul, qnn.MulOp) or _other(mul, add.results[0]) is not x:
        return None
    half_mul = ctx.sole_user(mul.results[0])
    if not isinstance(half_mul, qnn.MulOp):
        return None
    half = _other(half_mul, mul.results[0])
    if half is None or ctx.scalar(half) != 0.5:
        return None
    chain = [div, erf, add, mul, half_mul]
    if not _f32(*chain) or _shape(half_mul) != _shape(div):
        return None
    found = _elementwise(ctx, chain, x, K.gelu_kernel, ())
    found[3].gelu = True
    return found


def _shape(op: Operation) -> tuple[int, ...]:
    return tuple(op.results[0].type.get_shape())  # type: ignore[attr-defined]


def _trailing_mean(op: Operation | None, x: SSAValue) -> int | None:
    """The first reduced dim when `op` is a keepdims mean of `x` over its trailing dims."""
    if not isinstance(op, qnn.ReduceMeanOp) or op.operands[0] is not x \
            or not get_bool(op.properties.get("keepdims"), True):
        return None
    rank = len(x.type.get_shape())  # type: ignore[attr-defined]
    axes = sorted(a % rank for a in get_ints(op.properties.get("axes")) or ())
    if not axes or axes != list(range(axes[0], rank)):
        return None
    return axes[0]


def _layer_norm(ctx: _Context, step: Any):
    """Rule 2, anchored at the first ReduceMean."""
    mean = step.op
    if not isinstance(mean, qnn.ReduceMeanOp) or len(mean.operands) != 1:
        return None
    x = mean.operands[0]
    axis = _trailing_mean(mean, x)
    if axis is None or not K.is_f32(x):
        return None
    sub = ctx.sole_user(mean.results[0])
    if not isinstance(sub, qnn.SubOp) or sub.operands[0] is not x or sub.operands[1] is not \
            mean.results[0]:
        return None
    d = sub.results[0]
    users = {u.operation for u in d.uses}  # the square (Pow, or Mul using d twice), the Div
    if len(users) != 2 or ctx.slot_of.get(d) in ctx.outputs:
        return None
    square = next((u for u in users if _squares(ctx, u, d)), None)
    div = next((u for u in users if isinstance(u, qnn.DivOp) and u.operands[0] is d), None)
    if square is None or div is None or square not in ctx.index or div not in ctx.index:
        return None
    var = ctx.sole_user(square.results[0])
    if var is None or _trailing_mean(var, square.results[0]) != axis:
        return None
    add = ctx.sole_user(var.results[0])
    if not isinstance(add, qnn.AddOp):
        return None
    eps_value = _other(add, var.results[0])
    eps = None if eps_value is None else ctx.scalar(eps_value)
    sqrt = ctx.sole_user(add.results[0])
    if eps is None or not isinstance(sqrt, qnn.SqrtOp) or ctx.sole_user(sqrt.results[0]) \
            is not div or div.operands[1] is not sqrt.results[0]:
        return None
    chain: list[Operation] = [mean, sub, square, var, add, sqrt, div]
    norm_shape = tuple(x.type.get_shape())[axis:]  # type: ignore[attr-defined]
    gamma = beta = None
    mul = ctx.sole_user(div.results[0])
    if isinstance(mul, qnn.MulOp) and (g := _other(mul, div.results[0])) is not None:
        gamma = _affine(ctx.const(g), norm_shape)
    if gamma is not None:
        chain.append(mul)  # type: ignore[arg-type]
        plus = ctx.sole_user(mul.results[0])  # type: ignore[union-attr]
        if isinstance(plus, qnn.AddOp) and (b := _other(plus, mul.results[0])) is not None:  # type: ignore[union-attr]
            beta = _affine(ctx.const(b), norm_shape)
            if beta is not None:
                chain.append(plus)
    if not _f32(*chain) or _shape(chain[-1]) != tuple(x.type.get_shape()):  # type: ignore[attr-defined]
        return None
    if gamma is None:
        gamma = np.ones(norm_shape, np.float32)
    return _elementwise(ctx, chain, x, partial(K.layer_norm_kernel, axis, eps), (gamma, beta))


def _dense_bias(ctx: _Context, step: Any):
    """Rule 3, anchored at the dense."""
    dense = step.op
    if not isinstance(dense, qnn.DenseOp) or len(dense.operands) != 2 or not step.takes_out \
            or K.operand_kind(dense) != "float" or not _f32(dense) \
            or not all(K.is_f32(v) for v in dense.operands):
        return None
    add = ctx.sole_user(dense.results[0])
    if not isinstance(add, qnn.AddOp):
        return None
    other = _other(add, dense.results[0])
    c = None if other is None else ctx.const(other)
    n = _shape(dense)[-1]
    if c is None or c.dtype != np.float32 or c.size != n or c.ndim > len(_shape(dense)) \
            or (c.ndim and c.shape[-1] != n) or not _f32(add) or _shape(add) != _shape(dense):
        return None
    bias = np.ascontiguousarray(c.reshape(-1))
    run = step.fn

    def with_bias(x, w, out=None, **epilogue):
        return run(x, w, bias, out=out, **epilogue)

    with_bias.dense_epilogue = getattr(run, "dense_epilogue", False)  # type: ignore[attr-defined]
    return [dense, add], dense, tuple(dense.operands), with_bias


def _add_quant(ctx: _Context, step: Any):
    """Rule 4, anchored at the add."""
    add = step.op
    kernel = getattr(half._C, "ascend_add_quant", None)
    if kernel is None or not isinstance(add, qnn.AddOp) or len(add.operands) != 2 \
            or not all(K.is_f32(v) for v in (*add.operands, add.results[0])):
        return None
    shape = _shape(add)
    if any(d < 0 for d in shape) or any(
            ctx.const(v) is not None or tuple(v.type.get_shape()) != shape  # type: ignore[attr-defined]
            or _int8_dequantized(ctx, v) for v in add.operands):
        return None
    chain: list[Operation] = [add]
    user = ctx.sole_user(add.results[0])
    relu = isinstance(user, qnn.ReluOp) and K.is_f32(user.results[0])
    if relu:
        chain.append(user)  # type: ignore[arg-type]
        user = ctx.sole_user(user.results[0])  # type: ignore[union-attr]
    if not isinstance(user, ascend.QuantOp) or not K.is_f32(user.operands[0]):
        return None
    try:
        scale, offset, sqrt_mode, mode = quant_params(user)
    except ValueError:
        return None
    chain.append(user)

    def run(a, b, out=None):
        return kernel(a, b, relu, scale, offset, sqrt_mode, mode)

    return chain, user, tuple(add.operands), run, False


def _int8_dequantized(ctx: _Context, v: SSAValue) -> bool:
    """Whether `v` is the ascend.dequant (then maybe a cast) of a compiled int8 conv's
    result, each value's only use: the conv's output stage takes the add after it,
    its relu and quant (qcc.runtime.fusion), which rule 4 leaves to it."""
    op = v.owner
    if isinstance(op, qnn.CastOp) and v.has_one_use():
        v, op = op.operands[0], op.operands[0].owner
    if not (isinstance(op, ascend.DequantOp) and v.has_one_use()
            and op.operands[0].has_one_use()):
        return False
    conv = op.operands[0].owner
    return isinstance(conv, qnn.ConvOp) and conv in ctx.index and \
        isinstance(ctx.steps[ctx.index[conv]].fn, _int8._Packed)


def _softmax_fake_quant(ctx: _Context, step: Any):
    """Rule 5, anchored at the softmax."""
    softmax = step.op
    if not isinstance(softmax, qnn.SoftmaxOp) or not step.takes_out or not _f32(softmax) \
            or not K.is_f32(softmax.operands[0]):
        return None
    fq = ctx.sole_user(softmax.results[0])
    params = None if fq is None else K.per_tensor_fake_quant(fq)
    if params is None or _shape(fq) != _shape(softmax):  # type: ignore[arg-type]
        return None
    axis, kernel = get_int(softmax.properties.get("axis"), -1), K.C.softmax

    def run(x, out=None):
        return kernel(x, axis, out=out, fake_quant=params)

    # the step keeps the softmax op (a step of the fake-quant op reading x would pass
    # for a fake-quant of x, which the executor may run in place after x's producer)
    return [softmax, fq], softmax, (softmax.operands[0],), run


def _copy_fake_quant(ctx: _Context, step: Any):
    """Rule 6, anchored at the transpose or at the multiply."""
    first = step.op
    copy = K.ELTWISE.transpose if K.ELTWISE is not None else None
    if copy is None or not _f32(first) or not K.is_f32(first.operands[0]):
        return None
    perm, mul, x = None, None, first.operands[0]
    if isinstance(first, qnn.TransposeOp):
        perm = tuple(get_ints(first.properties.get("perm")))
    elif isinstance(first, qnn.MulOp):
        mul, x = _scalar_factor(ctx, first)
        if mul is None:
            return None
    else:
        return None
    chain: list[Operation] = [first]
    op = ctx.sole_user(first.results[0])
    while isinstance(op, qnn.ReshapeOp | qnn.MulOp) and _f32(op):
        if isinstance(op, qnn.MulOp):
            if mul is not None:
                return None
            mul, _ = _scalar_factor(ctx, op)
            if mul is None:
                return None
        chain.append(op)
        op = ctx.sole_user(op.results[0])
    params = None if op is None else K.per_tensor_fake_quant(op)
    if params is None or any(d < 0 for d in (*_shape(op), *x.type.get_shape())):  # type: ignore
        return None
    chain.append(op)  # type: ignore[arg-type]
    shape = _shape(op)  # type: ignore[arg-type]

    def run(x, out=None):
        if out is None:
            out = np.empty(shape, np.float32)
        view = out.reshape(x.shape if perm is None else tuple(x.shape[p] for p in perm))
        copy(x, perm, out=view, mul=mul, fake_quant=params)
        return out

    return chain, op, (x,), run


def _scalar_factor(ctx: _Context, mul: Operation) -> tuple[float | None, Any]:
    """(c, x) when `mul` is x * c or c * x with c a float32 scalar constant (and the
    product of x's shape)."""
    a, b = mul.operands
    for c, x in ((b, a), (a, b)):
        value = ctx.scalar(c)
        if value is not None and ctx.const(x) is None and K.is_f32(x) \
                and tuple(x.type.get_shape()) == _shape(mul):  # type: ignore[attr-defined]
            return value, x
    return None, None


def _squares(ctx: _Context, op: Operation, d: SSAValue) -> bool:
    """Whether `op` is d ** 2 or d * d."""
    if isinstance(op, qnn.PowOp):
        return op.operands[0] is d and ctx.scalar(op.operands[1]) == 2.0
    return isinstance(op, qnn.MulOp) and op.operands[0] is d and op.operands[1] is d


def _affine(c: np.ndarray | None, norm_shape: tuple[int, ...]) -> np.ndarray | None:
    """A float32 constant broadcast to the normalized dims, when it fits in them."""
    if c is None or c.dtype != np.float32 or c.ndim > len(norm_shape):
        return None
    try:
        return np.ascontiguousarray(np.broadcast_to(c, norm_shape))
    except ValueError:
        return None


def dense_epilogues(steps: Sequence[Any], outputs: set[int]) -> list[Any]:
    """Rule 7: each dense step (its fn `dense_epilogue`) whose result one step alone
    reads, a plain add (`plain_add`, no followers) or a fused GELU (`gelu`), merged
    with that step into one step at its place."""
    if not K.C.compiled:
        return list(steps)
    readers: dict[int, list[int]] = {}
    for i, s in enumerate(steps):
        for a in s.args:
            readers.setdefault(a, []).append(i)
    merged: dict[int, Any] = {}
    dropped: set[int] = set()
    for i, s in enumerate(steps):
        if not getattr(s.fn, "dense_epilogue", False) or len(s.results) != 1 \
                or getattr(s.fn, "followers", None) or s.results[0] in outputs \
                or s.blocked or not K.is_f32(s.op.results[0]):
            continue
        r = s.results[0]
        users = readers.get(r, [])
        if len(set(users)) != 1 or users[0] in dropped or users[0] in merged:
            continue
        j = users[0]
        t = steps[j]
        fn = _dense_then(s, t, r)
        if fn is None:
            continue
        extra = tuple(a for a in t.args if a != r)
        # the dense's op: its result's shape is inferred from the dense's operands,
        # the first args (a residual is an arg more, as a conv's)
        merged[j] = replace(t, op=s.op, fn=fn, args=(*s.args, *extra), fresh=True,
                            takes_out=True, opaque=True)
        dropped.add(i)
    return [merged.get(i, s) for i, s in enumerate(steps) if i not in dropped]


def _dense_then(dense: Any, step: Any, r: int) -> Callable[..., Any] | None:
    """The fn of `dense` with `step` (which reads its result r) as its epilogue, or
    None when `step` is none of rule 7's."""
    run, n = dense.fn, len(dense.args)
    t = dense.op.results[0].type
    if getattr(step.fn, "plain_add", False) and not getattr(step.fn, "followers", ()) \
            and len(step.args) == 2 and step.args.count(r) == 1 and len(step.results) == 1 \
            and all(v.type == t for v in (*step.op.operands, step.op.results[0])):
        def with_residual(*args, out=None):
            res = args[n]
            if res.shape[:-1] != args[0].shape[:-1]:   # symbolic dims that broadcast
                return np.add(run(*args[:n]), res, out=out)
            return run(*args[:n], out=out, residual=res)
        return with_residual
    if getattr(step.fn, "gelu", False) and all(a == r for a in step.args) \
            and len(step.results) == 1:
        fq = step.fn.chain_fake_quant

        def with_gelu(*args, out=None):
            return run(*args[:n], out=out, gelu=True, fake_quant=fq)
        return with_gelu
    return None
