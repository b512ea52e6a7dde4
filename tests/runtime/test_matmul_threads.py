"""dense and batched_matmul cut into tasks on the runtime's thread pool:
float64 numpy is the oracle, and the bits do not depend on the threads."""

import numpy as np
import pytest

from qcc.runtime import kernels

if not kernels.compiled:
    pytest.skip("the compiled kernels are not built", allow_module_level=True)

from qcc.runtime import _kernels  # noqa: E402

RNG = np.random.default_rng(0)


@pytest.fixture(params=[1, 2, 3])
def threads(request):
    old_threads = _kernels._set_threads(request.param)
    old_min = _kernels._set_parallel_min(0)  # every product cut into blocks
    yield request.param
    _kernels._set_threads(old_threads)
    _kernels._set_parallel_min(old_min)


def _f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def test_dense_against_float64(threads):
    x, w, b = _f32(197, 192), _f32(580, 192), _f32(580)
    got = _kernels.dense(x, w, b)
    want = x.astype(np.float64) @ w.T.astype(np.float64) + b
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_batched_matmul_against_float64(threads):
    a, b = _f32(2, 3, 70, 16), _f32(2, 3, 16, 45)
    np.testing.assert_allclose(_kernels.batched_matmul(a, b), a.astype(np.float64) @ b,
                               rtol=1e-4, atol=1e-4)
    shared = _f32(16, 9)  # one right operand for every batch entry
    np.testing.assert_allclose(_kernels.batched_matmul(a, shared),
                               a.astype(np.float64) @ shared, rtol=1e-4, atol=1e-4)
    broadcast = _f32(1, 3, 16, 45)  # batch dims broadcast
    np.testing.assert_allclose(_kernels.batched_matmul(a, broadcast),
                               a.astype(np.float64) @ broadcast, rtol=1e-4, atol=1e-4)


def test_bits_do_not_depend_on_threads():
    x, w = _f32(300, 64), _f32(300, 64)  # 128 + 128 + 44 columns
    a, b = _f32(4, 130, 32), _f32(4, 32, 50)
    old_min = _kernels._set_parallel_min(0)
    old = _kernels._set_threads(1)
    try:
        one = (_kernels.dense(x, w, None), _kernels.batched_matmul(a, b))
        for n in (2, 4):
            _kernels._set_threads(n)
            np.testing.assert_array_equal(_kernels.dense(x, w, None), one[0])
            np.testing.assert_array_equal(_kernels.batched_matmul(a, b), one[1])
    finally:
        _kernels._set_threads(old)
        _kernels._set_parallel_min(old_min)


def test_empty_inner_dim_gives_zeros(threads):
    a, b = np.zeros((2, 5, 0), np.float32), np.zeros((2, 0, 3), np.float32)
    np.testing.assert_array_equal(_kernels.batched_matmul(a, b), np.zeros((2, 5, 3)))


def test_attention_heads_cut_into_column_blocks(threads):
    """Three heads of an odd batch are cut into column blocks too (six tasks): float64
    numpy is the oracle, and the bits are those of one thread."""
    q, k, v = _f32(1, 3, 197, 64), _f32(1, 3, 64, 197), _f32(1, 3, 197, 64)
    scores = _kernels.batched_matmul(q, k)
    mixed = _kernels.batched_matmul(scores, v)
    np.testing.assert_allclose(scores, q.astype(np.float64) @ k, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(mixed, scores.astype(np.float64) @ v, rtol=1e-4, atol=1e-3)
    old = _kernels._set_threads(1)
    try:
        np.testing.assert_array_equal(_kernels.batched_matmul(q, k), scores)
        np.testing.assert_array_equal(_kernels.batched_matmul(scores, v), mixed)
    finally:
        _kernels._set_threads(old)
