# cython: language_level=3
"""Calibration statistics in single passes over float32 arrays (qcc.quant.observers,
qcc.quant.algorithms): the numbers of the numpy definitions there, without their
float64 copies, masks and temporaries.

- `float_range(x)`: min and max of the finite values, counts of NaN, +inf, -inf, and
  which zeros (+0, -0) occur (numpy's min of a mix of +0 and -0 is its own choice:
  the caller asks numpy then).
- `add_histogram(x, hist, e, start)`: `hist[floor(x * 2**-e) - start] += 1` for every
  finite x. The product by a power of two is exact in float64 (the grid keeps it
  far from overflow and underflow) and the floor is done on the integer part, so
  the bins are those of `np.floor(np.ldexp(x, -e))`. Four interleaved histograms
  break the chain of increments of one bin. An AVX-512 build (the best at or below
  QCC_ISA; `_set_hist_variant`) bins 16 values at a time and counts the values of
  zero's bin (a ReLU's zeros) without increments: the same counts and the same
  values outside as the scalar build for every input (see qcc_hist_avx512_body).
- `channel_absmax(w)`: max |w| of the finite values per channel of a (outer, C,
  inner) array; 0 for a channel without one.
- `sq_error_terms(...)`: the per-bin terms of `algorithms.expected_sq_error`, the
  same float64 operations in the same order, cubes as x * x * x.

Built with -ffp-contract=off: no product and sum fuse into an FMA, so the numbers do
not depend on the compiler's choice of instructions.
"""

import os

import numpy as np

cimport numpy as cnp
from libc.math cimport INFINITY
from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.stdint cimport int64_t

cnp.import_array()

cdef extern from *:
    """
    #include <math.h>
    #include <stdint.h>
    #include <stdlib.h>
    #include <string.h>
    #include "_common.h"
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif

    typedef struct {
        int64_t count, nan, posinf, neginf;
        float lo, hi;
        int pos_zero, neg_zero;
    } qcc_range;

    /* Fast pass: min / max over all values (NaN never wins a comparison), whether a
     * NaN occurs, which zeros occur. minps(v, lo) returns lo when v is NaN. */
    static void qcc_range_all(const float *x, Py_ssize_t n, qcc_range *r, int *has_nan)
    {
        float lo = INFINITY, hi = -INFINITY;
        int nan = 0, pz = 0, nz = 0;
        Py_ssize_t i = 0;
    #if defined(__SSE2__)
        {
            __m128 l0 = _mm_set1_ps(INFINITY), l1 = l0, h0 = _mm_set1_ps(-INFINITY), h1 = h0;
            __m128 un = _mm_setzero_ps();
            __m128i zp = _mm_setzero_si128(), zn = zp;
            const __m128i zero = _mm_setzero_si128(), sign = _mm_set1_epi32((int)0x80000000u);
            float lv[4], hv[4];
            int k;
            for (; i + 8 <= n; i += 8) {
                const __m128 a = _mm_loadu_ps(x + i), b = _mm_loadu_ps(x + i + 4);
                const __m128i ai = _mm_castps_si128(a), bi = _mm_castps_si128(b);
                l0 = _mm_min_ps(a, l0);
                l1 = _mm_min_ps(b, l1);
                h0 = _mm_max_ps(a, h0);
                h1 = _mm_max_ps(b, h1);
                un = _mm_or_ps(un, _mm_or_ps(_mm_cmpunord_ps(a, a), _mm_cmpunord_ps(b, b)));
                zp = _mm_or_si128(zp, _mm_or_si128(_mm_cmpeq_epi32(ai, zero),
                                                   _mm_cmpeq_epi32(bi, zero)));
                zn = _mm_or_si128(zn, _mm_or_si128(_mm_cmpeq_epi32(ai, sign),
                                                   _mm_cmpeq_epi32(bi, sign)));
            }
            _mm_storeu_ps(lv, _mm_min_ps(l0, l1));
            _mm_storeu_ps(hv, _mm_max_ps(h0, h1));
            for (k = 0; k < 4; k++) {
                lo = lv[k] < lo ? lv[k] : lo;
                hi = hv[k] > hi ? hv[k] : hi;
            }
            nan = _mm_movemask_ps(un) != 0;
            pz = _mm_movemask_epi8(zp) != 0;
            nz = _mm_movemask_epi8(zn) != 0;
        }
    #endif
        for (; i < n; i++) {
            const float v = x[i];
            uint32_t u;
            memcpy(&u, &v, 4);
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
            nan |= v != v;
            pz |= u == 0u;
            nz |= u == 0x80000000u;
        }
        r->count = n;
        r->nan = r->posinf = r->neginf = 0;
        r->lo = lo;
        r->hi = hi;
        r->pos_zero = pz;
        r->neg_zero = nz;
        *has_nan = nan;
    }

    /* Slow pass (some value is not finite): counts of each kind, range of the rest. */
    static void qcc_range_finite(const float *x, Py_ssize_t n, qcc_range *r)
    {
        float lo = INFINITY, hi = -INFINITY;
        int64_t nan = 0, pos = 0, neg = 0;
        Py_ssize_t i;
        for (i = 0; i < n; i++) {
            const float v = x[i];
            if (v != v) { nan++; continue; }
            if (v == INFINITY) { pos++; continue; }
            if (v == -INFINITY) { neg++; continue; }
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        r->count = n - nan - pos - neg;
        r->nan = nan;
        r->posinf = pos;
        r->neginf = neg;
        r->lo = lo;
        r->hi = hi;
    }
    """
    ctypedef struct qcc_range:
        int64_t count, nan, posinf, neginf
        float lo, hi
        int pos_zero, neg_zero
    void qcc_range_all(const float* x, Py_ssize_t n, qcc_range* r, int* has_nan) nogil
    void qcc_range_all_par(const float* x, Py_ssize_t n, qcc_range* r, int* has_nan,
                           int width) nogil
    void qcc_range_finite(const float* x, Py_ssize_t n, qcc_range* r) nogil


include "_stats_hist.pxi"
include "_stats_algorithms.pxi"


def _default_threads():
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


cdef int THREADS = _default_threads()


_HIST_VARIANTS = {"scalar": QCC_HIST_SCALAR, "avx512": QCC_HIST_AVX512,
                  "avx512-f64": QCC_HIST_AVX512_F64}


def _hist_variants():
    """The builds of the histogram pass this CPU runs: "scalar" (the reference),
    "avx512" and "avx512-f64" (AVX-512 without its float32 products: for tests)."""
    return [name for name, v in _HIST_VARIANTS.items() if qcc_hist_runs(v)]


def _hist_variant():
    """The build of the histogram pass in use."""
    return next(name for name, v in _HIST_VARIANTS.items() if v == qcc_hist_variant)


def _set_hist_variant(name):
    """Use the histogram pass build `name` (None: the best at or below QCC_ISA, where
    avx2 takes the scalar build); returns the old name. For tests and benchmarks:
    every build gives the same counts."""
    global qcc_hist_variant
    old = _hist_variant()
    if name is None:
        best = qcc_isa_best(qcc_isa_ceiling(), 0)
        qcc_hist_variant = QCC_HIST_AVX512 if best == QCC_ISA_AVX512 else QCC_HIST_SCALAR
        return old
    if name not in _HIST_VARIANTS:
        raise ValueError(f"unknown histogram build {name!r} "
                         f"(known: {', '.join(_HIST_VARIANTS)})")
    if not qcc_hist_runs(_HIST_VARIANTS[name]):
        raise ValueError(f"histogram build {name!r} does not run on this CPU")
    qcc_hist_variant = _HIST_VARIANTS[name]
    return old


_set_hist_variant(None)   # QCC_ISA applies from import on


def _set_threads(int n):
    """Set how many threads a histogram of a large array uses (for tests and
    benchmarks; the counts do not depend on it); returns the old count."""
    global THREADS
    old = THREADS
    THREADS = max(1, n)
    return old


cdef extern from *:
    void qcc_pool_bind(void *p)


def _bind_pool(capsule):
    """Run this module's jobs on the pool in `capsule` (qcc.runtime._kernels's
    `_pool_capsule`; qcc.runtime binds it at import, so calibration shares the
    runtime's workers), or on this module's own pool when `capsule` is None."""
    if capsule is None:
        qcc_pool_bind(NULL)
    else:
        qcc_pool_bind(PyCapsule_GetPointer(capsule, "qcc.runtime.pool"))


def float_range(const float[::1] x):
    """(count, nan, posinf, neginf, lo, hi, pos_zero, neg_zero) of a float32 array:
    lo / hi over the finite values (inf / -inf when there is none), the zero flags
    over all values."""
    cdef qcc_range r
    cdef int has_nan = 0
    cdef Py_ssize_t n = x.shape[0]
    cdef const float* p = &x[0] if n else NULL
    with nogil:
        qcc_range_all_par(p, n, &r, &has_nan, THREADS)
        if has_nan or r.lo == -INFINITY or r.hi == INFINITY:
            qcc_range_finite(p, n, &r)
    return (r.count, r.nan, r.posinf, r.neginf, float(r.lo), float(r.hi),
            bool(r.pos_zero), bool(r.neg_zero))


def add_histogram(const float[::1] x, int64_t[::1] hist, int e, int64_t start,
                  bint all_finite=False):
    """hist[floor(x * 2**-e) - start] += 1 for each finite x (`all_finite`: the
    caller knows there is no NaN or inf); every bin must fall inside hist
    (ValueError otherwise)."""
    cdef Py_ssize_t n = x.shape[0], bins = hist.shape[0]
    cdef double scale = np.ldexp(1.0, -e)
    cdef int64_t outside = 0
    if n == 0:
        return
    with nogil:
        outside = qcc_histogram(&x[0], n, scale, start, &hist[0], bins, all_finite,
                                THREADS)
    if outside < 0:
        raise MemoryError(f"no memory for a histogram of {bins} bins")
    if outside:
        raise ValueError(f"{outside} values fall outside the histogram's {bins} bins")


def channel_absmax(w):
    """max |w| over the finite values of each channel of a float32 array of shape
    (outer, C, inner), as float64 (C,); 0.0 for a channel without finite values."""
    cdef const float[:, :, ::1] v = w
    out = np.zeros(v.shape[1], np.float64)
    cdef double[::1] o = out
    if v.shape[0] == 0 or v.shape[1] == 0 or v.shape[2] == 0:
        return out
    with nogil:
        qcc_channel_absmax(&v[0, 0, 0], v.shape[0], v.shape[1], v.shape[2], &o[0])
    return out


def channel_absmax_nan(x):
    """max |x| over every value of each channel of a float32 array of shape
    (outer, C, inner), as float32 (C,), NaN for a channel holding a NaN: what
    `np.abs(x).max(axis=(0, 2))` gives, in one pass and without a copy. At least
    one value a channel."""
    cdef const float[:, :, ::1] v = x
    if v.shape[0] == 0 or v.shape[2] == 0:
        raise ValueError("channel_absmax_nan: no values")
    out = np.zeros(v.shape[1], np.float32)
    cdef float[::1] o = out
    if v.shape[1] == 0:
        return out
    with nogil:
        qcc_channel_absmax_nan(&v[0, 0, 0], v.shape[0], v.shape[1], v.shape[2], &o[0])
    return out


def sq_error_terms(const double[::1] a, const double[::1] b, const double[::1] dens,
                   const double[::1] s, const int64_t[::1] z, int64_t qmin, int64_t qmax):
    """The (len(s), len(a)) terms of `algorithms.expected_sq_error`, one row per
    candidate (scale s, zero point z), one column per bin [a, b) of density dens."""
    cdef Py_ssize_t rows = s.shape[0], m = a.shape[0]
    out = np.empty((rows, m), np.float64)
    cdef double[:, ::1] o = out
    if rows == 0 or m == 0:
        return out
    with nogil:
        qcc_sq_error_terms(&a[0], &b[0], &dens[0], m, &s[0], &z[0], rows, qmin, qmax,
                           &o[0, 0])
    return out


def greedy_path(const int64_t[::1] first_ge, const int64_t[::1] last_le, int64_t nb,
                int64_t m):
    """`algorithms._greedy_path`'s walk given its quantile bins (m + 1 of each):
    the (start, end) pairs visited, as an int64 array of shape (k, 2)."""
    if first_ge.shape[0] < m + 1 or last_le.shape[0] < m + 1:
        raise ValueError("greedy_path needs m + 1 quantile bins of each kind")
    path = np.empty((max(m, 1), 2), np.int64)
    cdef int64_t[:, ::1] p = path
    cdef Py_ssize_t n
    with nogil:
        n = qcc_greedy_path(&first_ge[0], &last_le[0], nb, m, &p[0, 0])
    return path[:n]
