"""The compiled calibration statistics (runtime/_stats.pyx, `qcc.quant._stats`)
against numpy: exact min / max / counts, histogram counts equal to np.histogram on
the observer's edges, per-channel max|w| exact, the IFMR / HFMG error terms against
a brute-force integral of the real quantizer's error; and calibration through them
gives the same scales and zero points as through the numpy definitions."""

from __future__ import annotations

import numpy as np
import pytest

from qcc.quant import algorithms, observers
from qcc.quant.algorithms import arq, expected_sq_error, range_to_qparams
from qcc.quant.observers import TensorStats

C = observers.COMPILED
pytestmark = pytest.mark.skipif(C is None, reason="qcc.quant._stats is not compiled")


def mixed(seed: int, n: int) -> np.ndarray:
    """Normal values, a ReLU's zeros (both signs), tiny values of both signs near 0
    (where an inexact `x * 2**-e - start` would round into the wrong bin), non-finite."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(np.float32) * np.float32(3.0)
    x[rng.random(n) < 0.3] = 0.0
    x[rng.random(n) < 0.01] = -0.0
    tiny = rng.random(n) < 0.02
    x[tiny] = (rng.standard_normal(int(tiny.sum())) * 1e-30).astype(np.float32)
    return x


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1000, 100_003, 1_000_003])
@pytest.mark.parametrize("bad", [(), ("nan",), ("inf", "-inf"), ("nan", "inf", "-inf")])
@pytest.mark.parametrize("threads", [1, 2])
def test_float_range_exact(n, bad, threads):
    """(2 threads: from 4 blocks of 65536 values the range pass is split.)"""
    x = mixed(n, n)
    rng = np.random.default_rng(n + 1)
    for kind in bad:
        if n:
            x[rng.integers(0, n, size=3)] = np.float32(kind)
    old = C._set_threads(threads)
    try:
        count, nan, pos, neg, lo, hi, pz, nz = C.float_range(x)
    finally:
        C._set_threads(old)
    finite = x[np.isfinite(x)]
    assert (count, nan, pos, neg) == (finite.size, np.isnan(x).sum(), (x == np.inf).sum(),
                                      (x == -np.inf).sum())
    if finite.size:
        assert (lo, hi) == (float(finite.min()), float(finite.max()))
    zeros = x[x == 0]
    assert (pz, nz) == (bool((~np.signbit(zeros)).any()), bool(np.signbit(zeros).any()))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e6])
def test_histogram_counts_equal_numpy(seed, scale):
    rng = np.random.default_rng(seed)
    st = TensorStats(512)
    seen = []
    for k in range(3):  # the range grows: old counts are re-binned, new ones binned
        x = mixed(seed * 10 + k, 50_000 + k) * np.float32(scale * (1 + 3 * k))
        if k == 1:
            x[rng.integers(0, x.size, size=5)] = np.nan
        st.update(x.reshape(10, -1) if x.size % 10 == 0 else x)
        seen.append(x[np.isfinite(x)])
    data = np.concatenate(seen).astype(np.float64)
    counts, _ = np.histogram(data, bins=st.edges)  # max < last edge: numpy's closed
    assert np.array_equal(st.hist, counts)         # last bin makes no difference
    assert (st.count, st.nan, st.min, st.max) == (data.size, 5, data.min(), data.max())


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("finite", [True, False])
def test_histogram_of_a_large_array_on_threads(threads, finite):
    x = mixed(threads, 700_001)
    if not finite:
        x[::1000] = np.nan
    kept = x[np.isfinite(x)].astype(np.float64)
    st = TensorStats(1024)
    st._grow(float(kept.min()), float(kept.max()))  # the grid update() would take
    hist = np.zeros(1024, np.int64)
    old = C._set_threads(threads)
    try:
        C.add_histogram(x, hist, st._e, st._start, finite)
    finally:
        C._set_threads(old)
    assert np.array_equal(hist, np.histogram(kept, bins=st.edges)[0])


def test_histogram_rejects_a_wrong_grid():
    hist = np.zeros(4, np.int64)
    with pytest.raises(ValueError, match="outside the histogram"):
        C.add_histogram(np.array([0.5, 9.0], np.float32), hist, 0, 0, True)


def test_update_matches_the_numpy_definition(monkeypatch):
    data = [mixed(s, 30_000) * np.float32(1 + s) for s in range(4)]
    data[2][:50] = np.inf
    fast = TensorStats()
    for x in data:
        fast.update(x)
    monkeypatch.setattr(observers, "_C", None)
    slow = TensorStats()
    for x in data:
        slow.update(x)
    assert np.array_equal(fast.hist, slow.hist)
    assert (fast.count, fast.nan, fast.posinf, fast.neginf, fast.bin_width) == \
        (slow.count, slow.nan, slow.posinf, slow.neginf, slow.bin_width)
    assert (np.signbit(fast.min), fast.min, fast.max) == (np.signbit(slow.min), slow.min,
                                                         slow.max)


def test_zero_bound_sign_is_numpys():
    """+0 and -0 both present at the minimum: numpy decides the sign (as before);
    only one of them: that one."""
    for x in (np.array([0.0, -0.0, 1.0], np.float32), np.array([-0.0, 2.0], np.float32),
              np.array([-1.0, 0.0], np.float32)):
        st = TensorStats.of(x)
        ref = x.astype(np.float64)
        assert (np.signbit(st.min), np.signbit(st.max)) == (np.signbit(ref.min()),
                                                            np.signbit(ref.max()))


@pytest.mark.parametrize("shape, axis", [((16, 3, 3, 3), 0), ((8, 4, 5), 1), ((6, 10), -1),
                                         ((5, 7), 1), ((3, 0, 2), 0)])
def test_arq_absmax_exact(shape, axis):
    rng = np.random.default_rng(len(shape) + axis)
    w = (rng.standard_normal(shape) * rng.uniform(0.01, 10, shape)).astype(np.float32)
    if w.size:
        w.reshape(-1)[0] = np.inf
        w.reshape(-1)[-1] = np.nan
    lo, hi = arq(w, axis)
    a = np.where(np.isfinite(w), np.abs(w.astype(np.float64)), 0.0)
    want = a.max(initial=0.0) if axis == -1 else np.moveaxis(a, axis, 0).reshape(
        w.shape[axis], -1).max(axis=1, initial=0.0)
    assert lo.shape == hi.shape == np.shape(want)
    assert np.array_equal(hi, want) and np.array_equal(lo, -want)


def brute_force_sq_error(counts, edges, lo, hi, bits, symmetric, samples=4000):
    """The oracle: the real quantizer on `samples` midpoints of every bin."""
    s, z = range_to_qparams(lo, hi, bits, symmetric)
    qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    out = []
    for sk, zk in zip(s, z, strict=True):
        total = 0.0
        for c, a, b in zip(counts, edges[:-1], edges[1:], strict=True):
            if c == 0:
                continue
            x = a + (np.arange(samples) + 0.5) * ((b - a) / samples)
            q = (np.clip(np.rint(x / sk) + zk, qmin, qmax) - zk) * sk
            total += c * float(np.mean((x - q) ** 2))
        out.append(total)
    return np.array(out)


@pytest.mark.parametrize("symmetric", [False, True])
def test_sq_error_against_the_quantizer(symmetric, monkeypatch):
    rng = np.random.default_rng(3)
    st = TensorStats.of(rng.standard_normal(20_000).astype(np.float32) * 2 + 0.5, bins=64)
    counts, edges = st.histogram()
    lo = np.array([st.min, st.min * 0.8, st.min * 0.5])
    hi = np.array([st.max, st.max * 0.8, st.max * 0.6])
    got = expected_sq_error(counts, edges, lo, hi, 4, symmetric)
    want = brute_force_sq_error(counts, edges, lo, hi, 4, symmetric)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    monkeypatch.setattr(algorithms, "COMPILED", None)  # the numpy formula: ulp-level
    np.testing.assert_allclose(got, expected_sq_error(counts, edges, lo, hi, 4, symmetric),
                               rtol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_greedy_path_is_the_python_walk(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    nb = int(rng.integers(16, 3000))
    h = rng.exponential(1.0, nb) * (rng.random(nb) < 0.7)
    if seed % 2:
        h[: nb // 2] *= 50  # skewed: long runs where only one side moves
    step = 1e-5 if seed < 3 else 1e-3
    fast = algorithms._greedy_path(h, step)
    monkeypatch.setattr(algorithms, "COMPILED", None)
    slow = algorithms._greedy_path(h, step)
    assert fast.dtype == slow.dtype == np.int64 and np.array_equal(fast, slow)


@pytest.mark.parametrize("model", ["resnet18_cifar", "transformer_block"])
def test_calibration_gives_the_numpy_definitions_quant_params(model, monkeypatch):
    """Every scale, zero point and range of a calibrated model, per algorithm, is the
    same through the compiled statistics as through the numpy definitions."""
    from xdsl.dialects.builtin import StringAttr

    from qcc import passes
    from qcc.dialects import quant
    from qcc.frontends.onnx import load_onnx
    from qcc.passes.calibrate import calibrate
    from qcc.testing import models

    proto = models.resnet18_cifar(batch=2) if model == "resnet18_cifar" else \
        models.transformer_block(batch=2, seq=8, d_model=32)
    base = load_onnx(proto)
    passes.run(base, "canonicalize,qcc-fuse-bn")
    rng = np.random.default_rng(0)
    batches = [{i.name: rng.standard_normal([d.dim_value for d in
                                             i.type.tensor_type.shape.dim]).astype(np.float32)
                for i in proto.graph.input} for _ in range(2)]

    def decided(algorithm):
        m = base.clone()
        passes.run(m, "qcc-insert-quant")
        for op in m.walk():
            if isinstance(op, quant.ObserveOp) and algorithm and op.kind.data == "activation":
                op.algorithm = StringAttr(algorithm)
                op.properties.pop("params", None)
                op.attributes.pop("params", None)
        return [(q.id, str(q.qtype), np.asarray(q.lo).tolist(), np.asarray(q.hi).tolist())
                for q in calibrate(m, batches)]

    names = [None, "minmax", "percentile", "mse", "hfmg", "kl"]
    fast = {a: decided(a) for a in names}
    monkeypatch.setattr(observers, "_C", None)
    monkeypatch.setattr(algorithms, "COMPILED", None)
    for a in names:
        assert fast[a] == decided(a), a


@pytest.mark.parametrize("shape, axis", [((8, 64, 13, 13), 1), ((2, 197, 192), 2),
                                         ((5, 7), 0), ((1, 3), 1), ((6,), 0)])
def test_activation_channel_absmax_is_numpys(shape, axis):
    """Activation balance's per-channel max|x| (`balance.channel_absmax`, compiled for
    float32) is numpy's np.abs(x).max over the other axes, bit for bit, also with
    infinities and a NaN (which makes its channel NaN, as numpy's max does)."""
    from qcc.passes.balance import channel_absmax

    x = mixed(3, int(np.prod(shape))).reshape(shape)
    x = np.where(np.isfinite(x), x, np.float32(1.0))
    others = tuple(d for d in range(x.ndim) if d != axis)
    got = channel_absmax(x, axis)
    assert got.dtype == np.float32
    assert np.array_equal(got, np.abs(x).max(axis=others))
    y = x.copy()
    y.flat[0], y.flat[-1] = np.float32(-np.inf), np.float32(np.nan)
    want = np.abs(y).max(axis=others)
    assert np.isnan(want).sum() == 1 and np.isinf(want).sum() == 1
    assert np.array_equal(channel_absmax(y, axis), want, equal_nan=True)
    assert np.array_equal(C.channel_absmax_nan(y.reshape(1, -1, 1)), np.abs(y).ravel(),
                          equal_nan=True)


def test_float_range_folds_every_threads_blocks():
    """The range pass on 2 threads folds the blocks each thread took: the single
    largest and smallest values, moved from block to block, are always found."""
    x = np.abs(mixed(7, 16 * 65536)) % np.float32(1.0)
    old = C._set_threads(2)
    try:
        for rep in range(32):
            y = x.copy()
            y[(rep % 16) * 65536 + 5] = np.float32(7.0)
            y[((rep * 7 + 3) % 16) * 65536 + 9] = np.float32(-7.0)
            assert C.float_range(y)[4:6] == (-7.0, 7.0), rep
    finally:
        C._set_threads(old)
