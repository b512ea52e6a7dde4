"""The element-wise C kernels (runtime/_eltwise.pyx) and the float conv's fused
epilogue (batch_norm affine, residual add, activation, fake-quant; runtime/_common.h):
bit for bit the numbers of qnn_eval's numpy formulas and of quantize-then-dequantize
(NaN, infinities, -0, ties, saturation, negative zero points, every axis), on every
GEMM variant and thread count; and the executor fusing them into the conv's step with
the numbers of the unfused plan."""

import numpy as np
import pytest

from qcc import ir
from qcc.dialects import qnn, quant
from qcc.dialects.qnn_eval import EVAL
from qcc.dialects.quant import UniformQuantizedType as Q
from qcc.runtime import compile_module, execute, isa
from qcc.runtime import ops as K

_conv = isa._conv
E = K.ELTWISE
pytestmark = pytest.mark.skipif(_conv is None or E is None,
                                reason="the compiled runtime is not built")


def bits(a):
    """float32 bits, every NaN alike (their payloads are not compared)."""
    a = np.array(a, np.float32)
    a[np.isnan(a)] = np.nan
    return a.view(np.uint32)


def samples(n, seed=0):
    rng = np.random.default_rng(seed)
    special = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 3.0, -3.0, 1e30, -1e30,
                        1e-40, -1e-40, 6.0, -6.0, 2.5, -2.5], np.float32)
    x = rng.standard_normal(n).astype(np.float32) * 5
    x[:special.size] = special
    return x


def _unary_op(cls, **props):
    g = ir.Graph()
    x = g.input("x", (4,))
    return g.add(cls.make(x, **props)).owner


UNARY = [(qnn.HardSwishOp, {}), (qnn.HardSigmoidOp, {}),
         (qnn.HardSigmoidOp, {"alpha": 1 / 6, "beta": 0.5}), (qnn.SigmoidOp, {}),
         (qnn.ReluOp, {}), (qnn.ClipOp, {"min": -0.5, "max": 6.0})]


@pytest.mark.parametrize("n", [1000, 300_001], ids=["small", "threaded"])
@pytest.mark.parametrize("cls,props", UNARY, ids=lambda v: getattr(v, "name", str(v)))
@pytest.mark.filterwarnings("ignore:invalid value")
def test_activation_kernels_are_qnn_evals_numpy(cls, props, n):
    op = _unary_op(cls, **props)
    x = samples(n)
    want = EVAL[op.name](op, x)
    kernel = K.build(op, [None])
    got = kernel.fn(x)
    np.testing.assert_array_equal(bits(got), bits(want))
    if kernel.takes_out:  # in place, as a fused follower runs it
        y = x.copy()
        assert kernel.fn(y, out=y) is y
        np.testing.assert_array_equal(bits(y), bits(want))


@pytest.mark.parametrize("n", [1000, 300_001], ids=["small", "threaded"])
def test_activation_into_another_buffer_reads_every_kind_of_input(n):
    """The kernel reads x chunk by chunk while writing `out`: a separate buffer, an
    overlapping view of the same memory (shifted by one element: read before it is
    written), a float64 x and a strided one all give numpy's numbers."""
    op = _unary_op(qnn.HardSwishOp)
    x = samples(n, seed=3)
    want = bits(EVAL[op.name](op, x))
    out = np.full(n, 7.0, np.float32)
    assert E.activation(x, "hard_swish", out=out) is out
    np.testing.assert_array_equal(bits(out), want)
    for shift in (1, -1):
        buf = np.zeros(n + 1, np.float32)
        src, dst = (buf[:-1], buf[1:]) if shift == 1 else (buf[1:], buf[:-1])
        src[...] = x
        E.activation(src, "hard_swish", out=dst)
        np.testing.assert_array_equal(bits(dst), want)
    np.testing.assert_array_equal(bits(E.activation(x.astype(np.float64), "hard_swish")), want)
    wide = np.zeros(2 * n, np.float32)
    wide[::2] = x
    np.testing.assert_array_equal(bits(E.activation(wide[::2], "hard_swish")), want)
    fq = E.fake_quant(wide[::2], np.float32(0.05), np.float32(3), -128, 127,
                      out=np.empty(n, np.float32))
    np.testing.assert_array_equal(bits(fq), bits(E.fake_quant(x, np.float32(0.05),
                                                               np.float32(3), -128, 127)))


# scale, zero point, storage range: per tensor
PER_TENSOR = [(0.05, 0, -128, 127), (0.1, -3, -128, 127), (0.02, 10, 0, 255),
              (0.25, 0, -127, 127), (1.0, -8, -8, 7), (0.5, 200, 0, 255)]


@pytest.mark.parametrize("s,z,lo,hi", PER_TENSOR)
def test_fake_quant_is_quantize_then_dequantize(s, z, lo, hi):
    """The oracle quantizes to integers (float64 zero point, integer clip) and
    dequantizes: another algorithm than the kernel's float32 one."""
    bits_ = 4 if hi == 7 else 8
    qtype = Q.make(scale=s, zero_point=z, bits=bits_, signed=lo < 0,
                   storage_min=lo, storage_max=hi)
    x = samples(200_001, seed=int(s * 100))
    x = x[np.isfinite(x) | np.isinf(x)]  # NaN has no integer
    got = E.fake_quant(x, np.float32(s), np.float32(z), lo, hi)
    np.testing.assert_array_equal(bits(got), bits(qtype.fake_quant(x)))


@pytest.mark.parametrize("n", [16, 16_383, 16_385, 65_535, 65_536, 70_001])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_element_wise_tasks_cover_every_element_once(n, threads):
    """Jobs from 4 chunks of 16384 elements are shared by the threads, chunk by chunk
    (runtime/_eltwise_impl.h): a fake-quant (into a new array and in place) and a
    residual add of sizes around those edges give the quantize-then-dequantize
    oracle's and numpy's bits at any thread count (an element skipped or done twice
    in place would show)."""
    qtype = Q.make(scale=0.05, zero_point=3, bits=8, signed=True)
    x = samples(n, seed=n)
    x = x[np.isfinite(x) | np.isinf(x)]
    old = E._set_threads(threads)
    try:
        got = E.fake_quant(x, np.float32(0.05), np.float32(3), -128, 127)
        y = x.copy()
        E.fake_quant(y, np.float32(0.05), np.float32(3), -128, 127, out=y)   # in place
        b = samples(len(x), seed=n + 1)
        added = E.add(x, b)
    finally:
        E._set_threads(old)
    want = qtype.fake_quant(x)
    np.testing.assert_array_equal(bits(got), bits(want))
    np.testing.assert_array_equal(bits(y), bits(want))
    np.testing.assert_array_equal(bits(added), bits(x + b))


def test_fake_quant_hand_values_ties_to_even_and_saturates():
    s, z = np.float32(0.5), np.float32(-3)  # q = rint(x / 0.5) - 3 in [-8, 7]
    x = np.array([0.25, 0.75, -0.25, -0.75, 1.25, 100.0, -100.0, np.inf, -np.inf, 2.0],
                 np.float32)
    # x/s: 0.5 -> 0, 1.5 -> 2, -0.5 -> -0, -1.5 -> -2, 2.5 -> 2; then clip to [-8, 7]
    q = np.array([-3, -1, -3, -5, -1, 7, -8, 7, -8, 1], np.float32)
    want = (q - z) * s
    got = E.fake_quant(x, s, z, -8, 7)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(E.fake_quant(np.array([np.nan], np.float32), s, z, -8, 7)[0])


@pytest.mark.parametrize("s,z,lo,hi", [(0.0123, 3, -128, 127), (1 / 255, 0, 0, 255),
                                        (1e-5, -7, -128, 127), (6.5, 128, 0, 255),
                                        (2.0**-70, 0, -128, 127), (2.0**70, 1, 0, 255),
                                        (0.05, 2**22, 0, 255)])
def test_fake_quant_without_a_division_has_the_division_bits(s, z, lo, hi):
    """The kernel's v / s is a corrected product, rint and the zero point one shifted
    sum (runtime/_epilogue.h, qcc_fq_one; tools/verify/fq_div.c checks all 2^32
    inputs at 12 scales); against numpy's float32 division form
    (qcc.runtime.ops.fake_quant_into): 2^20 random bit patterns, the ties k + 0.5
    of the scale and their neighbours, +-0, infinities, subnormals and the largest
    floats. Extreme scales (2^-70, 2^70) and a zero point 2^22 away from the range
    take the division itself."""
    rng = np.random.default_rng(7)
    s32, z32 = np.float32(s), np.float32(z)
    ties = (rng.integers(-300, 300, 4096) + 0.5).astype(np.float32) * s32
    x = np.concatenate([rng.integers(0, 2**32, 2**20, dtype=np.uint64).astype(np.uint32)
                        .view(np.float32), ties, np.nextafter(ties, np.float32(np.inf)),
                        np.nextafter(ties, np.float32(-np.inf)),
                        np.array([0.0, -0.0, np.inf, -np.inf, 1e-45, -1e-45, 3.4e38, -3.4e38],
                                 np.float32)])
    x = x[~np.isnan(x)]   # NaN: checked below
    want = K.fake_quant_into(s32, z32, lo, hi, x.copy())
    got = E.fake_quant(x, s32, z32, lo, hi)
    np.testing.assert_array_equal(bits(got), bits(want))
    assert np.isnan(E.fake_quant(np.float32([np.nan]), s32, z32, lo, hi)).all()


@pytest.mark.parametrize("axis", [0, 1, 2, 3])
def test_per_channel_fake_quant_on_every_axis(axis):
    rng = np.random.default_rng(axis)
    x = rng.standard_normal((3, 7, 5, 11)).astype(np.float32) * 3
    n = x.shape[axis]
    scales = [float(v) for v in rng.uniform(0.01, 0.1, n).astype(np.float32)]
    zeros = [int(v) for v in rng.integers(-20, 20, n)]
    qtype = Q.make_per_axis(axis=axis, scales=scales, zero_points=zeros)
    got = E.fake_quant(x, np.array(scales, np.float32), np.array(zeros, np.float32),
                       qtype.storage_min, qtype.storage_max, axis)
    np.testing.assert_array_equal(bits(got), bits(qtype.fake_quant(x)))


# ----------------------------------------------------------- the conv's epilogue


@pytest.fixture(params=[1, 2])
def threads(request):
    old_t = _conv._set_threads(request.param)
    old_min = _conv._set_parallel_min(0.0)
    yield request.param
    _conv._set_threads(old_t)
    _conv._set_parallel_min(old_min)


# (x shape, O, k, stride, pad, groups): GEMM by columns, by rows, depthwise, and a
# batch of small outputs (one GEMM over all images into scratch, then copied out; the
# last two big enough for the threads to share the padded copies and the copy out)
CASES = [((2, 8, 17, 19), 12, 3, 1, 1, 1), ((1, 40, 6, 6), 24, 3, 2, 1, 1),
         ((2, 16, 20, 20), 16, 3, 1, 1, 16), ((5, 24, 4, 4), 20, 3, 1, 1, 1),
         ((8, 32, 10, 10), 48, 3, 1, 1, 1), ((8, 32, 16, 16), 64, 1, 2, 0, 1)]
ACTS = [None, "relu", ("clip", 0.0, 6.0), "hard_swish", ("hard_sigmoid", 0.2, 0.5),
        "sigmoid"]


def _numpy_activation(y, act):
    if act is None:
        return y
    kind = act if isinstance(act, str) else act[0]
    props = {"clip": lambda: {"min": act[1], "max": act[2]},
             "hard_sigmoid": lambda: {"alpha": act[1], "beta": act[2]}}
    cls = {"relu": qnn.ReluOp, "clip": qnn.ClipOp, "hard_swish": qnn.HardSwishOp,
           "hard_sigmoid": qnn.HardSigmoidOp, "sigmoid": qnn.SigmoidOp}[kind]
    op = _unary_op(cls, **props.get(kind, dict)())
    return EVAL[op.name](op, y)


@pytest.mark.parametrize("case", CASES, ids=["cols", "rows", "dw", "images", "images-big",
                                          "images-s2"])
@pytest.mark.parametrize("act", ACTS, ids=str)
def test_epilogue_is_numpy_after_the_plain_conv(case, act, variant, threads):
    shape, o, k, st, p, g = case
    rng = np.random.default_rng(o + k)
    x = rng.standard_normal(shape, dtype=np.float32)
    x.reshape(-1)[::101] = np.nan
    w = rng.standard_normal((o, shape[1] // g, k, k), dtype=np.float32) * 0.3
    b = rng.standard_normal(o, dtype=np.float32)
    args = ((st, st), (p,) * 4, (1, 1), g)
    plain = _conv.conv(x, w, b, *args)
    mul = rng.uniform(0.5, 2, o).astype(np.float32)
    shift = rng.standard_normal(o).astype(np.float32)
    skip = rng.standard_normal(plain.shape, dtype=np.float32)
    scales = rng.uniform(0.01, 0.05, o).astype(np.float32)
    zeros = rng.integers(-10, 10, o).astype(np.float32)
    c = (slice(None), None, None)
    y = plain * mul[c]
    y = y + shift[c]
    y = _numpy_activation(y + skip, act)
    per_channel = Q.make_per_axis(axis=1, scales=[float(v) for v in scales],
                                  zero_points=[int(v) for v in zeros])
    want = per_channel.fake_quant(np.nan_to_num(y))
    got = _conv.conv(x, w, b, *args, activation=act, residual=skip, affine=(mul, shift),
                     fake_quant=(scales, zeros, -128, 127))
    ok = ~np.isnan(y)  # NaN has no integer: the oracle cannot say
    np.testing.assert_array_equal(bits(got)[ok], bits(want)[ok])
    assert np.isnan(got[~ok]).all()
    # per tensor, without residual: the same as numpy's activation
    z = np.abs(zeros[:1])
    got = _conv.conv(x, w, b, *args, activation=act, fake_quant=(scales[:1], z, 0, 255))
    per_tensor = Q.make(scale=float(scales[0]), zero_point=int(z[0]), signed=False)
    y = _numpy_activation(plain, act)
    ok = ~np.isnan(y)
    want = per_tensor.fake_quant(np.nan_to_num(y))
    np.testing.assert_array_equal(bits(got)[ok], bits(want)[ok])


@pytest.mark.parametrize("case", CASES, ids=["cols", "rows", "dw", "images", "images-big",
                                          "images-s2"])
@pytest.mark.parametrize("act", ACTS[1:], ids=str)
def test_an_activation_alone_is_numpy_after_the_plain_conv(case, act, variant, threads):
    """An activation with nothing else to apply (the AVX2 GEMM applies relu, clip and
    hard-swish to its tiles in registers, the others after): the bits of numpy's
    float32 formula on the plain conv's output, NaN included (test_conv_fused.py
    checks relu's and clip's -0)."""
    shape, o, k, st, p, g = case
    rng = np.random.default_rng(o + k + 1)
    x = rng.standard_normal(shape, dtype=np.float32)
    x.reshape(-1)[::97] = np.nan
    w = rng.standard_normal((o, shape[1] // g, k, k), dtype=np.float32) * 0.3
    b = rng.standard_normal(o, dtype=np.float32)
    args = ((st, st), (p,) * 4, (1, 1), g)
    want = _numpy_activation(_conv.conv(x, w, b, *args), act)
    got = _conv.conv(x, w, b, *args, activation=act)
    np.testing.assert_array_equal(bits(got), bits(want))


# (x shape, O, k, stride, pad): on AVX-512, channels in the lanes (few positions, or
# channels filling their 64-lane blocks; 3x3 or deep 1x1) and packed panels (a shallow
# 1x1 of many positions, few channels of a wide plane); the AVX2 and plain GEMMs take
# their own tiles; tails in rows and columns; small planes (one GEMM for the batch into
# scratch: the epilogue after the copy out)
IN_KERNEL = [((1, 16, 17, 18), 70, 3, 1, 1), ((1, 8, 36, 36), 64, 3, 1, 1),
             ((1, 256, 16, 17), 40, 1, 1, 0), ((1, 24, 40, 33), 130, 1, 1, 0),
             ((1, 12, 35, 37), 20, 3, 2, 1), ((2, 8, 6, 6), 9, 3, 1, 1)]


@pytest.mark.parametrize("case", IN_KERNEL, ids=lambda c: "x".join(map(str, c[0])) + f"-o{c[1]}")
@pytest.mark.parametrize("act", ACTS[:5], ids=str)
@pytest.mark.filterwarnings("ignore:invalid value")
def test_a_residual_and_activation_are_numpy_after_the_plain_conv(case, act, variant, threads):
    """A residual with an activation or none (the AVX2 and AVX-512 GEMMs add it and
    activate in their registers, hard-sigmoid after): the bits of numpy's float32 sum,
    then its formula, on the plain conv's output; NaN, infinities and sums of exactly
    zero included."""
    shape, o, k, st, p = case
    rng = np.random.default_rng(o * 3 + k)
    x = rng.standard_normal(shape, dtype=np.float32)
    x.reshape(-1)[::89] = np.nan
    w = rng.standard_normal((o, shape[1], k, k), dtype=np.float32) * 0.3
    b = rng.standard_normal(o, dtype=np.float32)
    args = ((st, st), (p,) * 4, (1, 1), 1)
    plain = _conv.conv(x, w, b, *args)
    skip = rng.standard_normal(plain.shape, dtype=np.float32) * 3
    flat = skip.reshape(-1)
    flat[::7] = -plain.reshape(-1)[::7]            # sums of exactly 0 (+0, or NaN)
    flat[3::11] = np.inf
    flat[5::13] = -np.inf
    flat[6::17] = np.nan
    want = _numpy_activation(plain + skip, act)
    got = _conv.conv(x, w, b, *args, activation=act, residual=skip)
    np.testing.assert_array_equal(bits(got), bits(want))


def test_residual_must_be_a_separate_array_of_the_outputs_shape():
    x = np.zeros((1, 2, 4, 4), np.float32)
    w = np.ones((3, 2, 1, 1), np.float32)
    out = np.empty((1, 3, 4, 4), np.float32)
    args = ((1, 1), (0, 0, 0, 0), (1, 1), 1)
    with pytest.raises(ValueError, match="residual"):
        _conv.conv(x, w, None, *args, out=out, residual=out)
    with pytest.raises(ValueError, match="residual"):
        _conv.conv(x, w, None, *args, residual=np.zeros((1, 3, 4), np.float32))


# ----------------------------------------------------------------- the executor


def _resnet_block(batch=2):
    """conv -> bn -> add(skip conv) -> relu -> fake_quant -> conv -> hard_swish ->
    fake_quant (per channel) -> conv -> hard_sigmoid."""
    rng = np.random.default_rng(7)
    g = ir.Graph()
    x = g.input("x", (batch, 4, 6, 6))

    def w(o, c):
        return g.const(rng.standard_normal((o, c, 3, 3)).astype(np.float32) * 0.3)

    stats = [g.const(a.astype(np.float32)) for a in (
        rng.uniform(0.5, 2, 8), rng.standard_normal(8), rng.standard_normal(8),
        rng.uniform(0.1, 3, 8))]
    h = g.add(qnn.ConvOp.make(x, w(8, 4), pads=(1, 1, 1, 1), name="c0"))
    h = g.add(qnn.BatchNormOp.make(h, *stats, epsilon=1e-3, name="bn"))
    skip = g.add(qnn.ConvOp.make(x, w(8, 4), pads=(1, 1, 1, 1), name="down"))
    h = g.add(qnn.AddOp.make(skip, h, name="add"))
    h = g.add(qnn.ReluOp.make(h, name="relu"))
    h = g.add(quant.FakeQuantOp.make(h, qtype=Q.make(scale=0.05, zero_point=-20)))
    h = g.add(qnn.ConvOp.make(h, w(8, 8), pads=(1, 1, 1, 1), name="c1"))
    h = g.add(qnn.HardSwishOp.make(h, name="hs"))
    h = g.add(quant.FakeQuantOp.make(h, qtype=Q.make_per_axis(
        axis=1, scales=[0.01 * (i + 1) for i in range(8)], zero_points=[-i for i in range(8)])))
    h = g.add(qnn.ConvOp.make(h, w(8, 8), pads=(1, 1, 1, 1), name="c2"))
    y = g.add(qnn.HardSigmoidOp.make(h, name="hsig"))
    return g.finish({"y": y})


@pytest.mark.parametrize("batch", [2, None])
def test_executor_fuses_bn_residual_activation_and_fake_quant_into_the_conv(batch):
    module = _resnet_block(batch)
    fused, plain = compile_module(module), compile_module(module, fuse=False)
    convs = [s for s in fused.steps if not s.layout_copy]   # blocked plans copy c1's out
    assert [s.op.name for s in convs] == ["qnn.conv"] * 4
    assert len(convs[1].args) == len(plain.steps[0].args) + 1  # the skip
    rng = np.random.default_rng(9)
    for n in (2, 2) if batch else (2, 3):
        xv = {"x": rng.standard_normal((n, 4, 6, 6)).astype(np.float32)}
        want = execute(plain, xv)[0]["y"]
        np.testing.assert_array_equal(bits(execute(fused, xv)[0]["y"]), bits(want))
    # a run that keeps a value the fused steps hide takes the unfused steps
    kept = execute(fused, xv, keep=[v for v in fused.slot_of if plain.names.get(
        fused.slot_of[v]) == "add"])
    np.testing.assert_array_equal(bits(kept[0]["y"]), bits(want))


def test_fused_residual_step_without_a_buffer_computes_unfused():
    """A concurrent run (the shared buffers taken) calls the step without `out`."""
    module = _resnet_block()
    fused, plain = compile_module(module), compile_module(module, fuse=False)
    xv = {"x": np.random.default_rng(1).standard_normal((2, 4, 6, 6)).astype(np.float32)}
    with fused.buffers_in_use:
        got = execute(fused, xv)[0]["y"]
    np.testing.assert_array_equal(bits(got), bits(execute(plain, xv)[0]["y"]))


def test_add_of_a_broadcast_operand_is_not_a_residual():
    rng = np.random.default_rng(2)
    g = ir.Graph()
    x = g.input("x", (1, 4, 5, 5))
    s = g.input("s", (1, 4, 1, 1))
    h = g.add(qnn.ConvOp.make(x, g.const(rng.standard_normal((4, 4, 1, 1)).astype(
        np.float32))))
    y = g.add(qnn.AddOp.make(h, s))
    module = g.finish({"y": y})
    fused = compile_module(module)
    assert [st.op.name for st in fused.steps] == ["qnn.conv", "qnn.add"]


def test_binary_ops_of_two_tensors_write_into_buffers_with_numpys_numbers():
    rng = np.random.default_rng(3)
    g = ir.Graph()
    a, b = g.input("a", (2, 3, 4)), g.input("b", (1, 3, 1))
    h = g.add(qnn.SubOp.make(a, b))
    h = g.add(qnn.DivOp.make(h, b))
    h = g.add(qnn.MulOp.make(h, a))
    y = g.add(qnn.AddOp.make(h, b))
    plan = compile_module(g.finish({"y": y}))
    assert all(s.takes_out for s in plan.steps)
    av = rng.standard_normal((2, 3, 4)).astype(np.float32)
    bv = rng.standard_normal((1, 3, 1)).astype(np.float32)
    bv[0, 0, 0] = 0.0  # inf and NaN through the division
    for _ in range(2):  # the second run reuses the buffers
        with np.errstate(all="ignore"):
            got = execute(plan, {"a": av, "b": bv})[0]["y"]
            want = (av - bv) / bv * av + bv
        np.testing.assert_array_equal(bits(got), bits(want))


@pytest.mark.parametrize("n", [1000, 300_001], ids=["small", "threaded"])
@pytest.mark.parametrize("kind", [None, "relu", ("clip", -0.5, 6.0), "hard_swish"],
                         ids=str)
@pytest.mark.filterwarnings("ignore:invalid value")
def test_compiled_add_is_numpys_sum_then_the_activation(kind, n):
    """out = act(a + b) in one pass: numpy's float32 sum (inf - inf is NaN, -0 + -0
    is -0), then qnn_eval's activation; into a new array, a, b, or another buffer."""
    a, b = samples(n, seed=5), samples(n, seed=6)
    b[:4] = [-np.inf, -0.0, np.nan, 1e30]
    a[:4] = [np.inf, -0.0, 1.0, 1e30]
    with np.errstate(all="ignore"):
        s = a + b
    name, lo, hi = (kind, 0.0, 0.0) if not isinstance(kind, tuple) else kind
    if name is None:
        want = bits(s)
    else:
        cls = {"relu": qnn.ReluOp, "clip": qnn.ClipOp, "hard_swish": qnn.HardSwishOp}[name]
        op = _unary_op(cls, **({"min": lo, "max": hi} if name == "clip" else {}))
        want = bits(EVAL[op.name](op, s))
    np.testing.assert_array_equal(bits(E.add(a, b, name, lo, hi)), want)
    for target in ("a", "b", "other"):
        a2, b2 = a.copy(), b.copy()
        out = {"a": a2, "b": b2, "other": np.empty_like(a)}[target]
        assert E.add(a2, b2, name, lo, hi, out=out) is out
        np.testing.assert_array_equal(bits(out), want, err_msg=f"out={target}")
    with pytest.raises(ValueError, match="differ"):
        E.add(a, b[:-1])


def test_executor_runs_add_and_relu_as_one_compiled_step():
    """Two float tensors added, then relu, the sum also feeding a later add (an int8
    model's residual block between quantized convs): one step for the add and the
    relu, numpy's numbers."""
    rng = np.random.default_rng(4)
    g = ir.Graph()
    a, b = g.input("a", (2, 8, 40, 40)), g.input("b", (2, 8, 40, 40))
    h = g.add(qnn.ReluOp.make(g.add(qnn.AddOp.make(a, b))))
    y = g.add(qnn.AddOp.make(h, a))
    plan = compile_module(g.finish({"y": y}))
    assert [st.op.name for st in plan.steps] == ["qnn.add", "qnn.add"]
    av = rng.standard_normal((2, 8, 40, 40)).astype(np.float32)
    bv = rng.standard_normal((2, 8, 40, 40)).astype(np.float32)
    for _ in range(2):
        got = execute(plan, {"a": av, "b": bv})[0]["y"]
        np.testing.assert_array_equal(bits(got), bits(np.maximum(av + bv, 0) + av))
