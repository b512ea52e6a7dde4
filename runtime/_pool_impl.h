/* Inner loops of the pooling kernels (runtime/_pool.pyx).
 *
 * Pooling is separable: every input row is pooled along W (vectorized loops over
 * whole rows), then the W-pooled rows along D and H. Windows are boxes, so the
 * averaging divisor is a product of one count per spatial dim. Loop indices are ptrdiff_t:
 * CPython builds extensions with -fwrapv, which blocks vectorizing int indices.
 */
#ifndef QCC_POOL_IMPL_H
#define QCC_POOL_IMPL_H

#include <float.h>
#include <stddef.h>

#include "_pool_geom.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && __GNUC__ >= 12
#define QCC_POOL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define QCC_POOL_CLONES
#endif

enum { QCC_POOL_MAX = 0, QCC_POOL_AVG = 1, QCC_POOL_AVG_PAD = 2 };

#define QCC_OP(is_max, a, b) ((is_max) ? ((a) > (b) ? (a) : (b)) : (a) + (b))

/* dst[t] = op(a[t*s], b[t*s], c[t*s]) for t in [0, n) (b, c may repeat a: n_src taps). */
static inline __attribute__((always_inline)) void qcc_pool_taps(
    float *restrict dst, const float *restrict a, const float *restrict b,
    const float *restrict c, int n_src, ptrdiff_t n, ptrdiff_t s, int is_max)
{
    ptrdiff_t t;
    if (n_src == 3) {
        if (s == 1)
            for (t = 0; t < n; t++) dst[t] = QCC_OP(is_max, QCC_OP(is_max, a[t], b[t]), c[t]);
        else if (s == 2)
            for (t = 0; t < n; t++)
                dst[t] = QCC_OP(is_max, QCC_OP(is_max, a[2 * t], b[2 * t]), c[2 * t]);
        else
            for (t = 0; t < n; t++)
                dst[t] = QCC_OP(is_max, QCC_OP(is_max, a[t * s], b[t * s]), c[t * s]);
    } else if (n_src == 2) {
        if (s == 1)
            for (t = 0; t < n; t++) dst[t] = QCC_OP(is_max, a[t], b[t]);
        else
            for (t = 0; t < n; t++) dst[t] = QCC_OP(is_max, a[t * s], b[t * s]);
    } else {
        if (s == 1)
            for (t = 0; t < n; t++) dst[t] = a[t];
        else
            for (t = 0; t < n; t++) dst[t] = a[t * s];
    }
}

/* dst[t] = op(dst[t], a[t*s], b[t*s]) for t in [0, n) (n_src = 1 or 2 taps). */
static inline __attribute__((always_inline)) void qcc_pool_more(
    float *restrict dst, const float *restrict a, const float *restrict b, int n_src,
    ptrdiff_t n, ptrdiff_t s, int is_max)
{
    ptrdiff_t t;
    if (n_src == 2) {
        if (s == 1)
            for (t = 0; t < n; t++) dst[t] = QCC_OP(is_max, dst[t], QCC_OP(is_max, a[t], b[t]));
        else
            for (t = 0; t < n; t++)
                dst[t] = QCC_OP(is_max, dst[t], QCC_OP(is_max, a[t * s], b[t * s]));
    } else {
        if (s == 1)
            for (t = 0; t < n; t++) dst[t] = QCC_OP(is_max, dst[t], a[t]);
        else
            for (t = 0; t < n; t++) dst[t] = QCC_OP(is_max, dst[t], a[t * s]);
    }
}

/* dst[t] = (or op=) op over j < m of base[j*step + t*s], taps fused by up to three. */
static inline __attribute__((always_inline)) void qcc_pool_span(
    float *dst, const float *base, ptrdiff_t step, int m, ptrdiff_t n, ptrdiff_t s,
    int is_max, int assign)
{
    int j = 0;
    if (assign) {
        j = m < 3 ? m : 3;
        qcc_pool_taps(dst, base, base + (j > 1) * step, base + (j > 2) * 2 * step, j, n, s,
                      is_max);
    }
    for (; j + 2 <= m; j += 2)
        qcc_pool_more(dst, base + j * step, base + (j + 1) * step, 2, n, s, is_max);
    if (j < m) qcc_pool_more(dst, base + j * step, base + j * step, 1, n, s, is_max);
}

/* Floats of scratch qcc_pool_plane needs: the W-pooled rows and one padded row. */
static ptrdiff_t qcc_pool_scratch(const qcc_pool_geom *g)
{
    return (ptrdiff_t)g->sp[0] * g->sp[1] * g->osp[2] + qcc_pool_row_width(g);
}

static inline __attribute__((always_inline)) void qcc_pool_plane_impl(
    const float *x, float *out, const qcc_pool_geom *g, int mode, const float *wdiv,
    float *scratch, int is_max)
{
    const ptrdiff_t ow_n = g->osp[2], w_n = g->sp[2];
    const ptrdiff_t nrows = (ptrdiff_t)g->sp[0] * g->sp[1];
    const float init = is_max ? -FLT_MAX : 0.0f;
    const ptrdiff_t wp = qcc_pool_row_width(g);
    float *hbuf = scratch, *prow = scratch + nrows * ow_n;
    ptrdiff_t r, t;
    int od, oh, kd, d_lo, d_hi, h_lo, h_hi, started;
    for (t = 0; t < wp; t++) prow[t] = init;
    for (r = 0; r < nrows; r++) {           /* along W, from a padded copy of the row */
        const float *restrict in = x + r * w_n;
        float *restrict dst = prow + g->pb[2];
        for (t = 0; t < w_n; t++) dst[t] = in[t];
        qcc_pool_span(hbuf + r * ow_n, prow, g->dl[2], g->k[2], ow_n, g->st[2], is_max, 1);
    }
    for (od = 0; od < g->osp[0]; od++) {    /* along D and H, over the valid taps */
        qcc_pool_valid(od * g->st[0] - g->pb[0], g->dl[0], g->sp[0], g->k[0], &d_lo, &d_hi);
        for (oh = 0; oh < g->osp[1]; oh++) {
            float *acc = out + ((ptrdiff_t)od * g->osp[1] + oh) * ow_n;
            const int h0 = oh * g->st[1] - g->pb[1];
            qcc_pool_valid(h0, g->dl[1], g->sp[1], g->k[1], &h_lo, &h_hi);
            started = 0;
            for (kd = d_lo; kd < d_hi && h_hi > h_lo; kd++, started = 1) {
                const int id = od * g->st[0] - g->pb[0] + kd * g->dl[0];
                const float *first = hbuf + ((ptrdiff_t)id * g->sp[1] + h0 + h_lo * g->dl[1]) * ow_n;
                qcc_pool_span(acc, first, (ptrdiff_t)g->dl[1] * ow_n, h_hi - h_lo, ow_n, 1,
                              is_max, !started);
            }
            if (!started)
                for (t = 0; t < ow_n; t++) acc[t] = init;
            if (!is_max) {
                const int ad = mode == QCC_POOL_AVG_PAD;
                const float dh = (float)(qcc_pool_count(g, 0, od, ad) * qcc_pool_count(g, 1, oh, ad));
                for (t = 0; t < ow_n; t++) {
                    const float n = dh * wdiv[t];
                    acc[t] = n > 0.0f ? acc[t] / n : 0.0f;
                }
            }
        }
    }
}

/* Pool one channel plane x[D, H, W] into out[OD, OH, OW], separably: first every
 * input row along W (from a copy padded with the identity of the op, so no tap is
 * checked), then the W-pooled rows of each window along D and H, taps fused in
 * groups of up to three. `wdiv` holds the averaging count along W per output column
 * (unused for max). A window with no input cell gives -FLT_MAX for max and 0 for
 * average. */
QCC_POOL_CLONES
static void qcc_pool_plane(const float *x, float *out, const qcc_pool_geom *g, int mode,
                           const float *wdiv, float *scratch)
{
    if (mode == QCC_POOL_MAX)
        qcc_pool_plane_impl(x, out, g, mode, wdiv, scratch, 1);
    else
        qcc_pool_plane_impl(x, out, g, mode, wdiv, scratch, 0);
}

/* W-direction averaging counts of the output columns (see qcc_pool_count). */
static void qcc_pool_wdiv(const qcc_pool_geom *g, int include_pad, float *wdiv)
{
    int o;
    for (o = 0; o < g->osp[2]; o++) wdiv[o] = (float)qcc_pool_count(g, 2, o, include_pad);
}

/* out[p] = mean of x[p, 0:n] for each of `planes` planes (float partial sums in
 * 16 lanes, combined in double). */
QCC_POOL_CLONES
static void qcc_plane_means(const float *x, float *out, ptrdiff_t planes, ptrdiff_t n)
{
    ptrdiff_t p, i, j;
    for (p = 0; p < planes; p++) {
        const float *src = x + p * n;
        float lanes[16] = {0};
        double s = 0.0;
        for (i = 0; i + 16 <= n; i += 16)
            for (j = 0; j < 16; j++) lanes[j] += src[i + j];
        for (; i < n; i++) s += src[i];
        for (j = 0; j < 16; j++) s += lanes[j];
        out[p] = (float)(s / (double)n);
    }
}

#endif
