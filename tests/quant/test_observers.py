"""TensorStats / weight_stats: exact merge, bounded memory, non-finite and mask-like
values left out. Oracles are numpy on the raw (concatenated) data."""

from __future__ import annotations

import numpy as np
import pytest

from qcc.quant.algorithms import percentile
from qcc.quant.observers import DEFAULT_BINS, TensorStats, weight_stats


def batches(seed=0, n=8, size=5000):
    rng = np.random.default_rng(seed)
    out = [rng.normal(loc=k - 3, scale=1 + k, size=size).astype(np.float32) for k in range(n)]
    out.append(rng.laplace(0, 0.1, size=(10, 7)).astype(np.float32))  # any shape
    return out


def numpy_histogram(x, st: TensorStats) -> np.ndarray:
    """The oracle: numpy's histogram of all the data on the observer's edges
    (half-open bins; the edges are exact binary fractions, so no rounding doubt)."""
    edges = st.edges
    counts, _ = np.histogram(x, bins=edges)
    counts[-1] -= np.count_nonzero(x == edges[-1])  # numpy closes the last bin
    return counts


def test_defaults_and_empty():
    st = TensorStats()
    assert st.bins == DEFAULT_BINS == 2048
    assert (st.count, st.skipped, st.min, st.max) == (0, 0, 0.0, 0.0)
    assert st.hist.shape == (2048,) and not st.hist.any()
    with pytest.raises(ValueError, match="at least 2 bins"):
        TensorStats(1)


def test_min_max_count_exact_and_histogram_matches_numpy():
    data = batches()
    st = TensorStats()
    for b in data:
        st.update(b)
    x = np.concatenate([b.ravel() for b in data]).astype(np.float64)
    assert st.count == x.size
    assert st.min == x.min() and st.max == x.max()
    assert st.hist.sum() == x.size
    np.testing.assert_array_equal(st.hist, numpy_histogram(x, st))
    edges = st.edges
    assert edges[0] <= x.min() and x.max() < edges[-1]
    # the grid is the finest power of two that fits: half the width would not
    assert (np.floor(x.max() / (st.bin_width / 2)) - np.floor(x.min() / (st.bin_width / 2))
            >= st.bins)
    np.testing.assert_allclose(np.diff(edges), st.bin_width)


def test_merge_equals_concatenated_and_order_does_not_matter():
    data = batches(1)
    x = np.concatenate([b.ravel() for b in data])
    whole = TensorStats().update(x)
    forward, backward = TensorStats(), TensorStats()
    for b in data:
        forward.update(b)
    for b in data[::-1]:
        backward.update(b)
    halves = [TensorStats(), TensorStats()]
    for i, b in enumerate(data):
        halves[i % 2].update(b)
    merged = halves[0].copy().merge(halves[1])
    for st in (forward, backward, merged):
        assert (st.count, st.min, st.max) == (whole.count, whole.min, whole.max)
        assert st.min == x.min() and st.max == x.max()  # exact
        np.testing.assert_array_equal(st.edges, whole.edges)
        np.testing.assert_array_equal(st.hist, whole.hist)  # exact re-binning
    # histogram percentiles: equal to each other, within one bin of numpy's (the
    # quantile as "the smallest value with a fraction >= p at or below it")
    for p in (0.9, 0.999, 0.99999):
        lo, hi = percentile(merged, max_percentile=p, min_percentile=p)
        assert (lo, hi) == percentile(whole, max_percentile=p, min_percentile=p)
        assert abs(hi - np.quantile(x, p, method="inverted_cdf")) <= merged.bin_width
        assert abs(lo - np.quantile(x, 1 - p, method="inverted_cdf")) <= merged.bin_width


def test_merge_into_empty_and_of_empty():
    a = TensorStats().update(np.array([1.0, -2.0, np.nan]))
    e = TensorStats().merge(a)
    np.testing.assert_array_equal(e.hist, a.hist)
    assert (e.min, e.max, e.count, e.nan) == (-2.0, 1.0, 2, 1)
    a.merge(TensorStats().update(np.array([np.inf])))
    assert (a.count, a.posinf, a.nan) == (2, 1, 1)
    with pytest.raises(ValueError, match="merge"):
        a.merge(TensorStats(16))


def test_memory_is_bounded_over_growing_ranges():
    rng = np.random.default_rng(2)
    st = TensorStats(512)
    sizes = set()
    seen = []
    for k in range(100):
        b = rng.normal(loc=0.5 * k, scale=1.12 ** k, size=300)  # the range keeps growing
        seen.append(b)
        st.update(b)
        sizes.add(sum(v.nbytes for v in vars(st).values() if isinstance(v, np.ndarray)))
        assert st.hist.shape == (512,)
    assert len(sizes) == 1 and sizes.pop() == 512 * 8
    x = np.concatenate(seen)
    # 100 re-binnings lost nothing: the same histogram as one pass over all data
    np.testing.assert_array_equal(st.hist, TensorStats(512).update(x).hist)
    np.testing.assert_array_equal(st.hist, numpy_histogram(x, st))


def test_non_finite_values_are_counted_and_left_out():
    rng = np.random.default_rng(3)
    clean = rng.normal(size=(4, 1000)).astype(np.float32)
    dirty = clean.copy()
    dirty[1, :3] = -np.inf
    dirty[2, :2] = np.nan
    dirty[3, :4] = np.inf
    st = TensorStats().update(dirty)
    assert (st.neginf, st.nan, st.posinf) == (3, 2, 4)
    assert st.skipped == 9 and st.count == dirty.size - 9
    kept = dirty[np.isfinite(dirty)]
    ref = TensorStats().update(kept)
    np.testing.assert_array_equal(st.hist, ref.hist)
    np.testing.assert_array_equal(ref.hist, numpy_histogram(kept, ref))
    assert (st.min, st.max) == (float(kept.min()), float(kept.max()))
    mixed = np.concatenate([clean.ravel(), [-np.inf, np.nan]])
    a, b = TensorStats().update(mixed), TensorStats().update(clean)
    assert (a.min, a.max) == (b.min, b.max)
    np.testing.assert_array_equal(a.hist, b.hist)
    assert a.summary()["skipped"] == 2


def test_large_finite_values_are_real_values():
    """No magnitude rule: -1e9, 1e8 and finfo(float32).min are observed like any value
    (masks are kept from observers by the graph's structure, not by size)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=1000).astype(np.float32) * np.float32(1e9)
    x[0] = np.finfo(np.float32).min
    x[1] = 1e8
    st = TensorStats().update(x)
    assert st.skipped == 0 and st.count == x.size
    assert (st.min, st.max) == (float(x.min()), float(x.max()))
    np.testing.assert_array_equal(st.hist, numpy_histogram(x.astype(np.float64), st))


def test_all_values_skipped_and_zero_tensors():
    st = TensorStats().update(np.full(10, -np.inf, np.float32))
    assert (st.count, st.neginf, st.min, st.max) == (0, 10, 0.0, 0.0)
    z = TensorStats().update(np.zeros((3, 3)))
    assert (z.count, z.min, z.max, int(z.hist.sum())) == (9, 0.0, 0.0, 9)
    counts, edges = z.abs_histogram()
    assert counts.tolist() == [9] and edges[0] == 0.0


def test_integer_bool_and_half_inputs():
    st = TensorStats().update(np.array([1, 2, 3, 200_000_000], np.int64))
    assert (st.count, st.skipped, st.max) == (4, 0, 2e8)
    st = TensorStats().update(np.array([True, False]))
    assert (st.min, st.max) == (0.0, 1.0)
    st = TensorStats().update(np.array([1.5, np.inf, -7.25], np.float16))
    assert (st.min, st.max, st.posinf) == (-7.25, 1.5, 1)
    with pytest.raises(TypeError):
        TensorStats().update(np.array(["a"]))


def test_abs_histogram_folds_exactly():
    rng = np.random.default_rng(4)
    x = rng.normal(0.3, 1, 20000)
    st = TensorStats(1000).update(x)
    counts, edges = st.abs_histogram()
    ref, _ = np.histogram(np.abs(x), bins=edges)
    np.testing.assert_array_equal(counts, ref)
    assert edges[0] == 0 and edges[-2] <= np.abs(x).max() < edges[-1]
    c, e = st.histogram()
    assert c[0] > 0 and c[-1] > 0 and e[0] <= x.min() and x.max() < e[-1]


def test_abs_histogram_of_data_far_from_zero_stays_bounded():
    x = np.random.default_rng(6).uniform(1000, 1001, 10_000)
    st = TensorStats(256).update(x)
    counts, edges = st.abs_histogram()
    assert len(counts) <= 256 and counts.sum() == x.size
    np.testing.assert_array_equal(counts, np.histogram(x, bins=edges)[0])
    assert edges[-2] <= x.max() < edges[-1]
    st = TensorStats().update(np.full(10, 3.0))  # a single value: a 2**-38 grid
    counts, edges = st.abs_histogram()
    assert len(counts) <= 2048 and counts.sum() == 10 and edges[-2] <= 3.0 < edges[-1]


def test_tiny_huge_and_single_valued_ranges():
    for values in ([5.0] * 4, [1e-30, 2e-30], [-9.9e7, 9.9e7], [0.0, 1e-300]):
        x = np.array(values)
        st = TensorStats().update(x)
        assert st.hist.sum() == len(values)
        np.testing.assert_array_equal(st.hist, numpy_histogram(x, st))


def test_weight_stats():
    rng = np.random.default_rng(5)
    w = rng.normal(size=(4, 3, 2, 2))
    w[2] = 0.0
    w[1, 0, 0, 0] = np.nan
    ws = weight_stats(w, 0)
    flat = w.reshape(4, -1)
    np.testing.assert_array_equal(ws.min, np.nanmin(flat, axis=1))
    np.testing.assert_array_equal(ws.max, np.nanmax(flat, axis=1))
    np.testing.assert_array_equal(ws.absmax, np.nanmax(np.abs(flat), axis=1))
    assert ws.nonfinite.tolist() == [0, 1, 0, 0] and ws.absmax[2] == 0.0
    per_tensor = weight_stats(w)
    assert per_tensor.absmax.shape == () and per_tensor.absmax == np.nanmax(np.abs(w))
    wt = weight_stats(np.moveaxis(w, 0, 3), 3)  # channel axis anywhere
    np.testing.assert_array_equal(wt.absmax, ws.absmax)
    with pytest.raises(ValueError, match="out of range"):
        weight_stats(w, 4)
