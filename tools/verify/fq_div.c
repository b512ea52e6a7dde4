/* Checks the fake-quant as the kernels compute it (runtime/_epilogue.h: qcc_fq16,
 * qcc_fq8 and qcc_fq_one; the blocked kernels', the transposes', the softmax's and
 * the epilogues') against its division form (clip(rint(v / s) + z, qmin, qmax) -
 * z) * s): v / s as the product q = v * r,
 * r = RN(1/s), clamped to +-2^22 and corrected by its exact remainder e = v - q*s
 * (an FMA) to q + e * r (an FMA); rint and the zero point at once, as the sum with
 * 1.5 * 2^23 clamped to [qmin - z, qmax - z] shifted alike, less the shift. Two
 * checks, on an AVX-512 machine:
 *
 *     gcc -O2 -mavx512f -mavx512dq -mfma -ffp-contract=off tools/verify/fq_div.c \
 *         -o /tmp/fq_div && /tmp/fq_div [scales]
 *
 * 1. the whole fake-quant, bit for bit (NaN for NaN), for every one of the 2^32
 *    float32 v, at 12 scales from 2^-40 to 2^20 (activations' and weights' scales,
 *    a tiny and a huge one) with int8 / uint8 ranges and their zero points;
 * 2. the quotient itself, RN(v / s) against the corrected product, bit for bit,
 *    for every float32 significand of v (2^23, in [1, 2)) and `scales` (default
 *    20000) significands of s: random ones, and those next to 1 and 2 (an
 *    all-ones significand among them), the quotients of every significand pair
 *    having the same bits at every exponent that neither overflows nor underflows.
 * Prints the mismatches of each (0 and 0; some 4 minutes). */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static __m512 fq_div(__m512 v, __m512 s, __m512 z, __m512 lo, __m512 hi)
{
    __m512 t = _mm512_roundscale_ps(_mm512_div_ps(v, s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    t = _mm512_add_ps(t, z);
    t = _mm512_min_ps(hi, _mm512_max_ps(lo, t));
    return _mm512_mul_ps(_mm512_sub_ps(t, z), s);
}

static __m512 quotient(__m512 v, __m512 s, __m512 r)
{
    __m512 q = _mm512_mul_ps(v, r);
    q = _mm512_min_ps(_mm512_set1_ps(0x1p22f), _mm512_max_ps(_mm512_set1_ps(-0x1p22f), q));
    return _mm512_fmadd_ps(_mm512_fnmadd_ps(q, s, v), r, q);
}

static __m512 fq_mul(__m512 v, __m512 s, __m512 r, __m512 z, __m512 lo, __m512 hi)
{
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    const __m512 lo_m = _mm512_add_ps(_mm512_sub_ps(lo, z), magic);
    const __m512 hi_m = _mm512_add_ps(_mm512_sub_ps(hi, z), magic);
    __m512 t = _mm512_add_ps(quotient(v, s, r), magic);
    t = _mm512_min_ps(hi_m, _mm512_max_ps(lo_m, t));
    return _mm512_mul_ps(_mm512_sub_ps(t, magic), s);
}

static unsigned mismatches(__m512 got, __m512 want)
{
    const __mmask16 same = _mm512_cmpeq_epi32_mask(_mm512_castps_si512(got), _mm512_castps_si512(want));
    const __mmask16 nan = _mm512_cmp_ps_mask(want, want, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(got, got, _CMP_UNORD_Q);
    return (unsigned)__builtin_popcount((unsigned)(__mmask16) ~(same | nan));
}

static float from_bits(uint32_t b)
{
    float f;
    __builtin_memcpy(&f, &b, 4);
    return f;
}

int main(int argc, char **argv)
{
    static const float scales[] = {0.05f, 0.0123f, 1.0f / 255.0f, 3.7e-3f, 0.1f, 1.0f, 6.0f / 255.0f,
                                   1e-5f, 9.094947e-13f /* 2^-40 */, 1048576.0f, 0.7071068f, 1.9999999f};
    static const float ranges[][3] = {{-128, 127, 3}, {0, 255, 128}, {-128, 127, 0}, {0, 255, 0}};
    const int n_scales = argc > 1 ? atoi(argv[1]) : 20000;
    unsigned long bad_fq = 0, bad_q = 0;
    int si, j;
    for (si = 0; si < (int)(sizeof scales / sizeof scales[0]); si++) {
        const float sf = scales[si];
        const __m512 s = _mm512_set1_ps(sf), r = _mm512_set1_ps(1.0f / sf);
        const float *rg = ranges[si % 4];
        const __m512 lo = _mm512_set1_ps(rg[0]), hi = _mm512_set1_ps(rg[1]), z = _mm512_set1_ps(rg[2]);
        __m512i bits = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        uint64_t i;
        for (i = 0; i < (1ull << 32); i += 16) {
            const __m512 v = _mm512_castsi512_ps(bits);
            bad_fq += mismatches(fq_mul(v, s, r, z, lo, hi), fq_div(v, s, z, lo, hi));
            bits = _mm512_add_epi32(bits, _mm512_set1_epi32(16));
        }
    }
    printf("fake-quant mismatches over all 2^32 float32 v at %d scales: %lu\n",
           (int)(sizeof scales / sizeof scales[0]), bad_fq);
    srand(1);
    for (j = 0; j < n_scales; j++) {
        /* s in [1, 2): the first and last 64 significands, then random ones */
        uint32_t m = j < 64 ? (uint32_t)j : j < 128 ? 0x7fffffu - (uint32_t)(j - 64)
                     : (((uint32_t)rand() << 8) ^ (uint32_t)rand()) & 0x7fffffu;
        const float sf = from_bits(0x3f800000u | m);
        const __m512 s = _mm512_set1_ps(sf), r = _mm512_set1_ps(1.0f / sf);
        __m512i bits = _mm512_add_epi32(_mm512_set1_epi32(0x3f800000),
                                        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
        uint32_t i;
        for (i = 0; i < (1u << 23); i += 16) {
            const __m512 v = _mm512_castsi512_ps(bits);
            bad_q += mismatches(quotient(v, s, r), _mm512_div_ps(v, s));
            bits = _mm512_add_epi32(bits, _mm512_set1_epi32(16));
        }
    }
    printf("quotient mismatches over 2^23 significands of v x %d of s: %lu\n", n_scales, bad_q);
    return bad_fq != 0 || bad_q != 0;
}
