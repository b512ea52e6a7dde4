"""The executor: intermediate values on request, buffers released, errors listed."""

import numpy as np
import pytest

from qcc import ir
from qcc.dialects import qnn
from qcc.runtime import RuntimeError_, compile_module, execute, run


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
    w = np.arange(12, dtype=np.float64).reshape(4, 3)
    # float64 oracle; float32 sums in any order are within a few ulps of sum |x w|
    want = x.astype(np.float64) @ w.T
    atol = 4 * np.finfo(np.float32).eps * (np.abs(x.astype(np.float64)) @ np.abs(w.T)).max()
    np.testing.assert_allclose(kept["fc"], want, rtol=0, atol=atol)
    np.testing.assert_allclose(kept["relu"], np.maximum(want, 0), rtol=0, atol=atol)
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


# ----------------------------------------------- buffers, fusion, compiled kernels


def _conv_chain(batch=None):
    """conv -> relu -> reshape (a view) -> reshape back -> conv -> clip -> conv, plus a
    second output that views the middle value (it must never be overwritten)."""
    rng = np.random.default_rng(3)
    g = ir.Graph()
    x = g.input("x", (batch, 4, 6, 6))
    ws = [g.const(rng.standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.3,
                  name=f"w{i}") for i in range(3)]
    h = g.add(qnn.ConvOp.make(x, ws[0], pads=(1, 1, 1, 1), name="c0"))
    h = g.add(qnn.ReluOp.make(h, name="r0"))
    dyn = batch is None
    v = g.add(qnn.ReshapeOp.make(h, shape=(0 if dyn else batch, 144),
                                 copy_dims=(0,) if dyn else None, name="flat"))
    h = g.add(qnn.ReshapeOp.make(v, shape=(0 if dyn else batch, 4, 6, 6),
                                 copy_dims=(0,) if dyn else None, name="back"))
    h = g.add(qnn.ConvOp.make(h, ws[1], pads=(1, 1, 1, 1), name="c1"))
    h = g.add(qnn.ClipOp.make(h, min=-0.5, max=0.75, name="clip"))
    y = g.add(qnn.ConvOp.make(h, ws[2], pads=(1, 1, 1, 1), name="c2"))
    return g.finish({"y": y, "flat": v})


def _numpy_chain(module, x):
    """The chain in numpy (onnx.reference would do as well): the oracle."""
    from qcc.runtime.kernels import reference_conv
    ws = [ir.array_of(op) for op in module.walk() if isinstance(op, qnn.ConstantOp)]
    h = np.maximum(reference_conv(x, ws[0], None, (1, 1), (1, 1, 1, 1), (1, 1), 1), 0)
    flat = h.reshape(len(x), 144)
    h = np.clip(reference_conv(h, ws[1], None, (1, 1), (1, 1, 1, 1), (1, 1), 1),
                np.float32(-0.5), np.float32(0.75))
    return reference_conv(h, ws[2], None, (1, 1), (1, 1, 1, 1), (1, 1), 1), flat


@pytest.mark.parametrize("batch", [2, None])
def test_buffers_are_reused_without_clobbering_live_values_or_outputs(batch):
    module = _conv_chain(batch)
    plan = compile_module(module)
    # relu and clip run in place in their convs' steps
    assert [type(s.op).__name__ for s in plan.steps] == [
        "ConvOp", "ReshapeOp", "ReshapeOp", "ConvOp", "ConvOp"]
    rng = np.random.default_rng(4)
    runs = []
    for n in (2, 2, 3) if batch is None else (2, 2, 2):
        x = rng.standard_normal((n, 4, 6, 6)).astype(np.float32)
        runs.append((x, execute(plan, {"x": x})[0]))
    for x, out in runs:  # earlier outputs survive later runs
        y, flat = _numpy_chain(module, x)
        np.testing.assert_allclose(out["y"], y, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(out["flat"], flat, rtol=1e-5, atol=1e-5)
        # and equal bit for bit a run without shared buffers or fusion
        plain = execute(compile_module(module, fuse=False), {"x": x})[0]
        assert np.array_equal(out["y"], plain["y"])
        assert np.array_equal(out["flat"], plain["flat"])
    from qcc.runtime import kernels
    if not kernels.compiled:
        return  # the numpy kernels take no buffers
    shapes = next(iter(plan.specialized.values()))
    held = [b for b in shapes.buffers if b is not None]
    # c0's result is viewed by the output `flat` and c2's is the output `y`: they
    # are allocated per run; c1 writes into a buffer the plan holds
    assert shapes.buffers[0] is None and shapes.buffers[4] is None
    assert len(held) == 1 and shapes.buffers[3] is held[0]


def test_a_buffer_is_shared_once_its_value_is_dead(monkeypatch):
    monkeypatch.setenv("QCC_BLOCKED", "0")   # the NCHW plan's buffers (no layout copy)
    rng = np.random.default_rng(5)
    g = ir.Graph()
    h = g.input("x", (1, 4, 5, 5))
    for i in range(4):
        w = g.const(rng.standard_normal((4, 4, 1, 1)).astype(np.float32), name=f"w{i}")
        h = g.add(qnn.ConvOp.make(h, w, name=f"c{i}"))
    module = g.finish({"y": h})
    plan = compile_module(module)
    x = {"x": rng.standard_normal((1, 4, 5, 5)).astype(np.float32)}
    out = execute(plan, x)[0]["y"]
    from qcc.runtime import kernels
    if kernels.compiled:
        buffers = next(iter(plan.specialized.values())).buffers
        # c0 .. c2 alternate between two blocks; the output's step allocates
        assert buffers[3] is None and np.shares_memory(buffers[0], buffers[2])
        assert not np.may_share_memory(buffers[0], buffers[1])
    want = x["x"]
    for op in module.walk():
        if isinstance(op, qnn.ConstantOp):
            want = np.einsum("oc,nchw->nohw", ir.array_of(op)[:, :, 0, 0], want)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_values_of_other_shapes_share_a_block_once_dead(monkeypatch):
    """A chain 4 -> 8 -> 2 -> 6 -> 4 channels: each conv's output may take the block of
    a dead value of another shape (the smallest that holds it, else the largest,
    grown); a live value's block is never taken. Oracle: numpy's einsum per conv."""
    monkeypatch.setenv("QCC_BLOCKED", "0")   # the NCHW plan's buffers
    from qcc.runtime import kernels

    rng = np.random.default_rng(7)
    g = ir.Graph()
    h = g.input("x", (1, 4, 6, 6))
    chans = [4, 8, 2, 6, 4]
    for i, (ci, co) in enumerate(zip(chans[:-1], chans[1:], strict=True)):
        w = g.const(rng.standard_normal((co, ci, 1, 1)).astype(np.float32), name=f"w{i}")
        h = g.add(qnn.ConvOp.make(h, w, name=f"c{i}"))
    module = g.finish({"y": h})
    plan = compile_module(module)
    x = {"x": rng.standard_normal((1, 4, 6, 6)).astype(np.float32)}
    out = execute(plan, x)[0]["y"]
    if kernels.compiled:
        buffers = next(iter(plan.specialized.values())).buffers
        assert buffers[3] is None  # the output escapes
        # c2 (6 channels) takes the block of c0 (8 channels, dead by then); c1 (2
        # channels, made while c0 lives) has its own
        assert buffers[2].shape == (1, 6, 6, 6) and buffers[0].shape == (1, 8, 6, 6)
        assert np.shares_memory(buffers[0], buffers[2])
        assert not np.may_share_memory(buffers[1], buffers[0])
        assert not np.may_share_memory(buffers[1], buffers[2])
    want = x["x"]
    for op in module.walk():
        if isinstance(op, qnn.ConstantOp):
            want = np.einsum("oc,nchw->nohw", ir.array_of(op)[:, :, 0, 0], want)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    again = execute(plan, x)[0]["y"]
    np.testing.assert_array_equal(again, out)


def test_compiled_softmax_layer_norm_pool_and_matmul_against_numpy():
    """The plan runs _norm.softmax, _pool.global_avg_pool and the matmul (the dense
    kernel on AVX-512, else _kernels.batched_matmul; layer_norm stays numpy's);
    numpy's formulas in float64 are the oracle."""
    from qcc.runtime import kernels

    if not kernels.compiled:
        pytest.skip("the compiled kernels are not built")
    rng = np.random.default_rng(6)
    g = ir.Graph()
    x = g.input("x", (2, 3, 5, 8))
    s = rng.standard_normal(8).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    w = rng.standard_normal((2, 3, 8, 4)).astype(np.float32)
    ln = g.add(qnn.LayerNormOp.make(x, g.const(s), g.const(b), axis=-1, epsilon=1e-5))
    sm = g.add(qnn.SoftmaxOp.make(ln, axis=-1))
    mm = g.add(qnn.MatmulOp.make(sm, g.const(w)))
    gp = g.add(qnn.GlobalAvgPoolOp.make(mm))
    module = g.finish({"y": gp, "mm": mm})
    plan = compile_module(module)
    fns = {type(st.op).__name__: st.fn for st in plan.steps}
    if kernels.fast_matmul is None:
        assert fns["MatmulOp"] is kernels.batched_matmul
    assert fns["GlobalAvgPoolOp"] is kernels.global_avg_pool
    xv = rng.standard_normal((2, 3, 5, 8)).astype(np.float32) * 2
    out = execute(plan, {"x": xv})[0]
    x64 = xv.astype(np.float64)
    mean = x64.mean(-1, keepdims=True)
    want = (x64 - mean) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5) * s + b
    want = np.exp(want - want.max(-1, keepdims=True))
    want = want / want.sum(-1, keepdims=True)
    want_mm = want @ w
    np.testing.assert_allclose(out["mm"], want_mm, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["y"], want_mm.mean(axis=(2, 3), keepdims=True),
                               rtol=1e-5, atol=1e-6)


def test_profile_prints_the_slowest_ops(monkeypatch, capsys):
    monkeypatch.setenv("QCC_PROFILE", "1")
    run(_module(), {"x": np.ones((2, 3), np.float32)})
    err = capsys.readouterr().err
    assert err.startswith("qcc profile: 2 steps")
    assert "qnn.dense (x1)" in err and "qnn.mul (x1)" in err


def test_concurrent_runs_of_one_plan_do_not_share_buffers():
    from concurrent.futures import ThreadPoolExecutor

    module = _conv_chain(2)
    plan = compile_module(module)
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((2, 4, 6, 6)).astype(np.float32) for _ in range(8)]
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda x: execute(plan, {"x": x})[0]["y"], xs))
    for x, y in zip(xs, outs, strict=True):
        np.testing.assert_allclose(y, _numpy_chain(module, x)[0], rtol=1e-4, atol=1e-4)


def test_batch_norm_runs_in_its_convs_step_with_the_same_numbers():
    rng = np.random.default_rng(8)
    g = ir.Graph()
    x = g.input("x", (2, 3, 5, 5))
    w = g.const(rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    stats = [g.const(a.astype(np.float32)) for a in (
        rng.uniform(0.5, 2, 4), rng.standard_normal(4), rng.standard_normal(4),
        rng.uniform(0.1, 3, 4))]
    h = g.add(qnn.ConvOp.make(x, w, pads=(1, 1, 1, 1)))
    y = g.add(qnn.BatchNormOp.make(h, *stats, epsilon=1e-3))
    module = g.finish({"y": g.add(qnn.ReluOp.make(y))})
    fused = compile_module(module)
    assert [type(s.op).__name__ for s in fused.steps] == ["ConvOp"]
    xv = {"x": rng.standard_normal((2, 3, 5, 5)).astype(np.float32)}
    got = execute(fused, xv)[0]["y"]
    assert np.array_equal(got, execute(compile_module(module, fuse=False), xv)[0]["y"])
    from qcc.runtime.kernels import reference_conv
    scale, bias, mean, var = (ir.array_of(v.owner) for v in stats)
    conv = reference_conv(xv["x"], ir.array_of(w.owner), None, (1, 1), (1, 1, 1, 1),
                          (1, 1), 1).astype(np.float64)
    c = (slice(None), None, None)
    want = np.maximum((conv - mean[c]) / np.sqrt(var[c] + 1e-3) * scale[c] + bias[c], 0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not __import__("qcc.runtime.kernels").runtime.kernels.compiled,
                    reason="the compiled conv is not built")
def test_relu_and_clip_run_as_the_compiled_convs_activation():
    from qcc.dialects import quant
    from qcc.dialects.quant import UniformQuantizedType as Q
    from qcc.runtime.kernels import reference_conv

    rng = np.random.default_rng(9)
    g = ir.Graph()
    x = g.input("x", (2, 4, 6, 6))
    w1 = g.const(rng.standard_normal((6, 4, 3, 3)).astype(np.float32))
    b1 = g.const(rng.standard_normal(6).astype(np.float32))
    w2 = g.const(rng.standard_normal((6, 3, 3, 3)).astype(np.float32))
    h = g.add(qnn.ConvOp.make(x, w1, b1, pads=(1, 1, 1, 1)))
    r = g.add(qnn.ReluOp.make(h))
    rq = g.add(quant.FakeQuantOp.make(r, qtype=Q.make(scale=0.05, zero_point=-128)))
    c = g.add(qnn.ConvOp.make(rq, w2, strides=(2, 2), groups=2))
    module = g.finish({"y": g.add(qnn.ClipOp.make(c, min=-0.5, max=0.75))})
    fused, plain = compile_module(module), compile_module(module, fuse=False)
    assert [type(s.op).__name__ for s in fused.steps] == ["ConvOp", "ConvOp"]
    assert "activated" in fused.steps[1].fn.__qualname__  # the clip is the conv's
    for k in range(4):
        xv = rng.standard_normal((2, 4, 6, 6)).astype(np.float32) * 2
        if k == 3:  # -0 goes through as numpy's maximum / clip leave it
            xv[1, 2, 3, :] = -0.0
        got, want = execute(fused, {"x": xv})[0]["y"], execute(plain, {"x": xv})[0]["y"]
        assert np.array_equal(got, want) and np.array_equal(np.signbit(got), np.signbit(want))
    # the numbers against a float64 numpy conv (the fake-quant rounding of values at
    # a step's midpoint may differ: compare within one quantization step)
    xv = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    ws = [ir.array_of(v.owner).astype(np.float64) for v in (w1, b1, w2)]
    h64 = reference_conv(xv.astype(np.float64), ws[0], ws[1], (1, 1), (1, 1, 1, 1),
                         (1, 1), 1)
    q = np.clip(np.rint(np.maximum(h64, 0) / 0.05) - 128, -128, 127)
    want = np.clip(reference_conv((q + 128) * 0.05, ws[2], None, (2, 2), (0, 0, 0, 0),
                                  (1, 1), 2), -0.5, 0.75)
    got = execute(fused, {"x": xv})[0]["y"]
    np.testing.assert_allclose(got, want, atol=0.05 * np.abs(ws[2]).sum(axis=(1, 2, 3)).max())


def test_element_wise_ops_of_a_constant_run_in_place_in_the_producers_step():
    rng = np.random.default_rng(10)
    g = ir.Graph()
    x = g.input("x", (1, 5, 8))
    w = g.const(rng.standard_normal((8, 8)).astype(np.float32))
    c1 = rng.standard_normal(8).astype(np.float32)
    c2 = np.float32(1.4142135)
    c3 = rng.standard_normal((3, 5, 8)).astype(np.float32)  # broadcasts x up: not in place
    h = g.add(qnn.DenseOp.make(x, w))
    a = g.add(qnn.AddOp.make(h, g.const(c1)))
    d = g.add(qnn.DivOp.make(a, g.const(np.asarray(c2))))
    s = g.add(qnn.SubOp.make(d, g.const(c1)))
    m = g.add(qnn.MulOp.make(s, g.const(c3)))
    module = g.finish({"y": m})
    fused, plain = compile_module(module), compile_module(module, fuse=False)
    assert [s.op.name for s in fused.steps] == ["qnn.dense", "qnn.mul"]
    xv = {"x": rng.standard_normal((1, 5, 8)).astype(np.float32)}
    got = execute(fused, xv)[0]["y"]
    assert np.array_equal(got, execute(plain, xv)[0]["y"])
    want = ((xv["x"].astype(np.float64) @ ir.array_of(w.owner).T + c1) / c2 - c1) * c3
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("with_bias", [False, True])
def test_scale_of_constants_runs_in_place_after_its_producer(with_bias):
    """A qnn.scale by float32 constants (the balance pass puts one before each SE
    block's first conv) runs inside the step before it, a fake-quant after it too:
    the same bits as the separate steps, and two steps fewer."""
    from qcc.dialects import quant

    rng = np.random.default_rng(4)
    g = ir.Graph()
    x = g.input("x", (1, 8, 5, 5))
    w = g.const(rng.standard_normal((8, 8, 3, 3)).astype(np.float32), name="w")
    c = g.add(qnn.ConvOp.make(x, w, name="conv", pads=[1, 1, 1, 1]))
    p = g.add(qnn.GlobalAvgPoolOp.make(c, name="pool"))
    s = g.const(rng.uniform(0.5, 2.0, 8).astype(np.float32), name="s")
    b = g.const(rng.standard_normal(8).astype(np.float32), name="b") if with_bias else None
    sc = g.add(qnn.ScaleOp.make(p, s, b, name="balance"))
    qt = quant.UniformQuantizedType.make(scale=0.02, zero_point=0)
    fq = g.add(quant.FakeQuantOp.make(sc, qtype=qt, name="fq"))
    y = g.add(qnn.ReluOp.make(fq, name="y"))
    plan = compile_module(g.finish({"y": y}))
    names = [st.op.name for st in plan.steps]
    assert "qnn.scale" not in names and "quant.fake_quant" not in names, names
    xin = {"x": rng.standard_normal((1, 8, 5, 5)).astype(np.float32)}
    got, _ = execute(plan, xin)
    unfused, kept = execute(plan, xin, keep=[sc])
    np.testing.assert_array_equal(got["y"].view(np.uint32), unfused["y"].view(np.uint32))
    pooled = kept[sc]
    assert len(plan.unfused) == len(plan.steps) + 3 and pooled.dtype == np.float32
