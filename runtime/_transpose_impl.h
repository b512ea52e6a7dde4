/* A strided copy into a C-contiguous float32 array (a transpose, or a copy of a view)
 * that applies, as it writes, an optional multiply by a float32 scalar and then an
 * optional per-tensor fake-quant (runtime/_eltwise.pyx `transpose`).
 *
 * The copy's dims are the output's, in its order, each with the input's stride in
 * elements (merged where they follow each other in both). Three loops:
 *   rows:   the last dim is contiguous in the input: each row copied (memcpy, or the
 *           epilogue element by element, which the compiler vectorizes);
 *   tiles:  the last dim is strided and the one before it contiguous in the input (a
 *           swap of the last two dims): 16 x 16 blocks transposed in AVX-512 registers
 *           (qcc_tr16_avx512; masked at the edges), or 8 x 8 in AVX2 ones
 *           (qcc_tr8_avx2), the epilogue on each stored row;
 *   any:    element by element.
 * Every element goes through the same float32 operations in every loop, build and
 * thread: y = x * mul (numpy's product of two float32), then the epilogue's
 * fake-quant (runtime/_epilogue.h: qcc_fq_one, in vectors qcc_fq16 / qcc_fq8), so
 * the bits of the transpose, multiply and fake-quant steps. */
#ifndef QCC_TRANSPOSE_IMPL_H
#define QCC_TRANSPOSE_IMPL_H

#include <string.h>

#include "_eltwise_impl.h"   /* QCC_ELT_CLONES, QCC_ELT_CHUNK */

#define QCC_COPY_MAX_DIMS 8

typedef struct {
    int mul_on, fq_on;
    float mul;                 /* y = x * mul first, when mul_on */
    float s, z, qmin, qmax;    /* then the fake-quant, when fq_on */
} qcc_copy_epi;

typedef struct {
    const float *x;
    float *y;
    int nd;                              /* >= 1 */
    ptrdiff_t dims[QCC_COPY_MAX_DIMS];   /* the output's dims */
    ptrdiff_t xs[QCC_COPY_MAX_DIMS];     /* the input's stride of each, in elements */
    qcc_copy_epi epi;
    int tiles;                           /* the tiles loop may run: 2 AVX-512, 1 AVX2 */
    ptrdiff_t units, per, next;          /* tasks: `per` units (see qcc_copy_task) */
} qcc_copy_job;

QCC_INLINE float qcc_copy_epi1(float v, const qcc_copy_epi *e)
{
    if (e->mul_on) v = v * e->mul;
    if (e->fq_on) v = qcc_fq_one(v, e->s, e->z, e->qmin, e->qmax);
    return v;
}

#if QCC_X86
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
/* qcc_copy_epi1 of 16 lanes (the fake-quant's vectors k made once a call: qcc_fq16). */
QCC_INLINE __m512 qcc_copy_epi16(__m512 v, const qcc_copy_epi *e, const qcc_fq16_k *k)
{
    if (e->mul_on) v = _mm512_mul_ps(v, _mm512_set1_ps(e->mul));
    if (e->fq_on) v = qcc_fq16(v, k);
    return v;
}

/* y[a*ldy + b] = epi(x[a + b*sb]) for a < na, b < nb. */
static void qcc_copy_tiles_avx512(const float *x, ptrdiff_t sb, float *y, ptrdiff_t ldy,
                                  ptrdiff_t na, ptrdiff_t nb, const qcc_copy_epi *e)
{
    ptrdiff_t a0, b0;
    int i;
    qcc_fq16_k k;
    qcc_fq16_of(&k, e->s, e->z, e->qmin, e->qmax);
    for (a0 = 0; a0 < na; a0 += 16)
        for (b0 = 0; b0 < nb; b0 += 16) {
            const int ka = na - a0 < 16 ? (int)(na - a0) : 16, kb = nb - b0 < 16 ? (int)(nb - b0) : 16;
            const __mmask16 ma = (__mmask16)((1u << ka) - 1), mb = (__mmask16)((1u << kb) - 1);
            __m512 r[16];
            for (i = 0; i < 16; i++)
                r[i] = i < kb ? _mm512_maskz_loadu_ps(ma, x + (b0 + i) * sb + a0) : _mm512_setzero_ps();
            qcc_tr16_avx512(r);
            for (i = 0; i < ka; i++)
                _mm512_mask_storeu_ps(y + (a0 + i) * ldy + b0, mb, qcc_copy_epi16(r[i], e, &k));
        }
}
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
/* qcc_copy_epi16 on 8 lanes. */
QCC_INLINE __m256 qcc_copy_epi8(__m256 v, const qcc_copy_epi *e, const qcc_fq8_k *k)
{
    if (e->mul_on) v = _mm256_mul_ps(v, _mm256_set1_ps(e->mul));
    if (e->fq_on) v = qcc_fq8(v, k);
    return v;
}

/* qcc_copy_tiles_avx512 in 8 x 8 blocks: y[a*ldy + b] = epi(x[a + b*sb]). */
static void qcc_copy_tiles_avx2(const float *x, ptrdiff_t sb, float *y, ptrdiff_t ldy,
                                ptrdiff_t na, ptrdiff_t nb, const qcc_copy_epi *e)
{
    static const int32_t masks[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    ptrdiff_t a0, b0;
    int i;
    qcc_fq8_k k;
    qcc_fq8_of(&k, e->s, e->z, e->qmin, e->qmax);
    for (a0 = 0; a0 < na; a0 += 8)
        for (b0 = 0; b0 < nb; b0 += 8) {
            const int ka = na - a0 < 8 ? (int)(na - a0) : 8, kb = nb - b0 < 8 ? (int)(nb - b0) : 8;
            const __m256i ma = _mm256_loadu_si256((const __m256i *)(masks + 8 - ka));
            __m256 r[8];
            for (i = 0; i < 8; i++)
                r[i] = i >= kb ? _mm256_setzero_ps()
                       : ka == 8 ? _mm256_loadu_ps(x + (b0 + i) * sb + a0)
                                 : _mm256_maskload_ps(x + (b0 + i) * sb + a0, ma);
            qcc_tr8_avx2(r);
            for (i = 0; i < ka; i++) {
                const __m256 v = qcc_copy_epi8(r[i], e, &k);
                if (kb == 8)
                    _mm256_storeu_ps(y + (a0 + i) * ldy + b0, v);
                else
                    qcc_store_first_avx2(y + (a0 + i) * ldy + b0, v, kb);
            }
        }
}
#pragma GCC pop_options
#endif

/* One row of n elements, contiguous in x: the epilogue's flags fixed per loop so
 * that each loop vectorizes. */
QCC_INLINE void qcc_copy_row(const float *restrict x, float *restrict y, ptrdiff_t n,
                             const qcc_copy_epi *e)
{
    ptrdiff_t i;
    if (!e->mul_on && !e->fq_on) {
        memcpy(y, x, (size_t)n * sizeof(float));
        return;
    }
    const qcc_copy_epi k = *e;
    if (k.mul_on && k.fq_on)
        QCC_FQ_LOOP(n, i, y[i], x[i] * k.mul, k.s, k.z, k.qmin, k.qmax);
    else if (k.mul_on)
        for (i = 0; i < n; i++) y[i] = x[i] * k.mul;
    else
        QCC_FQ_LOOP(n, i, y[i], x[i], k.s, k.z, k.qmin, k.qmax);
}

/* The offset in x of output element index `o` of the dims before the last `inner`. */
static ptrdiff_t qcc_copy_offset(const qcc_copy_job *j, ptrdiff_t o, int inner)
{
    ptrdiff_t off = 0;
    int d;
    for (d = j->nd - 1 - inner; d >= 0; d--) {
        off += (o % j->dims[d]) * j->xs[d];
        o /= j->dims[d];
    }
    return off;
}

/* Units [u0, u1) of the job: a unit is a row (rows loop), a plane of the last two
 * dims (tiles loop) or an element (any loop). */
QCC_ELT_CLONES
static void qcc_copy_units(const qcc_copy_job *j, ptrdiff_t u0, ptrdiff_t u1)
{
    const int nd = j->nd;
    const ptrdiff_t last = j->dims[nd - 1];
    ptrdiff_t u;
    if (j->xs[nd - 1] == 1) {
        for (u = u0; u < u1; u++)
            qcc_copy_row(j->x + qcc_copy_offset(j, u, 1), j->y + u * last, last, &j->epi);
        return;
    }
#if QCC_X86
    if (j->tiles) {
        const ptrdiff_t plane = j->dims[nd - 2] * last;
        for (u = u0; u < u1; u++)
            (j->tiles == 2 ? qcc_copy_tiles_avx512 : qcc_copy_tiles_avx2)(
                j->x + qcc_copy_offset(j, u, 2), j->xs[nd - 1], j->y + u * plane, last,
                j->dims[nd - 2], last, &j->epi);
        return;
    }
#endif
    for (u = u0; u < u1; u++) j->y[u] = qcc_copy_epi1(j->x[qcc_copy_offset(j, u, 0)], &j->epi);
}

static void qcc_copy_task(void *arg)
{
    qcc_copy_job *j = (qcc_copy_job *)arg;
    for (;;) {
        const ptrdiff_t u0 = __atomic_fetch_add(&j->next, j->per, __ATOMIC_RELAXED);
        if (u0 >= j->units) break;
        qcc_copy_units(j, u0, u0 + j->per < j->units ? u0 + j->per : j->units);
    }
}

/* Run the job (x, y, nd, dims, xs, epi set; `tiles`: the tiles the CPU and the level in
 * use take, 2 AVX-512, 1 AVX2, 0 none) on up to `threads` threads, in tasks of about
 * QCC_ELT_CHUNK elements. */
static void qcc_copy(qcc_copy_job *j, int threads)
{
    const int nd = j->nd;
    ptrdiff_t total = 1, unit = 1;
    int d;
    for (d = 0; d < nd; d++) total *= j->dims[d];
    if (total == 0) return;
    if (j->xs[nd - 1] == 1)
        unit = j->dims[nd - 1];
    else if (j->tiles && nd >= 2 && j->xs[nd - 2] == 1)
        unit = j->dims[nd - 2] * j->dims[nd - 1];
    else
        j->tiles = 0;
    j->units = total / unit;
    j->per = (QCC_ELT_CHUNK + unit - 1) / unit;
    j->next = 0;
    /* waking a worker costs some microseconds; from two chunks the threads gain (a
     * transposed fake-quant of ViT-tiny's keys, 37824 elements, most of whose rows
     * the other core's cache holds: vit_tiny 20.4 -> 20.2 ms) */
    if (total < 2 * QCC_ELT_CHUNK) threads = 1;
    if (threads > (j->units + j->per - 1) / j->per) threads = (int)((j->units + j->per - 1) / j->per);
    qcc_parallel(qcc_copy_task, j, threads);
}

#endif
