"""The float conv's fused activation (`_conv.conv(..., activation=)`) and its depthwise
planes shared by threads: the same bits as numpy's maximum / clip applied to the
unfused output (NaN and -0 included), on every GEMM variant, thread count and path
(column tasks, row tasks, depthwise); the depthwise result against a float64 numpy
convolution."""

import numpy as np
import pytest

from qcc.runtime import isa

_conv = isa._conv
pytestmark = pytest.mark.skipif(_conv is None, reason="qcc.runtime._conv is not built")


@pytest.fixture(params=[1, 2])
def threads(request):
    old_t = _conv._set_threads(request.param)
    old_min = _conv._set_parallel_min(0.0)   # every GEMM shared, also the small ones
    old_dw = _conv._set_depthwise_parallel_min(0.0)   # and every depthwise conv
    yield request.param
    _conv._set_threads(old_t)
    _conv._set_parallel_min(old_min)
    _conv._set_depthwise_parallel_min(old_dw)


def conv64(x, w, b, stride, pad, groups):
    """Direct 2-D convolution in float64 (tap by tap sums of strided slices)."""
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    o, cg, kh, kw = w.shape
    og = o // groups
    oh = (xp.shape[2] - kh) // stride + 1
    ow = (xp.shape[3] - kw) // stride + 1
    y = np.zeros((x.shape[0], o, oh, ow)) + b.reshape(1, -1, 1, 1)
    for i in range(kh):
        for j in range(kw):
            xs = xp[:, :, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
            for g in range(groups):
                y[:, g * og:(g + 1) * og] += np.einsum(
                    "nchw,oc->nohw", xs[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og, :, i, j])
    return y


def bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


# (x shape, O, k, stride, pad, groups): GEMM by columns, GEMM by rows (few positions),
# depth longer than a chunk, depthwise, depthwise with a channel multiplier
CASES = [
    ((2, 8, 17, 19), 12, 3, 1, 1, 1),
    ((1, 40, 6, 6), 24, 3, 2, 1, 1),
    ((1, 300, 5, 5), 9, 1, 1, 0, 1),
    ((2, 64, 40, 40), 64, 3, 1, 1, 64),
    ((1, 16, 30, 31), 32, 3, 2, 1, 16),
]
ACTIVATIONS = ["relu", ("clip", -0.25, 0.5), ("clip", 0.0, 6.0)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[0])) + f"-g{c[5]}")
@pytest.mark.parametrize("act", ACTIVATIONS, ids=str)
def test_fused_activation_is_numpy_on_the_unfused_output(case, act, variant, threads):
    shape, o, k, s, p, g = case
    rng = np.random.default_rng(o + k)
    x = rng.standard_normal(shape, dtype=np.float32)
    x.reshape(-1)[::97] = np.nan
    w = rng.standard_normal((o, shape[1] // g, k, k), dtype=np.float32) * 0.3
    b = rng.standard_normal(o, dtype=np.float32)
    b[::5] = -0.0
    args = ((s, s), (p,) * 4, (1, 1), g)
    plain = _conv.conv(x, w, b, *args)
    fused = _conv.conv(x, w, b, *args, activation=act)
    if act == "relu":
        want = np.maximum(plain, 0, dtype=np.float32)
    else:
        want = np.clip(plain, np.float32(act[1]), np.float32(act[2]))
    np.testing.assert_array_equal(bits(fused), bits(want))


def test_relu_makes_negative_zero_positive_and_clip_keeps_it(variant):
    """x = 0 and w < 0 with bias -0: every sum is -0.0."""
    x = np.zeros((1, 2, 4, 4), np.float32)
    w = -np.ones((3, 2, 1, 1), np.float32)
    b = np.full(3, -0.0, np.float32)
    args = ((1, 1), (0, 0, 0, 0), (1, 1), 1)
    assert np.all(np.signbit(_conv.conv(x, w, b, *args)))
    assert not np.any(np.signbit(_conv.conv(x, w, b, *args, activation="relu")))
    assert np.all(np.signbit(_conv.conv(x, w, b, *args, activation=("clip", 0.0, 6.0))))


@pytest.mark.parametrize("case", [CASES[3], CASES[4]], ids=["dw", "dw-mult2"])
def test_depthwise_threads_give_the_same_bits_and_match_float64(case, variant):
    shape, o, k, s, p, g = case
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape, dtype=np.float32)
    w = rng.standard_normal((o, 1, k, k), dtype=np.float32)
    b = rng.standard_normal(o, dtype=np.float32)
    args = ((s, s), (p,) * 4, (1, 1), g)
    outs = []
    old_dw = _conv._set_depthwise_parallel_min(0.0)   # planes shared even when few
    try:
        for n in (1, 2):
            old = _conv._set_threads(n)
            try:
                outs.append(_conv.conv(x, w, b, *args))
            finally:
                _conv._set_threads(old)
    finally:
        _conv._set_depthwise_parallel_min(old_dw)
    np.testing.assert_array_equal(bits(outs[0]), bits(outs[1]))
    np.testing.assert_allclose(outs[0], conv64(x, w, b, s, p, g), rtol=1e-5, atol=1e-5)


def test_unknown_activation_is_rejected_with_the_accepted_forms():
    x = np.zeros((1, 1, 3, 3), np.float32)
    w = np.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r"'gelu'.*None, 'relu', \('clip', lo, hi\)"):
        _conv.conv(x, w, None, (1, 1), (0, 0, 0, 0), (1, 1), 1, activation="gelu")
