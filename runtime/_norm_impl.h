/* Inner loops of softmax and layer normalization (runtime/_norm.pyx).
 *
 * qcc_expf is a vectorizable exp (Cephes polynomial, about 1 ulp on [-87, 88]);
 * reductions use 16 float lanes combined in double. Loop indices are ptrdiff_t:
 * CPython builds extensions with -fwrapv, which blocks vectorizing int indices.
 */
#ifndef QCC_NORM_IMPL_H
#define QCC_NORM_IMPL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && __GNUC__ >= 12
#define QCC_NORM_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define QCC_NORM_CLONES
#endif

/* exp(x) for x in [-87.3, 88.3] (clamped outside). */
static inline __attribute__((always_inline)) float qcc_expf(float x)
{
    const float shifter = 12582912.0f; /* 1.5 * 2^23: float add rounds to an integer */
    float t, n, r, p;
    int32_t bits;
    x = x < -87.3f ? -87.3f : x;
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
    return p * t;
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

/* Softmax of each contiguous row of n elements. */
QCC_NORM_CLONES
static void qcc_softmax_rows(const float *x, float *y, ptrdiff_t rows, ptrdiff_t n)
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
        s = 1.0f / s;
        for (i = 0; i < n; i++) yr[i] *= s;
    }
}

/* Softmax over the middle dim of [outer, n, inner]; acc holds 2*inner floats. */
QCC_NORM_CLONES
static void qcc_softmax_strided(const float *x, float *y, ptrdiff_t outer, ptrdiff_t n,
                                ptrdiff_t inner, float *acc)
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
        for (a = 0; a < n; a++)
            for (i = 0; i < inner; i++) yb[a * inner + i] *= s[i];
    }
}

/* sum of src[0:n] - shift, in 16 float lanes combined in double. */
static inline __attribute__((always_inline)) double qcc_sum(const float *restrict src,
                                                            ptrdiff_t n, float shift, int square)
{
    float lanes[16] = {0};
    double s = 0.0;
    ptrdiff_t i, j;
    for (i = 0; i + 16 <= n; i += 16)
        for (j = 0; j < 16; j++) {
            const float d = src[i + j] - shift;
            lanes[j] += square ? d * d : d;
        }
    for (; i < n; i++) {
        const double d = (double)src[i] - shift;
        s += square ? d * d : d;
    }
    for (j = 0; j < 16; j++) s += lanes[j];
    return s;
}

/* y = (x - mean) / sqrt(var + eps) * scale + bias for each row of n elements
 * (bias may be NULL). Two passes: the mean, then the variance around it. */
QCC_NORM_CLONES
static void qcc_layer_norm_rows(const float *x, float *y, const float *scale, const float *bias,
                                ptrdiff_t rows, ptrdiff_t n, double eps)
{
    ptrdiff_t r, i;
    for (r = 0; r < rows; r++) {
        const float *restrict xr = x + r * n;
        float *restrict yr = y + r * n;
        const float mean = (float)(qcc_sum(xr, n, 0.0f, 0) / (double)n);
        const double var = qcc_sum(xr, n, mean, 1) / (double)n;
        const float rstd = (float)(1.0 / sqrt(var + eps));
        if (bias == NULL)
            for (i = 0; i < n; i++) yr[i] = (xr[i] - mean) * rstd * scale[i];
        else
            for (i = 0; i < n; i++) yr[i] = (xr[i] - mean) * rstd * scale[i] + bias[i];
    }
}

#endif
