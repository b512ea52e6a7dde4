"""Turn a qnn module into a flat plan of kernel calls and run it on numpy arrays.

The plan is built once per module: every SSA value gets a slot, constants are
materialized once (quantized and fake-quantized weights folded into constants), and
every op's kernel is built once from the op's types and attributes, with its
constant weights packed (see `qcc.runtime.ops`): the plan owns what it packs. Each
step knows which slots die after it; a producer whose only user is a fake-quant,
relu or clip runs them in place on its fresh result, in the same step.

A module with symbolic dims (`tensor<?x3x8x8xf32>`) runs at any size of them: the
first run at new input shapes specializes the plan to them (every op's result
shape inferred from the concrete input shapes, a mismatch reported with the op's
name before any kernel runs). The specialization, cached on the plan per input
shapes, also holds the output buffers of the steps whose kernels write into one
(conv, dense, pooling, ...): allocated once, reused by later steps once every value
that may view them is dead, and by later runs. A run that keeps intermediate values
allocates fresh arrays instead.

`QCC_PROFILE=1` times every step and prints the ops that took longest after each
run (to stderr).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.ir import Operation, SSAValue

from qcc import ir
from qcc.dialects import qnn, quant
from qcc.dialects.base import DYN, QnnOp, ShapeError, fmt_shape, like, shapes_match
from qcc.errors import QccError

# The integer, Ascend and shape kernels register in the one kernel table (ops.TABLE) when
# their modules load.
from qcc.runtime import ascend_ops as _ascend_ops  # noqa: F401
from qcc.runtime import blocked, fusion, patterns
from qcc.runtime import int8 as _int8  # noqa: F401  (registers its kernels)
from qcc.runtime import ops as K
from qcc.runtime import shape_ops as _shape_ops  # noqa: F401
from qcc.runtime.buffers import plan_buffers
from qcc.runtime.threads import blas_one_thread


class RuntimeError_(QccError):
    """A user-facing error about running a module (bad inputs, unsupported op)."""


@dataclass
class Step:
    fn: Callable[..., object]
    """The kernel: fn(*arrays) (and fn(*arrays, out=buffer) when `takes_out`)."""
    op: Operation
    args: tuple[int, ...]
    results: tuple[int, ...]
    dead: tuple[int, ...] = ()
    fresh: bool = False
    takes_out: bool = False
    blocked: bool = False
    """Its result is a blocked array (qcc.runtime.blocked), not the IR's NCHW shape."""
    layout_copy: bool = False
    """It copies a blocked array into NCHW (its op is the producer's)."""
    tee: bool = False
    """A blocked conv that also writes the fake-quant of its result, its second result
    (qcc.runtime.blocked): its buffer holds both, [2, *the result's blocked shape]."""
    opaque: bool = False
    """A chain of ops that `qcc.runtime.patterns` fused: `fn` is not `op`'s kernel, so
    the step is no follower of the one before it (it may be a producer)."""
    flat: bool = False
    """An observer reading a blocked array as it lies (compile_module's
    `observers_flat`): a hook on it sees the values in the blocked order."""


@dataclass
class Shapes:
    """A plan specialized to concrete input shapes."""

    sizes: dict[int, tuple[int, ...]]
    """The shape of every slot."""
    buffers: list[np.ndarray | None]
    """Per step, the preallocated output buffer it writes into (None: it allocates)."""


@dataclass
class Plan:
    input_names: list[str]
    input_types: list[TensorType]
    output_names: list[str]
    input_slots: list[int]
    output_slots: list[int]
    constants: dict[int, np.ndarray]
    steps: list[Step]
    slot_of: dict[SSAValue, int]
    n_slots: int
    names: dict[int, str] = field(default_factory=dict)
    specialized: dict[tuple[tuple[int, ...], ...], Shapes] = field(default_factory=dict)
    """Concrete input shapes -> the plan specialized to them."""
    unfused: list[Step] = field(default_factory=list)
    """The steps before fusion (their own copies), run instead of `steps` when `keep`
    asks for a value that a fused step no longer produces."""
    fused_away: frozenset[int] = frozenset()
    """The slots that only `unfused` computes."""
    blocked_slots: frozenset[int] = frozenset()
    """The slots `steps` keeps in the blocked layout (`unfused` keeps none)."""
    buffers_in_use: threading.Lock = field(default_factory=threading.Lock, repr=False)
    """Held by the run writing into the shared buffers (a concurrent run of the same
    plan allocates its own arrays)."""
    expected: list[tuple[str, tuple[int, ...], np.dtype]] = field(default_factory=list)
    """Per input: its name, shape (DYN for a symbolic dim) and numpy dtype, read from
    the IR once."""

    slot_template: list[np.ndarray | None] = field(default_factory=list, repr=False)
    """A run's slots before it starts: the constants in place, None elsewhere."""

    def __post_init__(self) -> None:
        self.slot_template = [None] * self.n_slots
        for s, a in self.constants.items():
            self.slot_template[s] = a
        self.expected = [(n, tuple(t.get_shape()), ir.numpy_dtype(t.element_type))
                         for n, t in zip(self.input_names, self.input_types, strict=True)]

    @property
    def dynamic(self) -> bool:
        return any(not t.has_static_shape() for t in self.input_types)


def compile_module(module: ModuleOp, fuse: bool = True, blocked_layout: bool = True,
                   observers_aside: bool = False, observers_flat: bool = False) -> Plan:
    """Build the execution plan of `@main`; lists every unsupported op at once.
    With `fuse`, a `quant.fake_quant`, `qnn.relu` or `qnn.clip` runs inside the step
    of the op producing its input (in place on that fresh buffer) when it is that
    value's only user; with `blocked_layout` too, chains of convs keep their values
    in the blocked layout where the CPU allows (qcc.runtime.blocked). With
    `observers_aside`, the users of a `quant.observe` read its input instead of its
    result (the same value: an observer only looks at it), so that the blocked
    layout runs through calibration, each observer reading an NCHW copy (with
    `observers_flat`, hooks that look only at the values: the blocked array itself
    where it holds the same values, qcc.runtime.blocked.apply)."""
    fn = ir.main_func(module)
    in_names, out_names = ir.io_names(fn)
    slot_of: dict[SSAValue, int] = {}

    def slot(v: SSAValue) -> int:
        if v not in slot_of:
            slot_of[v] = len(slot_of)
        return slot_of[v]

    block = fn.body.block
    input_slots = [slot(a) for a in block.args]
    input_types: list[TensorType] = []
    for a in block.args:
        assert isinstance(a.type, TensorType)  # @main takes tensors
        input_types.append(a.type)
    constants: dict[int, np.ndarray] = {}
    steps: list[Step] = []
    unsupported: dict[str, int] = {}
    outputs: list[int] = []
    for op in block.ops:
        if isinstance(op, func.ReturnOp):
            outputs = [slot(v) for v in op.operands]
            continue
        if isinstance(op, qnn.ConstantOp):
            constants[slot(op.results[0])] = ir.array_of(op)
            continue
        consts = [constants.get(slot_of[v]) if v in slot_of else None for v in op.operands]
        try:
            kernel = K.build(op, consts)
        except (ValueError, OverflowError) as e:
            raise RuntimeError_(f"op '{_value_name(op.results[0]) or op.name}' ({op.name}) "
                                f"cannot run: {e}") from None
        if kernel is None:
            unsupported[op.name] = unsupported.get(op.name, 0) + 1
            continue
        if K.fold_at_compile_time(op) and all(c is not None for c in consts):
            # a quantized or fake-quantized weight: computed once, not on every run
            value = np.asarray(kernel.fn(*consts))
            value.flags.writeable = False
            constants[slot(op.results[0])] = value
            continue
        steps.append(Step(kernel.fn, op, tuple(slot(v) for v in op.operands),
                          tuple(slot(r) for r in op.results), fresh=kernel.fresh,
                          takes_out=kernel.takes_out))
    if unsupported:
        listed = ", ".join(f"{k} (x{n})" for k, n in sorted(unsupported.items()))
        raise RuntimeError_(f"the runtime has no kernel for: {listed}")
    unfused: list[Step] = []
    blocked_slots: frozenset[int] = frozenset()
    n_slots = len(slot_of)
    if fuse:
        unfused = [replace(s) for s in steps]
        steps = patterns.fuse(steps, set(outputs), constants, slot_of)  # GELU, LayerNorm
        steps = fusion.fuse_in_place(steps, set(outputs), constants)
        steps = patterns.dense_epilogues(steps, set(outputs))
        if blocked_layout:
            steps, blocked_slots, n_slots = blocked.apply(steps, set(outputs), constants,
                                                          len(slot_of), observers_aside,
                                                          observers_flat)
        _mark_deaths(unfused, set(outputs) | set(constants) | set(input_slots))
    _mark_deaths(steps, set(outputs) | set(constants) | set(input_slots))
    names = {s: _value_name(v) for v, s in slot_of.items()}
    produced = {r for s in steps for r in s.results}
    fused_away = frozenset(r for s in unfused for r in s.results if r not in produced)
    return Plan(in_names, input_types, out_names, input_slots, outputs,
                constants, steps, slot_of, n_slots, names, unfused=unfused,
                fused_away=fused_away, blocked_slots=blocked_slots)


def _mark_deaths(steps: list[Step], keep: set[int]) -> None:
    last_use: dict[int, int] = {}
    for i, step in enumerate(steps):
        for a in step.args:
            last_use[a] = i
        for r in step.results:
            last_use.setdefault(r, i)
    by_step: dict[int, list[int]] = {}
    for s, i in last_use.items():
        if s not in keep:
            by_step.setdefault(i, []).append(s)
    for i, step in enumerate(steps):
        step.dead = tuple(by_step.get(i, ()))


def _value_name(v: SSAValue) -> str:
    owner = v.owner
    if isinstance(owner, Operation):
        name = owner.attributes.get("name")
        if name is not None:
            idx = v.index if len(owner.results) > 1 else None  # type: ignore[attr-defined]
            return name.data + (f":{idx}" if idx is not None else "")  # type: ignore[attr-defined]
    return v.name_hint or ""


def check_inputs(plan: Plan, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Inputs in plan order; wrong names, shapes or dtypes listed all at once."""
    arrays = []
    for name, want_shape, want_dtype in plan.expected:  # the usual case, quickly
        a = inputs.get(name)
        if not (type(a) is np.ndarray and a.dtype == want_dtype and a.flags.c_contiguous
                and shapes_match(a.shape, want_shape)):
            break
        arrays.append(a)
    else:
        if len(inputs) == len(arrays):
            return arrays
    problems = []
    missing = [n for n in plan.input_names if n not in inputs]
    extra = [n for n in inputs if n not in plan.input_names]
    if missing or extra:
        problems.append(f"expected inputs {plan.input_names}, given {sorted(inputs)}")
    arrays = []
    for name, want_shape, want_dtype in plan.expected:
        if name not in inputs:
            continue
        a = np.asarray(inputs[name])
        if not shapes_match(a.shape, want_shape):
            problems.append(f"input '{name}': expected shape {fmt_shape(want_shape)}, "
                            f"given {a.shape}")
        elif a.dtype != want_dtype:
            if np.can_cast(a.dtype, want_dtype, "same_kind"):
                a = a.astype(want_dtype)
            else:
                problems.append(f"input '{name}': expected dtype {want_dtype}, given {a.dtype}")
        arrays.append(np.ascontiguousarray(a))
    if problems:
        raise RuntimeError_("bad inputs: " + "; ".join(problems))
    return arrays


PROFILE_ENV = "QCC_PROFILE"


def execute(plan: Plan, inputs: Mapping[str, np.ndarray],
            keep: Iterable[SSAValue] = (),
            overrides: Mapping[Operation, Callable[..., object]] | None = None,
            ) -> tuple[dict[str, np.ndarray], dict[SSAValue, np.ndarray]]:
    """Run the plan; also return the values in `keep` (a value that a fused step
    computes only inside its kernel makes the run take the unfused steps).
    `overrides` replaces the kernel of chosen ops, called as `fn(op, *arrays)`
    (calibration hooks its observers in this way)."""
    arrays = check_inputs(plan, inputs)
    shapes = specialize(plan, [a.shape for a in arrays])
    slots = plan.slot_template.copy()
    for s, a in zip(plan.input_slots, arrays, strict=True):
        slots[s] = a
    keep_slots = {plan.slot_of[v]: v for v in keep}
    kept: dict[SSAValue, np.ndarray] = {
        v: value for s, v in keep_slots.items() if (value := slots[s]) is not None}  # inputs
    # kept values must not be overwritten later in the run: no shared buffers then
    steps = plan.unfused if _needs_unfused(plan, keep_slots, overrides) else plan.steps
    # the shared buffers are `plan.steps`' (a run of the unfused steps allocates)
    owner = not keep_slots and steps is plan.steps and \
        plan.buffers_in_use.acquire(blocking=False)
    try:
        return _run(plan, steps, slots, shapes.buffers if owner else [None] * len(steps),
                    keep_slots, kept, overrides or {})
    finally:
        if owner:
            plan.buffers_in_use.release()


def _needs_unfused(plan: Plan, keep_slots: Mapping[int, SSAValue],
                   overrides: Mapping[Operation, Callable[..., object]] | None) -> bool:
    """Whether a run keeping `keep_slots` and hooking `overrides` takes the unfused
    steps: a kept value that a fused step computes only inside its kernel, or a kept
    or hooked value held in the blocked layout."""
    if plan.fused_away.intersection(keep_slots):
        return True
    if not plan.blocked_slots:
        return False
    if plan.blocked_slots.intersection(keep_slots):
        return True
    return overrides is not None and any(
        step.op in overrides and not step.flat
        and plan.blocked_slots.intersection((*step.args, *step.results))
        for step in plan.steps)


def _run(plan: Plan, steps: list[Step], slots: list[np.ndarray | None],
         buffers: list[np.ndarray | None],
         keep_slots: dict[int, SSAValue], kept: dict[SSAValue, np.ndarray],
         overrides: Mapping[Operation, Callable[..., object]],
         ) -> tuple[dict[str, np.ndarray], dict[SSAValue, np.ndarray]]:
    times = [0.0] * len(steps) if os.environ.get(PROFILE_ENV) == "1" else None
    if times is None and not overrides and not keep_slots:
        with blas_one_thread():
            _run_plain(steps, slots, buffers)
        outputs = {n: slots[s] for n, s in zip(plan.output_names, plan.output_slots,
                                                strict=True)}
        return outputs, kept  # type: ignore[return-value]
    with blas_one_thread():
        for i, step in enumerate(steps):
            args = [slots[a] for a in step.args]
            if times is not None:
                t0 = time.perf_counter()
            hook = overrides.get(step.op) if overrides else None
            out: Any  # one array per result
            if hook is not None:
                out = hook(step.op, *args)
            elif (buf := buffers[i]) is not None:
                out = step.fn(*args, out=buf)
            else:
                out = step.fn(*args)
            if times is not None:
                times[i] = time.perf_counter() - t0
            if len(step.results) == 1:
                slots[step.results[0]] = out
            else:
                for r, o in zip(step.results, out, strict=True):
                    slots[r] = o
            if keep_slots:
                for r in step.results:
                    if r in keep_slots:
                        kept[keep_slots[r]] = slots[r]  # type: ignore[assignment]
            for d in step.dead:
                slots[d] = None
    if times is not None:
        _print_profile(steps, times)
    outputs = {n: slots[s] for n, s in zip(plan.output_names, plan.output_slots, strict=True)}
    return outputs, kept  # type: ignore[return-value]


def _run_plain(steps: list[Step], slots: list[np.ndarray | None],
               buffers: list[np.ndarray | None]) -> None:
    """`_run`'s loop without hooks, kept values or timing: as little Python per step
    as it takes."""
    for step, buf in zip(steps, buffers, strict=True):
        args = [slots[a] for a in step.args]
        out: Any = step.fn(*args) if buf is None else step.fn(*args, out=buf)
        results = step.results
        if len(results) == 1:
            slots[results[0]] = out
        else:
            for r, o in zip(results, out, strict=True):
                slots[r] = o
        for d in step.dead:
            slots[d] = None


def _print_profile(steps: list[Step], times: list[float], top: int = 12) -> None:
    """Per op kind and per step, the time of this run (QCC_PROFILE=1)."""
    total = sum(times) or 1.0
    by_kind: dict[str, list[float]] = {}
    for step, t in zip(steps, times, strict=True):
        entry = by_kind.setdefault(step.op.name, [0.0, 0])
        entry[0] += t
        entry[1] += 1
    lines = [f"qcc profile: {len(steps)} steps, {total * 1e3:.2f} ms"]
    for name, (t, n) in sorted(by_kind.items(), key=lambda kv: -kv[1][0])[:top]:
        lines.append(f"  {t * 1e3:9.2f} ms {100 * t / total:5.1f}%  {name} (x{int(n)})")
    lines.append("  slowest steps:")
    order = sorted(range(len(times)), key=lambda i: -times[i])[:top]
    for i in order:
        step = steps[i]
        name = _value_name(step.op.results[0]) if step.op.results else ""
        lines.append(f"  {times[i] * 1e3:9.2f} ms  {step.op.name} {name}")
    print("\n".join(lines), file=sys.stderr)


def specialize(plan: Plan, shapes: Sequence[tuple[int, ...]]) -> Shapes:
    """The plan at input shapes `shapes` (cached on the plan): the shape of every
    slot, each step's result types inferred from its operands' concrete types (so
    that an input size the module cannot take is an error naming the op), and the
    steps' output buffers."""
    key = tuple(tuple(s) for s in shapes)
    known = plan.specialized.get(key)
    if known is not None:
        return known
    sizes: dict[int, tuple[int, ...]] = dict(zip(plan.input_slots, key, strict=True))
    sizes.update((s, a.shape) for s, a in plan.constants.items())
    for step in plan.steps:
        op = step.op
        if step.layout_copy:
            sizes[step.results[0]] = sizes[step.args[0]]
            continue
        if step.opaque and all(isinstance(v.type, TensorType) and v.type.has_static_shape()
                               for v in (*op.results, *op.operands)):
            # a fused chain of static shapes (patterns.py rule 6: its op, the last of
            # the chain, does not give its result from the chain's input)
            for r, v in zip(step.results, op.results, strict=True):
                sizes[r] = tuple(v.type.get_shape())  # type: ignore[attr-defined]
            continue
        if not isinstance(op, QnnOp):  # quant and ascend ops keep their input's shape
            for r, v in zip(step.results, op.results, strict=True):
                t = v.type
                if isinstance(t, TensorType) and (t.has_static_shape() or not step.args):
                    sizes[r] = tuple(t.get_shape())
                else:
                    sizes[r] = sizes[step.args[0]]
            continue
        # a conv's fused residual is an operand more: its shape is the result's
        args = step.args[:len(op.operands)]
        types = [like(v.type, sizes[a]) for v, a in zip(op.operands, args, strict=True)]
        try:
            results = op.infer(types, dict(op.properties))
        except ShapeError as e:
            shape_text = ", ".join(f"{n}={'x'.join(map(str, s))}"
                                   for n, s in zip(plan.input_names, key, strict=True))
            raise RuntimeError_(f"op '{_value_name(op.results[0]) or op.name}' ({op.name}) "
                                f"cannot run at input shapes {shape_text}: {e}") from None
        for r, t in zip(step.results, results, strict=False):
            sizes[r] = tuple(t.get_shape())  # type: ignore[attr-defined]
        for r in step.results[len(results):]:
            # the fake-quant of the result beside it (`tee`), or the ascend.quant of an
            # int8 conv's fused residual sum (qcc.runtime.int8.teed): the same shape
            sizes[r] = sizes[step.results[0]]
    shaped = Shapes(sizes, plan_buffers(plan.steps, plan.output_slots, sizes))
    plan.specialized[key] = shaped
    return shaped


def run(module: ModuleOp, inputs: Mapping[str, np.ndarray],
        keep: Sequence[SSAValue | str] | None = None):
    """Run `@main` on `inputs` (one array per input name) and return its outputs by
    name. With `keep` (SSA values, or op names as in their `name` attribute), return
    `(outputs, kept)` where `kept` maps each requested value or name to its array."""
    if keep is None:
        return execute(compile_module(module), inputs)[0]
    plan = compile_module(module, fuse=False)  # every value stays observable
    by_name = {name: v for v, s in plan.slot_of.items()
               if (name := plan.names.get(s))}
    values = []
    for k in keep:
        if isinstance(k, str):
            if k not in by_name:
                raise RuntimeError_(f"no value named '{k}' (known: {_some(by_name)})")
            values.append(by_name[k])
        else:
            values.append(k)
    outputs, kept = execute(plan, inputs, values)
    return outputs, {k: kept[v] for k, v in zip(keep, values, strict=True)}


DEFAULT_RUN_BATCH = 256


def run_batches(module: ModuleOp, inputs: Mapping[str, np.ndarray],
                batch_size: int | None = None) -> dict[str, np.ndarray]:
    """Run any number of samples (first axis of every input) in batches and
    concatenate the outputs: `batch_size` at a time when the model's batch dim is
    symbolic (default: all, up to 256), its batch B at a time when static and the
    sample count is a multiple of B. Other inputs run once as given."""
    plan = compile_module(module)
    arrays = {k: np.asarray(v) for k, v in inputs.items()}
    counts = {a.shape[0] if a.ndim else -1 for a in arrays.values()}
    first = {t.get_shape()[0] if t.get_shape() else -1 for t in plan.input_types}
    if batch_size is not None and batch_size < 1:
        raise RuntimeError_(f"--batch-size must be >= 1, got {batch_size}")
    if len(counts) != 1 or len(first) != 1 or -1 in counts or -1 in first:
        return execute(plan, arrays)[0]
    n, model_batch = counts.pop(), first.pop()
    if model_batch == DYN:
        step = batch_size or min(n, DEFAULT_RUN_BATCH)
    elif n != model_batch and n % model_batch == 0:
        if batch_size not in (None, model_batch):
            raise RuntimeError_(f"the model's batch is fixed at {model_batch}; "
                                f"--batch-size {batch_size} cannot be used")
        step = model_batch
    else:
        return execute(plan, arrays)[0]
    parts = [execute(plan, {k: a[i:i + step] for k, a in arrays.items()})[0]
             for i in range(0, max(n, 1), step)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _some(names: Mapping[str, object], n: int = 8) -> str:
    listed = sorted(names)
    return ", ".join(listed[:n]) + (", ..." if len(listed) > n else "")


def batch_runner(module: ModuleOp, hooks: Mapping[Operation, Callable[..., object]],
                 ) -> Callable[[Mapping[str, np.ndarray]], object]:
    """`qcc.registry.Executor` on this runtime: compile `module` once; each call runs
    one batch with `hook(kernel, op, *arrays)` in place of the kernel of each hooked op
    (a hook sees the arrays the IR's types describe: NCHW). When every hooked op is a
    `quant.observe` (calibration), the hooks observe: the observers' users read their
    inputs, not what a hook returns, and the convs between them keep the blocked
    layout (compile_module's `observers_aside`); other hooks get an NCHW plan. A hook
    with a true attribute `flat` looks at the values only, in any order and layout
    (a per-tensor histogram): it may be given a blocked array of the same values."""
    observe = bool(hooks) and all(isinstance(op, quant.ObserveOp) for op in hooks)
    flat = observe and all(getattr(h, "flat", False) for h in hooks.values())
    plan = compile_module(module, blocked_layout=not hooks or observe, observers_aside=observe,
                          observers_flat=flat)
    if any(op not in {s.op for s in plan.steps} for op in hooks):
        plan = compile_module(module, fuse=False)  # a hooked op was fused into another
    kernels = {step.op: step.fn for step in plan.steps}
    overrides = {op: partial(hook, _as_op_kernel(kernels[op]))
                 for op, hook in hooks.items() if op in kernels}
    return lambda batch: execute(plan, batch, overrides=overrides)


def _as_op_kernel(fn: Callable[..., object]) -> Callable[..., object]:
    """A step's kernel called as `kernel(op, *arrays)` (the hooks' convention)."""
    return lambda op, *arrays: fn(*arrays)
