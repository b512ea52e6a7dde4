/* Float convolutions on the blocked layout (runtime/_blocked.pyx), AVX-512 only.
 *
 * A blocked tensor [N, C, H, W] is stored as [N, ceil(C/16), H, W, 16]: channel c of
 * position p at ((n*CB + c/16)*H*W + p)*16 + c%16, the lanes past C zero. Between
 * convolutions that read and write it, the 16 channels of a position are one vector:
 * a depthwise tap is one FMA of contiguous vectors, a conv's output tile is stored
 * as it lies in the registers (no transposes, no gathers), as onnxruntime's NCHWc
 * kernels do.
 *
 * Every output is computed with the operations and the order of the NCHW kernels
 * (_gemm_impl.h, _conv_impl.h): acc = bias (or 0), then acc = fma(x, w, acc) for the
 * taps k ascending (k = (c, kh, kw) for a conv, (kh, kw) for a depthwise), each
 * rounded; then the epilogue of runtime/_common.h lane by lane (affine, residual,
 * activation, fake-quant): the same bits as the NCHW plan.
 */
#ifndef QCC_BLOCKED_IMPL_H
#define QCC_BLOCKED_IMPL_H

#include "_common.h"

#define QCC_BLK 16

typedef struct {
    int n, c, h, w;            /* input */
    int o, oh, ow;             /* output */
    int kh, kw, sh, sw, ph, pw, dh, dw;   /* kernel, strides, top/left pads, dilations */
} qcc_blk_geom;

QCC_INLINE int qcc_blk_cb(int c) { return (c + QCC_BLK - 1) / QCC_BLK; }


static int qcc_blk_supported(void)
{
#if QCC_X86
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
           && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
#else
    return 0;
#endif
}

#if QCC_X86
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")

QCC_INLINE __mmask16 qcc_blk_mask(int n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* The per-lane parameters of the epilogue for the 16 channels c0.. of `channels`. */
typedef struct {
    __m512 mul, shift, s, zp;
    __mmask16 valid;
} qcc_blk_lanes;

QCC_INLINE void qcc_blk_lanes_of(const qcc_act *a, int c0, int channels, qcc_blk_lanes *l)
{
    const __m512 z = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
    l->valid = qcc_blk_mask(channels - c0);
    l->mul = l->shift = l->s = l->zp = z;
    if (a->mul != NULL) {
        l->mul = _mm512_maskz_loadu_ps(l->valid, a->mul + c0);
        l->shift = _mm512_maskz_loadu_ps(l->valid, a->shift + c0);
    }
    if (a->fq_scale != NULL) {
        l->s = a->fq_per_channel ? _mm512_mask_loadu_ps(one, l->valid, a->fq_scale + c0)
                                 : _mm512_set1_ps(a->fq_scale[0]);
        l->zp = a->fq_per_channel ? _mm512_maskz_loadu_ps(l->valid, a->fq_zero + c0)
                                  : _mm512_set1_ps(a->fq_zero[0]);
    }
}

/* The fake-quant of v (its clamp a max / min with the bound first, as the clamps). */
QCC_INLINE __m512 qcc_blk_fq(const qcc_act *a, const qcc_blk_lanes *l, __m512 v)
{
    __m512 t = _mm512_roundscale_ps(_mm512_div_ps(v, l->s),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    t = _mm512_add_ps(t, l->zp);
    t = _mm512_min_ps(_mm512_set1_ps(a->qmax), _mm512_max_ps(_mm512_set1_ps(a->qmin), t));
    return _mm512_mul_ps(_mm512_sub_ps(t, l->zp), l->s);
}

/* The epilogue (runtime/_common.h, qcc_epilogue_run) of the registers ACC (an lvalue
 * of i_ < NI, v_ < NV; those with i_ < N_ON alone are stored): the affine, the
 * residual at ADD + E, the activation (qcc_act_avx512's), the fake-quant, then the
 * lanes past the channels set to 0 and the registers stored at OUT + E (E an
 * offset of i_ and v_, L the lanes of v_). With a TEE, OUT takes the values before
 * the fake-quant and TEE the fake-quant (a conv's result and its fake-quant, both
 * kept). Stage by stage, each one loop over the registers: a branch per stage, not
 * per register, and the activation's kind a constant in its loop (a branchy
 * epilogue per register cost a 16-deep 1x1 conv 30% of its time). Without APPLY
 * only the lanes past the channels are zeroed. */
#define QCC_BLK_EACH(NI, N_ON, NV, STMT)                                                 \
    _Pragma("GCC unroll 16")                                                             \
    for (i_ = 0; i_ < (NI); i_++)                                                        \
        _Pragma("GCC unroll 4")                                                          \
        for (v_ = 0; v_ < (NV); v_++)                                                    \
            if (i_ < (N_ON)) { STMT; }
#define QCC_BLK_ACT_CASE(K, NI, N_ON, NV, ACC, A)                                        \
    case K: QCC_BLK_EACH(NI, N_ON, NV, ACC = qcc_act_avx512_kind(K, A, ACC)) break;
#define QCC_BLK_EPILOGUE(NI, N_ON, NV, ACC, L, E, A, APPLY, OUT, TEE, ADD)              \
    do {                                                                                 \
        int i_, v_;                                                                      \
        float *dst_ = (OUT);                                                             \
        if (APPLY) {                                                                     \
            if ((A)->mul != NULL)                                                        \
                QCC_BLK_EACH(NI, N_ON, NV,                                               \
                             ACC = _mm512_add_ps(_mm512_mul_ps(ACC, (L).mul), (L).shift)) \
            if ((ADD) != NULL)                                                           \
                QCC_BLK_EACH(NI, N_ON, NV, ACC = _mm512_add_ps(ACC, _mm512_loadu_ps((ADD) + (E)))) \
            switch ((A)->kind) {                                                         \
            QCC_BLK_ACT_CASE(QCC_ACT_RELU, NI, N_ON, NV, ACC, A)                          \
            QCC_BLK_ACT_CASE(QCC_ACT_CLIP, NI, N_ON, NV, ACC, A)                          \
            QCC_BLK_ACT_CASE(QCC_ACT_HARD_SWISH, NI, N_ON, NV, ACC, A)                    \
            QCC_BLK_ACT_CASE(QCC_ACT_HARD_SIGMOID, NI, N_ON, NV, ACC, A)                  \
            QCC_BLK_ACT_CASE(QCC_ACT_SIGMOID, NI, N_ON, NV, ACC, A)                       \
            default: break;                                                              \
            }                                                                            \
            if ((TEE) != NULL) {                                                         \
                QCC_BLK_EACH(NI, N_ON, NV,                                               \
                             _mm512_storeu_ps((OUT) + (E), _mm512_maskz_mov_ps((L).valid, ACC))) \
                dst_ = (TEE);                                                            \
            }                                                                            \
            if ((A)->fq_scale != NULL)                                                   \
                QCC_BLK_EACH(NI, N_ON, NV, ACC = qcc_blk_fq(A, &(L), ACC))               \
        }                                                                                \
        QCC_BLK_EACH(NI, N_ON, NV, _mm512_storeu_ps(dst_ + (E), _mm512_maskz_mov_ps((L).valid, ACC))) \
    } while (0)

/* ---- conv (one group): a tile of MR positions x NV vectors of output channels --
 * Position i reads tap k = (c, kh, kw) at P(i)[kofs[k]] (P(i) = ptr[i], or p0 + i*ps
 * for a tile in one output row: one register for all), the weights of the channel
 * block packed [k][64] (zeros past the channels). The sums (bias first) take the
 * epilogue in the registers (when `apply`: else only the lanes past the channels
 * are zeroed) and are stored at out[v*ldv + OFS(i)] (residual: add, laid out alike):
 * OFS(i) = i*16 for a row's positions, the given oofs[i] for the pointer kernels'. */
#define QCC_BLK_KERN(NAME, NV, MR, PTR_ARGS, PTR_INIT, P, OFS)                           \
    static void NAME(int kc, const float *wp, PTR_ARGS, const ptrdiff_t *kofs, int mr,    \
                     const float *bias, float *out, ptrdiff_t ldv, const qcc_act *act,    \
                     const qcc_blk_lanes *lanes, const float *add, int apply, float *tee, \
                     const ptrdiff_t *oofs)                                              \
    {                                                                                    \
        __m512 acc[MR][NV], wv[NV];                                                      \
        int i, v, k;                                                                     \
        PTR_INIT(MR)                                                                     \
        for (v = 0; v < NV; v++) {                                                       \
            const __m512 b = bias ? _mm512_loadu_ps(bias + 16 * v) : _mm512_setzero_ps(); \
            for (i = 0; i < MR; i++) acc[i][v] = b;                                      \
        }                                                                                \
        for (k = 0; k < kc; k++) {                                                       \
            const ptrdiff_t o = kofs[k];                                                 \
            for (v = 0; v < NV; v++) wv[v] = _mm512_loadu_ps(wp + (ptrdiff_t)k * 64 + 16 * v); \
            for (i = 0; i < MR; i++) {                                                   \
                const __m512 b = _mm512_set1_ps(P(i)[o]);                                \
                for (v = 0; v < NV; v++) acc[i][v] = _mm512_fmadd_ps(b, wv[v], acc[i][v]); \
            }                                                                            \
        }                                                                                \
        (void)oofs;                                                                      \
        QCC_BLK_EPILOGUE(MR, mr, NV, acc[i_][v_], lanes[v_], v_ * ldv + OFS(i_), act,    \
                         apply, out, tee, add);                                          \
    }
#define QCC_BLK_PTRS const float *const *ptr
#define QCC_BLK_PTRS_INIT(MR) const float *p[MR]; for (i = 0; i < MR; i++) p[i] = ptr[i < mr ? i : 0];
#define QCC_BLK_P_ARRAY(i) p[i]
#define QCC_BLK_ROW const float *p0, ptrdiff_t ps
#define QCC_BLK_ROW_INIT(MR) const ptrdiff_t ps_ = ps;
#define QCC_BLK_P_ROW(i) (p0 + (i < mr ? i : 0) * ps_)
#define QCC_BLK_OFS_LINE(i) (16 * (i))
#define QCC_BLK_OFS_GIVEN(i) (oofs[i])
QCC_BLK_KERN(qcc_blk_kern4, 4, 6, QCC_BLK_PTRS, QCC_BLK_PTRS_INIT, QCC_BLK_P_ARRAY, QCC_BLK_OFS_GIVEN)
QCC_BLK_KERN(qcc_blk_kern3, 3, 8, QCC_BLK_PTRS, QCC_BLK_PTRS_INIT, QCC_BLK_P_ARRAY, QCC_BLK_OFS_GIVEN)
QCC_BLK_KERN(qcc_blk_kern2, 2, 12, QCC_BLK_PTRS, QCC_BLK_PTRS_INIT, QCC_BLK_P_ARRAY, QCC_BLK_OFS_GIVEN)
QCC_BLK_KERN(qcc_blk_kern1, 1, 12, QCC_BLK_PTRS, QCC_BLK_PTRS_INIT, QCC_BLK_P_ARRAY, QCC_BLK_OFS_GIVEN)
QCC_BLK_KERN(qcc_blk_row4, 4, 6, QCC_BLK_ROW, QCC_BLK_ROW_INIT, QCC_BLK_P_ROW, QCC_BLK_OFS_LINE)
QCC_BLK_KERN(qcc_blk_row3, 3, 8, QCC_BLK_ROW, QCC_BLK_ROW_INIT, QCC_BLK_P_ROW, QCC_BLK_OFS_LINE)
QCC_BLK_KERN(qcc_blk_row2, 2, 12, QCC_BLK_ROW, QCC_BLK_ROW_INIT, QCC_BLK_P_ROW, QCC_BLK_OFS_LINE)
QCC_BLK_KERN(qcc_blk_row1, 1, 12, QCC_BLK_ROW, QCC_BLK_ROW_INIT, QCC_BLK_P_ROW, QCC_BLK_OFS_LINE)


typedef struct {
    const qcc_blk_geom *g;
    const float *x;       /* input (padded copy when the conv pads), NCHW or blocked */
    int x_blocked;
    int hp, wp;           /* its padded plane */
    const float *wpk;     /* packed weights: per 64 channels [kc][64] */
    const float *bias;    /* padded to whole blocks of 64 */
    float *out;           /* blocked output */
    float *tee;           /* with a tee: the output's fake-quant (else NULL) */
    const float *add;     /* blocked residual or NULL */
    const ptrdiff_t *kofs;
    qcc_act act;
    int apply;            /* whether the epilogue does anything */
    int tile;             /* positions of a task (a multiple of 24: of 6, 8 and 12) */
    int tiles;            /* tasks per output block and image (span: per output block) */
    int span;             /* small planes: tiles run over the positions of all images */
    int blocks64, next, failed;
} qcc_blk_conv_job;

/* One tile: mr positions from q0 of the images' positions taken in a row (image
 * q / op, position q % op), channel block b (nv vectors). A tile within one output
 * row takes the row kernel (one pointer, positions sw apart); any other tile, across
 * rows or (span) across images, takes the pointer kernel with each position's input
 * and output offset. */
QCC_INLINE void qcc_blk_tile(const qcc_blk_conv_job *job, int b, int nv, ptrdiff_t q0, int mr,
                             const qcc_blk_lanes *lanes)
{
    const qcc_blk_geom *g = job->g;
    const int kc = g->c * g->kh * g->kw, ob = qcc_blk_cb(g->o);
    const ptrdiff_t op = (ptrdiff_t)g->oh * g->ow, lane = job->x_blocked ? QCC_BLK : 1;
    const ptrdiff_t in_img = (ptrdiff_t)(job->x_blocked ? qcc_blk_cb(g->c) * QCC_BLK : g->c)
                             * job->hp * job->wp;
    const float *wp = job->wpk + (ptrdiff_t)b * 64 * kc;
    const float *bias = job->bias + 64 * b;
    const ptrdiff_t n0 = q0 / op, p0 = q0 - n0 * op;
    const ptrdiff_t at = ((n0 * ob + 4 * b) * op + p0) * QCC_BLK, ldv = op * QCC_BLK;
    float *o = job->out + at, *tee = job->tee ? job->tee + at : NULL;
    const float *add = job->add ? job->add + at : NULL;
    const int y0 = (int)(p0 / g->ow), x0 = (int)(p0 - (ptrdiff_t)y0 * g->ow);
    if (x0 + mr <= g->ow) {   /* one output row: positions p0 + i*sw apart */
        const float *p = job->x + n0 * in_img
                         + ((ptrdiff_t)y0 * g->sh * job->wp + (ptrdiff_t)x0 * g->sw) * lane;
        const ptrdiff_t ps = (ptrdiff_t)g->sw * lane;
        switch (nv) {
        case 4: qcc_blk_row4(kc, wp, p, ps, job->kofs, mr, bias, o, ldv, &job->act, lanes, add, job->apply, tee, NULL); break;
        case 3: qcc_blk_row3(kc, wp, p, ps, job->kofs, mr, bias, o, ldv, &job->act, lanes, add, job->apply, tee, NULL); break;
        case 2: qcc_blk_row2(kc, wp, p, ps, job->kofs, mr, bias, o, ldv, &job->act, lanes, add, job->apply, tee, NULL); break;
        default: qcc_blk_row1(kc, wp, p, ps, job->kofs, mr, bias, o, ldv, &job->act, lanes, add, job->apply, tee, NULL); break;
        }
    } else {
        const float *ptr[12];
        ptrdiff_t oofs[12];
        int i;
        for (i = 0; i < mr; i++) {
            const ptrdiff_t q = q0 + i, n = q / op, pq = q - n * op;
            const int y = (int)(pq / g->ow), xx = (int)(pq - (ptrdiff_t)y * g->ow);
            ptr[i] = job->x + n * in_img + ((ptrdiff_t)y * g->sh * job->wp + (ptrdiff_t)xx * g->sw) * lane;
            oofs[i] = ((n - n0) * ob * op + pq - p0) * QCC_BLK;
        }
        switch (nv) {
        case 4: qcc_blk_kern4(kc, wp, ptr, job->kofs, mr, bias, o, ldv, &job->act, lanes, add, job->apply, tee, oofs); break;
        case 3: qcc_blk_kern3(kc, wp, ptr, job->kofs, mr, bias, o, ldv, &job->act, lanes, add, job->apply, tee, oofs); break;
        case 2: qcc_blk_kern2(kc, wp, ptr, job->kofs, mr, bias, o, ldv, &job->act, lanes, add, job->apply, tee, oofs); break;
        default: qcc_blk_kern1(kc, wp, ptr, job->kofs, mr, bias, o, ldv, &job->act, lanes, add, job->apply, tee, oofs); break;
        }
    }
}

/* Tasks of (segment, channel block, tile): a segment is one image's positions, or
 * (span: small planes at a batch) all the images' positions in a row, so that its
 * tiles of 6-12 positions are not cut at each image. */
static void qcc_blk_conv_worker(void *arg)
{
    qcc_blk_conv_job *shared = (qcc_blk_conv_job *)arg;
    const qcc_blk_conv_job local = *shared, *job = &local;   /* read once: `next` moves */
    const qcc_blk_geom *g = job->g;
    const int ob = qcc_blk_cb(g->o), per_seg = job->blocks64 * job->tiles;
    const ptrdiff_t op = (ptrdiff_t)g->oh * g->ow;
    const ptrdiff_t seg_len = job->span ? g->n * op : op;
    const int segs = job->span ? 1 : g->n;
    qcc_blk_lanes lanes[4];
    int lanes_of = -1;
    for (;;) {
        const int task = __atomic_fetch_add(&shared->next, 1, __ATOMIC_RELAXED);
        int seg, b, nv, step, v;
        ptrdiff_t q0, q1;
        if (task >= segs * per_seg) break;
        seg = task / per_seg;
        b = (task % per_seg) / job->tiles;
        nv = ob - 4 * b < 4 ? ob - 4 * b : 4;
        step = nv == 4 ? 6 : nv == 3 ? 8 : 12;
        if (b != lanes_of) {
            for (v = 0; v < nv; v++) qcc_blk_lanes_of(&job->act, (4 * b + v) * QCC_BLK, g->o, &lanes[v]);
            lanes_of = b;
        }
        q0 = (ptrdiff_t)(task % job->tiles) * job->tile;
        q1 = q0 + job->tile < seg_len ? q0 + job->tile : seg_len;
        for (; q0 < q1; q0 += step)
            qcc_blk_tile(job, b, nv, seg * seg_len + q0, q1 - q0 < step ? (int)(q1 - q0) : step,
                         lanes);
    }
}

/* ---- depthwise: a band of output rows of one channel block of one image -------- */
typedef struct {
    const qcc_blk_geom *g;
    const float *x;       /* blocked input */
    const float *w;       /* [cb][kh*kw][16] */
    const float *bias;    /* [cb*16] */
    float *out;
    float *tee;           /* with a tee: the output's fake-quant (else NULL) */
    const float *add;
    qcc_act act;
    int apply, hp, wp, band, bands, next, failed;
} qcc_blk_dw_job;

/* The rows a chunk of R outputs from column x0 of output row oy reads, tap row ky at
 * rows[ky] (its column x0*sw - pw): the input row itself when the chunk's columns lie
 * inside it, zeros for a row outside the input, else a copy of the window with its
 * zeros in `win`. Every tap is an FMA, with 0 where the input pads, as in the NCHW
 * kernels (whose padded planes hold the zeros): the same bits, -0 sums included. */
QCC_INLINE void qcc_blk_dw_rows(const qcc_blk_geom *g, const float *src, int oy, int x0, int R,
                                const float *zeros, float *win, const float **rows)
{
    const int lo = x0 * g->sw - g->pw, width = (R - 1) * g->sw + (g->kw - 1) * g->dw + 1;
    const int inside = lo >= 0 && lo + width <= g->w;
    int ky;
    for (ky = 0; ky < g->kh; ky++) {
        const int iy = oy * g->sh - g->ph + ky * g->dh;
        const float *row = src + (ptrdiff_t)iy * g->w * QCC_BLK;
        if (iy < 0 || iy >= g->h) {
            rows[ky] = zeros;
        } else if (inside) {
            rows[ky] = row + (ptrdiff_t)lo * QCC_BLK;
        } else {
            float *d = win + (ptrdiff_t)ky * width * QCC_BLK;
            const int c0 = lo < 0 ? 0 : lo, c1 = lo + width < g->w ? lo + width : g->w;
            memset(d, 0, (size_t)width * QCC_BLK * sizeof(float));
            if (c1 > c0)
                memcpy(d + (ptrdiff_t)(c0 - lo) * QCC_BLK, row + (ptrdiff_t)c0 * QCC_BLK,
                       (size_t)(c1 - c0) * QCC_BLK * sizeof(float));
            rows[ky] = d;
        }
    }
}

/* R outputs of row oy from column x0: bias, then the taps (ky, kx) in order. */
#define QCC_BLK_DW_ROW(R)                                                                \
    do {                                                                                 \
        __m512 acc[R];                                                                   \
        int r_, ky_, kx_;                                                                \
        if (band == NULL)                                                                \
            qcc_blk_dw_rows(g, src, oy, x0, R, zeros, win, rows);                        \
        else                                                                             \
            for (ky_ = 0; ky_ < g->kh; ky_++)                                            \
                rows[ky_] = band + ((ptrdiff_t)(oy * g->sh + ky_ * g->dh - r0) * job->wp \
                                    + (ptrdiff_t)x0 * g->sw) * QCC_BLK;                  \
        for (r_ = 0; r_ < R; r_++) acc[r_] = b;                                          \
        for (ky_ = 0; ky_ < g->kh; ky_++)                                                \
            for (kx_ = 0; kx_ < g->kw; kx_++) {                                          \
                const __m512 w_ = _mm512_loadu_ps(wb + (ky_ * g->kw + kx_) * QCC_BLK);   \
                const float *q_ = rows[ky_] + (ptrdiff_t)kx_ * g->dw * QCC_BLK;          \
                for (r_ = 0; r_ < R; r_++)                                               \
                    acc[r_] = _mm512_fmadd_ps(_mm512_loadu_ps(q_ + (ptrdiff_t)r_ * g->sw * QCC_BLK), \
                                              w_, acc[r_]);                              \
            }                                                                            \
        QCC_BLK_EPILOGUE(R, R, 1, acc[i_], lanes, ((ptrdiff_t)oy * g->ow + x0 + i_) * QCC_BLK, \
                         &job->act, job->apply, o, tee, add);                            \
    } while (0)

#define QCC_BLK_DW_MAXK 64   /* kernel rows a depthwise conv may have here */
#define QCC_BLK_DW_DIRECT 32   /* output rows from this wide read the input in place */

static void qcc_blk_dw_worker(void *arg)
{
    qcc_blk_dw_job *shared = (qcc_blk_dw_job *)arg;
    const qcc_blk_dw_job local = *shared, *job = &local;   /* read once: `next` moves */
    const qcc_blk_geom *g = job->g;
    const int cb = qcc_blk_cb(g->c), kk = g->kh * g->kw;
    const ptrdiff_t ip = (ptrdiff_t)g->h * g->w, op = (ptrdiff_t)g->oh * g->ow;
    const ptrdiff_t width = (ptrdiff_t)7 * g->sw + (g->kw - 1) * g->dw + 1;  /* R = 8 */
    /* narrow planes: most chunks touch the border, so a band is copied with its
     * zeros once (band rows of the padded plane, the first input row r0) */
    const int banded = g->ow < QCC_BLK_DW_DIRECT;
    const ptrdiff_t rowb = (ptrdiff_t)job->wp * QCC_BLK;
    const int span = (job->band - 1) * g->sh + (g->kh - 1) * g->dh + 1;
    const size_t floats = banded ? (size_t)span * rowb : (size_t)(g->kh + 1) * width * QCC_BLK;
    float *zeros = (float *)qcc_thread_buffer(floats * sizeof(float));
    float *win, *band = NULL;
    const float *rows[QCC_BLK_DW_MAXK];
    int r0 = 0;
    if (zeros == NULL) {
        shared->failed = 1;
        return;
    }
    if (banded) {
        band = zeros;
    } else {
        memset(zeros, 0, (size_t)width * QCC_BLK * sizeof(float));
    }
    win = zeros + width * QCC_BLK;
    for (;;) {
        const int task = __atomic_fetch_add(&shared->next, 1, __ATOMIC_RELAXED);
        int plane, blk, oy, oy1, x0;
        const float *wb, *src, *add;
        float *o, *tee;
        qcc_blk_lanes lanes;
        __m512 b;
        if (task >= g->n * cb * job->bands) break;
        plane = task / job->bands;
        blk = plane % cb;
        oy = (task % job->bands) * job->band;
        oy1 = oy + job->band < g->oh ? oy + job->band : g->oh;
        src = job->x + (ptrdiff_t)plane * ip * QCC_BLK;
        if (banded) {   /* padded rows [r0, r1): input row yy - ph, zeros outside */
            const int r1 = (oy1 - 1) * g->sh + (g->kh - 1) * g->dh + 1;
            int yy;
            r0 = oy * g->sh;
            for (yy = r0; yy < r1; yy++) {
                float *d = band + (yy - r0) * rowb;
                const int iy = yy - g->ph;
                if (iy < 0 || iy >= g->h) {
                    memset(d, 0, rowb * sizeof(float));
                    continue;
                }
                memset(d, 0, (size_t)g->pw * QCC_BLK * sizeof(float));
                memcpy(d + (ptrdiff_t)g->pw * QCC_BLK, src + (ptrdiff_t)iy * g->w * QCC_BLK,
                       (size_t)g->w * QCC_BLK * sizeof(float));
                memset(d + (ptrdiff_t)(g->pw + g->w) * QCC_BLK, 0,
                       (size_t)(job->wp - g->pw - g->w) * QCC_BLK * sizeof(float));
            }
        }
        wb = job->w + (ptrdiff_t)blk * kk * QCC_BLK;
        b = job->bias ? _mm512_loadu_ps(job->bias + blk * QCC_BLK) : _mm512_setzero_ps();
        o = job->out + (ptrdiff_t)plane * op * QCC_BLK;
        tee = job->tee ? job->tee + (ptrdiff_t)plane * op * QCC_BLK : NULL;
        add = job->add ? job->add + (ptrdiff_t)plane * op * QCC_BLK : NULL;
        qcc_blk_lanes_of(&job->act, blk * QCC_BLK, g->c, &lanes);
        for (; oy < oy1; oy++) {
            for (x0 = 0; x0 + 8 <= g->ow; x0 += 8) QCC_BLK_DW_ROW(8);
            for (; x0 + 4 <= g->ow; x0 += 4) QCC_BLK_DW_ROW(4);
            for (; x0 < g->ow; x0++) QCC_BLK_DW_ROW(1);
        }
    }
}

#pragma GCC pop_options
#endif /* QCC_X86 */

/* ---- layout changes and the other ops of a blocked region ------------------------ */

/* x [n, c, plane] -> blocked [n, cb, plane, 16] (lanes past c zero). */
QCC_CLONES
static void qcc_blk_from_nchw(const float *x, float *y, int n, int c, ptrdiff_t plane)
{
    const int cb = qcc_blk_cb(c);
    int i, b, l;
    ptrdiff_t p;
    for (i = 0; i < n; i++)
        for (b = 0; b < cb; b++) {
            float *d = y + ((ptrdiff_t)i * cb + b) * plane * QCC_BLK;
            for (p = 0; p < plane; p++)
                for (l = 0; l < QCC_BLK; l++) {
                    const int ch = b * QCC_BLK + l;
                    d[p * QCC_BLK + l] = ch < c ? x[((ptrdiff_t)i * c + ch) * plane + p] : 0.0f;
                }
        }
}

/* blocked -> x [n, c, plane]. */
QCC_CLONES
static void qcc_blk_to_nchw(const float *y, float *x, int n, int c, ptrdiff_t plane)
{
    const int cb = qcc_blk_cb(c);
    int i, ch;
    ptrdiff_t p;
    for (i = 0; i < n; i++)
        for (ch = 0; ch < c; ch++) {
            const float *s = y + ((ptrdiff_t)i * cb + ch / QCC_BLK) * plane * QCC_BLK + ch % QCC_BLK;
            float *d = x + ((ptrdiff_t)i * c + ch) * plane;
            for (p = 0; p < plane; p++) d[p] = s[p * QCC_BLK];
        }
}

/* Jobs of whole planes on the pool: the means (global average pool), a per-channel
 * scale (squeeze-and-excitation) and a conv's padded input copy. */
typedef struct {
    const float *x, *s;
    float *y;
    int n, c, planes;
    ptrdiff_t plane;
    /* the per-tensor fake-quant of the means' or the scale's result, or of the
     * padded copy's input (fq_on) */
    int fq_on;
    float fs, fz, qmin, qmax;
    /* the padded copy: plane size hp x wp of rows `len` floats (lane-wide positions) */
    int h, hp, rows;       /* rows: of a pad task */
    ptrdiff_t len, row_in, row_out, lead;
    int next;
} qcc_blk_plane_job;

/* The means of the blocked plane t of x into y [n, c] (qcc_plane_means' order: float
 * sums of every 16th element in 16 lanes, the tail, then the lanes, in double), then
 * (fq_on) their fake-quant. */
QCC_CLONES
static void qcc_blk_mean_plane(const qcc_blk_plane_job *job, int t)
{
    const int cb = qcc_blk_cb(job->c), i = t / cb, b = t % cb;
    const ptrdiff_t plane = job->plane;
    const float *restrict s = job->x + (ptrdiff_t)t * plane * QCC_BLK;
    float lanes[16][QCC_BLK];
    ptrdiff_t p, q;
    int j, l;
    memset(lanes, 0, sizeof(lanes));
    for (p = 0; p + 16 <= plane; p += 16)
        for (j = 0; j < 16; j++)
            for (l = 0; l < QCC_BLK; l++) lanes[j][l] += s[(p + j) * QCC_BLK + l];
    for (l = 0; l < QCC_BLK && b * QCC_BLK + l < job->c; l++) {
        double sum = 0.0;
        for (q = p; q < plane; q++) sum += s[q * QCC_BLK + l];
        for (j = 0; j < 16; j++) sum += lanes[j][l];
        job->y[(ptrdiff_t)i * job->c + b * QCC_BLK + l] =
            job->fq_on ? qcc_fq_one((float)(sum / (double)plane), job->fs, job->fz, job->qmin, job->qmax)
                       : (float)(sum / (double)plane);
    }
}

static void qcc_blk_means_worker(void *arg)
{
    qcc_blk_plane_job *job = (qcc_blk_plane_job *)arg;
    int t;
    while ((t = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED)) < job->planes)
        qcc_blk_mean_plane(job, t);
}

/* y = x * s[n, c] of the blocked plane t (image t / cb, channel block t % cb), then
 * (fq_on) its fake-quant. */
QCC_CLONES
static void qcc_blk_scale_plane(const qcc_blk_plane_job *job, int t)
{
    const int cb = qcc_blk_cb(job->c), i = t / cb, b = t % cb;
    const ptrdiff_t at = (ptrdiff_t)t * job->plane * QCC_BLK, n = job->plane * QCC_BLK;
    const float *restrict x = job->x + at;
    float *restrict y = job->y + at;
    float sv[QCC_BLK];
    ptrdiff_t p;
    int l;
    for (l = 0; l < QCC_BLK; l++)
        sv[l] = b * QCC_BLK + l < job->c ? job->s[(ptrdiff_t)i * job->c + b * QCC_BLK + l] : 0.0f;
    if (!job->fq_on) {
        for (p = 0; p < n; p += QCC_BLK)
            for (l = 0; l < QCC_BLK; l++) y[p + l] = x[p + l] * sv[l];
        return;
    }
    {   /* the fake-quant of each product (qcc_epilogue_run's), lanes past c zero */
        const float fs = job->fs, fz = job->fz, qmin = job->qmin, qmax = job->qmax;
        const int valid = job->c - b * QCC_BLK;
        for (p = 0; p < n; p += QCC_BLK)
            for (l = 0; l < QCC_BLK; l++) {
                const float v = qcc_fq_one(x[p + l] * sv[l], fs, fz, qmin, qmax);
                y[p + l] = l < valid ? v : 0.0f;
            }
    }
}

static void qcc_blk_scale_worker(void *arg)
{
    qcc_blk_plane_job *job = (qcc_blk_plane_job *)arg;
    int t;
    while ((t = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED)) < job->planes)
        qcc_blk_scale_plane(job, t);
}

/* d[e] = the fake-quant of a[e] (qcc_fq_one), e < n. */
QCC_CLONES
static void qcc_blk_fq_row(const float *restrict a, float *restrict d, ptrdiff_t n, float fs,
                           float fz, float qmin, float qmax)
{
    ptrdiff_t e;
    for (e = 0; e < n; e++) d[e] = qcc_fq_one(a[e], fs, fz, qmin, qmax);
}

/* The rows of plane t of x into the interior of its padded copy y (whose borders
 * stay zero from its allocation); with fq_on, their fake-quant. */
static void qcc_blk_pad_worker(void *arg)
{
    qcc_blk_plane_job *job = (qcc_blk_plane_job *)arg;
    const int chunks = (job->h + job->rows - 1) / job->rows;
    int t, r;
    while ((t = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED)) < job->planes * chunks) {
        const int plane = t / chunks, r0 = (t % chunks) * job->rows;
        const int r1 = r0 + job->rows < job->h ? r0 + job->rows : job->h;
        const float *src = job->x + (ptrdiff_t)plane * job->h * job->row_in;
        float *dst = job->y + (ptrdiff_t)plane * job->hp * job->row_out + job->lead;
        for (r = r0; r < r1; r++) {
            const float *a = src + r * job->row_in;
            float *d = dst + r * job->row_out;
            if (!job->fq_on) {
                memcpy(d, a, (size_t)job->len * sizeof(float));
                continue;
            }
            qcc_blk_fq_row(a, d, job->len, job->fs, job->fz, job->qmin, job->qmax);
        }
    }
}

#endif /* QCC_BLOCKED_IMPL_H */
