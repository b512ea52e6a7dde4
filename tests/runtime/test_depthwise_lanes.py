"""The float depthwise convolution's two paths: output rows in the vector lanes
(long rows) and 16 channels side by side in the lanes (short rows, runtime/_depthwise_lanes.h
`qcc_dwcb_*`). Both round like the GEMM (bias, then one FMA per tap in order), so they
give the same bits on every GEMM variant and thread count, with the fused epilogue
too; the result against a float64 numpy convolution."""

import numpy as np
import pytest

from qcc.runtime import isa

_conv = isa._conv
pytestmark = pytest.mark.skipif(_conv is None, reason="qcc.runtime._conv is not built")


def conv64(x, w, b, strides, pads, dilations, groups):
    """Direct N-d convolution in float64, tap by tap (pads: ONNX begin..., end...)."""
    d = x.ndim - 2
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + [(pads[i], pads[d + i]) for i in range(d)])
    o, cg = w.shape[:2]
    og = o // groups
    k = w.shape[2:]
    osp = [(xp.shape[2 + i] - dilations[i] * (k[i] - 1) - 1) // strides[i] + 1 for i in range(d)]
    y = np.zeros((x.shape[0], o, *osp)) + b.reshape((1, -1) + (1,) * d)
    for tap in np.ndindex(*k):
        sl = tuple(slice(tap[i] * dilations[i], tap[i] * dilations[i] + strides[i] * (osp[i] - 1) + 1,
                         strides[i]) for i in range(d))
        xs = xp[(slice(None), slice(None)) + sl]
        for g in range(groups):
            y[:, g * og:(g + 1) * og] += np.einsum(
                "nc...,oc->no...", xs[:, g * cg:(g + 1) * cg], w[(slice(g * og, (g + 1) * og), slice(None)) + tap])
    return y


def bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


# (x shape, channel multiplier, kernel, strides, pads, dilations): MobileNetV3's 7x7
# 5x5 and 14x14 stride-2 blocks, channels that do not fill the last 16 lanes, a
# channel multiplier, dilation, asymmetric pads, 1-D and 3-D
CASES = [
    ((1, 96, 7, 7), 1, (5, 5), (1, 1), (2, 2, 2, 2), (1, 1)),
    ((2, 40, 14, 14), 1, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    ((1, 20, 9, 11), 2, (3, 3), (1, 1), (0, 1, 2, 1), (1, 1)),
    ((1, 33, 12, 12), 1, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2)),
    ((2, 17, 13, 13), 1, (5, 5), (2, 2), (2, 2, 2, 2), (1, 1)),
    ((1, 24, 30), 1, (7,), (1,), (3, 3), (1,)),
    ((1, 18, 4, 5, 6), 1, (3, 3, 3), (1, 2, 1), (1, 1, 1, 1, 1, 1), (1, 1, 1)),
]


def _ids(c):
    return "x".join(map(str, c[0])) + f"-m{c[1]}-k{c[2][0]}-s{c[3][0]}-d{c[5][0]}"


def run(x, w, b, case, lanes_below, threads, **kw):
    old_b = _conv._set_depthwise_lanes_below(lanes_below)
    old_t = _conv._set_threads(threads)
    try:
        return _conv.conv(x, w, b, case[3], case[4], case[5], x.shape[1], **kw)
    finally:
        _conv._set_depthwise_lanes_below(old_b)
        _conv._set_threads(old_t)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_lanes_and_rows_give_the_same_bits_and_match_float64(case, variant):
    shape, mult, k = case[:3]
    rng = np.random.default_rng(shape[1] + k[0])
    x = rng.standard_normal(shape, dtype=np.float32)
    w = rng.standard_normal((shape[1] * mult, 1, *k), dtype=np.float32)
    b = rng.standard_normal(shape[1] * mult, dtype=np.float32)
    rows = run(x, w, b, case, 0, 1)
    for threads in (1, 2):
        lanes = run(x, w, b, case, 1 << 20, threads)
        np.testing.assert_array_equal(bits(lanes), bits(rows))
    want = conv64(x, w, b, case[3], case[4], case[5], shape[1])
    np.testing.assert_allclose(rows, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES[:3], ids=_ids)
def test_lanes_apply_the_fused_epilogue_per_channel(case, variant):
    """Residual add and hard-swish, then per-channel fake-quant: the same bits on both
    paths (the lanes path hands the epilogue 16 channel planes at a time)."""
    shape, mult, k = case[:3]
    rng = np.random.default_rng(7)
    o = shape[1] * mult
    x = rng.standard_normal(shape, dtype=np.float32)
    w = rng.standard_normal((o, 1, *k), dtype=np.float32) * 0.3
    b = rng.standard_normal(o, dtype=np.float32)
    plain = run(x, w, b, case, 0, 1)
    res = rng.standard_normal(plain.shape, dtype=np.float32)
    fq = (rng.uniform(0.01, 0.1, o).astype(np.float32), np.zeros(o, np.float32),
          np.float32(-128), np.float32(127))
    kw = dict(residual=res, activation="hard_swish", fake_quant=fq)
    rows = run(x, w, b, case, 0, 2, **kw)
    lanes = run(x, w, b, case, 1 << 20, 2, **kw)
    np.testing.assert_array_equal(bits(lanes), bits(rows))
    assert not np.array_equal(bits(rows), bits(plain))
