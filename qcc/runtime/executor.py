"""Turn a qnn module into a flat plan of kernel calls and run it on numpy arrays.

The plan is built once per module: every SSA value gets a slot, constants are
materialized once, and each step knows which slots die after it so their
buffers are released (and reused by kernels that take an `out` array).

A module with symbolic dims (`tensor<?x3x8x8xf32>`) runs at any size of them: the
first run at new input shapes specializes the plan to them (every op's result
shape inferred from the concrete input shapes, a mismatch reported with the op's
name before any kernel runs), and the shapes are cached on the plan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.ir import Operation, SSAValue

from qcc import ir
from qcc.dialects import qnn
from qcc.dialects.base import DYN, QnnOp, ShapeError, fmt_shape, like, shapes_match
from qcc.errors import QccError

# Integer kernels (int8 layers, requantize) wrap entries of the float table; the Ascend
# ops (AscendQuant, AscendDequant, ...) add theirs. Importing them registers them.
from qcc.runtime import ascend_ops as _ascend_ops  # noqa: F401
from qcc.runtime import int8 as _int8  # noqa: F401
from qcc.runtime import ops as K


class RuntimeError_(QccError):
    """A user-facing error about running a module (bad inputs, unsupported op)."""


@dataclass
class Step:
    fn: Callable[..., object]
    op: Operation
    args: tuple[int, ...]
    results: tuple[int, ...]
    dead: tuple[int, ...] = ()


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
    specialized: dict[tuple[tuple[int, ...], ...], dict[int, tuple[int, ...]]] = field(
        default_factory=dict)
    """Concrete input shapes -> the shape of every slot at those shapes."""

    @property
    def dynamic(self) -> bool:
        return any(not t.has_static_shape() for t in self.input_types)


def compile_module(module: ModuleOp, fuse: bool = True) -> Plan:
    """Build the execution plan of `@main`; lists every unsupported op at once.
    With `fuse`, a `quant.fake_quant` runs inside the step of the op producing its
    input (in place on that fresh buffer) when it is that value's only user."""
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
        kernel = K.KERNELS.get(type(op))
        if kernel is None:
            unsupported[op.name] = unsupported.get(op.name, 0) + 1
            continue
        if K.fold_at_compile_time(op) and all(
                v in slot_of and slot_of[v] in constants for v in op.operands):
            # a fake-quantized weight: computed once, not on every run
            value = kernel(op, *[constants[slot_of[v]] for v in op.operands])
            constants[slot(op.results[0])] = value  # type: ignore[assignment]
            continue
        steps.append(Step(kernel, op, tuple(slot(v) for v in op.operands),
                          tuple(slot(r) for r in op.results)))
    if unsupported:
        listed = ", ".join(f"{k} (x{n})" for k, n in sorted(unsupported.items()))
        raise RuntimeError_(f"the runtime has no kernel for: {listed}")
    if fuse:
        steps = _fuse_fake_quant(steps, set(outputs))
    _mark_deaths(steps, set(outputs) | set(constants) | set(input_slots))
    names = {s: _value_name(v) for v, s in slot_of.items()}
    return Plan(in_names, input_types, out_names, input_slots, outputs,
                constants, steps, slot_of, len(slot_of), names)


def _fuse_fake_quant(steps: list[Step], outputs: set[int]) -> list[Step]:
    fused: list[Step] = []
    for step in steps:
        prev = fused[-1] if fused else None
        op = step.op
        if (prev is not None and K.fusable_fake_quant(op) and len(prev.results) == 1
                and step.args == prev.results and prev.results[0] not in outputs
                and K.allocates_output(prev.op) and op.operands[0].has_one_use()):
            fused[-1] = Step(K.fuse_fake_quant(prev.fn, op), prev.op, prev.args,
                             step.results)
            continue
        fused.append(step)
    return fused


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
    problems = []
    missing = [n for n in plan.input_names if n not in inputs]
    extra = [n for n in inputs if n not in plan.input_names]
    if missing or extra:
        problems.append(f"expected inputs {plan.input_names}, given {sorted(inputs)}")
    arrays = []
    for name, t in zip(plan.input_names, plan.input_types, strict=True):
        if name not in inputs:
            continue
        a = np.asarray(inputs[name])
        want_shape = tuple(t.get_shape())
        want_dtype = ir.numpy_dtype(t.element_type)
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


def execute(plan: Plan, inputs: Mapping[str, np.ndarray],
            keep: Iterable[SSAValue] = (),
            overrides: Mapping[Operation, Callable[..., object]] | None = None,
            ) -> tuple[dict[str, np.ndarray], dict[SSAValue, np.ndarray]]:
    """Run the plan; also return the values in `keep`. `overrides` replaces the
    kernel of chosen ops (calibration hooks its observers in this way)."""
    arrays = check_inputs(plan, inputs)
    if plan.dynamic:
        specialize(plan, [a.shape for a in arrays])
    slots: list[np.ndarray | None] = [None] * plan.n_slots
    for s, a in zip(plan.input_slots, arrays, strict=True):
        slots[s] = a
    for s, a in plan.constants.items():
        slots[s] = a
    keep_slots = {plan.slot_of[v]: v for v in keep}
    kept: dict[SSAValue, np.ndarray] = {
        v: value for s, v in keep_slots.items() if (value := slots[s]) is not None}  # inputs
    overrides = overrides or {}
    for step in plan.steps:
        fn = overrides.get(step.op, step.fn) if overrides else step.fn
        out: Any = fn(step.op, *[slots[a] for a in step.args])  # one array per result
        if len(step.results) == 1:
            slots[step.results[0]] = out
        else:
            for r, o in zip(step.results, out, strict=True):
                slots[r] = o
        for r in step.results:
            if r in keep_slots:
                kept[keep_slots[r]] = slots[r]  # type: ignore[assignment]
        for d in step.dead:
            slots[d] = None
    outputs = {n: slots[s] for n, s in zip(plan.output_names, plan.output_slots, strict=True)}
    return outputs, kept  # type: ignore[return-value]


def specialize(plan: Plan, shapes: Sequence[tuple[int, ...]]) -> dict[int, tuple[int, ...]]:
    """The shape of every slot when the inputs have `shapes` (cached on the plan):
    each step's result types inferred from its operands' concrete types, so that
    an input size the module cannot take is an error naming the op."""
    key = tuple(tuple(s) for s in shapes)
    known = plan.specialized.get(key)
    if known is not None:
        return known
    sizes: dict[int, tuple[int, ...]] = dict(zip(plan.input_slots, key, strict=True))
    sizes.update((s, a.shape) for s, a in plan.constants.items())
    for step in plan.steps:
        op = step.op
        if not isinstance(op, QnnOp):
            continue
        types = [like(v.type, sizes[a]) for v, a in zip(op.operands, step.args, strict=True)]
        try:
            results = op.infer(types, dict(op.properties))
        except ShapeError as e:
            shape_text = ", ".join(f"{n}={'x'.join(map(str, s))}"
                                   for n, s in zip(plan.input_names, key, strict=True))
            raise RuntimeError_(f"op '{_value_name(op.results[0]) or op.name}' ({op.name}) "
                                f"cannot run at input shapes {shape_text}: {e}") from None
        for r, t in zip(step.results, results, strict=False):
            sizes[r] = tuple(t.get_shape())  # type: ignore[attr-defined]
    plan.specialized[key] = sizes
    return sizes


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
    one batch with `hook(kernel, op, *arrays)` in place of the kernel of each hooked op."""
    plan = compile_module(module)
    kernels = {step.op: step.fn for step in plan.steps}
    overrides = {op: partial(hook, kernels[op]) for op, hook in hooks.items() if op in kernels}
    return lambda batch: execute(plan, batch, overrides=overrides)
