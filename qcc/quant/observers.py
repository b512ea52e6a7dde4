"""Calibration statistics: bounded, mergeable summaries of activations and weights.

`TensorStats` summarizes every value an activation took over all calibration
batches without keeping the values: counts, the exact min and max, and a histogram
with a fixed number of bins. Its memory is O(bins), whatever the number of batches.

**Left out.** NaN, +inf and -inf are counted, each kind separately, and take no part
in min, max or the histogram, so a NaN never crashes calibration. Every finite value
is kept, however large: a model whose real activations reach 1e9 is observed with
them. Attention masks (-1e9, finfo.min) are kept away from observers by the graph's
structure (`qcc.passes.masks`), not by their magnitude.

**The histogram grid.** Bins have width `w = 2**e` (an integer `e`) and edges at
integer multiples of `w`: bin `k` is `[(start + k) * w, (start + k + 1) * w)`. For
the observed `[min, max]`, `e` is the smallest integer such that the `bins` bins
starting at `start = floor(min / w)` cover `max`, and at least `E_FLOOR(max|x|)`
(`2**(exponent(max|x|) - 40)`, at least `2**-120`: this keeps `|start|` below 2**41,
so integer bin indices and `x / w` are exact). Hence:

- binning is exact: `floor(x / w)` with a power-of-two `w` has no rounding error;
- growing the range (a new batch beyond it) re-bins the old histogram **exactly**:
  the new `w` is the old one times `2**k`, every old bin falls entirely into the new
  bin `(start + k_old) >> k`. (PyTorch's HistogramObserver re-bins by spreading
  counts proportionally, and onnxruntime's HistogramCollector adds bins of the old
  width, so its size grows with the range; both are approximate or unbounded.)
- the grid is a function of `[min, max]` alone, so `update(a); update(b)`,
  `merge` of two observers and one `update(concatenate(a, b))` give the *identical*
  histogram: statistics do not depend on batch order or on how data was split.

The price: the data covers between about half and all of the `bins` bins (a
power-of-two width is up to 2x coarser than `(max - min) / bins`).

**Compiled.** `update` of a float32 array runs two compiled passes over it
(`qcc.quant._stats`, runtime/_stats.pyx: range and non-finite counts, then the bins),
without float64 copies; the numbers are those of the numpy code below, which runs
for other dtypes, without the compiled module, or with `QCC_REFERENCE_KERNELS=1`.

**|x| histogram.** Zero is always a bin edge, so the histogram of |x| (what KL and
symmetric percentiles use) is derived exactly by folding bin `[-k-1, -k) * w` onto
`[k, k+1) * w`; it is not stored separately.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np


def _compiled():
    """The compiled statistics (runtime/_stats.pyx), unless QCC_REFERENCE_KERNELS=1
    asks for the numpy definitions below (or the checkout is not compiled)."""
    if os.environ.get("QCC_REFERENCE_KERNELS") == "1":
        return None
    try:
        from qcc.quant import _stats
    except ImportError:
        return None
    return _stats


COMPILED = _compiled()
"""`qcc.quant._stats`, or None: the numpy definitions run (the same numbers)."""
_C = COMPILED

DEFAULT_BINS = 2048
"""Histogram bins of a `TensorStats` unless given."""

_MIN_EXP = -120  # smallest bin width 2**-120 (~7.5e-37)
_REL_EXP = 40  # bin width >= 2**(exponent(max|x|) - 40): |bin index| < 2**41
_MAX_SHIFT = 62  # re-binning by 2**k with k >= 62 maps every index below 2**61 to 0 or -1


def _grid(lo: float, hi: float, bins: int) -> tuple[int, int]:
    """(e, start): the smallest bin width 2**e (>= the floor) whose `bins` bins,
    starting at floor(lo / 2**e), cover [lo, hi]."""
    maxabs = max(abs(lo), abs(hi))
    e_floor = _MIN_EXP if maxabs == 0.0 else max(_MIN_EXP, math.frexp(maxabs)[1] - _REL_EXP)
    span = hi - lo
    e = e_floor if span == 0.0 else max(e_floor, math.frexp(span / bins)[1] - 1)
    while True:  # coverage is monotone in e; at most two or three steps
        start = math.floor(math.ldexp(lo, -e))
        if math.floor(math.ldexp(hi, -e)) - start < bins:
            return e, start
        e += 1


def _rebin(hist: np.ndarray, e: int, start: int, new_e: int, new_start: int,
           bins: int) -> np.ndarray:
    """Move `hist` from grid (e, start) onto the same or a coarser grid (new_e,
    new_start) covering its occupied bins: exact, each old bin lies inside one new
    bin (empty old bins may fall outside the new range and are dropped)."""
    if (e, start) == (new_e, new_start):
        return hist
    occupied = np.flatnonzero(hist)
    shift = min(new_e - e, _MAX_SHIFT)
    index = np.right_shift(occupied + np.int64(start), shift) - new_start
    out = np.zeros(bins, np.int64)
    np.add.at(out, index, hist[occupied])
    return out


class TensorStats:
    """Mergeable statistics of one activation tensor over calibration batches.

    `update(x)` adds a batch, `merge(other)` adds another observer's statistics
    (same number of bins); both return `self`. Memory is O(`bins`).

    - `count`: finite values kept; `nan`, `posinf`, `neginf`: non-finite values
      skipped; `skipped`: the sum of the three.
    - `min`, `max`: exact, over kept values (0.0 while `count == 0`).
    - `hist` (int64, `bins` long), `edges`, `bin_width`: the histogram (module doc);
      `histogram()` and `abs_histogram()`: views trimmed to the occupied bins.
    """

    def __init__(self, bins: int = DEFAULT_BINS) -> None:
        if not isinstance(bins, int | np.integer) or bins < 2:
            raise ValueError(f"a histogram needs at least 2 bins, got {bins!r}")
        self.bins = int(bins)
        self.count = self.nan = self.posinf = self.neginf = 0
        self._min, self._max = math.inf, -math.inf
        self._e, self._start = _MIN_EXP, 0
        self._hist = np.zeros(self.bins, np.int64)

    @classmethod
    def of(cls, array: np.ndarray, bins: int = DEFAULT_BINS) -> TensorStats:
        """The statistics of one array."""
        return cls(bins).update(array)

    # ------------------------------------------------------------ properties

    @property
    def skipped(self) -> int:
        """Values left out: NaN, +inf and -inf."""
        return self.nan + self.posinf + self.neginf

    @property
    def min(self) -> float:
        return self._min if self.count else 0.0

    @property
    def max(self) -> float:
        return self._max if self.count else 0.0

    @property
    def absmax(self) -> float:
        return max(abs(self.min), abs(self.max))

    @property
    def hist(self) -> np.ndarray:
        """Counts per bin (a copy), `bins` long."""
        return self._hist.copy()

    @property
    def bin_width(self) -> float:
        return math.ldexp(1.0, self._e)

    @property
    def edges(self) -> np.ndarray:
        """The `bins + 1` bin edges (exact multiples of `bin_width`)."""
        return np.ldexp(np.arange(self._start, self._start + self.bins + 1, dtype=np.float64),
                        self._e)

    def histogram(self) -> tuple[np.ndarray, np.ndarray]:
        """(counts, edges) trimmed to the first and last occupied bin; the first
        edge is <= min and the last > max. Empty statistics give one empty bin."""
        nz = np.flatnonzero(self._hist)
        if nz.size == 0:
            return np.zeros(1, np.int64), np.array([0.0, self.bin_width])
        a, b = int(nz[0]), int(nz[-1]) + 1
        return self._hist[a:b].copy(), self.edges[a:b + 1]

    def abs_histogram(self) -> tuple[np.ndarray, np.ndarray]:
        """(counts, edges) of |x|: bins `[k, k + 1) * width` for k = 0 .. n-1, n the
        last occupied one. Exact: zero is an edge, so bin `[-k-1, -k) * w` folds onto
        `[k, k+1) * w`; width = `bin_width`, doubled as often as needed to keep
        n <= `bins` (only when the data lie far from zero)."""
        g = np.arange(self._start, self._start + self.bins, dtype=np.int64)
        occupied = self._hist > 0
        if not occupied.any():
            return np.zeros(1, np.int64), np.array([0.0, self.bin_width])
        m = np.where(g >= 0, g, -g - 1)[occupied]
        top = int(m.max())
        shift = max(0, top.bit_length() - (self.bins - 1).bit_length())
        while (top >> shift) >= self.bins:
            shift += 1
        m >>= shift
        n = (top >> shift) + 1
        counts = np.zeros(n, np.int64)
        np.add.at(counts, m, self._hist[occupied])
        return counts, np.ldexp(np.arange(n + 1, dtype=np.float64), self._e + shift)

    def summary(self) -> dict[str, float | int]:
        """Counts and range, for reports."""
        return {"count": self.count, "min": self.min, "max": self.max, "nan": self.nan,
                "posinf": self.posinf, "neginf": self.neginf, "skipped": self.skipped}

    def __repr__(self) -> str:
        return (f"TensorStats(count={self.count}, min={self.min:g}, max={self.max:g}, "
                f"skipped={self.skipped}, bins={self.bins}, bin_width={self.bin_width:g})")

    # -------------------------------------------------------------- updates

    def update(self, array: np.ndarray) -> TensorStats:
        """Add the values of `array` (any shape; float, integer or bool)."""
        a = np.asarray(array)
        if a.dtype.kind not in "fiub":
            raise TypeError(f"cannot observe values of dtype {a.dtype}")
        a = a.reshape(-1)
        if _C is not None and a.dtype == np.float32 and self._update_f32(a):
            return self
        if a.dtype.kind == "f":
            finite = np.isfinite(a)
            n_bad = a.size - int(np.count_nonzero(finite))
            if n_bad:
                nan = int(np.count_nonzero(np.isnan(a)))
                pos = int(np.count_nonzero(a == np.inf))
                self.nan += nan
                self.posinf += pos
                self.neginf += n_bad - nan - pos
                a = a[finite]
        if a.size == 0:
            return self
        x = a.astype(np.float64)
        lo, hi = float(x.min()), float(x.max())
        self._grow(min(lo, self._min), max(hi, self._max))
        index = np.floor(np.ldexp(x, -self._e)).astype(np.int64) - self._start
        self._hist += np.bincount(index, minlength=self.bins)
        self.count += int(x.size)
        return self

    def _update_f32(self, a: np.ndarray) -> bool:
        """`update` of a float32 vector in two compiled passes (range, then bins):
        the same numbers. False (nothing done) when numpy must decide the sign of a
        zero bound (the data hold both +0 and -0)."""
        assert _C is not None
        a = np.ascontiguousarray(a)
        count, nan, pos, neg, lo, hi, pos_zero, neg_zero = _C.float_range(a)
        if pos_zero and neg_zero and (lo == 0.0 or hi == 0.0):
            return False
        self.nan += nan
        self.posinf += pos
        self.neginf += neg
        if count == 0:
            return True
        self._grow(min(lo, self._min), max(hi, self._max))
        _C.add_histogram(a, self._hist, self._e, self._start, nan + pos + neg == 0)
        self.count += count
        return True

    def merge(self, other: TensorStats) -> TensorStats:
        """Add the statistics of `other` (same `bins`); the result is what one
        observer would hold after seeing both observers' data."""
        if other.bins != self.bins:
            raise ValueError(f"cannot merge statistics of {other.bins} bins into {self.bins}")
        self.nan += other.nan
        self.posinf += other.posinf
        self.neginf += other.neginf
        if other.count:
            self._grow(min(self._min, other._min), max(self._max, other._max))
            self._hist += _rebin(other._hist, other._e, other._start, self._e, self._start,
                                 self.bins)
            self.count += other.count
        return self

    def copy(self) -> TensorStats:
        out = TensorStats(self.bins)
        out.merge(self)
        return out

    def _grow(self, lo: float, hi: float) -> None:
        """Extend the range to [lo, hi], re-binning the histogram onto the new grid."""
        e, start = _grid(lo, hi, self.bins)
        if self.count:
            self._hist = _rebin(self._hist, self._e, self._start, e, start, self.bins)
        self._e, self._start = e, start
        self._min, self._max = lo, hi


# ------------------------------------------------------------------ weights


@dataclass(frozen=True)
class WeightStats:
    """Range of a constant weight, per channel (arrays of shape (C,)) or per tensor
    (shape ()). Non-finite entries are left out and counted in `nonfinite`; a
    channel without finite values has min = max = absmax = 0."""

    min: np.ndarray
    max: np.ndarray
    absmax: np.ndarray
    nonfinite: np.ndarray
    axis: int


def weight_stats(w: np.ndarray, axis: int = -1) -> WeightStats:
    """Per-channel min / max / max|w| over every dimension but `axis`; `axis = -1`
    means per-tensor (the `quant.observe` convention, not "the last axis")."""
    w = np.asarray(w, np.float64)
    if axis == -1:
        flat = w.reshape(1, -1)
    else:
        if not 0 <= axis < w.ndim:
            raise ValueError(f"axis {axis} is out of range for a weight of rank {w.ndim} "
                             "(-1 means per-tensor)")
        flat = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    finite = np.isfinite(flat)
    any_finite = finite.any(axis=1)
    lo = np.where(any_finite, np.where(finite, flat, np.inf).min(axis=1, initial=np.inf), 0.0)
    hi = np.where(any_finite, np.where(finite, flat, -np.inf).max(axis=1, initial=-np.inf),
                  0.0)
    nonfinite = flat.shape[1] - finite.sum(axis=1)
    absmax = np.maximum(np.abs(lo), np.abs(hi))
    if axis == -1:
        lo, hi, absmax, nonfinite = lo[0], hi[0], absmax[0], nonfinite[0]
    return WeightStats(np.asarray(lo), np.asarray(hi), np.asarray(absmax),
                       np.asarray(nonfinite, np.int64), axis)


__all__ = ["TensorStats", "WeightStats", "weight_stats", "DEFAULT_BINS"]
