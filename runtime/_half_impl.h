/* float16 rounding and the Ascend quant / dequant stages, numpy's numbers, on three
 * instruction sets (runtime/_half.pyx; the int8 kernels' fused epilogues in
 * runtime/_int8_impl.h).
 *
 * A float16 operation is the float32 operation rounded once to the float16 grid
 * (what numpy's float16 loops compute: the product of two float16 values is exact in
 * float32). The rounding, ties to even:
 * - scalar C: (v + c) - c, c = sign(v) 2^(e + 13) for v's exponent e clamped to
 *   float16's normal range (built with -ffp-contract=off: no FMA);
 * - AVX2 + F16C and AVX-512: `vcvtps2ph` (round to nearest even) then `vcvtph2ps`.
 * Both give the IEEE result, overflow to +-inf included, so every path gives the same
 * bits (the tests run each one against numpy). float16 bits follow numpy's
 * npy_floatbits_to_halfbits, NaN payloads included (a vector block holding a NaN is
 * converted by the scalar code).
 *
 * The stages, per element:
 *   dequant:  v = float32(acc) * s (s: the channel's scale); relu: v < 0 -> 0;
 *             then one of: v (float32 out), f16(v) (float16 out), f16(v) as float32
 *             (a float16 dequant followed by a cast to float32), or quant(f16(v)).
 *   quant:    h = f16(x); v = f16(h * scale) (sqrt_mode: v = f16(v * scale));
 *             v = round_mode(f16(v + offset)) saturated to int8 (NaN -> nan_value).
 */
#ifndef QCC_HALF_IMPL_H
#define QCC_HALF_IMPL_H

#include <math.h>

#include "_common.h"

enum { QCC_H_F32 = 1, QCC_H_F16 = 2, QCC_H_F16F32 = 3, QCC_H_QUANT = 4 };

/* What a dequant writes (kind) and the quant stage's parameters. */
typedef struct {
    int kind;              /* QCC_H_*; dequant only */
    int relu;              /* dequant only */
    float scale, offset;   /* quant: float16 values */
    int sqrt_mode, mode;   /* quant: round_mode 0 Round, 1 Rint, 2 Floor, 3 Ceil, 4 Trunc */
    int8_t nan_value;      /* quant: int8 of NaN (the platform's cast, as numpy's) */
} qcc_h_stage;

typedef union { float f; uint32_t u; } qcc_fu;

/* ---- scalar ---------------------------------------------------------------------- */

static inline float qcc_round_f16(float v)
{
    qcc_fu a, c;
    uint32_t e;
    float r;
    a.f = v;
    e = a.u & 0x7F800000u;
    e = e < (113u << 23) ? (113u << 23) : e;
    e = e > (142u << 23) ? (142u << 23) : e;
    c.u = (e + (13u << 23)) | (a.u & 0x80000000u);
    r = copysignf((v + c.f) - c.f, v);  /* x - x is +0: keep v's sign */
    return fabsf(r) > 65504.0f ? copysignf(INFINITY, r) : r;
}

/* float16 bits of v, which is on the float16 grid (or inf, NaN) */
static inline uint16_t qcc_f16_bits(float v)
{
    uint32_t u, a;
    uint16_t s, ret;
    float f;
    memcpy(&u, &v, 4);
    s = (uint16_t)((u >> 16) & 0x8000u);
    a = u & 0x7FFFFFFFu;
    if (a >= 0x7F800000u) {
        if (a == 0x7F800000u) return s | 0x7C00u;
        ret = (uint16_t)(0x7C00u + ((a & 0x007FFFFFu) >> 13));
        if (ret == 0x7C00u) ret++;
        return s + ret;
    }
    if (a >= (113u << 23)) return s | (uint16_t)((a - (112u << 23)) >> 13);
    memcpy(&f, &a, 4);
    return s | (uint16_t)(f * 16777216.0f);
}

/* numpy's float32 -> float16 bits */
static inline uint16_t qcc_to_f16_bits(float v)
{
    return qcc_f16_bits(v == v ? qcc_round_f16(v) : v);   /* NaN: payload kept */
}

/* exact float16 bits -> float32 */
static inline float qcc_from_f16_bits(uint16_t h)
{
    const uint32_t s = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    qcc_fu r;
    if (e == 0x1Fu) {
        r.u = s | 0x7F800000u | (m << 13);
        return r.f;
    }
    if (e == 0) {
        r.f = (float)m * (1.0f / 16777216.0f);   /* m * 2^-24, exact */
        r.u |= s;
        return r.f;
    }
    r.u = s | ((e + 112u) << 23) | (m << 13);
    return r.f;
}

/* float32 of every float16 bit pattern (the scalar code's conversion), filled once */
static float qcc_h_table[65536];
static pthread_once_t qcc_h_table_once = PTHREAD_ONCE_INIT;

static void qcc_h_table_init(void)
{
    uint32_t h;
    for (h = 0; h < 65536u; h++) qcc_h_table[h] = qcc_from_f16_bits((uint16_t)h);
}

static const float *qcc_h_f16_table(void)
{
    pthread_once(&qcc_h_table_once, qcc_h_table_init);
    return qcc_h_table;
}

/* round_mode of a float16 value: Round is half away from zero (v + copysign(0.5, v)
 * is exact for float16 values, then truncated) */
static inline float qcc_round_mode(float v, int mode)
{
    switch (mode) {
        case 0: return truncf(v + copysignf(0.5f, v));
        case 1: return nearbyintf(v);
        case 2: return floorf(v);
        case 3: return ceilf(v);
        default: return truncf(v);
    }
}

/* the quant stage of h (on the float16 grid, or inf / NaN) */
static inline int8_t qcc_h_quant1(float h, const qcc_h_stage *st)
{
    float v = qcc_round_f16(h * st->scale);
    if (st->sqrt_mode) v = qcc_round_f16(v * st->scale);
    v = qcc_round_mode(qcc_round_f16(v + st->offset), st->mode);
    v = v < -128.0f ? -128.0f : (v > 127.0f ? 127.0f : v);
    return v != v ? st->nan_value : (int8_t)(int32_t)v;
}

/* qcc_h_quant1 for round_mode Round without sqrt_mode (the common case, unswitched):
 * v + copysign(0.5, v) clamped to [-128, 127] and truncated */
static inline int8_t qcc_h_quant_round(float h, float scale, float offset, int8_t nan_value)
{
    float v = qcc_round_f16(qcc_round_f16(h * scale) + offset);
    v = v + copysignf(0.5f, v);
    v = v < -128.0f ? -128.0f : (v > 127.0f ? 127.0f : v);
    return v != v ? nan_value : (int8_t)(int32_t)v;
}

/* (the stage copied to a local: the int8 stores may alias it) */
static void qcc_h_quant_f32_scalar(const float *x, int8_t *y, ptrdiff_t n,
                                   const qcc_h_stage *st)
{
    const qcc_h_stage s = *st;
    ptrdiff_t i;
    if (s.mode == 0 && !s.sqrt_mode) {
        for (i = 0; i < n; i++)
            y[i] = qcc_h_quant_round(qcc_round_f16(x[i]), s.scale, s.offset, s.nan_value);
        return;
    }
    for (i = 0; i < n; i++) y[i] = qcc_h_quant1(qcc_round_f16(x[i]), &s);
}

static void qcc_h_quant_f16_scalar(const uint16_t *x, int8_t *y, ptrdiff_t n,
                                   const qcc_h_stage *st)
{
    const qcc_h_stage s = *st;
    const float *table = qcc_h_f16_table();
    ptrdiff_t i;
    if (s.mode == 0 && !s.sqrt_mode) {
        for (i = 0; i < n; i++)
            y[i] = qcc_h_quant_round(table[x[i]], s.scale, s.offset, s.nan_value);
        return;
    }
    for (i = 0; i < n; i++) y[i] = qcc_h_quant1(table[x[i]], &s);
}

static void qcc_h_to_f16_scalar(const float *x, uint16_t *y, ptrdiff_t n)
{
    ptrdiff_t i;
    for (i = 0; i < n; i++) y[i] = qcc_to_f16_bits(x[i]);
}

static void qcc_h_to_f32_scalar(const uint16_t *x, float *y, ptrdiff_t n)
{
    const float *table = qcc_h_f16_table();
    ptrdiff_t i;
    for (i = 0; i < n; i++) y[i] = table[x[i]];
}

/* out[j] (element j of the stage's kind) = dequant(acc[j]) with scale s, j < n */
static void qcc_h_deq_scalar(const int32_t *acc, ptrdiff_t n, float s,
                             const qcc_h_stage *stage, void *out)
{
    const qcc_h_stage local = *stage, *st = &local;
    const int relu = st->relu;
    ptrdiff_t j;
#define QCC_H_DEQ_LOOP(STORE)                          \
    for (j = 0; j < n; j++) {                          \
        float v = (float)acc[j] * s;                   \
        v = (relu && v < 0) ? 0.0f : v;                \
        STORE;                                         \
    }
    switch (st->kind) {
        case QCC_H_F32: QCC_H_DEQ_LOOP(((float *)out)[j] = v) break;
        case QCC_H_F16: QCC_H_DEQ_LOOP(((uint16_t *)out)[j] = qcc_to_f16_bits(v)) break;
        case QCC_H_F16F32:
            QCC_H_DEQ_LOOP(((float *)out)[j] = v == v ? qcc_round_f16(v) : v) break;
        default: QCC_H_DEQ_LOOP(((int8_t *)out)[j] = qcc_h_quant1(qcc_round_f16(v), st)) break;
    }
#undef QCC_H_DEQ_LOOP
}

#if QCC_X86

/* ---- AVX2 + F16C: 8 lanes -------------------------------------------------------- */

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

#define QCC_H_RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

static inline __m256 qcc_h_r16_avx2(__m256 v)
{
    return _mm256_cvtph_ps(_mm256_cvtps_ph(v, QCC_H_RNE));
}

/* the quant stage of 8 values h on the float16 grid: int8 in the low 8 bytes */
static inline __m128i qcc_h_quant8_avx2(__m256 h, const qcc_h_stage *st)
{
    const __m256 scale = _mm256_set1_ps(st->scale);
    __m256 v = qcc_h_r16_avx2(_mm256_mul_ps(h, scale)), nan;
    __m256i q;
    __m128i w;
    if (st->sqrt_mode) v = qcc_h_r16_avx2(_mm256_mul_ps(v, scale));
    v = qcc_h_r16_avx2(_mm256_add_ps(v, _mm256_set1_ps(st->offset)));
    nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    switch (st->mode) {
        case 0:
            v = _mm256_add_ps(v, _mm256_or_ps(_mm256_set1_ps(0.5f), _mm256_and_ps(
                v, _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u)))));
            break;
        case 1: v = _mm256_round_ps(v, _MM_FROUND_CUR_DIRECTION | _MM_FROUND_NO_EXC); break;
        case 2: v = _mm256_round_ps(v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); break;
        case 3: v = _mm256_round_ps(v, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC); break;
        default: break;
    }
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-128.0f)), _mm256_set1_ps(127.0f));
    q = _mm256_cvttps_epi32(v);   /* truncates: Round and Trunc need it, the rest are whole */
    q = _mm256_blendv_epi8(q, _mm256_set1_epi32(st->nan_value), _mm256_castps_si256(nan));
    w = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    return _mm_packs_epi16(w, w);
}

static void qcc_h_quant_f32_avx2(const float *x, int8_t *y, ptrdiff_t n, const qcc_h_stage *st)
{
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storel_epi64((__m128i *)(y + i),
                         qcc_h_quant8_avx2(qcc_h_r16_avx2(_mm256_loadu_ps(x + i)), st));
    qcc_h_quant_f32_scalar(x + i, y + i, n - i, st);
}

static void qcc_h_quant_f16_avx2(const uint16_t *x, int8_t *y, ptrdiff_t n,
                                 const qcc_h_stage *st)
{
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storel_epi64((__m128i *)(y + i), qcc_h_quant8_avx2(
            _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))), st));
    qcc_h_quant_f16_scalar(x + i, y + i, n - i, st);
}

static void qcc_h_to_f16_avx2(const float *x, uint16_t *y, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)))
            qcc_h_to_f16_scalar(x + i, y + i, 8);   /* NaN payloads: numpy's rule */
        else
            _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(v, QCC_H_RNE));
    }
    qcc_h_to_f16_scalar(x + i, y + i, n - i);
}

static void qcc_h_to_f32_avx2(const uint16_t *x, float *y, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm_loadu_si128((const __m128i *)(x + i));
        if (_mm_movemask_epi8(_mm_cmpgt_epi16(_mm_and_si128(h, _mm_set1_epi16(0x7FFF)),
                                              _mm_set1_epi16(0x7C00))))
            qcc_h_to_f32_scalar(x + i, y + i, 8);   /* NaN: payload kept, not quieted */
        else
            _mm256_storeu_ps(y + i, _mm256_cvtph_ps(h));
    }
    qcc_h_to_f32_scalar(x + i, y + i, n - i);
}

static void qcc_h_deq_avx2(const int32_t *acc, ptrdiff_t n, float s, const qcc_h_stage *st,
                           void *out)
{
    const __m256 sv = _mm256_set1_ps(s), zero = _mm256_setzero_ps();
    ptrdiff_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(
            _mm256_loadu_si256((const __m256i *)(acc + j))), sv);
        if (st->relu) v = _mm256_blendv_ps(v, zero, _mm256_cmp_ps(v, zero, _CMP_LT_OQ));
        if (st->kind != QCC_H_F32 && _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) {
            qcc_h_deq_scalar(acc + j, 8, s, st, (char *)out + j * (st->kind == QCC_H_F16 ? 2
                             : st->kind == QCC_H_QUANT ? 1 : 4));
            continue;
        }
        switch (st->kind) {
            case QCC_H_F32: _mm256_storeu_ps((float *)out + j, v); break;
            case QCC_H_F16:
                _mm_storeu_si128((__m128i *)((uint16_t *)out + j), _mm256_cvtps_ph(v, QCC_H_RNE));
                break;
            case QCC_H_F16F32: _mm256_storeu_ps((float *)out + j, qcc_h_r16_avx2(v)); break;
            default:
                _mm_storel_epi64((__m128i *)((int8_t *)out + j),
                                 qcc_h_quant8_avx2(qcc_h_r16_avx2(v), st));
                break;
        }
    }
    qcc_h_deq_scalar(acc + j, n - j, s, st, (char *)out + j * (st->kind == QCC_H_F16 ? 2
                     : st->kind == QCC_H_QUANT ? 1 : 4));
}

#pragma GCC pop_options

/* ---- AVX-512: 16 lanes ------------------------------------------------------------- */

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c")

static inline __m512 qcc_h_r16_512(__m512 v)
{
    return _mm512_cvtph_ps(_mm512_cvtps_ph(v, QCC_H_RNE));
}

static inline __m128i qcc_h_quant16_512(__m512 h, const qcc_h_stage *st)
{
    const __m512 scale = _mm512_set1_ps(st->scale);
    __m512 v = qcc_h_r16_512(_mm512_mul_ps(h, scale));
    __mmask16 nan;
    if (st->sqrt_mode) v = qcc_h_r16_512(_mm512_mul_ps(v, scale));
    v = qcc_h_r16_512(_mm512_add_ps(v, _mm512_set1_ps(st->offset)));
    nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    switch (st->mode) {
        case 0:
            v = _mm512_add_ps(v, _mm512_castsi512_ps(_mm512_or_si512(
                _mm512_castps_si512(_mm512_set1_ps(0.5f)),
                _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u)))));
            break;
        case 1: v = _mm512_roundscale_ps(v, _MM_FROUND_CUR_DIRECTION | _MM_FROUND_NO_EXC); break;
        case 2: v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); break;
        case 3: v = _mm512_roundscale_ps(v, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC); break;
        default: break;
    }
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-128.0f)), _mm512_set1_ps(127.0f));
    return _mm_mask_blend_epi8(nan, _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(v)),
                               _mm_set1_epi8(st->nan_value));
}

static void qcc_h_quant_f32_512(const float *x, int8_t *y, ptrdiff_t n, const qcc_h_stage *st)
{
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm_storeu_si128((__m128i *)(y + i),
                         qcc_h_quant16_512(qcc_h_r16_512(_mm512_loadu_ps(x + i)), st));
    qcc_h_quant_f32_scalar(x + i, y + i, n - i, st);
}

static void qcc_h_quant_f16_512(const uint16_t *x, int8_t *y, ptrdiff_t n,
                                const qcc_h_stage *st)
{
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm_storeu_si128((__m128i *)(y + i), qcc_h_quant16_512(
            _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i))), st));
    qcc_h_quant_f16_scalar(x + i, y + i, n - i, st);
}

static void qcc_h_to_f16_512(const float *x, uint16_t *y, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        if (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q))
            qcc_h_to_f16_scalar(x + i, y + i, 16);   /* NaN payloads: numpy's rule */
        else
            _mm256_storeu_si256((__m256i *)(y + i), _mm512_cvtps_ph(v, QCC_H_RNE));
    }
    qcc_h_to_f16_scalar(x + i, y + i, n - i);
}

static void qcc_h_to_f32_512(const uint16_t *x, float *y, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i h = _mm256_loadu_si256((const __m256i *)(x + i));
        if (_mm256_cmpgt_epi16_mask(_mm256_and_si256(h, _mm256_set1_epi16(0x7FFF)),
                                    _mm256_set1_epi16(0x7C00)))
            qcc_h_to_f32_scalar(x + i, y + i, 16);   /* NaN: payload kept, not quieted */
        else
            _mm512_storeu_ps(y + i, _mm512_cvtph_ps(h));
    }
    qcc_h_to_f32_scalar(x + i, y + i, n - i);
}

static void qcc_h_deq_512(const int32_t *acc, ptrdiff_t n, float s, const qcc_h_stage *st,
                          void *out)
{
    const __m512 sv = _mm512_set1_ps(s), zero = _mm512_setzero_ps();
    const size_t es = st->kind == QCC_H_F16 ? 2 : st->kind == QCC_H_QUANT ? 1 : 4;
    ptrdiff_t j;
    /* 16 at a time, the last (fewer) ones under a mask: masked-off lanes are 0 */
    for (j = 0; j < n; j += 16) {
        const __mmask16 m = n - j >= 16 ? 0xFFFF : (__mmask16)((1u << (n - j)) - 1);
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(m, acc + j)), sv);
        if (st->relu) v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), zero);
        if (st->kind != QCC_H_F32 && _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q)) {
            qcc_h_deq_scalar(acc + j, n - j < 16 ? n - j : 16, s, st, (char *)out + j * es);
            continue;
        }
        switch (st->kind) {
            case QCC_H_F32: _mm512_mask_storeu_ps((float *)out + j, m, v); break;
            case QCC_H_F16:
                _mm256_mask_storeu_epi16((uint16_t *)out + j, m, _mm512_cvtps_ph(v, QCC_H_RNE));
                break;
            case QCC_H_F16F32: _mm512_mask_storeu_ps((float *)out + j, m, qcc_h_r16_512(v)); break;
            default:
                _mm_mask_storeu_epi8((int8_t *)out + j, m, qcc_h_quant16_512(qcc_h_r16_512(v), st));
                break;
        }
    }
}

#pragma GCC pop_options

#endif /* QCC_X86 */

/* ---- dispatch (isa: QCC_ISA_*) ------------------------------------------------------ */

/* Whether this CPU runs the float16 kernels of `level` (F16C with AVX2). */
static int qcc_h_supported(int level)
{
#if QCC_X86
    if (level == QCC_ISA_SCALAR) return 1;
    __builtin_cpu_init();
    return qcc_cpu_runs(level, 0) && __builtin_cpu_supports("f16c");
#else
    return level == QCC_ISA_SCALAR;
#endif
}

static inline size_t qcc_h_out_size(int kind)
{
    return kind == QCC_H_F16 ? 2 : kind == QCC_H_QUANT ? 1 : 4;
}

/* dequant of n accumulators with scale s into out (see qcc_h_stage) */
static void qcc_h_deq(int isa, const int32_t *acc, ptrdiff_t n, float s, const qcc_h_stage *st,
                      void *out)
{
#if QCC_X86
    if (isa == QCC_ISA_AVX512) {
        qcc_h_deq_512(acc, n, s, st, out);
        return;
    }
    if (isa == QCC_ISA_AVX2) {
        qcc_h_deq_avx2(acc, n, s, st, out);
        return;
    }
#endif
    (void)isa;
    qcc_h_deq_scalar(acc, n, s, st, out);
}

static void qcc_h_quant_f32(int isa, const float *x, int8_t *y, ptrdiff_t n,
                            const qcc_h_stage *st)
{
#if QCC_X86
    if (isa == QCC_ISA_AVX512) {
        qcc_h_quant_f32_512(x, y, n, st);
        return;
    }
    if (isa == QCC_ISA_AVX2) {
        qcc_h_quant_f32_avx2(x, y, n, st);
        return;
    }
#endif
    (void)isa;
    qcc_h_quant_f32_scalar(x, y, n, st);
}

static void qcc_h_quant_f16(int isa, const uint16_t *x, int8_t *y, ptrdiff_t n,
                            const qcc_h_stage *st)
{
#if QCC_X86
    if (isa == QCC_ISA_AVX512) {
        qcc_h_quant_f16_512(x, y, n, st);
        return;
    }
    if (isa == QCC_ISA_AVX2) {
        qcc_h_quant_f16_avx2(x, y, n, st);
        return;
    }
#endif
    (void)isa;
    qcc_h_quant_f16_scalar(x, y, n, st);
}

static void qcc_h_to_f16(int isa, const float *x, uint16_t *y, ptrdiff_t n)
{
#if QCC_X86
    if (isa == QCC_ISA_AVX512) {
        qcc_h_to_f16_512(x, y, n);
        return;
    }
    if (isa == QCC_ISA_AVX2) {
        qcc_h_to_f16_avx2(x, y, n);
        return;
    }
#endif
    (void)isa;
    qcc_h_to_f16_scalar(x, y, n);
}

static void qcc_h_to_f32(int isa, const uint16_t *x, float *y, ptrdiff_t n)
{
#if QCC_X86
    if (isa == QCC_ISA_AVX512) {
        qcc_h_to_f32_512(x, y, n);
        return;
    }
    if (isa == QCC_ISA_AVX2) {
        qcc_h_to_f32_avx2(x, y, n);
        return;
    }
#endif
    (void)isa;
    qcc_h_to_f32_scalar(x, y, n);
}

/* ---- threads: an element-wise job split into chunks over the pool ------------------ */

#define QCC_H_CHUNK 65536   /* elements a task */

typedef struct {
    int op;                 /* 0 quant f32, 1 quant f16, 2 to f16, 3 to f32, 4 dequant,
                               5 quant f32 of x + x2 (relu'd with relu2) */
    int isa;
    const void *x;
    void *y;
    ptrdiff_t n;            /* elements (dequant: outer * channels * inner) */
    const qcc_h_stage *st;
    const float *scale;     /* dequant: per channel */
    ptrdiff_t channels, inner;
    const float *x2;        /* op 5: the second addend */
    int relu2;              /* op 5: relu between the add and the quant */
    int next;
} qcc_h_job;

/* op 5 on elements [i, i + len): the float32 sum (relu'd: NaN stays NaN), then the
 * quant of op 0, a block of QCC_H_SUM at a time from the stack. */
#define QCC_H_SUM 1024
static void qcc_h_add_quant(const qcc_h_job *job, ptrdiff_t i, ptrdiff_t len)
{
    float sum[QCC_H_SUM];
    const float *a = (const float *)job->x + i, *b = job->x2 + i;
    int8_t *y = (int8_t *)job->y + i;
    ptrdiff_t j0, j;
    for (j0 = 0; j0 < len; j0 += QCC_H_SUM) {
        const ptrdiff_t m = len - j0 < QCC_H_SUM ? len - j0 : QCC_H_SUM;
        for (j = 0; j < m; j++) sum[j] = a[j0 + j] + b[j0 + j];
        if (job->relu2)
            for (j = 0; j < m; j++) sum[j] = sum[j] > 0.0f ? sum[j] : sum[j] == sum[j] ? 0.0f : sum[j];
        qcc_h_quant_f32(job->isa, sum, y + j0, m, job->st);
    }
}

/* elements a task: a dequant with several scales takes one channel's run at a time */
static inline ptrdiff_t qcc_h_chunk(const qcc_h_job *job)
{
    return job->op == 4 && job->channels > 1 ? job->inner : QCC_H_CHUNK;
}

static void qcc_h_worker(void *arg)
{
    qcc_h_job *job = (qcc_h_job *)arg;
    const ptrdiff_t chunk = qcc_h_chunk(job);
    const ptrdiff_t ntasks = (job->n + chunk - 1) / chunk;
    for (;;) {
        const ptrdiff_t t = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        const ptrdiff_t i = t * chunk, len = i + chunk < job->n ? chunk : job->n - i;
        if (t >= ntasks) break;
        switch (job->op) {
            case 0: qcc_h_quant_f32(job->isa, (const float *)job->x + i, (int8_t *)job->y + i,
                                    len, job->st); break;
            case 1: qcc_h_quant_f16(job->isa, (const uint16_t *)job->x + i,
                                    (int8_t *)job->y + i, len, job->st); break;
            case 2: qcc_h_to_f16(job->isa, (const float *)job->x + i, (uint16_t *)job->y + i,
                                 len); break;
            case 3: qcc_h_to_f32(job->isa, (const uint16_t *)job->x + i, (float *)job->y + i,
                                 len); break;
            case 5: qcc_h_add_quant(job, i, len); break;
            default:
                qcc_h_deq(job->isa, (const int32_t *)job->x + i, len,
                          job->scale[job->channels > 1 ? t % job->channels : 0], job->st,
                          (char *)job->y + i * (ptrdiff_t)qcc_h_out_size(job->st->kind));
                break;
        }
    }
}

/* Run the job on up to `threads` threads (one below 2^18 elements). */
static void qcc_h_run(qcc_h_job *job, int threads)
{
    const ptrdiff_t chunk = qcc_h_chunk(job);
    const ptrdiff_t ntasks = chunk > 0 ? (job->n + chunk - 1) / chunk : 0;
    job->next = 0;
    if (job->n < (1 << 18)) threads = 1;
    qcc_parallel(qcc_h_worker, job, ntasks < threads ? (int)ntasks : threads);
}

#endif
