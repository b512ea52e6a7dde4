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

static void qcc_softmax_rows_avx512(const float *x, float *y, ptrdiff_t rows, ptrdiff_t n,
                                    const qcc_norm_fq *fq)
{
    ptrdiff_t r, i, j;
    for (r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        __m512 lm = _mm512_set1_ps(xr[0]), l = _mm512_setzero_ps(), vm, vs, v[QCC_ERF_NV],
               e[QCC_ERF_NV];
        float lanes[16], tail[16 * QCC_ERF_NV], m = xr[0], s = 0.0f;
        for (i = 0; i + 16 <= n; i += 16) lm = _mm512_max_ps(_mm512_loadu_ps(xr + i), lm);
        for (; i < n; i++) m = xr[i] > m ? xr[i] : m;
        _mm512_storeu_ps(lanes, lm);
        for (j = 0; j < 16; j++) m = lanes[j] > m ? lanes[j] : m;
        vm = _mm512_set1_ps(m);
        for (i = 0; i + 16 * QCC_ERF_NV <= n; i += 16 * QCC_ERF_NV) {
            QCC_EACH(v[J] = _mm512_sub_ps(_mm512_loadu_ps(xr + i + 16 * J), vm));
            qcc_exp_vec_avx512(v, e);
            QCC_EACH(_mm512_storeu_ps(yr + i + 16 * J, e[J]));
            QCC_EACH(l = _mm512_add_ps(l, e[J]));
        }
        if (i < n) {
            const ptrdiff_t left = n - i, whole = left / 16;
            QCC_EACH(v[J] = _mm512_sub_ps(
                         _mm512_mask_loadu_ps(vm, qcc_sm_mask(left - 16 * J), xr + i + 16 * J), vm));
            qcc_exp_vec_avx512(v, e);
            QCC_EACH(_mm512_mask_storeu_ps(yr + i + 16 * J, qcc_sm_mask(left - 16 * J), e[J]));
            QCC_EACH(if (J < whole) l = _mm512_add_ps(l, e[J]));
            QCC_EACH(_mm512_storeu_ps(tail + 16 * J, e[J]));
            for (j = 16 * whole; j < left; j++) s += tail[j];
        }
        _mm512_storeu_ps(lanes, l);
        for (j = 0; j < 16; j++) s += lanes[j];
        vs = _mm512_set1_ps(1.0f / s);
        for (i = 0; i + 16 <= n; i += 16)
            _mm512_storeu_ps(yr + i, _mm512_mul_ps(_mm512_loadu_ps(yr + i), vs));
        if (i < n) {
            const __mmask16 k = qcc_sm_mask(n - i);
            _mm512_mask_storeu_ps(yr + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, yr + i), vs));
        }
    }
    if (fq != NULL) {
        /* after the rows, in one loop over them (still in cache) */
        const ptrdiff_t total = rows * n;
        qcc_fq16_k f;
        qcc_fq16_of(&f, fq->s, fq->z, fq->qmin, fq->qmax);
        for (i = 0; i + 16 <= total; i += 16) qcc_sm_fq(y + i, 0xFFFF, &f);
        if (i < total) qcc_sm_fq(y + i, qcc_sm_mask(total - i), &f);
    }
}

#pragma GCC pop_options
#endif
