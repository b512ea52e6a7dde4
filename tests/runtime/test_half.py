"""qcc.runtime.half (compiled runtime/_half.pyx): float16 conversions and the Ascend
quant/dequant stages against numpy's own float16 casts and float16 arithmetic,
bit for bit, on every float16 value, the midpoints between them, random float32
bit patterns and the overflow edge; on every instruction set the CPU has (AVX-512,
AVX2 + F16C, scalar C), and on tensors big enough to be shared by threads."""

import numpy as np
import pytest

from qcc.runtime import half

pytestmark = pytest.mark.skipif(half._C is None, reason="qcc.runtime._half is not built")


@pytest.fixture(autouse=True, params=["scalar", "avx2", "avx512"])
def level(request):
    """Force the float16 kernels to one level (skipped where the CPU lacks it)."""
    if request.param not in half._C.supported_isas():
        pytest.skip(f"this CPU does not run the {request.param} float16 kernels")
    old = half._C.set_isa(request.param)
    try:
        yield request.param
    finally:
        half._C.set_isa(old)

MODES = {"Round": None, "Rint": np.rint, "Floor": np.floor, "Ceil": np.ceil,
         "Trunc": np.trunc}


def _round_half_away(v):
    """CANN's Round on float16 values: |v| - floor(|v|) is exact in float16."""
    a = np.abs(v)
    r = np.floor(a)
    return np.copysign(np.where(a - r >= 0.5, r + 1, r), v)


def _hard_floats() -> np.ndarray:
    """Every finite float16 value, the midpoints between neighbours and the float32
    values on either side of them, random float32 bit patterns, and the edges."""
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    h = np.sort(h[np.isfinite(h)].astype(np.float32))
    mid = ((h[:-1].astype(np.float64) + h[1:]) / 2).astype(np.float32)
    rng = np.random.default_rng(0)
    random_bits = rng.integers(0, 1 << 32, 200_000, dtype=np.uint64).astype(np.uint32)
    edges = np.float32([65504, 65519.996, 65520, 65536, 1e30, -1e30, np.inf, -np.inf,
                        np.nan, -np.nan, 0.0, -0.0, 1e-45, -1e-45, 2.0**-24, 2.0**-25,
                        -(2.0**-25), 2.0**-14 * 0.99999])
    return np.concatenate([h, mid, np.nextafter(mid, np.float32(np.inf)),
                           np.nextafter(mid, np.float32(-np.inf)),
                           random_bits.view(np.float32), edges])


def test_float32_to_float16_is_numpys_cast_bit_for_bit():
    x = _hard_floats()
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(np.float16).view(np.uint16)
    got = half.to_f16(x).view(np.uint16)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, [(x[i], hex(got[i]), hex(want[i])) for i in bad[:5]]


def test_float16_to_float32_is_exact():
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    want = h.astype(np.float32).view(np.uint32)
    assert np.array_equal(half.to_f32(h).view(np.uint32), want)


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("sqrt_mode", [False, True])
@pytest.mark.parametrize("half_input", [False, True])
def test_ascend_quant_is_numpys_float16_arithmetic(mode, sqrt_mode, half_input):
    rng = np.random.default_rng(1)
    x = np.concatenate([_hard_floats()[::7], rng.standard_normal(50_000).astype(np.float32)
                        * np.float32(3)]).astype(np.float32)
    x = x[~np.isnan(x)]  # NaN to int8 is the platform's cast
    if half_input:
        with np.errstate(over="ignore"):
            x = x.astype(np.float16)
    for scale, offset in [(40.04, -128.0), (2000.0, 0.0), (0.7, 3.0), (3.0001, -7.0)]:
        s, o = np.float16(scale), np.float16(offset)
        with np.errstate(over="ignore", invalid="ignore"):
            y = x.astype(np.float16) * s
            if sqrt_mode:
                y = y * s
            y = y + o
            y = _round_half_away(y) if mode == "Round" else MODES[mode](y)
            want = np.clip(y.astype(np.float32), -128, 127).astype(np.int8)
        got = half.ascend_quant(x, s, o, sqrt_mode, mode)
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, [(x[i], got[i], want[i], scale, offset) for i in bad[:5]]


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("relu", [False, True])
def test_ascend_add_quant_is_the_float32_add_then_numpys_float16_quant(mode, relu):
    """The fused residual add (patterns.py rule 4): float32 a + b, relu'd, then the
    quant in numpy's float16 arithmetic; 600K elements, so threads share the chunks."""
    rng = np.random.default_rng(3)
    n = 600_000
    a = rng.standard_normal(n).astype(np.float32) * np.float32(4)
    b = rng.standard_normal(n).astype(np.float32) * np.float32(4)
    b[:20] = [np.inf, -np.inf, 1e30, -1e30, 0.0, -0.0, 65504, -65520, 2.0**-25, 3.5,
              -3.5, 0.5, -0.5, 1e-40, 7.0, 1.0, -2.0, 100.0, -100.0, 0.25]
    a[:20] = -b[:20]
    a[20:25] = np.inf   # inf + -inf below is NaN: left out, as in the quant test
    b[20:25] = 1.0
    for scale, offset in [(40.04, -128.0), (0.7, 3.0)]:
        s, o = np.float16(scale), np.float16(offset)
        with np.errstate(over="ignore", invalid="ignore"):
            v = a + b
            if relu:
                v = np.maximum(v, np.float32(0))
            y = v.astype(np.float16) * s + o
            y = _round_half_away(y) if mode == "Round" else MODES[mode](y)
            want = np.clip(y.astype(np.float32), -128, 127).astype(np.int8)
        got = half._C.ascend_add_quant(a, b, relu, float(s), float(o), False,
                                       half.ROUND_MODES.index(mode))
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, [(a[i], b[i], got[i], want[i]) for i in bad[:5]]


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("per_channel", [False, True])
def test_ascend_dequant_is_float32_product_then_cast(relu, dtype, per_channel):
    rng = np.random.default_rng(2)
    acc = rng.integers(-(1 << 31), 1 << 31, (3, 16, 5, 4), dtype=np.int64).astype(np.int32)
    acc[0, 0, 0, :3] = [0, 1, -1]
    scale = (rng.random(16).astype(np.float32) * np.float32(1e-3)).reshape(1, 16, 1, 1) \
        if per_channel else np.float32(2.5e-4).reshape(())
    with np.errstate(over="ignore"):
        y = acc.astype(np.float32) * scale
        if relu:
            y = np.maximum(y, 0)
        want = y.astype(dtype)
    got = half.ascend_dequant(acc, scale, 1, relu, np.dtype(dtype))
    assert got.dtype == want.dtype
    assert np.array_equal(got.view(np.uint8), want.view(np.uint8))


@pytest.mark.parametrize("threads", [1, 2])
def test_big_tensors_shared_by_threads_match_numpy(threads):
    """2^19 + 5 elements: chunks over the thread pool, and a vector tail."""
    old = half._C.set_threads(threads)
    try:
        rng = np.random.default_rng(3)
        x = (rng.standard_normal((1 << 19) + 5) * 4).astype(np.float32)
        h = x.astype(np.float16)
        assert np.array_equal(half.to_f16(x).view(np.uint16), h.view(np.uint16))
        assert np.array_equal(half.to_f32(h).view(np.uint32), h.astype(np.float32).view(np.uint32))
        s, o = np.float16(40.62), np.float16(-3.0)
        want = np.clip(_round_half_away(h * s + o).astype(np.float32), -128, 127).astype(np.int8)
        assert np.array_equal(half.ascend_quant(x, s, o, False, "Round"), want)
        acc = rng.integers(-(1 << 20), 1 << 20, (4, 64, 48, 48)).astype(np.int32)
        scale = (rng.random(64) * 1e-3).astype(np.float32).reshape(1, 64, 1, 1)
        got = half.ascend_dequant(acc, scale, 1, True, np.dtype(np.float16))
        want16 = np.maximum(acc.astype(np.float32) * scale, 0).astype(np.float16)
        assert np.array_equal(got.view(np.uint16), want16.view(np.uint16))
    finally:
        half._C.set_threads(old)
