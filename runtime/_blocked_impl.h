/* Float convolutions on the blocked layout (runtime/_blocked.pyx), AVX-512 or AVX2.
 *
 * A blocked tensor [N, C, H, W] is stored as [N, ceil(C/16), H, W, 16]: channel c of
 * position p at ((n*CB + c/16)*H*W + p)*16 + c%16, the lanes past C zero. Between
 * convolutions that read and write it, the 16 channels of a position are one vector:
 * a depthwise tap is one FMA of contiguous vectors, a conv's output tile is stored
 * as it lies in the registers (no transposes, no gathers), as onnxruntime's NCHWc
 * kernels do.
 *
 * Every output is computed with the operations and the order of the NCHW kernels
 * (_gemm_impl.h, _conv_impl.h): acc = bias (or 0), then acc = fma(x, w, acc) for the
 * taps k ascending (k = (c, kh, kw) for a conv, (kh, kw) for a depthwise), each
 * rounded; then the epilogue of runtime/_common.h lane by lane (affine, residual,
 * activation, fake-quant): the same bits as the NCHW plan.
 */
#ifndef QCC_BLOCKED_IMPL_H
#define QCC_BLOCKED_IMPL_H

#include <float.h>

#include "_common.h"
#include "_pool_geom.h"

#define QCC_BLK 16

typedef struct {
    int n, c, h, w;            /* input */
    int o, oh, ow;             /* output */
    int kh, kw, sh, sw, ph, pw, dh, dw;   /* kernel, strides, top/left pads, dilations */
} qcc_blk_geom;

QCC_INLINE int qcc_blk_cb(int c) { return (c + QCC_BLK - 1) / QCC_BLK; }


/* The kernels' instruction sets (runtime/_blocked_isa.h, one build each): the same
 * bits on both. */
enum { QCC_BLK_NONE = 0, QCC_BLK_AVX2 = 1, QCC_BLK_AVX512 = 2 };

/* Whether this CPU runs the kernels of `level`. */
static int qcc_blk_runs(int level)
{
#if QCC_X86
    if (level == QCC_BLK_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
               && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
    if (level == QCC_BLK_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return level == QCC_BLK_NONE;
}

/* The best level this CPU runs at or below QCC_ISA's ceiling (scalar: none). */
static int qcc_blk_default_level(void)
{
    const int ceiling = qcc_isa_ceiling();
    if (ceiling >= QCC_ISA_AVX512 && qcc_blk_runs(QCC_BLK_AVX512)) return QCC_BLK_AVX512;
    if (ceiling >= QCC_ISA_AVX2 && qcc_blk_runs(QCC_BLK_AVX2)) return QCC_BLK_AVX2;
    return QCC_BLK_NONE;
}

/* The epilogue (runtime/_common.h, qcc_epilogue_run) of the registers ACC (an lvalue
 * of i_ < NI, v_ < NV; those with i_ < N_ON alone are stored): the affine, the
 * residual at ADD + E, the activation (QCC_BV_ACT), the fake-quant, then the
 * lanes past the channels set to 0 and the registers stored at OUT + E (E an
 * offset of i_ and v_, L the lanes of v_). With a TEE, OUT takes the values before
 * the fake-quant and TEE the fake-quant (a conv's result and its fake-quant, both
 * kept). Stage by stage, each one loop over the registers: a branch per stage, not
 * per register, and the activation's kind a constant in its loop (a branchy
 * epilogue per register cost a 16-deep 1x1 conv 30% of its time). Without APPLY
 * only the lanes past the channels are zeroed. In the vector operations of the
 * instruction set it is expanded in (QCC_BV_*, runtime/_blocked_isa.h). */
#define QCC_BLK_EACH(NI, N_ON, NV, STMT)                                                 \
    _Pragma("GCC unroll 16")                                                             \
    for (i_ = 0; i_ < (NI); i_++)                                                        \
        _Pragma("GCC unroll 4")                                                          \
        for (v_ = 0; v_ < (NV); v_++)                                                    \
            if (i_ < (N_ON)) { STMT; }
#define QCC_BLK_ACT_CASE(K, NI, N_ON, NV, ACC, A)                                        \
    case K: QCC_BLK_EACH(NI, N_ON, NV, ACC = QCC_BV_ACT(K, A, ACC)) break;
#define QCC_BLK_EPILOGUE(NI, N_ON, NV, ACC, L, E, A, APPLY, OUT, TEE, ADD)              \
    do {                                                                                 \
        int i_, v_;                                                                      \
        float *dst_ = (OUT);                                                             \
        if (APPLY) {                                                                     \
            if ((A)->mul != NULL)                                                        \
                QCC_BLK_EACH(NI, N_ON, NV,                                               \
                             ACC = QCC_BV_ADD(QCC_BV_MUL(ACC, (L).mul), (L).shift))       \
            if ((ADD) != NULL)                                                           \
                QCC_BLK_EACH(NI, N_ON, NV, ACC = QCC_BV_ADD(ACC, QCC_BV_LOAD((ADD) + (E)))) \
            switch ((A)->kind) {                                                         \
            QCC_BLK_ACT_CASE(QCC_ACT_RELU, NI, N_ON, NV, ACC, A)                          \
            QCC_BLK_ACT_CASE(QCC_ACT_CLIP, NI, N_ON, NV, ACC, A)                          \
            QCC_BLK_ACT_CASE(QCC_ACT_HARD_SWISH, NI, N_ON, NV, ACC, A)                    \
            QCC_BLK_ACT_CASE(QCC_ACT_HARD_SIGMOID, NI, N_ON, NV, ACC, A)                  \
            QCC_BLK_ACT_CASE(QCC_ACT_SIGMOID, NI, N_ON, NV, ACC, A)                       \
            default: break;                                                              \
            }                                                                            \
            if ((TEE) != NULL) {                                                         \
                QCC_BLK_EACH(NI, N_ON, NV,                                               \
                             QCC_BV_STORE((OUT) + (E), QCC_BV_KEEP((L).valid, ACC)))      \
                dst_ = (TEE);                                                            \
            }                                                                            \
            if ((A)->fq_scale != NULL)                                                   \
                QCC_BLK_EACH(NI, N_ON, NV, ACC = QCC_BV_FQ(ACC, &(L).fq))       \
        }                                                                                \
        QCC_BLK_EACH(NI, N_ON, NV, QCC_BV_STORE(dst_ + (E), QCC_BV_KEEP((L).valid, ACC))) \
    } while (0)


typedef struct {
    const qcc_blk_geom *g;
    const float *x;       /* input, NCHW or blocked: its padded copy when the conv pads
                           * and is not banded (the input itself when banded) */
    int x_blocked;
    int hp, wp;           /* its padded plane */
    const float *wpk;     /* packed weights: [kc][64] per 64 channels (AVX-512), [kc][16]
                           * per 16 (AVX2); the group of b at b * 64 * kc either way */
    const float *bias;    /* padded to whole blocks of 64 */
    float *out;           /* blocked output */
    float *tee;           /* with a tee: the output's fake-quant (else NULL) */
    const float *add;     /* blocked residual or NULL */
    const ptrdiff_t *kofs;
    qcc_act act;
    int apply;            /* whether the epilogue does anything */
    int tile;             /* positions of a unit of work (24: whole tiles of 6, 8 and 12;
                           * or a small plane's all, one unit a plane) */
    int tiles;            /* units per output group and image (span: per output group) */
    int width;            /* threads (claims: _blocked_isa.h, qcc_blk_conv_worker) */
    int span;             /* small planes: tiles run over the positions of all images */
    int kcb;              /* taps a chunk (0: all in one; _blocked_isa.h, QCC_BLK_KERN) */
    int blocks64, failed;
    qcc_homes *homes;     /* the claims (qcc_claim_home), beside the job: each thread
                           * reads the job into a copy of its own once */
    int level;            /* QCC_BLK_AVX512 or QCC_BLK_AVX2 */
    /* banded (a padded conv whose tasks stay in one image): x is the unpadded input;
     * each claim copies the padded rows its positions read, all channels, into the
     * thread's scratch (qcc_blk_band), kofs laid out for it, claims of `cap` units
     * at most (band_rows rows of band_pitch floats); fq_on: the input's fake-quant
     * on the way (as the padded copy's) */
    int banded, cap, band_rows, fq_on;
    ptrdiff_t band_pitch;
    float fs, fz, qmin, qmax;
} qcc_blk_conv_job;

/* An output position: image n, row y, column x (a tile's first; the positions of
 * the images taken in a row, as a task's units count them). */
typedef struct {
    int n, y, x;
} qcc_blk_at;

/* *a moved on by d positions (0 <= d; no division for the steps of a tile). */
QCC_INLINE void qcc_blk_at_next(qcc_blk_at *a, int d, const qcc_blk_geom *g)
{
    a->x += d;
    while (a->x >= g->ow) {
        a->x -= g->ow;
        if (++a->y == g->oh) {
            a->y = 0;
            a->n++;
        }
    }
}

/* Where a conv task reads its input: position (n, y, x) of the output at
 * base + n * img + (y * sh - r0) * row + x * sw * lane (the padded input, or a band
 * of its rows from padded row r0). */
typedef struct {
    const float *base;
    ptrdiff_t img, row;
    int r0;
} qcc_blk_src;

enum { QCC_BLK_RESUME = 1, QCC_BLK_MORE = 2 };   /* a chunk's part of the taps */

typedef struct {
    const qcc_blk_geom *g;
    const float *x;       /* blocked input */
    const float *w;       /* [cb][kh*kw][16] */
    const float *bias;    /* [cb*16] */
    float *out;
    float *tee;           /* with a tee: the output's fake-quant (else NULL) */
    const float *add;
    qcc_act act;
    int apply, hp, wp, band, bands, width, failed;
    int level;            /* QCC_BLK_AVX512 or QCC_BLK_AVX2 */
    qcc_homes *homes;     /* the claims of bands (qcc_claim_home), beside the job */
} qcc_blk_dw_job;

/* The rows a chunk of R outputs from column x0 of output row oy reads, tap row ky at
 * rows[ky] (its column x0*sw - pw): the input row itself when the chunk's columns lie
 * inside it, zeros for a row outside the input, else a copy of the window with its
 * zeros in `win`. Every tap is an FMA, with 0 where the input pads, as in the NCHW
 * kernels (whose padded planes hold the zeros): the same bits, -0 sums included. */
QCC_INLINE void qcc_blk_dw_rows(const qcc_blk_geom *g, const float *src, int oy, int x0, int R,
                                const float *zeros, float *win, const float **rows)
{
    const int lo = x0 * g->sw - g->pw, width = (R - 1) * g->sw + (g->kw - 1) * g->dw + 1;
    const int inside = lo >= 0 && lo + width <= g->w;
    int ky;
    for (ky = 0; ky < g->kh; ky++) {
        const int iy = oy * g->sh - g->ph + ky * g->dh;
        const float *row = src + (ptrdiff_t)iy * g->w * QCC_BLK;
        if (iy < 0 || iy >= g->h) {
            rows[ky] = zeros;
        } else if (inside) {
            rows[ky] = row + (ptrdiff_t)lo * QCC_BLK;
        } else {
            float *d = win + (ptrdiff_t)ky * width * QCC_BLK;
            const int c0 = lo < 0 ? 0 : lo, c1 = lo + width < g->w ? lo + width : g->w;
            memset(d, 0, (size_t)width * QCC_BLK * sizeof(float));
            if (c1 > c0)
                memcpy(d + (ptrdiff_t)(c0 - lo) * QCC_BLK, row + (ptrdiff_t)c0 * QCC_BLK,
                       (size_t)(c1 - c0) * QCC_BLK * sizeof(float));
            rows[ky] = d;
        }
    }
}

/* d[e] = the fake-quant of a[e] (qcc_fq_one), e < n. */
QCC_CLONES
static void qcc_blk_fq_row(const float *restrict a, float *restrict d, ptrdiff_t n, float fs,
                           float fz, float qmin, float qmax)
{
    ptrdiff_t e;
    QCC_FQ_LOOP(n, e, d[e], a[e], fs, fz, qmin, qmax);
}

/* The padded input rows [r0, r1) of image n (row r: input row r - ph, zeros outside)
 * into band, row r at (r - r0) * band_pitch: each channel block's (NCHW input: each
 * channel's) wp positions, zeros where the conv pads; with fq_on, the fake-quant of
 * the input's values (the padded copy's bits: its zeros stay zero). */
static void qcc_blk_band(const qcc_blk_conv_job *job, int n, int r0, int r1, float *band)
{
    const qcc_blk_geom *g = job->g;
    const ptrdiff_t lane = job->x_blocked ? QCC_BLK : 1;
    const int segs = job->x_blocked ? qcc_blk_cb(g->c) : g->c;
    const ptrdiff_t seg = (ptrdiff_t)job->wp * lane, in = (ptrdiff_t)g->w * lane;
    const ptrdiff_t lead = (ptrdiff_t)g->pw * lane, tail = seg - lead - in;
    int r, sg;
    for (r = r0; r < r1; r++) {
        const int iy = r - g->ph;
        float *d = band + (ptrdiff_t)(r - r0) * job->band_pitch;
        if (iy < 0 || iy >= g->h) {
            memset(d, 0, (size_t)segs * seg * sizeof(float));
            continue;
        }
        for (sg = 0; sg < segs; sg++, d += seg) {
            const float *a = job->x + (((ptrdiff_t)n * segs + sg) * g->h + iy) * in;
            memset(d, 0, (size_t)lead * sizeof(float));
            if (job->fq_on)
                qcc_blk_fq_row(a, d + lead, in, job->fs, job->fz, job->qmin, job->qmax);
            else
                memcpy(d + lead, a, (size_t)in * sizeof(float));
            memset(d + lead + in, 0, (size_t)tail * sizeof(float));
        }
    }
}

#define QCC_BLK_DW_MAXK 64   /* kernel rows a depthwise conv may have here */
#define QCC_BLK_DW_DIRECT 32   /* output rows from this wide read the input in place */

/* ---- max and average pools: blocked in, blocked out -----------------------------
 * The operations of the NCHW kernel (runtime/_pool_impl.h, qcc_pool_plane) in their
 * order, 16 lanes at a time: each input row pooled along W from a copy padded with
 * the op's identity, then the W-pooled rows of each window along H over the rows
 * inside the input; taps fused as qcc_pool_span fuses them (up to three first, then
 * pairs), max(a, b) = a > b ? a : b; an average divided by the float product of its
 * counts; the window rules are the NCHW kernel's own (runtime/_pool_geom.h). So the
 * same bits, NaN and -0 included. */
enum { QCC_BLK_POOL_MAX = 0, QCC_BLK_POOL_AVG = 1, QCC_BLK_POOL_AVG_PAD = 2 };

typedef struct {
    const float *x;
    float *y;
    qcc_pool_geom g;                         /* dims 1 and 2: H and W (0: one plane) */
    int c;                                   /* channels */
    int mode;                                /* QCC_BLK_POOL_* */
    qcc_act fq;                              /* a per-tensor fake-quant after (fq_scale
                                              * set), as the conv's epilogue applies it */
    int planes, band, bands, width, failed;  /* tasks: bands of `band` output rows */
    int level;                               /* QCC_BLK_AVX512 or QCC_BLK_AVX2 */
    qcc_homes homes;                         /* claims of bands (qcc_claim_home) */
} qcc_blk_pool_job;

#if QCC_X86
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
#define QCC_BV __m512
#define QCC_BW 16
#define QCC_BMASK __mmask16
#define QCC_BN(name) name##_avx512
#define QCC_BV_LOAD(p) _mm512_loadu_ps(p)
#define QCC_BV_STORE(p, v) _mm512_storeu_ps(p, v)
#define QCC_BV_SET1(f) _mm512_set1_ps(f)
#define QCC_BV_ZERO() _mm512_setzero_ps()
#define QCC_BV_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define QCC_BV_ADD(a, b) _mm512_add_ps(a, b)
#define QCC_BV_SUB(a, b) _mm512_sub_ps(a, b)
#define QCC_BV_MUL(a, b) _mm512_mul_ps(a, b)
#define QCC_BV_DIV(a, b) _mm512_div_ps(a, b)
#define QCC_BFQ qcc_fq16_k
#define QCC_BV_FQ(v, k) qcc_fq16(v, k)
#define QCC_BV_MIN(a, b) _mm512_min_ps(a, b)
#define QCC_BV_MAX(a, b) _mm512_max_ps(a, b)   /* a > b ? a : b, lane by lane */
#define QCC_BV_RINT(v) _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define QCC_BV_ACT(K, A, V) qcc_act_avx512_kind(K, A, V)
#define QCC_BV_KEEP(m, v) _mm512_maskz_mov_ps(m, v)
#define QCC_BV_VALID(n) ((n) >= 16 ? (__mmask16)0xFFFF : (n) <= 0 ? (__mmask16)0 : (__mmask16)((1u << (n)) - 1))
#define QCC_BLK_DW_R 8
#define QCC_BLK_WK 64
#include "_blocked_isa.h"
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#undef QCC_BV
#undef QCC_BW
#undef QCC_BMASK
#undef QCC_BN
#undef QCC_BV_LOAD
#undef QCC_BV_STORE
#undef QCC_BV_SET1
#undef QCC_BV_ZERO
#undef QCC_BV_FMA
#undef QCC_BV_ADD
#undef QCC_BV_SUB
#undef QCC_BV_MUL
#undef QCC_BV_DIV
#undef QCC_BFQ
#undef QCC_BV_FQ
#undef QCC_BV_MIN
#undef QCC_BV_MAX
#undef QCC_BV_RINT
#undef QCC_BV_ACT
#undef QCC_BV_KEEP
#undef QCC_BV_VALID
#undef QCC_BLK_DW_R
#undef QCC_BLK_WK
#define QCC_BV __m256
#define QCC_BW 8
#define QCC_BMASK __m256
#define QCC_BN(name) name##_avx2
#define QCC_BV_LOAD(p) _mm256_loadu_ps(p)
#define QCC_BV_STORE(p, v) _mm256_storeu_ps(p, v)
#define QCC_BV_SET1(f) _mm256_set1_ps(f)
#define QCC_BV_ZERO() _mm256_setzero_ps()
#define QCC_BV_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define QCC_BV_ADD(a, b) _mm256_add_ps(a, b)
#define QCC_BV_SUB(a, b) _mm256_sub_ps(a, b)
#define QCC_BV_MUL(a, b) _mm256_mul_ps(a, b)
#define QCC_BV_DIV(a, b) _mm256_div_ps(a, b)
#define QCC_BFQ qcc_fq8_k
#define QCC_BV_FQ(v, k) qcc_fq8(v, k)
#define QCC_BV_MIN(a, b) _mm256_min_ps(a, b)
#define QCC_BV_MAX(a, b) _mm256_max_ps(a, b)
#define QCC_BV_RINT(v) _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define QCC_BV_ACT(K, A, V) qcc_act_avx2_kind(K, A, V)
#define QCC_BV_KEEP(m, v) _mm256_and_ps(v, m)
/* all bits set in the first n lanes */
#define QCC_BV_VALID(n) _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), \
                                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)))
#define QCC_BLK_DW_R 6
#define QCC_BLK_WK 16
#include "_blocked_isa.h"
#pragma GCC pop_options
#endif /* QCC_X86 */

/* The workers of the job's instruction set (its `level`). */
#if QCC_X86
#define QCC_BLK_WORKER(NAME, JOB)                                                        \
    static void NAME(void *arg)                                                          \
    {                                                                                    \
        if (((JOB *)arg)->level == QCC_BLK_AVX512)                                       \
            NAME##_avx512(arg);                                                          \
        else                                                                             \
            NAME##_avx2(arg);                                                            \
    }
#else
#define QCC_BLK_WORKER(NAME, JOB) static void NAME(void *arg) { ((JOB *)arg)->failed = 1; }
#endif
QCC_BLK_WORKER(qcc_blk_conv_worker, qcc_blk_conv_job)
QCC_BLK_WORKER(qcc_blk_dw_worker, qcc_blk_dw_job)

/* ---- layout changes and the other ops of a blocked region ------------------------ */

/* x [n, c, plane] -> blocked [n, cb, plane, 16] (lanes past c zero). */
QCC_CLONES
static void qcc_blk_from_nchw(const float *x, float *y, int n, int c, ptrdiff_t plane)
{
    const int cb = qcc_blk_cb(c);
    int i, b, l;
    ptrdiff_t p;
    for (i = 0; i < n; i++)
        for (b = 0; b < cb; b++) {
            float *d = y + ((ptrdiff_t)i * cb + b) * plane * QCC_BLK;
            for (p = 0; p < plane; p++)
                for (l = 0; l < QCC_BLK; l++) {
                    const int ch = b * QCC_BLK + l;
                    d[p * QCC_BLK + l] = ch < c ? x[((ptrdiff_t)i * c + ch) * plane + p] : 0.0f;
                }
        }
}

/* Blocked plane t of y (image t / cb, channel block t % cb) -> its channels of the
 * NCHW x, 256 positions at a time (16 KB that stay in L1 while each channel's run
 * is written: one channel's walk of a whole plane read each line 16 times from L2). */
QCC_CLONES
static void qcc_blk_to_nchw_plane(const float *y, float *x, int c, ptrdiff_t plane, int t)
{
    const int cb = qcc_blk_cb(c), i = t / cb, b = t % cb;
    const int lanes = c - b * QCC_BLK < QCC_BLK ? c - b * QCC_BLK : QCC_BLK;
    const float *s = y + (ptrdiff_t)t * plane * QCC_BLK;
    float *d = x + ((ptrdiff_t)i * c + b * QCC_BLK) * plane;
    ptrdiff_t p0, p;
    int l;
    for (p0 = 0; p0 < plane; p0 += 256) {
        const ptrdiff_t p1 = p0 + 256 < plane ? p0 + 256 : plane;
        for (l = 0; l < lanes; l++)
            for (p = p0; p < p1; p++) d[(ptrdiff_t)l * plane + p] = s[p * QCC_BLK + l];
    }
}

/* Jobs of whole planes on the pool: the means (global average pool), a per-channel
 * scale (squeeze-and-excitation) and a conv's padded input copy. */
typedef struct {
    const float *x;
    const float *s;       /* the scale's factors [n, c]; the means' [c] or NULL */
    float *y;
    int n, c, planes;
    ptrdiff_t plane;
    /* the per-tensor fake-quant of the means' or the scale's result, or of the
     * padded copy's input (fq_on) */
    int fq_on;
    float fs, fz, qmin, qmax;
    /* the padded copy: plane size hp x wp of rows `len` floats (lane-wide positions) */
    int h, hp, rows;       /* rows: of a pad task */
    ptrdiff_t len, row_in, row_out, lead;
    ptrdiff_t part;        /* the scale's positions a task */
    int width;             /* threads */
    qcc_homes homes;       /* claims (qcc_claim_home) */
} qcc_blk_plane_job;

/* The means of the blocked plane t of x into y [n, c] (qcc_plane_means' order: float
 * sums of every 16th element in 16 lanes, the tail, then the lanes, in double), each
 * times s[c] (s not NULL: a per-channel scale), then (fq_on) their fake-quant. */
QCC_CLONES
static void qcc_blk_mean_plane(const qcc_blk_plane_job *job, int t)
{
    const int cb = qcc_blk_cb(job->c), i = t / cb, b = t % cb;
    const ptrdiff_t plane = job->plane;
    const float *restrict s = job->x + (ptrdiff_t)t * plane * QCC_BLK;
    float lanes[16][QCC_BLK];
    ptrdiff_t p, q;
    int j, l;
    memset(lanes, 0, sizeof(lanes));
    for (p = 0; p + 16 <= plane; p += 16)
        for (j = 0; j < 16; j++)
            for (l = 0; l < QCC_BLK; l++) lanes[j][l] += s[(p + j) * QCC_BLK + l];
    for (l = 0; l < QCC_BLK && b * QCC_BLK + l < job->c; l++) {
        double sum = 0.0;
        float m;
        for (q = p; q < plane; q++) sum += s[q * QCC_BLK + l];
        for (j = 0; j < 16; j++) sum += lanes[j][l];
        m = (float)(sum / (double)plane);
        if (job->s != NULL) m = m * job->s[b * QCC_BLK + l];   /* a per-channel scale */
        job->y[(ptrdiff_t)i * job->c + b * QCC_BLK + l] =
            job->fq_on ? qcc_fq_one(m, job->fs, job->fz, job->qmin, job->qmax) : m;
    }
}

/* Blocked y [n, cb, plane, 16] -> x [n, c, plane], plane by plane (job: x the blocked
 * input, y the NCHW output, c, planes = n * cb, plane) on the pool. */
static void qcc_blk_to_nchw_worker(void *arg)
{
    qcc_blk_plane_job *job = (qcc_blk_plane_job *)arg;
    int t, u, n;
    while ((n = qcc_claim_home(&job->homes, 1, job->planes, job->width, job->planes, &u, &t)) > 0)
        for (u = t; u < t + n; u++) qcc_blk_to_nchw_plane(job->x, job->y, job->c, job->plane, u);
}

static void qcc_blk_means_worker(void *arg)
{
    qcc_blk_plane_job *job = (qcc_blk_plane_job *)arg;
    int t, u, n;
    while ((n = qcc_claim_home(&job->homes, 1, job->planes, job->width, job->planes, &u, &t)) > 0)
        for (u = t; u < t + n; u++) qcc_blk_mean_plane(job, u);
}

/* y = x * s[n, c] of positions [p0, p1) of the blocked plane t (image t / cb, channel
 * block t % cb), then (fq_on) their fake-quant. */
QCC_CLONES
static void qcc_blk_scale_plane(const qcc_blk_plane_job *job, int t, ptrdiff_t p0, ptrdiff_t p1)
{
    const int cb = qcc_blk_cb(job->c), i = t / cb, b = t % cb;
    const ptrdiff_t at = ((ptrdiff_t)t * job->plane + p0) * QCC_BLK, n = (p1 - p0) * QCC_BLK;
    const float *restrict x = job->x + at;
    float *restrict y = job->y + at;
    float sv[QCC_BLK];
    ptrdiff_t p;
    int l;
    for (l = 0; l < QCC_BLK; l++)
        sv[l] = b * QCC_BLK + l < job->c ? job->s[(ptrdiff_t)i * job->c + b * QCC_BLK + l] : 0.0f;
    if (!job->fq_on) {
        for (p = 0; p < n; p += QCC_BLK)
            for (l = 0; l < QCC_BLK; l++) y[p + l] = x[p + l] * sv[l];
        return;
    }
    {   /* the fake-quant of each product (qcc_epilogue_run's), lanes past c zero */
        const float fs = job->fs, fz = job->fz, qmin = job->qmin, qmax = job->qmax;
        const int valid = job->c - b * QCC_BLK;
        if (qcc_fq_exact_product(fs, fz, qmin, qmax)) {   /* the form chosen once */
            const float r = 1.0f / fs, lo = qmin - fz + QCC_FQ_MAGIC, hi = qmax - fz + QCC_FQ_MAGIC;
            for (p = 0; p < n; p += QCC_BLK)
                for (l = 0; l < QCC_BLK; l++) {
                    const float v = qcc_fq_prod(x[p + l] * sv[l], fs, r, lo, hi);
                    y[p + l] = l < valid ? v : 0.0f;
                }
        } else {
            for (p = 0; p < n; p += QCC_BLK)
                for (l = 0; l < QCC_BLK; l++) {
                    const float v = qcc_fq_div(x[p + l] * sv[l], fs, fz, qmin, qmax);
                    y[p + l] = l < valid ? v : 0.0f;
                }
        }
    }
}

/* Tasks: parts of `part` positions of a plane, claimed by home (qcc_claim_home). */
static void qcc_blk_scale_worker(void *arg)
{
    qcc_blk_plane_job *job = (qcc_blk_plane_job *)arg;
    const int parts = (int)((job->plane + job->part - 1) / job->part);
    int plane, u, n;
    while ((n = qcc_claim_home(&job->homes, job->planes, parts, job->width, parts, &plane, &u)) > 0) {
        const ptrdiff_t p0 = (ptrdiff_t)u * job->part;
        const ptrdiff_t p1 = p0 + n * job->part < job->plane ? p0 + n * job->part : job->plane;
        qcc_blk_scale_plane(job, plane, p0, p1);
    }
}

/* The rows of plane t of x into the interior of its padded copy y (whose borders
 * stay zero from its allocation); with fq_on, their fake-quant. */
static void qcc_blk_pad_worker(void *arg)
{
    qcc_blk_plane_job *job = (qcc_blk_plane_job *)arg;
    const int chunks = (job->h + job->rows - 1) / job->rows;
    int plane, u, n, r;
    while ((n = qcc_claim_home(&job->homes, job->planes, chunks, job->width, chunks, &plane, &u)) > 0) {
        const int r0 = u * job->rows;
        const int r1 = r0 + n * job->rows < job->h ? r0 + n * job->rows : job->h;
        const float *src = job->x + (ptrdiff_t)plane * job->h * job->row_in;
        float *dst = job->y + (ptrdiff_t)plane * job->hp * job->row_out + job->lead;
        for (r = r0; r < r1; r++) {
            const float *a = src + r * job->row_in;
            float *d = dst + r * job->row_out;
            if (!job->fq_on) {
                memcpy(d, a, (size_t)job->len * sizeof(float));
                continue;
            }
            qcc_blk_fq_row(a, d, job->len, job->fs, job->fz, job->qmin, job->qmax);
        }
    }
}

/* Input rows a band reads at most. */
QCC_INLINE int qcc_blk_pool_band_rows(const qcc_blk_pool_job *j)
{
    const qcc_pool_geom *g = &j->g;
    const int rows = (j->band - 1) * g->st[1] + (g->k[1] - 1) * g->dl[1] + 1;
    return rows < g->sp[1] ? rows : g->sp[1];
}

static void qcc_blk_pool_worker(void *arg)
{
    qcc_blk_pool_job *job = (qcc_blk_pool_job *)arg;
    const size_t rows = (size_t)qcc_blk_pool_band_rows(job) * job->g.osp[2] * QCC_BLK;
    const size_t floats = rows + (size_t)qcc_pool_row_width(&job->g) * QCC_BLK;
    float *hbuf = (float *)qcc_thread_buffer(floats * sizeof(float));
    int plane, u, n, t;
    if (hbuf == NULL) {
        job->failed = 1;
        return;
    }
    while ((n = qcc_claim_home(&job->homes, job->planes, job->bands, job->width, job->bands,
                               &plane, &u)) > 0)
        for (t = plane * job->bands + u; t < plane * job->bands + u + n; t++) {
#if QCC_X86
            if (job->level == QCC_BLK_AVX512)
                qcc_blk_pool_task_avx512(job, t, hbuf, hbuf + rows);
            else
                qcc_blk_pool_task_avx2(job, t, hbuf, hbuf + rows);
#else
            job->failed = 1;
            return;
#endif
        }
}

#endif /* QCC_BLOCKED_IMPL_H */
