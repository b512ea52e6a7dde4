/* What the float convolution (_conv_impl.h, _gemm_impl.h) and the int8 kernels
 * (_int8_impl.h) share: convolution geometry (output sizes, the padded input plane,
 * which padded rows an output reads, the offsets of the im2col rows), the runs of
 * output positions a packed panel gathers, per-thread scratch, and the instruction
 * set dispatch (which of AVX-512 / AVX2 / scalar the CPU runs, capped by QCC_ISA),
 * and the thread pool both GEMMs share their work on.
 *
 * Every spatial problem is 3-D: 1-D and 2-D convolutions have leading spatial dims
 * of size 1 (kernel 1, stride 1, pad 0, dilation 1).
 */
#ifndef QCC_COMMON_H
#define QCC_COMMON_H

#include <fenv.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define QCC_X86 1
#include <immintrin.h>
#else
#define QCC_X86 0
#endif

#if defined(__GNUC__)
#define QCC_INLINE static inline __attribute__((always_inline))
#else
#define QCC_INLINE static inline
#endif

#if QCC_X86
#pragma GCC push_options
#pragma GCC target("avx2")
/* dst[0 .. n) = the first n lanes of v (0 <= n <= 8), with plain stores: AMD's masked
 * stores (vmaskmovps/vpmaskmovd to memory) are microcoded, tens of cycles each. */
QCC_INLINE void qcc_store_first_avx2(float *dst, __m256 v, int n)
{
    __m128 h = _mm256_castps256_ps128(v);
    if (n >= 8) {
        _mm256_storeu_ps(dst, v);
        return;
    }
    if (n >= 4) {
        _mm_storeu_ps(dst, h);
        h = _mm256_extractf128_ps(v, 1);
        dst += 4;
        n -= 4;
    }
    if (n >= 2) {
        _mm_storel_pi((__m64 *)dst, h);
        h = _mm_movehl_ps(h, h);
        dst += 2;
        n -= 2;
    }
    if (n) _mm_store_ss(dst, h);
}

/* r[c] = column c of the 8x8 block whose rows are r[0..7]. */
QCC_INLINE void qcc_tr8_avx2(__m256 *r)
{
    __m256 t[8], u[8];
    int i;
    for (i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (i = 0; i < 2; i++) {   /* u[4i + c]: rows 4i..4i+3 of columns c, c + 4 */
        u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x31);
    }
}
#pragma GCC pop_options
#endif

#if QCC_X86
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
/* r[c] = column c of the 16x16 block whose rows are r[0..15]. */
QCC_INLINE void qcc_tr16_avx512(__m512 *r)
{
    __m512 t[16], u[16];
    int i, k;
    for (i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (i = 0; i < 4; i++) {   /* u[4i + k]: rows 4i..4i+3 of columns k, k+4, k+8, k+12 */
        const __m512d t0 = _mm512_castps_pd(t[4 * i]), t1 = _mm512_castps_pd(t[4 * i + 1]);
        const __m512d t2 = _mm512_castps_pd(t[4 * i + 2]), t3 = _mm512_castps_pd(t[4 * i + 3]);
        u[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    for (k = 0; k < 4; k++) {
        const __m512 a = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x88);   /* cols k, k+8 */
        const __m512 b = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xDD);   /* cols k+4, k+12 */
        const __m512 c = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x88);
        const __m512 d = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xDD);
        r[k] = _mm512_shuffle_f32x4(a, c, 0x88);
        r[k + 8] = _mm512_shuffle_f32x4(a, c, 0xDD);
        r[k + 4] = _mm512_shuffle_f32x4(b, d, 0x88);
        r[k + 12] = _mm512_shuffle_f32x4(b, d, 0xDD);
    }
}

/* What a transposed row of 16 positions goes through before it is stored at
 * c + at (the lanes of mask m); ctx: the caller's. */
typedef __m512 (*qcc_tr_row_fn)(const void *ctx, __m512 v, ptrdiff_t at, __mmask16 m);

/* c[o*ldc + p] = ct[p*ldt + o] for o < rows, p < cols: a position-major tile of the
 * lanes paths (channels in the vector lanes) copied channel-major, 16 x 16 blocks
 * transposed in registers (ct readable for whole blocks of 16 channels; 32-bit
 * values moved as they are, float or int32), each row through `row` when not NULL. */
QCC_INLINE void qcc_tr_copy_row_avx512(const float *ct, ptrdiff_t ldt, float *c, ptrdiff_t ldc,
                                       int rows, int cols, qcc_tr_row_fn row, const void *ctx)
{
    int o0, p0, i;
    for (o0 = 0; o0 < rows; o0 += 16)
        for (p0 = 0; p0 < cols; p0 += 16) {
            const int np = cols - p0 < 16 ? cols - p0 : 16, no = rows - o0 < 16 ? rows - o0 : 16;
            const __mmask16 pm = (__mmask16)((1u << np) - 1);
            __m512 r[16];
            for (i = 0; i < 16; i++)
                r[i] = i < np ? _mm512_loadu_ps(ct + (ptrdiff_t)(p0 + i) * ldt + o0)
                              : _mm512_setzero_ps();
            qcc_tr16_avx512(r);
            for (i = 0; i < no; i++) {
                const ptrdiff_t at = (ptrdiff_t)(o0 + i) * ldc + p0;
                _mm512_mask_storeu_ps(c + at, pm, row ? row(ctx, r[i], at, pm) : r[i]);
            }
        }
}

static void qcc_tr_copy_avx512(const float *ct, ptrdiff_t ldt, float *c, ptrdiff_t ldc,
                               int rows, int cols)
{
    qcc_tr_copy_row_avx512(ct, ldt, c, ldc, rows, cols, NULL, NULL);
}
#pragma GCC pop_options
#endif

/* ---- geometry ------------------------------------------------------------------ */

typedef struct {
    int cg;      /* input channels per group */
    int og;      /* output channels per group */
    int sp[3];   /* input spatial size (D, H, W) */
    int k[3];    /* kernel size */
    int osp[3];  /* output spatial size */
    int st[3];   /* strides */
    int pb[3];   /* pads at the beginning */
    int dl[3];   /* dilations */
} qcc_geom;

/* Output size of one spatial dim (ONNX Conv): floor((in + pb + pe - span) / st) + 1
 * with span = dl * (k - 1) + 1; < 1 when the window does not fit. */
QCC_INLINE int qcc_out_size(int in, int k, int st, int pb, int pe, int dl)
{
    const int span = dl * (k - 1) + 1, room = in + pb + pe - span;
    return room < 0 ? 0 : room / st + 1;
}

/* [*lo, *hi): the t in [0, count) with 0 <= t*stride + off < limit. */
QCC_INLINE void qcc_valid(int off, int stride, int limit, int count, int *lo, int *hi)
{
    int a = off < 0 ? (-off + stride - 1) / stride : 0;
    int b = limit - 1 - off < 0 ? 0 : (limit - 1 - off) / stride + 1;
    if (b > count) b = count;
    if (a > count) a = count;
    if (b < a) b = a;
    *lo = a;
    *hi = b;
}

/* Shape of a padded input plane in which every tap of the outputs (ow_n of them
 * along W) is inside; returns 1 when the input itself is such a plane. */
QCC_INLINE int qcc_padded_dims(const qcc_geom *g, int ow_n, int *dims)
{
    int i, same = 1;
    for (i = 0; i < 3; i++) {
        const int n = i == 2 ? ow_n : g->osp[i];
        const int need = (n - 1) * g->st[i] + (g->k[i] - 1) * g->dl[i] + 1;
        dims[i] = need > g->pb[i] + g->sp[i] ? need : g->pb[i] + g->sp[i];
        same = same && g->pb[i] == 0 && dims[i] == g->sp[i];
    }
    return same;
}

/* Whether padded row (or depth slice) i is read by some output: i = o*s + t*dl with
 * o < n_out, t < k. */
QCC_INLINE int qcc_row_used(int i, int s, int k, int dl, int n_out)
{
    int t;
    for (t = 0; t < k && t * dl <= i; t++) {
        const int r = i - t * dl;
        if (r % s == 0 && r / s < n_out) return 1;
    }
    return 0;
}

/* Padded column `c` of a row split into its even columns, then its odd ones (so
 * that stride-2 taps read contiguously): where it is stored. */
QCC_INLINE ptrdiff_t qcc_split_col(ptrdiff_t c, ptrdiff_t half) { return (c & 1) * half + c / 2; }

/* Offset in the padded input planes of shape dims (split: rows in even and odd
 * halves) of im2col row (c, kd, kh, kw), in the order of the weights
 * w[o, c, kd, kh, kw]: element (k, p) of im2col is src[kofs[k] + pos(p)]. */
static void qcc_conv_kofs(const qcc_geom *g, const int *dims, int split, ptrdiff_t *kofs)
{
    const ptrdiff_t plane = (ptrdiff_t)dims[0] * dims[1] * dims[2], half = (dims[2] + 1) / 2;
    int c, kd, kh, kw;
    for (c = 0; c < g->cg; c++)
        for (kd = 0; kd < g->k[0]; kd++)
            for (kh = 0; kh < g->k[1]; kh++)
                for (kw = 0; kw < g->k[2]; kw++) {
                    const int off = kw * g->dl[2];
                    *kofs++ = c * plane + ((ptrdiff_t)kd * g->dl[0] * dims[1] + kh * g->dl[1]) * dims[2]
                              + (split ? qcc_split_col(off, half) : off);
                }
}

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

#if QCC_X86
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")

/* The activation of qcc_epilogue_run on 16 lanes, the same bits lane by lane (the
 * GEMM's in-register epilogue, _gemm_avx.h, and the blocked layout's,
 * _blocked_impl.h). relu keeps NaN and makes -0 +0 (compares); a clamp `t < lo ? lo
 * : t` is max(lo, t) with the bound first (vmaxps gives its second operand when
 * either is NaN or both are equal: NaN stays, -0 stays -0, as the scalar compares
 * give); hard-swish's v / 6 is the product v * RN(1/6) corrected by its exact
 * remainder (an FMA; a NaN remainder, v infinite, keeps the product): q + 0.5 is the
 * bits of v / 6 + 0.5 for every float32 v (tools/verify/hswish_div.c checks all
 * 2^32), without vdivps (5 cycles a vector on Zen 4). */
QCC_INLINE __m512 qcc_act_avx512_kind(int kind, const qcc_act *a, __m512 v)
{
    const __m512 z = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
    __m512 t;
    int i;
    switch (kind) {
    case QCC_ACT_RELU:
        return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, z, _CMP_GT_OQ)
                                   | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), v);
    case QCC_ACT_CLIP:
        return _mm512_min_ps(_mm512_set1_ps(a->hi), _mm512_max_ps(_mm512_set1_ps(a->lo), v));
    case QCC_ACT_HARD_SWISH: {
        const __m512 six = _mm512_set1_ps(6.0f), r = _mm512_set1_ps(1.0f / 6.0f);
        __m512 q = _mm512_mul_ps(v, r);
        const __m512 e = _mm512_fnmadd_ps(q, six, v);
        q = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(e, e, _CMP_ORD_Q), q, _mm512_fmadd_ps(e, r, q));
        QCC_ROUNDED(q);
        t = _mm512_min_ps(one, _mm512_max_ps(z, _mm512_add_ps(q, _mm512_set1_ps(0.5f))));
        return _mm512_mul_ps(v, t);
    }
    case QCC_ACT_HARD_SIGMOID:
        t = _mm512_mul_ps(v, _mm512_set1_ps(a->lo));
        QCC_ROUNDED(t);
        t = _mm512_add_ps(t, _mm512_set1_ps(a->hi));
        return _mm512_min_ps(one, _mm512_max_ps(z, t));
    case QCC_ACT_SIGMOID: {
        float tmp[16] __attribute__((aligned(64)));
        _mm512_store_ps(tmp, v);
        for (i = 0; i < 16; i++) tmp[i] = 1.0f / (1.0f + expf(-tmp[i]));
        return _mm512_load_ps(tmp);
    }
    default:
        return v;
    }
}

/* The activation a->kind of v (qcc_act_avx512_kind with a constant kind compiles to
 * that activation alone: loops over many registers call it so, one loop per kind). */
QCC_INLINE __m512 qcc_act_avx512(const qcc_act *a, __m512 v)
{
    return qcc_act_avx512_kind(a->kind, a, v);
}

#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")

/* qcc_act_avx512_kind on 8 lanes: the same operations (AVX2's vmaxps / vminps take
 * the second operand on NaN or equality as AVX-512's do; a blend for a mask), so
 * the same bits lane by lane (the blocked layout's AVX2 kernels, _blocked_impl.h). */
QCC_INLINE __m256 qcc_act_avx2_kind(int kind, const qcc_act *a, __m256 v)
{
    const __m256 z = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    __m256 t;
    int i;
    switch (kind) {
    case QCC_ACT_RELU:
        return _mm256_and_ps(v, _mm256_or_ps(_mm256_cmp_ps(v, z, _CMP_GT_OQ),
                                             _mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
    case QCC_ACT_CLIP:
        return _mm256_min_ps(_mm256_set1_ps(a->hi), _mm256_max_ps(_mm256_set1_ps(a->lo), v));
    case QCC_ACT_HARD_SWISH: {
        const __m256 six = _mm256_set1_ps(6.0f), r = _mm256_set1_ps(1.0f / 6.0f);
        __m256 q = _mm256_mul_ps(v, r);
        const __m256 e = _mm256_fnmadd_ps(q, six, v);
        q = _mm256_blendv_ps(q, _mm256_fmadd_ps(e, r, q), _mm256_cmp_ps(e, e, _CMP_ORD_Q));
        QCC_ROUNDED(q);
        t = _mm256_min_ps(one, _mm256_max_ps(z, _mm256_add_ps(q, _mm256_set1_ps(0.5f))));
        return _mm256_mul_ps(v, t);
    }
    case QCC_ACT_HARD_SIGMOID:
        t = _mm256_mul_ps(v, _mm256_set1_ps(a->lo));
        QCC_ROUNDED(t);
        t = _mm256_add_ps(t, _mm256_set1_ps(a->hi));
        return _mm256_min_ps(one, _mm256_max_ps(z, t));
    case QCC_ACT_SIGMOID: {
        float tmp[8] __attribute__((aligned(32)));
        _mm256_store_ps(tmp, v);
        for (i = 0; i < 8; i++) tmp[i] = 1.0f / (1.0f + expf(-tmp[i]));
        return _mm256_load_ps(tmp);
    }
    default:
        return v;
    }
}

#pragma GCC pop_options
#endif

/* The fake-quant of v: clip(rint(v / s) + z, qmin, qmax) - z) * s in float32. */
static inline float qcc_fq_one(float v, float s, float z, float qmin, float qmax)
{
    v = qcc_rint(v / s) + z;
    v = v < qmin ? qmin : v;
    v = v > qmax ? qmax : v;
    return (v - z) * s;
}

/* One run of n elements of channel ch: the epilogue with residual `add` (or NULL). */
static inline void qcc_epilogue_run(const qcc_act *act, float *restrict c, const float *restrict add,
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
        for (j = 0; j < n; j++) c[j] = qcc_fq_one(c[j], s, z, qmin, qmax);
    }
}

/* The epilogue of elements [e0, e1) counted from act->base (split at channels). */
static inline void qcc_epilogue_range(const qcc_act *act, float *c0, ptrdiff_t e0, ptrdiff_t e1)
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
static inline void qcc_activate(const qcc_act *act, float *c, ptrdiff_t ldc, int rows, ptrdiff_t cols)
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

/* ---- packing: runs of output positions ----------------------------------------
 * Output position p = (q*oh + h)*ow + w reads its taps at pos(p) = q*s_q + h*s_h +
 * w*s_w from the padded input. A packed panel of NR positions is gathered run by
 * run: a run is positions contiguous in one output row and in one panel. */

typedef struct {
    int ow, oh;                  /* p = (q*oh + h)*ow + w */
    ptrdiff_t s_q, s_h, s_w;     /* pos(p) = q*s_q + h*s_h + w*s_w */
} qcc_positions;

typedef struct {
    int panel, col, len;
    ptrdiff_t src;
} qcc_run;

/* Positions of a convolution's output read from padded planes of shape dims. */
QCC_INLINE qcc_positions qcc_conv_positions(const qcc_geom *g, const int *dims, int split)
{
    qcc_positions s;
    s.ow = g->osp[2];
    s.oh = g->osp[1];
    s.s_q = (ptrdiff_t)g->st[0] * dims[1] * dims[2];
    s.s_h = (ptrdiff_t)g->st[1] * dims[2];
    s.s_w = split ? 1 : g->st[2];
    return s;
}

/* Merge position dims that are contiguous in the source into longer rows. */
QCC_INLINE void qcc_positions_merge(qcc_positions *s, int n)
{
    if (s->s_w == 1 && s->s_h == s->ow) {
        s->ow *= s->oh;
        s->oh = 1;
        s->s_h = s->s_q;
    }
    if (s->oh == 1 && s->s_w == 1 && s->s_q == s->ow) {
        s->ow = n;
        s->s_q = s->s_h = n;
    }
}

/* pos(p) of one position. */
QCC_INLINE ptrdiff_t qcc_position(const qcc_positions *s, int p)
{
    const int r = p / s->ow, q = r / s->oh;
    return q * s->s_q + (r - q * s->oh) * s->s_h + (p - r * s->ow) * s->s_w;
}

/* Runs of the positions [j0, j0 + nc) in panels of nr; returns how many. */
QCC_INLINE int qcc_runs(const qcc_positions *s, int j0, int nc, int nr, qcc_run *runs)
{
    int n = 0, j = j0;
    const int end = j0 + nc;
    int r = j / s->ow, w = j - r * s->ow;
    int q = r / s->oh, h = r - q * s->oh;
    while (j < end) {
        const int col = (j - j0) % nr;
        int len = s->ow - w;
        if (len > nr - col) len = nr - col;
        if (len > end - j) len = end - j;
        runs[n].panel = (j - j0) / nr;
        runs[n].col = col;
        runs[n].len = len;
        runs[n].src = q * s->s_q + h * s->s_h + w * s->s_w;
        n++;
        j += len;
        w += len;
        if (w == s->ow) {
            w = 0;
            if (++h == s->oh) {
                h = 0;
                q++;
            }
        }
    }
    return n;
}

/* ---- per-thread scratch ------------------------------------------------------ */

static pthread_key_t qcc_buf_keys[3];
static pthread_once_t qcc_buf_once = PTHREAD_ONCE_INIT;

static void qcc_buf_free(void *p) { free(p); }
static void qcc_buf_key_init(void)
{
    pthread_key_create(&qcc_buf_keys[0], qcc_buf_free);
    pthread_key_create(&qcc_buf_keys[1], qcc_buf_free);
    pthread_key_create(&qcc_buf_keys[2], qcc_buf_free);
}

/* A 64-byte aligned scratch area of at least `bytes`, owned by the calling thread
 * (grown on demand, freed when the thread ends); NULL when out of memory. Slot 0 is
 * the kernels' general scratch, slot 1 a second area that stays valid while slot 0
 * is used (a GEMM's weights packed at run time, _gemm_impl.h), slot 2 a third one
 * that stays valid while a GEMM runs (an image's padded input, _conv_impl.h). */
static void *qcc_thread_buffer_slot(int slot, size_t bytes)
{
    char *base;
    pthread_once(&qcc_buf_once, qcc_buf_key_init);
    base = (char *)pthread_getspecific(qcc_buf_keys[slot]);
    if (base == NULL || *(size_t *)base < bytes) {
        void *fresh = NULL;
        size_t cap = bytes + bytes / 4 + 4096;
        if (posix_memalign(&fresh, 64, cap + 64) != 0) return NULL;
        free(base);
        base = (char *)fresh;
        *(size_t *)base = cap;
        pthread_setspecific(qcc_buf_keys[slot], base);
    }
    return base + 64;
}

static void *qcc_thread_buffer(size_t bytes) { return qcc_thread_buffer_slot(0, bytes); }

/* ---- thread pool --------------------------------------------------------------
 * A job is fn(arg) run by the calling thread and by up to n - 1 workers that join it
 * while it is open; fn hands out its work itself (tasks taken from a shared counter),
 * so the caller never waits for a worker that has not started: once the caller's
 * fn returns, the job is closed and only workers already in it are waited for (a
 * worker kept off its core by other processes simply misses the job).
 *
 * A worker that finishes a job spins on the job counter for QCC_SPIN_US
 * microseconds (default 200; 0: never) before it sleeps on the condition variable:
 * between the ops of a graph the caller spends a few microseconds in Python, far
 * less than a futex wake-up takes, so without the spin the worker would reach the
 * short kernels of a small model too late to take part in them.
 *
 * One pool serves the whole runtime: every compiled module binds its qcc_parallel
 * to the pool of qcc.runtime._kernels (the capsule `_pool_capsule`, bound at import
 * with qcc_pool_bind), so there is one set of workers, not one per module. */

typedef void (*qcc_task_fn)(void *arg);
typedef void (*qcc_parallel_fn)(qcc_task_fn fn, void *arg, int width);

#define QCC_MAX_THREADS 64
#define QCC_POOL_CAPSULE "qcc.runtime.pool"
static pthread_mutex_t qcc_pool_run = PTHREAD_MUTEX_INITIALIZER;  /* one job at a time */
static pthread_mutex_t qcc_pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcc_pool_go = PTHREAD_COND_INITIALIZER;
static int qcc_pool_workers;          /* running workers, ids 1..qcc_pool_workers */
static unsigned long qcc_pool_gen;    /* job counter (atomic) */
static unsigned long qcc_pool_seen0[QCC_MAX_THREADS];
static qcc_task_fn qcc_pool_fn;
static void *qcc_pool_arg;
static fenv_t qcc_pool_env;           /* the caller's floating-point environment */
static int qcc_pool_open, qcc_pool_width, qcc_pool_active, qcc_pool_sleepers;  /* atomic */
static int qcc_pool_forkable;
static long qcc_pool_spin_ns = -1;    /* from QCC_SPIN_US on the first job */
static qcc_parallel_fn qcc_pool_shared;  /* the runtime's pool, when bound */

static void qcc_pool_child(void)
{
    /* Only the forking thread exists in the child: start over. */
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    qcc_pool_run = m;
    qcc_pool_mu = m;
    qcc_pool_go = c;
    qcc_pool_workers = 0;
    qcc_pool_open = 0;
    qcc_pool_active = 0;
    qcc_pool_sleepers = 0;
}

static inline void qcc_cpu_relax(void)
{
#if QCC_X86
    _mm_pause();
#endif
}

static long qcc_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* The next job after `seen`: spin for qcc_pool_spin_ns, then sleep. */
static unsigned long qcc_pool_next(unsigned long seen)
{
    unsigned long gen = __atomic_load_n(&qcc_pool_gen, __ATOMIC_SEQ_CST);
    if (gen == seen && qcc_pool_spin_ns > 0) {
        const long until = qcc_now_ns() + qcc_pool_spin_ns;
        int i = 0;
        while ((gen = __atomic_load_n(&qcc_pool_gen, __ATOMIC_SEQ_CST)) == seen) {
            qcc_cpu_relax();
            if (++i == 64) {
                i = 0;
                if (qcc_now_ns() > until) break;
            }
        }
    }
    if (gen != seen) return gen;
    pthread_mutex_lock(&qcc_pool_mu);
    __atomic_add_fetch(&qcc_pool_sleepers, 1, __ATOMIC_SEQ_CST);
    while ((gen = __atomic_load_n(&qcc_pool_gen, __ATOMIC_SEQ_CST)) == seen)
        pthread_cond_wait(&qcc_pool_go, &qcc_pool_mu);
    __atomic_sub_fetch(&qcc_pool_sleepers, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&qcc_pool_mu);
    return gen;
}

static void *qcc_pool_main(void *arg)
{
    const int id = (int)(intptr_t)arg;
    unsigned long seen = qcc_pool_seen0[id];
    for (;;) {
        qcc_task_fn fn;
        void *farg;
        fenv_t own, env;
        seen = qcc_pool_next(seen);
        /* Join: announce, then look whether the job is still open (the caller closes
         * it, then waits for the announced: one of the two sees the other). The job
         * read is the one open now, which may be later than `seen`; it stays valid
         * until this worker leaves. */
        __atomic_add_fetch(&qcc_pool_active, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&qcc_pool_open, __ATOMIC_SEQ_CST)
            && id < __atomic_load_n(&qcc_pool_width, __ATOMIC_SEQ_CST)) {
            seen = __atomic_load_n(&qcc_pool_gen, __ATOMIC_SEQ_CST);
            fn = qcc_pool_fn;
            farg = qcc_pool_arg;
            env = qcc_pool_env;
            fegetenv(&own);
            fesetenv(&env);
            fn(farg);
            fesetenv(&own);
        }
        __atomic_sub_fetch(&qcc_pool_active, 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

/* fn(arg) on the calling thread and up to `width` - 1 workers of this module's own
 * pool; just the caller when width <= 1 or when another thread's job is running. */
static void qcc_pool_job(qcc_task_fn fn, void *arg, int width)
{
    int i = 0;
    if (width <= 1 || pthread_mutex_trylock(&qcc_pool_run) != 0) {
        fn(arg);
        return;
    }
    if (qcc_pool_spin_ns < 0) {
        const char *v = getenv("QCC_SPIN_US");
        long us = v && *v ? strtol(v, NULL, 10) : 200;
        qcc_pool_spin_ns = (us < 0 ? 0 : us > 1000000 ? 1000000 : us) * 1000L;
    }
    if (!qcc_pool_forkable) {
        pthread_atfork(NULL, NULL, qcc_pool_child);
        qcc_pool_forkable = 1;
    }
    while (qcc_pool_workers < width - 1 && qcc_pool_workers < QCC_MAX_THREADS - 1) {
        pthread_t th;
        pthread_attr_t attr;
        const int id = qcc_pool_workers + 1;
        int err;
        qcc_pool_seen0[id] = __atomic_load_n(&qcc_pool_gen, __ATOMIC_SEQ_CST);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        err = pthread_create(&th, &attr, qcc_pool_main, (void *)(intptr_t)id);
        pthread_attr_destroy(&attr);
        if (err) break;
        qcc_pool_workers = id;
    }
    qcc_pool_fn = fn;
    qcc_pool_arg = arg;
    fegetenv(&qcc_pool_env);
    __atomic_store_n(&qcc_pool_width, width, __ATOMIC_SEQ_CST);
    __atomic_store_n(&qcc_pool_open, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&qcc_pool_gen, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&qcc_pool_sleepers, __ATOMIC_SEQ_CST) > 0) {
        pthread_mutex_lock(&qcc_pool_mu);
        pthread_cond_broadcast(&qcc_pool_go);
        pthread_mutex_unlock(&qcc_pool_mu);
    }
    fn(arg);
    __atomic_store_n(&qcc_pool_open, 0, __ATOMIC_SEQ_CST);
    /* Workers still in the job are finishing their last task. */
    while (__atomic_load_n(&qcc_pool_active, __ATOMIC_SEQ_CST) > 0) {
        qcc_cpu_relax();
        if (++i == 1024) {
            i = 0;
            sched_yield();
        }
    }
    pthread_mutex_unlock(&qcc_pool_run);
}

/* Bind this module's qcc_parallel to the pool `p` (another module's qcc_pool_job,
 * from its capsule); NULL: back to this module's own pool. */
static void qcc_pool_bind(void *p)
{
    qcc_pool_shared = (qcc_parallel_fn)p;
}

/* fn(arg) on the calling thread and up to `width` - 1 workers of the runtime's pool
 * (this module's own until qcc_pool_bind is called). */
static void qcc_parallel(qcc_task_fn fn, void *arg, int width)
{
    if (width <= 1) {
        fn(arg);
        return;
    }
    if (qcc_pool_shared != NULL)
        qcc_pool_shared(fn, arg, width);
    else
        qcc_pool_job(fn, arg, width);
}

/* ---- instruction sets ----------------------------------------------------------
 * Levels, lowest first: QCC_ISA_SCALAR (baseline x86-64 / plain C), QCC_ISA_AVX2
 * (AVX2 + FMA), QCC_ISA_AVX512 (F, VL, BW, DQ; for the int8 GEMM also VNNI). A
 * kernel family asks whether the CPU runs a level (qcc_cpu_runs) and takes the best
 * one at or below the ceiling the environment variable QCC_ISA names
 * (qcc_isa_ceiling; qcc/runtime/isa.py validates the value and forces levels for
 * tests through each module's set-variant function). */

enum { QCC_ISA_SCALAR = 0, QCC_ISA_AVX2 = 1, QCC_ISA_AVX512 = 2 };

/* Whether this CPU (and OS) runs `level`; `vnni`: also AVX-512 VNNI at QCC_ISA_AVX512. */
static int qcc_cpu_runs(int level, int vnni)
{
    if (level == QCC_ISA_SCALAR) return 1;
#if QCC_X86
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0;
    if (level == QCC_ISA_AVX2) return 1;
    if (level == QCC_ISA_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
               && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
               && (!vnni || __builtin_cpu_supports("avx512vnni"));
#endif
    (void)vnni;
    return 0;
}

/* The highest level QCC_ISA allows (scalar, avx2, avx512; unset or unknown: avx512). */
static int qcc_isa_ceiling(void)
{
    const char *v = getenv("QCC_ISA");
    char buf[16];
    size_t i = 0, j;
    if (v == NULL) return QCC_ISA_AVX512;
    while (*v == ' ' || *v == '\t' || *v == '\n') v++;
    for (; v[i] && i < sizeof buf - 1; i++) buf[i] = v[i];
    buf[i] = 0;
    for (j = i; j > 0 && (buf[j - 1] == ' ' || buf[j - 1] == '\t' || buf[j - 1] == '\n'); j--)
        buf[j - 1] = 0;
    if (strcasecmp(buf, "scalar") == 0) return QCC_ISA_SCALAR;
    if (strcasecmp(buf, "avx2") == 0) return QCC_ISA_AVX2;
    return QCC_ISA_AVX512;
}

/* The best level this CPU runs at or below `ceiling`. */
static int qcc_isa_best(int ceiling, int vnni)
{
    int level = ceiling;
    while (level > QCC_ISA_SCALAR && !qcc_cpu_runs(level, vnni)) level--;
    return level;
}

#endif
