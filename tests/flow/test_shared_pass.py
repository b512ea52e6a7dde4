"""The quantize flow runs qcc-balance, qcc-insert-quant and qcc-calibrate over one pass
of the calibration data when balance changes nothing (`qcc.flow.shared_pass`).

Oracle: the same pipeline run pass by pass with `qcc.passes.run` (each pass runs its
own batches). The flow's module must print the same IR (every fake_quant's scale, zero
point, min and max included), with the same balance factors, outlier ratios and
remarks; and the runtime must see each calibration batch once when nothing is
balanced, twice when a group is."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.rewriter import InsertPoint, Rewriter

from qcc import ir, passes, registry
from qcc.dialects import qnn
from qcc.flow.quantize import quantize
from qcc.passes.balance import BalancePass
from qcc.passes.remarks import Remarks
from qcc.quant import pipeline as qpipeline
from qcc.quant.config import resolve

onnx = pytest.importorskip("onnx")


def _transformer(outliers: bool):
    from qcc.frontends.onnx import load_onnx
    from qcc.testing.models import transformer_block

    module = load_onnx(transformer_block(batch=2, seq=16, d_model=64, heads=4, seed=0))
    if outliers:  # the first layer norm scales 3 channels 50x: fc1's input has outliers
        (ln,) = [op for op in module.walk() if isinstance(op, qnn.LayerNormOp)
                 and "norm1" in op.attributes["name"].data]
        gamma = np.array(ir.array_of(ln.scale))
        gamma[[3, 17, 42]] *= 50
        c = ir.constant(gamma)
        Rewriter.insert_op(c, InsertPoint.before(ln))
        ln.operands[1] = c.output
    return module


def _cnn():
    from qcc.frontends.onnx import load_onnx
    from qcc.testing.models import resnet18_cifar

    return load_onnx(resnet18_cifar(batch=2))


def _one_by_one(module, data):
    """What the flow does, each pass running its own batches."""
    passes.run(module, "canonicalize")
    cfg = resolve(module, None)
    remarks = Remarks()
    passes.run(module, qpipeline.build(cfg, config="q.json", data="calib.npz"),
               remarks=remarks, files={"q.json": cfg, "calib.npz": data})
    return module, remarks


@pytest.fixture
def batch_runs(monkeypatch):
    """How many batches the passes' executor ran."""
    count = [0]
    make = registry.executor()

    def counting(module, hooks):
        run = make(module, hooks)

        def each(batch):
            count[0] += 1
            return run(batch)

        return each

    monkeypatch.setattr(registry, "executor", lambda: counting)
    return count


@pytest.mark.parametrize("case, balanced", [("cnn", False), ("transformer", False),
                                            ("transformer_outliers", True)])
def test_shared_pass_gives_the_module_of_the_passes_run_one_by_one(case, balanced,
                                                                   batch_runs):
    make = {"cnn": _cnn, "transformer": lambda: _transformer(False),
            "transformer_outliers": lambda: _transformer(True)}[case]
    rng = np.random.default_rng(3)
    shape = (8, 3, 32, 32) if case == "cnn" else (8, 16, 64)
    data = {"input" if case == "cnn" else "x": rng.standard_normal(shape).astype(np.float32)}
    batches = 4  # 8 samples, the models' batch is 2

    got = quantize(make(), data, progress=False)
    runs_shared = batch_runs[0]
    want, remarks = _one_by_one(make(), data)

    assert ir.print_module(got.module) == ir.print_module(want)
    layers = got.report["balance"]["layers"]
    assert bool(layers) is balanced
    assert set(layers) == set(remarks.results[BalancePass.name])
    for name, factors in remarks.results[BalancePass.name].items():
        assert layers[name]["min"] == float(np.min(factors))
        assert layers[name]["max"] == float(np.max(factors))
    ratios = remarks.results[f"{BalancePass.name}.outlier_ratio"]
    assert {k: v["outlier_ratio"] for k, v in layers.items()} == {
        k: ratios[k] for k in layers}
    assert got.report["balance"].get("not_balanced", {}) == {
        k: r for k, r in ratios.items() if k not in layers}
    # the pass by pass run: balance's batches, then calibration's
    assert batch_runs[0] - runs_shared == 2 * batches
    assert runs_shared == (2 if balanced else 1) * batches
