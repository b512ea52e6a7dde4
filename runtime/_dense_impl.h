/* The dense layers' kernels, AVX-512 and AVX2 (included by _gemm_impl.h, x86 only,
 * after _gemm_lanes.h, whose QCC_T_* tile they use; entry point: qcc_dense_run). */

#ifndef QCC_DENSE_IMPL_H
#define QCC_DENSE_IMPL_H

#include "_dense_post.h"

typedef struct {
    const float *x, *wp, *bias;
    float *y;
    ptrdiff_t ldx, ldy;
    ptrdiff_t sx, sw, sy;               /* batch: element e's x, wp and y at e * s. */
    int m, n, k, kcb, kchunks, batch;
    int cblocks, ptiles, width, next;   /* next: tiles handed out (qcc_dense_work) */
    const qcc_dense_post *post;         /* the epilogue after the sums, or NULL (batch 1) */
} qcc_dense_job;

/* The next claim of a dense job's tiles (qcc_claim): of whole blocks of 64 outputs
 * where there are two blocks a thread or more, so that each thread reads its own
 * blocks' weights (a transformer's weights come from L3 or memory every inference:
 * claims of QCC_T_GROUP tiles had both threads pull every panel, and vit_tiny's
 * 192 -> 768 dense took 0.27 ms in the model, 0.23 now), else of QCC_T_GROUP tiles
 * at most. */
QCC_INLINE int qcc_dense_claim(qcc_dense_job *job, int *b, int *t0)
{
    const int blocks = job->batch * job->cblocks;
    const int cap = blocks >= 2 * job->width ? job->ptiles : QCC_T_GROUP;
    return qcc_claim(&job->next, blocks, job->ptiles, job->width, cap, b, t0);
}

/* The batch element of claimed block `bb` (its block of outputs left in *b), and
 * the job's pointers of that element. */
QCC_INLINE void qcc_dense_element(const qcc_dense_job *job, int *b, const float **x,
                                  const float **wp, float **y)
{
    const int e = *b / job->cblocks;
    *b -= e * job->cblocks;
    *x = job->x + e * job->sx;
    *wp = job->wp + e * job->sw;
    *y = job->y + e * job->sy;
}

/* The epilogue (job->post) of a claim's outputs: the rows of tiles t0 .. t0 + tiles
 * - 1, the outputs of block b (nch of them from b * QCC_T_NR, at most a block), once
 * their sums are whole. */
static void qcc_dense_post_rows(const qcc_dense_job *job, float *y, int b, int t0, int tiles,
                                int nch)
{
    const qcc_dense_post *q = job->post;
    const int p1 = (t0 + tiles) * QCC_T_MR < job->m ? (t0 + tiles) * QCC_T_MR : job->m;
    const int cnt = nch < QCC_T_NR ? nch : QCC_T_NR;
    const ptrdiff_t o0 = (ptrdiff_t)b * QCC_T_NR;
    int p;
    for (p = t0 * QCC_T_MR; p < p1; p++)
        q->fn(y + (ptrdiff_t)p * job->ldy + o0,
              q->res != NULL ? q->res + (ptrdiff_t)p * q->ldr + o0 : NULL, cnt, q->arg);
}

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")

/* ---- dense layers (qcc_dense_run) -----------------------------------------------
 * y[p, o] = sum_k x[p, k] * w[o, k] (+ bias[o]) with the rows of x (tokens) as the
 * positions of qcc_kern_t_avx512's tile and the outputs in the lanes: y is written
 * where it lies, row-major, with no transposing copy (the output layout of a dense
 * layer is the tile's own), and x is read in place by broadcasts. Each element is
 * acc = 0, then acc = fma(x[p, k], w[o, k], acc) for k ascending, chunk by chunk
 * through y, then acc + bias[o]: whatever the tiling, task or thread. */

/* y[i*ldy + j] (i < mr rows, j < nch and < 16 * NV outputs of a panel of QCC_T_NR):
 * acc = 0 (`load` 0) or y[i*ldy + j] (1); then acc = fma(ptr[i][k], wp[k*QCC_T_NR +
 * j], acc) for k < kc; then, with `bias` (the last chunk), acc = acc + bias[j]: the
 * sum rounded, plus the bias, as ONNX Gemm's C operand and as a dense followed by an
 * Add. NV = 4 for a whole panel; a last block of at most 16 * NV outputs (NV < 4)
 * computes only the NV vectors that hold outputs, the same operations on each of
 * them, so the same bits (attention's 197 keys leave 5 in their last block: 4
 * vectors of FMAs for 1 of outputs). */
#define QCC_D_KERN(NAME, NV)                                                             \
    static void NAME(int kc, const float *wp, const float *const *ptr, int mr, float *y, \
                     ptrdiff_t ldy, const float *bias, int nch, int load)                \
    {                                                                                    \
        __m512 acc[QCC_T_MR][NV], w[NV];                                                 \
        __mmask16 mk[NV];                                                                \
        const float *p[QCC_T_MR];                                                        \
        int i, h, k;                                                                     \
        for (i = 0; i < QCC_T_MR; i++) p[i] = ptr[i < mr ? i : 0];                       \
        for (h = 0; h < NV; h++) {                                                       \
            const int left = nch - 16 * h;                                               \
            mk[h] = left >= 16 ? 0xFFFF : left <= 0 ? 0 : (__mmask16)((1u << left) - 1); \
            for (i = 0; i < QCC_T_MR; i++)                                               \
                acc[i][h] = load && i < mr ? _mm512_maskz_loadu_ps(mk[h], y + i * ldy + 16 * h) \
                                           : _mm512_setzero_ps();                        \
        }                                                                                \
        for (k = 0; k < kc; k++) {                                                       \
            for (h = 0; h < NV; h++) w[h] = _mm512_loadu_ps(wp + (ptrdiff_t)k * QCC_T_NR + 16 * h); \
            for (i = 0; i < QCC_T_MR; i++) {                                             \
                const __m512 b_ = _mm512_set1_ps(p[i][k]);                               \
                for (h = 0; h < NV; h++) acc[i][h] = _mm512_fmadd_ps(b_, w[h], acc[i][h]); \
            }                                                                            \
        }                                                                                \
        if (bias != NULL)                                                                \
            for (h = 0; h < NV; h++) {                                                   \
                const __m512 bv = _mm512_maskz_loadu_ps(mk[h], bias + 16 * h);           \
                for (i = 0; i < QCC_T_MR; i++) acc[i][h] = _mm512_add_ps(acc[i][h], bv); \
            }                                                                            \
        for (i = 0; i < mr; i++)                                                         \
            for (h = 0; h < NV; h++) _mm512_mask_storeu_ps(y + i * ldy + 16 * h, mk[h], acc[i][h]); \
    }
QCC_D_KERN(qcc_kern_d1_avx512, 1)
QCC_D_KERN(qcc_kern_d2_avx512, 2)
QCC_D_KERN(qcc_kern_d3_avx512, 3)
QCC_D_KERN(qcc_kern_d_avx512, 4)
#undef QCC_D_KERN

typedef void (*qcc_kern_d_fn)(int, const float *, const float *const *, int, float *,
                              ptrdiff_t, const float *, int, int);


/* Tiles of a dense job until none is left, in claims of qcc_dense_claim. */
static void qcc_dense_work(void *arg)
{
    qcc_dense_job *job = (qcc_dense_job *)arg;
    const ptrdiff_t mpad = (ptrdiff_t)job->cblocks * QCC_T_NR;
    const float *ptr[QCC_T_MR];
    static const qcc_kern_d_fn narrow[4] = {qcc_kern_d1_avx512, qcc_kern_d2_avx512,
                                            qcc_kern_d3_avx512, qcc_kern_d_avx512};
    int b, tt0, n;
    while ((n = qcc_dense_claim(job, &b, &tt0)) > 0) {
        const float *x, *w0;
        float *y;
        int i, tile, j, nch;
        qcc_kern_d_fn kern;
        qcc_dense_element(job, &b, &x, &w0, &y);
        nch = job->n - b * QCC_T_NR;
        kern = narrow[nch >= 64 ? 3 : (nch - 1) / 16];
        for (i = 0; i < job->kchunks; i++) {
            const int pc = i * job->kcb, kc = job->kcb < job->k - pc ? job->kcb : job->k - pc;
            const int last = pc + kc >= job->k;
            const float *wp = w0 + (ptrdiff_t)pc * mpad + (ptrdiff_t)b * QCC_T_NR * kc;
            for (tile = tt0; tile < tt0 + n; tile++) {
                const int p0 = tile * QCC_T_MR;
                const int mr = job->m - p0 < QCC_T_MR ? job->m - p0 : QCC_T_MR;
                for (j = 0; j < mr; j++) ptr[j] = x + (ptrdiff_t)(p0 + j) * job->ldx + pc;
                kern(kc, wp, ptr, mr, y + (ptrdiff_t)p0 * job->ldy + b * QCC_T_NR, job->ldy,
                     job->bias && last ? job->bias + b * QCC_T_NR : NULL, nch, pc > 0);
            }
        }
        if (job->post != NULL) qcc_dense_post_rows(job, y, b, tt0, n, nch);
    }
}

#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")

/* qcc_kern_d_avx512 on AVX2: the 16 outputs h*16.. of a panel of QCC_T_NR (its
 * weights at wp + k*QCC_T_NR + 16*h), 6 rows x 16 outputs in 12 registers; the same
 * operations in the same order, so the same bits. Partial rows of outputs load with
 * masks and store with qcc_store_first_avx2. */
static void qcc_kern_d_avx2(int kc, const float *wp, const float *const *ptr, int mr,
                            float *y, ptrdiff_t ldy, const float *bias, int nch, int load)
{
    const int n0 = nch < 8 ? (nch < 0 ? 0 : nch) : 8, n1 = nch > 16 ? 8 : nch > 8 ? nch - 8 : 0;
    const __m256i k0 = _mm256_loadu_si256((const __m256i *)(qcc_avx2_masks + 8 - n0));
    const __m256i k1 = _mm256_loadu_si256((const __m256i *)(qcc_avx2_masks + 8 - n1));
    const float *p0 = ptr[0], *p1 = ptr[mr > 1 ? 1 : 0], *p2 = ptr[mr > 2 ? 2 : 0];
    const float *p3 = ptr[mr > 3 ? 3 : 0], *p4 = ptr[mr > 4 ? 4 : 0], *p5 = ptr[mr > 5 ? 5 : 0];
    __m256 r00, r01, r10, r11, r20, r21, r30, r31, r40, r41, r50, r51;
    int k;
#define QCC_D2_INIT(i)                                                      \
    if (load && i < mr) {                                                   \
        r##i##0 = _mm256_maskload_ps(y + i * ldy, k0);                      \
        r##i##1 = _mm256_maskload_ps(y + i * ldy + 8, k1);                  \
    } else {                                                                \
        r##i##0 = r##i##1 = _mm256_setzero_ps();                            \
    }
    QCC_D2_INIT(0) QCC_D2_INIT(1) QCC_D2_INIT(2) QCC_D2_INIT(3) QCC_D2_INIT(4) QCC_D2_INIT(5)
#undef QCC_D2_INIT
    for (k = 0; k < kc; k++) {
        const __m256 w0 = _mm256_loadu_ps(wp + (ptrdiff_t)k * QCC_T_NR);
        const __m256 w1 = _mm256_loadu_ps(wp + (ptrdiff_t)k * QCC_T_NR + 8);
        __m256 b;
#define QCC_D2_FMA(i)                                \
    b = _mm256_broadcast_ss(p##i + k);               \
    r##i##0 = _mm256_fmadd_ps(b, w0, r##i##0);       \
    r##i##1 = _mm256_fmadd_ps(b, w1, r##i##1);
        QCC_D2_FMA(0) QCC_D2_FMA(1) QCC_D2_FMA(2) QCC_D2_FMA(3) QCC_D2_FMA(4) QCC_D2_FMA(5)
#undef QCC_D2_FMA
    }
    if (bias != NULL) {
        const __m256 b0 = _mm256_maskload_ps(bias, k0), b1 = _mm256_maskload_ps(bias + 8, k1);
#define QCC_D2_BIAS(i) r##i##0 = _mm256_add_ps(r##i##0, b0); r##i##1 = _mm256_add_ps(r##i##1, b1);
        QCC_D2_BIAS(0) QCC_D2_BIAS(1) QCC_D2_BIAS(2) QCC_D2_BIAS(3) QCC_D2_BIAS(4) QCC_D2_BIAS(5)
#undef QCC_D2_BIAS
    }
#define QCC_D2_STORE(i)                                          \
    if (i < mr && n1 == 8) {                                     \
        _mm256_storeu_ps(y + i * ldy, r##i##0);                  \
        _mm256_storeu_ps(y + i * ldy + 8, r##i##1);              \
    } else if (i < mr) {                                         \
        qcc_store_first_avx2(y + i * ldy, r##i##0, n0);          \
        qcc_store_first_avx2(y + i * ldy + 8, r##i##1, n1);      \
    }
    QCC_D2_STORE(0) QCC_D2_STORE(1) QCC_D2_STORE(2) QCC_D2_STORE(3) QCC_D2_STORE(4)
    QCC_D2_STORE(5)
#undef QCC_D2_STORE
}

/* qcc_dense_work on AVX2: each claim's tiles 16 outputs at a time (a depth chunk's
 * 16 x kc weights stay in L1 across the tiles). */
static void qcc_dense_work_avx2(void *arg)
{
    qcc_dense_job *job = (qcc_dense_job *)arg;
    const ptrdiff_t mpad = (ptrdiff_t)job->cblocks * QCC_T_NR;
    const float *ptr[QCC_T_MR];
    int b, tt0, n;
    while ((n = qcc_dense_claim(job, &b, &tt0)) > 0) {
        const float *x, *w0;
        float *y;
        int i, tile, j, h, nch;
        qcc_dense_element(job, &b, &x, &w0, &y);
        nch = job->n - b * QCC_T_NR;
        for (i = 0; i < job->kchunks; i++) {
            const int pc = i * job->kcb, kc = job->kcb < job->k - pc ? job->kcb : job->k - pc;
            const int last = pc + kc >= job->k;
            const float *wp = w0 + (ptrdiff_t)pc * mpad + (ptrdiff_t)b * QCC_T_NR * kc;
            for (h = 0; h < 4 && 16 * h < nch; h++)
                for (tile = tt0; tile < tt0 + n; tile++) {
                    const int p0 = tile * QCC_T_MR;
                    const int mr = job->m - p0 < QCC_T_MR ? job->m - p0 : QCC_T_MR;
                    for (j = 0; j < mr; j++) ptr[j] = x + (ptrdiff_t)(p0 + j) * job->ldx + pc;
                    qcc_kern_d_avx2(kc, wp + 16 * h, ptr, mr,
                                    y + (ptrdiff_t)p0 * job->ldy + b * QCC_T_NR + 16 * h,
                                    job->ldy, job->bias && last ? job->bias + b * QCC_T_NR + 16 * h : NULL,
                                    nch - 16 * h, pc > 0);
                }
        }
        if (job->post != NULL) qcc_dense_post_rows(job, y, b, tt0, n, nch);
    }
}

#pragma GCC pop_options

#endif
