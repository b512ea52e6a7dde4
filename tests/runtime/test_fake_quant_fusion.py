"""A per-tensor fake-quant applied by the kernel that produces its input
(qcc/runtime/patterns.py, rule 5 and on): the fused plan against the unfused one, bit
for bit, on every softmax build and thread count, and against float64 numpy followed
by the quant type's own numpy fake-quant (at most one quantization step apart where
float32 rounding lands on the other side of a rounding boundary)."""

import numpy as np
import pytest

from qcc import ir
from qcc.dialects import qnn, quant
from qcc.dialects.quant_types import UniformQuantizedType as Q
from qcc.runtime import compile_module, execute, kernels

if not kernels.compiled:
    pytest.skip("the compiled kernels are not built", allow_module_level=True)

from qcc.runtime import _norm  # noqa: E402


def bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


@pytest.fixture(params=["plain", "avx2", "avx512"])
def build(request):
    if request.param not in _norm._variants():
        pytest.skip(f"this CPU does not run the {request.param} build")
    old = _norm._set_variant(request.param)
    yield request.param
    _norm._set_variant(old)


@pytest.fixture(params=[1, 2])
def threads(request):
    old = _norm._set_threads(request.param)
    yield request.param
    _norm._set_threads(old)


SOFTMAX_QTYPE = Q.make(scale=1 / 255, zero_point=0, bits=8, signed=False)


def _softmax_fq(shape, axis, qtype=SOFTMAX_QTYPE, also_output=False):
    g = ir.Graph()
    x = g.input("x", shape)
    p = g.add(qnn.SoftmaxOp.make(x, axis=axis, name="probs"))
    y = g.add(quant.FakeQuantOp.make(p, qtype=qtype))
    return g.finish({"y": y, "p": p} if also_output else {"y": y})


def _softmax64(x, axis):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


@pytest.mark.parametrize("shape,axis", [((1, 3, 197, 197), -1), ((2, 5, 37), 2),
                                        ((4, 70), 1), ((3, 9, 17), 1)])
def test_softmax_and_its_fake_quant_are_one_step_with_the_unfused_bits(build, threads,
                                                                      shape, axis):
    module = _softmax_fq(shape, axis)
    fused, plain = compile_module(module), compile_module(module, fuse=False)
    assert [s.op.name for s in fused.steps] == ["qnn.softmax"]
    assert [s.op.name for s in plain.steps] == ["qnn.softmax", "quant.fake_quant"]
    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    x.reshape(-1)[::13] = -np.inf   # masked scores: probabilities of exactly 0
    got = execute(fused, {"x": x})[0]["y"]
    np.testing.assert_array_equal(bits(got), bits(execute(plain, {"x": x})[0]["y"]))
    want = SOFTMAX_QTYPE.fake_quant(_softmax64(x, axis).astype(np.float32))
    step = np.float32(1 / 255)
    assert np.abs(got.astype(np.float64) - want).max() <= step * 1.0001
    assert np.mean(got == want) > 0.999
    assert set(np.unique(np.rint(got / step)).tolist()) <= set(range(256))


def test_softmax_fake_quant_with_a_zero_point_and_a_narrow_range(build):
    """A signed type whose range clips: the kernel's clip, zero point and rounding."""
    qtype = Q.make(scale=0.003, zero_point=-100, bits=8, signed=True, storage_max=20)
    module = _softmax_fq((6, 50), -1, qtype)
    fused, plain = compile_module(module), compile_module(module, fuse=False)
    assert len(fused.steps) == 1
    x = (np.random.default_rng(4).standard_normal((6, 50)) * 3).astype(np.float32)
    got = execute(fused, {"x": x})[0]["y"]
    np.testing.assert_array_equal(bits(got), bits(execute(plain, {"x": x})[0]["y"]))
    np.testing.assert_array_equal(bits(got), bits(qtype.fake_quant(_norm.softmax(x, -1))))
    assert got.max() == np.float32((20 + 100) * np.float32(0.003))   # clipped at qmax


def test_softmax_fake_quant_per_channel_or_of_an_output_softmax():
    """A per-channel fake-quant is not the kernel's (it runs in place after it); a
    softmax that is also an output keeps its own step."""
    per_channel = Q.make_per_axis(axis=1, scales=[0.01, 0.02, 0.03], zero_points=[0, 1, 2])
    for module, steps in ((_softmax_fq((2, 3, 8), -1, per_channel), 1),
                          (_softmax_fq((2, 3, 8), -1, also_output=True), 2)):
        plan = compile_module(module)
        assert len(plan.steps) == steps
        x = (np.random.default_rng(5).standard_normal((2, 3, 8)) * 3).astype(np.float32)
        got = execute(plan, {"x": x})[0]
        want = execute(compile_module(module, fuse=False), {"x": x})[0]
        for k in got:
            np.testing.assert_array_equal(bits(got[k]), bits(want[k]))
    np.testing.assert_array_equal(bits(got["p"]), bits(_norm.softmax(x, -1)))


def test_softmax_kernel_fake_quant_of_nan_and_of_a_scalar():
    x = np.array([[np.nan, 1.0, 2.0], [0.0, 0.0, 0.0]], np.float32)
    y = _norm.softmax(x, -1, fake_quant=(0.25, 0.0, 0.0, 3.0))
    assert np.isnan(y[0]).all()
    np.testing.assert_array_equal(y[1], np.float32(0.25))   # 1/3 -> 1 step of 0.25
    assert _norm.softmax(np.float32(5.0), 0, fake_quant=(0.4, 0.0, 0.0, 255.0)) == \
        np.float32(np.float32(0.4) * 2)   # 1.0 / 0.4 = 2.5 -> 2 (half to even)
