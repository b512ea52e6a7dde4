"""Integer kernels (qcc.runtime.int8 and the compiled qcc.runtime._int8): exact
against direct int64 computations, on every instruction set the CPU has; the
requantize rounding rule; the bias rule; onnxruntime's QLinearConv / QLinearMatMul
bit for bit; folding of quantize-of-constant in a plan."""

from fractions import Fraction

import numpy as np
import pytest

from qcc import ir
from qcc.dialects import qnn, quant
from qcc.dialects.quant import UniformQuantizedType as QType
from qcc.passes.realize_int8 import bias_type
from qcc.runtime import compile_module, execute, int8

_C = int8._C
needs_compiled = pytest.mark.skipif(_C is None, reason="qcc.runtime._int8 is not built")
LEVELS = ("avx512", "avx2", "scalar")
"""qcc.runtime.isa levels: every test taking the `level` fixture runs the compiled int8
GEMM forced to each level's variant (skipped where the CPU lacks it)."""


@pytest.fixture(params=LEVELS)
def level(request):
    """Force the int8 GEMM to a level's own variant for the test."""
    if _C is None:
        pytest.skip("qcc.runtime._int8 is not built")
    from qcc.runtime import isa

    variant = isa._INT8[request.param]
    if variant not in _C.supported_isas():
        pytest.skip(f"this CPU does not run the {variant} int8 GEMM")
    old = _C.set_isa(variant)
    try:
        yield variant
    finally:
        _C.set_isa(old)


def rand_q(rng, shape, lo=-128, hi=127, dtype=np.int8):
    return rng.integers(lo, hi + 1, shape).astype(dtype)


# ------------------------------------------------------ direct int64 oracles


def direct_conv(x, w, b, z_x, z_w, strides, pads, dilations, groups):
    """Sum over kernel taps of strided input slices times one weight column (int64)."""
    d = w.ndim - 2
    xs = np.pad(x.astype(np.int64) - z_x, [(0, 0), (0, 0)] + [(pads[i], pads[d + i])
                                                              for i in range(d)])
    ws = w.astype(np.int64) - z_w
    n, c = x.shape[:2]
    o, cg = w.shape[:2]
    og = o // groups
    out_sp = [(xs.shape[2 + i] - dilations[i] * (w.shape[2 + i] - 1) - 1) // strides[i] + 1
              for i in range(d)]
    y = np.zeros((n, o, *out_sp), np.int64)
    for tap in np.ndindex(*w.shape[2:]):
        index = tuple(slice(tap[i] * dilations[i],
                            tap[i] * dilations[i] + strides[i] * (out_sp[i] - 1) + 1, strides[i])
                      for i in range(d))
        for g in range(groups):
            xg = xs[(slice(None), slice(g * cg, (g + 1) * cg)) + index]   # N, cg, *out
            wg = ws[(slice(g * og, (g + 1) * og), slice(None)) + tap]      # og, cg
            y[:, g * og:(g + 1) * og] += np.einsum("nc...,oc->no...", xg, wg)
    if b is not None:
        y += np.asarray(b, np.int64).reshape((1, -1) + (1,) * d)
    return y


def direct_conv_transpose(x, w, b, z_x, z_w, strides, pads, dilations, groups, opad):
    """Scatter every input position times every tap into the full output (int64)."""
    d = w.ndim - 2
    xs, ws = x.astype(np.int64) - z_x, w.astype(np.int64) - z_w
    n, c = x.shape[:2]
    og = w.shape[1]
    cg = c // groups
    full = [strides[i] * (x.shape[2 + i] - 1) + dilations[i] * (w.shape[2 + i] - 1) + 1
            + opad[i] for i in range(d)]
    y = np.zeros((n, og * groups, *full), np.int64)
    for pos in np.ndindex(*x.shape[2:]):
        for tap in np.ndindex(*w.shape[2:]):
            at = tuple(pos[i] * strides[i] + tap[i] * dilations[i] for i in range(d))
            for g in range(groups):
                xv = xs[(slice(None), slice(g * cg, (g + 1) * cg)) + pos]        # N, cg
                wv = ws[(slice(g * cg, (g + 1) * cg), slice(None)) + tap]        # cg, og
                y[(slice(None), slice(g * og, (g + 1) * og)) + at] += xv @ wv
    y = y[(slice(None), slice(None)) + tuple(slice(pads[i], full[i] - pads[d + i])
                                             for i in range(d))]
    if b is not None:
        y += np.asarray(b, np.int64).reshape((1, -1) + (1,) * d)
    return y


def round_half_even(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Exact round-half-to-even of num / den (integers, den > 0)."""
    q, r = np.divmod(num, den)
    up = (2 * r > den) | ((2 * r == den) & (q % 2 == 1))
    return q + up


# ----------------------------------------------------------------- conv

# (x shape, O, kernel, strides, pads, dilations, groups)
CONV_CASES = [
    ((2, 3, 9, 9), 4, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((2, 6, 11, 9), 4, (3, 2), (2, 1), (1, 0, 2, 1), (1, 2), 2),
    ((1, 8, 10, 10), 8, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 8),           # depthwise
    ((1, 8, 13, 12), 16, (3, 3), (2, 2), (0, 1, 1, 0), (1, 1), 8),          # multiplier 2
    ((1, 64, 8, 8), 40, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),           # K = 576
    ((1, 37, 6, 7), 5, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),            # pointwise
    ((2, 5, 17), 7, (4,), (3,), (2, 1), (2,), 1),                           # 1-d
    ((1, 4, 5, 6, 7), 6, (3, 2, 3), (1, 2, 1), (1, 0, 1, 1, 1, 0), (1, 1, 2), 2),  # 3-d
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x".join(map(str, c[0])))
@pytest.mark.parametrize("z_x", [-128, -3, 0, 127])
def test_conv_exact(case, z_x):
    shape, o, k, s, p, dl, g = case
    rng = np.random.default_rng(abs(z_x))
    x = rand_q(rng, shape)
    w = rand_q(rng, (o, shape[1] // g, *k), -127)
    b = rng.integers(-(1 << 20), 1 << 20, o)
    want = direct_conv(x, w, b, z_x, 0, s, p, dl, g)
    got = int8.conv(x, w, b, z_x, 0, s, p, dl, g)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x".join(map(str, c[0])))
@pytest.mark.parametrize("z_x", [-128, 0, 127])
def test_compiled_conv_exact_on_every_isa(case, z_x, level):
    shape, o, k, s, p, dl, g = case
    rng = np.random.default_rng(abs(z_x))
    x = rand_q(rng, shape)
    w = rand_q(rng, (o, shape[1] // g, *k), -127)
    b = rng.integers(-(1 << 20), 1 << 20, o)
    wp, off = int8.pack(w, b, z_x)
    assert _C.isa() == level
    np.testing.assert_array_equal(_C.conv(x, wp, off, k, z_x, s, p, dl, g),
                                  direct_conv(x, w, b, z_x, 0, s, p, dl, g))


def test_compiled_conv_saturating_operands_on_every_isa(level):
    """Every product at its extreme (u = 255 against w = -128 / 127, where a 16-bit
    pair sum would saturate): exact int32 sums on every instruction set."""
    x = np.full((1, 64, 5, 5), 127, np.int8)
    x[:, ::2] = -128
    w = np.where(np.arange(64) % 2, 127, -127).astype(np.int8).reshape(1, 64, 1, 1)
    w = np.concatenate([w, -w, np.full_like(w, 127)])
    b = np.array([0, 7, -7])
    wp, off = int8.pack(w, b, -128)
    want = direct_conv(x, w, b, -128, 0, (1, 1), (0, 0, 0, 0), (1, 1), 1)
    np.testing.assert_array_equal(_C.conv(x, wp, off, (1, 1), -128, (1, 1), (0, 0, 0, 0),
                                          (1, 1), 1), want)


def test_conv_weight_zero_points_per_channel():
    rng = np.random.default_rng(1)
    x, w = rand_q(rng, (1, 4, 6, 6)), rand_q(rng, (3, 4, 3, 3))
    z_w = np.array([-2, 0, 5]).reshape(3, 1, 1, 1)
    want = direct_conv(x, w, None, 7, z_w, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    np.testing.assert_array_equal(
        int8.conv(x, w, None, 7, z_w, (1, 1), (1, 1, 1, 1), (1, 1), 1), want)


@pytest.mark.parametrize("case", [
    ((1, 3, 4, 5), 2, (3, 3), (2, 2), (1, 0, 1, 1), (1, 1), 1, (1, 0)),
    ((2, 4, 3, 3), 6, (2, 3), (1, 2), (0, 1, 0, 0), (2, 1), 2, (0, 1)),
    ((1, 2, 5), 3, (3,), (2,), (1, 1), (1,), 1, (1,)),
])
def test_conv_transpose_exact(case):
    shape, o, k, s, p, dl, g, opad = case
    rng = np.random.default_rng(2)
    x = rand_q(rng, shape)
    w = rand_q(rng, (shape[1], o // g, *k), -127)
    z_w = rng.integers(-3, 4, o // g).reshape((1, -1) + (1,) * len(k))
    b = rng.integers(-1000, 1000, o)
    want = direct_conv_transpose(x, w, b, -5, z_w, s, p, dl, g, opad)
    np.testing.assert_array_equal(int8.conv_transpose(x, w, b, -5, z_w, s, p, dl, g, opad),
                                  want)


# ---------------------------------------------------------- dense, matmul


@pytest.mark.parametrize("m,k,n", [(1, 32, 10), (5, 100, 7), (3, 1, 4), (16, 513, 33)])
def test_dense_exact_on_every_isa(m, k, n, level):
    rng = np.random.default_rng(k)
    x, w = rand_q(rng, (m, k)), rand_q(rng, (n, k), -127)
    b = rng.integers(-(1 << 16), 1 << 16, n)
    want = (x.astype(np.int64) + 9) @ w.astype(np.int64).T + b
    np.testing.assert_array_equal(int8.dense(x, w, b, -9, 0), want)
    wp, off = int8.pack(w, b, -9)
    assert _C.isa() == level
    np.testing.assert_array_equal(_C.dense(x, wp, off), want)


def test_dense_per_channel_weight_zero_points_and_rank3():
    rng = np.random.default_rng(3)
    x, w = rand_q(rng, (2, 3, 8)), rand_q(rng, (4, 8))
    z_w = np.array([1, -1, 0, 3]).reshape(4, 1)
    want = np.einsum("abk,nk->abn", x.astype(np.int64) - 2, w.astype(np.int64) - z_w)
    np.testing.assert_array_equal(int8.dense(x, w, None, 2, z_w), want)


def test_matmul_exact_with_broadcasting_and_zero_points():
    rng = np.random.default_rng(4)
    a, b = rand_q(rng, (2, 1, 3, 5)), rand_q(rng, (4, 5, 6), 0, 255, np.uint8)
    want = np.einsum("xyik,ykj->xyij", np.broadcast_to(a.astype(np.int64) - 7, (2, 4, 3, 5)),
                     b.astype(np.int64) - 128)
    np.testing.assert_array_equal(int8.matmul(a, b, 7, 128), want)


# ------------------------------------------------------------------- pool


def direct_avg_pool(x, z, k, s, pads, ceil, include_pad, dil):
    """Window by window: exact integer sum of x - z and cell count, rounded half to
    even (ONNX windows: declared padding counts with count_include_pad, cells added
    by ceil_mode never do)."""
    d = len(k)
    size = []
    for i in range(d):
        n = x.shape[2 + i]
        span = n + pads[i] + pads[d + i] - (k[i] - 1) * dil[i] - 1
        o = (-(-span // s[i]) if ceil else span // s[i]) + 1
        size.append(o - 1 if ceil and (o - 1) * s[i] >= n + pads[i] else o)
    total = np.zeros((*x.shape[:2], *size), np.int64)
    count = np.zeros(size, np.int64)
    for pos in np.ndindex(*size):
        for tap in np.ndindex(*k):
            at = [pos[i] * s[i] - pads[i] + tap[i] * dil[i] for i in range(d)]
            inside = all(0 <= a < x.shape[2 + i] for i, a in enumerate(at))
            declared = all(-pads[i] <= a < x.shape[2 + i] + pads[d + i]
                           for i, a in enumerate(at))
            if inside:
                total[(slice(None), slice(None), *pos)] += x[(slice(None), slice(None),
                                                              *at)].astype(np.int64) - z
            count[pos] += inside or (include_pad and declared)
    return np.clip(round_half_even(total, count) + z, -128, 127)


@pytest.mark.parametrize("ceil,include_pad,pads,dil", [
    (False, False, (0, 0, 0, 0), (1, 1)), (False, True, (1, 1, 1, 1), (1, 1)),
    (True, False, (1, 0, 1, 0), (1, 1)), (True, True, (0, 1, 1, 0), (1, 1)),
    (False, False, (1, 1, 1, 1), (2, 1))])
def test_avg_pool_rounds_half_to_even_in_the_input_type(ceil, include_pad, pads, dil):
    rng = np.random.default_rng(5)
    q = QType.make(scale=0.1, zero_point=-3)
    x = rand_q(rng, (2, 3, 7, 6))
    k, s = (3, 2), (2, 2)
    got = int8.avg_pool(x, q, k, s, pads, ceil, include_pad, dil)
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, direct_avg_pool(x, -3, k, s, pads, ceil, include_pad,
                                                       dil))


def test_avg_pool_half_cases():
    q = QType.make(scale=1.0, zero_point=0)
    x = np.array([1, 2, 3, 4, -1, -2, -3, -4], np.int8).reshape(1, 1, 1, 8)
    # window sums 3, 7, -3, -7 over 2 cells: 1.5 -> 2, 3.5 -> 4, -1.5 -> -2, -3.5 -> -4
    got = int8.avg_pool(x, q, (1, 2), (1, 2), (0, 0, 0, 0), False, False)
    np.testing.assert_array_equal(got.reshape(-1), [2, 4, -2, -4])
    x = np.array([1, 0, 3, 2, 5, 2], np.int8).reshape(1, 1, 1, 6)
    # sums 1, 5, 7 over 2: 0.5 -> 0, 2.5 -> 2, 3.5 -> 4
    got = int8.avg_pool(x, q, (1, 2), (1, 2), (0, 0, 0, 0), False, False)
    np.testing.assert_array_equal(got.reshape(-1), [0, 2, 4])


# ------------------------------------------------------------- requantize


def test_requantize_rounds_half_to_even_and_clips():
    source = QType.make(scale=0.5, bits=32)
    target = QType.make(scale=1.0, zero_point=-3)
    # acc * 0.5 = 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0, 1000, -1000
    acc = np.array([1, 3, 5, -1, -3, -5, 0, 2000, -2000], np.int32)
    want = np.array([0, 2, 2, 0, -2, -2, 0, 1000, -1000]) - 3
    np.testing.assert_array_equal(int8.requantize(acc, source, target),
                                  np.clip(want, -128, 127))
    narrow = QType.make(scale=1.0, zero_point=-3, storage_min=-3, storage_max=100)
    np.testing.assert_array_equal(int8.requantize(acc, source, narrow),
                                  np.clip(want, -3, 100))


def test_requantize_multiplier_is_float32_of_the_float64_ratio():
    source = QType.make_per_axis(axis=1, scales=[0.1, 0.7], bits=32)
    target = QType.make(scale=0.3, zero_point=5)
    m = [np.float32(0.1 / 0.3), np.float32(0.7 / 0.3)]
    acc = np.arange(-3000, 3000, 7, dtype=np.int32).reshape(-1, 1).repeat(2, 1)
    want = [[min(max(int(np.rint(np.float32(a) * m[c])) + 5, -128), 127) for c, a in
             enumerate(row)] for row in acc]
    np.testing.assert_array_equal(int8.requantize(acc, source, target), want)
    # s_acc / s_y = 0.500000025 rounds to the float32 0.5: the rounding follows the
    # float32 multiplier (onnxruntime's rule), not the exact ratio
    source, target = QType.make(scale=1.0, bits=32), QType.make(scale=1.9999999)
    acc = np.array([1, 3, 5, -1, -5], np.int32)
    exact = [round(Fraction(int(a)) / Fraction(1.9999999)) for a in acc]
    assert exact == [1, 2, 3, -1, -3]
    np.testing.assert_array_equal(int8.requantize(acc, source, target), [0, 2, 2, 0, -2])


def test_requantize_from_int8_subtracts_the_source_zero_point():
    source = QType.make(scale=0.2, zero_point=10)
    target = QType.make(scale=0.4, zero_point=-1)
    q = np.array([10, 11, 12, 13, -128, 127], np.int8)
    # (q - 10) * 0.5 = 0, 0.5, 1, 1.5, -69, 58.5 -> 0, 0, 1, 2, -69, 58
    np.testing.assert_array_equal(int8.requantize(q, source, target),
                                  np.array([0, 0, 1, 2, -69, 58]) - 1)


# ------------------------------------------------------------------ bias


def test_bias_rule_rounds_b_over_input_times_weight_scale():
    qx = QType.make(scale=0.5, zero_point=-3)
    qw = QType.make_per_axis(axis=0, scales=[0.25, 0.125, 0.0625], narrow_range=True)
    qb = bias_type(qx, qw, 1)
    assert qb.bits == 32 and qb.axis == 0 and qb.scales == (0.125, 0.0625, 0.03125)
    assert str(qb) == "!quant.uniform<i32:f32:0, {0.125,0.0625,0.03125}>"
    b = np.array([0.0625, 0.03125 * 3, -0.015625 * 5], np.float32)  # 0.5, 1.5, -2.5 steps
    np.testing.assert_array_equal(qb.quantize(b), [0, 2, -2])
    per_tensor = bias_type(qx, QType.make(scale=0.1), 1)
    assert per_tensor.axis is None and per_tensor.scale == 0.5 * 0.1
    b = np.array([1.0, -2.0, 0.123], np.float32)
    np.testing.assert_array_equal(per_tensor.quantize(b),
                                  np.rint(b / np.float32(0.05)).astype(np.int32))


# ------------------------------------------------------------ onnxruntime


def _ort(node, inputs, outputs):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in inputs.items()
             if k != "x" and k != "a"]
    feeds = {k: v for k, v in inputs.items() if k in ("x", "a")}
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype),
                                                    v.shape) for k, v in feeds.items()],
        [helper.make_tensor_value_info("y", onnx.TensorProto.INT8, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)],
                              ir_version=9)
    from qcc.testing import ort as exact_ort

    return exact_ort.session(model).run(None, feeds)[0]   # the operator as written


def test_conv_and_requantize_match_onnxruntime_qlinearconv():
    from onnx import helper

    rng = np.random.default_rng(6)
    x = rand_q(rng, (2, 8, 9, 9))
    w = rand_q(rng, (16, 8, 3, 3), -127)
    s_x = np.float32(0.5)
    s_w = (2.0 ** -rng.integers(4, 9, 16)).astype(np.float32)  # products exact in f32
    s_y, z_x, z_y = np.float32(0.3712), -4, 3
    b = rng.integers(-5000, 5000, 16).astype(np.int32)
    node = helper.make_node("QLinearConv", ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy", "b"],
                            ["y"], pads=[1, 1, 1, 1], strides=[2, 1])
    want = _ort(node, {"x": x, "sx": s_x, "zx": np.int8(z_x), "w": w, "sw": s_w,
                       "zw": np.zeros(16, np.int8), "sy": s_y, "zy": np.int8(z_y), "b": b},
                ["y"])
    acc = int8.conv(x, w, b, z_x, 0, (2, 1), (1, 1, 1, 1), (1, 1), 1)
    source = QType.make_per_axis(axis=1, scales=[float(s_x) * float(s) for s in s_w], bits=32)
    got = int8.requantize(acc, source, QType.make(scale=float(s_y), zero_point=z_y))
    np.testing.assert_array_equal(got, want)


def test_matmul_and_requantize_match_onnxruntime_qlinearmatmul():
    from onnx import helper

    rng = np.random.default_rng(7)
    a, b = rand_q(rng, (3, 4, 40)), rand_q(rng, (40, 24))
    s_a, s_b, s_y = np.float32(0.25), np.float32(0.0625), np.float32(0.7321)
    node = helper.make_node("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"],
                            ["y"])
    want = _ort(node, {"a": a, "sa": s_a, "za": np.int8(-2), "b": b, "sb": s_b,
                       "zb": np.int8(0), "sy": s_y, "zy": np.int8(-7)}, ["y"])
    acc = int8.matmul(a, b, -2, 0)
    got = int8.requantize(acc, QType.make(scale=float(s_a) * float(s_b), bits=32),
                          QType.make(scale=float(s_y), zero_point=-7))
    np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------- plan


def _quantized_conv_module():
    g = ir.Graph()
    x = g.input("x", (1, 3, 6, 6))
    qx = QType.make(scale=0.05, zero_point=-2)
    qw = QType.make_per_axis(axis=0, scales=[0.01, 0.02], narrow_range=True)
    xq = g.add(quant.QuantizeOp.make(x, qtype=qx))
    w = g.const(np.random.default_rng(8).uniform(-1, 1, (2, 3, 3, 3)).astype(np.float32))
    b = g.const(np.array([0.5, -0.25], np.float32))
    wq = g.add(quant.QuantizeOp.make(w, qtype=qw))
    bq = g.add(quant.QuantizeOp.make(b, qtype=bias_type(qx, qw, 1)))
    acc = g.add(qnn.ConvOp.make(xq, wq, bq, pads=(1, 1, 1, 1)))
    y = g.add(quant.RequantizeOp.make(acc, qtype=QType.make(scale=0.1, zero_point=4)))
    return g.finish({"y": g.add(quant.DequantizeOp.make(y))}), (wq, bq, acc)


def test_quantize_of_a_constant_is_computed_once_per_plan():
    module, (wq, bq, acc) = _quantized_conv_module()
    plan = compile_module(module)
    x = {"x": np.random.default_rng(9).standard_normal((1, 3, 6, 6)).astype(np.float32)}
    out1, kept1 = execute(plan, x, keep=[wq, bq, acc])
    out2, kept2 = execute(plan, x, keep=[wq, bq, acc])
    assert kept1[wq] is kept2[wq] and kept1[bq] is kept2[bq]  # folded, not recomputed
    assert kept1[wq].dtype == np.int8 and kept1[bq].dtype == np.int32
    assert not kept1[wq].flags.writeable
    np.testing.assert_array_equal(out1["y"], out2["y"])
    xq = QType.make(scale=0.05, zero_point=-2).quantize(x["x"])
    want = direct_conv(xq, kept1[wq], kept1[bq], -2, 0, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    np.testing.assert_array_equal(kept1[acc], want)


def test_float_layers_still_run_the_float_kernels():
    g = ir.Graph()
    x = g.input("x", (1, 2, 4, 4))
    w = g.const(np.ones((3, 2, 1, 1), np.float32))
    module = g.finish({"y": g.add(qnn.ConvOp.make(x, w))})
    from qcc.runtime import run

    xv = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4)
    y = run(module, {"x": xv})["y"]
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, np.repeat(xv.sum(1, keepdims=True), 3, 1))


@needs_compiled
def test_compiled_and_numpy_kernels_agree_in_a_plan(monkeypatch):
    module, (_, _, acc) = _quantized_conv_module()
    x = {"x": np.random.default_rng(10).standard_normal((1, 3, 6, 6)).astype(np.float32)}
    _, fast = execute(compile_module(module), x, keep=[acc])
    monkeypatch.setattr(int8, "_C", None)
    _, slow = execute(compile_module(module), x, keep=[acc])
    np.testing.assert_array_equal(fast[acc], slow[acc])


def test_dequantize_of_an_accumulator_is_float32_acc_times_float32_scale():
    g = ir.Graph()
    x = g.input("x", (2, 3))
    acc_type = QType.make_per_axis(axis=1, scales=[0.1, 1e-4, 3.0000001], bits=32)
    acc = g.add(quant.QuantizeOp.make(x, qtype=acc_type))
    module = g.finish({"y": g.add(quant.DequantizeOp.make(acc))})
    xv = np.array([[1e6, 1234.5, -7.0], [-3.3, 0.0123, 9e8]], np.float32)
    out, kept = execute(compile_module(module), {"x": xv}, keep=[acc])
    q = kept[acc]
    assert q.dtype == np.int32
    want = q.astype(np.float32) * np.array(acc_type.scales, np.float32)
    np.testing.assert_array_equal(out["y"], want)


@needs_compiled
def test_weights_are_packed_once_when_the_plan_is_compiled(monkeypatch):
    module, (_, _, acc) = _quantized_conv_module()
    calls = []
    real_pack = int8.pack
    monkeypatch.setattr(int8, "pack", lambda *a: calls.append(1) or real_pack(*a))
    plan = compile_module(module)
    assert len(calls) == 1  # at compile time, from the folded constants
    x = {"x": np.random.default_rng(11).standard_normal((1, 3, 6, 6)).astype(np.float32)}
    outs = [execute(plan, x, keep=[acc]) for _ in range(3)]
    assert len(calls) == 1
    xq = QType.make(scale=0.05, zero_point=-2).quantize(x["x"])
    wq = [op for op in module.walk() if isinstance(op, quant.QuantizeOp)][1]
    w = wq.properties["qtype"].quantize(ir.array_of(wq.operands[0].owner))
    bq = [op for op in module.walk() if isinstance(op, quant.QuantizeOp)][2]
    b = bq.properties["qtype"].quantize(ir.array_of(bq.operands[0].owner))
    want = direct_conv(xq, w, b, -2, 0, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    for _, kept in outs:
        np.testing.assert_array_equal(kept[acc], want)
