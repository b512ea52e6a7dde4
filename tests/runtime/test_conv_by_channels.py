"""The float conv GEMM with the output channels in the vector lanes (AVX-512, layers
of at most 1024 columns: runtime/_gemm_lanes.h, qcc_gemm_t_work): the same bits as the
GEMM with the positions in the lanes, whatever the channel and position tails, the
taps (1x1 layers too), the depth in one chunk or several, threads, batched images,
weight packing and fused epilogue; and close to a float64 convolution."""

import numpy as np
import pytest

from qcc.runtime import isa

_conv = isa._conv
pytestmark = pytest.mark.skipif(
    _conv is None or "avx512" not in _conv._variants(),
    reason="the channels-in-lanes GEMM is the AVX-512 variant's")


def conv64(x, w, b, stride, pad):
    """Direct 2-D convolution in float64."""
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    o, c, kh, kw = w.shape
    oh = (xp.shape[2] - kh) // stride + 1
    ow = (xp.shape[3] - kw) // stride + 1
    y = np.zeros((x.shape[0], o, oh, ow)) + (0 if b is None else b.reshape(1, -1, 1, 1))
    for i in range(kh):
        for j in range(kw):
            xs = xp[:, :, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
            y += np.einsum("nchw,oc->nohw", xs, w[:, :, i, j].astype(np.float64))
    return y


# (x shape, O, k, stride, pad): channel tails (O not a multiple of 64, O < 64, O = 64k),
# position tails (N not a multiple of 7, N < 7), depth over several chunks, stride 2,
# batched images (small planes), the largest N on the path (32x32), 1x1 layers (of
# depth 256 or more: shallower ones stay on packed panels)
CASES = [
    ((1, 16, 7, 7), 64, 3, 1, 1),
    ((1, 40, 6, 6), 24, 3, 2, 1),
    ((1, 8, 2, 2), 130, 3, 1, 1),
    ((1, 300, 5, 9), 96, 3, 1, 1),
    ((1, 33, 14, 14), 200, 3, 1, 1),
    ((3, 24, 4, 4), 72, 3, 1, 1),
    ((2, 12, 9, 11), 65, 5, 2, 2),
    ((1, 8, 32, 32), 16, 3, 1, 1),
    ((1, 300, 14, 14), 70, 1, 1, 0),
    ((2, 256, 7, 7), 130, 1, 2, 0),
]


def _run(case, x, w, b, threads, by_channels, chunk=0, **kw):
    _, _, k, stride, pad = case
    old_n = _conv._set_by_channels_max_n(1024 if by_channels else 0)
    old_c = _conv._set_t_chunk(chunk)
    old_t = _conv._set_threads(threads)
    old_p = _conv._set_parallel_min(0.0)
    try:
        return _conv.conv(x, w, b, (stride, stride), (pad,) * 4, (1, 1), 1, **kw)
    finally:
        _conv._set_parallel_min(old_p)
        _conv._set_threads(old_t)
        _conv._set_t_chunk(old_c)
        _conv._set_by_channels_max_n(old_n)


@pytest.fixture
def avx512():
    old = _conv._set_variant("avx512")
    yield
    _conv._set_variant(old)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[0])) + f"-o{c[1]}")
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("chunk", [0, 40], ids=["whole-depth", "chunks40"])
def test_channels_in_lanes_give_the_bits_of_positions_in_lanes(case, bias, chunk, avx512):
    shape, o, k, _, _ = case
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape, dtype=np.float32)
    w = (rng.standard_normal((o, shape[1], k, k)) / np.sqrt(shape[1] * k * k)).astype(np.float32)
    b = rng.standard_normal(o, dtype=np.float32) if bias else None
    want = _run(case, x, w, b, 1, False)
    pack = _conv.WeightPack()
    for threads in (1, 2, 3):
        got = _run(case, x, w, b, threads, True, chunk)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), threads
        packed = _run(case, x, w, b, threads, True, chunk, pack=pack)
        assert np.array_equal(packed.view(np.uint32), want.view(np.uint32)), threads
        # the weights were packed for this path: in panels of 64 output channels
        assert pack.nbytes == -(-o // 64) * 64 * shape[1] * k * k * 4
    # and the sums themselves: within float32 rounding of a float64 convolution
    ref = conv64(x, w, b, case[3], case[4])
    bound = 1e-5 * (np.abs(x).max() * np.abs(w).sum(axis=(1, 2, 3)).max() + 1)
    assert np.abs(want - ref).max() <= bound


def test_fused_epilogue_on_the_transposed_sums(avx512):
    # residual, per-channel affine, activation and fake-quant are applied to each
    # finished output after the 16 x 16 transposes, at the element's own place
    case = ((2, 20, 5, 6), 70, 3, 1, 1)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(case[0], dtype=np.float32)
    w = (rng.standard_normal((70, 20, 3, 3)) * 0.1).astype(np.float32)
    b = rng.standard_normal(70, dtype=np.float32)
    skip = rng.standard_normal((2, 70, 5, 6), dtype=np.float32)
    mul = rng.uniform(0.5, 2, 70).astype(np.float32)
    shift = rng.standard_normal(70, dtype=np.float32)
    fq = (rng.uniform(0.01, 0.1, 70).astype(np.float32), np.zeros(70, np.float32), -128, 127)
    kw = dict(residual=skip, affine=(mul, shift), activation=("clip", -1.0, 3.0), fake_quant=fq)
    want = _run(case, x, w, b, 1, False, **kw)
    for threads in (1, 2):
        got = _run(case, x, w, b, threads, True, **kw)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), threads
    # the epilogue did run: the result is on the fake-quant grid, clipped
    steps = want / fq[0].reshape(1, -1, 1, 1)
    assert np.allclose(steps, np.round(steps), atol=1e-3)
    assert want.min() >= -1.0 - 0.1 and want.max() <= 3.0 + 0.1


@pytest.mark.parametrize("o, cin, k, lanes", [(64, 8, 3, True), (100, 8, 3, True),
                                              (24, 8, 3, False), (72, 8, 3, False),
                                              (64, 256, 1, True), (64, 64, 1, False)])
def test_wide_planes_take_the_lanes_when_the_channels_fill_them(o, cin, k, lanes, avx512):
    # 40x40 = 1600 positions (> 1024): the channels go in the lanes only when they fill
    # at least 3/4 of their 64-channel blocks (and, 1x1, with a depth of 256 or more);
    # the bits are the same either way
    case = ((1, cin, 40, 40), o, k, 1, k // 2)
    rng = np.random.default_rng(o + cin)
    x = rng.standard_normal(case[0], dtype=np.float32)
    w = (rng.standard_normal((o, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32)
    b = rng.standard_normal(o, dtype=np.float32)
    want = _run(case, x, w, b, 1, False)
    pack = _conv.WeightPack()
    got = _run(case, x, w, b, 2, True, pack=pack)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    rows = -(-o // 64) * 64 if lanes else -(-o // 8) * 8   # panels of 64 or of 8 rows
    assert pack.nbytes == rows * cin * k * k * 4
