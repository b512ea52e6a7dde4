/* Inner loops of the convolution kernels (runtime/_conv.pyx).
 *
 * Plain C so that GCC vectorizes them; on x86-64 each function is compiled for
 * AVX-512, AVX2+FMA and baseline SSE2 and the best one is picked at load time
 * (target_clones). Every spatial problem is 3-D: 1-D and 2-D convolutions have
 * leading spatial dims of size 1.
 */
#ifndef QCC_CONV_IMPL_H
#define QCC_CONV_IMPL_H

#include <stddef.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && __GNUC__ >= 12
#define QCC_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define QCC_CLONES
#endif

#if defined(__GNUC__)
#define QCC_INLINE static inline __attribute__((always_inline))
#else
#define QCC_INLINE static inline
#endif

typedef struct {
    int cg;      /* input channels per group */
    int og;      /* output channels per group */
    int sp[3];   /* input spatial size (D, H, W) */
    int k[3];    /* kernel size */
    int osp[3];  /* output spatial size */
    int st[3];   /* strides */
    int pb[3];   /* pads at the beginning */
    int dl[3];   /* dilations */
} qcc_geom;

/* [*lo, *hi): the t in [0, count) with 0 <= t*stride + off < limit. */
QCC_INLINE void qcc_valid(int off, int stride, int limit, int count, int *lo, int *hi)
{
    int a = off < 0 ? (-off + stride - 1) / stride : 0;
    int b = limit - 1 - off < 0 ? 0 : (limit - 1 - off) / stride + 1;
    if (b > count) b = count;
    if (a > count) a = count;
    if (b < a) b = a;
    *lo = a;
    *hi = b;
}

/* Copy of one im2col row segment: dst[t] = src[t*stride] for t in [lo, hi), 0 elsewhere. */
QCC_INLINE void qcc_gather_row(float *restrict dst, const float *restrict src, int n,
                                  int lo, int hi, int stride)
{
    int t;
    for (t = 0; t < lo; t++) dst[t] = 0.0f;
    if (stride == 1) {
        for (t = lo; t < hi; t++) dst[t] = src[t];
    } else if (stride == 2) {
        for (t = lo; t < hi; t++) dst[t] = src[2 * t];
    } else {
        for (t = lo; t < hi; t++) dst[t] = src[(ptrdiff_t)t * stride];
    }
    for (t = hi; t < n; t++) dst[t] = 0.0f;
}

/* im2col of output rows [r0, r1) (flattened (od, oh)) for one image and group:
 * col[(c, kd, kh, kw), (r - r0) * OW + ow] = x[c, id, ih, iw], 0 in the padding. */
QCC_CLONES
static void qcc_im2col(const float *x, float *col, const qcc_geom *g, int r0, int r1)
{
    const int ow_n = g->osp[2], kw_n = g->k[2], sw = g->st[2];
    const ptrdiff_t npos = (ptrdiff_t)(r1 - r0) * ow_n;
    int lo[64], hi[64];
    int c, kd, kh, kw, r;
    for (kw = 0; kw < kw_n && kw < 64; kw++)
        qcc_valid(kw * g->dl[2] - g->pb[2], sw, g->sp[2], ow_n, &lo[kw], &hi[kw]);
    for (c = 0; c < g->cg; c++)
        for (kd = 0; kd < g->k[0]; kd++)
            for (kh = 0; kh < g->k[1]; kh++) {
                float *rows = col + (((ptrdiff_t)c * g->k[0] + kd) * g->k[1] + kh) * kw_n * npos;
                for (r = r0; r < r1; r++) {
                    const int od = r / g->osp[1], oh = r - od * g->osp[1];
                    const int id = od * g->st[0] - g->pb[0] + kd * g->dl[0];
                    const int ih = oh * g->st[1] - g->pb[1] + kh * g->dl[1];
                    const int inside = id >= 0 && id < g->sp[0] && ih >= 0 && ih < g->sp[1];
                    const float *src = x + (((ptrdiff_t)c * g->sp[0] + id) * g->sp[1] + ih) * g->sp[2];
                    for (kw = 0; kw < kw_n; kw++) {
                        float *dst = rows + kw * npos + (ptrdiff_t)(r - r0) * ow_n;
                        const int off = kw * g->dl[2] - g->pb[2];
                        int a = 0, b = 0;
                        if (inside) {
                            if (kw < 64) { a = lo[kw]; b = hi[kw]; }
                            else qcc_valid(off, sw, g->sp[2], ow_n, &a, &b);
                        }
                        qcc_gather_row(dst, src + off, ow_n, a, b, sw);
                    }
                }
            }
}

/* col2im of input rows [r0, r1) (flattened (id, ih)) for one image and group of a
 * transposed convolution (g->sp is its input, g->osp its output):
 * out[o, id*s - pb + kd*dil, ...] += col[(o, kd, kh, kw), (r - r0) * W + iw]. */
QCC_CLONES
static void qcc_col2im(const float *col, float *out, const qcc_geom *g, int r0, int r1)
{
    const int w_n = g->sp[2], sw = g->st[2];
    const ptrdiff_t npos = (ptrdiff_t)(r1 - r0) * w_n;
    ptrdiff_t row = 0;
    int o, kd, kh, kw, r, t, lo, hi;
    for (o = 0; o < g->og; o++)
        for (kd = 0; kd < g->k[0]; kd++)
            for (kh = 0; kh < g->k[1]; kh++)
                for (kw = 0; kw < g->k[2]; kw++, row++) {
                    const int off = kw * g->dl[2] - g->pb[2];
                    qcc_valid(off, sw, g->osp[2], w_n, &lo, &hi);
                    for (r = r0; r < r1; r++) {
                        const int id = r / g->sp[1], ih = r - id * g->sp[1];
                        const int od = id * g->st[0] - g->pb[0] + kd * g->dl[0];
                        const int oh = ih * g->st[1] - g->pb[1] + kh * g->dl[1];
                        const float *restrict src;
                        float *restrict dst;
                        if (od < 0 || od >= g->osp[0] || oh < 0 || oh >= g->osp[1]) continue;
                        src = col + row * npos + (ptrdiff_t)(r - r0) * w_n;
                        dst = out + (((ptrdiff_t)o * g->osp[0] + od) * g->osp[1] + oh) * g->osp[2] + off;
                        if (sw == 1)
                            for (t = lo; t < hi; t++) dst[t] += src[t];
                        else
                            for (t = lo; t < hi; t++) dst[(ptrdiff_t)t * sw] += src[t];
                    }
                }
}

/* dst[t] += sum_kw w[kw] * src[t*stride + kw*dil] for t in [a, b), three taps. */
QCC_INLINE void qcc_dw_taps3(float *restrict dst, const float *restrict src, const float *w,
                             int a, int b, int stride, int dil)
{
    const float w0 = w[0], w1 = w[1], w2 = w[2];
    const float *s1 = src + dil, *s2 = src + 2 * dil;
    int t;
    if (stride == 1) {
        for (t = a; t < b; t++) dst[t] += w0 * src[t] + w1 * s1[t] + w2 * s2[t];
    } else if (stride == 2) {
        for (t = a; t < b; t++) dst[t] += w0 * src[2 * t] + w1 * s1[2 * t] + w2 * s2[2 * t];
    } else {
        for (t = a; t < b; t++) {
            const ptrdiff_t i = (ptrdiff_t)t * stride;
            dst[t] += w0 * src[i] + w1 * s1[i] + w2 * s2[i];
        }
    }
}

/* Three input rows times a 3x3 kernel, accumulated in registers over [a, b):
 * dst[t] += sum_{j,kw} w[3j+kw] * r_j[t*stride + kw*dil]. */
QCC_INLINE void qcc_dw_rows3x3(float *restrict dst, const float *restrict r0,
                               const float *restrict r1, const float *restrict r2,
                               const float *w0, const float *w1, const float *w2,
                               int a, int b, int stride, int dil)
{
    const float a0 = w0[0], a1 = w0[1], a2 = w0[2];
    const float b0 = w1[0], b1 = w1[1], b2 = w1[2];
    const float c0 = w2[0], c1 = w2[1], c2 = w2[2];
    const int d2 = 2 * dil;
    int t;
    if (stride == 1) {
        for (t = a; t < b; t++)
            dst[t] += a0 * r0[t] + a1 * r0[t + dil] + a2 * r0[t + d2]
                    + b0 * r1[t] + b1 * r1[t + dil] + b2 * r1[t + d2]
                    + c0 * r2[t] + c1 * r2[t + dil] + c2 * r2[t + d2];
    } else if (stride == 2) {
        for (t = a; t < b; t++)
            dst[t] += a0 * r0[2 * t] + a1 * r0[2 * t + dil] + a2 * r0[2 * t + d2]
                    + b0 * r1[2 * t] + b1 * r1[2 * t + dil] + b2 * r1[2 * t + d2]
                    + c0 * r2[2 * t] + c1 * r2[2 * t + dil] + c2 * r2[2 * t + d2];
    } else {
        for (t = a; t < b; t++) {
            const ptrdiff_t i = (ptrdiff_t)t * stride;
            dst[t] += a0 * r0[i] + a1 * r0[i + dil] + a2 * r0[i + d2]
                    + b0 * r1[i] + b1 * r1[i + dil] + b2 * r1[i + d2]
                    + c0 * r2[i] + c1 * r2[i + dil] + c2 * r2[i + d2];
        }
    }
}

/* Interior [a, b) of a depthwise output row: all kw taps are inside the input row. */
QCC_INLINE void qcc_dw_interior(const qcc_geom *g, int *a, int *b)
{
    int a2, b2;
    qcc_valid(-g->pb[2], g->st[2], g->sp[2], g->osp[2], a, b);
    qcc_valid((g->k[2] - 1) * g->dl[2] - g->pb[2], g->st[2], g->sp[2], g->osp[2], &a2, &b2);
    if (a2 > *a) *a = a2;
    if (b2 < *b) *b = b2;
    if (*b < *a) *b = *a;
}

/* One depthwise output row from `n` valid input rows (pointers at column -pad):
 * dst[t] += sum_j sum_kw ws[j][kw] * rows[j][t*stride + kw*dil]. */
QCC_INLINE void qcc_dw_row(float *restrict dst, const float **rows, const float **ws, int n,
                           const qcc_geom *g, int a, int b)
{
    const int ow_n = g->osp[2], sw = g->st[2], dw = g->dl[2], pw = g->pb[2], kw_n = g->k[2];
    int j = 0, kw, t, lo, hi;
    if (kw_n == 3) {
        for (; j + 3 <= n; j += 3)
            qcc_dw_rows3x3(dst, rows[j], rows[j + 1], rows[j + 2], ws[j], ws[j + 1], ws[j + 2],
                           a, b, sw, dw);
        for (; j < n; j++) qcc_dw_taps3(dst, rows[j], ws[j], a, b, sw, dw);
    } else {
        for (; j < n; j++)
            for (kw = 0; kw < kw_n; kw++) {
                const float wv = ws[j][kw];
                const float *s = rows[j] + kw * dw;
                if (sw == 1)
                    for (t = a; t < b; t++) dst[t] += wv * s[t];
                else
                    for (t = a; t < b; t++) dst[t] += wv * s[(ptrdiff_t)t * sw];
            }
    }
    if (a == 0 && b == ow_n) return;
    for (j = 0; j < n; j++)   /* the edges, tap by tap */
        for (kw = 0; kw < kw_n; kw++) {
            const int off = kw * dw;
            const float wv = ws[j][kw];
            qcc_valid(off - pw, sw, g->sp[2], ow_n, &lo, &hi);
            for (t = lo; t < hi && t < a; t++) dst[t] += wv * rows[j][(ptrdiff_t)t * sw + off];
            for (t = lo > b ? lo : b; t < hi; t++) dst[t] += wv * rows[j][(ptrdiff_t)t * sw + off];
        }
}

/* Depthwise convolution of one channel plane: out[od, oh, ow] += sum_k w[k] x[...]. */
QCC_CLONES
static void qcc_depthwise_plane(const float *x, const float *w, float *out, const qcc_geom *g)
{
    enum { MAXR = 48 };
    const float *rows[MAXR];
    const float *ws[MAXR];
    int od, oh, kd, kh, n, a, b;
    qcc_dw_interior(g, &a, &b);
    for (od = 0; od < g->osp[0]; od++)
        for (oh = 0; oh < g->osp[1]; oh++) {
            float *dst = out + ((ptrdiff_t)od * g->osp[1] + oh) * g->osp[2];
            n = 0;
            for (kd = 0; kd < g->k[0]; kd++) {
                const int id = od * g->st[0] - g->pb[0] + kd * g->dl[0];
                if (id < 0 || id >= g->sp[0]) continue;
                for (kh = 0; kh < g->k[1]; kh++) {
                    const int ih = oh * g->st[1] - g->pb[1] + kh * g->dl[1];
                    if (ih < 0 || ih >= g->sp[1]) continue;
                    rows[n] = x + ((ptrdiff_t)id * g->sp[1] + ih) * g->sp[2] - g->pb[2];
                    ws[n] = w + ((ptrdiff_t)kd * g->k[1] + kh) * g->k[2];
                    if (++n == MAXR) {
                        qcc_dw_row(dst, rows, ws, n, g, a, b);
                        n = 0;
                    }
                }
            }
            if (n) qcc_dw_row(dst, rows, ws, n, g, a, b);
        }
}

#endif
