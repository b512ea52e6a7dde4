# The histogram pass (its scalar and AVX-512 builds, qcc_histogram) and the passes
# over blocks of QCC_HIST_TASK values on the pool (included by _stats.pyx).

cdef extern from *:
    """
    /* floor(v * scale) - start for the finite v into hist[0, bins); returns how
     * many fell outside (0 unless the grid is wrong), -1 without memory. v * scale
     * (a power of two) is exact, its floor is taken as an integer (truncation, minus
     * one below it), then start is subtracted. Four histograms (int32, flushed every
     * 2**29 values) take turns, so that a run of one bin is not one chain of
     * increments. */
    #define QCC_BIN(v, t) do { const double d_ = (double)(v) * scale; \
        (t) = (int64_t)d_; (t) -= (double)(t) > d_; (t) -= start; } while (0)

    /* One block into the four int32 histograms h4 (each `bins` long); returns how
     * many finite values fell outside. `*checked` is the mode: 0 (all_finite) counts
     * groups of 4 values unchecked until a group has a bin outside, then turns 1:
     * from that group on, values that are not finite are skipped and finite values
     * outside are counted. This is the reference (scalar) build; every other build
     * gives the same counts and the same outside count for every input. */
    static int64_t qcc_hist_scalar(const float *x, Py_ssize_t n, double scale, int64_t start,
                                   int32_t *h4, Py_ssize_t bins, int *checked)
    {
        int32_t *h0 = h4, *h1 = h4 + bins, *h2 = h4 + 2 * bins, *h3 = h4 + 3 * bins;
        const uint64_t ub = (uint64_t)bins;
        int64_t outside = 0;
        Py_ssize_t i = 0;
        if (!*checked) {
            for (; i + 4 <= n; i += 4) {
                int64_t t0, t1, t2, t3;
                QCC_BIN(x[i], t0);
                QCC_BIN(x[i + 1], t1);
                QCC_BIN(x[i + 2], t2);
                QCC_BIN(x[i + 3], t3);
                if (((uint64_t)t0 >= ub) | ((uint64_t)t1 >= ub) | ((uint64_t)t2 >= ub)
                        | ((uint64_t)t3 >= ub)) {
                    *checked = 1;
                    break;  /* out of range: the checked loop below counts it */
                }
                h0[t0]++; h1[t1]++; h2[t2]++; h3[t3]++;
            }
        }
        for (; i < n; i++) {
            const float v = x[i];
            int64_t t;
            if (!(v - v == 0.0f)) continue;  /* NaN or inf */
            QCC_BIN(v, t);
            if ((uint64_t)t >= ub) { outside++; continue; }
            h0[t]++;
        }
        return outside;
    }

    /* The builds of qcc_hist_block: the scalar reference above, AVX-512 (products in
     * float32 where that gives the scalar bins, see below, in float64 otherwise) and,
     * for tests, AVX-512 with float64 products only. The build in use is set when
     * the module loads (the best QCC_ISA allows; there is no AVX2 build: the scalar
     * one runs then). */
    enum { QCC_HIST_SCALAR = 0, QCC_HIST_AVX512 = 1, QCC_HIST_AVX512_F64 = 2 };
    static int qcc_hist_variant = QCC_HIST_SCALAR;

    static int qcc_hist_runs(int variant)
    {
        if (variant == QCC_HIST_SCALAR) return 1;
    #if QCC_X86
        if (variant == QCC_HIST_AVX512 || variant == QCC_HIST_AVX512_F64)
            return qcc_cpu_runs(QCC_ISA_AVX512, 0);
    #endif
        return 0;
    }

    #if QCC_X86
    #define QCC_HIST_SUB 1024   /* values binned into the index buffer at a time */
    #pragma GCC push_options
    #pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,popcnt")
    /* qcc_hist_scalar in AVX-512: the same counts and outside count for every input,
     * 16 values at a time. Their bins b = floor(v * scale) - start are computed in one
     * of two ways (qcc_hist_avx512 checks the conditions), each giving, for every v,
     * QCC_BIN's bin when that is inside [0, bins) and a bin outside when QCC_BIN's is
     * outside (so NaN and inf are always outside):
     *
     * - f32 (scale a power of two and a normal float32, start - 1 and start + bins
     *   inside int32, neither FTZ nor DAZ in MXCSR): the product in float32 rounded
     *   down, its floor as int32 (the conversion that rounds down), minus start in
     *   int32, checked by an unsigned compare with bins. A product that is a float32 is QCC_BIN's
     *   (exact in float64), and so is its floor. Otherwise the product either
     *   underflows, rounded down to a value of the same floor as the exact product
     *   (0 above zero, -1 below: rounding down never gives -0), or overflows, to
     *   FLT_MAX or -inf, whose conversion is 0x80000000 as for a floor outside int32,
     *   NaN or inf. A floor outside [start, start + bins) gives a bin outside: in int32
     *   no other value wraps into [0, bins), and 0x80000000 is below start.
     * - f64: QCC_BIN's float64 product, floored to int64 by the conversion that rounds
     *   down (QCC_BIN's truncation, minus one below, for every product inside int64),
     *   minus start in int64. A product outside int64 (or NaN) converts to INT64_MIN;
     *   QCC_BIN gives INT64_MIN or INT64_MAX there: both outside once start is not at
     *   the ends of int64.
     *
     * Then as qcc_hist_scalar in the same mode. Mode 0: a group with a bin outside goes
     * through qcc_hist_scalar itself (that is where the scalar loop leaves mode 0, at
     * one of its groups of 4). Mode 1: the lanes inside are counted (they are finite),
     * the finite ones outside are counted as outside. The lanes in one bin, zsel
     * (zero's, -start, when inside: a ReLU's zeros), are only counted; the bins of the
     * other lanes are packed into an int32 buffer that the increments (the four
     * histograms in turn) read afterwards. */
    static inline __attribute__((always_inline)) int64_t qcc_hist_avx512_body(
        const float *x, Py_ssize_t n, double scale, int64_t start, int32_t *h4,
        Py_ssize_t bins, int *checked, const int f32)
    {
        int32_t *h0 = h4, *h1 = h4 + bins, *h2 = h4 + 2 * bins, *h3 = h4 + 3 * bins;
        int32_t idx[QCC_HIST_SUB + 16];
        const __m512d vsd = _mm512_set1_pd(scale);
        const __m512 vsf = _mm512_set1_ps((float)scale);
        const __m512i start64 = _mm512_set1_epi64(start), bins64 = _mm512_set1_epi64(bins);
        const __m512i start32 = _mm512_set1_epi32((int32_t)start);
        const __m512i bins32 = _mm512_set1_epi32((int32_t)bins);
        const __m512i lows = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14,
                                               16, 18, 20, 22, 24, 26, 28, 30);
        /* the bin counted without increments; -1 (no bin) when zero's is outside */
        const int32_t zsel = (uint64_t)-start < (uint64_t)bins ? (int32_t)-start : -1;
        const __m512i zselv = _mm512_set1_epi32(zsel);
        int64_t outside = 0;
        int mode = *checked;
        Py_ssize_t i = 0;
        while (i + 16 <= n) {
            const Py_ssize_t end = n - i < QCC_HIST_SUB ? i + ((n - i) & ~(Py_ssize_t)15)
                                                        : i + QCC_HIST_SUB;
            Py_ssize_t m = 0, counted = 0, k;
            for (; i < end; i += 16) {
                __m512i b;
                __mmask16 in, keep;
                if (f32) {
                    const __m512 p = _mm512_mul_round_ps(_mm512_loadu_ps(x + i), vsf,
                                                         _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
                    b = _mm512_sub_epi32(_mm512_cvt_roundps_epi32(
                        p, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC), start32);
                    in = _mm512_cmplt_epu32_mask(b, bins32);
                } else {
                    const __m512i bl = _mm512_sub_epi64(_mm512_cvt_roundpd_epi64(
                        _mm512_mul_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + i)), vsd),
                        _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC), start64);
                    const __m512i bh = _mm512_sub_epi64(_mm512_cvt_roundpd_epi64(
                        _mm512_mul_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8)), vsd),
                        _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC), start64);
                    in = _mm512_kunpackb(_mm512_cmplt_epu64_mask(bh, bins64),
                                         _mm512_cmplt_epu64_mask(bl, bins64));
                    b = _mm512_permutex2var_epi32(bl, lows, bh);  /* the low halves */
                }
                if (!mode) {
                    if (in != 0xffff) {
                        outside += qcc_hist_scalar(x + i, 16, scale, start, h4, bins, &mode);
                        continue;
                    }
                    counted += 16;
                } else {
                    /* finite: neither NaN (0x01, 0x80) nor inf (0x08, 0x10) */
                    const __mmask16 fin = _mm512_knot(
                        _mm512_fpclass_ps_mask(_mm512_loadu_ps(x + i), 0x99));
                    outside += _mm_popcnt_u32(_cvtmask16_u32(_mm512_kandn(in, fin)));
                    counted += _mm_popcnt_u32(_cvtmask16_u32(in));
                }
                keep = _mm512_mask_cmpneq_epi32_mask(in, b, zselv);
                _mm512_storeu_si512((void *)(idx + m), _mm512_maskz_compress_epi32(keep, b));
                m += _mm_popcnt_u32(_cvtmask16_u32(keep));
            }
            if (counted > m) h0[zsel] += (int32_t)(counted - m);
            for (k = 0; k + 4 <= m; k += 4) {
                h0[idx[k]]++; h1[idx[k + 1]]++; h2[idx[k + 2]]++; h3[idx[k + 3]]++;
            }
            for (; k < m; k++) h0[idx[k]]++;
        }
        *checked = mode;
        return outside + qcc_hist_scalar(x + i, n - i, scale, start, h4, bins, checked);
    }

    static int64_t qcc_hist_avx512_f32(const float *x, Py_ssize_t n, double scale,
                                       int64_t start, int32_t *h4, Py_ssize_t bins,
                                       int *checked)
    {
        return qcc_hist_avx512_body(x, n, scale, start, h4, bins, checked, 1);
    }

    static int64_t qcc_hist_avx512_f64(const float *x, Py_ssize_t n, double scale,
                                       int64_t start, int32_t *h4, Py_ssize_t bins,
                                       int *checked)
    {
        return qcc_hist_avx512_body(x, n, scale, start, h4, bins, checked, 0);
    }
    #pragma GCC pop_options

    /* The AVX-512 block; `f64`: never the float32 products. The scalar one where
     * neither way applies (bins past int32, a start at the ends of int64). */
    static int64_t qcc_hist_avx512(const float *x, Py_ssize_t n, double scale, int64_t start,
                                   int32_t *h4, Py_ssize_t bins, int *checked, int f64)
    {
        const uint64_t ub = (uint64_t)bins;
        uint64_t sb;
        memcpy(&sb, &scale, 8);
        if (bins > INT32_MAX)
            return qcc_hist_scalar(x, n, scale, start, h4, bins, checked);
        if (!f64 && scale >= 0x1p-126 && scale <= 0x1p127
                && (sb & (((uint64_t)1 << 52) - 1)) == 0      /* a power of two */
                && start > INT32_MIN && start <= (int64_t)INT32_MAX - bins
                && !(_mm_getcsr() & 0x8040))   /* neither MXCSR.FTZ nor MXCSR.DAZ */
            return qcc_hist_avx512_f32(x, n, scale, start, h4, bins, checked);
        if ((uint64_t)INT64_MIN - (uint64_t)start >= ub
                && (uint64_t)INT64_MAX - (uint64_t)start >= ub)
            return qcc_hist_avx512_f64(x, n, scale, start, h4, bins, checked);
        return qcc_hist_scalar(x, n, scale, start, h4, bins, checked);
    }
    #endif

    /* One block into the four int32 histograms h4 (each `bins` long) by the build
     * qcc_hist_variant names; returns how many finite values fell outside. */
    static int64_t qcc_hist_block(const float *x, Py_ssize_t n, double scale, int64_t start,
                                  int32_t *h4, Py_ssize_t bins, int all_finite)
    {
        int checked = !all_finite;
    #if QCC_X86
        if (qcc_hist_variant != QCC_HIST_SCALAR)
            return qcc_hist_avx512(x, n, scale, start, h4, bins, &checked,
                                   qcc_hist_variant == QCC_HIST_AVX512_F64);
    #endif
        return qcc_hist_scalar(x, n, scale, start, h4, bins, &checked);
    }

    #define QCC_HIST_TASK ((Py_ssize_t)1 << 16)   /* values per task */
    #define QCC_HIST_MAX ((Py_ssize_t)1 << 29)    /* values per int32 flush */

    typedef struct {
        const float *x;
        Py_ssize_t n, bins;
        double scale;
        int64_t start;
        int all_finite;
        int32_t *slots;     /* width blocks of 4 * bins */
        int64_t next, outside;
        int used;
    } qcc_hist_job;

    static void qcc_hist_task(void *arg)
    {
        qcc_hist_job *j = (qcc_hist_job *)arg;
        const int slot = __atomic_fetch_add(&j->used, 1, __ATOMIC_RELAXED);
        int32_t *h4 = j->slots + (size_t)slot * 4 * (size_t)j->bins;
        int64_t outside = 0;
        for (;;) {
            const int64_t t = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
            const Py_ssize_t a = (Py_ssize_t)t * QCC_HIST_TASK;
            if (a >= j->n) break;
            outside += qcc_hist_block(j->x + a, j->n - a < QCC_HIST_TASK ? j->n - a : QCC_HIST_TASK,
                                      j->scale, j->start, h4, j->bins, j->all_finite);
        }
        __atomic_fetch_add(&j->outside, outside, __ATOMIC_RELAXED);
    }

    /* qcc_range_all by `width` threads over blocks of QCC_HIST_TASK values, each
     * block's range folded into its thread's, then the threads' together: min, max
     * and flags do not depend on the order (a zero bound of either sign is decided by
     * the caller when both zeros occur). */
    #define QCC_RANGE_SLOTS 64
    typedef struct {
        const float *x;
        Py_ssize_t n;
        int64_t next;
        int used;
        qcc_range r[QCC_RANGE_SLOTS];
        int nan[QCC_RANGE_SLOTS];
    } qcc_range_job;

    /* acc = the range of acc's values and r's together (qcc_range_all's fields) */
    static void qcc_range_fold(qcc_range *acc, int *acc_nan, const qcc_range *r, int nan)
    {
        acc->lo = r->lo < acc->lo ? r->lo : acc->lo;
        acc->hi = r->hi > acc->hi ? r->hi : acc->hi;
        acc->pos_zero |= r->pos_zero;
        acc->neg_zero |= r->neg_zero;
        *acc_nan |= nan;
    }

    static void qcc_range_task(void *arg)
    {
        qcc_range_job *j = (qcc_range_job *)arg;
        const int slot = __atomic_fetch_add(&j->used, 1, __ATOMIC_RELAXED);
        qcc_range *acc = &j->r[slot];
        acc->lo = INFINITY;
        acc->hi = -INFINITY;
        acc->pos_zero = acc->neg_zero = 0;
        j->nan[slot] = 0;
        for (;;) {
            const int64_t t = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
            const Py_ssize_t a = (Py_ssize_t)t * QCC_HIST_TASK;
            qcc_range r;
            int nan = 0;
            if (a >= j->n) break;
            qcc_range_all(j->x + a, j->n - a < QCC_HIST_TASK ? j->n - a : QCC_HIST_TASK, &r, &nan);
            qcc_range_fold(acc, &j->nan[slot], &r, nan);
        }
    }

    static void qcc_range_all_par(const float *x, Py_ssize_t n, qcc_range *r, int *has_nan,
                                  int width)
    {
        qcc_range_job job;
        int w;
        if (width > QCC_RANGE_SLOTS) width = QCC_RANGE_SLOTS;
        if (width < 2 || n < 4 * QCC_HIST_TASK) {
            qcc_range_all(x, n, r, has_nan);
            return;
        }
        job.x = x;
        job.n = n;
        job.next = 0;
        job.used = 0;
        qcc_parallel(qcc_range_task, &job, width);
        r->count = n;
        r->nan = r->posinf = r->neginf = 0;
        r->lo = INFINITY;
        r->hi = -INFINITY;
        r->pos_zero = r->neg_zero = 0;
        *has_nan = 0;
        for (w = 0; w < job.used; w++) qcc_range_fold(r, has_nan, &job.r[w], job.nan[w]);
    }

    /* hist += the counts of x (module comment); `width` threads share blocks of
     * QCC_HIST_TASK values, each into its own histograms, summed at the end (integer
     * counts: the same whatever the split). Returns the values outside, -1 without
     * memory. */
    static int64_t qcc_histogram(const float *x, Py_ssize_t n, double scale, int64_t start,
                                 int64_t *hist, Py_ssize_t bins, int all_finite, int width)
    {
        int64_t outside = 0;
        Py_ssize_t i = 0, k;
        int w;
        int32_t *h4;
        if (n < 4 * QCC_HIST_TASK) width = 1;
        if (width < 1) width = 1;
        h4 = (int32_t *)calloc((size_t)bins * 4 * (size_t)width, sizeof(int32_t));
        if (h4 == NULL) return -1;
        while (i < n) {
            const Py_ssize_t chunk = n - i < QCC_HIST_MAX ? n - i : QCC_HIST_MAX;
            if (width > 1) {
                qcc_hist_job job;
                job.x = x + i;
                job.n = chunk;
                job.bins = bins;
                job.scale = scale;
                job.start = start;
                job.all_finite = all_finite;
                job.slots = h4;
                job.next = 0;
                job.outside = 0;
                job.used = 0;
                qcc_parallel(qcc_hist_task, &job, width);
                outside += job.outside;
            } else {
                outside += qcc_hist_block(x + i, chunk, scale, start, h4, bins, all_finite);
            }
            i += chunk;
            for (w = 0; w < 4 * width; w++) {
                int32_t *h = h4 + (size_t)w * (size_t)bins;
                for (k = 0; k < bins; k++) {
                    hist[k] += h[k];
                    h[k] = 0;
                }
            }
        }
        free(h4);
        return outside;
    }
    """
    int64_t qcc_histogram(const float* x, Py_ssize_t n, double scale, int64_t start,
                          int64_t* hist, Py_ssize_t bins, int all_finite, int width) nogil
    int QCC_ISA_SCALAR, QCC_ISA_AVX2, QCC_ISA_AVX512
    int QCC_HIST_SCALAR, QCC_HIST_AVX512, QCC_HIST_AVX512_F64
    int qcc_hist_variant
    int qcc_hist_runs(int variant)
    int qcc_isa_ceiling()
    int qcc_isa_best(int ceiling, int vnni)
