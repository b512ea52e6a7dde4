/* The depthwise convolution (included by _conv_impl.h): rows of taps, planes on the
 * thread pool, channels side by side (_depthwise_lanes.h), and qcc_depthwise. */
#ifndef QCC_DEPTHWISE_IMPL_H
#define QCC_DEPTHWISE_IMPL_H

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

#include "_depthwise_lanes.h"   /* depthwise, channels side by side */

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
