/* The GEMM of few columns with the output channels in the vector lanes, AVX-512
 * (included by _gemm_impl.h, x86 only; its QCC_T_* tile also serves _dense_impl.h). */

#ifndef QCC_GEMM_LANES_H
#define QCC_GEMM_LANES_H

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")

/* ---- few columns: output channels in the vector lanes ----------------------------
 * A GEMM of at most qcc_gemm_t_max_n columns (the convolutions of small
 * planes) leaves most of a 32-column tile empty (49 positions take 64). On AVX-512
 * it is computed the other way round: a register tile of QCC_T_MR columns
 * (positions) x QCC_T_NR rows (output channels, 4 vectors), each b[k, p] read from
 * the input where it lies and broadcast (no packed panels of b), a packed in
 * panels of QCC_T_NR rows (qcc_gemm_pack_a). The sums go to ct, position-major,
 * then are copied into c by 16 x 16 transposes. Every element is still acc =
 * bias[o] (or 0), then acc = fma(b[k, p], a[o, k], acc) for k ascending, chunk
 * by chunk through ct: the bits of the other tiles (a product is commutative). */
#define QCC_T_MR 6   /* 24 accumulators, 4 weight vectors and a broadcast: 29 registers
                        (7 positions took 33: one accumulator lived on the stack) */
#define QCC_T_NR 64

/* One depth step of a 6 x 64 tile with the channels in the lanes: the 4 weight
 * vectors of depth k, then each position's value at offset `o` of its pointer
 * broadcast into 4 FMAs (qcc_kern_t_avx512). */
#define QCC_T_STEP(k, o)                                                  \
    do {                                                                  \
        const float *w_ = wp + (ptrdiff_t)(k) * QCC_T_NR;                 \
        const __m512 w0 = _mm512_loadu_ps(w_), w1 = _mm512_loadu_ps(w_ + 16); \
        const __m512 w2 = _mm512_loadu_ps(w_ + 32), w3 = _mm512_loadu_ps(w_ + 48); \
        const ptrdiff_t o_ = (o);                                         \
        __m512 b_;                                                        \
        QCC_T_ROW(0, p0, o_) QCC_T_ROW(1, p1, o_) QCC_T_ROW(2, p2, o_)    \
        QCC_T_ROW(3, p3, o_) QCC_T_ROW(4, p4, o_) QCC_T_ROW(5, p5, o_)    \
    } while (0)
#define QCC_T_ROW(i, pi, o)                                               \
    b_ = _mm512_set1_ps(pi[o]);                                           \
    acc[i][0] = _mm512_fmadd_ps(b_, w0, acc[i][0]);                       \
    acc[i][1] = _mm512_fmadd_ps(b_, w1, acc[i][1]);                       \
    acc[i][2] = _mm512_fmadd_ps(b_, w2, acc[i][2]);                       \
    acc[i][3] = _mm512_fmadd_ps(b_, w3, acc[i][3]);

/* ct[i*ldt + j] (i < mr positions, j < QCC_T_NR channels; ct padded to whole
 * channel blocks): acc = mode 0: 0, 1: bias[j] (j < nch), 2: ct[i*ldt + j]; then
 * acc = fma(ptr[i][kofs[k]], wp[k*QCC_T_NR + j], acc) for k < kc. */
static void qcc_kern_t_avx512(int kc, const float *wp, const float *const *ptr,
                              const ptrdiff_t *kofs, int mr, float *ct, ptrdiff_t ldt,
                              const float *bias, int nch, int mode)
{
    __m512 acc[QCC_T_MR][4];
    const float *p0 = ptr[0], *p1 = ptr[mr > 1 ? 1 : 0], *p2 = ptr[mr > 2 ? 2 : 0];
    const float *p3 = ptr[mr > 3 ? 3 : 0], *p4 = ptr[mr > 4 ? 4 : 0], *p5 = ptr[mr > 5 ? 5 : 0];
    int i, h, k;
    for (h = 0; h < 4; h++) {
        __m512 init = _mm512_setzero_ps();
        if (mode == 1) {
            const int left = nch - 16 * h;
            const __mmask16 m = left >= 16 ? 0xFFFF : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
            init = _mm512_maskz_loadu_ps(m, bias + 16 * h);
        }
        for (i = 0; i < QCC_T_MR; i++)
            acc[i][h] = mode == 2 && i < mr ? _mm512_load_ps(ct + i * ldt + 16 * h) : init;
    }
    for (k = 0; k < kc; k++) QCC_T_STEP(k, kofs[k]);
    for (i = 0; i < mr; i++)
        for (h = 0; h < 4; h++) _mm512_store_ps(ct + i * ldt + 16 * h, acc[i][h]);
}

#undef QCC_T_ROW
#undef QCC_T_STEP

/* The epilogue of the transposed row stored at c + at (qcc_tr_act_avx512). */
typedef struct {
    const qcc_act *act;
    const float *add;   /* the residual at c, or NULL */
} qcc_tr_act_ctx;

QCC_GINLINE __m512 qcc_tr_act_row(const void *ctx, __m512 v, ptrdiff_t at, __mmask16 m)
{
    const qcc_tr_act_ctx *a = (const qcc_tr_act_ctx *)ctx;
    return qcc_act16_avx512(a->act, v, a->add ? a->add + at : NULL, m);
}

/* qcc_tr_copy_avx512 (c[o*ldc + p] = ct[p*ldt + o]) with the epilogue `act`
 * (qcc_act_in_kernel) applied to each transposed row of 16 positions in its register
 * before it is stored. */
static void qcc_tr_act_avx512(const float *ct, ptrdiff_t ldt, float *c, ptrdiff_t ldc,
                              int rows, int cols, const qcc_act *act)
{
    qcc_tr_act_ctx ctx;
    ctx.act = act;
    ctx.add = act->add != NULL ? act->add + (c - act->base) : NULL;
    qcc_tr_copy_row_avx512(ct, ldt, c, ldc, rows, cols, qcc_tr_act_row, &ctx);
}

/* The tiles [g0, g1) (g1 - g0 <= QCC_T_GROUP) of channel block b, all depth chunks,
 * summed in ct, then copied out with the epilogue (acts: in registers). */
QCC_GINLINE void qcc_t_group(const qcc_gemm_job *job, int b, int g0, int g1, float *ct,
                             int acts)
{
    const qcc_gemm *g = job->g;
    const ptrdiff_t mpad = (ptrdiff_t)job->cblocks * QCC_T_NR;
    const int nch = g->m - b * QCC_T_NR;
    const int o0 = b * QCC_T_NR, o1 = nch < QCC_T_NR ? g->m : o0 + QCC_T_NR;
    const int c0 = g0 * QCC_T_MR, c1 = g1 * QCC_T_MR < g->n ? g1 * QCC_T_MR : g->n;
    float *c = g->c + (ptrdiff_t)o0 * g->ldc + c0;
    const float *ptr[QCC_T_MR];
    int i, tile, j;
    for (i = 0; i < job->kchunks; i++) {
        const int pc = i * job->kcb, kc = job->kcb < g->k - pc ? job->kcb : g->k - pc;
        const int mode = pc ? 2 : g->bias ? 1 : 0;
        const float *wp = g->ap + (ptrdiff_t)pc * mpad + (ptrdiff_t)b * QCC_T_NR * kc;
        for (tile = g0; tile < g1; tile++) {
            const int p0 = tile * QCC_T_MR;
            const int mr = g->n - p0 < QCC_T_MR ? g->n - p0 : QCC_T_MR;
            for (j = 0; j < mr; j++) ptr[j] = g->src + qcc_position(&g->pos, p0 + j);
            qcc_kern_t_avx512(kc, wp, ptr, g->kofs + pc, mr,
                              ct + (ptrdiff_t)(p0 - c0) * QCC_T_NR, QCC_T_NR,
                              g->bias ? g->bias + o0 : NULL, nch, mode);
        }
    }
    if (acts) {
        qcc_tr_act_avx512(ct, QCC_T_NR, c, g->ldc, o1 - o0, c1 - c0, g->act);
        return;
    }
    qcc_tr_copy_avx512(ct, QCC_T_NR, c, g->ldc, o1 - o0, c1 - c0);
    qcc_activate(g->act, c, g->ldc, o1 - o0, c1 - c0);
}

/* Tiles of a by-channels job until none is left (every thread of the job does this),
 * in claims of qcc_t_claim. */
static void qcc_gemm_t_work(void *arg)
{
    qcc_gemm_job *job = (qcc_gemm_job *)arg;
    const int acts = qcc_act_in_kernel(job->g->act);
    float ct[QCC_T_GROUP * QCC_T_MR * QCC_T_NR] __attribute__((aligned(64)));
    int b, t0, n;
    while ((n = qcc_t_claim(&job->next, job->cblocks, job->ptiles, job->width, &b, &t0)) > 0)
        qcc_t_group(job, b, t0, t0 + n, ct, acts);
}

#pragma GCC pop_options

#endif
