/* The GEMM's vector micro-kernels (included by _gemm_impl.h, x86 only): AVX2+FMA
 * (6 x 16 tiles) and AVX-512 (8 x 32), and their matrix-vector products of narrow GEMMs. */

#ifndef QCC_GEMM_AVX_H
#define QCC_GEMM_AVX_H

#pragma GCC push_options
#pragma GCC target("avx2,fma")

#define QCC_AVX2_MR 6
#define QCC_AVX2_NR 16
static const int32_t qcc_avx2_masks[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

/* The twelve accumulators are named variables, not an array: GCC kept an array's
 * elements in registers but also stored every one of them to the stack at each
 * step of k (12 stores a step, twice the time of its 12 FMAs on AMD Zen 3). Whole
 * tiles load and store without masks, partial ones store with qcc_store_first_avx2. */
QCC_GINLINE void qcc_kern_avx2_body(int kc, const float *ap, const float *bp, float *c,
                                    ptrdiff_t ldc, int mr, int nr, const float *bias, int mode,
                                    const qcc_act *act)
{
    const int n0 = nr < 8 ? nr : 8, n1 = nr > 8 ? nr - 8 : 0;
    const __m256i k0 = _mm256_loadu_si256((const __m256i *)(qcc_avx2_masks + 8 - n0));
    const __m256i k1 = _mm256_loadu_si256((const __m256i *)(qcc_avx2_masks + 8 - n1));
    __m256 r00, r01, r10, r11, r20, r21, r30, r31, r40, r41, r50, r51;
    int k;
#define QCC_A2_INIT(i)                                                       \
    if (i < mr && mode == 2 && nr == 16) {                                   \
        r##i##0 = _mm256_loadu_ps(c + i * ldc);                              \
        r##i##1 = _mm256_loadu_ps(c + i * ldc + 8);                          \
    } else if (i < mr && mode == 2) {                                        \
        r##i##0 = _mm256_maskload_ps(c + i * ldc, k0);                       \
        r##i##1 = _mm256_maskload_ps(c + i * ldc + 8, k1);                   \
    } else {                                                                 \
        r##i##0 = r##i##1 = _mm256_set1_ps(i < mr && mode == 1 ? bias[i] : 0.0f); \
    }
    QCC_A2_INIT(0) QCC_A2_INIT(1) QCC_A2_INIT(2) QCC_A2_INIT(3) QCC_A2_INIT(4) QCC_A2_INIT(5)
#undef QCC_A2_INIT
    for (k = 0; k < kc; k++) {
        const float *ak = ap + (ptrdiff_t)k * QCC_AVX2_MR;
        const __m256 b0 = _mm256_load_ps(bp + (ptrdiff_t)k * 16);
        const __m256 b1 = _mm256_load_ps(bp + (ptrdiff_t)k * 16 + 8);
        __m256 av;
#define QCC_A2_FMA(i)                                \
    av = _mm256_broadcast_ss(ak + i);                \
    r##i##0 = _mm256_fmadd_ps(av, b0, r##i##0);      \
    r##i##1 = _mm256_fmadd_ps(av, b1, r##i##1);
        QCC_A2_FMA(0) QCC_A2_FMA(1) QCC_A2_FMA(2) QCC_A2_FMA(3) QCC_A2_FMA(4) QCC_A2_FMA(5)
#undef QCC_A2_FMA
    }
    /* qcc_epilogue_run's residual add (rows past mr are dropped), then its relu
     * (v > 0 ? v : v == v ? 0 : v: NaN stays, -0 becomes +0), hard-swish and clip
     * (v < lo ? lo : v, then v > hi ? hi : v), lane by lane */
    if (act != NULL && act->add != NULL) {
        const float *ad = act->add + (c - act->base);
#define QCC_A2_ADD(i)                                                                    \
    if (i < mr && nr == 16) {                                                            \
        r##i##0 = _mm256_add_ps(r##i##0, _mm256_loadu_ps(ad + i * ldc));                 \
        r##i##1 = _mm256_add_ps(r##i##1, _mm256_loadu_ps(ad + i * ldc + 8));             \
    } else if (i < mr) {                                                                 \
        r##i##0 = _mm256_add_ps(r##i##0, _mm256_maskload_ps(ad + i * ldc, k0));          \
        r##i##1 = _mm256_add_ps(r##i##1, _mm256_maskload_ps(ad + i * ldc + 8, k1));      \
    }
        QCC_A2_ADD(0) QCC_A2_ADD(1) QCC_A2_ADD(2) QCC_A2_ADD(3) QCC_A2_ADD(4) QCC_A2_ADD(5)
#undef QCC_A2_ADD
    }
    if (act != NULL && act->kind == QCC_ACT_RELU) {
        const __m256 z = _mm256_setzero_ps();
#define QCC_A2_RELU(v) v = _mm256_and_ps(v, _mm256_or_ps(_mm256_cmp_ps(v, z, _CMP_GT_OQ), \
                                                         _mm256_cmp_ps(v, v, _CMP_UNORD_Q)))
        QCC_A2_RELU(r00); QCC_A2_RELU(r01); QCC_A2_RELU(r10); QCC_A2_RELU(r11);
        QCC_A2_RELU(r20); QCC_A2_RELU(r21); QCC_A2_RELU(r30); QCC_A2_RELU(r31);
        QCC_A2_RELU(r40); QCC_A2_RELU(r41); QCC_A2_RELU(r50); QCC_A2_RELU(r51);
#undef QCC_A2_RELU
    } else if (act != NULL && act->kind == QCC_ACT_HARD_SWISH) {
        /* t = v / 6 + 0.5 (a division and an add: nothing to contract), clamped to
         * [0, 1] (t < 0 ? 0 : t, then t > 1 ? 1 : t), then v * t */
        const __m256 z = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
        const __m256 six = _mm256_set1_ps(6.0f), half = _mm256_set1_ps(0.5f);
        __m256 t;
#define QCC_A2_HSWISH(v)                                                   \
    t = _mm256_add_ps(_mm256_div_ps(v, six), half);                        \
    t = _mm256_blendv_ps(t, z, _mm256_cmp_ps(t, z, _CMP_LT_OQ));           \
    t = _mm256_blendv_ps(t, one, _mm256_cmp_ps(t, one, _CMP_GT_OQ));       \
    v = _mm256_mul_ps(v, t)
        QCC_A2_HSWISH(r00); QCC_A2_HSWISH(r01); QCC_A2_HSWISH(r10); QCC_A2_HSWISH(r11);
        QCC_A2_HSWISH(r20); QCC_A2_HSWISH(r21); QCC_A2_HSWISH(r30); QCC_A2_HSWISH(r31);
        QCC_A2_HSWISH(r40); QCC_A2_HSWISH(r41); QCC_A2_HSWISH(r50); QCC_A2_HSWISH(r51);
#undef QCC_A2_HSWISH
    } else if (act != NULL && act->kind == QCC_ACT_CLIP) {
        const __m256 lo = _mm256_set1_ps(act->lo), hi = _mm256_set1_ps(act->hi);
#define QCC_A2_CLIP(v)                                                   \
    v = _mm256_blendv_ps(v, lo, _mm256_cmp_ps(v, lo, _CMP_LT_OQ));       \
    v = _mm256_blendv_ps(v, hi, _mm256_cmp_ps(v, hi, _CMP_GT_OQ))
        QCC_A2_CLIP(r00); QCC_A2_CLIP(r01); QCC_A2_CLIP(r10); QCC_A2_CLIP(r11);
        QCC_A2_CLIP(r20); QCC_A2_CLIP(r21); QCC_A2_CLIP(r30); QCC_A2_CLIP(r31);
        QCC_A2_CLIP(r40); QCC_A2_CLIP(r41); QCC_A2_CLIP(r50); QCC_A2_CLIP(r51);
#undef QCC_A2_CLIP
    }
#define QCC_A2_STORE(i)                                          \
    if (i < mr && nr == 16) {                                    \
        _mm256_storeu_ps(c + i * ldc, r##i##0);                  \
        _mm256_storeu_ps(c + i * ldc + 8, r##i##1);              \
    } else if (i < mr) {                                         \
        qcc_store_first_avx2(c + i * ldc, r##i##0, n0);          \
        qcc_store_first_avx2(c + i * ldc + 8, r##i##1, n1);      \
    }
    QCC_A2_STORE(0) QCC_A2_STORE(1) QCC_A2_STORE(2) QCC_A2_STORE(3) QCC_A2_STORE(4)
    QCC_A2_STORE(5)
#undef QCC_A2_STORE
}

static void qcc_kern_avx2(int kc, const float *ap, const float *bp, float *c, ptrdiff_t ldc,
                          int mr, int nr, const float *bias, int mode)
{
    qcc_kern_avx2_body(kc, ap, bp, c, ldc, mr, nr, bias, mode, NULL);
}

static void qcc_kern_avx2_act(int kc, const float *ap, const float *bp, float *c, ptrdiff_t ldc,
                              int mr, int nr, const float *bias, int mode, const qcc_act *act)
{
    qcc_kern_avx2_body(kc, ap, bp, c, ldc, mr, nr, bias, mode, act);
}

static void qcc_copy_avx2(float *dst, const float *src, int len, ptrdiff_t sw)
{
    int t = 0;
    if (sw == 1) {
        for (; t + 8 <= len; t += 8) _mm256_storeu_ps(dst + t, _mm256_loadu_ps(src + t));
        if (t < len) {
            const __m256i m = _mm256_loadu_si256((const __m256i *)(qcc_avx2_masks + 8 - (len - t)));
            qcc_store_first_avx2(dst + t, _mm256_maskload_ps(src + t, m), len - t);
        }
        return;
    }
    for (; t < len; t++) dst[t] = src[t * sw];
}

static void qcc_work_avx2(void *job)
{
    qcc_gemm_work((qcc_gemm_job *)job, QCC_AVX2_MR, QCC_AVX2_NR, qcc_kern_avx2,
                  qcc_kern_avx2_act, qcc_copy_avx2);
}

/* A GEMM of a few columns (qcc_gemm_narrow): 8 rows per vector, a's columns gathered. */
static void qcc_gemv_avx2(const qcc_gemm *g)
{
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                           _mm256_set1_epi32((int)g->lda));
    int p, o, k;
    for (p = 0; p < g->n; p++) {
        const float *b = g->src + qcc_position(&g->pos, p);
        for (o = 0; o < g->m; o += 8) {
            const int rows = g->m - o < 8 ? g->m - o : 8;
            const __m256i mask = _mm256_loadu_si256((const __m256i *)(qcc_avx2_masks + 8 - rows));
            const float *a = g->a + (ptrdiff_t)o * g->lda;
            __m256 acc = g->bias ? _mm256_maskload_ps(g->bias + o, mask) : _mm256_setzero_ps();
            float out[8];
            int i;
            for (k = 0; k < g->k; k++) {
                const __m256 av = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), a + k, idx,
                                                           _mm256_castsi256_ps(mask), 4);
                acc = _mm256_fmadd_ps(av, _mm256_set1_ps(b[g->kofs[k]]), acc);
            }
            _mm256_storeu_ps(out, acc);
            for (i = 0; i < rows; i++) g->c[(ptrdiff_t)(o + i) * g->ldc + p] = out[i];
        }
    }
}

#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")

#define QCC_AVX512_MR 8
#define QCC_AVX512_NR 32

/* qcc_epilogue_run's residual add (the lanes of mask m at `add`, when not NULL) and
 * activation (qcc_act_in_kernel: relu, clip, hard-swish; qcc_act_avx512) on 16
 * lanes. */
QCC_GINLINE __m512 qcc_act16_avx512(const qcc_act *act, __m512 v, const float *add, __mmask16 m)
{
    if (add != NULL) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, add));
    return qcc_act_avx512(act, v);
}

QCC_GINLINE void qcc_kern_avx512_body(int kc, const float *ap, const float *bp, float *c,
                                      ptrdiff_t ldc, int mr, int nr, const float *bias,
                                      int mode, const qcc_act *act)
{
    __m512 acc[QCC_AVX512_MR][2];
    const __mmask16 k0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
    const __mmask16 k1 = nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
    int i, k;
    for (i = 0; i < QCC_AVX512_MR; i++) {
        if (i < mr && mode == 2) {
            acc[i][0] = _mm512_maskz_loadu_ps(k0, c + i * ldc);
            acc[i][1] = _mm512_maskz_loadu_ps(k1, c + i * ldc + 16);
        } else {
            acc[i][0] = acc[i][1] = _mm512_set1_ps(i < mr && mode == 1 ? bias[i] : 0.0f);
        }
    }
    for (k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(bp + (ptrdiff_t)k * 32);
        const __m512 b1 = _mm512_load_ps(bp + (ptrdiff_t)k * 32 + 16);
        for (i = 0; i < QCC_AVX512_MR; i++) {
            const __m512 av = _mm512_set1_ps(ap[(ptrdiff_t)k * QCC_AVX512_MR + i]);
            acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
        }
    }
    if (act != NULL) {
        const float *ad = act->add != NULL ? act->add + (c - act->base) : NULL;
        for (i = 0; i < QCC_AVX512_MR; i++)
            if (i < mr) {
                acc[i][0] = qcc_act16_avx512(act, acc[i][0], ad ? ad + i * ldc : NULL, k0);
                acc[i][1] = qcc_act16_avx512(act, acc[i][1], ad ? ad + i * ldc + 16 : NULL, k1);
            }
    }
    for (i = 0; i < QCC_AVX512_MR; i++)
        if (i < mr) {
            _mm512_mask_storeu_ps(c + i * ldc, k0, acc[i][0]);
            _mm512_mask_storeu_ps(c + i * ldc + 16, k1, acc[i][1]);
        }
}

static void qcc_kern_avx512(int kc, const float *ap, const float *bp, float *c, ptrdiff_t ldc,
                            int mr, int nr, const float *bias, int mode)
{
    qcc_kern_avx512_body(kc, ap, bp, c, ldc, mr, nr, bias, mode, NULL);
}

static void qcc_kern_avx512_act(int kc, const float *ap, const float *bp, float *c,
                                ptrdiff_t ldc, int mr, int nr, const float *bias, int mode,
                                const qcc_act *act)
{
    qcc_kern_avx512_body(kc, ap, bp, c, ldc, mr, nr, bias, mode, act);
}

static void qcc_copy_avx512(float *dst, const float *src, int len, ptrdiff_t sw)
{
    int t = 0;
    if (sw == 1) {
        for (; t + 16 <= len; t += 16) _mm512_storeu_ps(dst + t, _mm512_loadu_ps(src + t));
        if (t < len) {
            const __mmask16 m = (__mmask16)((1u << (len - t)) - 1);
            _mm512_mask_storeu_ps(dst + t, m, _mm512_maskz_loadu_ps(m, src + t));
        }
        return;
    }
    for (; t < len; t++) dst[t] = src[t * sw];
}

static void qcc_work_avx512(void *job)
{
    qcc_gemm_work((qcc_gemm_job *)job, QCC_AVX512_MR, QCC_AVX512_NR, qcc_kern_avx512,
                  qcc_kern_avx512_act, qcc_copy_avx512);
}

/* A GEMM of a few columns (qcc_gemm_narrow): 16 rows per vector, a's columns gathered. */
static void qcc_gemv_avx512(const qcc_gemm *g)
{
    const __m512i idx = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32((int)g->lda));
    int p, o, k;
    for (p = 0; p < g->n; p++) {
        const float *b = g->src + qcc_position(&g->pos, p);
        for (o = 0; o < g->m; o += 16) {
            const int rows = g->m - o < 16 ? g->m - o : 16;
            const __mmask16 mask = (__mmask16)((1u << rows) - 1);
            const float *a = g->a + (ptrdiff_t)o * g->lda;
            float *c = g->c + (ptrdiff_t)o * g->ldc + p;
            __m512 acc = g->bias ? _mm512_maskz_loadu_ps(mask, g->bias + o) : _mm512_setzero_ps();
            for (k = 0; k < g->k; k++) {
                const __m512 av = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mask, idx, a + k, 4);
                acc = _mm512_fmadd_ps(av, _mm512_set1_ps(b[g->kofs[k]]), acc);
            }
            _mm512_mask_i32scatter_ps(c, mask, _mm512_mullo_epi32(
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                _mm512_set1_epi32((int)g->ldc)), acc, 4);
        }
    }
}

#pragma GCC pop_options

#endif
