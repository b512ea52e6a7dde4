"""A per-tensor fake-quant applied by the kernel that produces its input
(qcc/runtime/patterns.py, rule 5 and on): the fused plan against the unfused one, bit
for bit, on every softmax build and thread count, and against float64 numpy followed
by the quant type's own numpy fake-quant (at most one quantization step apart where
float32 rounding lands on the other side of a rounding boundary)."""

from functools import partial

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


# ------------------------------------------------------- copies (rule 6)

from qcc.runtime import _eltwise  # noqa: E402

COPY_QTYPE = Q.make(scale=0.021, zero_point=3, bits=8, signed=True)


@pytest.fixture(params=["plain", "avx2", "avx512"])
def copy_build(request):
    if request.param not in _eltwise._copy_variants():
        pytest.skip(f"this CPU does not run the {request.param} transpose")
    old = _eltwise._set_copy_variant(request.param)
    yield request.param
    _eltwise._set_copy_variant(old)


@pytest.fixture(params=[1, 2])
def copy_threads(request):
    old = _eltwise._set_threads(request.param)
    yield request.param
    _eltwise._set_threads(old)


# (shape, perm): the last two dims swapped (tiles with edges of 1..16), rows moved,
# a 5-d attention split, a view kept in order (perm None), a transpose of one dim
COPIES = [((1, 3, 197, 64), (0, 1, 3, 2)), ((2, 31, 45), (0, 2, 1)), ((16, 16), (1, 0)),
          ((17, 1), (1, 0)), ((3, 33, 5, 7), (3, 2, 1, 0)), ((1, 3, 197, 64), (0, 2, 1, 3)),
          ((1, 197, 3, 3, 64), (2, 0, 3, 1, 4)), ((5, 4, 300), (1, 0, 2)), ((40, 70), None),
          ((9,), (0,))]


@pytest.mark.parametrize("shape,perm", COPIES, ids=lambda v: "x".join(map(str, v or ())))
@pytest.mark.parametrize("mul", [None, 0.35355339])
@pytest.mark.parametrize("fq", [False, True])
def test_transpose_kernel_is_numpy_then_the_quant_types_fake_quant(copy_build, copy_threads,
                                                                  shape, perm, mul, fq):
    rng = np.random.default_rng(len(shape) * 31 + shape[-1])
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    x.reshape(-1)[::17] = np.float32(-0.0)
    x.reshape(-1)[5::97] = np.float32(1e30)
    params = (np.float32(0.021), 3.0, -128.0, 127.0) if fq else None
    got = _eltwise.transpose(x, perm, mul=None if mul is None else np.float32(mul),
                             fake_quant=params)
    want = np.ascontiguousarray(x if perm is None else x.transpose(perm))
    if mul is not None:
        want = want * np.float32(mul)
    if fq:
        want = COPY_QTYPE.fake_quant(want)
    assert got.flags.c_contiguous and got.shape == want.shape
    np.testing.assert_array_equal(bits(got), bits(want))


@pytest.mark.parametrize("perm", [(0, 2, 1), (1, 0, 2), (2, 1, 0)])
def test_transpose_fake_quant_on_its_rounding_ties(copy_build, perm):
    """The transposes' fake-quant divides by no scale (runtime/_epilogue.h, qcc_fq16 /
    qcc_fq8 / qcc_fq_one): inputs on the ties (k + 0.5) * s and next to them, where
    an uncorrected product v * (1/s) rounds the other way, and random bit patterns,
    against numpy's float32 division form."""
    from qcc.runtime.ops import fake_quant_into

    rng = np.random.default_rng(5)
    s, z = np.float32(0.021), np.float32(3.0)
    n = 3 * 64 * 96
    ties = (rng.integers(-150, 150, n // 4) + 0.5).astype(np.float32) * s
    x = np.concatenate([ties, np.nextafter(ties, np.float32(np.inf)),
                        np.nextafter(ties, np.float32(-np.inf)),
                        rng.integers(0, 2**32, n - 3 * (n // 4), dtype=np.uint64)
                        .astype(np.uint32).view(np.float32)])
    x = np.where(np.isnan(x), np.float32(1.0), x).astype(np.float32)
    x = rng.permutation(x).reshape(3, 64, 96)
    got = _eltwise.transpose(x, perm, fake_quant=(s, z, -128.0, 127.0))
    want = fake_quant_into(s, z, -128.0, 127.0, np.ascontiguousarray(x.transpose(perm)))
    np.testing.assert_array_equal(bits(got), bits(want))


def test_transpose_kernel_reads_strided_views_and_keeps_nan(copy_build):
    rng = np.random.default_rng(8)
    base = rng.standard_normal((6, 40, 50)).astype(np.float32)
    base[1, 3, 4] = np.nan
    for view, perm in ((base[::2, 1::3, ::-1], (0, 2, 1)), (base[:, ::2, :], None),
                       (base[1:4, :, 10:30], (2, 1, 0))):
        out = np.full(view.transpose(perm).shape if perm else view.shape, 7.0, np.float32)
        got = _eltwise.transpose(view, perm, out=out, fake_quant=(0.5, 0.0, -8.0, 7.0))
        assert got is out
        want = COPY_QTYPE.make(scale=0.5, bits=4).fake_quant(
            np.ascontiguousarray(view if perm is None else view.transpose(perm)))
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.nan_to_num(got), np.nan_to_num(want))
    with pytest.raises(ValueError, match="C-contiguous"):
        _eltwise.transpose(base, (1, 0, 2), out=np.empty((6, 40, 50), np.float32))


def _split_qkv(seq):
    """A graph whose input x [1, seq, 3, 2, 16] (a qkv projection of 2 heads of 16) is
    transposed and split into query, key and value [1, 2, seq, 16], as ViT's."""
    g = ir.Graph()
    x = g.input("x", (1, seq, 3, 2, 16))
    t = g.add(qnn.TransposeOp.make(x, perm=(2, 0, 3, 1, 4), name="qkv"))
    parts = g.op(qnn.SplitOp.make(t, axis=0, sizes=(1, 1, 1), name="split"))
    q, k, v = (g.add(qnn.ReshapeOp.make(p, shape=(1, 2, seq, 16))) for p in parts.results)
    return g, q, k, v


def _attention_copies(also_output=False):
    """ViT's query, key and context paths: split parts of a transposed projection;
    q * c -> fq; transpose(k) * c -> fq; transpose(context) -> reshape -> fq."""
    g, q, k, v = _split_qkv(9)
    c = g.const(np.float32(0.5))
    qs = g.add(qnn.MulOp.make(q, c, name="q_scaled"))
    qf = g.add(quant.FakeQuantOp.make(qs, qtype=COPY_QTYPE))
    kt = g.add(qnn.TransposeOp.make(k, perm=(0, 1, 3, 2), name="kt"))
    ks = g.add(qnn.MulOp.make(c, kt, name="k_scaled"))
    kf = g.add(quant.FakeQuantOp.make(ks, qtype=Q.make(scale=0.013, zero_point=-5)))
    s = g.add(qnn.MatmulOp.make(qf, kf, name="scores"))
    ctx = g.add(qnn.MatmulOp.make(s, v, name="context"))
    ct = g.add(qnn.TransposeOp.make(ctx, perm=(0, 2, 1, 3), name="ct"))
    cr = g.add(qnn.ReshapeOp.make(ct, shape=(1, 9, 32), name="merged"))
    y = g.add(quant.FakeQuantOp.make(cr, qtype=COPY_QTYPE))
    return g.finish({"y": y, "kt": kt} if also_output else {"y": y})


def test_attention_copies_and_their_fake_quants_are_one_step_each(copy_build):
    module = _attention_copies()
    fused, plain = compile_module(module), compile_module(module, fuse=False)
    names = [s.op.name for s in fused.steps]
    assert "qnn.mul" not in names and names.count("qnn.transpose") == 1   # the qkv one
    assert names.count("quant.fake_quant") == 3 and len(plain.steps) == len(fused.steps) + 5
    x = (np.random.default_rng(2).standard_normal((1, 9, 3, 2, 16)) * 2).astype(np.float32)
    got = execute(fused, {"x": x})[0]["y"]
    np.testing.assert_array_equal(bits(got), bits(execute(plain, {"x": x})[0]["y"]))
    # numpy oracle: the same graph in numpy with the quant types' fake-quant
    t = x.transpose(2, 0, 3, 1, 4)
    q, k, v = (t[i].reshape(1, 2, 9, 16) for i in range(3))
    qf = COPY_QTYPE.fake_quant(q * np.float32(0.5))
    kf = Q.make(scale=0.013, zero_point=-5).fake_quant(
        np.float32(0.5) * k.transpose(0, 1, 3, 2))
    ctx = np.matmul(np.matmul(qf, kf), v)
    want = COPY_QTYPE.fake_quant(ctx.transpose(0, 2, 1, 3).reshape(1, 9, 32))
    assert np.abs(got - want).max() <= np.float32(0.021) * 1.0001
    assert np.mean(got == want) > 0.95


def test_a_copy_whose_inner_value_is_an_output_is_not_fused():
    module = _attention_copies(also_output=True)
    fused, plain = compile_module(module), compile_module(module, fuse=False)
    names = [s.op.name for s in fused.steps]
    assert names.count("qnn.transpose") == 2   # kt is an output: its chain stays
    x = np.random.default_rng(3).standard_normal((1, 9, 3, 2, 16)).astype(np.float32)
    got, want = execute(fused, {"x": x})[0], execute(plain, {"x": x})[0]
    for key in ("y", "kt"):
        np.testing.assert_array_equal(bits(got[key]), bits(want[key]))


def test_a_multiply_by_a_tensor_or_a_per_channel_fake_quant_is_no_copy_step():
    g = ir.Graph()
    x = g.input("x", (2, 3, 8))
    w = g.const(np.arange(8, dtype=np.float32))
    m = g.add(qnn.MulOp.make(x, w, name="by_tensor"))
    a = g.add(quant.FakeQuantOp.make(m, qtype=COPY_QTYPE))
    t = g.add(qnn.TransposeOp.make(x, perm=(0, 2, 1), name="t"))
    b = g.add(quant.FakeQuantOp.make(t, qtype=Q.make_per_axis(axis=1, scales=[0.1] * 8)))
    module = g.finish({"a": a, "b": b})
    fused = compile_module(module)
    assert [s.op.name for s in fused.steps] == ["qnn.mul", "qnn.transpose"]   # in place
    x = (np.random.default_rng(4).standard_normal((2, 3, 8)) * 3).astype(np.float32)
    got, want = execute(fused, {"x": x})[0], execute(compile_module(module, fuse=False),
                                                     {"x": x})[0]
    for key in ("a", "b"):
        np.testing.assert_array_equal(bits(got[key]), bits(want[key]))


# ---------------------------------------- GELU and layer norm (rules 1 and 2)

HIDDEN_QTYPE = Q.make(scale=0.0173, zero_point=-3, bits=8, signed=True)


def _gelu_fq(shape, qtype=HIDDEN_QTYPE):
    g = ir.Graph()
    x = g.input("x", shape)
    t = g.add(qnn.DivOp.make(x, g.const(np.sqrt(np.float32(2)))))
    e = g.add(qnn.ErfOp.make(t))
    p = g.add(qnn.AddOp.make(e, g.const(np.float32(1))))
    m = g.add(qnn.MulOp.make(x, p))
    y = g.add(qnn.MulOp.make(m, g.const(np.float32(0.5)), name="gelu"))
    return g.finish({"y": g.add(quant.FakeQuantOp.make(y, qtype=qtype))})


def _layer_norm_fq(shape, qtype=HIDDEN_QTYPE):
    rng = np.random.default_rng(6)
    g = ir.Graph()
    x = g.input("x", shape)
    mean = g.add(qnn.ReduceMeanOp.make(x, axes=(-1,), keepdims=True))
    d = g.add(qnn.SubOp.make(x, mean))
    var = g.add(qnn.ReduceMeanOp.make(g.add(qnn.PowOp.make(d, g.const(np.float32(2)))),
                                      axes=(-1,), keepdims=True))
    std = g.add(qnn.SqrtOp.make(g.add(qnn.AddOp.make(var, g.const(np.float32(1e-6))))))
    n = g.add(qnn.DivOp.make(d, std))
    gamma = rng.standard_normal(shape[-1]).astype(np.float32)
    beta = rng.standard_normal(shape[-1]).astype(np.float32)
    y = g.add(qnn.AddOp.make(g.add(qnn.MulOp.make(n, g.const(gamma))), g.const(beta),
                             name="ln"))
    return g.finish({"y": g.add(quant.FakeQuantOp.make(y, qtype=qtype))}), gamma, beta


def _gelu64(x):
    from scipy import special
    x = x.astype(np.float64)
    return 0.5 * x * (1 + special.erf(x / np.sqrt(2)))


def _layer_norm64(x, gamma, beta):
    x = x.astype(np.float64)
    d = x - x.mean(-1, keepdims=True)
    return d / np.sqrt((d * d).mean(-1, keepdims=True) + 1e-6) * gamma + beta


@pytest.mark.parametrize("shape", [(1, 197, 768), (3, 5, 40), (2, 9)])
@pytest.mark.parametrize("which", ["gelu", "layer_norm"])
def test_gelu_and_layer_norm_take_their_fake_quant_with_the_unfused_bits(build, threads,
                                                                         which, shape):
    if which == "gelu":
        module, oracle = _gelu_fq(shape), _gelu64
    else:
        module, gamma, beta = _layer_norm_fq(shape)
        oracle = partial(_layer_norm64, gamma=gamma, beta=beta)
    fused, plain = compile_module(module), compile_module(module, fuse=False)
    assert len(fused.steps) == 1 and fused.steps[0].op.name != "quant.fake_quant"
    assert plain.steps[-1].op.name == "quant.fake_quant"
    x = (np.random.default_rng(shape[-1]).standard_normal(shape) * 3).astype(np.float32)
    x.reshape(-1)[::101] = np.float32(-0.0)
    got = execute(fused, {"x": x})[0]["y"]
    np.testing.assert_array_equal(bits(got), bits(execute(plain, {"x": x})[0]["y"]))
    want = HIDDEN_QTYPE.fake_quant(oracle(x).astype(np.float32))
    assert np.abs(got.astype(np.float64) - want).max() <= 0.0173 * 1.0001
    assert np.mean(got == want) > 0.99


def test_gelu_fake_quant_of_nan_and_clipping():
    x = np.array([np.nan, -np.inf, np.inf, 1e30, -3.0, 0.0, -0.0, 2.0], np.float32)
    got = _norm.gelu(x, fake_quant=(0.25, 1.0, -4.0, 3.0))
    assert np.isnan(got[0])
    # gelu(-inf) is NaN (-inf * 0), stays NaN; inf and 1e30 clip at (3 - 1) * 0.25
    np.testing.assert_array_equal(got[2:4], np.float32(0.5))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(_norm.gelu(x)))   # NaN stays NaN
    want = Q.make(scale=0.25, zero_point=1, bits=4, storage_min=-4, storage_max=3).fake_quant(
        _norm.gelu(x[2:]))   # numpy's clip would take a NaN to qmin
    np.testing.assert_array_equal(bits(got[2:]), bits(want))


def _qkv_views(v_reader="fq"):
    """A projection split into query, key and value through a transpose: each part
    scaled, transposed or fake-quantized (or the value read by a matmul)."""
    g, q, k, v = _split_qkv(7)
    c = g.const(np.float32(0.25))
    qf = g.add(quant.FakeQuantOp.make(g.add(qnn.MulOp.make(q, c)), qtype=COPY_QTYPE))
    kt = g.add(qnn.TransposeOp.make(k, perm=(0, 1, 3, 2), name="kt"))
    kf = g.add(quant.FakeQuantOp.make(g.add(qnn.MulOp.make(kt, c)), qtype=COPY_QTYPE))
    if v_reader == "fq":   # then a copy: the fake-quant writes a buffer of the plan
        vf = g.add(quant.FakeQuantOp.make(v, qtype=Q.make(scale=0.05, zero_point=1)))
        vf = g.add(qnn.TransposeOp.make(vf, perm=(0, 1, 3, 2)))
    else:
        vf = g.add(qnn.MatmulOp.make(g.add(qnn.MatmulOp.make(qf, kf)), v))
    return g.finish({"q": qf, "k": kf, "v": vf})


@pytest.mark.parametrize("v_reader", ["fq", "matmul"])
def test_split_transpose_read_in_place_by_its_parts_readers(copy_build, v_reader):
    """When only fake-quants, multiplies and transposes read the parts, the transpose
    and the split are views that those kernels copy from (no copy of the whole);
    a matmul reading a part keeps the copy."""
    module = _qkv_views(v_reader)
    fused, plain = compile_module(module), compile_module(module, fuse=False)
    transpose = next(s for s in fused.steps if s.op.name == "qnn.transpose")
    assert transpose.fresh is (v_reader == "matmul")
    x = (np.random.default_rng(11).standard_normal((1, 7, 3, 2, 16)) * 2).astype(np.float32)
    got, want = execute(fused, {"x": x})[0], execute(plain, {"x": x})[0]
    for key in ("q", "k", "v"):
        np.testing.assert_array_equal(bits(got[key]), bits(want[key]))
    t = x.transpose(2, 0, 3, 1, 4)
    np.testing.assert_array_equal(bits(got["q"]), bits(COPY_QTYPE.fake_quant(
        t[0].reshape(1, 2, 7, 16) * np.float32(0.25))))
    np.testing.assert_array_equal(bits(got["k"]), bits(COPY_QTYPE.fake_quant(
        t[1].reshape(1, 2, 7, 16).transpose(0, 1, 3, 2) * np.float32(0.25))))
    if v_reader == "fq":
        np.testing.assert_array_equal(bits(got["v"]), bits(Q.make(
            scale=0.05, zero_point=1).fake_quant(t[2].reshape(1, 2, 7, 16)).transpose(
                0, 1, 3, 2)))
