"""Range algorithms: calibration statistics -> clipping range -> scale and zero point.

Every activation algorithm maps a `TensorStats` to a clipping range `(lo, hi)`
(floats, `min <= lo <= hi <= max` of the data; `(-t, t)` when `symmetric`), with
the uniform signature `fn(stats, bits, symmetric, **params)`; `ACTIVATION_ALGORITHMS`
names them and `compute_range` looks one up. Unknown parameter names raise
`AlgorithmError`. `range_to_qparams` turns a range into the grid's parameters;
`arq` is the weight algorithm. Empty statistics (no finite value) give (0, 0).

The MSE-driven searches (`ifmr`, `hfmg`) score a candidate by the *expected*
squared error of the real quantizer (the scale and integer zero point of
`range_to_qparams`, rounding and clipping) on the histogram, density taken uniform
inside each bin; the integral is closed-form (`expected_sq_error`). `mse` uses
AIMET's cheaper noise + saturation model. Histogram quantiles interpolate linearly
inside a bin, so they are within one bin width of the exact quantile.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable

import numpy as np

from qcc.dialects.quant import storage_range
from qcc.errors import QccError
from qcc.quant.observers import COMPILED, DEFAULT_BINS, TensorStats, weight_stats

MIN_SCALE = float(np.finfo(np.float32).tiny)
"""Smallest scale produced (float32's smallest normal, 2**-126)."""

DEGENERATE_SCALE = 1.0
"""Scale of a zero-width range (an all-zero tensor or channel)."""

_MAX_SCALE = float(np.finfo(np.float32).max)
_CHUNK = 1 << 20  # candidates x bins evaluated at once

Range = tuple[float, float]


class AlgorithmError(QccError, ValueError):
    """A bad algorithm name, parameter name or parameter value."""


# ------------------------------------------------------------------ qparams


def _check_bits(bits: int) -> int:
    if not isinstance(bits, int | np.integer) or not 2 <= bits <= 16:
        raise AlgorithmError(f"bits must be an integer in [2, 16], got {bits!r}")
    return int(bits)


def range_to_qparams(lo, hi, bits: int = 8, symmetric: bool = False,
                     narrow_range: bool = False, signed: bool = True
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(scale float64, zero_point int64) arrays of the broadcast shape of lo, hi.

    qmin, qmax = `storage_range(bits, signed, narrow_range)`.

    - symmetric: `t = max(|lo|, |hi|)`, `scale = t / (2**(bits-1) - 1)`, zero point
      0 for signed storage and `2**(bits-1)` for unsigned (so [-t, t] maps onto
      [zp - 127, zp + 127] for 8 bits either way, with or without narrow range).
    - asymmetric: the range is extended to contain 0 (`lo' = min(lo, 0)`,
      `hi' = max(hi, 0)`), `scale = (hi' - lo') / (qmax - qmin)`,
      `zero_point = clip(rint(qmin - lo' / scale), qmin, qmax)`, rint rounding half
      to even as `UniformQuantizedType.quantize`.
    - degenerate: a zero-width range (t = 0, or lo' = hi' = 0: the tensor is all
      zeros) has scale `DEGENERATE_SCALE` = 1.0 (any scale represents zero exactly;
      1.0 keeps products of scales well-conditioned) and the zero point of the rules
      above (0 / 2**(bits-1) symmetric, qmin asymmetric). A positive width whose scale
      would underflow is raised to `MIN_SCALE`. So the scale is always finite and > 0.

    lo > hi, non-finite bounds or a scale beyond float32 raise `AlgorithmError`.
    """
    bits = _check_bits(bits)
    lo, hi = np.broadcast_arrays(np.asarray(lo, np.float64), np.asarray(hi, np.float64))
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise AlgorithmError(f"a quantization range must be finite, got [{lo}, {hi}]")
    if (lo > hi).any():
        raise AlgorithmError(f"a quantization range needs lo <= hi, got [{lo}, {hi}]")
    qmin, qmax = storage_range(bits, signed, narrow_range)
    if symmetric:
        width = np.maximum(np.abs(lo), np.abs(hi))
        scale = width / ((1 << (bits - 1)) - 1)
        zp = np.full(width.shape, 0 if signed else 1 << (bits - 1), np.int64)
    else:
        lo0, hi0 = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
        width = hi0 - lo0
        scale = width / (qmax - qmin)
    scale = np.where(width == 0, DEGENERATE_SCALE, np.maximum(scale, MIN_SCALE))
    if (scale > _MAX_SCALE).any():
        raise AlgorithmError(f"range [{lo}, {hi}] gives a scale beyond float32")
    if not symmetric:
        zp = np.clip(np.rint(qmin - lo0 / scale), qmin, qmax).astype(np.int64)
    return scale, zp


# ------------------------------------------------------------- registry glue


def _algorithm(fn: Callable) -> Callable:
    """Make `fn(stats, bits, symmetric, *, params)` reject unknown parameter names
    with `AlgorithmError` (listing the known ones); `fn.params` holds the defaults."""
    sig = inspect.signature(fn)
    params = {n: p.default for n, p in sig.parameters.items()
              if p.kind is inspect.Parameter.KEYWORD_ONLY}

    @functools.wraps(fn)
    def wrapper(stats, bits: int = 8, symmetric: bool = False, **kw):
        unknown = sorted(set(kw) - set(params))
        if unknown:
            known = ", ".join(params) or "none"
            raise AlgorithmError(f"{fn.__name__}: unknown parameter(s) "
                                 f"{', '.join(map(repr, unknown))} (known: {known})")
        return fn(stats, _check_bits(bits), bool(symmetric), **kw)

    wrapper.params = params  # type: ignore[attr-defined]
    return wrapper


def _empty(stats: TensorStats) -> bool:
    return stats.count == 0


def _sym(t: float) -> Range:
    return (-float(t), float(t))


def _quantile(counts: np.ndarray, edges: np.ndarray, q: float) -> float:
    """The q-quantile (0 <= q <= 1) of a histogram: the value below which a fraction
    q of the counts lies, linear inside the bin that reaches it."""
    cum = np.cumsum(counts, dtype=np.float64)
    r = q * cum[-1]
    k = min(int(np.searchsorted(cum, r, side="left")), len(counts) - 1)
    below = cum[k] - counts[k]
    frac = (r - below) / counts[k] if counts[k] > 0 else 0.0
    return float(edges[k] + min(max(frac, 0.0), 1.0) * (edges[k + 1] - edges[k]))


def _check_fraction(name: str, value: float) -> float:
    if not 0.5 < value <= 1.0:
        raise AlgorithmError(f"{name} must be in (0.5, 1], got {value!r}")
    return float(value)


def _rebin_uniform(counts: np.ndarray, edges: np.ndarray, lo: float, hi: float,
                   n: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` equal bins over [lo, hi], counts spread uniformly inside the old bins."""
    new_edges = np.linspace(lo, hi, n + 1)
    cum = np.concatenate(([0.0], np.cumsum(counts, dtype=np.float64)))
    return np.diff(np.interp(new_edges, edges, cum)), new_edges


# --------------------------------------------------------------- algorithms


@_algorithm
def minmax(stats: TensorStats, bits: int = 8, symmetric: bool = False) -> Range:
    """(min, max) of the finite values; symmetric: (-t, t), t = max(|min|, |max|)."""
    return _sym(stats.absmax) if symmetric else (stats.min, stats.max)


@_algorithm
def percentile(stats: TensorStats, bits: int = 8, symmetric: bool = False, *,
               max_percentile: float = 0.99999, min_percentile: float = 0.99999) -> Range:
    """AMCT's fractions (not onnxruntime's percents): `hi` = the `max_percentile`
    quantile, `lo` = the `1 - min_percentile` quantile of the histogram, both in
    (0.5, 1]; symmetric: t = the `max_percentile` quantile of |x| (min_percentile
    unused). Clipped to [min, max]."""
    pmax = _check_fraction("max_percentile", max_percentile)
    pmin = _check_fraction("min_percentile", min_percentile)
    if _empty(stats):
        return (0.0, 0.0)
    if symmetric:
        return _sym(min(_quantile(*stats.abs_histogram(), pmax), stats.absmax))
    counts, edges = stats.histogram()
    hi = min(_quantile(counts, edges, pmax), stats.max)
    lo = max(_quantile(counts, edges, 1.0 - pmin), stats.min)
    return (lo, max(lo, hi))


def _smooth(p: np.ndarray, eps: float = 1e-4) -> np.ndarray | None:
    """MXNet / onnxruntime `smooth_distribution`: zeros become eps, taken evenly
    from the non-zero entries; None when all are zero."""
    zeros = p == 0
    n_zeros = int(np.count_nonzero(zeros))
    if n_zeros == p.size:
        return None
    return np.where(zeros, eps, p - eps * n_zeros / (p.size - n_zeros))


def kl_divergence(counts: np.ndarray, i: int, nq: int) -> float:
    """TensorRT / MXNet KL(p || q) of clipping the |x| histogram `counts` after `i`
    bins and quantizing the kept part into `nq` levels:

    p = counts[:i], the tail sum(counts[i:]) added to p[-1]; the `i` bins form `nq`
    groups of `i // nq` (the last group takes the remainder); q spreads each group's
    count (of `counts`, without the tail) evenly over its bins where p != 0, and is 0
    where p == 0; p and q are smoothed as `_smooth` and normalized;
    KL = sum p log(p / q) (inf if smoothing fails)."""
    p = counts[:i].astype(np.float64)
    p[-1] += counts[i:].sum()
    nonzero = p != 0
    m = i // nq
    starts = np.arange(nq) * m
    group = np.add.reduceat(counts[:i].astype(np.float64), starts)
    norm = np.add.reduceat(nonzero.astype(np.float64), starts)
    sizes = np.diff(np.append(starts, i))
    per_bin = np.divide(group, norm, out=np.zeros_like(group), where=norm > 0)
    q = np.repeat(per_bin, sizes) * nonzero
    ps, qs = _smooth(p), _smooth(q)
    if ps is None or qs is None or (ps <= 0).any() or (qs <= 0).any():
        return math.inf
    ps, qs = ps / ps.sum(), qs / qs.sum()
    return float(np.sum(ps * np.log(ps / qs)))


@_algorithm
def kl(stats: TensorStats, bits: int = 8, symmetric: bool = False, *,
       num_of_bins: int = 2048) -> Range:
    """Entropy calibration (TensorRT; the MXNet formula of onnxruntime's
    HistogramCalibrater `method=Entropy`), on the histogram of |x|.

    The |x| histogram (`TensorStats.abs_histogram`, integer counts, bin width w) is
    used as is when it has fewer than 2 * `num_of_bins` bins, else adjacent bins are
    summed in groups of g = n // num_of_bins (width g * w; so TensorRT's resolution,
    num_of_bins bins over [0, max|x|], up to a factor < 2, when the observer has
    enough bins: `observer_bins`). With nq = levels on the
    positive side (2**(bits-1), TensorRT's 128 for int8; 2**bits when asymmetric
    and the data has one sign), the threshold is t = i * width for the i in
    [nq, n] minimizing `kl_divergence` (the first minimum), at most max|x|.
    Symmetric: (-t, t); asymmetric: (max(-t, min), min(t, max)).
    """
    if not isinstance(num_of_bins, int | np.integer) or num_of_bins < 2:
        raise AlgorithmError(f"num_of_bins must be an integer >= 2, got {num_of_bins!r}")
    if _empty(stats) or stats.absmax == 0:
        return (0.0, 0.0)
    one_sign = stats.min >= 0 or stats.max <= 0
    nq = 1 << (bits if (not symmetric and one_sign) else bits - 1)
    counts, edges = stats.abs_histogram()
    width = edges[1]
    g = max(1, len(counts) // int(num_of_bins))
    if g > 1:
        counts = np.pad(counts, (0, -len(counts) % g)).reshape(-1, g).sum(axis=1)
        width *= g
    n = len(counts)
    t = stats.absmax
    if n > nq:
        divs = [kl_divergence(counts, i, nq) for i in range(nq, n + 1)]
        t = min((nq + int(np.argmin(divs))) * width, t)
    return _sym(t) if symmetric else (float(max(-t, stats.min)), float(min(t, stats.max)))


@_algorithm
def mse(stats: TensorStats, bits: int = 8, symmetric: bool = False) -> Range:
    """AIMET 'tf_enhanced': minimize noise + saturation over candidate ranges.

    Bins are represented by their centers c with counts h. For a candidate [lo, hi]
    (lo <= 0 <= hi) with step s (`range_to_qparams`): cost = N_in * s**2 / 12 +
    sum_{c < lo} h (c - lo)**2 + sum_{c > hi} h (c - hi)**2, N_in the count inside.
    Candidates: symmetric, t at every |x| bin edge (the last one being max|x|);
    asymmetric, every pair of histogram edges lo <= 0 <= hi (up to 256 per side,
    evenly spaced, the ends min(min, 0) and max(max, 0) always included). Ties take
    the first (narrowest) candidate; prefix sums make each candidate O(1).
    """
    if _empty(stats) or stats.min == stats.max:
        return minmax(stats, bits, symmetric)
    if symmetric:
        counts, edges = stats.abs_histogram()
        h = counts.astype(np.float64)
        c = 0.5 * (edges[:-1] + edges[1:])
        t = np.minimum(edges[1:], stats.absmax)
        pre = [np.concatenate(([0.0], np.cumsum(x))) for x in (h, h * c, h * c * c)]
        n1, s1, s2 = (p[-1] - p[1:] for p in pre)  # sums over the bins above t
        sat = s2 - 2 * t * s1 + t * t * n1  # bins after the one t closes
        step = t / ((1 << (bits - 1)) - 1)
        cost = (h.sum() - n1) * step * step / 12 + sat
        return _sym(t[int(np.argmin(cost))])
    counts, edges = stats.histogram()
    h = counts.astype(np.float64)
    c = 0.5 * (edges[:-1] + edges[1:])
    n = len(h)
    pre = [np.concatenate(([0.0], np.cumsum(x))) for x in (h, h * c, h * c * c)]
    a = np.flatnonzero(edges <= 0)  # lo = edges[a]: bins [0, a) are below
    b = np.flatnonzero(edges >= 0)  # hi = edges[b]: bins [b, n) are above
    a = _spread(np.union1d(a, [0]))
    b = _spread(np.union1d(b, [n]))
    lo = np.where(a == 0, min(stats.min, 0.0), edges[a])[:, None]
    hi = np.where(b == n, max(stats.max, 0.0), edges[b])[None, :]
    n_lo, s1_lo, s2_lo = (p[a][:, None] for p in pre)
    n_hi, s1_hi, s2_hi = ((p[-1] - p[b])[None, :] for p in pre)
    qmin, qmax = storage_range(bits, True)
    step = (hi - lo) / (qmax - qmin)
    cost = ((pre[0][-1] - n_lo - n_hi) * step * step / 12
            + s2_lo - 2 * lo * s1_lo + lo * lo * n_lo
            + s2_hi - 2 * hi * s1_hi + hi * hi * n_hi)
    ia, ib = np.unravel_index(int(np.argmin(cost)), cost.shape)
    return (float(lo[ia, 0]), float(hi[0, ib]))


def _spread(index: np.ndarray, most: int = 256) -> np.ndarray:
    """At most `most` of the sorted `index`, evenly spaced, both ends kept."""
    if len(index) <= most:
        return index
    return index[np.unique(np.round(np.linspace(0, len(index) - 1, most)).astype(int))]


def expected_sq_error(counts: np.ndarray, edges: np.ndarray, lo, hi, bits: int,
                      symmetric: bool, narrow_range: bool = False) -> np.ndarray:
    """Sum of squared quantization errors of the histogram for each candidate range
    (lo[k], hi[k]), density uniform inside each bin.

    Q(x) = (clip(rint(x / s) + z, qmin, qmax) - z) * s with (s, z) from
    `range_to_qparams`; with Lq = (qmin - z) s and Hq = (qmax - z) s the rounding
    region is [Lq - s/2, Hq + s/2], where (x - Q(x))**2 is s-periodic with the
    antiderivative R(x) = n s**3 / 12 + s**3 ((f - 1/2)**3 + 1/8) / 3
    (u = x / s + 1/2, n = floor(u), f = u - n); outside it the error is the clip
    distance, integrated as a cube. Returns one value per candidate. The compiled
    terms (`qcc.quant._stats.sq_error_terms`, the same operations) cube as t * t * t:
    within an ulp or two of numpy's `t ** 3`, on every machine alike."""
    lo, hi = np.atleast_1d(np.asarray(lo, np.float64)), np.atleast_1d(np.asarray(hi, np.float64))
    s, z = range_to_qparams(lo, hi, bits, symmetric, narrow_range)
    qmin, qmax = storage_range(bits, True, narrow_range)
    keep = counts > 0
    a, b = edges[:-1][keep], edges[1:][keep]
    dens = counts[keep] / (b - a)
    out = np.empty(len(s))
    if COMPILED is not None:  # the terms below in one pass (cubes as t * t * t)
        a, b, dens = (np.ascontiguousarray(v, np.float64) for v in (a, b, dens))
        z = np.ascontiguousarray(z, np.int64)
        rows = max(1, _CHUNK // max(1, len(a)))
        for k in range(0, len(s), rows):
            out[k:k + rows] = COMPILED.sq_error_terms(
                a, b, dens, np.ascontiguousarray(s[k:k + rows]), z[k:k + rows],
                qmin, qmax).sum(axis=1)
        return out
    rows = max(1, _CHUNK // max(1, len(a)))
    for k in range(0, len(s), rows):
        sk = s[k:k + rows, None]
        lq, hq = (qmin - z[k:k + rows, None]) * sk, (qmax - z[k:k + rows, None]) * sk
        l2, h2 = lq - sk / 2, hq + sk / 2

        def r(x, sk=sk):
            u = x / sk + 0.5
            n = np.floor(u)
            return sk ** 3 * (n / 12 + ((u - n - 0.5) ** 3 + 0.125) / 3)

        rounding = r(np.clip(b, l2, h2)) - r(np.clip(a, l2, h2))
        above = ((np.maximum(b, h2) - hq) ** 3 - (np.maximum(a, h2) - hq) ** 3) / 3
        below = ((np.minimum(b, l2) - lq) ** 3 - (np.minimum(a, l2) - lq) ** 3) / 3
        out[k:k + rows] = ((rounding + above + below) * dens).sum(axis=1)
    return out


@_algorithm
def ifmr(stats: TensorStats, bits: int = 8, symmetric: bool = False, *,
         search_range_start: float = 0.7, search_range_end: float = 1.3,
         search_step: float = 0.01, max_percentile: float = 0.999999,
         min_percentile: float = 0.999999) -> Range:
    """AMCT IFMR: start from the percentile range (lo0, hi0) (`percentile` with
    max_percentile / min_percentile), scale it by each factor f = start, start +
    step, ... <= end, clipped to [min, max] (symmetric: t = f * t0 clipped to
    max|x|), and keep the candidate of least `expected_sq_error` (ties: the first)."""
    if not 0 < search_range_start <= search_range_end or not search_step > 0:
        raise AlgorithmError("IFMR needs 0 < search_range_start <= search_range_end and "
                             f"search_step > 0, got {search_range_start}, {search_range_end},"
                             f" {search_step}")
    n = int(math.floor((search_range_end - search_range_start) / search_step + 1e-9)) + 1
    if n > 100_000:
        raise AlgorithmError(f"IFMR search of {n} candidates: search_step is too small")
    lo0, hi0 = percentile(stats, bits, symmetric, max_percentile=max_percentile,
                          min_percentile=min_percentile)
    if _empty(stats) or stats.min == stats.max:
        return minmax(stats, bits, symmetric)
    f = search_range_start + search_step * np.arange(n)
    if symmetric:
        hi = np.minimum(f * hi0, stats.absmax)
        lo = -hi
    else:
        lo = np.clip(f * lo0, stats.min, stats.max)
        hi = np.clip(f * hi0, stats.min, stats.max)
    err = expected_sq_error(*stats.histogram(), lo, hi, bits, symmetric)
    k = int(np.argmin(err))
    return (float(lo[k]), float(hi[k]))


def _greedy_path(h: np.ndarray, step: float = 1e-5) -> np.ndarray:
    """PyTorch HistogramObserver `_non_linear_param_search`'s walk: the quantile
    bounds alpha / beta advance by `step`, and the side whose next quantile bin
    trims more bins moves; returns every distinct (start_bin, end_bin) visited, in
    order, as an int64 array of shape (k, 2)."""
    nb = len(h)
    cs = np.cumsum(h)
    total = cs[-1]
    m = int(round(1 / step))
    grid = np.arange(m + 1) * step
    first_ge = np.minimum(np.searchsorted(cs, grid * total, side="left"), nb - 1)
    last_le = np.searchsorted(cs, (1 - grid) * total, side="right") - 1
    if COMPILED is not None:  # the loop below, compiled
        walk = COMPILED.greedy_path(np.ascontiguousarray(first_ge, np.int64),
                                    np.ascontiguousarray(last_le, np.int64), nb, m)
        return walk
    neg_last = -last_le  # nondecreasing
    start, end, ka, kb = 0, nb - 1, 0, 0
    path = []
    while ka + kb < m:
        left = min(max(int(first_ge[ka + 1]), start), end)
        right = max(min(int(last_le[kb + 1]), end), start)
        if left == start and right == end:  # only beta moves until end changes
            jump = int(np.searchsorted(neg_last, -end, side="right")) - 1
            kb = min(max(kb + 1, jump), m - ka)
            continue
        if left - start > end - right:
            start, ka = left, ka + 1
        else:
            end, kb = right, kb + 1
        path.append((start, end))
    return np.asarray(path, np.int64).reshape(-1, 2)


def _argmin_refined(score: Callable[[np.ndarray], np.ndarray], n: int,
                    coarse: int = 32) -> int:
    """Index of the least score among n ordered candidates, coarse to fine: score
    every stride-th candidate (and the last) with stride ~ n / coarse, then repeat
    on the window of one stride around the best with the stride divided by
    `coarse`, down to stride 1."""
    first, stop, stride = 0, n, max(1, -(-n // coarse))
    while True:
        sel = np.union1d(np.arange(first, stop, stride), [stop - 1])
        best = int(sel[int(np.argmin(score(sel)))])
        if stride == 1:
            return best
        first, stop = max(0, best - stride + 1), min(n, best + stride)
        stride = max(1, -(-stride // coarse))


@_algorithm
def hfmg(stats: TensorStats, bits: int = 8, symmetric: bool = False, *,
         num_of_bins: int = 4096) -> Range:
    """AMCT HFMG: a histogram MSE search like PyTorch's HistogramObserver.

    Candidates live on a grid of `num_of_bins` equal bins over [min, max].
    Asymmetric: the ranges [min + start * w, min + (end + 1) * w] along PyTorch's
    greedy quantile walk (`_greedy_path`, on the histogram spread uniformly onto
    that grid); symmetric: t = k * max|x| / num_of_bins, k = 1 .. num_of_bins.
    Each is scored by `expected_sq_error` on the observer's histogram, coarse to
    fine (`_argmin_refined`). PyTorch stops its walk at the first increase of its
    error; scoring the whole walk finds a minimum at least as low."""
    if not isinstance(num_of_bins, int | np.integer) or num_of_bins < 16:
        raise AlgorithmError(f"num_of_bins must be an integer >= 16, got {num_of_bins!r}")
    if _empty(stats) or stats.min == stats.max:
        return minmax(stats, bits, symmetric)
    nb = int(num_of_bins)
    counts, edges = stats.histogram()
    if symmetric:
        hi = np.arange(1, nb + 1) * (stats.absmax / nb)
        lo = -hi
    else:
        h, grid = _rebin_uniform(counts, edges, stats.min, stats.max, nb)
        idx = np.concatenate([np.array([(0, nb - 1)], np.int64), _greedy_path(h)])
        lo, hi = grid[idx[:, 0]], grid[idx[:, 1] + 1]
    k = _argmin_refined(
        lambda sel: expected_sq_error(counts, edges, lo[sel], hi[sel], bits, symmetric),
        len(lo))
    return (float(lo[k]), float(hi[k]))


def observer_bins(algorithm: str, params: dict | None = None) -> int:
    """Histogram bins a `TensorStats` should have for `algorithm`: enough that the
    search sees `num_of_bins` (kl: over [0, max|x|], hfmg: over [min, max]) at its
    native resolution (the power-of-two grid covers between 1/2 and all of its bins,
    |x| half of that again); `DEFAULT_BINS` otherwise. 4 * 2048 bins is 64 KiB."""
    n = int((params or {}).get("num_of_bins", 0))
    factor = {"kl": 4, "hfmg": 2}.get(algorithm, 0)
    return max(DEFAULT_BINS, factor * n)


# ------------------------------------------------------------------ weights


def arq(weight: np.ndarray, axis: int = -1, bits: int = 8, narrow_range: bool = False
        ) -> tuple[np.ndarray, np.ndarray]:
    """AMCT ARQ: symmetric max-abs, per channel along `axis` (-1: per tensor).

    Returns the clipping range (-max|w|, max|w|) as arrays of shape (C,) or ();
    `range_to_qparams(lo, hi, bits, symmetric=True, narrow_range)` then gives
    scale = max|w| / (2**(bits-1) - 1), zero point 0 (1.0 for an all-zero channel).
    `narrow_range` does not change the range (the scale uses 2**(bits-1) - 1 either
    way); it is accepted so every caller passes the grid it quantizes to.
    Non-finite weights are left out (`weight_stats`)."""
    _check_bits(bits)
    w = np.asarray(weight)
    if COMPILED is not None and w.dtype == np.float32 and -1 <= axis < w.ndim:
        c = 1 if axis == -1 else w.shape[axis]
        outer = 1 if axis == -1 else int(np.prod(w.shape[:axis], dtype=np.int64))
        absmax = COMPILED.channel_absmax(np.ascontiguousarray(w).reshape(outer, c, -1))
        if axis == -1:
            absmax = np.asarray(absmax[0])
        return -absmax, absmax.copy()
    st = weight_stats(w, axis)
    return -st.absmax, st.absmax.copy()


# The one place algorithm names and defaults are stated: the config's grammar and
# defaults, qcc-calibrate and the report all read them from here.

ACTIVATION_ALGORITHMS: dict[str, Callable[..., Range]] = {
    "ifmr": ifmr, "hfmg": hfmg, "minmax": minmax, "percentile": percentile, "kl": kl,
    "mse": mse,
}
"""name -> fn(stats, bits, symmetric, **params) -> (lo, hi); `fn.params` lists the
parameters with their defaults."""

WEIGHT_ALGORITHMS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {"arq": arq}
"""name -> fn(weight, axis, bits, narrow_range) -> (lo, hi) per channel."""

DEFAULT_ACTIVATION_ALGORITHM = "ifmr"
DEFAULT_WEIGHT_ALGORITHM = "arq"


def activation_defaults() -> dict[str, dict[str, float | int]]:
    """Each activation algorithm's parameters with their defaults, by name."""
    return {name: dict(fn.params) for name, fn in  # type: ignore[attr-defined]
            ACTIVATION_ALGORITHMS.items()}


def compute_range(algorithm: str, stats: TensorStats, bits: int = 8,
                  symmetric: bool = False, **params) -> Range:
    """`ACTIVATION_ALGORITHMS[algorithm](stats, bits, symmetric, **params)`, with a
    clear `AlgorithmError` for an unknown name."""
    fn = ACTIVATION_ALGORITHMS.get(algorithm)
    if fn is None:
        raise AlgorithmError(f"unknown activation algorithm '{algorithm}' (known: "
                             f"{', '.join(ACTIVATION_ALGORITHMS)})")
    return fn(stats, bits, symmetric, **params)


__all__ = [
    "ACTIVATION_ALGORITHMS", "WEIGHT_ALGORITHMS", "DEFAULT_ACTIVATION_ALGORITHM",
    "DEFAULT_WEIGHT_ALGORITHM", "activation_defaults", "AlgorithmError", "DEGENERATE_SCALE", "MIN_SCALE", "arq",
    "compute_range", "expected_sq_error", "hfmg", "ifmr", "kl", "kl_divergence",
    "minmax", "mse", "observer_bins", "percentile", "range_to_qparams",
]
