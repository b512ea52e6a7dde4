"""Range algorithms and range_to_qparams. Oracles: hand calculations, numpy
quantize-dequantize on the raw data, onnxruntime's calibrators, and a direct
(loop) transcription of the MXNet KL formula."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
import scipy.stats

from qcc.dialects.quant import UniformQuantizedType
from qcc.quant import algorithms as A
from qcc.quant.observers import TensorStats

calibrate = pytest.importorskip("onnxruntime.quantization.calibrate")


def quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


# ------------------------------------------------------------ range_to_qparams

# (lo, hi, bits, symmetric, narrow, signed) -> (scale, zero point), by hand
QPARAMS = [
    ((-1, 1, 8, True, False, True), (1 / 127, 0)),
    ((-0.5, 2, 8, True, False, True), (2 / 127, 0)),
    ((-1, 1, 8, True, True, True), (1 / 127, 0)),
    ((0, 6, 4, True, False, True), (6 / 7, 0)),
    ((-3, 1, 6, True, False, True), (3 / 31, 0)),
    ((-1, 1, 7, True, False, True), (1 / 63, 0)),
    ((-1, 1, 8, True, False, False), (1 / 127, 128)),  # u8 symmetric: zero point 128
    ((0, 2.55, 8, False, False, True), (0.01, -128)),
    ((-1, 1, 8, False, False, True), (2 / 255, 0)),  # rint(-0.5) = -0: half to even
    ((1, 3, 8, False, False, True), (3 / 255, -128)),  # extended to [0, 3]
    ((-3, -1, 8, False, False, True), (3 / 255, 127)),  # extended to [-3, 0]
    ((-0.3, 1.2, 4, False, False, True), (0.1, -5)),  # qmin -8: rint(-8 + 3)
    ((-1, 2, 6, False, False, True), (1 / 21, -11)),  # 3 / 63; rint(-32 + 21)
    ((-1, 2, 7, False, False, True), (3 / 127, -22)),  # rint(-64 + 42.33)
    ((-1, 1, 8, False, True, True), (1 / 127, 0)),  # narrow: 2 / 254; rint(-127 + 127)
    ((0, 2.55, 8, False, False, False), (0.01, 0)),
    ((-0.5, 0.5, 8, False, False, False), (1 / 255, 128)),  # rint(127.5) = 128
    # degenerate ranges: finite, positive scales
    ((0, 0, 8, True, False, True), (1.0, 0)),
    ((0, 0, 8, False, False, True), (1.0, -128)),
    ((0, 0, 4, False, False, False), (1.0, 0)),
    ((5, 5, 8, True, False, True), (5 / 127, 0)),
    ((5, 5, 8, False, False, True), (5 / 255, -128)),
    ((-2, -2, 8, False, False, True), (2 / 255, 127)),
    ((1e-45, 1e-45, 8, True, False, True), (A.MIN_SCALE, 0)),
]


@pytest.mark.parametrize(("args", "expected"), QPARAMS)
def test_range_to_qparams_by_hand(args, expected):
    lo, hi, bits, symmetric, narrow, signed = args
    scale, zp = A.range_to_qparams(lo, hi, bits, symmetric, narrow, signed)
    assert scale.shape == zp.shape == () and zp.dtype == np.int64
    assert math.isclose(float(scale), expected[0], rel_tol=1e-12)
    assert int(zp) == expected[1]
    assert np.isfinite(scale) and scale > 0
    # zero is exact, and the ends of the range are representable to half a step
    q = UniformQuantizedType.make(scale=float(scale), zero_point=int(zp), bits=max(bits, 4)
                                  if bits in (4, 8) else 8, signed=signed, narrow_range=narrow)
    if bits in (4, 8):
        assert q.fake_quant(np.zeros(1))[0] == 0.0
        for v in (lo, hi):
            assert abs(q.fake_quant(np.array([v], np.float32))[0] - v) <= scale / 2 + 1e-7


def test_range_to_qparams_per_channel_and_errors():
    scale, zp = A.range_to_qparams([-1, 0, -2], [1, 0, 4], 8, True)
    np.testing.assert_allclose(scale, [1 / 127, 1.0, 4 / 127])
    assert zp.tolist() == [0, 0, 0]
    for lo, hi in ((1, -1), (-np.inf, 1), (0, np.nan)):
        with pytest.raises(A.AlgorithmError):
            A.range_to_qparams(lo, hi, 8)
    for bits in (1, 17, 8.0):
        with pytest.raises(A.AlgorithmError, match="bits"):
            A.range_to_qparams(-1, 1, bits)


# -------------------------------------------------------------------- registry


def test_registry_uniform_signature_and_config_names():
    from qcc.quant import config

    assert set(A.ACTIVATION_ALGORITHMS) == set(config.ACTIVATION_ALGORITHMS)
    st = TensorStats().update(np.random.default_rng(0).normal(size=5000))
    for name, fn in A.ACTIVATION_ALGORITHMS.items():
        params = config.ACTIVATION_ALGORITHMS[name]
        assert set(params) <= set(fn.params), name  # every config parameter is accepted
        for symmetric in (False, True):
            lo, hi = fn(st, 8, symmetric, **params)
            assert isinstance(lo, float) and isinstance(hi, float)
            assert st.min <= lo <= hi <= st.max or (symmetric and lo == -hi <= st.absmax)
        assert A.compute_range(name, st, 8, False) == fn(st, 8, False)
        assert fn(TensorStats(), 8, False) == (0.0, 0.0)  # empty statistics
    with pytest.raises(A.AlgorithmError, match=r"ifmr: unknown parameter\(s\) 'serch_step' "
                       r"\(known: search_range_start, .*search_step"):
        A.ACTIVATION_ALGORITHMS["ifmr"](st, 8, False, serch_step=0.1)
    with pytest.raises(A.AlgorithmError, match=r"unknown parameter.*known: none"):
        A.mse(st, 8, False, alpha=1)
    with pytest.raises(A.AlgorithmError, match="unknown activation algorithm 'mxmin'"):
        A.compute_range("mxmin", st)
    with pytest.raises(A.AlgorithmError, match="max_percentile"):
        A.percentile(st, max_percentile=99.99)
    with pytest.raises(A.AlgorithmError, match="IFMR"):
        A.ifmr(st, search_step=0)
    assert A.observer_bins("kl", {"num_of_bins": 2048}) == 8192
    assert A.observer_bins("minmax") == 2048


# ------------------------------------------------------------------ minmax, pct


def test_minmax_is_exact():
    x = np.array([-3.0, 0.5, 7.25])
    st = TensorStats().update(x)
    assert A.minmax(st) == (-3.0, 7.25)
    assert A.minmax(st, 8, True) == (-7.25, 7.25)


@pytest.mark.parametrize("symmetric", [False, True])
def test_percentile_against_onnxruntime(symmetric):
    """onnxruntime takes percents and cuts (100 - p) / 2 % from each side
    (asymmetric) or p % of |x| (symmetric); it answers a bin's left edge, we
    interpolate inside the bin, so the two agree to one bin of each histogram."""
    rng = np.random.default_rng(7)
    # 200_003 values: the cut (0.005% a side) is no whole number of samples, so
    # every definition of the quantile picks the same order statistic
    x = np.concatenate([rng.normal(0.2, 1, 150_003), rng.laplace(0, 2, 50_000)])
    x = x.astype(np.float32)
    parts = np.array_split(x, 4)
    pct = 99.99
    col = calibrate.HistogramCollector("percentile", symmetric, 2048, None, pct, None)
    for b in parts:
        quiet(col.collect, {"t": b})
    ort_lo, ort_hi = (float(v) for v in quiet(col.compute_collection_result)["t"][:2])
    ort_edges = col.histogram_dict["t"][1]
    st = TensorStats()
    for b in parts:
        st.update(b)
    p = pct / 100 if symmetric else 1 - (1 - pct / 100) / 2
    lo, hi = A.percentile(st, 8, symmetric, max_percentile=p, min_percentile=p)
    tol = st.bin_width + float(ort_edges[1] - ort_edges[0])
    assert abs(hi - ort_hi) <= tol and abs(lo - ort_lo) <= tol
    ref = np.abs(x) if symmetric else x
    assert abs(hi - np.quantile(ref, p, method="inverted_cdf")) <= st.bin_width
    if not symmetric:
        assert abs(lo - np.quantile(x, 1 - p, method="inverted_cdf")) <= st.bin_width


# -------------------------------------------------------------------------- KL


def smooth(p, eps=1e-4):
    """MXNet's _smooth_distribution, in float64."""
    is_zeros = (p == 0).astype(np.float64)
    n_zeros = is_zeros.sum()
    n_nonzeros = p.size - n_zeros
    if not n_nonzeros:
        return None
    return p.astype(np.float64) + eps * is_zeros - eps * n_zeros / n_nonzeros * (1 - is_zeros)


def mxnet_threshold(hist, width, nq):
    """A direct transcription of MXNet's `_get_optimal_threshold` loop, on the |x|
    histogram (the slice is hist[:i] instead of a window around a zero bin)."""
    best, best_i = math.inf, None
    for i in range(nq, len(hist) + 1):
        sliced = hist[:i].astype(np.float64)
        p = sliced.copy()
        p[i - 1] += hist[i:].sum()
        is_nonzeros = (p != 0).astype(np.int64)
        m = i // nq
        quantized = np.zeros(nq)
        for j in range(nq):
            quantized[j] = sliced[j * m:(j + 1) * m].sum()
        quantized[-1] += sliced[nq * m:].sum()
        q = np.zeros(i)
        for j in range(nq):
            start, stop = j * m, (i if j == nq - 1 else j * m + m)
            norm = is_nonzeros[start:stop].sum()
            if norm != 0:
                q[start:stop] = quantized[j] / norm
        q[p == 0] = 0
        p, q = smooth(p), smooth(q)
        kl = math.inf if p is None or q is None else scipy.stats.entropy(p, q)
        if kl < best:
            best, best_i = kl, i
    return best_i * width


@pytest.mark.parametrize(("dist", "symmetric", "nq"), [
    ("normal", True, 128), ("laplace", True, 128), ("relu", False, 256)])
def test_kl_matches_direct_mxnet_formula(dist, symmetric, nq):
    rng = np.random.default_rng(11)
    x = {"normal": rng.normal(0, 1, 100_000), "laplace": rng.laplace(0, 1, 100_000),
         "relu": np.maximum(rng.normal(0.3, 1, 100_000), 0)}[dist]
    st = TensorStats().update(x)
    counts, edges = st.abs_histogram()
    expected = min(mxnet_threshold(counts, edges[1], nq), st.absmax)
    lo, hi = A.kl(st, 8, symmetric)
    assert hi == expected
    assert lo == (-hi if symmetric else 0.0)


@pytest.mark.parametrize(("dist", "T"), [("normal", 4.0), ("laplace", 8.0)])
def test_kl_against_onnxruntime(dist, T):
    """onnxruntime's entropy calibrator on the same data and the same bin grid:
    2048 bins over [-T, T] for it, bin width 2T/2048 for us (TensorStats(2049);
    max|x| = T is inserted so both grids line up). Its num_quantized_bins=256 over
    [-t, t] is our 128 levels over [0, t]. Data are exact quantiles (no sampling
    noise). The formulas differ in details (onnxruntime's window [-i, i+1) bins,
    q truncated to integers and not zeroed where p is zero; we fold to |x| and
    follow MXNet), so thresholds agree to a few percent, not exactly."""
    n = 1_000_000
    u = (np.arange(n) + 0.5) / n
    x = scipy.stats.norm.ppf(u) * 0.75 if dist == "normal" else scipy.stats.laplace.ppf(u) * 0.5
    assert np.abs(x).max() < T
    x = np.concatenate([[-T, T], x]).astype(np.float32)  # first: fixes ORT's grid
    col = calibrate.HistogramCollector("entropy", False, 2048, 256, None, None)
    for b in np.array_split(x, 3):
        quiet(col.collect, {"t": b})
    ort = float(quiet(col.compute_collection_result)["t"][1])
    st = TensorStats(2049)
    for b in np.array_split(x, 3):
        st.update(b)
    assert st.bin_width == 2 * T / 2048
    lo, hi = A.kl(st, 8, True, num_of_bins=1024)
    assert lo == -hi
    assert abs(hi / ort - 1) < 0.04, (hi, ort)


# ------------------------------------------------------------ mse, ifmr, hfmg


def quant_mse(x, lo, hi, bits, symmetric):
    """Quantize-dequantize with numpy (round half to even, clip) and measure."""
    scale, zp = A.range_to_qparams(lo, hi, bits, symmetric)
    qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    q = np.clip(np.rint(x / scale) + zp, qmin, qmax)
    return float(np.mean(((q - zp) * scale - x) ** 2))


def laplace_with_outliers(seed=0, n=200_000):
    rng = np.random.default_rng(seed)
    x = rng.laplace(0.1, 1.0, n)
    x[:40] = rng.uniform(15, 40, 40) * rng.choice([-1, 1], 40)
    return x


@pytest.mark.parametrize("name", ["mse", "ifmr", "hfmg"])
@pytest.mark.parametrize("bits", [4, 6, 8])
@pytest.mark.parametrize("symmetric", [False, True])
def test_mse_searches_beat_minmax(name, bits, symmetric):
    x = laplace_with_outliers(bits)
    st = TensorStats()
    for b in np.array_split(x, 5):
        st.update(b)
    lo, hi = A.ACTIVATION_ALGORITHMS[name](st, bits, symmetric)
    base = quant_mse(x, *A.minmax(st, bits, symmetric), bits, symmetric)
    got = quant_mse(x, lo, hi, bits, symmetric)
    assert got < base, (name, lo, hi, got, base)
    if symmetric:
        assert lo == -hi and 0 < hi <= np.abs(x).max()
    else:
        assert x.min() <= lo < hi <= x.max()


def test_expected_sq_error_matches_numpy():
    """The closed-form expected error on the histogram is the sum of squared
    quantize-dequantize errors of the data (to the uniform-in-bin model)."""
    x = np.random.default_rng(1).normal(0, 1, 500_000)
    st = TensorStats(8192).update(x)
    cases = [(-2, 3, 8, False), (-2, 3, 4, False), (-1, 1, 8, True), (-3.5, 3.5, 6, True),
             (0.5, 2, 8, False), (-4, 4, 2, True)]
    for lo, hi, bits, symmetric in cases:
        got = A.expected_sq_error(*st.histogram(), [lo], [hi], bits, symmetric)[0]
        want = quant_mse(x, lo, hi, bits, symmetric) * x.size
        assert abs(got / want - 1) < 1e-3, (lo, hi, bits, symmetric)


def test_ifmr_picks_best_of_its_candidates():
    """IFMR's rule by brute force: percentile range scaled by 0.7 .. 1.3, each
    scored by numpy quantize-dequantize on the data; the chosen candidate's true
    error is within 0.5% of the best candidate's."""
    x = laplace_with_outliers(3)
    st = TensorStats(8192).update(x)
    lo, hi = A.ifmr(st, 8, False)
    lo0, hi0 = A.percentile(st, 8, False, max_percentile=0.999999, min_percentile=0.999999)
    errs = [quant_mse(x, max(f * lo0, x.min()), min(f * hi0, x.max()), 8, False)
            for f in 0.7 + 0.01 * np.arange(61)]
    assert quant_mse(x, lo, hi, 8, False) <= min(errs) * 1.005


def test_non_finite_do_not_change_any_range():
    rng = np.random.default_rng(9)
    clean = rng.normal(size=50_000)
    dirty = np.concatenate([clean, [-np.inf] * 5, [np.nan] * 3, [np.inf]])
    a, b = TensorStats().update(dirty), TensorStats().update(clean)
    assert a.skipped == 9
    for name, fn in A.ACTIVATION_ALGORITHMS.items():
        for symmetric in (False, True):
            assert fn(a, 8, symmetric) == fn(b, 8, symmetric), name
            assert max(abs(v) for v in fn(a, 8, symmetric)) < 10


def test_degenerate_statistics():
    for x in (np.zeros(100), np.full(100, 3.0)):
        st = TensorStats().update(x)
        for fn in A.ACTIVATION_ALGORITHMS.values():
            for symmetric in (False, True):
                lo, hi = fn(st, 8, symmetric)
                scale, _ = A.range_to_qparams(lo, hi, 8, symmetric)
                assert np.isfinite(scale) and scale > 0


# ------------------------------------------------------------------------- ARQ


def test_arq_per_channel_and_per_tensor():
    rng = np.random.default_rng(4)
    w = rng.normal(size=(6, 3, 3, 3)).astype(np.float32)
    w[2] = 0.0
    w[4, 0, 0, 0] = np.nan
    lo, hi = A.arq(w, 0, 8, True)
    absmax = np.nanmax(np.abs(w.reshape(6, -1)), axis=1).astype(np.float64)
    np.testing.assert_array_equal(hi, absmax)
    np.testing.assert_array_equal(lo, -absmax)
    for bits in (4, 6, 7, 8):
        scale, zp = A.range_to_qparams(lo, hi, bits, True, True)
        expected = np.where(absmax == 0, 1.0, absmax / (2 ** (bits - 1) - 1))
        np.testing.assert_allclose(scale, expected, rtol=1e-12)
        assert not zp.any()
    lo, hi = A.arq(w, -1, 8, False)
    assert hi.shape == () and hi == np.nanmax(np.abs(w)) and lo == -hi


def test_algorithm_names_are_stated_once():
    """The registry is the one source of algorithm names: no other module of qcc
    spells one as a string literal (docstrings aside)."""
    import ast
    from pathlib import Path

    from qcc.quant import algorithms

    # a name is its function's name, so code can name `minmax.__name__` (qcc.qat does)
    for table in (algorithms.ACTIVATION_ALGORITHMS, algorithms.WEIGHT_ALGORITHMS):
        assert all(fn.__name__ == name for name, fn in table.items())
    names = set(algorithms.ACTIVATION_ALGORITHMS) | set(algorithms.WEIGHT_ALGORITHMS)
    names |= {f"{n}_quantize" for n in names}
    root = Path(algorithms.__file__).parents[1]
    found = []
    for path in sorted(root.rglob("*.py")):
        if path == Path(algorithms.__file__):
            continue
        tree = ast.parse(path.read_text())
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef)
                and n.body and isinstance(n.body[0], ast.Expr)}
        found += [f"{path.relative_to(root)}:{n.lineno}: {n.value!r}" for n in ast.walk(tree)
                  if isinstance(n, ast.Constant) and n.value in names and id(n) not in docs]
    assert not found, "\n".join(found)
