/* Inner loops of the pooling kernels (runtime/_pool.pyx).
 *
 * A pooled output row is computed tap by tap over whole rows (vectorizable): for
 * each valid (kd, kh) input row and each kw, acc[ow] = max/sum(acc[ow], x[...])
 * over the ow whose tap is inside the input. Windows are boxes, so the averaging
 * divisor is a product of one count per spatial dim. Loop indices are ptrdiff_t:
 * CPython builds extensions with -fwrapv, which blocks vectorizing int indices.
 */
#ifndef QCC_POOL_IMPL_H
#define QCC_POOL_IMPL_H

#include <float.h>
#include <stddef.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && __GNUC__ >= 12
#define QCC_POOL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define QCC_POOL_CLONES
#endif

enum { QCC_POOL_MAX = 0, QCC_POOL_AVG = 1, QCC_POOL_AVG_PAD = 2 };

typedef struct {
    int sp[3];   /* input spatial size (D, H, W) */
    int k[3];    /* kernel size */
    int osp[3];  /* output spatial size */
    int st[3];   /* strides */
    int pb[3];   /* pads at the beginning */
    int pe[3];   /* pads at the end */
    int dl[3];   /* dilations */
} qcc_pool_geom;

/* [*lo, *hi): the t in [0, count) with 0 <= t*stride + off < limit. */
static inline void qcc_pool_valid(int off, int stride, int limit, int count, int *lo, int *hi)
{
    int a = off < 0 ? (-off + stride - 1) / stride : 0;
    int b = limit - 1 - off < 0 ? 0 : (limit - 1 - off) / stride + 1;
    if (b > count) b = count;
    if (a > count) a = count;
    if (b < a) b = a;
    *lo = a;
    *hi = b;
}

/* Cells averaged by output o along dim i: the taps inside the input, or (with
 * count_include_pad) inside the padded input [-pb, S + pe), like onnxruntime. */
static inline int qcc_pool_count(const qcc_pool_geom *g, int i, int o, int include_pad)
{
    const int start = o * g->st[i] - g->pb[i];
    int lo, hi;
    if (include_pad) {
        int end = start + g->k[i] * g->dl[i];
        const int limit = g->sp[i] + g->pe[i];
        if (end > limit) end = limit;
        return end > start ? (end - start + g->dl[i] - 1) / g->dl[i] : 0;
    }
    qcc_pool_valid(start, g->dl[i], g->sp[i], g->k[i], &lo, &hi);
    return hi - lo;
}

/* acc[t] = max(acc[t], src[t*stride]) or acc[t] += src[t*stride] for t in [lo, hi). */
static inline __attribute__((always_inline)) void qcc_pool_tap(
    float *restrict acc, const float *restrict src, ptrdiff_t lo, ptrdiff_t hi,
    ptrdiff_t stride, int is_max)
{
    ptrdiff_t t;
    if (is_max) {
        if (stride == 1)
            for (t = lo; t < hi; t++) acc[t] = src[t] > acc[t] ? src[t] : acc[t];
        else if (stride == 2)
            for (t = lo; t < hi; t++) acc[t] = src[2 * t] > acc[t] ? src[2 * t] : acc[t];
        else
            for (t = lo; t < hi; t++) acc[t] = src[t * stride] > acc[t] ? src[t * stride] : acc[t];
    } else {
        if (stride == 1)
            for (t = lo; t < hi; t++) acc[t] += src[t];
        else if (stride == 2)
            for (t = lo; t < hi; t++) acc[t] += src[2 * t];
        else
            for (t = lo; t < hi; t++) acc[t] += src[t * stride];
    }
}

/* Pool one channel plane x[D, H, W] into out[OD, OH, OW]. `wdiv` holds OW floats:
 * the averaging count along W per output column (unused for max). A window with
 * no input cell gives -FLT_MAX for max and 0 for average. */
QCC_POOL_CLONES
static void qcc_pool_plane(const float *x, float *out, const qcc_pool_geom *g, int mode,
                           const float *wdiv)
{
    const int ow_n = g->osp[2], sw = g->st[2], is_max = mode == QCC_POOL_MAX;
    int od, oh, kd, kh, kw, lo, hi;
    ptrdiff_t t;
    for (od = 0; od < g->osp[0]; od++)
        for (oh = 0; oh < g->osp[1]; oh++) {
            float *acc = out + ((ptrdiff_t)od * g->osp[1] + oh) * ow_n;
            const float init = is_max ? -FLT_MAX : 0.0f;
            for (t = 0; t < ow_n; t++) acc[t] = init;
            for (kd = 0; kd < g->k[0]; kd++) {
                const int id = od * g->st[0] - g->pb[0] + kd * g->dl[0];
                if (id < 0 || id >= g->sp[0]) continue;
                for (kh = 0; kh < g->k[1]; kh++) {
                    const int ih = oh * g->st[1] - g->pb[1] + kh * g->dl[1];
                    const float *row = x + ((ptrdiff_t)id * g->sp[1] + ih) * g->sp[2];
                    if (ih < 0 || ih >= g->sp[1]) continue;
                    for (kw = 0; kw < g->k[2]; kw++) {
                        const int off = kw * g->dl[2] - g->pb[2];
                        qcc_pool_valid(off, sw, g->sp[2], ow_n, &lo, &hi);
                        qcc_pool_tap(acc, row + off, lo, hi, sw, is_max);
                    }
                }
            }
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
