"""The builds of the compiled histogram pass (runtime/_stats.pyx `add_histogram`:
the scalar reference, AVX-512, AVX-512 with float64 products only) against an
independent numpy oracle, `floor(float64(x) * 2**-e) - start` counted by np.bincount
with the values that are not finite left out, and against each other on arbitrary
float32 bit patterns: the same int64 counts and the same outside count (the
ValueError's number) on every build, for every input."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from qcc.quant import observers

C = observers.COMPILED
pytestmark = pytest.mark.skipif(C is None, reason="qcc.quant._stats is not compiled")

BUILDS = C._hist_variants() if C is not None else []
TASK = 1 << 16  # values per block of the threaded path (QCC_HIST_TASK)


@pytest.fixture(params=BUILDS)
def build(request):
    old = C._set_hist_variant(request.param)
    try:
        yield request.param
    finally:
        C._set_hist_variant(old)


@pytest.fixture(params=[1, 2])
def threads(request):
    old = C._set_threads(request.param)
    try:
        yield request.param
    finally:
        C._set_threads(old)


def oracle(x: np.ndarray, e: int, start: int, bins: int) -> tuple[np.ndarray, int]:
    """(counts of the bins inside, how many finite values fall outside), in exact
    integers: floors beyond +-2**62 are clamped there, outside any grid it takes."""
    assert abs(start) + bins < 2**61
    v = x[np.isfinite(x)].astype(np.float64)
    t = np.clip(np.floor(v * 2.0 ** -e), -(2.0**62), 2.0**62).astype(np.int64) - start
    inside = (t >= 0) & (t < bins)
    return np.bincount(t[inside], minlength=bins).astype(np.int64), int(v.size - inside.sum())


def run(x: np.ndarray, e: int, start: int, bins: int, all_finite: bool,
        hist: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """(the histogram after add_histogram, the outside count its ValueError names)."""
    hist = np.zeros(bins, np.int64) if hist is None else hist
    try:
        C.add_histogram(x, hist, e, start, all_finite)
    except ValueError as err:
        m = re.fullmatch(rf"(\d+) values fall outside the histogram's {bins} bins", str(err))
        assert m, str(err)
        return hist, int(m.group(1))
    return hist, 0


def check(x: np.ndarray, e: int, start: int, bins: int, all_finite: bool) -> None:
    want, out = oracle(x, e, start, bins)
    hist, got_out = run(x, e, start, bins, all_finite)
    assert got_out == out
    assert np.array_equal(hist, want)


def relu_like(seed: int, n: int) -> np.ndarray:
    """A ReLU's output: about half the values exactly 0, some of them -0."""
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal(n).astype(np.float32), np.float32(0))
    x[rng.random(n) < 0.05] = -0.0
    return np.clip(x, 0, np.float32(3.99))


def normal(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.standard_normal(n).astype(np.float32), np.float32(-3.99),
                   np.float32(3.99))


LENGTHS = [1, 3, 4, 15, 16, 17, 31, 1000, 1024, 1025, 65_536 + 17, 1_000_003]


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("all_finite", [True, False])
def test_relu_zeros_and_negative_zeros(build, n, all_finite):
    check(relu_like(n, n), -8, -1024, 2048, all_finite)


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("all_finite", [True, False])
def test_negative_values(build, n, all_finite):
    check(normal(n, n), -8, -1024, 2048, all_finite)


@pytest.mark.parametrize("data", ["relu", "normal", "mixed"])
@pytest.mark.parametrize("all_finite", [True, False])
def test_threaded_path(build, threads, data, all_finite):
    """From 4 blocks of 65536 values the threads share the blocks."""
    n = 4 * TASK + 4 * TASK // 3 + 5
    x = {"relu": relu_like, "normal": normal}.get(data, normal)(7, n)
    if data == "mixed":
        x[::97] = 0.0
        x[::101] = -0.0
        x[::5] *= np.float32(1e-30)
        if not all_finite:
            x[::1009] = np.nan
            x[3::2003] = np.inf
            x[5::3001] = -np.inf
    check(x, -8, -1024, 2048, all_finite)


@pytest.mark.parametrize("n", [1, 15, 17, 1000, 4 * TASK + 3])
def test_nan_and_inf_are_skipped(build, threads, n):
    x = normal(n + 1, n) * np.float32(2)
    rng = np.random.default_rng(n)
    for value in (np.nan, np.inf, -np.inf):
        x[rng.random(n) < 0.03] = value
    x[: min(n, 3)] = [np.nan, np.inf, -np.inf][: min(n, 3)]
    check(x, -8, -1024, 2048, False)
    if n > 3:  # whole blocks of them too
        x[: n // 2] = np.nan
        check(x, -8, -1024, 2048, False)


@pytest.mark.parametrize("n", [1, 15, 17, 1000, 4 * TASK + 3])
@pytest.mark.parametrize("all_finite", [True, False])
def test_values_outside_raise_and_count(build, threads, n, all_finite):
    """The ValueError names every finite value outside; the counts of the values
    inside are added all the same."""
    x = normal(n + 2, n) * np.float32(3)  # beyond [-4, 4) now and then
    x[n // 2] = np.float32(100.0)         # at least one outside
    if n > 40:
        x[-20:] = -np.float32(1e30)       # and a run of them at the end
    if not all_finite and n > 10:
        x[1:4] = [np.nan, np.inf, -np.inf]
    want, out = oracle(x, -8, -1024, 2048)
    assert out > 0
    with pytest.raises(ValueError, match=f"^{out} values fall outside the histogram's"):
        C.add_histogram(x, np.zeros(2048, np.int64), -8, -1024, all_finite)
    hist, got = run(x, -8, -1024, 2048, all_finite)
    assert (got, hist.tolist()) == (out, want.tolist())


@pytest.mark.parametrize("all_finite", [True, False])
def test_outside_in_every_place_of_a_group(build, all_finite):
    """One value outside at each position of a group of 16 (and of the 4-value
    groups of the scalar loop), in blocks that are otherwise inside."""
    base = normal(3, 16 * 40)
    for pos in range(40):
        x = base.copy()
        x[16 * pos + pos % 16] = np.float32(-50.0)
        check(x, -8, -1024, 2048, all_finite)


@pytest.mark.parametrize("n", [17, 1000, 4 * TASK + 1])
def test_tiny_and_denormal_values(build, threads, n):
    """Denormals and tiny normals of both signs: floor 0 above zero, -1 below."""
    rng = np.random.default_rng(n)
    kinds = np.array([1e-45, 1e-40, 1.17e-38, 1e-30, 1e-20], np.float32)
    x = rng.choice(kinds, n) * rng.choice(np.array([-1, 1], np.float32), n)
    x[::7] = 0.0
    x[::11] = -0.0
    assert np.any((x != 0) & (np.abs(x) < np.float32(1.1754944e-38)))  # denormals
    for e in (-8, 0, 20, 126, -126):  # products that underflow in float32 (e = 20)
        check(x, e, -4, 8, True)
        check(x, e, -4, 8, False)


def test_products_that_underflow_float32_below_zero(build):
    """v * 2**-e below the smallest float32 denormal: -0 in float32 rounded to
    nearest, but floor -1 in float64."""
    x = np.array([-1e-44, 1e-44, -1.4e-45, 1.4e-45, -1e-39, 1e-39] * 9, np.float32)
    for e in (1, 4, 20, 100):
        check(x, e, -2, 4, True)
        check(x, e, -2, 4, False)


@pytest.mark.parametrize("n", [1, 15, 17, 1000, 4 * TASK + 7])
@pytest.mark.parametrize("value", [0.0, -0.0, 1.5, -3.25, 1e-30])
def test_all_values_in_one_bin(build, threads, n, value):
    x = np.full(n, value, np.float32)
    check(x, 0, -4, 8, True)
    check(x, -8, -1024, 2048, False)


@pytest.mark.parametrize("all_finite", [True, False])
def test_zero_bin_outside(build, all_finite):
    """Zeros whose bin is not in the histogram are outside like any value."""
    x = relu_like(5, 5000)
    check(x, -8, 1, 2048, all_finite)
    pos = x[x > 0.01]
    check(pos, -8, 2, 1100, all_finite)


@pytest.mark.parametrize("e, start, bins", [
    (-130, -(1 << 20), 64),             # 2**130 is no float32
    (140, -4, 8),                       # 2**-140 is no normal float32
    (-127, -4, 8), (126, -4, 8),        # the ends of the float32 powers of two
    (0, (1 << 40) - 3, 64),             # start past int32
    (0, -(1 << 31), 64), (0, (1 << 31) - 64, 64),
    (0, -(1 << 31) + 1, 64), (0, (1 << 31) - 65, 64),  # just inside int32
    (-200, -(1 << 60), 64),
])
def test_scales_and_starts_of_every_path(build, e, start, bins):
    """Grids on both sides of the conditions of the AVX-512 build's float32 products
    (a normal float32 power of two as the scale, bins inside int32)."""
    rng = np.random.default_rng(abs(e) + bins)
    t = start + rng.uniform(-2, bins + 2, 5000)
    with np.errstate(over="ignore"):
        x = (t * 2.0**e).astype(np.float32)
    big = rng.uniform(-3.4e38, 3.4e38, 5000).astype(np.float32)
    x = np.where(np.isfinite(x), x, big)
    x[::13] = 0.0
    x[::29] = -0.0
    x[5::31] = np.float32(3e38)
    x[7::37] = -np.float32(3e38)
    check(x, e, start, bins, True)
    x[9::41] = np.nan
    x[11::43] = np.inf
    x[13::47] = -np.inf
    check(x, e, start, bins, False)


def test_huge_values(build):
    big = np.finfo(np.float32).max
    x = np.array([big, -big, 3e38, -3e38, 1e30, -1e30, 2.0**63, -(2.0**63), 2.0**31,
                  -(2.0**31), 1.0, 0.0], np.float32)
    x = np.tile(x, 9)
    for e, start in ((-8, -1024), (-127, -8), (0, -(2**31) + 1), (0, 2**31 - 64)):
        check(x, e, start, 64, True)
        check(x, e, start, 64, False)


BITS_CASES = [
    (-8, -1024, 2048), (0, -4, 8), (20, -4, 8), (-127, -(1 << 30), 1 << 12),
    (0, (1 << 63) - 100, 200),          # starts at the ends of int64
    (0, -(1 << 63), 200), (0, -(1 << 63) + 1, 200),
]


@pytest.mark.parametrize("e, start, bins", BITS_CASES)
@pytest.mark.parametrize("all_finite", [True, False])
def test_builds_agree_on_any_bits(e, start, bins, all_finite):
    """Every build gives the scalar build's counts and outside count on float32 bit
    patterns of every kind (NaN and inf included, even when `all_finite` says there
    is none)."""
    rng = np.random.default_rng(bins + e)
    x = rng.integers(0, 1 << 32, 100_003, dtype=np.uint64).astype(np.uint32).view(np.float32)
    # and values near the grid, so that some fall inside
    near = ((start + rng.integers(-2, bins + 2, 100_003)).astype(np.float64)
            + rng.random(100_003)) * 2.0 ** e
    x = np.where(rng.random(100_003) < 0.7, near.astype(np.float32), x)
    x[::17] = 0.0
    results = {}
    for name in BUILDS:
        old = C._set_hist_variant(name)
        try:
            h, out = run(x, e, start, bins, all_finite)
            h2, out2 = run(x[: 4 * TASK + 5], e, start, bins, all_finite)
        finally:
            C._set_hist_variant(old)
        results[name] = (h.tolist(), out, h2.tolist(), out2)
    assert all(r == results["scalar"] for r in results.values())
    if not all_finite and abs(start) < 1 << 52:
        want, out = oracle(x, e, start, bins)
        assert results["scalar"][:2] == (want.tolist(), out)


def test_accumulates_into_the_given_histogram(build):
    hist = np.arange(2048, dtype=np.int64) * 3
    x = relu_like(1, 100_000)
    want = hist + oracle(x, -8, -1024, 2048)[0]
    C.add_histogram(x, hist, -8, -1024, True)
    assert np.array_equal(hist, want)


def test_variant_names():
    assert BUILDS[0] == "scalar"
    old = C._set_hist_variant("scalar")
    try:
        assert C._hist_variant() == "scalar"
        with pytest.raises(ValueError, match="unknown histogram build"):
            C._set_hist_variant("avx3000")
    finally:
        C._set_hist_variant(old)
    assert C._hist_variant() == old


@pytest.mark.parametrize("level, want", [("scalar", "scalar"), ("avx2", "scalar"),
                                         ("avx512", None), ("", None)])
def test_qcc_isa_caps_the_build(level, want):
    env = dict(os.environ, QCC_ISA=level)
    r = subprocess.run([sys.executable, "-c",
                        "from qcc.quant import _stats; print(_stats._hist_variant())"],
                       env=env, capture_output=True, text=True, check=True)
    expected = want or ("avx512" if "avx512" in BUILDS else "scalar")
    assert r.stdout.strip() == expected
