"""Calibration data (one array per model input, first axis the samples): checked
against the model's inputs and sliced into batches of the model's batch size.
Shared by qcc-calibrate, qcc-balance and the quantize flow."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
from xdsl.dialects.builtin import ModuleOp, TensorType

from qcc import ir
from qcc.errors import QccError


class CalibrationError(QccError):
    """Calibration data that does not fit the model, or no data at all."""


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
    total = samples // batch
    if batch_num is not None:
        total = min(total, batch_num)
    for b in range(total):
        yield {n: np.ascontiguousarray(data[n][b * batch:(b + 1) * batch]) for n in names}


def check_data(names, types, data: Mapping[str, np.ndarray]) -> None:
    """Expected against given, all problems at once."""
    problems = []
    if not data:
        raise CalibrationError("the calibration data is empty (no arrays)")
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
        if a.ndim != len(want) or a.shape[1:] != want[1:]:
            problems.append(f"input '{name}': expected samples of shape {want[1:]} "
                            f"(batch first), given {a.shape}")
        elif len(a) == 0:
            problems.append(f"input '{name}' holds no samples")
        elif not np.can_cast(a.dtype, ir.numpy_dtype(t.element_type), "same_kind"):
            problems.append(f"input '{name}': expected dtype "
                            f"{ir.numpy_dtype(t.element_type)}, given {a.dtype}")
    if problems:
        raise CalibrationError("calibration data does not fit the model: "
                               + "; ".join(problems))
