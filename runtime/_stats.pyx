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
  break the chain of increments of one bin (a ReLU's zeros).
- `channel_absmax(w)`: max |w| of the finite values per channel of a (outer, C,
  inner) array; 0 for a channel without one.
- `sq_error_terms(...)`: the per-bin terms of `algorithms.expected_sq_error`, the
  same float64 operations in the same order, cubes as x * x * x.

Built with -ffp-contract=off: no product and sum fuse into an FMA, so the numbers do
not depend on the compiler's choice of instructions.
"""

import numpy as np

cimport numpy as cnp
from libc.math cimport INFINITY
from libc.stdint cimport int64_t

cnp.import_array()

cdef extern from *:
    """
    #include <math.h>
    #include <stdint.h>
    #include <stdlib.h>
    #include <string.h>

    typedef struct {
        int64_t count, nan, posinf, neginf;
        float lo, hi;
        int pos_zero, neg_zero;
    } qcc_range;

    /* Fast pass: min / max over all values (NaN never wins a comparison), whether a
     * NaN occurs, which zeros occur. */
    static void qcc_range_all(const float *x, Py_ssize_t n, qcc_range *r, int *has_nan)
    {
        float lo = INFINITY, hi = -INFINITY;
        int nan = 0, pz = 0, nz = 0;
        Py_ssize_t i;
        for (i = 0; i < n; i++) {
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

    /* floor(v * scale) - start for the finite v into hist[0, bins) (4 copies, summed
     * at the end); returns how many fell outside (0 unless the grid is wrong). */
    static int64_t qcc_histogram(const float *x, Py_ssize_t n, double scale, int64_t start,
                                 int64_t *hist, Py_ssize_t bins)
    {
        int64_t *h4 = (int64_t *)calloc((size_t)bins * 4, sizeof(int64_t));
        int64_t outside = 0;
        Py_ssize_t i, k;
        if (h4 == NULL) return -1;
        for (i = 0; i < n; i++) {
            const float v = x[i];
            double d;
            int64_t t;
            uint64_t idx;
            if (!(v - v == 0.0f)) continue;  /* NaN or inf */
            d = (double)v * scale;
            t = (int64_t)d;                   /* truncation, then floor */
            t -= (double)t > d;
            idx = (uint64_t)(t - start);
            if (idx >= (uint64_t)bins) { outside++; continue; }
            h4[(i & 3) * bins + (Py_ssize_t)idx]++;
        }
        for (k = 0; k < bins; k++)
            hist[k] += h4[k] + h4[bins + k] + h4[2 * bins + k] + h4[3 * bins + k];
        free(h4);
        return outside;
    }

    static void qcc_channel_absmax(const float *w, Py_ssize_t outer, Py_ssize_t c,
                                   Py_ssize_t inner, double *out)
    {
        Py_ssize_t o, ch, i;
        for (ch = 0; ch < c; ch++) out[ch] = 0.0;
        for (o = 0; o < outer; o++)
            for (ch = 0; ch < c; ch++) {
                const float *p = w + (o * c + ch) * inner;
                float m = (float)out[ch];
                for (i = 0; i < inner; i++) {
                    const float a = fabsf(p[i]);
                    m = (a > m && a <= 3.4028234663852886e38f) ? a : m;
                }
                out[ch] = m;
            }
    }

    static inline double qcc_cube(double t) { return t * t * t; }

    /* r of expected_sq_error: s**3 (n / 12 + ((u - n - 1/2)**3 + 1/8) / 3). */
    static inline double qcc_r(double x, double s, double s3)
    {
        const double u = x / s + 0.5, n = floor(u);
        return s3 * (n / 12 + (qcc_cube(u - n - 0.5) + 0.125) / 3);
    }

    static void qcc_sq_error_terms(const double *a, const double *b, const double *dens,
                                   Py_ssize_t m, const double *s, const int64_t *z,
                                   Py_ssize_t rows, int64_t qmin, int64_t qmax, double *out)
    {
        Py_ssize_t k, j;
        for (k = 0; k < rows; k++) {
            const double sk = s[k], s3 = qcc_cube(sk);
            const double lq = (double)(qmin - z[k]) * sk, hq = (double)(qmax - z[k]) * sk;
            const double l2 = lq - sk / 2, h2 = hq + sk / 2;
            double *o = out + k * m;
            for (j = 0; j < m; j++) {
                const double aj = a[j], bj = b[j];
                const double ca = fmin(fmax(aj, l2), h2), cb = fmin(fmax(bj, l2), h2);
                const double rounding = qcc_r(cb, sk, s3) - qcc_r(ca, sk, s3);
                const double above = (qcc_cube((bj > h2 ? bj : h2) - hq)
                                      - qcc_cube((aj > h2 ? aj : h2) - hq)) / 3;
                const double below = (qcc_cube((bj < l2 ? bj : l2) - lq)
                                      - qcc_cube((aj < l2 ? aj : l2) - lq)) / 3;
                o[j] = ((rounding + above) + below) * dens[j];
            }
        }
    }
    """
    ctypedef struct qcc_range:
        int64_t count, nan, posinf, neginf
        float lo, hi
        int pos_zero, neg_zero
    void qcc_range_all(const float* x, Py_ssize_t n, qcc_range* r, int* has_nan) nogil
    void qcc_range_finite(const float* x, Py_ssize_t n, qcc_range* r) nogil
    int64_t qcc_histogram(const float* x, Py_ssize_t n, double scale, int64_t start,
                          int64_t* hist, Py_ssize_t bins) nogil
    void qcc_channel_absmax(const float* w, Py_ssize_t outer, Py_ssize_t c,
                            Py_ssize_t inner, double* out) nogil
    void qcc_sq_error_terms(const double* a, const double* b, const double* dens,
                            Py_ssize_t m, const double* s, const int64_t* z,
                            Py_ssize_t rows, int64_t qmin, int64_t qmax,
                            double* out) nogil


def float_range(const float[::1] x):
    """(count, nan, posinf, neginf, lo, hi, pos_zero, neg_zero) of a float32 array:
    lo / hi over the finite values (inf / -inf when there is none), the zero flags
    over all values."""
    cdef qcc_range r
    cdef int has_nan = 0
    cdef Py_ssize_t n = x.shape[0]
    cdef const float* p = &x[0] if n else NULL
    with nogil:
        qcc_range_all(p, n, &r, &has_nan)
        if has_nan or r.lo == -INFINITY or r.hi == INFINITY:
            qcc_range_finite(p, n, &r)
    return (r.count, r.nan, r.posinf, r.neginf, float(r.lo), float(r.hi),
            bool(r.pos_zero), bool(r.neg_zero))


def add_histogram(const float[::1] x, int64_t[::1] hist, int e, int64_t start):
    """hist[floor(x * 2**-e) - start] += 1 for each finite x; every bin must fall
    inside hist (ValueError otherwise, hist unchanged)."""
    cdef Py_ssize_t n = x.shape[0], bins = hist.shape[0]
    cdef double scale = np.ldexp(1.0, -e)
    cdef int64_t outside = 0
    if n == 0:
        return
    with nogil:
        outside = qcc_histogram(&x[0], n, scale, start, &hist[0], bins)
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
