"""Turn a qnn module into a flat plan of kernel calls and run it on numpy arrays.

The plan is built once per module: every SSA value gets a slot, constants are
materialized once, and each step knows which slots die after it so their
buffers are released (and reused by kernels that take an `out` array).
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
        if a.shape != want_shape:
            problems.append(f"input '{name}': expected shape {want_shape}, given {a.shape}")
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
