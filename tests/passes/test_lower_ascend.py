"""qcc-lower-ascend on the runtime: the lowered module computes what the integer
graph computes, within the Ascend operators' float16 arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.dialects.builtin import f16

import qcc
import qcc.runtime.ascend_ops  # noqa: F401 (registers the kernels)
from qcc import ir, passes, runtime
from qcc.dialects import ascend, qnn, quant
from qcc.dialects.quant import UniformQuantizedType as Q
from qcc.examples import digits


def _ops(module, cls):
    return [op for op in ir.main_func(module).body.block.ops if isinstance(op, cls)]


def _quant_graph():
    """quantize -> dequantize, and an i32 accumulator input requantized and
    dequantized (per channel)."""
    g = ir.Graph()
    x = g.input("x", (2, 3, 4, 4))
    acc = g.input("acc", (2, 3, 4, 4), np.int32)
    acc_t = Q.make_per_axis(axis=1, scales=[1e-3, 2.5e-4, 7e-4], bits=32)
    xq = g.add(quant.QuantizeOp.make(x, qtype=Q.make(scale=0.02, zero_point=-7)))
    back = g.add(quant.DequantizeOp.make(xq))
    # the accumulator as a quantized value: quantize(acc * scale) gives acc back
    acc_f = g.add(qnn.MulOp.make(g.add(qnn.CastOp.make(acc, to=ir.element_type(np.float32))),
                                 g.const(np.float32([1e-3, 2.5e-4, 7e-4]).reshape(1, 3, 1, 1))))
    accq = g.add(quant.QuantizeOp.make(acc_f, qtype=acc_t))
    y = g.add(quant.RequantizeOp.make(accq, qtype=Q.make(scale=0.05, zero_point=3)))
    f = g.add(quant.DequantizeOp.make(accq))
    r = g.add(qnn.ReluOp.make(g.add(quant.DequantizeOp.make(accq))))
    return g.finish({"xq": xq, "back": back, "y": y, "f": f, "r": r})


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(2, 3, 4, 4)).astype(np.float32),
            "acc": rng.integers(-3000, 3000, (2, 3, 4, 4)).astype(np.int32)}


def test_quant_ops_numerics():
    module = _quant_graph()
    inputs = _inputs()
    before = runtime.run(module, inputs)
    passes.run(module, "qcc-lower-ascend")
    assert not _ops(module, quant.DequantizeOp | quant.RequantizeOp)
    assert len(_ops(module, ascend.DequantOp)) == 3 and len(_ops(module, qnn.ReluOp)) == 0
    after = runtime.run(module, inputs)
    for key in ("xq", "y"):  # AscendQuant in float16: at most one step apart
        diff = np.abs(before[key].astype(int) - after[key].astype(int))
        assert diff.max() <= 1 and diff.mean() < 0.05, key
    # f16 dequant: within float16's precision of the float32 values
    for key in ("f", "r"):
        assert after[key].dtype == np.float32
        np.testing.assert_allclose(after[key], before[key], rtol=2**-11, atol=1e-7)
    # anti_quant in float16 of values one step (0.02) apart at most
    assert np.abs(after["back"] - before["back"]).max() <= 0.02 + 2e-3


def test_f32_dequant_is_exact():
    module = _quant_graph()
    inputs = _inputs(1)
    before = runtime.run(module, inputs)
    passes.run(module, 'qcc-lower-ascend{dtype="f32"}')
    assert not [op for op in _ops(module, qnn.CastOp)
                if isinstance(op.input.owner, ascend.DequantOp)]
    after = runtime.run(module, inputs)
    assert np.array_equal(after["f"], before["f"])
    assert np.array_equal(after["r"], np.maximum(before["f"], 0))


def test_quantize_ties_round_half_away():
    g = ir.Graph()
    x = g.input("x", (4,))
    module = g.finish({"q": g.add(quant.QuantizeOp.make(x, qtype=Q.make(scale=0.5)))})
    ties = {"x": np.float32([0.25, -0.25, 0.75, -0.75])}
    assert runtime.run(module, ties)["q"].tolist() == [0, 0, 2, -2]  # rint
    passes.run(module, "qcc-lower-ascend")
    assert runtime.run(module, ties)["q"].tolist() == [1, -1, 2, -2]  # Round
    passes.run(module := _rebuild(), 'qcc-lower-ascend{round_mode="Rint"}')
    assert runtime.run(module, ties)["q"].tolist() == [0, 0, 2, -2]


def _rebuild():
    g = ir.Graph()
    x = g.input("x", (4,))
    return g.finish({"q": g.add(quant.QuantizeOp.make(x, qtype=Q.make(scale=0.5)))})


def test_bad_options():
    with pytest.raises(ValueError, match="dtype must be f16 or f32"):
        passes.run(_rebuild(), 'qcc-lower-ascend{dtype="bf16"}')
    with pytest.raises(ValueError, match="round_mode must be one of"):
        passes.run(_rebuild(), 'qcc-lower-ascend{round_mode="Up"}')


# ------------------------------------------------------------------ digits


@pytest.fixture(scope="module")
def realized():
    pytest.importorskip("qcc.passes.realize_int8")
    model, calib, test = digits()
    module = qcc.quantize(model, calib, progress=False).module
    passes.run(module, "qcc-realize-int8")
    data = dict(np.load(test))
    return module, data


def _run_all(module, x, keep=()):
    outs = [runtime.run(module, {"input": x[i:i + 1]}, keep=list(keep)) if keep else
            (runtime.run(module, {"input": x[i:i + 1]}), {}) for i in range(len(x))]
    logits = np.concatenate([o[0]["logits"] for o in outs])
    kept = {k: np.concatenate([o[1][k] for o in outs]) for k in keep}
    return logits, kept


def test_digits_same_predictions(realized):
    module, data = realized
    lowered = module.clone()
    passes.run(lowered, "qcc-lower-ascend")
    assert not _ops(lowered, quant.RequantizeOp | quant.DequantizeOp)
    assert {op.name for op in lowered.walk()} >= {"ascend.quant", "ascend.dequant",
                                                   "ascend.weight_quant"}
    dequants = _ops(lowered, ascend.DequantOp)
    assert all(op.properties["dtype"] == f16 for op in dequants)
    x = data["input"]
    # the int8 inputs of the layers: at most one step apart
    int_values = [op.operands[0] for op in _ops(module, qnn.LAYER_OPS)]
    low_values = [op.operands[0] for op in _ops(lowered, qnn.LAYER_OPS)]
    assert len(int_values) == 4
    a, kept_a = _run_all(module, x, int_values)
    b, kept_b = _run_all(lowered, x, low_values)
    assert np.array_equal(a.argmax(1), b.argmax(1))
    # The input pixels k/16 with k = 8 are ties (0.5 * 255 = 127.5), which Round
    # takes away from zero and rint to even; x * scale in float16 is off by up to
    # 1/32 near 127 and the dequantized conv3 output is float16 before the fc's
    # AscendQuant: a step here and there, propagated by a few steps at most.
    for va, vb in zip(int_values, low_values, strict=True):
        diff = np.abs(kept_a[va].astype(int) - kept_b[vb].astype(int))
        assert diff.max() <= 3 and (diff > 0).mean() < 0.25
    np.testing.assert_allclose(b, a, atol=0.15 * np.abs(a).max() / 10)
    if "labels" in data:
        assert (b.argmax(1) == data["labels"]).mean() >= (a.argmax(1) == data["labels"]).mean() - 0.005


def test_digits_relu_folds(realized):
    module, _ = realized
    lowered = module.clone()
    passes.run(lowered, "qcc-lower-ascend")
    relus = [op for op in _ops(lowered, ascend.DequantOp) if op.is_relu]
    # conv3's dequantize feeds relu3: the relu is the dequant's flag
    assert [op.attributes["name"].data for op in relus] == ["conv3.dequant"]  # type: ignore[attr-defined]
    assert "relu3" not in {op.attributes.get("name").data  # type: ignore[union-attr]
                           for op in _ops(lowered, qnn.ReluOp)}


def test_i8_requantize_after_avg_pool():
    """Rule 6 on the runtime: anti_quant (float16) then AscendQuant is within one
    step of the exact requantize, round(s_x (q - z_x) / s_y) + z_y, worked out here
    in rationals from the pooled integers."""
    from fractions import Fraction

    g = ir.Graph()
    x = g.input("x", (2, 3, 6, 6))
    q_in = Q.make(scale=0.02, zero_point=-3)
    q_out = Q.make(scale=0.07, zero_point=5)
    xq = g.add(quant.QuantizeOp.make(x, qtype=q_in))
    pooled = g.add(qnn.AvgPoolOp.make(xq, kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0),
                                      name="pool"))
    module = g.finish({"p": pooled, "y": g.add(quant.RequantizeOp.make(pooled, qtype=q_out))})
    inputs = {"x": np.random.default_rng(4).normal(size=(2, 3, 6, 6)).astype(np.float32)}
    passes.run(module, "qcc-lower-ascend")
    assert not _ops(module, quant.RequantizeOp)
    assert len(_ops(module, ascend.AntiQuantOp)) == 1
    after = runtime.run(module, inputs)
    exact = np.array([round(Fraction(0.02) * (int(p) + 3) / Fraction(0.07)) + 5
                      for p in after["p"].reshape(-1)]).reshape(after["y"].shape)
    diff = np.abs(after["y"].astype(int) - np.clip(exact, -128, 127))
    assert diff.max() <= 1 and diff.mean() < 0.05
