"""The executor: intermediate values on request, buffers released, errors listed."""

import numpy as np
import pytest

from qcc import ir
from qcc.dialects import qnn
from qcc.runtime import RuntimeError_, compile_module, run


def _module():
    g = ir.Graph()
    x = g.input("x", (2, 3))
    w = g.const(np.arange(12, dtype=np.float32).reshape(4, 3), name="fc.weight")
    h = g.add(qnn.DenseOp.make(x, w, name="fc"))
    r = g.add(qnn.ReluOp.make(h, name="relu"))
    y = g.add(qnn.MulOp.make(r, r, name="square"))
    return g.finish({"y": y})


def test_keep_returns_intermediates_by_name():
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    outputs, kept = run(_module(), {"x": x}, keep=["fc", "relu"])
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_allclose(kept["fc"], x @ w.T, rtol=1e-6)
    np.testing.assert_allclose(kept["relu"], np.maximum(x @ w.T, 0), rtol=1e-6)
    np.testing.assert_allclose(outputs["y"], kept["relu"] ** 2, rtol=1e-6)


def test_keep_unknown_name_is_an_error():
    with pytest.raises(RuntimeError_, match="no value named 'nope'"):
        run(_module(), {"x": np.zeros((2, 3), np.float32)}, keep=["nope"])


def test_dead_values_are_released():
    plan = compile_module(_module(), fuse=False)
    # `fc` dies after relu, `relu` after square: each step frees what it last used.
    freed = [len(step.dead) for step in plan.steps]
    assert freed == [0, 1, 1]


def test_fake_quant_fuses_into_its_producer_with_identical_numbers():
    from qcc.dialects import quant
    from qcc.dialects.quant import UniformQuantizedType as Q
    from qcc.runtime import execute

    rng = np.random.default_rng(1)
    g = ir.Graph()
    x = g.input("x", (2, 8))
    w = g.const(rng.standard_normal((8, 8)).astype(np.float32), name="fc.weight")
    wq = g.add(quant.FakeQuantOp.make(w, qtype=Q.make_per_axis(
        axis=0, scales=[0.02] * 8, narrow_range=True)))
    h = g.add(qnn.DenseOp.make(x, wq, name="fc"))
    r = g.add(qnn.ReluOp.make(h, name="relu"))
    rq = g.add(quant.FakeQuantOp.make(r, qtype=Q.make(scale=0.05, zero_point=-128)))
    y = g.add(qnn.DenseOp.make(rq, wq, name="fc2"))
    module = g.finish({"y": y})
    fused, plain = compile_module(module), compile_module(module, fuse=False)
    # the weight's fake_quant is folded at compile time; relu and the activation's
    # fake_quant run in place in fc's step
    assert [type(s.op).__name__ for s in fused.steps] == ["DenseOp", "DenseOp"]
    assert len(plain.steps) == 4
    for _ in range(5):
        inputs = {"x": rng.standard_normal((2, 8)).astype(np.float32) * 3}
        a = execute(fused, inputs)[0]["y"]
        b = execute(plain, inputs)[0]["y"]
        assert np.array_equal(a, b)
    # and the numbers are those of UniformQuantizedType.fake_quant
    h_ref = inputs["x"] @ Q.make_per_axis(axis=0, scales=[0.02] * 8, narrow_range=True
                                          ).fake_quant(ir.array_of(w)).T
    ref = Q.make(scale=0.05, zero_point=-128).fake_quant(np.maximum(h_ref, 0))
    _, kept = run(module, inputs, keep=[rq])
    np.testing.assert_array_equal(kept[rq], ref)
