"""The blocked layout (runtime/_blocked.pyx, qcc.runtime.blocked).

Its kernels compute every value with the NCHW kernels' operations in their order, so
the oracle is bit equality with qcc.runtime._conv.conv / _pool.global_avg_pool (each
checked against float64 numpy and onnxruntime in their own tests) and with numpy's
product; the whole plans of exported CNNs (torchvision, timm), float and fake-quant,
give the same bits with the layout on and off. The kernels have an AVX-512 and an
AVX2 build (runtime/_blocked_isa.h): every test runs on each the CPU has (forced, as
QCC_ISA would), and skips on a CPU with neither."""

import os
import sys

import numpy as np
import pytest

from qcc.runtime import blocked, isa

_conv = isa._conv
B = blocked.B
pytestmark = pytest.mark.skipif(B is None or _conv is None or not B._variants(),
                                reason="no AVX2 or qcc.runtime is not built")


@pytest.fixture(autouse=True)
def kernels(blocked_build):
    """Each test at each build of the kernels (conftest's blocked_build)."""
    return blocked_build


def bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


@pytest.fixture(params=["bands", "small-bands", "padded-copy"])
def band(request, monkeypatch):
    """A padded conv reads its padded rows from per-claim bands (the default), from
    bands of a row or two (claims of one 24-position unit: many claims an image,
    bands that start mid-image and overlap), or from a padded copy of the whole
    input (`_set_banded(False)`): the same bits each way."""
    if request.param == "small-bands":
        monkeypatch.setattr(B, "BAND_BYTES", 1)
    old = B._set_banded(request.param != "padded-copy")
    yield request.param
    B._set_banded(old)


# (n, c, h, w, o, k, stride, pads (t, l, b, r), dilation, groups): MobileNetV3's
# stem (3 channels, NCHW input), 1x1 expansions and projections whose channels do
# not fill 16 lanes, deep 1x1 (several 64-channel blocks and a remainder of 1-3
# vectors), 3x3 and 5x5 depthwise at strides 1 and 2 on narrow and wide rows,
# asymmetric pads, dilation
CASES = [
    (2, 3, 15, 17, 16, 3, 2, (1, 1, 1, 1), 1, 1),
    (1, 16, 12, 12, 64, 1, 1, (0, 0, 0, 0), 1, 1),
    (1, 24, 9, 11, 72, 1, 1, (0, 0, 0, 0), 1, 1),
    (1, 17, 8, 8, 200, 1, 2, (0, 0, 0, 0), 1, 1),
    (1, 130, 5, 6, 30, 3, 1, (1, 1, 1, 1), 1, 1),
    (2, 40, 7, 7, 120, 3, 1, (0, 1, 2, 1), 1, 1),
    (1, 20, 11, 11, 24, 3, 1, (2, 2, 2, 2), 2, 1),
    (1, 72, 14, 14, 72, 3, 2, (1, 1, 1, 1), 1, 72),
    (2, 33, 6, 10, 33, 3, 1, (1, 1, 1, 1), 1, 33),
    (1, 20, 9, 9, 20, 5, 1, (2, 2, 2, 2), 1, 20),
    (1, 24, 13, 13, 24, 5, 2, (2, 1, 2, 3), 1, 24),
    (1, 18, 12, 12, 18, 3, 1, (2, 2, 2, 2), 2, 18),
    # depthwise rows of 32 outputs and more read the input in place (border chunks
    # through a window copy)
    (1, 24, 9, 37, 24, 3, 1, (1, 1, 1, 1), 1, 24),
    (2, 20, 7, 70, 20, 3, 2, (1, 1, 1, 1), 1, 20),
    (1, 16, 6, 45, 16, 5, 1, (2, 1, 2, 3), 2, 16),
    # planes of fewer than 48 positions at a batch: tiles over all the images'
    # positions, spanning images (ResNet's 4x4 at batch 32)
    (3, 64, 4, 4, 80, 3, 1, (1, 1, 1, 1), 1, 1),
    (4, 24, 3, 5, 40, 1, 1, (0, 0, 0, 0), 1, 1),
    (2, 16, 4, 4, 200, 3, 2, (1, 1, 1, 1), 1, 1),
    # the last tile of a plane shorter than a full one takes a kernel of its own
    # length (1, 2, 3-4 positions): within a row, and across rows (2 wide); a small
    # plane with five groups of 64 channels runs one plane a unit of work
    (1, 40, 5, 2, 300, 1, 1, (0, 0, 0, 0), 1, 1),
    (1, 32, 2, 7, 130, 3, 1, (1, 1, 1, 1), 1, 1),
    (1, 24, 5, 3, 20, 3, 1, (1, 1, 1, 1), 1, 1),
]
ACTS = [None, "relu", "hard_swish", ("clip", 0.0, 6.0), ("hard_sigmoid", 0.2, 0.5), "sigmoid"]


def _ids(c):
    return f"c{c[1]}-{c[2]}x{c[3]}-o{c[4]}-k{c[5]}s{c[6]}d{c[8]}-g{c[9]}"


def _weights(case, rng):
    n, c, h, w, o, k, s, pads, d, g = case
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = (rng.standard_normal((o, c // g, k, k)) * 0.3).astype(np.float32)
    return x, wt, rng.standard_normal(o).astype(np.float32)


@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("threads", [1, 2])
def test_a_blocked_conv_is_the_nchw_conv_bit_for_bit(case, threads, band):
    """Every activation, with a residual, a per-tensor and a per-channel fake-quant,
    an affine (a folded batch norm); the input blocked and (groups 1) NCHW; the lanes
    past the channels zero. A tee (the result before the fake-quant kept too) gives
    both: the conv without the fake-quant and with it. An input fake-quant (groups 1,
    NCHW input, made in the padded copy, also without pads) gives the conv of the
    fake-quantized input."""
    n, c, h, w, o, k, s, pads, d, g = case
    rng = np.random.default_rng(sum(case[:5]))
    x, wt, b = _weights(case, rng)
    x[0, 0, 0, :2] = (np.inf, np.nan)   # NaN and inf reach the outputs they touch
    geometry = ([s, s], list(pads), [d, d], g)
    old = B._set_threads(threads)
    try:
        for act in ACTS:
            for fq, affine, residual in [
                    (None, None, False),
                    ((np.float32([0.05]), np.float32([3.0]), -128, 127), None, True),
                    ((np.linspace(0.01, 0.1, o).astype(np.float32), (np.arange(o) % 5)
                      .astype(np.float32), 0, 255),
                     (rng.uniform(0.5, 2, o).astype(np.float32),
                      rng.standard_normal(o).astype(np.float32)), False)]:
                plain = _conv.conv(x, wt, b, *geometry)
                r = rng.standard_normal(plain.shape).astype(np.float32) if residual else None
                want = _conv.conv(x, wt, b, *geometry, activation=act, residual=r,
                                  fake_quant=fq, affine=affine)
                conv = B.Conv(wt, b, *geometry, act, fq, affine)
                inputs = [B.to_blocked(x)] + ([x] if g == 1 else [])
                rb = None if r is None else B.to_blocked(r)
                for xin in inputs:
                    got = conv(xin, residual=rb)
                    assert got.shape == blocked.blocked_shape(want.shape)
                    np.testing.assert_array_equal(bits(B.to_nchw(got, o)), bits(want))
                    if o % 16:
                        assert not got[:, -1, ..., o % 16:].any()
                if fq is None:
                    continue
                if g == 1 and fq[0].size == 1:   # the input's fake-quant made as it pads
                    fq_in = (0.07, -3.0, -128, 127)
                    from qcc.runtime import _eltwise

                    xq = _eltwise.fake_quant(x, np.float32([0.07]), np.float32([-3.0]),
                                             -128, 127)
                    want_in = _conv.conv(xq, wt, b, *geometry, activation=act, residual=r,
                                         fake_quant=fq, affine=affine)
                    conv_in = B.Conv(wt, b, *geometry, act, fq, affine, in_fake_quant=fq_in)
                    got = conv_in(x, residual=rb)
                    np.testing.assert_array_equal(bits(B.to_nchw(got, o)), bits(want_in))
                pre = _conv.conv(x, wt, b, *geometry, activation=act, residual=r,
                                 affine=affine)
                tee = B.Conv(wt, b, *geometry, act, fq, affine, tee=True)
                both = np.full((2, *blocked.blocked_shape(want.shape)), np.nan, np.float32)
                got_pre, got_fq = tee(inputs[-1], residual=rb, out=both)
                np.testing.assert_array_equal(bits(B.to_nchw(got_pre, o)), bits(pre))
                np.testing.assert_array_equal(bits(B.to_nchw(got_fq, o)), bits(want))
                assert not (np.isnan(both[:, :, -1, ..., o % 16:]).any() if o % 16 else False)
    finally:
        B._set_threads(old)


# deep convs: taps in chunks (partial sums kept in the output between them), kc
# not a multiple of the chunk, a remainder group of output channels, tiles spanning
# rows and images
DEEP = [
    (1, 256, 7, 7, 80, 3, 1, (1, 1, 1, 1), 1, 1),
    (2, 300, 6, 9, 40, 1, 1, (0, 0, 0, 0), 1, 1),
    (3, 130, 4, 4, 70, 3, 1, (1, 1, 1, 1), 1, 1),
    (1, 70, 15, 13, 64, 3, 2, (1, 0, 2, 1), 1, 1),
    (1, 96, 7, 7, 300, 3, 1, (1, 1, 1, 1), 1, 1),   # ResNet's last stage: 7x7, tail of 1
]


@pytest.mark.parametrize("case", DEEP, ids=_ids)
@pytest.mark.parametrize("chunk", [1, 7, 96, 100000])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_deep_conv_in_chunks_of_taps_is_the_nchw_conv_bit_for_bit(case, chunk, threads,
                                                                    band):
    """The taps in chunks of 1, 7, 96 (AVX-512's own) and all at once: the sums
    stored and resumed between chunks are the same float32 values, so every chunking
    gives the NCHW conv's bits, with an activation, a residual, the affine, a
    fake-quant, a tee (both results) and NaN / inf in the input."""
    n, c, h, w, o, k, s, pads, d, g = case
    rng = np.random.default_rng(sum(case[:5]))
    x, wt, b = _weights(case, rng)
    x[0, 1, 1, :2] = (np.inf, np.nan)
    geometry = ([s, s], list(pads), [d, d], g)
    fq = (np.float32([0.05]), np.float32([3.0]), -128, 127)
    affine = (rng.uniform(0.5, 2, o).astype(np.float32), rng.standard_normal(o).astype(np.float32))
    old_t, old_c = B._set_threads(threads), B._set_chunk(chunk)
    try:
        plain = _conv.conv(x, wt, b, *geometry)
        r = rng.standard_normal(plain.shape).astype(np.float32)
        for act in [None, "relu", "hard_swish"]:
            want = _conv.conv(x, wt, b, *geometry, activation=act, residual=r,
                              fake_quant=fq, affine=affine)
            pre = _conv.conv(x, wt, b, *geometry, activation=act, residual=r, affine=affine)
            rb = B.to_blocked(r)
            for xin in (B.to_blocked(x), x):
                got = B.Conv(wt, b, *geometry, act, fq, affine)(xin, residual=rb)
                np.testing.assert_array_equal(bits(B.to_nchw(got, o)), bits(want))
                got_pre, got_fq = B.Conv(wt, b, *geometry, act, fq, affine, tee=True)(
                    xin, residual=rb)
                np.testing.assert_array_equal(bits(B.to_nchw(got_pre, o)), bits(pre))
                np.testing.assert_array_equal(bits(B.to_nchw(got_fq, o)), bits(want))
            got = B.Conv(wt, b, *geometry, act)(B.to_blocked(x))
            np.testing.assert_array_equal(
                bits(B.to_nchw(got, o)), bits(_conv.conv(x, wt, b, *geometry, activation=act)))
    finally:
        B._set_threads(old_t)
        B._set_chunk(old_c)


@pytest.mark.parametrize("plane_units", [True, False])
@pytest.mark.parametrize("threads", [2, 3])
def test_a_small_plane_in_units_of_a_plane_or_of_24_positions(plane_units, threads):
    """A 7x7 plane with 5 groups of 64 outputs runs one plane a unit of work (the
    default: a claim reads its group's weights once) or in units of 24 positions;
    both are the NCHW conv's bits, at a stride and with a pad."""
    old_t, old_u = B._set_threads(threads), B._set_plane_units(plane_units)
    try:
        for case in [(1, 48, 7, 7, 300, 3, 1, (1, 1, 1, 1), 1, 1),
                     (1, 40, 14, 14, 260, 1, 2, (0, 0, 0, 0), 1, 1)]:
            n, c, h, w, o, k, s, pads, d, g = case
            x, wt, b = _weights(case, np.random.default_rng(o))
            geometry = ([s, s], list(pads), [d, d], g)
            got = B.Conv(wt, b, *geometry, "relu")(B.to_blocked(x))
            np.testing.assert_array_equal(
                bits(B.to_nchw(got, o)),
                bits(_conv.conv(x, wt, b, *geometry, activation="relu")))
    finally:
        B._set_threads(old_t)
        B._set_plane_units(old_u)


@pytest.mark.parametrize("act", ["hard_swish", "relu", ("clip", -1.0, 1.0),
                                 ("hard_sigmoid", 0.2, 0.5)])
def test_the_epilogue_on_every_kind_of_float32(act):
    """The blocked hard-swish computes v / 6 by a product and an FMA correction
    (tools/verify/hswish_div.c checks all 2^32 inputs); here 2^20 random bit
    patterns, subnormals, +-0, infinities, NaN and values around +-3, through a 1x1
    conv of identity weights (each sum is its input), against the NCHW conv."""
    rng = np.random.default_rng(11)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-38, 3.0,
                        -3.0, np.nextafter(3, 4), np.nextafter(-3, -4), 6e-30, -6e-30],
                       np.float32)
    values = np.concatenate([rng.integers(0, 2**32, 2**20, dtype=np.uint64)
                             .astype(np.uint32).view(np.float32), special,
                             rng.uniform(-3.1, 3.1, 4096).astype(np.float32)])
    values = values[: values.size // 16 * 16]
    x = values.reshape(1, 16, 1, -1)
    eye = np.eye(16, dtype=np.float32).reshape(16, 16, 1, 1)
    want = _conv.conv(x, eye, None, None, None, None, 1, activation=act)
    got = B.Conv(eye, None, None, None, None, 1, act)(B.to_blocked(x))
    np.testing.assert_array_equal(bits(B.to_nchw(got, 16)), bits(want))


@pytest.mark.parametrize("scales", ["per_tensor", "per_channel", "extreme"])
def test_the_fake_quant_on_every_kind_of_float32(scales):
    """The blocked fake-quant computes v / s as v * RN(1/s) corrected by an FMA
    (tools/verify/fq_div.c checks every float32 v at 12 scales and every
    significand of v against 20000 of s); here 2^20 random bit patterns, +-0,
    infinities, NaN, subnormals and values on and next to the rounding ties k + 0.5
    of every channel's scale, through a 1x1 conv of identity weights (each sum is
    its input), against the NCHW conv, which divides. Per-channel scales of 16
    random magnitudes; extreme ones (2^-70, 2^70, subnormal) take the division."""
    rng = np.random.default_rng(12)
    if scales == "per_tensor":
        s = np.float32([0.0123])
    elif scales == "per_channel":
        s = (10.0 ** rng.uniform(-6, 2, 16)).astype(np.float32)
    else:
        s = np.float32([2.0**-70, 2.0**70, 1e-40] + [0.05] * 13)
    z = (np.arange(s.size) % 7 - 3).astype(np.float32)
    ties = (rng.integers(-140, 140, (2048, 1)) + 0.5).astype(np.float32) * np.resize(s, 16)
    near = np.concatenate([ties, np.nextafter(ties, np.float32(np.inf)),
                           np.nextafter(ties, np.float32(-np.inf))]).reshape(-1)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-38, 3e38,
                        -3e38], np.float32)
    values = np.concatenate([rng.integers(0, 2**32, 2**20, dtype=np.uint64)
                             .astype(np.uint32).view(np.float32), near, special])
    values = np.resize(values, (values.size + 15) // 16 * 16)
    # channel-major: channel c gets every 16th value, so the ties of its scale meet it
    x = values.reshape(-1, 16).T.reshape(1, 16, 1, -1).copy()
    eye = np.eye(16, dtype=np.float32).reshape(16, 16, 1, 1)
    fq = (s, z, -128, 127)
    want = _conv.conv(x, eye, None, None, None, None, 1, fake_quant=fq)
    got = B.Conv(eye, None, None, None, None, 1, None, fq)(B.to_blocked(x))
    np.testing.assert_array_equal(bits(B.to_nchw(got, 16)), bits(want))


@pytest.fixture
def two_threads():
    import qcc.runtime as rt

    old = rt.set_threads(2)
    yield
    rt.set_threads(old)


def test_layout_copies_means_and_scale(two_threads):
    rng = np.random.default_rng(3)
    from qcc.runtime import _pool

    # the last three on 2 threads: 10 planes a thread, and (the scale) 1 and 3 planes
    # cut into parts (qcc_claim_home's homes of parts of planes)
    for shape in [(2, 40, 7, 9), (1, 16, 20, 20), (3, 5, 1, 33), (2, 72, 28, 28),
                  (1, 16, 70, 70), (1, 40, 40, 40)]:
        x = rng.standard_normal(shape).astype(np.float32)
        y = B.to_blocked(x)
        assert y.shape == blocked.blocked_shape(shape)
        np.testing.assert_array_equal(B.to_nchw(y, shape[1]), x)
        np.testing.assert_array_equal(bits(B.means(y, shape[1])), bits(_pool.global_avg_pool(x)))
        s = rng.standard_normal((shape[0], shape[1], 1, 1)).astype(np.float32)
        np.testing.assert_array_equal(B.to_nchw(B.scale(y, s), shape[1]), x * s)
        np.testing.assert_array_equal(B.to_nchw(B.scale(y, s[:1]), shape[1]), x * s[:1])
        # the product's per-tensor fake-quant in the same pass: _eltwise's bits, NaN
        # and inf included, the lanes past the channels zero (a zero point outside
        # [qmin, qmax] would make them nonzero if they were fake-quantized)
        from qcc.runtime import _eltwise

        y.reshape(-1)[:2] = (np.nan, np.inf)   # channel 0 of image 0
        for fs, fz, qmin, qmax in [(0.03, 5.0, -128.0, 127.0), (0.5, 300.0, 0.0, 255.0)]:
            want = _eltwise.fake_quant(B.to_nchw(y, shape[1]) * s, np.float32([fs]),
                                       np.float32([fz]), qmin, qmax)
            got = B.scale(y, s, fake_quant=(fs, fz, qmin, qmax))
            np.testing.assert_array_equal(bits(B.to_nchw(got, shape[1])), bits(want))
            want = _eltwise.fake_quant(_pool.global_avg_pool(B.to_nchw(y, shape[1])),
                                       np.float32([fs]), np.float32([fz]), qmin, qmax)
            got = B.means(y, shape[1], fake_quant=(fs, fz, qmin, qmax))
            np.testing.assert_array_equal(bits(got), bits(want))
            if shape[1] % 16:
                assert not got[:, -1, ..., shape[1] % 16:].any()
            # a per-channel scale of the means first (a squeeze-and-excitation's
            # qnn.scale): numpy's float32 product, then the fake-quant
            c = rng.standard_normal(shape[1]).astype(np.float32)
            c[:2] = (0.0, -np.inf)
            with np.errstate(invalid="ignore", over="ignore"):
                mean_c = _pool.global_avg_pool(B.to_nchw(y, shape[1])) * c.reshape(1, -1, 1, 1)
            want = _eltwise.fake_quant(mean_c, np.float32([fs]), np.float32([fz]), qmin, qmax)
            got = B.means(y, shape[1], fake_quant=(fs, fz, qmin, qmax), scale=c)
            np.testing.assert_array_equal(bits(got), bits(want))
            np.testing.assert_array_equal(bits(B.means(y, shape[1], scale=c)), bits(mean_c))


# (shape, kernel, strides, pads (t, l, b, r), dilations, ceil_mode): ResNet's stem
# pool (threaded), ceil mode with an end pad, unequal kernels, strides and dilations,
# a 5x5 window at stride 3, 1x1, windows wholly in the padding (-FLT_MAX, as NCHW)
POOLS = [((1, 64, 112, 112), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), False),
         ((2, 20, 9, 11), (3, 3), (2, 2), (0, 0, 1, 1), (1, 1), True),
         ((1, 17, 7, 8), (2, 3), (1, 2), (1, 0, 0, 2), (2, 1), False),
         ((3, 5, 6, 6), (5, 5), (3, 3), (2, 2, 2, 2), (1, 1), True),
         ((1, 33, 4, 4), (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), False),
         ((2, 40, 30, 30), (3, 3), (1, 1), (4, 4, 4, 4), (3, 3), False),
         ((1, 16, 9, 9), (4, 4), (1, 1), (3, 3, 3, 3), (1, 1), False)]


@pytest.mark.parametrize("case", POOLS, ids=lambda c: "x".join(map(str, c[0])) + f"-k{c[1][0]}{c[1][1]}")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind", ["max", "avg", "avg_pad"])
def test_pools_are_the_nchw_pools_bit_for_bit(case, threads, kind):
    """NaN, -0 and -inf anywhere in the windows (max), the windows' sums and counts
    (average, without and with the pads counted; no dilations, which the NCHW average
    does not take either): the NCHW kernels' operations in their order (a > b ? a : b
    or +, taps fused alike, the sum divided by the product of the counts), so their
    bits; the lanes past the channels zero."""
    from qcc.runtime import _pool

    shape, k, s, p, d, ceil = case
    if kind != "max" and d != (1, 1):
        pytest.skip("the NCHW average pool takes no dilations")
    rng = np.random.default_rng(shape[1] * 7 + k[0])
    x = rng.standard_normal(shape).astype(np.float32)
    if kind == "max":
        x.reshape(-1)[::13] = np.nan
        x.reshape(-1)[5::17] = -0.0
        x.reshape(-1)[7::19] = -np.inf
        want = _pool.max_pool(x, k, s, p, d, ceil)
    else:
        want = _pool.avg_pool(x, k, s, p, ceil, kind == "avg_pad")
    from qcc.runtime import _eltwise

    old = B._set_threads(threads)
    try:
        got = B.pool(B.to_blocked(x), shape[1], kind, k, s, p, d, want.shape[2:])
        np.testing.assert_array_equal(bits(B.to_nchw(got, shape[1])), bits(want))
        if shape[1] % 16:
            assert not got[:, -1, ..., shape[1] % 16:].any()
        # a per-tensor fake-quant after it, in the same pass: _eltwise's bits (a zero
        # point outside [qmin, qmax] would show in fake-quantized pad lanes)
        for fs, fz, qmin, qmax in [(0.03, 5.0, -128.0, 127.0), (0.5, 300.0, 0.0, 255.0)]:
            fq_want = _eltwise.fake_quant(want, np.float32([fs]), np.float32([fz]), qmin, qmax)
            got = B.pool(B.to_blocked(x), shape[1], kind, k, s, p, d, want.shape[2:],
                         fake_quant=(fs, fz, qmin, qmax))
            np.testing.assert_array_equal(bits(B.to_nchw(got, shape[1])), bits(fq_want))
            if shape[1] % 16:
                assert not got[:, -1, ..., shape[1] % 16:].any()
    finally:
        B._set_threads(old)


def test_bad_arguments_are_errors_not_crashes():
    w = np.ones((8, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match="depthwise"):
        B.Conv(w, None, None, None, None, 4)
    conv = B.Conv(w, None, None, (1, 1, 1, 1), None, 8)
    with pytest.raises(ValueError, match="blocked input"):
        conv(np.ones((1, 8, 5, 5), np.float32))
    y = conv(B.to_blocked(np.ones((1, 8, 5, 5), np.float32)))
    with pytest.raises(ValueError, match="residual"):
        conv(B.to_blocked(np.ones((1, 8, 5, 5), np.float32)), residual=y, out=y)
    with pytest.raises(ValueError, match="input must not be the output"):
        conv(y, out=y)
    with pytest.raises(ValueError, match="blocked"):
        B.means(np.ones((1, 8, 5, 5), np.float32), 8)
    with pytest.raises(ValueError, match="no fake_quant"):
        B.Conv(w, None, None, None, None, 8, tee=True)
    fq = (np.float32([0.1]), np.float32([0.0]), -128, 127)
    tee = B.Conv(w, None, None, (1, 1, 1, 1), None, 8, None, fq, None, tee=True)
    x = B.to_blocked(np.ones((1, 8, 5, 5), np.float32))
    with pytest.raises(ValueError, match="out"):
        tee(x, out=np.empty_like(x))   # one half: a tee writes [2, ...]
    both = np.empty((2, *x.shape), np.float32)
    with pytest.raises(ValueError, match="residual"):
        tee(x, residual=both[1], out=both)
    w1 = np.ones((8, 8, 1, 1), np.float32)
    with pytest.raises(ValueError, match="NCHW"):
        B.Conv(w1, None, None, None, None, 1, in_fake_quant=(0.1, 0.0, -128, 127))(x)
    with pytest.raises(ValueError, match="blocked pool"):
        B.pool(x, 8, "max", (3, 3), (0, 1), None, None, (5, 5))
    with pytest.raises(ValueError, match="kind 'min'"):
        B.pool(x, 8, "min", (3, 3), None, None, None, (3, 3))
    with pytest.raises(ValueError, match="blocked"):
        B.pool(np.ones((1, 8, 5, 5), np.float32), 8, "max", (3, 3), None, None, None, (3, 3))


# ------------------------------------------------------------------ whole plans

MODELS = ["tv_mobilenet_v3_small", "tv_resnet18", "timm_efficientnet", "tv_mobilenet_v2"]


def _layout_on(monkeypatch) -> bool:
    """Turn the layout on; whether plans use it (always here: the fixture forces a
    build of the kernels; QCC_ISA=scalar alone turns them off)."""
    monkeypatch.setenv(blocked.ENV, "1")
    return blocked.enabled()


def _exported(name, tmp_path, monkeypatch):
    """The zoo's `name` (tests/models/zoo.py) exported by torch.onnx.export, and the
    layout turned on; skips without torch."""
    pytest.importorskip("torch")
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "models"))
    zoo = pytest.importorskip("zoo")
    assert _layout_on(monkeypatch)
    arch = zoo.ZOO[name]
    path = str(tmp_path / f"{name}.onnx")
    zoo.export(arch, "torchscript", path)
    return arch, path


def _plans(module, monkeypatch):
    from qcc.runtime import compile_module

    monkeypatch.setenv(blocked.ENV, "0")
    plain = compile_module(module)
    monkeypatch.setenv(blocked.ENV, "1")
    return plain, compile_module(module)


@pytest.mark.parametrize("name", MODELS)
def test_exported_cnns_give_the_same_bits_blocked(name, tmp_path, monkeypatch):
    """torch.onnx.export of zoo CNNs (dynamic batch), run at batch 3: float, then
    fake-quant (qcc.quantize's module): the blocked plan holds most of the values
    blocked and gives the NCHW plan's bits; a run keeping a blocked value takes the
    unfused steps (NCHW values)."""
    import qcc
    from qcc.frontends.onnx import load_onnx
    from qcc.runtime import execute

    arch, path = _exported(name, tmp_path, monkeypatch)
    feeds = arch.inputs(3, 1)
    module = load_onnx(path)
    fq_module = qcc.quantize(load_onnx(path), arch.inputs(4, 2), progress=False).module
    for m in (module, fq_module):
        plain, fast = _plans(m, monkeypatch)
        assert not plain.blocked_slots and len(fast.blocked_slots) >= 5
        # fake-quant: a conv's result read by a residual and by the next conv's input
        # fake-quant is written with that fake-quant in one pass (a tee): no
        # blocked fake-quant step reads a blocked conv's result (the residual
        # networks have such convs; this small efficientnet's blocks have none)
        producer = {r: s for s in fast.steps for r in s.results}
        assert not any(s.op.name == "quant.fake_quant" and s.blocked
                       and producer[s.args[0]].op.name == "qnn.conv" for s in fast.steps
                       if s.args[0] in producer)
        assert any(s.tee for s in fast.steps) == (m is fq_module
                                                  and name != "timm_efficientnet")
        # the input quantizer is made by a blocked stem conv as it pads (the mobilenets
        # and resnet18, whose max pool reads blocked; efficientnet's stem writes NCHW
        # for its SiLU)
        input_fq = [s for s in plain.steps if s.op.name == "quant.fake_quant"
                    and s.args[0] in plain.input_slots]
        assert len(input_fq) == (m is fq_module)
        left = [s for s in fast.steps if s.op.name == "quant.fake_quant"
                and s.args[0] in fast.input_slots]
        assert len(left) == (m is fq_module and name == "timm_efficientnet")
        assert any(s.op.name == "qnn.max_pool" and s.blocked for s in fast.steps) == \
            (name == "tv_resnet18")
        want = execute(plain, feeds)[0]
        got = execute(fast, feeds)[0]
        for k in want:
            np.testing.assert_array_equal(bits(got[k]), bits(want[k]))
    keep = [v for v, s in fast.slot_of.items() if s in fast.blocked_slots][:1]
    outs, kept = execute(fast, feeds, keep=keep)
    assert kept[keep[0]].ndim == 4


def test_an_exported_cnn_with_pools_gives_the_same_bits_blocked(tmp_path, monkeypatch):
    """A torch CNN exported by torch.onnx.export with a max pool, an average pool in
    ceil mode without the pads counted and one with them counted, between convs:
    the pools run blocked (in the fake-quant plan with the fake-quant after them in
    their pass) and the plan, float and fake-quant, gives the NCHW plan's bits at
    batch 3 (the batch dynamic)."""
    torch = pytest.importorskip("torch")
    from torch import nn

    import qcc
    from qcc.frontends.onnx import load_onnx
    from qcc.runtime import execute

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 24, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
        nn.Conv2d(24, 40, 3, padding=1), nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
        nn.Conv2d(40, 20, 1), nn.ReLU(), nn.AvgPool2d(2, 2, 1, count_include_pad=True),
        nn.Conv2d(20, 8, 1), nn.Flatten(), nn.LazyLinear(5)).eval()
    x = torch.randn(2, 3, 23, 21)
    model(x)
    path = str(tmp_path / "pools.onnx")
    with torch.no_grad():
        torch.onnx.export(model, (x,), path, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False)
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((3, 3, 23, 21)).astype(np.float32)}
    calib = {"x": rng.standard_normal((4, 3, 23, 21)).astype(np.float32)}
    fq_module = qcc.quantize(load_onnx(path), calib, progress=False).module
    for m in (load_onnx(path), fq_module):
        plain, fast = _plans(m, monkeypatch)
        pools = [s for s in fast.steps if s.op.name in ("qnn.max_pool", "qnn.avg_pool")
                 and not s.layout_copy]
        assert len(pools) == 3 and all(s.blocked for s in pools)
        assert not any(s.op.name == "quant.fake_quant" and s.blocked for s in fast.steps) \
            or m is not fq_module
        want = execute(plain, feeds)[0]["y"]
        np.testing.assert_array_equal(bits(execute(fast, feeds)[0]["y"]), bits(want))


def test_a_conv_whose_result_nothing_reads_compiles(monkeypatch):
    """An unused conv result (an exporter's dead branch) is not an error of the
    layout's fixpoint (it raised KeyError); the plan runs and matches the NCHW plan.
    With the kernels off (QCC_ISA=scalar), no value is blocked."""
    from qcc import ir
    from qcc.dialects import qnn
    from qcc.runtime import compile_module, execute

    rng = np.random.default_rng(0)
    g = ir.Graph()
    x = g.input("x", (1, 16, 8, 8))
    w = g.const(rng.standard_normal((16, 16, 1, 1)).astype(np.float32))
    dw = g.const(rng.standard_normal((16, 1, 3, 3)).astype(np.float32))
    a = g.add(qnn.ConvOp.make(x, w, name="a"))
    g.add(qnn.ConvOp.make(x, w, name="dead"))
    d = g.add(qnn.ConvOp.make(a, dw, pads=(1, 1, 1, 1), groups=16, name="d"))
    b = g.add(qnn.ConvOp.make(d, w, name="b"))
    module = g.finish({"y": g.add(qnn.ReluOp.make(b, name="y"))})
    feeds = {"x": rng.standard_normal((1, 16, 8, 8)).astype(np.float32)}
    on = _layout_on(monkeypatch)
    fast = compile_module(module)
    plain = compile_module(module, blocked_layout=False)
    assert on and fast.blocked_slots and not plain.blocked_slots
    np.testing.assert_array_equal(bits(execute(fast, feeds)[0]["y"]),
                                  bits(execute(plain, feeds)[0]["y"]))
    B._set_variant(None)
    assert not blocked.enabled() and not compile_module(module).blocked_slots


@pytest.mark.parametrize("name", ["tv_resnet18", "tv_mobilenet_v3_small"])
def test_calibration_runs_blocked_with_the_observers_aside(name, tmp_path, monkeypatch):
    """Calibration (observers hooked through qcc.registry.executor) runs the blocked
    convs, each observer reading an NCHW copy of the value it observes or, its hook
    being flat (per-tensor statistics) and the value's channels whole blocks of 16,
    the blocked array itself, and decides exactly what the NCHW plan decides: the
    same statistics, so the same scales and zero points for every quantizer of a
    torch.onnx.export'ed CNN."""
    from qcc import passes
    from qcc.frontends.onnx import load_onnx
    from qcc.passes.calibrate import calibrate
    from qcc.runtime import compile_module

    arch, path = _exported(name, tmp_path, monkeypatch)
    batches = [arch.inputs(3, seed) for seed in (1, 2)]
    decided = {}
    for layout in ("0", "1"):
        monkeypatch.setenv(blocked.ENV, layout)
        module = load_onnx(path)
        passes.run(module, "canonicalize,qcc-fuse-bn,qcc-insert-quant")
        plan = compile_module(module, observers_aside=True)
        assert bool(plan.blocked_slots) == (layout == "1")
        if layout == "1":   # every observer is still a step, and reads NCHW
            observers = [s for s in plan.steps if s.op.name == "quant.observe"]
            assert observers and not any(a in plan.blocked_slots
                                         for s in observers for a in s.args)
            # flat hooks: the observers of whole blocks read them blocked, no copy
            flat = compile_module(module, observers_aside=True, observers_flat=True)
            reads = {s.op: any(a in flat.blocked_slots for a in s.args) for s in flat.steps
                     if s.op.name == "quant.observe"}
            whole = {s.op: s.op.operands[0].type.get_shape()[1] % 16 == 0
                     and s.args[0] in plan.blocked_slots | {
                         c.results[0] for c in plan.steps if c.layout_copy}
                     for s in observers}
            assert any(reads.values()) and reads == {op: whole[op] for op in reads}
            assert all(s.flat == reads[s.op] for s in flat.steps if s.op in reads)
            assert sum(s.layout_copy for s in flat.steps) < sum(s.layout_copy for s in plan.steps)
        decided[layout] = [(q.id, q.kind, np.asarray(q.lo).tobytes(), np.asarray(q.hi).tobytes(),
                            str(q.qtype)) for q in calibrate(module, batches)]
    assert decided["0"] == decided["1"] and len(decided["1"]) >= 10
