/* Checks the hard-swish of runtime/_common.h's qcc_act_avx512 against the
 * division form of runtime/_common.h (qcc_epilogue_run: v * clip(v / 6 + 0.5, 0, 1))
 * for every float32 v, bit for bit (NaN for NaN): v / 6 as a product with an FMA
 * correction, the clamp as min(1, max(0, t)). On an AVX-512 machine:
 *
 *     gcc -O2 -mavx512f -mavx512dq -mfma -ffp-contract=off tools/verify/hswish_div.c \
 *         -o /tmp/hswish_div && /tmp/hswish_div
 *
 * prints the mismatches (0; about a second). */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>

static __m512 clamp01(__m512 t)
{
    const __m512 z = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
    t = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(t, z, _CMP_LT_OQ), t, z);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(t, one, _CMP_GT_OQ), t, one);
}

int main(void)
{
    const __m512 six = _mm512_set1_ps(6.0f), r = _mm512_set1_ps(1.0f / 6.0f);
    const __m512 half = _mm512_set1_ps(0.5f);
    __m512i bits = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    unsigned long bad = 0;
    uint64_t i;
    for (i = 0; i < (1ull << 32); i += 16) {
        const __m512 v = _mm512_castsi512_ps(bits);
        const __m512 want = _mm512_mul_ps(v, clamp01(_mm512_add_ps(_mm512_div_ps(v, six), half)));
        __m512 q = _mm512_mul_ps(v, r);
        const __m512 e = _mm512_fnmadd_ps(q, six, v);
        __m512 got;
        __mmask16 same, nan;
        q = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(e, e, _CMP_ORD_Q), q, _mm512_fmadd_ps(e, r, q));
        got = _mm512_mul_ps(v, _mm512_min_ps(_mm512_set1_ps(1.0f),
                                             _mm512_max_ps(_mm512_setzero_ps(),
                                                           _mm512_add_ps(q, half))));
        same = _mm512_cmpeq_epi32_mask(_mm512_castps_si512(got), _mm512_castps_si512(want));
        nan = _mm512_cmp_ps_mask(want, want, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(got, got, _CMP_UNORD_Q);
        bad += (unsigned long)__builtin_popcount((unsigned)(__mmask16)~(same | nan));
        bits = _mm512_add_epi32(bits, _mm512_set1_epi32(16));
    }
    printf("hard-swish mismatches over all 2^32 float32 inputs: %lu\n", bad);
    return bad != 0;
}
