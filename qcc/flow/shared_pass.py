"""Activation balance and calibration over one pass of the calibration data.

The job's pipeline runs `qcc-balance`, `qcc-insert-quant` and `qcc-calibrate` in a
row, and both data passes run the model over the same batches: balance for the
largest |x| per channel of each layer input, calibration for the observers'
statistics. With the default config (`outlier_ratio` > 0) balance usually changes
nothing (CNNs, and transformers without outlier channels): the model calibration
runs is then the model balance measured, with observers inserted. So the flow
runs the batches once, on a copy with the observers inserted, feeding both:

1. the copy's activation observers collect their statistics, exactly as
   `qcc-calibrate` would (same module, same hooks, same batches: the same plan);
2. each balance group's input is an observed value; its observer also updates the
   group's running max |x| per channel (what `qcc-balance` measures);
3. `qcc-balance` then runs on the job's module with those maxima. When it balances
   nothing, `qcc-insert-quant` inserts the very observers of the copy, and
   `qcc-calibrate` takes their statistics: the result, remarks and dumps are those
   of the three passes run one by one. When it balances a group, the statistics
   are dropped and `qcc-insert-quant` and `qcc-calibrate` run as usual (once a
   group's outlier ratio passes the threshold after a batch, the observers stop
   collecting: that data pass is then one balance would have run anyway).

`run` returns False (nothing done) when the passes do not fit this scheme: other
options than the job's, `outlier_ratio` 0 (every group balances), no group, a
group input without an observer, fewer samples than a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import BlockArgument, Operation, OpResult, SSAValue
from xdsl.passes import ModulePass

from qcc import ir, registry
from qcc.dialects import quant
from qcc.dialects.base import get_str
from qcc.passes import remarks
from qcc.passes.balance import BalancePass, channel_absmax, channel_outlier_ratio, groups_of
from qcc.passes.calibrate import CalibratePass, new_stats
from qcc.passes.common import tensor_type_of
from qcc.passes.insert_quant import InsertQuantPass, insert_observers
from qcc.quant import inputs
from qcc.quant.calib_data import model_batches


class Job(Protocol):
    """What `run` needs of the flow's pass runner (`qcc.flow.quantize._Run`)."""

    module: ModuleOp
    remarks: remarks.Remarks
    progress: Callable[[int, int], None] | None

    def run(self, pipeline: Any, files: Mapping | None = None,
            after: Callable[[ModulePass, ModuleOp], None] | None = None) -> None: ...

    def run_as(self, p: ModulePass, apply: Callable[[ModuleOp], None], files: Mapping,
               after: Callable[[ModulePass, ModuleOp], None] | None = None) -> None: ...


def fits(passes: Sequence[ModulePass]) -> bool:
    """`passes` is balance, insert-quant, calibrate, over the same batches."""
    if len(passes) != 3:
        return False
    bal, ins, cal = passes
    return (isinstance(bal, BalancePass) and isinstance(ins, InsertQuantPass)
            and isinstance(cal, CalibratePass) and bal.data is not None
            and bal.data == cal.data and bal.batch_num == cal.batch_num
            and bal.outlier_ratio > 0)


def run(job: Job, bal: BalancePass, ins: InsertQuantPass, cal: CalibratePass,
        files: Mapping[str, Any],
        after: Callable[[ModulePass, ModuleOp], None] | None = None) -> bool:
    """The three passes on `job.module` with one data pass (see above); False when
    they do not fit, and nothing was done."""
    module = job.module
    arrays = files.get(bal.data) if bal.data is not None else None
    if not fits([bal, ins, cal]) or arrays is None:
        return False
    with remarks.collecting():  # the remarks come when balance runs
        groups = groups_of(module, bal.only())
    batches = list(model_batches(module, arrays, bal.batch_num))
    if not groups or not batches:
        return False
    probe = module.clone()
    twin = _twin(module, probe)
    with inputs.supplying(inputs.Supply(dict(files))), remarks.collecting():
        insert_observers(probe, inputs.config(ins.config) if ins.config else {})
    stats = new_stats(probe)
    observer = {obs.operands[0]: obs for obs in stats}
    watch: dict[Operation, list[int]] = {}
    for i, g in enumerate(groups):
        x = twin(g.x)
        obs = observer.get(x) if x is not None else None
        if obs is None:
            return False
        watch.setdefault(obs, []).append(i)
    amax = [np.zeros(tensor_type_of(g.x).get_shape()[g.axis]) for g in groups]
    speculating = True

    def hook(kernel, op, x):
        if speculating:
            stats[op].update(x)
        for i in watch.get(op, ()):
            np.fmax(amax[i], channel_absmax(x, groups[i].axis), out=amax[i])
        return x

    run_batch = registry.executor()(probe, dict.fromkeys(stats, hook))
    for n, batch in enumerate(batches, 1):
        run_batch(batch)
        if job.progress is not None:
            job.progress(n, len(batches))
        if speculating and any(channel_outlier_ratio(a) > bal.outlier_ratio for a in amax):
            speculating = False  # a group will balance: calibration runs again
    measured = {g.key: a for g, a in zip(groups, amax, strict=True)}
    job.run_as(bal, lambda m: bal.run(m, measured), files, after)
    balanced = job.remarks.results.get(bal.name)
    job.run([ins], files, after)
    mine = _activation_observers(module)
    theirs = list(stats)
    same = speculating and not balanced and len(mine) == len(theirs) and all(
        a.properties == b.properties and a.attributes == b.attributes
        and twin(a.operands[0]) is b.operands[0] for a, b in zip(mine, theirs, strict=True))
    if not same:
        job.run([cal], files, after)
        return True
    collected = {a: stats[b] for a, b in zip(mine, theirs, strict=True)}
    job.run_as(cal, lambda m: cal.run(m, collected), files, after)
    return True


def _activation_observers(module: ModuleOp) -> list[quant.ObserveOp]:
    return [op for op in module.walk() if isinstance(op, quant.ObserveOp)
            and get_str(op.kind) == "activation"]


def _twin(module: ModuleOp, clone: ModuleOp) -> Callable[[SSAValue], SSAValue | None]:
    """Maps a value of `module` to the same value of its `clone` (taken before
    either changed)."""
    ops = dict(zip(module.walk(), clone.walk(), strict=True))
    args = dict(zip(ir.main_func(module).body.block.args,
                    ir.main_func(clone).body.block.args, strict=True))

    def twin(value: SSAValue) -> SSAValue | None:
        if isinstance(value, OpResult):
            other = ops.get(value.op)
            return other.results[value.index] if other is not None else None
        if isinstance(value, BlockArgument):
            return args.get(value)
        return None

    return twin
