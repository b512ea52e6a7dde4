/* Inner loops of the convolution kernels (runtime/_conv.pyx).
 *
 * Plain C so that GCC vectorizes them; on x86-64 each function is compiled for
 * AVX-512, AVX2+FMA and baseline SSE2 and the best one is picked at load time
 * (target_clones). Every spatial problem is 3-D: 1-D and 2-D convolutions have
 * leading spatial dims of size 1.
 */
#ifndef QCC_CONV_IMPL_H
#define QCC_CONV_IMPL_H


#include "_common.h"
#include "_gemm_impl.h"   /* the GEMM, its variants (also the depthwise rows') */


/* One padded row of `row` floats: dst[left + t] = src[t] for t < w_n, zeros around;
 * with `split`, the even padded columns first, then the odd ones (qcc_split_col). */
QCC_INLINE void qcc_pad_row(const float *restrict src, float *restrict dst, ptrdiff_t row, int w_n,
                            int left, int split)
{
    ptrdiff_t t;
    if (split) {
        /* padded column c = 2t (+1) holds src[c - left] for left <= c < left + w_n */
        const ptrdiff_t half = (row + 1) / 2, e0 = (left + 1) / 2, e1 = (left + w_n + 1) / 2;
        const ptrdiff_t o0 = left / 2, o1 = (left + w_n) / 2;
        for (t = 0; t < e0; t++) dst[t] = 0.0f;
        for (t = e0; t < e1; t++) dst[t] = src[2 * t - left];
        for (t = e1; t < half + o0; t++) dst[t] = 0.0f;
        for (t = o0; t < o1; t++) dst[half + t] = src[2 * t + 1 - left];
        for (t = half + o1; t < row; t++) dst[t] = 0.0f;
        return;
    }
    for (t = 0; t < left; t++) dst[t] = 0.0f;
    memcpy(dst + left, src, (size_t)w_n * sizeof(float));
    for (t = left + w_n; t < row; t++) dst[t] = 0.0f;
}

/* Padded copy of one input plane: p[d, h, w] =
 * x[d - pb0, h - pb1, w - pb2] inside the input, 0 elsewhere, with shape dims[3].
 * With `split`, each row holds its even columns, then its odd ones (qcc_dw_tap). */
QCC_INLINE void qcc_pad_plane(const float *restrict x, float *restrict p, const qcc_geom *g,
                              const int *dims, int split)
{
    const ptrdiff_t row = dims[2], plane = (ptrdiff_t)dims[1] * dims[2];
    const int w_n = g->sp[2], left = g->pb[2];
    int d, h;
    for (d = 0; d < dims[0]; d++) {
        const int id = d - g->pb[0];
        float *pd = p + d * plane;
        if (id < 0 || id >= g->sp[0]) {
            memset(pd, 0, plane * sizeof(float));
            continue;
        }
        for (h = 0; h < dims[1]; h++) {
            const int ih = h - g->pb[1];
            float *dst = pd + h * row;
            if (ih < 0 || ih >= g->sp[1])
                memset(dst, 0, row * sizeof(float));
            else
                qcc_pad_row(x + ((ptrdiff_t)id * g->sp[1] + ih) * w_n, dst, row, w_n, left, split);
        }
    }
}

/* Row length of the padded depthwise planes: OW rounded up to a multiple of 8. */
#define QCC_DW_VEC 8
QCC_INLINE int qcc_dw_owr(const qcc_geom *g)
{
    return (g->osp[2] + QCC_DW_VEC - 1) / QCC_DW_VEC * QCC_DW_VEC;
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
    int o, kd, kh, kw, r, lo, hi;
    ptrdiff_t t;
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

/* ---- depthwise rows ------------------------------------------------------------
 * Output rows r < nrows of a depthwise convolution, with the GEMM's rounding
 * (_gemm_impl.h): dst[r*ldd + t] holds the bias (or the exact float32 partial sum of
 * the taps before), then acc = fma(w[j], base[r*ldb + ofs[j] + t*s], acc) for j = 0,
 * 1, ..., n-1, rounded at every step, stored back. One function per GEMM variant
 * (the variant in use is the GEMM's, so QCC_ISA forces both); all give the same
 * bits. The vector ones keep 8 accumulators in flight (several short rows at once:
 * one chain of FMAs would wait on its latency); a group of rows past the last one
 * recomputes the last row (the same values, stored again). */
typedef void (*qcc_dw_rows_fn)(float *dst, ptrdiff_t ldd, const float *base, ptrdiff_t ldb,
                               int nrows, const ptrdiff_t *ofs, const float *w, int n, int len,
                               ptrdiff_t s);

/* The strided case (stride 3 or more along W: stride 2 reads split rows), all variants. */
#define QCC_DW_ROWS_SCALAR                                                           \
    do {                                                                             \
        int r_, t_, j_;                                                              \
        for (r_ = 0; r_ < nrows; r_++)                                               \
            for (t_ = 0; t_ < len; t_++) {                                           \
                const float *b_ = base + r_ * ldb + t_ * s;                          \
                float acc_ = dst[r_ * ldd + t_];                                     \
                for (j_ = 0; j_ < n; j_++) acc_ = fmaf(w[j_], b_[ofs[j_]], acc_);     \
                dst[r_ * ldd + t_] = acc_;                                           \
            }                                                                        \
    } while (0)

static void qcc_dw_rows_plain(float *dst, ptrdiff_t ldd, const float *base, ptrdiff_t ldb,
                              int nrows, const ptrdiff_t *ofs, const float *w, int n, int len,
                              ptrdiff_t s)
{
    QCC_DW_ROWS_SCALAR;
}

/* Pointers to rows r0 .. r0+R-1 of dst and base (past nrows: the last row again). */
QCC_INLINE void qcc_dw_group(float *dst, ptrdiff_t ldd, const float *base, ptrdiff_t ldb,
                             int nrows, int r0, int R, float **d, const float **b)
{
    int r;
    for (r = 0; r < R; r++) {
        const int rr = r0 + r < nrows ? r0 + r : nrows - 1;
        d[r] = dst + rr * ldd;
        b[r] = base + rr * ldb;
    }
}

#if QCC_GEMM_X86

#pragma GCC push_options
#pragma GCC target("avx2,fma")

/* R rows x NV vectors of 8 at column t (the last vector masked by `last`, its first
 * `tail` lanes). */
QCC_INLINE void qcc_dw_chunk_avx2(float *const *d, const float *const *b, const ptrdiff_t *ofs,
                                  const float *w, int n, int t, const int R, const int NV,
                                  __m256i last, int tail)
{
    __m256 acc[8][4];
    int r, v, j;
    for (r = 0; r < R; r++) {
        for (v = 0; v < NV - 1; v++) acc[r][v] = _mm256_loadu_ps(d[r] + t + 8 * v);
        acc[r][NV - 1] = _mm256_maskload_ps(d[r] + t + 8 * (NV - 1), last);
    }
    for (j = 0; j < n; j++) {
        const __m256 wv = _mm256_broadcast_ss(w + j);
        const ptrdiff_t o = ofs[j] + t;
        for (r = 0; r < R; r++) {
            for (v = 0; v < NV - 1; v++)
                acc[r][v] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(b[r] + o + 8 * v), acc[r][v]);
            acc[r][NV - 1] = _mm256_fmadd_ps(wv, _mm256_maskload_ps(b[r] + o + 8 * (NV - 1), last),
                                             acc[r][NV - 1]);
        }
    }
    for (r = 0; r < R; r++) {
        for (v = 0; v < NV - 1; v++) _mm256_storeu_ps(d[r] + t + 8 * v, acc[r][v]);
        qcc_store_first_avx2(d[r] + t + 8 * (NV - 1), acc[r][NV - 1], tail);
    }
}

static void qcc_dw_rows_avx2(float *dst, ptrdiff_t ldd, const float *base, ptrdiff_t ldb,
                             int nrows, const ptrdiff_t *ofs, const float *w, int n, int len,
                             ptrdiff_t s)
{
    float *d[8];
    const float *b[8];
    int r0, t;
    if (s != 1) {
        QCC_DW_ROWS_SCALAR;
        return;
    }
    if (len <= 16) {   /* whole rows: 8 rows of one vector, or 4 of two */
        const int nv = (len + 7) / 8, tail = len - 8 * (nv - 1);
        const __m256i last = _mm256_loadu_si256((const __m256i *)(qcc_avx2_masks + 8 - tail));
        for (r0 = 0; r0 < nrows; r0 += 8 / nv) {
            qcc_dw_group(dst, ldd, base, ldb, nrows, r0, 8 / nv, d, b);
            if (nv == 1)
                qcc_dw_chunk_avx2(d, b, ofs, w, n, 0, 8, 1, last, tail);
            else
                qcc_dw_chunk_avx2(d, b, ofs, w, n, 0, 4, 2, last, tail);
        }
        return;
    }
    for (r0 = 0; r0 < nrows; r0 += 2) {   /* two rows, 4 vectors at a time */
        qcc_dw_group(dst, ldd, base, ldb, nrows, r0, 2, d, b);
        for (t = 0; t < len; t += 32) {
            const int rest = len - t, nv = rest >= 32 ? 4 : (rest + 7) / 8;
            const int tail = rest - 8 * (nv - 1) >= 8 ? 8 : rest - 8 * (nv - 1);
            const __m256i last = _mm256_loadu_si256((const __m256i *)(qcc_avx2_masks + 8 - tail));
            switch (nv) {
            case 4: qcc_dw_chunk_avx2(d, b, ofs, w, n, t, 2, 4, last, tail); break;
            case 3: qcc_dw_chunk_avx2(d, b, ofs, w, n, t, 2, 3, last, tail); break;
            case 2: qcc_dw_chunk_avx2(d, b, ofs, w, n, t, 2, 2, last, tail); break;
            default: qcc_dw_chunk_avx2(d, b, ofs, w, n, t, 2, 1, last, tail); break;
            }
        }
    }
}

#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")

/* R rows x NV vectors of 16 at column t (the last vector masked by `last`). */
QCC_INLINE void qcc_dw_chunk_avx512(float *const *d, const float *const *b, const ptrdiff_t *ofs,
                                    const float *w, int n, int t, const int R, const int NV,
                                    __mmask16 last)
{
    __m512 acc[8][4];
    int r, v, j;
    for (r = 0; r < R; r++) {
        for (v = 0; v < NV - 1; v++) acc[r][v] = _mm512_loadu_ps(d[r] + t + 16 * v);
        acc[r][NV - 1] = _mm512_maskz_loadu_ps(last, d[r] + t + 16 * (NV - 1));
    }
    for (j = 0; j < n; j++) {
        const __m512 wv = _mm512_set1_ps(w[j]);
        const ptrdiff_t o = ofs[j] + t;
        for (r = 0; r < R; r++) {
            for (v = 0; v < NV - 1; v++)
                acc[r][v] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(b[r] + o + 16 * v), acc[r][v]);
            acc[r][NV - 1] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(last, b[r] + o + 16 * (NV - 1)),
                                             acc[r][NV - 1]);
        }
    }
    for (r = 0; r < R; r++) {
        for (v = 0; v < NV - 1; v++) _mm512_storeu_ps(d[r] + t + 16 * v, acc[r][v]);
        _mm512_mask_storeu_ps(d[r] + t + 16 * (NV - 1), last, acc[r][NV - 1]);
    }
}

static void qcc_dw_rows_avx512(float *dst, ptrdiff_t ldd, const float *base, ptrdiff_t ldb,
                               int nrows, const ptrdiff_t *ofs, const float *w, int n, int len,
                               ptrdiff_t s)
{
    float *d[8];
    const float *b[8];
    int r0, t;
    if (s != 1) {
        QCC_DW_ROWS_SCALAR;
        return;
    }
    if (len <= 32) {   /* whole rows: 8 rows of one vector, or 4 of two */
        const int nv = (len + 15) / 16, tail = len - 16 * (nv - 1);
        const __mmask16 last = (__mmask16)((1u << tail) - 1);
        for (r0 = 0; r0 < nrows; r0 += 8 / nv) {
            qcc_dw_group(dst, ldd, base, ldb, nrows, r0, 8 / nv, d, b);
            if (nv == 1)
                qcc_dw_chunk_avx512(d, b, ofs, w, n, 0, 8, 1, last);
            else
                qcc_dw_chunk_avx512(d, b, ofs, w, n, 0, 4, 2, last);
        }
        return;
    }
    for (r0 = 0; r0 < nrows; r0 += 2) {   /* two rows, 4 vectors at a time */
        qcc_dw_group(dst, ldd, base, ldb, nrows, r0, 2, d, b);
        for (t = 0; t < len; t += 64) {
            const int rest = len - t, nv = rest >= 64 ? 4 : (rest + 15) / 16;
            const int tail = rest - 16 * (nv - 1) >= 16 ? 16 : rest - 16 * (nv - 1);
            const __mmask16 last = (__mmask16)((1u << tail) - 1);
            switch (nv) {
            case 4: qcc_dw_chunk_avx512(d, b, ofs, w, n, t, 2, 4, last); break;
            case 3: qcc_dw_chunk_avx512(d, b, ofs, w, n, t, 2, 3, last); break;
            case 2: qcc_dw_chunk_avx512(d, b, ofs, w, n, t, 2, 2, last); break;
            default: qcc_dw_chunk_avx512(d, b, ofs, w, n, t, 2, 1, last); break;
            }
        }
    }
}

#pragma GCC pop_options

#endif /* QCC_GEMM_X86 */

/* The rows function of the GEMM variant in use. */
static qcc_dw_rows_fn qcc_dw_rows(void)
{
#if QCC_GEMM_X86
    switch (qcc_gemm_variant()) {
    case 2: return qcc_dw_rows_avx512;
    case 1: return qcc_dw_rows_avx2;
    default: break;
    }
#endif
    return qcc_dw_rows_plain;
}

/* Floats of scratch qcc_depthwise_plane needs: the padded plane. */
static ptrdiff_t qcc_depthwise_scratch(const qcc_geom *g)
{
    int dims[3];
    qcc_padded_dims(g, qcc_dw_owr(g), dims);
    return (ptrdiff_t)dims[0] * dims[1] * dims[2];
}

/* ofs[k]: where tap k (in the order of the weights) of output (0, 0, 0) reads in the
 * padded plane of qcc_depthwise_plane; output (od, oh, 0) adds the start of its row. */
static void qcc_depthwise_offsets(const qcc_geom *g, ptrdiff_t *ofs)
{
    int dims[3], kd, kh, kw;
    const int split = g->st[2] == 2;
    ptrdiff_t half;
    qcc_padded_dims(g, qcc_dw_owr(g), dims);
    half = (dims[2] + 1) / 2;
    for (kd = 0; kd < g->k[0]; kd++)
        for (kh = 0; kh < g->k[1]; kh++)
            for (kw = 0; kw < g->k[2]; kw++) {
                const int off = kw * g->dl[2];
                *ofs++ = ((ptrdiff_t)kd * g->dl[0] * dims[1] + kh * g->dl[1]) * dims[2]
                         + (split ? qcc_split_col(off, half) : off);
            }
}

/* Depthwise convolution of one channel plane: out[od, oh, ow] holds the bias, then
 * out = fma(w[k], x[...], out) for the taps k in ascending order (the GEMM's
 * rounding, _gemm_impl.h). The plane is first copied with its padding into scratch,
 * so no tap needs a check; whole output rows then take their taps (at ofs, from
 * qcc_depthwise_offsets) `BLOCK` at a time in registers (the sums are stored
 * exactly between blocks, which keep the order). */
static void qcc_depthwise_plane(const float *x, const float *w, float *out, const qcc_geom *g,
                                float *scratch, const ptrdiff_t *ofs, qcc_dw_rows_fn rows)
{
    enum { BLOCK = 64 };
    int dims[3];
    const int ow_n = g->osp[2], split = g->st[2] == 2;
    const ptrdiff_t s = split ? 1 : g->st[2];
    const int ktot = g->k[0] * g->k[1] * g->k[2];
    int od, j0;
    qcc_padded_dims(g, qcc_dw_owr(g), dims);
    qcc_pad_plane(x, scratch, g, dims, split);
    for (j0 = 0; j0 < ktot; j0 += BLOCK) {
        const int n = ktot - j0 < BLOCK ? ktot - j0 : BLOCK;
        for (od = 0; od < g->osp[0]; od++)
            rows(out + (ptrdiff_t)od * g->osp[1] * ow_n, ow_n,
                 scratch + (ptrdiff_t)od * g->st[0] * dims[1] * dims[2],
                 (ptrdiff_t)g->st[1] * dims[2], g->osp[1], ofs + j0, w + j0, n, ow_n, s);
    }
}

/* ---- convolution as an implicit-im2col GEMM (_gemm_impl.h) ---- */

/* The input of one group as the GEMM reads it: x itself when it needs no padding
 * and no splitting, else a padded copy in scratch (qcc_conv_gemm_pad_size floats)
 * of shape dims, its rows split into even and odd columns when `split` (so that
 * stride-2 taps read contiguously; rows no output reads are left unwritten). */
QCC_CLONES
static const float *qcc_conv_gemm_input(const float *x, float *scratch, const qcc_geom *g,
                                        int split, int *dims)
{
    const ptrdiff_t in_plane = (ptrdiff_t)g->sp[0] * g->sp[1] * g->sp[2];
    ptrdiff_t plane, row;
    int c, d, h;
    if (qcc_padded_dims(g, g->osp[2], dims) && !split) return x;
    plane = (ptrdiff_t)dims[0] * dims[1] * dims[2];
    row = dims[2];
    for (c = 0; c < g->cg; c++)
        for (d = 0; d < dims[0]; d++) {
            const int id = d - g->pb[0];
            if (!qcc_row_used(d, g->st[0], g->k[0], g->dl[0], g->osp[0])) continue;
            for (h = 0; h < dims[1]; h++) {
                const int ih = h - g->pb[1];
                float *dst = scratch + c * plane + ((ptrdiff_t)d * dims[1] + h) * row;
                if (!qcc_row_used(h, g->st[1], g->k[1], g->dl[1], g->osp[1])) continue;
                if (id < 0 || id >= g->sp[0] || ih < 0 || ih >= g->sp[1])
                    memset(dst, 0, row * sizeof(float));
                else
                    qcc_pad_row(x + c * in_plane + ((ptrdiff_t)id * g->sp[1] + ih) * g->sp[2], dst,
                                row, g->sp[2], g->pb[2], split);
            }
        }
    return scratch;
}

/* Floats of scratch qcc_conv_gemm_input needs. */
static ptrdiff_t qcc_conv_gemm_pad_size(const qcc_geom *g)
{
    int dims[3];
    if (qcc_padded_dims(g, g->osp[2], dims) && g->st[2] != 2) return 0;
    return (ptrdiff_t)g->cg * dims[0] * dims[1] * dims[2];
}

/* out[og, P] = bias[og] + w[og, Kc] @ im2col(x)[Kc, P] for one image and group, with
 * the im2col gathered while packing (no column buffer). wp: w packed in panels of
 * wp_mr rows and depth chunks of wp_kc (qcc_gemm_pack_a), or NULL. pad: qcc_conv_gemm_pad_size floats; kofs: Kc
 * offsets. Returns 0, or -1 when out of memory. */
static int qcc_conv_gemm(const float *x, const float *w, const float *wp, int wp_mr, int wp_kc,
                         const float *bias, float *out, const qcc_geom *g, float *pad,
                         ptrdiff_t *kofs, const qcc_act *act)
{
    int dims[3];
    qcc_gemm q;
    const int split = g->st[2] == 2;
    const float *p = qcc_conv_gemm_input(x, pad, g, split, dims);
    qcc_conv_kofs(g, dims, split, kofs);
    q.m = g->og;
    q.n = g->osp[0] * g->osp[1] * g->osp[2];
    q.k = g->cg * g->k[0] * g->k[1] * g->k[2];
    q.a = w;
    q.lda = q.k;
    q.ap = wp;
    q.ap_mr = wp_mr;
    q.ap_kc = wp_kc;
    q.bias = bias;
    q.c = out;
    q.ldc = q.n;
    q.src = p;
    q.kofs = kofs;
    q.pos = qcc_conv_positions(g, dims, split);
    q.act = act;
    q.taps = g->k[0] * g->k[1] * g->k[2];
    return qcc_gemm_run(&q);
}

/* ---- images side by side on the thread pool -------------------------------------
 * A batch of images whose GEMMs are each big enough: each thread takes whole images
 * (and groups) and runs their GEMMs alone, instead of all threads sharing every
 * image's GEMM; no wait between images, and the padded copies run in parallel. Each
 * output element is computed as in qcc_conv_gemm on one thread: the same bits. */
typedef struct {
    const float *x, *w, *wp, *bias;
    float *out;
    int wp_mr, wp_kc;
    ptrdiff_t wp_group;
    const qcc_geom *g;
    const qcc_act *act;
    int n_img, groups, c, o;
    int next, failed;
} qcc_conv_images_job;

static void qcc_conv_images_worker(void *arg)
{
    qcc_conv_images_job *job = (qcc_conv_images_job *)arg;
    const qcc_geom *g = job->g;
    const int kc = g->cg * g->k[0] * g->k[1] * g->k[2];
    const ptrdiff_t pin = (ptrdiff_t)g->sp[0] * g->sp[1] * g->sp[2];
    const ptrdiff_t pout = (ptrdiff_t)g->osp[0] * g->osp[1] * g->osp[2];
    const ptrdiff_t pad = (qcc_conv_gemm_pad_size(g) + 15) / 16 * 16;
    float *scratch = (float *)qcc_thread_buffer_slot(
        2, (size_t)pad * sizeof(float) + (size_t)(kc > 0 ? kc : 1) * sizeof(ptrdiff_t));
    ptrdiff_t *kofs;
    if (scratch == NULL) {
        job->failed = 1;
        return;
    }
    kofs = (ptrdiff_t *)(scratch + pad);
    for (;;) {
        const int t = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        int ni, gi;
        if (t >= job->n_img * job->groups) break;
        ni = t / job->groups;
        gi = t % job->groups;
        if (qcc_conv_gemm(job->x + ((ptrdiff_t)ni * job->c + (ptrdiff_t)gi * g->cg) * pin,
                          job->w + (ptrdiff_t)gi * g->og * kc,
                          job->wp ? job->wp + gi * job->wp_group : NULL, job->wp_mr, job->wp_kc,
                          job->bias ? job->bias + (ptrdiff_t)gi * g->og : NULL,
                          job->out + ((ptrdiff_t)ni * job->o + (ptrdiff_t)gi * g->og) * pout,
                          g, scratch, kofs, job->act))
            job->failed = 1;
    }
}

/* Whether the images (and groups) of a convolution go to the threads whole: enough
 * of them to share evenly, and work enough for threads (qcc_gemm_par_min). */
static int qcc_conv_images_parallel(const qcc_geom *g, int n_img, int groups, int threads)
{
    const int tasks = n_img * groups;
    const double madds = (double)g->og * g->cg * g->k[0] * g->k[1] * g->k[2]
                         * g->osp[0] * g->osp[1] * g->osp[2];
    if (threads < 2 || madds * tasks < qcc_gemm_par_min) return 0;
    return tasks >= 8 * threads || (tasks >= 2 * threads && tasks % threads == 0);
}

/* The GEMMs of n_img images and `groups` groups, whole ones a task on `threads`
 * threads; returns 0, or -1 when out of memory. */
static int qcc_conv_images(const float *x, const float *w, const float *wp, int wp_mr, int wp_kc,
                           ptrdiff_t wp_group, const float *bias, float *out, const qcc_geom *g,
                           int n_img, int groups, const qcc_act *act, int threads)
{
    qcc_conv_images_job job;
    job.x = x;
    job.w = w;
    job.wp = wp;
    job.bias = bias;
    job.out = out;
    job.wp_mr = wp_mr;
    job.wp_kc = wp_kc;
    job.wp_group = wp_group;
    job.g = g;
    job.act = act;
    job.n_img = n_img;
    job.groups = groups;
    job.c = groups * g->cg;
    job.o = groups * g->og;
    job.next = 0;
    job.failed = 0;
    qcc_parallel(qcc_conv_images_worker, &job, threads < n_img * groups ? threads : n_img * groups);
    return job.failed ? -1 : 0;
}

/* Output positions below which the images of a batch share one GEMM. */
#define QCC_CONV_BATCH_MAX_P 256

/* Whether qcc_conv_gemm_images runs this convolution (a batch of small 1-D or 2-D
 * outputs: one GEMM per image would leave most of its tiles' columns empty). */
static int qcc_conv_gemm_batches(const qcc_geom *g, int n_img)
{
    return n_img > 1 && g->osp[0] == 1
           && (ptrdiff_t)g->osp[1] * g->osp[2] <= QCC_CONV_BATCH_MAX_P;
}

/* Floats of scratch qcc_conv_gemm_images needs: padded inputs and the GEMM's output. */
static ptrdiff_t qcc_conv_gemm_images_size(const qcc_geom *g, int n_img)
{
    return (qcc_conv_gemm_pad_size(g) + (ptrdiff_t)g->og * g->osp[1] * g->osp[2]) * n_img;
}

/* The serial steps around the batched GEMM, one image a task on the pool: the
 * padded copies of the inputs (out == NULL), or the copy of the GEMM's columns out
 * into the images and their epilogue. Elements are only copied, and the epilogue
 * applies element by element: the bits do not depend on the thread. */
typedef struct {
    const float *x;              /* inputs: image i at x + i*x_img */
    ptrdiff_t x_img;
    float *scratch;              /* padded inputs: image i at scratch + i*pad_img */
    ptrdiff_t pad_img;
    const qcc_geom *g;
    int split;
    float *out;                  /* outputs: image i at out + i*out_img, or NULL */
    ptrdiff_t out_img, npos, ldc;
    const float *tmp;            /* the GEMM's result: image i from column i*npos */
    const qcc_act *act;          /* NULL when the GEMM failed */
    int n_img, next;
} qcc_images_job;

QCC_CLONES
static void qcc_images_worker(void *arg)
{
    qcc_images_job *job = (qcc_images_job *)arg;
    const qcc_geom *g = job->g;
    int dims[3], o;
    for (;;) {
        const int i = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        if (i >= job->n_img) break;
        if (job->out == NULL) {
            qcc_conv_gemm_input(job->x + i * job->x_img, job->scratch + i * job->pad_img, g,
                                job->split, dims);
            continue;
        }
        for (o = 0; o < g->og; o++)
            memcpy(job->out + i * job->out_img + o * job->npos,
                   job->tmp + o * job->ldc + i * job->npos, job->npos * sizeof(float));
        qcc_activate(job->act, job->out + i * job->out_img, job->npos, g->og, job->npos);
    }
}

/* Floats copied below which the steps around the batched GEMM stay on one thread. */
#define QCC_CONV_IMAGES_PAR_MIN (1 << 15)

/* qcc_conv_gemm of one group for n_img images at once (qcc_conv_gemm_batches): image i
 * is at x + i*x_img, its output at out + i*out_img; one GEMM computes the columns of
 * all images (image i's P positions from column i*P on) into scratch, then they are
 * copied out, then the epilogue runs on them. Same sums as one GEMM per image. The
 * padded copies of the inputs and the copy out with the epilogue are shared by the
 * GEMM's threads (qcc_images_worker). scratch: qcc_conv_gemm_images_size floats;
 * kofs: Kc offsets. Returns 0, or -1 when out of memory. */
static int qcc_conv_gemm_images(const float *x, ptrdiff_t x_img, const float *w,
                                const float *wp, int wp_mr, int wp_kc, const float *bias,
                                float *out,
                                ptrdiff_t out_img,
                                const qcc_geom *g, int n_img, float *scratch, ptrdiff_t *kofs,
                                const qcc_act *act)
{
    int dims[3], err, same;
    qcc_gemm q;
    qcc_images_job job;
    const int split = g->st[2] == 2;
    const ptrdiff_t npos = (ptrdiff_t)g->osp[1] * g->osp[2], pad_img = qcc_conv_gemm_pad_size(g);
    float *tmp = scratch + pad_img * n_img;
    same = qcc_padded_dims(g, g->osp[2], dims) && !split;   /* x read in place */
    job.x = x;
    job.x_img = x_img;
    job.scratch = scratch;
    job.pad_img = pad_img;
    job.g = g;
    job.split = split;
    job.out = NULL;
    job.n_img = n_img;
    job.next = 0;
    if (!same)
        qcc_parallel(qcc_images_worker, &job,
                     (double)pad_img * n_img < QCC_CONV_IMAGES_PAR_MIN ? 1 : qcc_gemm_threads);
    qcc_conv_kofs(g, dims, split, kofs);
    q.m = g->og;
    q.n = (int)(npos * n_img);
    q.k = g->cg * g->k[0] * g->k[1] * g->k[2];
    q.a = w;
    q.lda = q.k;
    q.ap = wp;
    q.ap_mr = wp_mr;
    q.ap_kc = wp_kc;
    q.bias = bias;
    q.c = tmp;
    q.ldc = q.n;
    q.src = same ? x : scratch;
    q.kofs = kofs;
    q.pos = qcc_conv_positions(g, dims, split);
    q.pos.s_q = same ? x_img : pad_img;   /* q: the image (osp[0] == 1) */
    /* The epilogue runs on the copied-out images: its residual and per-channel
     * operands are addressed by the place of an element in the output array
     * (act->base), which the scratch columns are not. */
    q.act = NULL;
    q.taps = g->k[0] * g->k[1] * g->k[2];
    err = qcc_gemm_run(&q);
    job.out = out;
    job.out_img = out_img;
    job.npos = npos;
    job.ldc = q.ldc;
    job.tmp = tmp;
    job.act = err == 0 ? act : NULL;
    job.next = 0;
    qcc_parallel(qcc_images_worker, &job,
                 (double)g->og * q.n < QCC_CONV_IMAGES_PAR_MIN ? 1 : qcc_gemm_threads);
    return err;
}

/* ---- depthwise planes on the thread pool ---- */

typedef struct {
    const float *x, *w, *bias;   /* x [N, groups, S], w [groups*og, K], bias or NULL */
    float *out;                  /* [N, groups*og, OS] */
    const qcc_geom *g;
    const qcc_act *act;
    int groups, planes;          /* planes = N * groups * og */
    int next, failed;
} qcc_dw_job;

/* Cloned per instruction set so that the inlined epilogue is vectorized (its float32
 * operations give the same bits on each: no contraction happens in them). */
QCC_CLONES
static void qcc_dw_worker(void *arg)
{
    qcc_dw_job *job = (qcc_dw_job *)arg;
    const qcc_geom *g = job->g;
    const ptrdiff_t pin = (ptrdiff_t)g->sp[0] * g->sp[1] * g->sp[2];
    const ptrdiff_t pout = (ptrdiff_t)g->osp[0] * g->osp[1] * g->osp[2];
    const int kk = g->k[0] * g->k[1] * g->k[2], oc_n = job->groups * g->og;
    const ptrdiff_t plane = (qcc_depthwise_scratch(g) + 15) / 16 * 16;
    float *scratch = (float *)qcc_thread_buffer(plane * sizeof(float) + kk * sizeof(ptrdiff_t));
    const qcc_dw_rows_fn rows = qcc_dw_rows();
    ptrdiff_t *ofs, i;
    if (scratch == NULL) {
        job->failed = 1;
        return;
    }
    ofs = (ptrdiff_t *)(scratch + plane);
    qcc_depthwise_offsets(g, ofs);
    for (;;) {
        const int t = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        const int oc = t % oc_n, ni = t / oc_n, gi = oc / g->og;
        float *o = job->out + (ptrdiff_t)t * pout;
        const float b = job->bias ? job->bias[oc] : 0.0f;
        if (t >= job->planes) break;
        for (i = 0; i < pout; i++) o[i] = b;
        qcc_depthwise_plane(job->x + ((ptrdiff_t)ni * job->groups + gi) * pin,
                                 job->w + (ptrdiff_t)oc * kk, o, g, scratch, ofs, rows);
        qcc_activate(job->act, o, 0, 1, pout);
    }
}

/* ---- depthwise, channels side by side -------------------------------------------
 * On small planes a row of the output fills few vector lanes (7 of 16 on a 7x7
 * plane). There, QCC_DWCB_LANES output channels run side by side instead: their
 * padded input planes are interleaved (p[d][h][w][lane]), the weights too
 * (w[tap][lane]), and every output position takes its taps in order into one vector
 * of the channels: acc = bias, then acc = fma(w[j], x[j], acc) for j = 0, 1, ...,
 * rounded at every step: the rounding of the rows path above and of the GEMM, so both
 * paths give the same bits (tests force each with qcc_dwcb_max_ow). Every variant
 * uses the same layout; the scalar one runs the lanes one after another. */

#define QCC_DWCB_LANES 16
static int qcc_dwcb_max_ow = 57;   /* output rows shorter than this take this path when
                                    * its tasks (16 channels of an image) keep the threads
                                    * busy. On a 2-core AVX-512 Xeon, at 2 threads, both
                                    * variants: 1.3-5x faster than rows up to 56-wide
                                    * rows (MobileNetV3's 7, 14, 28 and 56), 112-wide
                                    * ones were as fast or slower */

typedef void (*qcc_dwcb_fn)(const float *p, const float *w, const float *b, float *t,
                            const qcc_geom *g, const int *dims, const ptrdiff_t *ofs, int kk);

/* Output rows of positions t[((od*OH + oh)*OW + ow)*LANES + lane]. */
#define QCC_DWCB_POS(od, oh, ow)                                                      \
    ((((ptrdiff_t)(od) * g->st[0] * dims[1] + (ptrdiff_t)(oh) * g->st[1]) * dims[2]     \
      + (ptrdiff_t)(ow) * g->st[2]) * QCC_DWCB_LANES)

static void qcc_dwcb_plain(const float *p, const float *w, const float *b, float *t,
                           const qcc_geom *g, const int *dims, const ptrdiff_t *ofs, int kk)
{
    int od, oh, ow, j, l;
    for (od = 0; od < g->osp[0]; od++)
        for (oh = 0; oh < g->osp[1]; oh++)
            for (ow = 0; ow < g->osp[2]; ow++) {
                const float *x = p + QCC_DWCB_POS(od, oh, ow);
                for (l = 0; l < QCC_DWCB_LANES; l++) {
                    float acc = b[l];
                    for (j = 0; j < kk; j++)
                        acc = fmaf(w[j * QCC_DWCB_LANES + l], x[ofs[j] + l], acc);
                    t[l] = acc;
                }
                t += QCC_DWCB_LANES;
            }
}

/* Interleaving into and out of the lanes, one function per variant (all move the
 * same floats): qcc_dwcb_row_fn puts one padded row's `w` input columns of nl <= LANES
 * channel rows side by side, dst[iw*LANES + l] = xs[l][iw], zero lanes past nl;
 * qcc_dwcb_out_fn puts the interleaved output back into nl channel planes,
 * o[l*pout + i] = t[i*LANES + l]. The vector ones transpose 16x16 (8x8) blocks in
 * registers: the scalar scatter stored each float in its own cache line and took
 * half of a 7x7 depthwise convolution. */
typedef void (*qcc_dwcb_row_fn)(const float *const *xs, int nl, int w, float *dst);
typedef void (*qcc_dwcb_out_fn)(const float *t, float *o, int nl, ptrdiff_t pout);

static void qcc_dwcb_row_plain(const float *const *xs, int nl, int w, float *dst)
{
    int l, iw;
    for (l = 0; l < QCC_DWCB_LANES; l++)
        for (iw = 0; iw < w; iw++) dst[(ptrdiff_t)iw * QCC_DWCB_LANES + l] = l < nl ? xs[l][iw] : 0.0f;
}

static void qcc_dwcb_out_plain(const float *t, float *o, int nl, ptrdiff_t pout)
{
    ptrdiff_t i;
    int l;
    for (l = 0; l < nl; l++)
        for (i = 0; i < pout; i++) o[l * pout + i] = t[i * QCC_DWCB_LANES + l];
}

#if QCC_GEMM_X86

#pragma GCC push_options
#pragma GCC target("avx2,fma")

/* R positions of one output row from ow, both halves of the lanes. */
QCC_INLINE void qcc_dwcb_chunk_avx2(const float *x, ptrdiff_t step, const float *w,
                                    const float *b, float *t, const ptrdiff_t *ofs, int kk,
                                    const int R)
{
    __m256 acc[4][2];
    int r, j;
    for (r = 0; r < R; r++) {
        acc[r][0] = _mm256_loadu_ps(b);
        acc[r][1] = _mm256_loadu_ps(b + 8);
    }
    for (j = 0; j < kk; j++) {
        const __m256 w0 = _mm256_loadu_ps(w + j * QCC_DWCB_LANES);
        const __m256 w1 = _mm256_loadu_ps(w + j * QCC_DWCB_LANES + 8);
        const float *xj = x + ofs[j];
        for (r = 0; r < R; r++) {
            acc[r][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xj + r * step), acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xj + r * step + 8), acc[r][1]);
        }
    }
    for (r = 0; r < R; r++) {
        _mm256_storeu_ps(t + r * QCC_DWCB_LANES, acc[r][0]);
        _mm256_storeu_ps(t + r * QCC_DWCB_LANES + 8, acc[r][1]);
    }
}

static void qcc_dwcb_avx2(const float *p, const float *w, const float *b, float *t,
                          const qcc_geom *g, const int *dims, const ptrdiff_t *ofs, int kk)
{
    const ptrdiff_t step = (ptrdiff_t)g->st[2] * QCC_DWCB_LANES;
    int od, oh, ow;
    for (od = 0; od < g->osp[0]; od++)
        for (oh = 0; oh < g->osp[1]; oh++) {
            const float *x = p + QCC_DWCB_POS(od, oh, 0);
            for (ow = 0; ow + 4 <= g->osp[2]; ow += 4, t += 4 * QCC_DWCB_LANES)
                qcc_dwcb_chunk_avx2(x + ow * step, step, w, b, t, ofs, kk, 4);
            switch (g->osp[2] - ow) {
            case 3: qcc_dwcb_chunk_avx2(x + ow * step, step, w, b, t, ofs, kk, 3); break;
            case 2: qcc_dwcb_chunk_avx2(x + ow * step, step, w, b, t, ofs, kk, 2); break;
            case 1: qcc_dwcb_chunk_avx2(x + ow * step, step, w, b, t, ofs, kk, 1); break;
            default: break;
            }
            t += (g->osp[2] - ow) * QCC_DWCB_LANES;
        }
}

static void qcc_dwcb_row_avx2(const float *const *xs, int nl, int w, float *dst)
{
    __m256 r[8];
    int h, iw, l, c;
    for (h = 0; h < QCC_DWCB_LANES; h += 8)
        for (iw = 0; iw < w; iw += 8) {
            const int m = w - iw < 8 ? w - iw : 8;
            const __m256i k = _mm256_loadu_si256((const __m256i *)(qcc_avx2_masks + 8 - m));
            for (l = 0; l < 8; l++)
                r[l] = h + l < nl ? _mm256_maskload_ps(xs[h + l] + iw, k) : _mm256_setzero_ps();
            qcc_tr8_avx2(r);
            for (c = 0; c < m; c++) _mm256_storeu_ps(dst + (ptrdiff_t)(iw + c) * QCC_DWCB_LANES + h, r[c]);
        }
}

static void qcc_dwcb_out_avx2(const float *t, float *o, int nl, ptrdiff_t pout)
{
    __m256 v[8];
    ptrdiff_t i;
    int h, r, c;
    for (h = 0; h < nl; h += 8)
        for (i = 0; i < pout; i += 8) {
            const int m = pout - i < 8 ? (int)(pout - i) : 8;
            for (r = 0; r < 8; r++)
                v[r] = r < m ? _mm256_loadu_ps(t + (i + r) * QCC_DWCB_LANES + h) : _mm256_setzero_ps();
            qcc_tr8_avx2(v);
            for (c = 0; c < 8 && h + c < nl; c++) qcc_store_first_avx2(o + (h + c) * pout + i, v[c], m);
        }
}

#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")

QCC_INLINE void qcc_dwcb_chunk_avx512(const float *x, ptrdiff_t step, const float *w,
                                      const float *b, float *t, const ptrdiff_t *ofs, int kk,
                                      const int R)
{
    __m512 acc[8];
    int r, j;
    for (r = 0; r < R; r++) acc[r] = _mm512_loadu_ps(b);
    for (j = 0; j < kk; j++) {
        const __m512 wv = _mm512_loadu_ps(w + j * QCC_DWCB_LANES);
        const float *xj = x + ofs[j];
        for (r = 0; r < R; r++) acc[r] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(xj + r * step), acc[r]);
    }
    for (r = 0; r < R; r++) _mm512_storeu_ps(t + r * QCC_DWCB_LANES, acc[r]);
}

static void qcc_dwcb_avx512(const float *p, const float *w, const float *b, float *t,
                            const qcc_geom *g, const int *dims, const ptrdiff_t *ofs, int kk)
{
    const ptrdiff_t step = (ptrdiff_t)g->st[2] * QCC_DWCB_LANES;
    int od, oh, ow;
    for (od = 0; od < g->osp[0]; od++)
        for (oh = 0; oh < g->osp[1]; oh++) {
            const float *x = p + QCC_DWCB_POS(od, oh, 0);
            for (ow = 0; ow + 8 <= g->osp[2]; ow += 8, t += 8 * QCC_DWCB_LANES)
                qcc_dwcb_chunk_avx512(x + ow * step, step, w, b, t, ofs, kk, 8);
            switch (g->osp[2] - ow) {
            case 7: qcc_dwcb_chunk_avx512(x + ow * step, step, w, b, t, ofs, kk, 7); break;
            case 6: qcc_dwcb_chunk_avx512(x + ow * step, step, w, b, t, ofs, kk, 6); break;
            case 5: qcc_dwcb_chunk_avx512(x + ow * step, step, w, b, t, ofs, kk, 5); break;
            case 4: qcc_dwcb_chunk_avx512(x + ow * step, step, w, b, t, ofs, kk, 4); break;
            case 3: qcc_dwcb_chunk_avx512(x + ow * step, step, w, b, t, ofs, kk, 3); break;
            case 2: qcc_dwcb_chunk_avx512(x + ow * step, step, w, b, t, ofs, kk, 2); break;
            case 1: qcc_dwcb_chunk_avx512(x + ow * step, step, w, b, t, ofs, kk, 1); break;
            default: break;
            }
            t += (g->osp[2] - ow) * QCC_DWCB_LANES;
        }
}

static void qcc_dwcb_row_avx512(const float *const *xs, int nl, int w, float *dst)
{
    __m512 r[16];
    int iw, l, c;
    for (iw = 0; iw < w; iw += 16) {
        const int m = w - iw < 16 ? w - iw : 16;
        const __mmask16 k = (__mmask16)((1u << m) - 1);
        for (l = 0; l < 16; l++) r[l] = l < nl ? _mm512_maskz_loadu_ps(k, xs[l] + iw) : _mm512_setzero_ps();
        qcc_tr16_avx512(r);
        for (c = 0; c < m; c++) _mm512_storeu_ps(dst + (ptrdiff_t)(iw + c) * QCC_DWCB_LANES, r[c]);
    }
}

static void qcc_dwcb_out_avx512(const float *t, float *o, int nl, ptrdiff_t pout)
{
    __m512 v[16];
    ptrdiff_t i;
    int r, l;
    for (i = 0; i < pout; i += 16) {
        const int m = pout - i < 16 ? (int)(pout - i) : 16;
        const __mmask16 k = (__mmask16)((1u << m) - 1);
        for (r = 0; r < 16; r++) v[r] = r < m ? _mm512_loadu_ps(t + (i + r) * QCC_DWCB_LANES) : _mm512_setzero_ps();
        qcc_tr16_avx512(v);
        for (l = 0; l < nl; l++) _mm512_mask_storeu_ps(o + l * pout + i, k, v[l]);
    }
}

#pragma GCC pop_options

#endif /* QCC_GEMM_X86 */

/* The lanes path's kernel and interleaving of the GEMM variant in use. */
static void qcc_dwcb_fns(qcc_dwcb_row_fn *row, qcc_dwcb_out_fn *out)
{
    *row = qcc_dwcb_row_plain;
    *out = qcc_dwcb_out_plain;
#if QCC_GEMM_X86
    switch (qcc_gemm_variant()) {
    case 2: *row = qcc_dwcb_row_avx512; *out = qcc_dwcb_out_avx512; break;
    case 1: *row = qcc_dwcb_row_avx2; *out = qcc_dwcb_out_avx2; break;
    default: break;
    }
#endif
}

static qcc_dwcb_fn qcc_dwcb_kernel(void)
{
#if QCC_GEMM_X86
    switch (qcc_gemm_variant()) {
    case 2: return qcc_dwcb_avx512;
    case 1: return qcc_dwcb_avx2;
    default: break;
    }
#endif
    return qcc_dwcb_plain;
}

/* Whether a depthwise convolution of `tasks` lane groups on `threads` threads runs
 * with its channels side by side (rows shorter than 8 always do: most of their row
 * vectors' lanes would be idle). */
static int qcc_dwcb_takes(const qcc_geom *g, int tasks, int threads)
{
    return g->osp[2] < qcc_dwcb_max_ow && (tasks >= threads || g->osp[2] < 8);
}

/* Floats of one thread's scratch: interleaved padded planes, weights, bias, output. */
static ptrdiff_t qcc_dwcb_scratch(const qcc_geom *g, int *dims)
{
    const int kk = g->k[0] * g->k[1] * g->k[2];
    qcc_padded_dims(g, g->osp[2], dims);
    return ((ptrdiff_t)dims[0] * dims[1] * dims[2] + kk + 1
            + (ptrdiff_t)g->osp[0] * g->osp[1] * g->osp[2]) * QCC_DWCB_LANES;
}

/* Interleave `nl` input planes (lane l reads src[l]) into p[d][h][w][lane] with the
 * padding of g; lanes nl .. LANES-1 are zero. */
static void qcc_dwcb_gather(const float *const *src, int nl, float *p, const qcc_geom *g,
                            const int *dims, qcc_dwcb_row_fn interleave)
{
    const ptrdiff_t row = (ptrdiff_t)dims[2] * QCC_DWCB_LANES;
    const float *xs[QCC_DWCB_LANES];
    int d, h, l;
    for (d = 0; d < dims[0]; d++) {
        const int id = d - g->pb[0];
        for (h = 0; h < dims[1]; h++) {
            const int ih = h - g->pb[1];
            float *dst = p + ((ptrdiff_t)d * dims[1] + h) * row;
            if (id < 0 || id >= g->sp[0] || ih < 0 || ih >= g->sp[1]) {
                memset(dst, 0, row * sizeof(float));
                continue;
            }
            memset(dst, 0, (ptrdiff_t)g->pb[2] * QCC_DWCB_LANES * sizeof(float));
            memset(dst + (ptrdiff_t)(g->pb[2] + g->sp[2]) * QCC_DWCB_LANES, 0,
                   (ptrdiff_t)(dims[2] - g->pb[2] - g->sp[2]) * QCC_DWCB_LANES * sizeof(float));
            for (l = 0; l < nl; l++) xs[l] = src[l] + ((ptrdiff_t)id * g->sp[1] + ih) * g->sp[2];
            interleave(xs, nl, g->sp[2], dst + (ptrdiff_t)g->pb[2] * QCC_DWCB_LANES);
        }
    }
}

QCC_CLONES
static void qcc_dwcb_worker(void *arg)
{
    qcc_dw_job *job = (qcc_dw_job *)arg;
    const qcc_geom *g = job->g;
    const ptrdiff_t pin = (ptrdiff_t)g->sp[0] * g->sp[1] * g->sp[2];
    const ptrdiff_t pout = (ptrdiff_t)g->osp[0] * g->osp[1] * g->osp[2];
    const int kk = g->k[0] * g->k[1] * g->k[2], oc_n = job->groups * g->og;
    const int blocks = (oc_n + QCC_DWCB_LANES - 1) / QCC_DWCB_LANES;
    const qcc_dwcb_fn kernel = qcc_dwcb_kernel();
    qcc_dwcb_row_fn interleave;
    qcc_dwcb_out_fn deinterleave;
    int dims[3], kd, kh, kw;
    const ptrdiff_t floats = qcc_dwcb_scratch(g, dims);
    float *scratch = (float *)qcc_thread_buffer(floats * sizeof(float) + kk * sizeof(ptrdiff_t));
    float *p, *wl, *bl, *t;
    ptrdiff_t *ofs;
    if (scratch == NULL) {
        job->failed = 1;
        return;
    }
    p = scratch;
    wl = p + (ptrdiff_t)dims[0] * dims[1] * dims[2] * QCC_DWCB_LANES;
    bl = wl + (ptrdiff_t)kk * QCC_DWCB_LANES;
    t = bl + QCC_DWCB_LANES;
    ofs = (ptrdiff_t *)(t + pout * QCC_DWCB_LANES);
    for (kd = 0; kd < g->k[0]; kd++)
        for (kh = 0; kh < g->k[1]; kh++)
            for (kw = 0; kw < g->k[2]; kw++)
                *ofs++ = (((ptrdiff_t)kd * g->dl[0] * dims[1] + (ptrdiff_t)kh * g->dl[1]) * dims[2]
                          + (ptrdiff_t)kw * g->dl[2]) * QCC_DWCB_LANES;
    ofs -= kk;
    qcc_dwcb_fns(&interleave, &deinterleave);
    for (;;) {
        const int task = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        const int ni = task / blocks, oc0 = (task % blocks) * QCC_DWCB_LANES;
        const int nl = oc_n - oc0 < QCC_DWCB_LANES ? oc_n - oc0 : QCC_DWCB_LANES;
        const float *src[QCC_DWCB_LANES];
        float *o = job->out + ((ptrdiff_t)ni * oc_n + oc0) * pout;
        int l, j;
        if (task >= job->planes) break;
        for (l = 0; l < QCC_DWCB_LANES; l++) {
            const int oc = oc0 + (l < nl ? l : nl - 1);
            src[l] = job->x + ((ptrdiff_t)ni * job->groups + oc / g->og) * pin;
            bl[l] = l < nl && job->bias ? job->bias[oc] : 0.0f;
            for (j = 0; j < kk; j++)
                wl[j * QCC_DWCB_LANES + l] = l < nl ? job->w[(ptrdiff_t)oc * kk + j] : 0.0f;
        }
        qcc_dwcb_gather(src, nl, p, g, dims, interleave);
        kernel(p, wl, bl, t, g, dims, ofs, kk);
        deinterleave(t, o, nl, pout);
        qcc_activate(job->act, o, pout, nl, pout);
    }
}

/* Multiply-adds below which a depthwise convolution stays on one thread. Its planes
 * cost more than their multiply-adds (the padded copy, the epilogue): 240 planes of
 * 28 x 28, 3x3 stride 2 (4e5 of them) took 0.16 ms on one thread. */
static double qcc_dw_par_min = 1 << 16;

/* Depthwise convolution (one input channel per group) of n_img images, its planes
 * shared by up to `threads` threads; returns 0, or -1 when out of memory. */
static int qcc_depthwise(const float *x, const float *w, const float *bias, float *out,
                         const qcc_geom *g, int n_img, int groups, const qcc_act *act,
                         int threads)
{
    qcc_dw_job job;
    const double madds = (double)n_img * groups * g->og * g->osp[0] * g->osp[1] * g->osp[2]
                         * g->k[0] * g->k[1] * g->k[2];
    /* the lanes path's tasks: 16 channels of an image */
    const int lane_tasks = n_img * ((groups * g->og + QCC_DWCB_LANES - 1) / QCC_DWCB_LANES);
    job.x = x;
    job.w = w;
    job.bias = bias;
    job.out = out;
    job.g = g;
    job.act = act;
    job.groups = groups;
    job.planes = n_img * groups * g->og;
    job.next = 0;
    job.failed = 0;
    if (madds < qcc_dw_par_min) threads = 1;
    if (qcc_dwcb_takes(g, lane_tasks, threads)) {
        job.planes = lane_tasks;
        qcc_parallel(qcc_dwcb_worker, &job, threads < job.planes ? threads : job.planes);
        return job.failed ? -1 : 0;
    }
    qcc_parallel(qcc_dw_worker, &job, threads < job.planes ? threads : job.planes);
    return job.failed ? -1 : 0;
}

#endif
