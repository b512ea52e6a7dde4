/* Matrix-vector products with few vectors: y[i*n + o] = bias[o] + dot(w[o, :k], x[i, :k])
 * for i < m, o < n, w row-major [n, k] (a dense layer's weights, a 1x1 convolution's
 * on a 1x1 plane). Such a product reads every weight once for very few multiply-adds,
 * so it is bound by the memory bandwidth: the rows are shared by the pool's threads in
 * tasks of QCC_GEMV_ROWS, 4 rows at a time (4 FMA chains in flight), and no packing.
 *
 * Rounding, the same on every variant and thread count: a dot runs in 16 lanes, lane
 * l summing w[o, j] * x[i, j] for j = l, l + 16, l + 32, ... as FMAs in ascending j
 * (from +0); the 16 lanes are then added pairwise (l + 8 into l, then l + 4, l + 2,
 * l + 1) and the bias added last. AVX-512 keeps the 16 lanes in one register, AVX2
 * in two, the scalar variant in 16 floats.
 *
 * The weights are read as given (row-major) or packed once (qcc_gemv_pack, a plan's
 * constant weights): the chunks of 16 of 4 rows side by side, [n/4][k/16][4][16]
 * zero-padded, so that the 4 rows a block reads are one sequential stream (the
 * prefetchers follow one stream better than 4, most of all for short rows). The
 * same products in the same order: the same bits. */
#ifndef QCC_GEMV_IMPL_H
#define QCC_GEMV_IMPL_H

#include "_common.h"

#define QCC_GEMV_ROWS 32
/* Bytes ahead of each row's stream that the vector variants prefetch: the weights
 * come from memory in a model (a network's classifier: 4-8 MB read once), and the
 * prefetchers alone left a 960 -> 1280 dense at 0.285-0.344 ms, 0.262-0.274 with it
 * (2 threads, caches flushed before each call; 2048 -> 1000: 0.41-0.46 -> 0.39-0.40). */
#define QCC_GEMV_PF 4096

typedef struct {
    const float *x, *w, *bias;
    float *y;
    int m, n, k, level;
    int packed;   /* w packed by qcc_gemv_pack */
    int tasks, next;
} qcc_gemv_job;

/* Floats of w packed for qcc_gemv (qcc_gemv_pack). */
static inline ptrdiff_t qcc_gemv_packed_size(int n, int k)
{
    return (ptrdiff_t)((n + 3) / 4) * ((k + 15) / 16) * 64;
}

/* w [n, k] row-major -> [n/4][k/16][4][16], zeros past n and k. */
static void qcc_gemv_pack(const float *w, int n, int k, float *out)
{
    const int kch = (k + 15) / 16;
    int o, c, l;
    memset(out, 0, (size_t)qcc_gemv_packed_size(n, k) * sizeof(float));
    for (o = 0; o < n; o++)
        for (c = 0; c < kch; c++)
            for (l = 0; l < 16 && c * 16 + l < k; l++)
                out[((ptrdiff_t)(o / 4) * kch + c) * 64 + (o % 4) * 16 + l] =
                    w[(ptrdiff_t)o * k + c * 16 + l];
}

/* Where row o of the weights starts, and the floats from one of its chunks of 16 to
 * the next (*cs). */
static inline const float *qcc_gemv_row(const qcc_gemv_job *j, int o, ptrdiff_t *cs)
{
    if (j->packed) {
        *cs = 64;
        return j->w + ((ptrdiff_t)(o / 4) * ((j->k + 15) / 16)) * 64 + (o % 4) * 16;
    }
    *cs = 16;
    return j->w + (ptrdiff_t)o * j->k;
}

/* The 16 lanes' sum in the fixed order above. */
static inline float qcc_gemv_reduce16(const float *v)
{
    float t8[8], t4[4], t2[2];
    int l;
    for (l = 0; l < 8; l++) t8[l] = v[l] + v[l + 8];
    for (l = 0; l < 4; l++) t4[l] = t8[l] + t8[l + 4];
    for (l = 0; l < 2; l++) t2[l] = t4[l] + t4[l + 2];
    return t2[0] + t2[1];
}

static void qcc_gemv_rows_plain(const qcc_gemv_job *j, int o0, int o1)
{
    int o, i, l;
    ptrdiff_t c, q, cs;
    for (o = o0; o < o1; o++)
        for (i = 0; i < j->m; i++) {
            const float *w = qcc_gemv_row(j, o, &cs), *x = j->x + (ptrdiff_t)i * j->k;
            float acc[16];
            for (l = 0; l < 16; l++) acc[l] = 0.0f;
            for (c = 0, q = 0; c < j->k; c += 16, q += cs)
                for (l = 0; l < 16 && c + l < j->k; l++) acc[l] = fmaf(w[q + l], x[c + l], acc[l]);
            j->y[(ptrdiff_t)i * j->n + o] = (j->bias ? j->bias[o] : 0.0f) + qcc_gemv_reduce16(acc);
        }
}

#if QCC_X86

#pragma GCC push_options
#pragma GCC target("avx2,fma")

/* R rows from o against vector x. */
static inline __attribute__((always_inline)) void
qcc_gemv_block_avx2(const qcc_gemv_job *j, int o, const float *x, float *y, const int R)
{
    const ptrdiff_t k = j->k;
    __m256 lo[4], hi[4];
    const float *w[4];
    float lanes[16];
    ptrdiff_t c = 0, q = 0, cs = 16;
    int r;
    for (r = 0; r < R; r++) {
        lo[r] = hi[r] = _mm256_setzero_ps();
        w[r] = qcc_gemv_row(j, o + r, &cs);
    }
    for (; c + 16 <= k; c += 16, q += cs) {
        const __m256 x0 = _mm256_loadu_ps(x + c), x1 = _mm256_loadu_ps(x + c + 8);
        for (r = 0; r < R; r++) {
            _mm_prefetch((const char *)(w[r] + q) + QCC_GEMV_PF, _MM_HINT_T0);
            lo[r] = _mm256_fmadd_ps(_mm256_loadu_ps(w[r] + q), x0, lo[r]);
            hi[r] = _mm256_fmadd_ps(_mm256_loadu_ps(w[r] + q + 8), x1, hi[r]);
        }
    }
    if (c < k) {
        const int rest = (int)(k - c);
        const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(rest), idx);
        const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(rest - 8), idx);
        const __m256 x0 = _mm256_maskload_ps(x + c, m0), x1 = _mm256_maskload_ps(x + c + 8, m1);
        for (r = 0; r < R; r++) {
            lo[r] = _mm256_fmadd_ps(_mm256_maskload_ps(w[r] + q, m0), x0, lo[r]);
            hi[r] = _mm256_fmadd_ps(_mm256_maskload_ps(w[r] + q + 8, m1), x1, hi[r]);
        }
    }
    for (r = 0; r < R; r++) {
        _mm256_storeu_ps(lanes, lo[r]);
        _mm256_storeu_ps(lanes + 8, hi[r]);
        y[o + r] = (j->bias ? j->bias[o + r] : 0.0f) + qcc_gemv_reduce16(lanes);
    }
}

static void qcc_gemv_rows_avx2(const qcc_gemv_job *j, int o0, int o1)
{
    int o, i;
    for (i = 0; i < j->m; i++) {
        const float *x = j->x + (ptrdiff_t)i * j->k;
        float *y = j->y + (ptrdiff_t)i * j->n;
        for (o = o0; o + 4 <= o1; o += 4) qcc_gemv_block_avx2(j, o, x, y, 4);
        for (; o < o1; o++) qcc_gemv_block_avx2(j, o, x, y, 1);
    }
}

#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")

static inline __attribute__((always_inline)) void
qcc_gemv_block_avx512(const qcc_gemv_job *j, int o, const float *x, float *y, const int R)
{
    const ptrdiff_t k = j->k;
    __m512 acc[4];
    const float *w[4];
    float lanes[16];
    ptrdiff_t c = 0, q = 0, cs = 16;
    int r;
    for (r = 0; r < R; r++) {
        acc[r] = _mm512_setzero_ps();
        w[r] = qcc_gemv_row(j, o + r, &cs);
    }
    for (; c + 16 <= k; c += 16, q += cs) {
        const __m512 xv = _mm512_loadu_ps(x + c);
        for (r = 0; r < R; r++) {
            _mm_prefetch((const char *)(w[r] + q) + QCC_GEMV_PF, _MM_HINT_T0);
            acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(w[r] + q), xv, acc[r]);
        }
    }
    if (c < k) {
        const __mmask16 mask = (__mmask16)((1u << (k - c)) - 1);
        const __m512 xv = _mm512_maskz_loadu_ps(mask, x + c);
        for (r = 0; r < R; r++)
            acc[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, w[r] + q), xv, acc[r]);
    }
    for (r = 0; r < R; r++) {
        _mm512_storeu_ps(lanes, acc[r]);
        y[o + r] = (j->bias ? j->bias[o + r] : 0.0f) + qcc_gemv_reduce16(lanes);
    }
}

static void qcc_gemv_rows_avx512(const qcc_gemv_job *j, int o0, int o1)
{
    int o, i;
    for (i = 0; i < j->m; i++) {
        const float *x = j->x + (ptrdiff_t)i * j->k;
        float *y = j->y + (ptrdiff_t)i * j->n;
        for (o = o0; o + 4 <= o1; o += 4) qcc_gemv_block_avx512(j, o, x, y, 4);
        for (; o < o1; o++) qcc_gemv_block_avx512(j, o, x, y, 1);
    }
}

#pragma GCC pop_options

#endif /* QCC_X86 */

static void qcc_gemv_task(void *arg)
{
    qcc_gemv_job *j = (qcc_gemv_job *)arg;
    for (;;) {
        const int t = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        const int o0 = t * QCC_GEMV_ROWS;
        const int o1 = o0 + QCC_GEMV_ROWS < j->n ? o0 + QCC_GEMV_ROWS : j->n;
        if (t >= j->tasks) break;
#if QCC_X86
        if (j->level >= QCC_ISA_AVX512) {
            qcc_gemv_rows_avx512(j, o0, o1);
            continue;
        }
        if (j->level == QCC_ISA_AVX2) {
            qcc_gemv_rows_avx2(j, o0, o1);
            continue;
        }
#endif
        qcc_gemv_rows_plain(j, o0, o1);
    }
}

/* y[m, n] = x[m, k] @ w[n, k]^T (+ bias[n]) on up to `threads` threads with the
 * variant of ISA level `level` (one the CPU runs); w as given, or packed by
 * qcc_gemv_pack when `packed`. */
static void qcc_gemv_w(const float *x, const float *w, int packed, const float *bias, float *y,
                       int m, int n, int k, int level, int threads)
{
    qcc_gemv_job j;
    j.packed = packed;
    j.x = x;
    j.w = w;
    j.bias = bias;
    j.y = y;
    j.m = m;
    j.n = n;
    j.k = k;
    j.level = level;
    j.next = 0;
    j.tasks = (n + QCC_GEMV_ROWS - 1) / QCC_GEMV_ROWS;
    if ((double)m * n * k < 65536.0) threads = 1;   /* waking a worker costs microseconds */
    qcc_parallel(qcc_gemv_task, &j, threads < j.tasks ? threads : j.tasks);
}

static void qcc_gemv(const float *x, const float *w, const float *bias, float *y, int m, int n,
                     int k, int level, int threads)
{
    qcc_gemv_w(x, w, 0, bias, y, m, n, k, level, threads);
}

#endif
