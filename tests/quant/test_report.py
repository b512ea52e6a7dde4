"""The report's SQNR of each quantized activation, measured by the flow through hooks on
the fake_quants of one unfused plan, equals the SQNR worked out here from the values
`qcc.runtime.run(..., keep=...)` returns for the same batch (the fake_quant's input and
output, kept by another path of the executor), with numpy in float64."""

from __future__ import annotations

import numpy as np

from qcc.dialects import quant
from qcc.flow.quantize import quantize
from qcc.quant.calib_data import model_batches
from qcc.runtime import run


def _sqnr(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x.astype(np.float64).ravel(), y.astype(np.float64).ravel()
    return float(10 * np.log10(np.sum(x * x) / np.sum((x - y) ** 2)))


def test_activation_sqnr_is_that_of_the_kept_values():
    from qcc.examples import digits

    model, calib, _ = digits()
    res = quantize(model, calib, None, progress=False)
    with np.load(calib) as f:
        batch = next(model_batches(res.module, {k: f[k] for k in f.files}))
    acts = [op for op in res.module.walk() if isinstance(op, quant.FakeQuantOp)
            and not op.attributes["id"].data.endswith(".weight")]
    _, kept = run(res.module, batch, keep=[v for op in acts for v in (op.input, op.output)])
    rows = {r["layer"]: r for r in res.report["layers"] if r.get("quantized")}
    checked = 0
    for op in acts:
        layer, _, role = op.attributes["id"].data.rpartition(".")
        got = rows[layer][role]["sqnr_db"]
        assert got is not None and np.isfinite(got)
        want = _sqnr(kept[op.input], kept[op.output])
        assert abs(got - want) <= 1e-9 * abs(want), (op.attributes["id"].data, got, want)
        checked += 1
    assert checked >= 4
