/* Softmax rows on AVX-512 (included by runtime/_norm_impl.h, after the AVX-512 build of
 * _erf_simd.h): qcc_softmax_rows_c's float32 operations in its order, so its bits.
 *
 *   max:  16 lanes that start at x[0] and take x[i + j] when it is greater (vmaxps
 *         keeps its second operand on NaN or equal: `x > lane ? x : lane`), the last
 *         n % 16 elements one by one, then the lanes in order;
 *   exp:  exp(x - m) of QCC_ERF_NV blocks of 16 side by side (qcc_exp_vec_avx512: the
 *         compiler's loop of one vector waited on the polynomial's latency), each block
 *         added to the 16 lane sums in order; the last n % 64 elements in masked
 *         vectors (lanes past n read m), their whole blocks added to the lanes, the
 *         last n % 16 summed into s one by one; then s += lanes[0], ..., lanes[15];
 *   last: y = e * (1 / s), then the fake-quant `fq` (qcc_fq_one lane for lane: qcc_fq16).
 * The compiler's clone of the scalar code took 140 us for ViT-Tiny's 3 x 197 x 197
 * scores (its max loop did not vectorize; its exp ran one vector at a time). */

#ifndef QCC_SOFTMAX_AVX512_H
#define QCC_SOFTMAX_AVX512_H

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")

static inline __attribute__((always_inline)) __mmask16 qcc_sm_mask(ptrdiff_t left)
{
    return left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1u);
}

/* The fake-quant (qcc_fq16) of the 16 elements at p (the lanes of mask k), in place. */
static inline __attribute__((always_inline)) void qcc_sm_fq(float *p, __mmask16 k, const qcc_fq16_k *f)
{
    _mm512_mask_storeu_ps(p, k, qcc_fq16(_mm512_maskz_loadu_ps(k, p), f));
}

/* `G` rows (1 to QCC_SM_G) of n elements side by side, each row's operations those
 * above in their order: the rows' chains of dependent operations (the max's, the
 * 16 lanes' max and sum, the tail's sum) overlap instead of waiting on each other
 * (ViT-Tiny's 3 x 197 x 197 scores at one thread: 95 -> 81-88 us; rows of 197
 * wait on those chains a good part of their time). */
#define QCC_SM_G 4
static inline __attribute__((always_inline)) void qcc_sm_rows_g(const float *x, float *y,
                                                                ptrdiff_t n, const int G)
{
    __m512 lm[QCC_SM_G], l[QCC_SM_G], v[QCC_ERF_NV], e[QCC_ERF_NV];
    float lanes[QCC_SM_G][16], tail[QCC_SM_G][16 * QCC_ERF_NV], m[QCC_SM_G], s[QCC_SM_G];
    const ptrdiff_t rest = n % (16 * QCC_ERF_NV), whole = rest / 16;
    ptrdiff_t i, j;
    int g;
    for (g = 0; g < G; g++) {
        lm[g] = _mm512_set1_ps(x[g * n]);
        l[g] = _mm512_setzero_ps();
        m[g] = x[g * n];
        s[g] = 0.0f;
    }
    for (i = 0; i + 16 <= n; i += 16)
        for (g = 0; g < G; g++) lm[g] = _mm512_max_ps(_mm512_loadu_ps(x + g * n + i), lm[g]);
    for (; i < n; i++)
        for (g = 0; g < G; g++) m[g] = x[g * n + i] > m[g] ? x[g * n + i] : m[g];
    for (g = 0; g < G; g++) _mm512_storeu_ps(lanes[g], lm[g]);
    for (j = 0; j < 16; j++)
        for (g = 0; g < G; g++) m[g] = lanes[g][j] > m[g] ? lanes[g][j] : m[g];
    for (g = 0; g < G; g++) {
        const float *xr = x + g * n;
        float *yr = y + g * n;
        const __m512 vm = _mm512_set1_ps(m[g]);
        for (i = 0; i + 16 * QCC_ERF_NV <= n; i += 16 * QCC_ERF_NV) {
            QCC_EACH(v[J] = _mm512_sub_ps(_mm512_loadu_ps(xr + i + 16 * J), vm));
            qcc_exp_vec_avx512(v, e);
            QCC_EACH(_mm512_storeu_ps(yr + i + 16 * J, e[J]));
            QCC_EACH(l[g] = _mm512_add_ps(l[g], e[J]));
        }
        if (rest) {
            QCC_EACH(v[J] = _mm512_sub_ps(
                         _mm512_mask_loadu_ps(vm, qcc_sm_mask(rest - 16 * J), xr + i + 16 * J), vm));
            qcc_exp_vec_avx512(v, e);
            QCC_EACH(_mm512_mask_storeu_ps(yr + i + 16 * J, qcc_sm_mask(rest - 16 * J), e[J]));
            QCC_EACH(if (J < whole) l[g] = _mm512_add_ps(l[g], e[J]));
            QCC_EACH(_mm512_storeu_ps(tail[g] + 16 * J, e[J]));
        }
        _mm512_storeu_ps(lanes[g], l[g]);
    }
    for (j = 16 * whole; j < rest; j++)
        for (g = 0; g < G; g++) s[g] += tail[g][j];
    for (j = 0; j < 16; j++)
        for (g = 0; g < G; g++) s[g] += lanes[g][j];
    for (g = 0; g < G; g++) {
        float *yr = y + g * n;
        const __m512 vs = _mm512_set1_ps(1.0f / s[g]);
        for (i = 0; i + 16 <= n; i += 16)
            _mm512_storeu_ps(yr + i, _mm512_mul_ps(_mm512_loadu_ps(yr + i), vs));
        if (i < n) {
            const __mmask16 k = qcc_sm_mask(n - i);
            _mm512_mask_storeu_ps(yr + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, yr + i), vs));
        }
    }
}

static void qcc_softmax_rows_avx512(const float *x, float *y, ptrdiff_t rows, ptrdiff_t n,
                                    const qcc_norm_fq *fq)
{
    ptrdiff_t r, i;
    for (r = 0; r + QCC_SM_G <= rows; r += QCC_SM_G) qcc_sm_rows_g(x + r * n, y + r * n, n, QCC_SM_G);
    for (; r < rows; r++) qcc_sm_rows_g(x + r * n, y + r * n, n, 1);
    if (fq != NULL) {
        /* after the rows, in one loop over them (still in cache) */
        const ptrdiff_t total = rows * n;
        qcc_fq16_k f;
        qcc_fq16_of(&f, fq->s, fq->z, fq->qmin, fq->qmax);
        for (i = 0; i + 16 <= total; i += 16) qcc_sm_fq(y + i, 0xFFFF, &f);
        if (i < total) qcc_sm_fq(y + i, qcc_sm_mask(total - i), &f);
    }
}
#undef QCC_SM_G

#pragma GCC pop_options
#endif
