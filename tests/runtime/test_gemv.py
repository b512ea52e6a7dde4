"""The matrix-vector kernel (runtime/_gemv_impl.h) behind the dense layer with up to 4
rows and a 1x1 convolution on a 1x1 plane (squeeze-and-excitation): dots in 16 lanes
added in a fixed order, so the same bits on every instruction set it runs and every
thread count, with the weights as given or packed (a plan's constants: `_conv.Dense`,
a conv's WeightPack); the result against float64 numpy."""

import numpy as np
import pytest

from qcc.runtime import isa

_conv = isa._conv
_kernels = isa._kernels
pytestmark = pytest.mark.skipif(_conv is None, reason="the compiled kernels are not built")


def bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


def levels():
    return isa.available()


def close64(got, x, w, b):
    want = x.astype(np.float64) @ w.astype(np.float64).T + b
    scale = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T + np.abs(b)
    assert np.all(np.abs(got - want) <= 8 * np.finfo(np.float32).eps * scale)


# (rows, outputs, depth): MobileNetV3's classifier, tails of the 16 lanes and of the
# 4-row blocks, a depth shorter than one vector, more outputs than one task
SHAPES = [(1, 1280, 960), (2, 33, 17), (4, 7, 5), (3, 100, 1000), (1, 70, 256)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_dense_gives_the_same_bits_on_every_isa_and_thread_count(shape):
    m, n, k = shape
    rng = np.random.default_rng(n + k)
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32)
    b = rng.standard_normal(n, dtype=np.float32)
    outs = []
    for level in levels():
        with isa.forced(level):
            assert _kernels._gemv_isa() == level
            dense = _conv.Dense()
            for threads in (1, 2):
                old = _kernels._set_threads(threads), _conv._set_threads(threads)
                try:
                    outs.append(_kernels.dense(x, w, b))
                    outs.append(dense(x, w, b))   # packed at the first call
                    outs.append(dense(x, w, b))
                finally:
                    _kernels._set_threads(old[0])
                    _conv._set_threads(old[1])
    assert dense.nbytes >= w.nbytes
    for y in outs[1:]:
        np.testing.assert_array_equal(bits(y), bits(outs[0]))
    close64(outs[0], x, w, b)


def test_the_lanes_are_added_in_the_documented_order():
    """Depth 32 with one large value in lane 0 and small ones elsewhere: the pairwise
    order (l + 8 into l, then + 4, + 2, + 1) gives a different float32 sum than a
    sequential one, and the kernel gives the pairwise one, computed here in numpy."""
    x = np.ones((1, 32), np.float32)
    w = np.zeros((1, 32), np.float32)
    w[0, 0] = 2.0 ** 24
    w[0, 1:16] = 1.0
    lanes = np.zeros(16, np.float32)
    for j in range(32):
        lanes[j % 16] = np.float32(lanes[j % 16] + w[0, j] * x[0, j])
    t = lanes
    for half in (8, 4, 2, 1):
        t = (t[:half] + t[half:2 * half]).astype(np.float32)
    for level in levels():
        with isa.forced(level):
            got = _kernels.dense(x, w, np.zeros(1, np.float32))
        assert got[0, 0] == t[0]
    sequential = np.float32(0)
    for j in range(32):
        sequential = np.float32(sequential + w[0, j])
    assert t[0] != sequential   # the case tells the two orders apart


@pytest.mark.parametrize("n_img", [1, 3])
def test_conv_1x1_on_a_1x1_plane_is_the_dense_product_with_its_epilogue(n_img):
    rng = np.random.default_rng(n_img)
    x = rng.standard_normal((n_img, 72, 1, 1), dtype=np.float32)
    w = rng.standard_normal((24, 72, 1, 1), dtype=np.float32)
    b = rng.standard_normal(24, dtype=np.float32)
    args = ((1, 1), (0, 0, 0, 0), (1, 1), 1)
    outs = []
    for level in levels():
        with isa.forced(level):
            pack = _conv.WeightPack()
            for threads in (1, 2):
                old = _conv._set_threads(threads)
                try:
                    outs.append(_conv.conv(x, w, b, *args, activation="relu"))
                    for _ in range(2):   # packed at the first call, then kept
                        outs.append(_conv.conv(x, w, b, *args, activation="relu", pack=pack))
                finally:
                    _conv._set_threads(old)
            assert pack.nbytes >= w.nbytes
    for y in outs[1:]:
        np.testing.assert_array_equal(bits(y), bits(outs[0]))
    plain = _conv.conv(x, w, b, *args)
    np.testing.assert_array_equal(bits(outs[0]), bits(np.maximum(plain, 0, dtype=np.float32)))
    # the same dots as the dense layer, image by image (the batch does not change them)
    for i in range(n_img):
        dense = _kernels.dense(x[i].reshape(1, 72), w.reshape(24, 72), b)
        np.testing.assert_array_equal(bits(plain[i].reshape(1, 24)), bits(dense))
    close64(plain.reshape(n_img, 24), x.reshape(n_img, 72), w.reshape(24, 72), b)
