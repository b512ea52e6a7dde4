/* The fused epilogues of the float kernels (included by _common.h): qcc_act, the
 * activations on AVX-512 / AVX2 registers, qcc_epilogue_run and qcc_activate. */
#ifndef QCC_EPILOGUE_H
#define QCC_EPILOGUE_H

/* ---- fused epilogues -----------------------------------------------------------
 * Applied to a finished float output (after the last term of every sum), so they do
 * not change the sums. In order, each step optional:
 *   0. affine: y = y * mul[ch], then y = y + shift[ch] (two float32 roundings, as
 *      numpy's in-place multiply then add of a batch_norm);
 *   1. residual: y = y + add[e] (float32, numpy's add of two float32 tensors);
 *   2. activation, the same float32 operations as qcc.dialects.qnn_eval:
 *      QCC_ACT_RELU numpy's maximum(y, 0) (NaN stays, -0 becomes +0),
 *      QCC_ACT_CLIP numpy's clip(y, lo, hi) (NaN stays),
 *      QCC_ACT_HARD_SWISH y * clip(y / 6 + 0.5, 0, 1),
 *      QCC_ACT_HARD_SIGMOID clip(y * lo + hi, 0, 1) (lo = alpha, hi = beta; the
 *      product rounded before the sum: no FMA contraction),
 *      QCC_ACT_SIGMOID 1 / (1 + expf(-y)) (scipy's expit on float32);
 *   3. fake-quant: q = clip(rint(y / s) + z, qmin, qmax); y = (q - z) * s, all in
 *      float32 and rint rounding half to even (qcc.runtime.ops.fake_quant_into), s
 *      and z per tensor or per channel.
 * An output is an [N, channels, plane] array starting at `base`: element c[k] is at
 * e = &c[k] - base, of channel (e / plane) % channels, and its residual is add[e].
 * Without base (NULL) only the activation applies. */

enum {
    QCC_ACT_NONE = 0, QCC_ACT_RELU = 1, QCC_ACT_CLIP = 2, QCC_ACT_HARD_SWISH = 3,
    QCC_ACT_HARD_SIGMOID = 4, QCC_ACT_SIGMOID = 5
};

typedef struct {
    int kind;
    float lo, hi;              /* clip bounds; hard_sigmoid alpha and beta */
    const float *base;         /* the output's first element, or NULL */
    ptrdiff_t plane;           /* elements per channel and image */
    int channels;
    const float *mul, *shift;  /* per channel affine, or NULL */
    const float *add;          /* residual laid out like base, or NULL */
    const float *fq_scale;     /* fake-quant scales (one, or one per channel), or NULL */
    const float *fq_zero;      /* fake-quant zero points as float32 integers */
    int fq_per_channel;
    float qmin, qmax;
} qcc_act;

/* Keeps `v` a rounded float32 in a register: no FMA contraction across it. */
#if QCC_X86
#define QCC_ROUNDED(v) __asm__("" : "+x"(v))
#else
#define QCC_ROUNDED(v) __asm__("" : "+m"(v))
#endif

/* Round half to even of float32 v (numpy's rint) in the default rounding mode:
 * below 2^23, |v| + 2^23 has no fraction bits left; above, v is an integer. */
QCC_INLINE float qcc_rint(float v)
{
    const float a = fabsf(v), r = (a + 8388608.0f) - 8388608.0f;
    return copysignf(a < 8388608.0f ? r : a, v);
}

#define QCC_FQ_MAGIC 12582912.0f   /* 1.5 * 2^23: t + it is rint(t) + it for |t| < 2^22 */

/* Whether the fake-quant of scale s, zero point z, range [qmin, qmax] runs without a
 * division (qcc_fq_one below): s in [2^-60, 2^60], z less than 2^21 from qmin, qmax. */
QCC_INLINE int qcc_fq_exact_product(float s, float z, float qmin, float qmax)
{
    return s >= 0x1p-60f && s <= 0x1p60f && fabsf(qmin - z) < 0x1p21f && fabsf(qmax - z) < 0x1p21f;
}

#if QCC_X86
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")

/* The activation of qcc_epilogue_run in vectors (QCC_ACT_VECTOR, expanded for
 * AVX-512: qcc_act_avx512_kind, 16 lanes, and AVX2: qcc_act_avx2_kind, 8), the same
 * bits lane by lane (the GEMM's in-register epilogue, _gemm_avx.h, and the blocked
 * layout's, _blocked_impl.h). relu keeps NaN and makes -0 +0 (compares); a clamp
 * `t < lo ? lo : t` is max(lo, t) with the bound first (vmaxps gives its second
 * operand when either is NaN or both are equal, on AVX2 as on AVX-512: NaN stays,
 * -0 stays -0, as the scalar compares give); hard-swish's v / 6 is the product
 * v * RN(1/6) corrected by its exact remainder (an FMA; a NaN remainder, v
 * infinite, keeps the product): q + 0.5 is the bits of v / 6 + 0.5 for every
 * float32 v (tools/verify/hswish_div.c checks all 2^32), without vdivps (5 cycles a
 * vector on Zen 4). */
#define QCC_ACT_VECTOR(NAME, V, P, W, RELU, ORD_PICK)                                   \
    QCC_INLINE V NAME(int kind, const qcc_act *a, V v)                                   \
    {                                                                                    \
        const V z = P##_setzero_ps(), one = P##_set1_ps(1.0f);                           \
        V t;                                                                             \
        int i;                                                                           \
        switch (kind) {                                                                  \
        case QCC_ACT_RELU:                                                               \
            return RELU(v, z);                                                           \
        case QCC_ACT_CLIP:                                                               \
            return P##_min_ps(P##_set1_ps(a->hi), P##_max_ps(P##_set1_ps(a->lo), v));    \
        case QCC_ACT_HARD_SWISH: {                                                       \
            const V six = P##_set1_ps(6.0f), r = P##_set1_ps(1.0f / 6.0f);               \
            V q = P##_mul_ps(v, r);                                                      \
            const V e = P##_fnmadd_ps(q, six, v);                                        \
            q = ORD_PICK(e, P##_fmadd_ps(e, r, q), q);                                   \
            QCC_ROUNDED(q);                                                              \
            t = P##_min_ps(one, P##_max_ps(z, P##_add_ps(q, P##_set1_ps(0.5f))));        \
            return P##_mul_ps(v, t);                                                     \
        }                                                                                \
        case QCC_ACT_HARD_SIGMOID:                                                       \
            t = P##_mul_ps(v, P##_set1_ps(a->lo));                                       \
            QCC_ROUNDED(t);                                                              \
            t = P##_add_ps(t, P##_set1_ps(a->hi));                                       \
            return P##_min_ps(one, P##_max_ps(z, t));                                    \
        case QCC_ACT_SIGMOID: {                                                          \
            float tmp[W] __attribute__((aligned(4 * W)));                                \
            P##_store_ps(tmp, v);                                                        \
            for (i = 0; i < W; i++) tmp[i] = 1.0f / (1.0f + expf(-tmp[i]));              \
            return P##_load_ps(tmp);                                                     \
        }                                                                                \
        default:                                                                         \
            return v;                                                                    \
        }                                                                                \
    }
/* relu: v where v > 0 or v is NaN, else +0; ORD_PICK(e, a, b): a where e is a
 * number, else b */
#define QCC_ACT_RELU16(v, z) _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, z, _CMP_GT_OQ)     \
                                                 | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), v)
#define QCC_ACT_PICK16(e, a, b) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(e, e, _CMP_ORD_Q), b, a)
#define QCC_ACT_RELU8(v, z) _mm256_and_ps(v, _mm256_or_ps(_mm256_cmp_ps(v, z, _CMP_GT_OQ), \
                                                          _mm256_cmp_ps(v, v, _CMP_UNORD_Q)))
#define QCC_ACT_PICK8(e, a, b) _mm256_blendv_ps(b, a, _mm256_cmp_ps(e, e, _CMP_ORD_Q))

QCC_ACT_VECTOR(qcc_act_avx512_kind, __m512, _mm512, 16, QCC_ACT_RELU16, QCC_ACT_PICK16)

/* The activation a->kind of v (qcc_act_avx512_kind with a constant kind compiles to
 * that activation alone: loops over many registers call it so, one loop per kind). */
QCC_INLINE __m512 qcc_act_avx512(const qcc_act *a, __m512 v)
{
    return qcc_act_avx512_kind(a->kind, a, v);
}

/* qcc_fq_one in vectors of one instruction set (V, its intrinsics' prefix P, its
 * rounding ROUND(v)): the struct K of the parameters as vectors, made once a loop by
 * OF (one scale; per-lane ones are loaded into it), and FQ applying them: the same
 * operations as qcc_fq_one's, so the same bits. Expanded below for AVX-512
 * (qcc_fq16_k, qcc_fq16_of, qcc_fq16) and AVX2 (qcc_fq8_*). */
#define QCC_FQ_VECTOR(K, OF, FQ, V, P, ROUND)                                             \
    typedef struct {                                                                     \
        V s, r, lo, hi, z, qmin, qmax;                                                   \
        int div;                                                                         \
    } K;                                                                                 \
    QCC_INLINE void OF(K *k, float s, float z, float qmin, float qmax)                   \
    {                                                                                    \
        k->div = !qcc_fq_exact_product(s, z, qmin, qmax);                                \
        k->s = P##_set1_ps(s);                                                           \
        k->r = P##_set1_ps(k->div ? 0.0f : 1.0f / s);                                    \
        k->lo = P##_set1_ps(qmin - z + QCC_FQ_MAGIC);                                    \
        k->hi = P##_set1_ps(qmax - z + QCC_FQ_MAGIC);                                    \
        k->z = P##_set1_ps(z);                                                           \
        k->qmin = P##_set1_ps(qmin);                                                     \
        k->qmax = P##_set1_ps(qmax);                                                     \
    }                                                                                    \
    QCC_INLINE V FQ(V v, const K *k)                                                     \
    {                                                                                    \
        const V m = P##_set1_ps(QCC_FQ_MAGIC);                                           \
        V q, t;                                                                          \
        if (k->div) {                                                                    \
            t = P##_add_ps(ROUND(P##_div_ps(v, k->s)), k->z);                            \
            t = P##_min_ps(k->qmax, P##_max_ps(k->qmin, t));                             \
            return P##_mul_ps(P##_sub_ps(t, k->z), k->s);                                \
        }                                                                                \
        q = P##_mul_ps(v, k->r);                                                         \
        q = P##_min_ps(P##_set1_ps(0x1p22f), P##_max_ps(P##_set1_ps(-0x1p22f), q));      \
        t = P##_add_ps(P##_fmadd_ps(P##_fnmadd_ps(q, k->s, v), k->r, q), m);             \
        t = P##_min_ps(k->hi, P##_max_ps(k->lo, t));                                     \
        return P##_mul_ps(P##_sub_ps(t, m), k->s);                                       \
    }
#define QCC_FQ_ROUND16(v) _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define QCC_FQ_ROUND8(v) _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

QCC_FQ_VECTOR(qcc_fq16_k, qcc_fq16_of, qcc_fq16, __m512, _mm512, QCC_FQ_ROUND16)

#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")

/* qcc_act_avx512_kind on 8 lanes (AVX2's vmaxps / vminps take the second operand
 * on NaN or equality as AVX-512's do; a blend for a mask): the same bits lane by lane
 * (the blocked layout's AVX2 kernels, _blocked_impl.h). */
QCC_ACT_VECTOR(qcc_act_avx2_kind, __m256, _mm256, 8, QCC_ACT_RELU8, QCC_ACT_PICK8)

QCC_FQ_VECTOR(qcc_fq8_k, qcc_fq8_of, qcc_fq8, __m256, _mm256, QCC_FQ_ROUND8)

#pragma GCC pop_options
#endif

/* The product form (qcc_fq_one's, r = 1 / s, lo / hi = qmin / qmax - z + 1.5 * 2^23). */
static inline float qcc_fq_prod(float v, float s, float r, float lo, float hi)
{
    float q = v * r, t;
    q = q < -0x1p22f ? -0x1p22f : q;
    q = q > 0x1p22f ? 0x1p22f : q;
    t = fmaf(fmaf(q, -s, v), r, q) + QCC_FQ_MAGIC;   /* -s, not -q: a NaN keeps its sign */
    t = t < lo ? lo : t;
    t = t > hi ? hi : t;
    return (t - QCC_FQ_MAGIC) * s;
}

/* The division form (qcc_fq_one's outside the product form's range). */
static inline float qcc_fq_div(float v, float s, float z, float qmin, float qmax)
{
    v = qcc_rint(v / s) + z;
    v = v < qmin ? qmin : v;
    v = v > qmax ? qmax : v;
    return (v - z) * s;
}

/* The fake-quant of v: clip(rint(v / s) + z, qmin, qmax) - z) * s in float32, bit
 * for bit, without a division where s lies in [2^-60, 2^60] and the zero point less
 * than 2^21 from qmin and qmax (qcc_fq_exact_product; else the division form):
 * v / s is the product q = v * RN(1/s) clamped to +-2^22 and corrected by its exact
 * remainder (fmaf: Markstein's correction, RN(v / s) itself below 2^22, a number as
 * large and of its sign beyond, which the clamp takes to its bound); rint and the
 * zero point are one sum with 1.5 * 2^23 (where the float32 spacing is 1: rounding
 * half to even) clamped to [qmin - z, qmax - z] shifted alike, less the shift: the
 * integer (t - z), +0 for 0. qcc_fq16 / qcc_fq8 are the same in vectors; a loop
 * takes QCC_FQ_LOOP (the form chosen once); tools/verify/fq_div.c checks the forms
 * against each other. */
static inline float qcc_fq_one(float v, float s, float z, float qmin, float qmax)
{
    if (qcc_fq_exact_product(s, z, qmin, qmax))
        return qcc_fq_prod(v, s, 1.0f / s, qmin - z + QCC_FQ_MAGIC, qmax - z + QCC_FQ_MAGIC);
    return qcc_fq_div(v, s, z, qmin, qmax);
}

/* OUT = qcc_fq_one(IN, S, Z, QMIN, QMAX) for I from 0 to N - 1 (OUT and IN
 * expressions of I), the form chosen once for the loop: a choice per element kept
 * the compiler from vectorizing it. */
#define QCC_FQ_LOOP(N, I, OUT, IN, S, Z, QMIN, QMAX)                                    \
    do {                                                                                \
        if (qcc_fq_exact_product(S, Z, QMIN, QMAX)) {                                   \
            const float r_ = 1.0f / (S), lo_ = (QMIN) - (Z) + QCC_FQ_MAGIC;              \
            const float hi_ = (QMAX) - (Z) + QCC_FQ_MAGIC;                              \
            for (I = 0; I < (N); I++) OUT = qcc_fq_prod(IN, S, r_, lo_, hi_);            \
        } else {                                                                        \
            for (I = 0; I < (N); I++) OUT = qcc_fq_div(IN, S, Z, QMIN, QMAX);            \
        }                                                                               \
    } while (0)

/* One run of n elements of channel ch: the epilogue with residual `add` (or NULL). */
QCC_INLINE void qcc_epilogue_run(const qcc_act *act, float *restrict c, const float *restrict add,
                                 ptrdiff_t n, int ch)
{
    ptrdiff_t j;
    if (act->mul != NULL) {
        /* two loops: the product is stored rounded, never contracted into an FMA */
        const float a = act->mul[ch], b = act->shift[ch];
        for (j = 0; j < n; j++) c[j] = c[j] * a;
        for (j = 0; j < n; j++) c[j] = c[j] + b;
    }
    if (add != NULL)
        for (j = 0; j < n; j++) c[j] = c[j] + add[j];
    switch (act->kind) {
    case QCC_ACT_RELU:
        for (j = 0; j < n; j++) {
            const float v = c[j];
            c[j] = v > 0.0f ? v : v == v ? 0.0f : v;
        }
        break;
    case QCC_ACT_CLIP: {
        const float lo = act->lo, hi = act->hi;
        for (j = 0; j < n; j++) {
            float v = c[j];
            v = v < lo ? lo : v;
            c[j] = v > hi ? hi : v;
        }
        break;
    }
    case QCC_ACT_HARD_SWISH:
        for (j = 0; j < n; j++) {
            const float v = c[j];
            float t = v / 6.0f + 0.5f;
            t = t < 0.0f ? 0.0f : t;
            t = t > 1.0f ? 1.0f : t;
            c[j] = v * t;
        }
        break;
    case QCC_ACT_HARD_SIGMOID: {
        const float alpha = act->lo, beta = act->hi;
        for (j = 0; j < n; j++) {
            float t = c[j] * alpha;
            QCC_ROUNDED(t);
            t = t + beta;
            t = t < 0.0f ? 0.0f : t;
            c[j] = t > 1.0f ? 1.0f : t;
        }
        break;
    }
    case QCC_ACT_SIGMOID:
        for (j = 0; j < n; j++) c[j] = 1.0f / (1.0f + expf(-c[j]));
        break;
    default:
        break;
    }
    if (act->fq_scale != NULL) {
        const float qmin = act->qmin, qmax = act->qmax;
        const float s = act->fq_scale[act->fq_per_channel ? ch : 0];
        const float z = act->fq_zero[act->fq_per_channel ? ch : 0];
        QCC_FQ_LOOP(n, j, c[j], c[j], s, z, qmin, qmax);
    }
}

/* The epilogue of elements [e0, e1) counted from act->base (split at channels). */
QCC_INLINE void qcc_epilogue_range(const qcc_act *act, float *c0, ptrdiff_t e0, ptrdiff_t e1)
{
    while (e0 < e1) {
        const ptrdiff_t plane_end = (e0 / act->plane + 1) * act->plane;
        const ptrdiff_t end = plane_end < e1 ? plane_end : e1;
        const int ch = (int)((e0 / act->plane) % act->channels);
        qcc_epilogue_run(act, c0 + e0, act->add ? act->add + e0 : NULL, end - e0, ch);
        e0 = end;
    }
}

/* The epilogue of c[i*ldc + j] for i < rows, j < cols (c inside act->base's array). */
QCC_INLINE void qcc_activate(const qcc_act *act, float *c, ptrdiff_t ldc, int rows, ptrdiff_t cols)
{
    int i;
    if (act == NULL) return;
    if (act->base == NULL) {
        if (act->kind == QCC_ACT_NONE) return;
        for (i = 0; i < rows; i++)
            qcc_epilogue_run(act, c + (ptrdiff_t)i * ldc, NULL, cols, 0);
        return;
    }
    for (i = 0; i < rows; i++) {
        const ptrdiff_t e = (c + (ptrdiff_t)i * ldc) - act->base;
        qcc_epilogue_range(act, (float *)act->base, e, e + cols);
    }
}

/* Functions cloned per instruction set (dispatched on the CPU at load): loops that
 * give the same bits on every ISA (no contraction in them) but that a baseline
 * x86-64 build leaves slow, such as the epilogue above. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && __GNUC__ >= 12
#define QCC_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define QCC_CLONES
#endif

/* qcc_activate built for the CPU's best instruction set, for callers built for
 * baseline x86-64 (a depthwise plane's hard-swish ran 5x slower there). */
QCC_CLONES __attribute__((unused))
static void qcc_activate_best(const qcc_act *act, float *c, ptrdiff_t ldc, int rows, ptrdiff_t cols)
{
    qcc_activate(act, c, ldc, rows, cols);
}

#endif
