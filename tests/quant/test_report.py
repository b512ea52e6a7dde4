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


def test_sqnr_db_is_the_float64_ratio_of_the_finite_values():
    """sqnr_db (dot products over chunks) against numpy's float64 sums, a hand value,
    and the rules for non-finite values, exact and all-zero signals."""
    from qcc.quant import report

    assert report.sqnr_db(np.array([3.0, 4.0]), np.array([3.0, 3.0])) == 10 * np.log10(25.0)
    rng = np.random.default_rng(0)
    n = 3 * report._SQNR_CHUNK + 17  # several chunks and a short one
    x = rng.standard_normal(n).astype(np.float32)
    y = x + (rng.standard_normal(n) * 1e-2).astype(np.float32)
    assert abs(report.sqnr_db(x, y) - _sqnr(x, y)) <= 1e-12 * abs(_sqnr(x, y))
    x2, y2 = x.copy(), y.copy()
    x2[5], y2[report._SQNR_CHUNK + 1], y2[-1] = np.inf, np.nan, -np.inf
    ok = np.isfinite(x2) & np.isfinite(y2)
    want = _sqnr(x2[ok], y2[ok])
    assert abs(report.sqnr_db(x2, y2) - want) <= 1e-12 * abs(want)
    assert report.sqnr_db(x, x) == float("inf")
    assert report.sqnr_db(np.zeros(4), np.ones(4)) == float("-inf")
