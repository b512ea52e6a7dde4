"""qcc-calibrate: run the runtime over calibration batches, compute quantization
parameters, and turn every `quant.observe` into a `quant.fake_quant`.

Rules:
1. A weight observer reads its constant directly (no data needed): per-channel or
   per-tensor symmetric max-abs (ARQ) on the `quant.observe` grid.
2. An activation observer collects mergeable statistics (min/max and a histogram,
   never the tensors) over every batch; non-finite values are counted and left out,
   every finite value is kept (attention masks never reach an observer:
   `qcc-insert-quant` recognises them from the graph, `qcc.passes.masks`).
3. Its range comes from the observer's algorithm with its `params`; scale and zero
   point follow from the range and the grid (`range_to_qparams`).
4. The observer becomes `quant.fake_quant {qtype}` carrying discardable attributes
   `id`, `algorithm`, `min`, `max` and, for activations, `skipped` (the count of
   values left out), which the record, encodings and report read.

Options: `data` = .npz with one array per model input (first axis the batch),
`batch_num` = how many model batches to use (default: all the data holds).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import FloatAttr, IntegerAttr, ModuleOp, StringAttr, f64, i64
from xdsl.ir import Attribute, Operation
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from qcc import ir, registry
from qcc.dialects import quant
from qcc.dialects.base import get_bool, get_int, get_str
from qcc.quant import inputs
from qcc.quant.calib_data import CalibrationError, model_batches


@dataclass
class Quantizer:
    """What calibration decided for one observer."""

    id: str
    kind: str
    algorithm: str
    bits: int
    symmetric: bool
    axis: int
    lo: np.ndarray
    hi: np.ndarray
    qtype: quant.UniformQuantizedType
    skipped: int = 0


def _params(op: quant.ObserveOp) -> dict[str, object]:
    attr = op.params
    if attr is None:
        return {}
    out: dict[str, object] = {}
    for key, value in attr.data.items():
        if isinstance(value, FloatAttr):
            out[key] = float(value.value.data)
        elif isinstance(value, IntegerAttr):
            out[key] = (bool(value.value.data) if value.type.width.data == 1
                        else int(value.value.data))
        elif isinstance(value, StringAttr):
            out[key] = value.data
    return out


def _qtype(lo: np.ndarray, hi: np.ndarray, bits: int, symmetric: bool, narrow: bool,
           axis: int) -> quant.UniformQuantizedType:
    from qcc.quant.algorithms import range_to_qparams

    scale, zero_point = range_to_qparams(lo, hi, bits, symmetric, narrow)
    scale = np.atleast_1d(np.asarray(scale, np.float64))
    zero_point = np.atleast_1d(np.asarray(zero_point)).astype(np.int64)
    if axis == -1:
        return quant.UniformQuantizedType.make(
            scale=float(scale[0]), zero_point=int(zero_point[0]), bits=bits, signed=True,
            narrow_range=narrow)
    return quant.UniformQuantizedType.make_per_axis(
        axis=axis, scales=[float(s) for s in scale],
        zero_points=[int(z) for z in zero_point], bits=bits, signed=True,
        narrow_range=narrow)


def weight_quantizer(op: quant.ObserveOp) -> Quantizer:
    """Rule 1."""
    from qcc.quant.algorithms import WEIGHT_ALGORITHMS

    algorithm = get_str(op.algorithm)
    fn = WEIGHT_ALGORITHMS.get(algorithm)
    if fn is None:
        raise CalibrationError(f"{get_str(op.id)}: no weight algorithm '{algorithm}' "
                               f"(known: {', '.join(sorted(WEIGHT_ALGORITHMS))})")
    w = np.asarray(ir.array_of(op.input), np.float32)
    if not np.isfinite(w).all():
        n = int(w.size - np.count_nonzero(np.isfinite(w)))
        raise CalibrationError(f"weight '{get_str(op.id)}': {n} of {w.size} values are NaN "
                               "or inf; fix the model's weights")
    axis, bits = get_int(op.axis, -1), get_int(op.bits, 8)
    narrow = get_bool(op.narrow_range)
    lo, hi = fn(w, axis, bits, narrow)
    return Quantizer(get_str(op.id), "weight", algorithm, bits, True, axis,
                     np.asarray(lo), np.asarray(hi), _qtype(np.asarray(lo), np.asarray(hi),
                                                            bits, True, narrow, axis))


def activation_quantizer(op: quant.ObserveOp, stats) -> Quantizer:
    """Rule 3."""
    from qcc.quant.algorithms import ACTIVATION_ALGORITHMS

    algorithm = get_str(op.algorithm)
    fn = ACTIVATION_ALGORITHMS.get(algorithm)
    if fn is None:
        raise CalibrationError(f"{get_str(op.id)}: no activation algorithm '{algorithm}' "
                               f"(known: {', '.join(sorted(ACTIVATION_ALGORITHMS))})")
    bits, symmetric = get_int(op.bits, 8), get_bool(op.symmetric)
    nonfinite = stats.nan + stats.posinf + stats.neginf
    if stats.count == 0 and nonfinite:
        ident = get_str(op.id)
        layer, _, role = ident.rpartition(".")
        producer = op.input.owner
        name = producer.attributes.get("name") if isinstance(producer, Operation) else None
        tensor = (f"'{name.data}'" if isinstance(name, StringAttr)
                  else f"the {role or 'input'} of layer '{layer or ident}'")
        raise CalibrationError(
            f"tensor {tensor} (quantizer '{ident}', layer '{layer or ident}') holds no finite "
            f"value in the calibration data ({stats.nan} NaN, {stats.posinf} +inf, "
            f"{stats.neginf} -inf); check the calibration data and the model")
    low, high = fn(stats, bits, symmetric, **_params(op))
    lo, hi = np.asarray(low, np.float64), np.asarray(high, np.float64)
    return Quantizer(get_str(op.id), "activation", algorithm, bits, symmetric, -1, lo, hi,
                     _qtype(lo, hi, bits, symmetric, get_bool(op.narrow_range), -1),
                     skipped=int(stats.skipped))


def new_stats(module: ModuleOp) -> dict[quant.ObserveOp, object]:
    """Empty statistics for each activation observer of `module`, in walk order."""
    from qcc.quant.algorithms import observer_bins
    from qcc.quant.observers import TensorStats

    return {op: TensorStats(observer_bins(get_str(op.algorithm), _params(op)))
            for op in module.walk() if isinstance(op, quant.ObserveOp)
            and get_str(op.kind) == "activation"}


def collect(module: ModuleOp, batches: Iterable[Mapping[str, np.ndarray]],
            progress: Callable[[int], None] | None = None) -> dict[quant.ObserveOp, object]:
    """Rule 2: run every batch, feeding each activation observer's statistics."""
    stats = new_stats(module)
    observers = list(stats)

    def hook(kernel, op, x):
        stats[op].update(x)
        return x

    hook.flat = True  # type: ignore[attr-defined]  # per-tensor statistics: any layout
    run_batch = registry.executor()(module, dict.fromkeys(observers, hook))
    n = 0
    for batch in batches:
        run_batch(batch)
        n += 1
        if progress is not None:
            progress(n)
    if n == 0 and observers:
        raise CalibrationError("no calibration batch: the data holds fewer samples than "
                               "one model batch")
    return stats


def calibrate(module: ModuleOp, batches: Iterable[Mapping[str, np.ndarray]],
              progress: Callable[[int], None] | None = None,
              stats: Mapping[quant.ObserveOp, object] | None = None) -> list[Quantizer]:
    """Rules 1-4 on `module` in place; returns what was decided per observer.
    `stats`: every activation observer's statistics, when the caller has already
    collected them over the batches (then `batches` are not run)."""
    if stats is None:
        stats = collect(module, batches, progress)
    decided: list[Quantizer] = []
    for op in [o for o in module.walk() if isinstance(o, quant.ObserveOp)]:
        if get_str(op.kind) == "weight":
            q = weight_quantizer(op)
        else:
            q = activation_quantizer(op, stats[op])
        decided.append(q)
        _replace(op, q)
    return decided


def _replace(op: quant.ObserveOp, q: Quantizer) -> None:
    """Rule 4."""
    fq = quant.FakeQuantOp.make(op.input, qtype=q.qtype)
    attrs: dict[str, Attribute] = {
        "id": StringAttr(q.id), "algorithm": StringAttr(q.algorithm),
        "min": FloatAttr(float(np.min(q.lo)), f64), "max": FloatAttr(float(np.max(q.hi)), f64),
        "symmetric": IntegerAttr(int(q.symmetric), i64),
    }
    if q.kind == "activation":
        attrs["skipped"] = IntegerAttr(q.skipped, i64)
    fq.attributes.update(attrs)
    Rewriter.replace_op(op, fq)


@dataclass(frozen=True)
class CalibratePass(ModulePass):
    """Run calibration data through the model; observers become fake_quant."""

    name = "qcc-calibrate"

    data: str | None = None
    batch_num: int | None = None

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        self.run(op)

    def run(self, op: ModuleOp, stats: Mapping[quant.ObserveOp, object] | None = None) -> None:
        """`apply`, with the observers' statistics already collected (see `calibrate`)."""
        if self.data is None:
            raise CalibrationError("qcc-calibrate needs data=FILE.npz")
        if stats is not None:
            calibrate(op, (), stats=stats)
            return
        batches = list(model_batches(op, inputs.npz(self.data, "calibration"), self.batch_num))
        calibrate(op, batches, inputs.progress(len(batches)))
