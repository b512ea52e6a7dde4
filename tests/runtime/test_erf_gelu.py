"""The compiled float32 erf and GELU (runtime/_norm_impl.h) against float64 scipy,
and the same bits from each of their AVX-512, AVX2 and plain builds."""

import numpy as np
import pytest
from scipy import special

from qcc.runtime import kernels

if not kernels.compiled:
    pytest.skip("the compiled kernels are not built", allow_module_level=True)

from qcc.runtime import _norm  # noqa: E402

SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, 1e-40, -1e-40, 1e-30, 0.921875,
                    -0.921875, 0.92187506, 3.925, 3.9249997, 10.0, -10.0, 3.4e38, -3.4e38],
                   np.float32)


def _grid() -> np.ndarray:
    """[-6, 6] every 6e-6, [-1e-3, 1e-3] every 1e-8, and the special values."""
    return np.concatenate([np.linspace(-6, 6, 2_000_001, dtype=np.float32),
                           np.linspace(-1e-3, 1e-3, 200_001, dtype=np.float32), SPECIAL])


def _ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """|got - want| in units of the float32 spacing at want (want in float64)."""
    spacing = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    return np.abs(got.astype(np.float64) - want) / spacing


def test_erf_within_1_14_ulp_of_float64(build):
    x = _grid()
    got = _norm.erf(x)
    ulps = _ulps(got, special.erf(x.astype(np.float64)))
    print(f"{build}: erf max {ulps.max():.3f} ulp")
    assert ulps.max() <= 1.14
    assert np.isnan(_norm.erf(np.array([np.nan], np.float32)))[0]
    # odd, and exactly +-1 from 3.925 on
    np.testing.assert_array_equal(_norm.erf(-x), -got)
    big = x[np.abs(x) >= np.float32(3.925)]
    np.testing.assert_array_equal(np.abs(_norm.erf(big)), 1.0)


def test_gelu_close_to_float64_and_equal_to_its_float32_steps(build):
    x = _grid()
    x = x[np.abs(x) < 1e30]  # x * 2 overflows float32 beyond 1.7e38
    got = _norm.gelu(x)
    x64 = x.astype(np.float64)
    want = 0.5 * x64 * (1 + special.erf(x64 / np.sqrt(2)))
    # erf(x / sqrt 2) + 1 cancels for x < 0: an error of an ulp of erf (6e-8) times x
    np.testing.assert_allclose(got, want, rtol=4e-7, atol=6e-8 * 6)
    # the exported chain, each node a float32 operation, with this erf
    chain = (x * (_norm.erf(x / np.float32(np.sqrt(2))) + np.float32(1))) * np.float32(0.5)
    np.testing.assert_array_equal(got, chain)


def test_every_build_gives_the_same_bits():
    """The grid, NaN, and float32 bit patterns drawn at random (every exponent, both
    signs, subnormals, infinities, NaNs), in arrays whose lengths leave tails."""
    x = _grid()
    bits = np.random.default_rng(3).integers(0, 2**32, 300_007, dtype=np.uint64)
    x = np.concatenate([x, np.array([np.nan], np.float32), bits.astype(np.uint32).view(np.float32)])
    results = {}
    for name in _norm._variants():
        old = _norm._set_variant(name)
        try:
            results[name] = (_norm.erf(x).view(np.int32), _norm.gelu(x).view(np.int32))
        finally:
            _norm._set_variant(old)
    first = next(iter(results.values()))
    for name, (e, g) in results.items():
        np.testing.assert_array_equal(e, first[0], err_msg=f"erf of the {name} build")
        np.testing.assert_array_equal(g, first[1], err_msg=f"gelu of the {name} build")


def test_in_place_and_out_buffers():
    x = np.random.default_rng(0).standard_normal((3, 5, 7)).astype(np.float32)
    want = _norm.gelu(x)
    y = x.copy()
    assert _norm.gelu(y, out=y) is y
    np.testing.assert_array_equal(y, want)
    with pytest.raises(ValueError, match="out must be"):
        _norm.erf(x, out=np.empty((3, 5), np.float32))


def test_unknown_build_is_an_error():
    with pytest.raises(ValueError, match="unknown erf/GELU build 'sse9'"):
        _norm._set_variant("sse9")


def test_softmax_of_masked_scores_is_exactly_zero():
    """Scores far below the row's max (an attention mask's -1e4 or float32 min) give
    probabilities of exactly 0; those whose float64 value is below the smallest
    normal float32 give 0 too (no subnormal is left to slow the product with V)."""
    x = np.array([[0, -1e4, -100, -87.5, -3.4e38, 1, -20]], np.float32)
    x64 = x.astype(np.float64)
    want = np.exp(x64 - x64.max()) / np.exp(x64 - x64.max()).sum()
    got = _norm.softmax(x, -1)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=np.finfo(np.float32).tiny)
    np.testing.assert_array_equal(got[0, [1, 2, 3, 4]], 0.0)
    np.testing.assert_array_equal(_norm.softmax(np.ascontiguousarray(x.T), 0).T, got)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threaded_rows_against_float64_and_the_same_bits(threads):
    """Big tensors run in chunks of rows on the thread pool: each row against float64
    numpy, and the bits of one thread whatever the threads (rows of 197, 768 and
    192 elements: tasks end inside no row; 20001 elements: a chunk of one row)."""
    rng = np.random.default_rng(3)
    scores = (rng.standard_normal((2, 3, 197, 197)) * 4).astype(np.float32)
    hidden = (rng.standard_normal((1, 197, 768)) * 3).astype(np.float32)
    tokens = rng.standard_normal((197, 192)).astype(np.float32)
    long_rows = rng.standard_normal((5, 20001)).astype(np.float32)
    gamma, beta = rng.standard_normal(192).astype(np.float32), rng.standard_normal(192)
    beta = beta.astype(np.float32)

    def run():
        return (_norm.softmax(scores, -1), _norm.softmax(long_rows, -1),
                _norm.gelu(hidden), _norm.erf(hidden),
                _norm.layer_norm(tokens, gamma, beta, -1, 1e-6),
                _norm.layer_norm(long_rows, np.float32(2), None, -1, 1e-5))

    old = _norm._set_threads(1)
    try:
        one = run()
        _norm._set_threads(threads)
        got = run()
    finally:
        _norm._set_threads(old)
    for a, b in zip(got, one, strict=True):
        np.testing.assert_array_equal(a.view(np.int32), b.view(np.int32))

    def softmax64(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    def layer_norm64(x, g, b):
        d = x - x.mean(-1, keepdims=True)
        return d / np.sqrt((d * d).mean(-1, keepdims=True) + 1e-6) * g + b

    h64 = hidden.astype(np.float64)
    np.testing.assert_allclose(got[0], softmax64(scores.astype(np.float64)), rtol=2e-6,
                               atol=1e-9)
    np.testing.assert_allclose(got[1], softmax64(long_rows.astype(np.float64)), rtol=1e-5,
                               atol=1e-12)
    np.testing.assert_allclose(got[2], 0.5 * h64 * (1 + special.erf(h64 / np.sqrt(2))),
                               rtol=4e-7, atol=4e-7)
    np.testing.assert_allclose(got[3], special.erf(h64), rtol=3e-7, atol=1e-7)
    np.testing.assert_allclose(got[4], layer_norm64(tokens.astype(np.float64), gamma, beta),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[5], layer_norm64(long_rows.astype(np.float64), 2, 0),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [1, 7, 8, 9, 192, 197, 768])
def test_layer_norm_rows_side_by_side_give_each_row_alone(n):
    """Layer norm runs four rows side by side: 11 rows (two groups and three alone)
    give the bits of each row normalized alone, and float64's values."""
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((11, n)) * 3 + 1).astype(np.float32)
    g, b = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    got = _norm.layer_norm(x, g, b, -1, 1e-5)
    alone = np.concatenate([_norm.layer_norm(x[i:i + 1], g, b, -1, 1e-5) for i in range(11)])
    np.testing.assert_array_equal(got.view(np.int32), alone.view(np.int32))
    x64 = x.astype(np.float64)
    d = x64 - x64.mean(-1, keepdims=True)
    want = d / np.sqrt((d * d).mean(-1, keepdims=True) + 1e-5) * g + b
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_softmax_rows_give_the_same_bits_on_every_build():
    """Rows of every length 1..80 and of 128, 197 and 300 (whole blocks of 16, pairs
    of them, tails), with -inf (masked scores), huge and NaN entries: the AVX2 rows
    (exps side by side) and the AVX-512 rows (four rows side by side) give the bits of
    the compiler's loop, and of each row alone; float64 is the oracle for the values."""
    rng = np.random.default_rng(9)
    rows = []
    for n in list(range(1, 81)) + [128, 197, 300]:
        # 9 rows: two groups of four side by side on AVX-512, then one alone
        x = (rng.standard_normal((9, n)) * 4).astype(np.float32)
        x[1, 1::7] = -np.inf
        x[2, ::11] = 80.0
        x[6, 2::5] = -np.inf
        rows.append(x)
    odd = np.array([[np.nan, 1.0, 2.0], [1.0, np.nan, 2.0], [-np.inf, 0.0, 1e30]], np.float32)
    rows.append(odd)
    results = {}
    for name in _norm._variants():
        old = _norm._set_variant(name)
        try:
            results[name] = [_norm.softmax(x, -1).view(np.int32) for x in rows]
            for x, got in zip(rows, results[name], strict=True):   # each row alone
                alone = np.concatenate([_norm.softmax(x[i:i + 1], -1) for i in range(len(x))])
                np.testing.assert_array_equal(alone.view(np.int32), got,
                                              err_msg=f"rows of {x.shape} alone, {name}")
        finally:
            _norm._set_variant(old)
    first = next(iter(results.values()))
    for name, got in results.items():
        for x, a, b in zip(rows, got, first, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"softmax of {x.shape} on the {name} build")
    for x, a in zip(rows[:-1], first[:-1], strict=True):
        x64 = x.astype(np.float64)
        want = np.exp(x64 - x64.max(-1, keepdims=True))
        want /= want.sum(-1, keepdims=True)
        np.testing.assert_allclose(a.view(np.float32), want, rtol=2e-6, atol=1e-7)
