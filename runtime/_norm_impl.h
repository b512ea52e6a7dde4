/* Inner loops of softmax, layer normalization, erf and GELU (runtime/_norm.pyx).
 *
 * qcc_expf is a vectorizable exp (Cephes polynomial, about 1 ulp on [-87, 88]);
 * qcc_erff a vectorizable erf (1.14 ulp at most, tests/runtime/test_erf_gelu.py);
 * softmax sums in 16 float lanes combined in double, layer norm in double lanes.
 * Loop indices are ptrdiff_t: CPython builds extensions with -fwrapv, which blocks
 * vectorizing int indices.
 * The module is built with -ffp-contract=off: no multiply-add is fused into an FMA,
 * so the AVX-512, AVX2 and plain builds of a loop compute the same float32
 * operations in the same order and give the same bits.
 */
#ifndef QCC_NORM_IMPL_H
#define QCC_NORM_IMPL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "_common.h"
#include "_dense_post.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && __GNUC__ >= 12
#define QCC_NORM_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define QCC_NORM_CLONES
#endif

/* exp(x) for x in [-87.3, 88.3]; 0 below (where exp is subnormal or 0: a masked
 * attention score gives an exact 0, and no subnormal slows the products after a
 * softmax), exp(88.3) above. */
static inline __attribute__((always_inline)) float qcc_expf(float x)
{
    const float shifter = 12582912.0f; /* 1.5 * 2^23: float add rounds to an integer */
    const int under = x < -87.3f;
    float t, n, r, p;
    int32_t bits;
    x = under ? -87.3f : x;
    x = x > 88.3f ? 88.3f : x;
    t = x * 1.44269504088896341f + shifter;
    n = t - shifter;
    r = x - n * 0.693359375f + n * 2.12194440e-4f;
    p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits - 0x4B400000 + 127) << 23;   /* 2^n */
    memcpy(&t, &bits, sizeof t);
    return under ? 0.0f : p * t;
}

/* erf(x) in float32, 1.14 ulp at most (measured against float64 erf on every
 * 6e-6 step of [-6, 6] and near 0). |x| <= 0.921875: x + x * P(x^2), P fitted to
 * erf(x)/x - 1 (the small correction rounds apart from x); below 3.925:
 * 1 - exp(Q(|x|)), Q fitted to log(erfc); above, 1. The sign is x's; NaN stays NaN.
 * Both branches are computed and one is selected, so that loops vectorize (Q is
 * evaluated unclamped: its value at a large |x| is discarded). */
static inline __attribute__((always_inline)) float qcc_erff(float x)
{
    const float a = fabsf(x);
    const float t = a * a;
    float p, q, y;
    p = -0.000598617306f;
    p = p * t + 0.00499217352f;
    p = p * t + -0.026765855f;
    p = p * t + 0.112817928f;
    p = p * t + -0.376124918f;
    p = p * t + 0.128379151f;
    p = a + a * p;
    q = -2.48125183e-08f;
    q = q * a + 2.17673596e-06f;
    q = q * a + -5.11130456e-05f;
    q = q * a + 0.000623499393f;
    q = q * a + -0.00484685553f;
    q = q * a + 0.0266035367f;
    q = q * a + -0.110322833f;
    q = q * a + -0.631628692f;
    q = q * a + -1.13032186f;
    q = q * a + 0.000336636382f;
    q = 1.0f - qcc_expf(q);
    q = a < 3.925f ? q : 1.0f;
    y = a > 0.921875f ? q : p;
    return copysignf(y, x);
}

/* GELU as exported from PyTorch: (x * (erf(x / sqrt(2)) + 1)) * 0.5, each step a
 * float32 operation (the same bits as the Div, Erf, Add, Mul, Mul nodes). */
static inline __attribute__((always_inline)) float qcc_geluf(float x)
{
    return (x * (qcc_erff(x / 1.41421354f) + 1.0f)) * 0.5f;
}

#define QCC_UNARY_LOOP(name, f, attr)                                                 \
    attr static void name(const float *x, float *y, ptrdiff_t n)                      \
    {                                                                                 \
        ptrdiff_t i;                                                                  \
        for (i = 0; i < n; i++) y[i] = f(x[i]);                                       \
    }

#if QCC_X86
QCC_UNARY_LOOP(qcc_erf_tail_avx512, qcc_erff, __attribute__((target("arch=x86-64-v4"))))
QCC_UNARY_LOOP(qcc_erf_tail_avx2, qcc_erff, __attribute__((target("arch=x86-64-v3"))))
QCC_UNARY_LOOP(qcc_gelu_tail_avx512, qcc_geluf, __attribute__((target("arch=x86-64-v4"))))
QCC_UNARY_LOOP(qcc_gelu_tail_avx2, qcc_geluf, __attribute__((target("arch=x86-64-v3"))))

/* ---- erf and GELU, QCC_ERF_NV vectors interleaved (AVX2 and AVX-512) ---------------
 * qcc_erff's and qcc_expf's float32 operations, lane for lane and in their order (no
 * FMA: the module is built with -ffp-contract=off), on QCC_ERF_NV vectors whose steps
 * alternate. The polynomials are chains of dependent multiplies and adds: the
 * compiler's loop of one vector waited on their latency (66 cycles per 8 GELUs on
 * AMD Zen 3; on an AVX-512 Xeon its 16-lane loop took 5 cycles a GELU, ~2 when
 * interleaved); independent chains side by side fill the pipelines. _erf_simd.h is
 * the code, included once per vector width. The same bits as the plain build
 * (tests/runtime/test_erf_gelu.py). */
#define QCC_ERF_NV 4
#define QCC_EACH(stmt)                                  \
    do {                                                \
        int J;                                          \
        _Pragma("GCC unroll 4")                         \
        for (J = 0; J < QCC_ERF_NV; J++) { stmt; }      \
    } while (0)

#pragma GCC push_options
#pragma GCC target("avx2")
#define QCC_SIMD_W 8
#define QCC_SIMD_FN(name) name##_avx2
#define QCC_SIMD_TAIL_ERF qcc_erf_tail_avx2
#define QCC_SIMD_TAIL_GELU qcc_gelu_tail_avx2
#include "_erf_simd.h"
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")
#define QCC_SIMD_W 16
#define QCC_SIMD_FN(name) name##_avx512
#define QCC_SIMD_TAIL_ERF qcc_erf_tail_avx512
#define QCC_SIMD_TAIL_GELU qcc_gelu_tail_avx512
#include "_erf_simd.h"
#pragma GCC pop_options
#endif
QCC_UNARY_LOOP(qcc_erf_plain, qcc_erff, )
QCC_UNARY_LOOP(qcc_gelu_plain, qcc_geluf, )

/* The level (QCC_ISA_*) the erf and GELU loops run at: the best one at or below
 * QCC_ISA, set when the module loads (qcc_norm_set_level). */
static int qcc_norm_level = QCC_ISA_SCALAR;

static int qcc_norm_set_level(int level)
{
    if (level < QCC_ISA_SCALAR || level > QCC_ISA_AVX512 || !qcc_cpu_runs(level, 0)) return 0;
    qcc_norm_level = level;
    return 1;
}

static void qcc_erf(const float *x, float *y, ptrdiff_t n)
{
#if QCC_X86
    if (qcc_norm_level == QCC_ISA_AVX512) { qcc_erf_avx512(x, y, n); return; }
    if (qcc_norm_level == QCC_ISA_AVX2) { qcc_erf_avx2(x, y, n); return; }
#endif
    qcc_erf_plain(x, y, n);
}

static void qcc_gelu(const float *x, float *y, ptrdiff_t n)
{
#if QCC_X86
    if (qcc_norm_level == QCC_ISA_AVX512) { qcc_gelu_avx512(x, y, n); return; }
    if (qcc_norm_level == QCC_ISA_AVX2) { qcc_gelu_avx2(x, y, n); return; }
#endif
    qcc_gelu_plain(x, y, n);
}

/* max of src[0:n] (n >= 1), in 16 lanes so that it vectorizes. */
static inline __attribute__((always_inline)) float qcc_max(const float *restrict src, ptrdiff_t n)
{
    float lanes[16];
    float m = src[0];
    ptrdiff_t i, j;
    for (j = 0; j < 16; j++) lanes[j] = m;
    for (i = 0; i + 16 <= n; i += 16)
        for (j = 0; j < 16; j++) lanes[j] = src[i + j] > lanes[j] ? src[i + j] : lanes[j];
    for (; i < n; i++) m = src[i] > m ? src[i] : m;
    for (j = 0; j < 16; j++) m = lanes[j] > m ? lanes[j] : m;
    return m;
}

/* A per-tensor fake-quant applied to a softmax's output as it is written (the
 * executor fuses a quant.fake_quant that is the softmax's only user): the epilogue's
 * (runtime/_epilogue.h, qcc_fq_one; in vectors qcc_fq16), so the same bits as the
 * separate fake-quant step. */
typedef struct {
    float s, z, qmin, qmax;
} qcc_norm_fq;

/* The fake-quant (qcc_fq_one) of y[0:n] in place (after erf, GELU or layer norm rows). */
QCC_NORM_CLONES
static void qcc_norm_fq_range(float *y, ptrdiff_t n, const qcc_norm_fq *fq)
{
    const qcc_norm_fq f = *fq;   /* a copy y cannot alias: the loop vectorizes */
    ptrdiff_t i;
    QCC_FQ_LOOP(n, i, y[i], y[i], f.s, f.z, f.qmin, f.qmax);
}

/* A dense layer's epilogue (qcc_dense_post_fn, runtime/_dense_post.h) on n outputs
 * of a row, in place: y + res, then GELU, then the fake-quant: the operations of the
 * add, GELU and fake-quant steps, so their bits. */
static void qcc_norm_post(float *y, const float *res, ptrdiff_t n, const qcc_dense_post_arg *arg)
{
    ptrdiff_t i;
    if (res != NULL)
        for (i = 0; i < n; i++) y[i] = y[i] + res[i];
    if (arg->gelu) qcc_gelu(y, y, n);
    if (arg->fq_on) {
        qcc_norm_fq fq;
        fq.s = arg->s;
        fq.z = arg->z;
        fq.qmin = arg->qmin;
        fq.qmax = arg->qmax;
        qcc_norm_fq_range(y, n, &fq);
    }
}

/* The last pass of a softmax row: y *= inv (the sum's reciprocal), then fq if any. */
static inline __attribute__((always_inline)) void qcc_softmax_scale(float *restrict yr, ptrdiff_t n,
                                                                    float inv, const qcc_norm_fq *fq)
{
    ptrdiff_t i;
    if (fq == NULL)
        for (i = 0; i < n; i++) yr[i] *= inv;
    else
        QCC_FQ_LOOP(n, i, yr[i], yr[i] * inv, fq->s, fq->z, fq->qmin, fq->qmax);
}

/* Softmax of each contiguous row of n elements: m = the row's max; exp(x - m) of
 * each 16-element block into 16 lanes of sums, block after block, the last n % 16
 * elements into s one by one, then s += lanes[0], ..., lanes[15]; y = exp * (1 / s),
 * then the fake-quant `fq` (NULL: none). */
QCC_NORM_CLONES
static void qcc_softmax_rows_c(const float *x, float *y, ptrdiff_t rows, ptrdiff_t n,
                               const qcc_norm_fq *fq)
{
    ptrdiff_t r, i, j;
    for (r = 0; r < rows; r++) {
        const float *restrict xr = x + r * n;
        float *restrict yr = y + r * n;
        const float m = qcc_max(xr, n);
        float lanes[16] = {0};
        float s = 0.0f;
        for (i = 0; i + 16 <= n; i += 16)
            for (j = 0; j < 16; j++) {
                yr[i + j] = qcc_expf(xr[i + j] - m);
                lanes[j] += yr[i + j];
            }
        for (; i < n; i++) {
            yr[i] = qcc_expf(xr[i] - m);
            s += yr[i];
        }
        for (j = 0; j < 16; j++) s += lanes[j];
        qcc_softmax_scale(yr, n, 1.0f / s, fq);
    }
}

#if QCC_X86
/* qcc_softmax_rows_c on AVX2: the same operations in the same order (the lanes'
 * sums block after block, the tail's one by one, then the lanes in order), with the
 * exps of two blocks side by side (qcc_exp_vec_avx2) and the tail's in vectors. */
#if QCC_ERF_NV != 4
#error "qcc_softmax_rows_avx2 takes two blocks of 16 at a time: QCC_ERF_NV must be 4"
#endif
#pragma GCC push_options
#pragma GCC target("avx2")
static void qcc_softmax_rows_avx2(const float *x, float *y, ptrdiff_t rows, ptrdiff_t n,
                                  const qcc_norm_fq *fq)
{
    ptrdiff_t r, i, j;
    for (r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        const float m = qcc_max(xr, n);
        const __m256 vm = _mm256_set1_ps(m);
        __m256 l0 = _mm256_setzero_ps(), l1 = _mm256_setzero_ps(), v[QCC_ERF_NV], e[QCC_ERF_NV];
        float lanes[16], tail[32], s = 0.0f;
        for (i = 0; i + 32 <= n; i += 32) {
            QCC_EACH(v[J] = _mm256_sub_ps(_mm256_loadu_ps(xr + i + 8 * J), vm));
            qcc_exp_vec_avx2(v, e);
            QCC_EACH(_mm256_storeu_ps(yr + i + 8 * J, e[J]));
            l0 = _mm256_add_ps(l0, e[0]);
            l1 = _mm256_add_ps(l1, e[1]);
            l0 = _mm256_add_ps(l0, e[2]);
            l1 = _mm256_add_ps(l1, e[3]);
        }
        if (i < n) {
            /* the last block of 16 (if whole) and the tail: padded with x = m */
            const ptrdiff_t left = n - i, whole = left >= 16 ? 16 : 0;
            float pad[32];
            for (j = 0; j < 32; j++) pad[j] = j < left ? xr[i + j] : m;
            QCC_EACH(v[J] = _mm256_sub_ps(_mm256_loadu_ps(pad + 8 * J), vm));
            qcc_exp_vec_avx2(v, e);
            QCC_EACH(_mm256_storeu_ps(tail + 8 * J, e[J]));
            if (whole) {
                l0 = _mm256_add_ps(l0, e[0]);
                l1 = _mm256_add_ps(l1, e[1]);
            }
            for (j = 0; j < left; j++) yr[i + j] = tail[j];
            for (j = whole; j < left; j++) s += tail[j];
        }
        _mm256_storeu_ps(lanes, l0);
        _mm256_storeu_ps(lanes + 8, l1);
        for (j = 0; j < 16; j++) s += lanes[j];
        qcc_softmax_scale(yr, n, 1.0f / s, fq);
    }
}
#pragma GCC pop_options
#endif

#if QCC_X86
#include "_softmax_avx512.h"
#endif

/* The softmax rows of the level in use (qcc_norm_level): every level gives the same
 * bits (the plain level runs the compiler's clone of qcc_softmax_rows_c). */
static void qcc_softmax_rows(const float *x, float *y, ptrdiff_t rows, ptrdiff_t n,
                             const qcc_norm_fq *fq)
{
#if QCC_X86
    if (qcc_norm_level == QCC_ISA_AVX512) { qcc_softmax_rows_avx512(x, y, rows, n, fq); return; }
    if (qcc_norm_level == QCC_ISA_AVX2) { qcc_softmax_rows_avx2(x, y, rows, n, fq); return; }
#endif
    qcc_softmax_rows_c(x, y, rows, n, fq);
}

/* Softmax over the middle dim of [outer, n, inner], then `fq` (NULL: none); acc holds
 * 2*inner floats. */
QCC_NORM_CLONES
static void qcc_softmax_strided(const float *x, float *y, ptrdiff_t outer, ptrdiff_t n,
                                ptrdiff_t inner, float *acc, const qcc_norm_fq *fq)
{
    float *restrict m = acc, *restrict s = acc + inner;
    ptrdiff_t o, a, i;
    for (o = 0; o < outer; o++) {
        const float *restrict xb = x + o * n * inner;
        float *restrict yb = y + o * n * inner;
        for (i = 0; i < inner; i++) {
            m[i] = xb[i];
            s[i] = 0.0f;
        }
        for (a = 1; a < n; a++)
            for (i = 0; i < inner; i++) m[i] = xb[a * inner + i] > m[i] ? xb[a * inner + i] : m[i];
        for (a = 0; a < n; a++)
            for (i = 0; i < inner; i++) {
                yb[a * inner + i] = qcc_expf(xb[a * inner + i] - m[i]);
                s[i] += yb[a * inner + i];
            }
        for (i = 0; i < inner; i++) s[i] = 1.0f / s[i];
        if (fq == NULL)
            for (a = 0; a < n; a++)
                for (i = 0; i < inner; i++) yb[a * inner + i] *= s[i];
        else
            for (a = 0; a < n; a++) {
                float *yr = yb + a * inner;
                QCC_FQ_LOOP(inner, i, yr[i], yr[i] * s[i], fq->s, fq->z, fq->qmin, fq->qmax);
            }
    }
}

/* The sums of src[0:n] - shift (or of its squares) of `G` rows (1 to 4; row g at
 * src + g * n, its shift shift[g]) in double, each in 8 lanes so that it vectorizes
 * (the lanes, then the last n % 8 elements one by one, then the lanes in order): a
 * row of 50000 elements (a GroupNorm group) sums as exactly as numpy's pairwise
 * float32 sum or better. The rows side by side: their chains of dependent adds
 * overlap (ViT-Tiny's 197 x 192 layer norm at one thread: 42 -> 36 us). */
typedef double qcc_v8d __attribute__((vector_size(64)));
typedef float qcc_v8f __attribute__((vector_size(32)));
static inline __attribute__((always_inline)) void qcc_sums_g(const float *restrict src,
                                                             ptrdiff_t n, const float *shift,
                                                             int square, double *sums, const int G)
{
    qcc_v8d lanes[4], sh[4];
    double s[4] = {0};
    ptrdiff_t i;
    int g, j;
    for (g = 0; g < G; g++) {
        lanes[g] = (qcc_v8d){0};
        sh[g] = (qcc_v8d){0} + (double)shift[g];
    }
    for (i = 0; i + 8 <= n; i += 8)
        for (g = 0; g < G; g++) {
            qcc_v8f f;
            qcc_v8d d;
            __builtin_memcpy(&f, src + g * n + i, sizeof f);
            d = __builtin_convertvector(f, qcc_v8d) - sh[g];
            lanes[g] += square ? d * d : d;
        }
    for (; i < n; i++)
        for (g = 0; g < G; g++) {
            const double d = (double)src[g * n + i] - shift[g];
            s[g] += square ? d * d : d;
        }
    for (j = 0; j < 8; j++)
        for (g = 0; g < G; g++) s[g] += lanes[g][j];
    for (g = 0; g < G; g++) sums[g] = s[g];
}

/* Layer norm of `G` rows (1 to 4) of n elements side by side (qcc_layer_norm_rows). */
static inline __attribute__((always_inline)) void qcc_layer_norm_g(
    const float *x, float *y, const float *scale, const float *bias, ptrdiff_t n, float eps,
    const int G)
{
    const float zero[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    float mean[4], std[4];
    double sums[4];
    ptrdiff_t i;
    int g;
    qcc_sums_g(x, n, zero, 0, sums, G);
    for (g = 0; g < G; g++) mean[g] = (float)(sums[g] / (double)n);
    qcc_sums_g(x, n, mean, 1, sums, G);
    for (g = 0; g < G; g++) std[g] = sqrtf((float)(sums[g] / (double)n) + eps);
    for (g = 0; g < G; g++) {
        const float *restrict xr = x + g * n;
        float *restrict yr = y + g * n;
        const float mg = mean[g], sg = std[g];
        if (bias == NULL)
            for (i = 0; i < n; i++) yr[i] = (xr[i] - mg) / sg * scale[i];
        else
            for (i = 0; i < n; i++) yr[i] = (xr[i] - mg) / sg * scale[i] + bias[i];
    }
}

/* y = (x - mean) / sqrt(var + eps) * scale + bias for each row of n elements
 * (bias may be NULL). Two passes: the mean, then the variance around it, both summed
 * in double and rounded to float32; then each step a float32 operation as in the
 * exported graph (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add) and
 * in numpy's LayerNormalization: d = x - mean, std = sqrt(var + eps), d / std.
 * Four rows at a time while there are (qcc_layer_norm_g: the same operations). */
QCC_NORM_CLONES
static void qcc_layer_norm_rows(const float *x, float *y, const float *scale, const float *bias,
                                ptrdiff_t rows, ptrdiff_t n, float eps)
{
    ptrdiff_t r = 0;
    for (; r + 4 <= rows; r += 4) qcc_layer_norm_g(x + r * n, y + r * n, scale, bias, n, eps, 4);
    for (; r < rows; r++) qcc_layer_norm_g(x + r * n, y + r * n, scale, bias, n, eps, 1);
}

#endif
