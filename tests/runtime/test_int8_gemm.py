"""The compiled int8 GEMM (runtime/_int8_impl.h) on the shapes its blocking and
packing make special: depth not a multiple of 4 / 16 / 64 or longer than a depth chunk,
one output position, channel counts that are not a multiple of a register tile,
position counts across panels and blocks, strides that take the gather's strided
and split paths; int32 wraparound when partial or final sums leave the int32 range;
the direct depthwise kernel; the fused requantize entries. Every test runs on each instruction set the CPU has
(AVX-512 VNNI, AVX2, scalar) and compares with an exact int64 numpy oracle; the conv
tests run AVX-512 VNNI's channels-in-lanes path (runtime/_int8_lanes.h) as well, forced
on every shape it takes (groups 1)."""

import numpy as np
import pytest

from qcc.runtime import int8

_C = int8._C
pytestmark = pytest.mark.skipif(_C is None, reason="qcc.runtime._int8 is not built")
LEVELS = ("avx512vnni", "avx2", "baseline")


@pytest.fixture(params=LEVELS)
def level(request):
    """Force the int8 GEMM to one variant (skipped where the CPU lacks it)."""
    if request.param not in _C.supported_isas():
        pytest.skip(f"this CPU does not run the {request.param} int8 GEMM")
    old = _C.set_isa(request.param)
    try:
        yield request.param
    finally:
        _C.set_isa(old)


@pytest.fixture(params=["gemm", "lanes", "amx"])
def path(request, level):
    """The conv path: the GEMM, or (AVX-512 VNNI) the output channels in the lanes on
    every conv of one group that it takes, with their sums on VNNI ("lanes") or on
    AMX tiles ("amx", where the CPU and the OS allow AMX)."""
    if request.param != "gemm" and level != "avx512vnni":
        pytest.skip("the channels-in-lanes path is the AVX-512 VNNI variant's")
    if request.param == "amx" and not _C.amx_supported():
        pytest.skip("this CPU (or OS) does not run AMX-INT8")
    old = _C.set_lanes("never" if request.param == "gemm" else "always")
    old_amx = _C.set_amx("always" if request.param == "amx" else "never")
    try:
        yield request.param
    finally:
        _C.set_lanes(old)
        _C.set_amx(old_amx)


def lanes_of(w, groups):
    """The channels-in-lanes weights of w (one group only)."""
    return int8.pack_lanes(w) if groups == 1 else None


@pytest.fixture(params=[1, 2])
def threads(request):
    old = _C.set_threads(request.param)
    try:
        yield request.param
    finally:
        _C.set_threads(old)


def wrap32(v):
    """int64 -> int32 with wraparound (what int32 accumulation gives)."""
    return ((np.asarray(v, np.int64) + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)


def oracle_conv(x, w, b, z_x, strides, pads, dilations, groups):
    """Tap by tap sums of strided input slices (int64), then wrapped to int32."""
    d = w.ndim - 2
    xs = np.pad(x.astype(np.int64) - z_x,
                [(0, 0), (0, 0)] + [(pads[i], pads[d + i]) for i in range(d)])
    o, cg = w.shape[:2]
    og = o // groups
    out_sp = [(xs.shape[2 + i] - dilations[i] * (w.shape[2 + i] - 1) - 1) // strides[i] + 1
              for i in range(d)]
    y = np.zeros((x.shape[0], o, *out_sp), np.int64)
    for tap in np.ndindex(*w.shape[2:]):
        index = tuple(slice(tap[i] * dilations[i],
                            tap[i] * dilations[i] + strides[i] * (out_sp[i] - 1) + 1, strides[i])
                      for i in range(d))
        for g in range(groups):
            xg = xs[(slice(None), slice(g * cg, (g + 1) * cg)) + index]
            wg = w[(slice(g * og, (g + 1) * og), slice(None)) + tap].astype(np.int64)
            y[:, g * og:(g + 1) * og] += np.einsum("nc...,oc->no...", xg, wg)
    y += np.asarray(b, np.int64).reshape((1, -1) + (1,) * d)
    return wrap32(y)


def oracle_requantize(acc, mult, z_y, qmin, qmax, axis):
    """clip(rint(float32(acc) * mult) + z_y): float32 product, ties to even."""
    shape = [1] * acc.ndim
    shape[axis] = -1
    v = acc.astype(np.float32) * np.asarray(mult, np.float32).reshape(shape)
    return np.clip(np.rint(v).astype(np.int64) + z_y, qmin, qmax).astype(np.int8)


# (x shape, O, kernel, strides, pads, dilations, groups)
ODD_CASES = [
    ((1, 7, 5, 5), 9, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),        # K = 7, O = 9
    ((1, 5, 6, 7), 3, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),        # K = 45
    ((1, 1, 4, 4), 1, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),        # K = 1, O = 1
    ((1, 13, 3, 3), 17, (3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1),      # one position
    ((2, 9, 3, 3), 5, (3, 3), (2, 2), (0, 0, 0, 0), (1, 1), 1),        # one, batch 2
    ((1, 16, 9, 15), 24, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),     # P = 135: 2 blocks
    ((1, 6, 20, 21), 10, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),     # split rows, P = 110
    ((1, 6, 17, 19), 7, (3, 2), (3, 3), (2, 1, 0, 2), (1, 2), 1),      # strided gather
    ((2, 12, 8, 8), 12, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2), 12),     # depthwise, dilated
    ((1, 6, 9, 9), 66, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 3),       # groups, og = 22
    ((1, 230, 5, 5), 20, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),     # K = 2070: 3 chunks
    # lanes: 130 channels (3 blocks of 64, the last of 2), 99 positions (tasks of 48
    # and a tail), K = 630 (3 chunks of 64 steps), 2 images
    ((2, 70, 11, 9), 130, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((2, 130, 8, 8), 64, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1),     # 1x1 stride 2
    # channels a multiple of 64: AMX reads a tile's rows straight from the copy (16
    # positions of one output row) or copies them (positions across rows, tails)
    ((2, 64, 7, 20), 80, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),     # 2 blocks, rows of 20
    ((1, 64, 3, 40), 64, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),     # 1x1, rows of 40
    ((1, 128, 18, 34), 72, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),   # stride 2, rows of 17
    ((3, 192, 5, 5), 70, (3, 3), (1, 1), (1, 1, 1, 1), (2, 2), 1),     # small planes, dilated
    ((1, 3, 40), 33, (5,), (1,), (2, 2), (1,), 1),                      # 1-d, K = 15
    ((1, 3, 4, 5, 6), 5, (2, 3, 3), (1, 1, 2), (0, 1, 1, 1, 0, 1), (2, 1, 1), 1),  # 3-d
    # padded copies of 256 KB and more: the threads share the images to pad
    ((3, 40, 48, 50), 8, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((4, 64, 40, 40), 16, (3, 3), (2, 2), (1, 0, 2, 1), (1, 1), 4),    # groups, split rows
    # depthwise (one input and one output channel per group): the direct kernel
    ((2, 32, 40, 41), 32, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 32),   # threaded
    ((1, 24, 23, 22), 24, (5, 5), (2, 2), (2, 1, 2, 3), (1, 1), 24),   # stride 2
    ((1, 6, 9, 10), 6, (3, 3), (3, 2), (0, 1, 2, 0), (2, 1), 6),       # stride 3, dilated
    ((2, 5, 30), 5, (7,), (1,), (3, 3), (1,), 5),                       # 1-d
    ((1, 4, 5, 6, 7), 4, (3, 3, 3), (1, 2, 1), (1, 1, 1, 1, 1, 1), (1, 1, 1), 4),  # 3-d
]


@pytest.mark.parametrize("case", ODD_CASES, ids=lambda c: "x".join(map(str, c[0])) + f"-o{c[1]}")
def test_conv_odd_shapes_exact(case, level, path, threads):
    shape, o, k, s, p, dl, g = case
    rng = np.random.default_rng(o * 31 + shape[1])
    x = rng.integers(-128, 128, shape).astype(np.int8)
    w = rng.integers(-128, 128, (o, shape[1] // g, *k)).astype(np.int8)
    b = rng.integers(-(1 << 20), 1 << 20, o)
    z_x = int(rng.integers(-128, 128))
    wp, off = int8.pack(w, b, z_x)
    got = _C.conv(x, wp, off, k, z_x, s, p, dl, g, None, lanes_of(w, g))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, oracle_conv(x, w, b, z_x, s, p, dl, g))


def _wrapping_pack(w, b, z_x):
    """int8.pack without its int32 range check on the offsets (wrapped instead)."""
    flat = w.reshape(w.shape[0], -1)
    wp = np.zeros((flat.shape[0], _C.padded_length(flat.shape[1])), np.int8)
    wp[:, :flat.shape[1]] = flat
    return wp, wrap32(np.asarray(b, np.int64) - (z_x + 128) * flat.astype(np.int64).sum(1))


def test_large_depth_partial_sums_wrap_and_the_result_is_exact(level):
    """K = 100001 with u = 255 and w = 127: the u8 x s8 partial sums (3.2e9) leave int32
    while the true sum (x - z_x = 0) is the bias: int32 wraparound makes it exact."""
    k = 100001
    x = np.full((3, k), 127, np.int8)
    w = np.full((2, k), 127, np.int8)
    w[1, ::2] = -128
    b = np.array([5, -7])
    wp, off = _wrapping_pack(w, b, 127)
    np.testing.assert_array_equal(_C.dense(x, wp, off), np.tile(b, (3, 1)).astype(np.int32))


def test_large_depth_result_outside_int32_wraps_like_numpy(level):
    """A true sum of 140000 * 127 * 127 = 2.26e9 > 2^31: int32 accumulation wraps, the
    same integers as numpy's int64 sum cast to int32."""
    k = 140000
    rng = np.random.default_rng(3)
    x = np.full((2, k), 127, np.int8)
    x[1] = rng.integers(-128, 128, k)
    w = np.full((3, k), 127, np.int8)
    w[2] = rng.integers(-128, 128, k)
    b = np.array([0, 1, -1])
    wp, off = _wrapping_pack(w, b, -1)
    want = wrap32((x.astype(np.int64) + 1) @ w.astype(np.int64).T + b)
    assert want[0, 0] < 0   # wrapped
    np.testing.assert_array_equal(_C.dense(x, wp, off), want)


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (1, 3, 9), (33, 17, 5), (130, 65, 40),
                                   (7, 1030, 3)])
def test_dense_odd_shapes_exact(m, k, n, level, threads):
    rng = np.random.default_rng(m * k + n)
    x = rng.integers(-128, 128, (m, k)).astype(np.int8)
    w = rng.integers(-128, 128, (n, k)).astype(np.int8)
    b = rng.integers(-1000, 1000, n)
    wp, off = int8.pack(w, b, 11)
    want = (x.astype(np.int64) - 11) @ w.astype(np.int64).T + b
    np.testing.assert_array_equal(_C.dense(x, wp, off), want)


# ----------------------------------------------------------- fused requantize


@pytest.mark.parametrize("case", [ODD_CASES[i] for i in (1, 5, 6, 8, 10, 11, 12, 17, 18)],
                         ids=lambda c: "x".join(map(str, c[0])))
@pytest.mark.parametrize("z_y,qmin,qmax", [(0, -128, 127), (-5, -127, 127), (3, -8, 7)])
def test_conv_requantize_matches_conv_then_requantize(case, z_y, qmin, qmax, level, path):
    shape, o, k, s, p, dl, g = case
    rng = np.random.default_rng(o)
    x = rng.integers(-128, 128, shape).astype(np.int8)
    w = rng.integers(-128, 128, (o, shape[1] // g, *k)).astype(np.int8)
    b = rng.integers(-(1 << 12), 1 << 12, o)
    wp, off = int8.pack(w, b, -2)
    mult = (rng.random(o) * 2e-3).astype(np.float32)
    got = _C.conv_requantize(x, wp, off, k, -2, s, p, dl, g, mult, z_y, qmin, qmax,
                             lanes_of(w, g))
    assert got.dtype == np.int8
    want = oracle_requantize(oracle_conv(x, w, b, -2, s, p, dl, g), mult, z_y, qmin, qmax, 1)
    np.testing.assert_array_equal(got, want)


def test_requantize_ties_round_half_to_even(level):
    """acc = 2t + 1 times 0.5 lands on t + 0.5: rounds to the even neighbour, by hand."""
    acc = np.arange(-9, 10, 2)                     # -9, -7, ..., 9
    want = np.array([-4, -4, -2, -2, 0, 0, 2, 2, 4, 4], np.int8)   # rint(acc / 2)
    # a 1x1 conv with one input channel of weight 1: acc = x - z_x + b
    x = acc.astype(np.int8).reshape(1, 1, 1, -1)
    w = np.ones((1, 1, 1, 1), np.int8)
    wp, off = int8.pack(w, np.array([0]), 0)
    got = _C.conv_requantize(x, wp, off, (1, 1), 0, (1, 1), (0, 0, 0, 0), (1, 1), 1,
                             np.float32(0.5), 0)
    np.testing.assert_array_equal(got.reshape(-1), want)


def test_dense_requantize_per_channel(level):
    rng = np.random.default_rng(9)
    x = rng.integers(-128, 128, (37, 70)).astype(np.int8)
    w = rng.integers(-128, 128, (19, 70)).astype(np.int8)
    b = rng.integers(-500, 500, 19)
    wp, off = int8.pack(w, b, 4)
    mult = (rng.random(19) * 1e-3).astype(np.float32)
    acc = wrap32((x.astype(np.int64) - 4) @ w.astype(np.int64).T + b)
    np.testing.assert_array_equal(_C.dense_requantize(x, wp, off, mult, -1),
                                  oracle_requantize(acc, mult, -1, -128, 127, 1))


def test_amx_modes_and_the_environment_switch():
    """`set_amx` takes never / auto / always and nothing else; QCC_AMX=0 in the
    environment (read when the kernels load) keeps the sums on VNNI."""
    import os
    import subprocess
    import sys

    with pytest.raises(ValueError, match="amx mode"):
        _C.set_amx(True)
    old = _C.set_amx("never")
    try:
        assert not _C.amx()
        assert _C.set_amx("auto") == "never"
        assert _C.amx() == _C.amx_supported()
    finally:
        _C.set_amx(old)
    code = "from qcc.runtime import int8; print(int8._C.amx(), int8._C.amx_supported())"
    env = dict(os.environ, QCC_AMX="0")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True)
    amx, supported = done.stdout.split()
    assert amx == "False" and supported == str(_C.amx_supported())
