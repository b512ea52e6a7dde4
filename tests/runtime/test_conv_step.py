"""`_conv.Conv`, the conv step decoded once (the plan's conv steps call it): what it
keeps from call to call (the geometry for the last input shape, the packed weights)
must never change a result. Oracles: a float64 numpy convolution (tap by tap), and
`_conv.conv` of the same arguments for the bits."""

import numpy as np
import pytest

from qcc.runtime import isa

_conv = isa._conv
pytestmark = pytest.mark.skipif(_conv is None, reason="qcc.runtime._conv is not built")


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
                    "nchw,oc->nohw", xs[:, g * cg:(g + 1) * cg].astype(np.float64),
                    w[g * og:(g + 1) * og, :, i, j].astype(np.float64))
    return y


def attrs(stride, pad):
    return (stride, stride), (pad,) * 4, (1, 1)


@pytest.mark.parametrize("groups,k,stride,pad", [(1, 3, 1, 1), (1, 1, 1, 0), (6, 3, 2, 1)])
def test_one_step_over_changing_input_shapes(groups, k, stride, pad):
    """The same step over batch and spatial sizes that change and come back: each
    result is the float64 convolution's (to float32 rounding) and `conv`'s bits."""
    rng = np.random.default_rng(11)
    w = rng.standard_normal((6, 6 // groups, k, k)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    step = _conv.Conv(*attrs(stride, pad), groups, "relu", pack=_conv.WeightPack())
    for shape in [(1, 6, 9, 9), (3, 6, 9, 9), (1, 6, 5, 12), (1, 6, 9, 9), (2, 6, 1, 1)]:
        x = rng.standard_normal(shape).astype(np.float32)
        got = step(x, w, b)
        want = np.maximum(conv64(x, w, b, stride, pad, groups), 0)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        again = _conv.conv(x, w, b, *attrs(stride, pad), groups, activation="relu")
        np.testing.assert_array_equal(got, again)
        out = np.empty_like(got)
        assert step(x, w, b, out=out) is out
        np.testing.assert_array_equal(out, got)


def test_weights_changed_in_place_are_seen_without_a_pack():
    """Without a WeightPack the step reads the caller's weights and bias each call
    (float32 ones in place; float64 ones converted every call)."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((1, 4, 7, 7)).astype(np.float32)
    for dtype in (np.float32, np.float64):
        w = rng.standard_normal((5, 4, 3, 3)).astype(dtype)
        b = rng.standard_normal(5).astype(dtype)
        step = _conv.Conv(*attrs(1, 1), 1)
        first = step(x, w, b)
        np.testing.assert_allclose(first, conv64(x, w, b, 1, 1, 1), rtol=1e-4, atol=1e-4)
        w *= -2
        b += 1
        second = step(x, w, b)
        np.testing.assert_allclose(second, conv64(x, w, b, 1, 1, 1), rtol=1e-4, atol=1e-4)
        assert not np.allclose(first, second)


def test_other_weights_are_packed_again():
    """A step with a WeightPack called with another weights array packs that one."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    step = _conv.Conv(*attrs(1, 1), 1, pack=_conv.WeightPack())
    for _ in range(3):
        w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
        b = rng.standard_normal(8).astype(np.float32)
        np.testing.assert_allclose(step(x, w, b), conv64(x, w, b, 1, 1, 1), rtol=1e-4,
                                   atol=1e-4)


def test_a_forced_gemm_variant_and_blocking_set_the_step_up_again():
    """After the GEMM variant or its blocking changes between two calls, the step
    packs for the variant in use: the same bits on every variant (conv's promise)."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((1, 16, 10, 10)).astype(np.float32)
    w = rng.standard_normal((20, 16, 3, 3)).astype(np.float32)
    b = rng.standard_normal(20).astype(np.float32)
    step = _conv.Conv(*attrs(1, 1), 1, pack=_conv.WeightPack())
    first = step(x, w, b)
    old = _conv._variant()
    try:
        for name in _conv._variants():
            _conv._set_variant(name)
            np.testing.assert_array_equal(step(x, w, b), first)
        blocking = _conv._set_blocking(16, 8, 32)
        try:
            np.testing.assert_array_equal(step(x, w, b), first)
        finally:
            _conv._set_blocking(*blocking)
    finally:
        _conv._set_variant(old)
    np.testing.assert_allclose(first, conv64(x, w, b, 1, 1, 1), rtol=1e-4, atol=1e-4)


def test_a_residual_in_the_output_is_refused():
    rng = np.random.default_rng(15)
    x = rng.standard_normal((1, 4, 5, 5)).astype(np.float32)
    w = rng.standard_normal((4, 4, 1, 1)).astype(np.float32)
    step = _conv.Conv(*attrs(1, 0), 1)
    out = np.zeros((1, 4, 5, 5), np.float32)
    with pytest.raises(ValueError, match="separate array"):
        step(x, w, None, out=out, residual=out)
    with pytest.raises(ValueError, match="separate array"):
        step(x, w, None, out=out, residual=np.zeros((1, 4, 5, 4), np.float32))
    skip = rng.standard_normal((1, 4, 5, 5)).astype(np.float32)
    got = step(x, w, None, out=out, residual=skip)
    np.testing.assert_allclose(got, conv64(x, w, np.zeros(4), 1, 0, 1) + skip, rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("n_img,groups", [(2, 1), (3, 1), (8, 1), (4, 2), (16, 1)])
def test_images_shared_by_threads_give_the_bits_of_one_thread(n_img, groups):
    """A batch whose images (and groups) go to the threads whole
    (qcc_conv_images_parallel: 8, 4x2 and 16 of them on 2 threads; 2 and 3 stay
    on the shared GEMMs): the same bits as on one thread, with a fused residual and
    activation, and the float64 convolution's values."""
    rng = np.random.default_rng(16 + n_img)
    x = rng.standard_normal((n_img, 8, 20, 19)).astype(np.float32)
    w = rng.standard_normal((12, 8 // groups, 3, 3)).astype(np.float32)
    b = rng.standard_normal(12).astype(np.float32)
    skip = rng.standard_normal((n_img, 12, 20, 19)).astype(np.float32)
    outs = []
    old_t = _conv._set_threads(1)
    old_min = _conv._set_parallel_min(0.0)
    try:
        for threads in (1, 2):
            _conv._set_threads(threads)
            step = _conv.Conv(*attrs(1, 1), groups, "relu", pack=_conv.WeightPack())
            outs.append(step(x, w, b, out=np.empty((n_img, 12, 20, 19), np.float32),
                             residual=skip))
    finally:
        _conv._set_threads(old_t)
        _conv._set_parallel_min(old_min)
    np.testing.assert_array_equal(outs[0].view(np.uint32), outs[1].view(np.uint32))
    want = np.maximum(conv64(x, w, b, 1, 1, groups) + skip, 0)
    np.testing.assert_allclose(outs[0], want, rtol=1e-4, atol=1e-4)
