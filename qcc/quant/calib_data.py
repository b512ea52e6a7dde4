"""Calibration data (one array per model input, first axis the samples): checked
against the model's inputs and sliced into batches of the model's batch size.
Shared by qcc-calibrate, qcc-balance and the quantize flow."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
from xdsl.dialects.builtin import ModuleOp, StringAttr, TensorType

from qcc import ir
from qcc.dialects import qnn
from qcc.dialects.base import DYN, fmt_shape, shapes_match
from qcc.errors import QccError


class CalibrationError(QccError):
    """Calibration data that does not fit the model, or no data at all."""


DYNAMIC_BATCH = 32
"""Samples per batch when the model's batch dim is symbolic."""


def model_batches(module: ModuleOp, data: Mapping[str, np.ndarray],
                  batch_num: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Slice `data` (one array per input, first axis the samples) into batches of
    the model's batch size; names, shapes and dtypes are checked first."""
    fn = ir.main_func(module)
    names, _ = ir.io_names(fn)
    types = [a.type for a in fn.body.block.args]
    check_data(names, types, data)
    first = types[0] if types else None
    assert first is None or isinstance(first, TensorType)
    batch = first.get_shape()[0] if first is not None and first.get_shape() else 1
    samples = len(next(iter(data.values())))
    if batch == DYN:  # a symbolic batch: the data's samples in batches of up to 32
        batch = min(samples, DYNAMIC_BATCH)
        total = -(-samples // batch)
    else:
        total = samples // batch
    if batch_num is not None:
        total = min(total, batch_num)
    for b in range(total):
        yield {n: np.ascontiguousarray(data[n][b * batch:(b + 1) * batch]) for n in names}


def check_data(names, types, data: Mapping[str, np.ndarray], what: str = "calibration",
               source: str | None = None) -> None:
    """Expected against given, all problems at once: keys, sample shapes and dtypes
    (integer or bool data for a float input is an error, not a silent cast)."""
    problems = []
    where = f"{source}: " if source else ""
    if not data:
        raise CalibrationError(f"{where}the {what} data is empty (no arrays)")
    if sorted(names) != sorted(data):
        problems.append(f"expected inputs {names}, given {sorted(data)}")
    counts = {len(np.asarray(a)) for a in data.values() if np.ndim(a)}
    if len(counts) > 1:
        problems.append(f"inputs hold different sample counts {sorted(counts)}")
    for name, t in zip(names, types, strict=True):
        if name not in data:
            continue
        a = np.asarray(data[name])
        want = tuple(t.get_shape())
        dtype = ir.numpy_dtype(t.element_type)
        if a.dtype.kind not in "biuf":
            problems.append(f"input '{name}': expected {dtype} numbers, given dtype {a.dtype}")
            continue
        if a.ndim != len(want) or not shapes_match(a.shape[1:], want[1:]):
            problems.append(f"input '{name}': expected samples of shape {fmt_shape(want[1:])} "
                            f"(batch first), given {a.shape}")
        elif len(a) == 0:
            problems.append(f"input '{name}' holds no samples")
        elif (np.dtype(dtype).kind == "f") != (a.dtype.kind == "f") or not np.can_cast(
                a.dtype, dtype, "same_kind"):
            problems.append(f"input '{name}': expected dtype {dtype}, given {a.dtype} "
                            f"(convert it, e.g. array.astype(np.{dtype}))")
    if problems:
        raise CalibrationError(f"{where}{what} data does not fit the model: "
                               + "; ".join(problems))


def check_weights(module: ModuleOp) -> None:
    """Non-finite weights are an error naming each weight (NaN or inf in a weight
    would reach every output; a quantizer cannot represent it)."""
    from qcc.dialects.layers import layer_of
    from qcc.quant.config import quantizable_layers

    bad = []
    for layer, op in quantizable_layers(module).items():
        view = layer_of(op)
        if view is None:
            continue
        for role, value in (("weight", view.weight), ("bias", view.bias)):
            if value is None or not isinstance(value.owner, qnn.ConstantOp):
                continue
            w = np.asarray(ir.array_of(value))
            if w.dtype.kind != "f" or np.isfinite(w).all():
                continue
            attr = value.owner.attributes.get("name")
            name = attr.data if isinstance(attr, StringAttr) else f"{layer}.{role}"
            n = int(w.size - np.count_nonzero(np.isfinite(w)))
            bad.append(f"'{name}' of layer '{layer}' ({n} of {w.size} values NaN or inf)")
    if bad:
        raise CalibrationError("non-finite weights: " + "; ".join(bad)
                               + "; fix the model's weights")
