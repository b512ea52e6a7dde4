# Per-channel absmax and the helpers of qcc.quant.algorithms (sq_error_terms,
# greedy_path) in C (included by _stats.pyx).

cdef extern from *:
    """
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

    /* out[ch] = max(out[ch], max |w| over channel ch), NaN once a value of the
     * channel is NaN: numpy's np.abs(w).max(axis=(0, 2)) folded into out */
    static void qcc_channel_absmax_nan(const float *w, Py_ssize_t outer, Py_ssize_t c,
                                       Py_ssize_t inner, float *out)
    {
        Py_ssize_t o, ch, i;
        for (o = 0; o < outer; o++)
            for (ch = 0; ch < c; ch++) {
                const float *p = w + (o * c + ch) * inner;
                float m = out[ch];
                int nan = 0;
                for (i = 0; i < inner; i++) {
                    const float a = fabsf(p[i]);
                    nan |= a != a;
                    m = a > m ? a : m;
                }
                out[ch] = nan ? NAN : m;
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

    /* algorithms._greedy_path's walk over its precomputed quantile bins: integers
     * only. last_le is nonincreasing; the jump is numpy's
     * searchsorted(-last_le, -end, side="right") - 1, found by bisection. Writes
     * (start, end) pairs into path (room for m pairs); returns how many. */
    static Py_ssize_t qcc_greedy_path(const int64_t *first_ge, const int64_t *last_le,
                                      int64_t nb, int64_t m, int64_t *path)
    {
        int64_t start = 0, end = nb - 1, ka = 0, kb = 0;
        Py_ssize_t n = 0;
        while (ka + kb < m) {
            int64_t left = first_ge[ka + 1], right = last_le[kb + 1];
            left = left > start ? left : start;
            left = left < end ? left : end;
            right = right < end ? right : end;
            right = right > start ? right : start;
            if (left == start && right == end) {
                int64_t lo = 0, hi = m + 1, jump;   /* first j with last_le[j] < end */
                while (lo < hi) {
                    const int64_t mid = lo + (hi - lo) / 2;
                    if (last_le[mid] >= end) lo = mid + 1; else hi = mid;
                }
                jump = lo - 1;
                kb = kb + 1 > jump ? kb + 1 : jump;
                kb = kb < m - ka ? kb : m - ka;
                continue;
            }
            if (left - start > end - right) { start = left; ka++; }
            else { end = right; kb++; }
            path[2 * n] = start;
            path[2 * n + 1] = end;
            n++;
        }
        return n;
    }
    """
    void qcc_channel_absmax(const float* w, Py_ssize_t outer, Py_ssize_t c,
                            Py_ssize_t inner, double* out) nogil
    void qcc_channel_absmax_nan(const float* w, Py_ssize_t outer, Py_ssize_t c,
                                Py_ssize_t inner, float* out) nogil
    void qcc_sq_error_terms(const double* a, const double* b, const double* dens,
                            Py_ssize_t m, const double* s, const int64_t* z,
                            Py_ssize_t rows, int64_t qmin, int64_t qmax,
                            double* out) nogil
    Py_ssize_t qcc_greedy_path(const int64_t* first_ge, const int64_t* last_le,
                               int64_t nb, int64_t m, int64_t* path) nogil
