/* The depthwise convolution with 16 channels side by side in the lanes (included by
 * _depthwise_impl.h). */
#ifndef QCC_DEPTHWISE_LANES_H
#define QCC_DEPTHWISE_LANES_H

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

#endif
