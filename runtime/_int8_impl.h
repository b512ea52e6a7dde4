/* int8 GEMM of the integer convolution and dense kernels (runtime/_int8.pyx).
 *
 *     acc[o, p] = off[o] + sum_k w[o, k] * u[k, p]        (int32, wrapping)
 *
 * w is int8, read in place from the packed weights (rows of length lda, zero beyond
 * k; the pack happens once, when the plan is compiled). u is uint8: the activation
 * x + 128 (its bit pattern with the sign bit flipped), as an implicit im2col of the
 * input (or of a padded copy, filled with the zero point), gathered into panels of
 * NR positions with four depth values per position, bp[(q*NR + j)*4 + t] =
 * u[4q + t, j], flipping the sign bits on the way. That is the operand layout of
 * the x86 dot-product instructions, so that
 *
 * - AVX-512 VNNI: `vpdpbusd` adds four u8 x s8 products to each int32 lane
 *   (8 channels x 32 positions a register tile);
 * - AVX2: the panels hold u widened to int16 (pairs (u0, u2) and (u1, u3) of each
 *   position, qcc_i8_interleave4_wide) and each task widens its rows of weights
 *   once, so that `vpmaddwd` adds two int16 products into each int32 lane with nothing
 *   widened in the inner loop: exact, no int16 saturation (`vpmaddubsw` would
 *   saturate); 4 channels x 16 positions;
 * - scalar C: the same sums with uint32 arithmetic (4 x 16).
 *
 * All three add the same integers modulo 2^32 (int32 accumulation with wraparound,
 * like numpy's int64 sums cast to int32), so they give identical results, also when a
 * partial sum leaves the int32 range. The column tails are zero-padded panels whose
 * results are not stored.
 *
 * Blocking: positions in blocks of QCC_I8_NC, or of 64 or 32 when that gives the
 * threads enough tasks (each thread packs its block's panels),
 * depth in chunks of QCC_I8_KC (a panel of one chunk stays in L1 while every row tile
 * of the block reads it); chunks after the first add to the int32 tile stored by
 * the one before. The caller splits a convolution into tasks (image, group,
 * position block, row block) that threads run in any order.
 *
 * Output stage (optional, fused; qcc_i8_out): after the last chunk of a block, its
 * int32 tile is turned, while it is still in cache, into
 * - requantize: y[o, p] = clamp(rint(float32(acc) * mult[o]) + z_y, qmin, qmax) (int8;
 *   rint rounds half to even), or
 * - the Ascend dequant (float32(acc) * dscale[o], relu'd) written as float32, as
 *   float16, as float16 values in float32, or quantized again by an ascend.quant
 *   (runtime/_half_impl.h: the numbers of the separate steps), or
 * - the residual stage: that dequant's float32 values plus a residual (a float32
 *   tensor of the output's shape), relu'd, written as float32 and / or quantized by
 *   the next layer's ascend.quant (an int8 ResNet block's add, relu and quant in the
 *   conv's pass; qcc_i8_store_res).
 * A task prefetches the rows its stage reads and writes when it starts
 * (qcc_i8_prefetch_out).
 */
#ifndef QCC_INT8_IMPL_H
#define QCC_INT8_IMPL_H

#include <math.h>

#include "_common.h"
#include "_epilogue.h"
#include "_half_impl.h"

#define QCC_I8_NC 128   /* positions per block (a multiple of every NR) */
#define QCC_I8_KC 1024  /* depth per chunk (a multiple of 4) */
#define QCC_I8_KC_WIDE 256   /* the same for int16 panels (AVX2): 8 KB a panel */
#define QCC_I8_MAXR 8   /* the largest MR: row blocks of tasks are multiples of it */
#define QCC_I8_SLACK 64 /* bytes a padded source is readable past its end */
#define QCC_I8_TMP(NR) ((NR) + 32)   /* stride of the gather's row buffer */

typedef void (*qcc_i8_kern_fn)(int k4, const int8_t *a, ptrdiff_t lda, const uint8_t *bp,
                               int32_t *c, ptrdiff_t ldc, int mr, int nr, const int32_t *off,
                               int accumulate);

/* Where a layer's results go: int32 `out`, or one fused output stage. */
typedef struct {
    int32_t *out;               /* out[((ni*groups + gi)*m + o)*n + p], or NULL */
    int8_t *y;                  /* requantized output, same layout, or NULL */
    const float *mult;          /* [groups*m] */
    int zy, qmin, qmax;
    void *yh;                   /* dequant stage output (hst.kind), same layout, or NULL */
    const float *dscale;        /* [groups*m] */
    qcc_h_stage hst;
    int hisa;                   /* QCC_ISA_* of the float16 code */
    /* the residual stage (ysum or yq not NULL; hst.kind F32 or F16F32): a residual
     * add (res not NULL: numpy's float32 sum, in the add's operand order), relu'd
     * with relu2 (NaN stays NaN, -0 becomes +0), written as float32 (ysum) and / or as
     * the ascend.quant of it (yq, parameters qst): an int8 residual block's dequant,
     * cast, add, relu and the next layer's quant in the layer's pass (without res:
     * the float32 values and their quant, both) */
    const float *res;           /* same layout as the output, or NULL */
    int res_first, relu2;       /* res_first: the sum is res + v (else v + res) */
    float *ysum;
    int8_t *yq;
    qcc_h_stage qst;
} qcc_i8_out;

/* The int32 tile c (rows x cols, row stride ldc; channel `ch` first) to its output
 * stage at element `at` of the output (row stride ldy). */
QCC_INLINE void qcc_i8_store(const qcc_i8_out *o, const int32_t *c, ptrdiff_t ldc,
                             ptrdiff_t at, ptrdiff_t ldy, int rows, int cols, int ch);

/* One integer convolution or dense layer, split into tasks. */
typedef struct {
    int n_img, groups;
    int m, n, k;                /* per group: rows (channels), positions, depth */
    const int8_t *w;            /* w[(gi*m + o)*lda + k] */
    ptrdiff_t lda;
    const int32_t *off;         /* [groups*m] */
    const uint8_t *src;         /* u of image ni, group gi: src + (ni*groups + gi)*src_grp */
    ptrdiff_t src_grp;
    const ptrdiff_t *kofs;      /* conv: x[k, p] = src[kofs[k] + pos(p)] (int8 bits) */
    qcc_positions pos;
    ptrdiff_t row_stride;       /* dense (kofs NULL): x[k, p] = src[p*row_stride + k] */
    int slack;                  /* conv: src is readable QCC_I8_SLACK bytes past its end */
    qcc_i8_out o;
    int pblocks, rblocks, rows; /* tasks: image x group x position block x row block */
    int nc;                     /* positions a block (QCC_I8_NC, or 64 or 32 for more tasks) */
    int ntasks, next;           /* tasks, and the next one to take (atomic) */
    int isa;                    /* QCC_ISA_* */
    int failed;
} qcc_i8_job;

/* ---- packing ------------------------------------------------------------------ */

/* d[4j + t] = r[t][j] ^ 0x80 (t < 4, j < NR; NR a multiple of 16): x to u. */
typedef void (*qcc_i8_ilv_fn)(const uint8_t *const *r, uint8_t *d, int NR);
QCC_INLINE void qcc_i8_interleave4(const uint8_t *const *r, uint8_t *d, const int NR)
{
    int j;
#if QCC_X86
    const __m128i flip = _mm_set1_epi8((char)0x80);
    for (j = 0; j < NR; j += 16) {
        const __m128i a = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(r[0] + j)), flip);
        const __m128i b = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(r[1] + j)), flip);
        const __m128i c = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(r[2] + j)), flip);
        const __m128i e = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(r[3] + j)), flip);
        const __m128i ab0 = _mm_unpacklo_epi8(a, b), ab1 = _mm_unpackhi_epi8(a, b);
        const __m128i ce0 = _mm_unpacklo_epi8(c, e), ce1 = _mm_unpackhi_epi8(c, e);
        _mm_storeu_si128((__m128i *)(d + 4 * j), _mm_unpacklo_epi16(ab0, ce0));
        _mm_storeu_si128((__m128i *)(d + 4 * j + 16), _mm_unpackhi_epi16(ab0, ce0));
        _mm_storeu_si128((__m128i *)(d + 4 * j + 32), _mm_unpacklo_epi16(ab1, ce1));
        _mm_storeu_si128((__m128i *)(d + 4 * j + 48), _mm_unpackhi_epi16(ab1, ce1));
    }
#else
    int t;
    for (j = 0; j < NR; j++)
        for (t = 0; t < 4; t++) d[4 * j + t] = (uint8_t)(r[t][j] ^ 0x80);
#endif
}

static const uint8_t qcc_i8_zero_row[64];

/* The panel of positions [j0, j0 + nr) and depth [k0, k0 + kc) (k0 a multiple of 4):
 * bp[(q*NR + j)*4 + t] = u[k0 + 4q + t, j0 + j] (WIDE: the int16 layout of
 * qcc_i8_interleave4_wide, which ilv must then be); rows past the depth are x = 0 (their
 * weights are 0) and columns past nr are not used. tmp: 4*QCC_I8_TMP(NR) bytes; runs:
 * NR + 2. Short runs are copied 32 bytes at a time when the source has the slack
 * (job->slack: the caller's padded copy). */
QCC_INLINE void qcc_i8_pack_b(const qcc_i8_job *job, const uint8_t *src, int j0, int nr,
                              int k0, int kc, const int NR, const int WIDE,
                              uint8_t *restrict bp, uint8_t *restrict tmp, qcc_run *runs,
                              qcc_i8_ilv_fn ilv)
{
    const int k4 = (kc + 3) / 4;
    const uint8_t *r4[4];
    int q, t, r, j;
    if (job->kofs == NULL) {   /* dense: rows of x, readable up to a multiple of 4 */
        for (j = 0; j < NR; j++) {
            const uint8_t *row = src + (ptrdiff_t)(j0 + (j < nr ? j : 0)) * job->row_stride + k0;
            for (q = 0; q < k4; q++) {
                uint32_t v;
                memcpy(&v, row + 4 * q, 4);
                v ^= 0x80808080u;
                if (WIDE) {   /* qcc_i8_interleave4_wide's layout */
                    uint16_t *d = (uint16_t *)(bp + (ptrdiff_t)q * NR * 8) + (j / 8) * 32 + (j % 8) * 2;
                    d[0] = (uint16_t)(v & 0xFF);
                    d[1] = (uint16_t)((v >> 16) & 0xFF);
                    d[16] = (uint16_t)((v >> 8) & 0xFF);
                    d[17] = (uint16_t)(v >> 24);
                } else {
                    memcpy(bp + ((ptrdiff_t)q * NR + j) * 4, &v, 4);
                }
            }
        }
        return;
    }
    {
        const int nruns = qcc_runs(&job->pos, j0, nr, NR, runs);
        const ptrdiff_t sw = job->pos.s_w;
        const int direct = nruns == 1 && runs[0].len == NR && sw == 1;
        for (q = 0; q < k4; q++) {
            for (t = 0; t < 4; t++) {
                const int kk = k0 + 4 * q + t;
                uint8_t *row = tmp + t * QCC_I8_TMP(NR);
                if (kk >= job->k) {
                    r4[t] = qcc_i8_zero_row;
                    continue;
                }
                if (direct) {
                    r4[t] = src + job->kofs[kk] + runs[0].src;
                    continue;
                }
                for (r = 0; r < nruns; r++) {
                    const uint8_t *s = src + job->kofs[kk] + runs[r].src;
                    uint8_t *d = row + runs[r].col;
                    const int len = runs[r].len;
                    if (sw == 1 && job->slack)
                        memcpy(d, s, 32);   /* len <= NR <= 32; the rest is overwritten
                                               by the next run or not used */
                    else if (sw == 1)
                        memcpy(d, s, len);
                    else
                        for (j = 0; j < len; j++) d[j] = s[j * sw];
                }
                r4[t] = row;
            }
            if (ilv != NULL)
                ilv(r4, bp + (ptrdiff_t)q * NR * (WIDE ? 8 : 4), NR);
            else
                qcc_i8_interleave4(r4, bp + (ptrdiff_t)q * NR * 4, NR);
        }
    }
}

/* ---- requantize ------------------------------------------------------------------ */

/* y[i*ldy + j] = clamp(rint(float32(c[i*ldc + j]) * mult[i]) + zy, qmin, qmax). */
QCC_INLINE void qcc_i8_requant(const int32_t *c, ptrdiff_t ldc, int8_t *y, ptrdiff_t ldy,
                               int rows, int cols, const float *mult, int zy, int qmin,
                               int qmax)
{
    const float lo = (float)(qmin - zy), hi = (float)(qmax - zy);
    int i, j;
    for (i = 0; i < rows; i++) {
        const float m = mult[i];
        const int32_t *ci = c + (ptrdiff_t)i * ldc;
        int8_t *yi = y + (ptrdiff_t)i * ldy;
        for (j = 0; j < cols; j++) {
            float v = (float)ci[j] * m;
            v = v < lo ? lo : v > hi ? hi : v;   /* rint commutes with an integer clamp */
            yi[j] = (int8_t)((int32_t)rintf(v) + zy);
        }
    }
}

/* ---- the residual stage ------------------------------------------------------- */

/* Elements [0, n) of one row of the residual stage (qcc_i8_out): v = the dequant of
 * acc (scale s; o->hst: its relu and float32 kind), t = v + r (r + v with res_first:
 * IEEE float32 adds, as numpy's), relu'd with relu2 (t where t > 0 or t is NaN, else
 * +0), stored to ysum (if not NULL) and quantized by o->qst into yq (if not NULL). The
 * vector variants compute the same bits in one pass in registers; a vector whose
 * dequant holds a NaN (a NaN or infinite scale) is left to this scalar code, whose
 * float16 rounding keeps NaN payloads. */
static void qcc_i8_res_scalar(const qcc_i8_out *o, const int32_t *acc, ptrdiff_t n, float s,
                              const float *r, float *ysum, int8_t *yq)
{
    const qcc_h_stage qst = o->qst;   /* locals: the int8 stores may alias *o */
    const int res_first = o->res_first, relu2 = o->relu2;
    float v[16];
    ptrdiff_t j0, j;
    for (j0 = 0; j0 < n; j0 += 16) {
        const ptrdiff_t m = n - j0 < 16 ? n - j0 : 16;
        qcc_h_deq_scalar(acc + j0, m, s, &o->hst, v);
        for (j = 0; j < m; j++) {
            float t = r == NULL ? v[j] : res_first ? r[j0 + j] + v[j] : v[j] + r[j0 + j];
            t = !relu2 || t > 0.0f || t != t ? t : 0.0f;
            if (ysum != NULL) ysum[j0 + j] = t;
            if (yq != NULL) yq[j0 + j] = qcc_h_quant1(qcc_round_f16(t), &qst);
        }
    }
}

#if QCC_X86
/* qcc_i8_res_scalar in vectors of one instruction set (V, its intrinsics' prefix P, W
 * lanes; expanded below for AVX-512, qcc_i8_res_512, and AVX2, qcc_i8_res_avx2): whole
 * vectors in registers, the tail and a vector whose dequant holds a NaN by the scalar
 * code. LOADI(p): W int32 from p; DRELU(v, z): the dequant's relu (v < 0 -> 0);
 * ANYNAN(v): whether a lane is NaN; R16(v): rounded to float16; RELU(v, z): the relu
 * after the add (QCC_ACT_RELU*); QSTORE(p, v, st): the quant of v, W int8 stored. */
#define QCC_I8_RES_VECTOR(NAME, V, P, W, LOADI, DRELU, ANYNAN, R16, RELU, QSTORE)           \
    static void NAME(const qcc_i8_out *o, const int32_t *acc, ptrdiff_t n, float s,       \
                     const float *r, float *ysum, int8_t *yq)                             \
    {                                                                                     \
        const V sv = P##_set1_ps(s), z = P##_setzero_ps();                                \
        const int f16 = o->hst.kind == QCC_H_F16F32, relu = o->hst.relu;                  \
        const int res_first = o->res_first, relu2 = o->relu2;                             \
        const qcc_h_stage qst = o->qst;   /* locals: the int8 stores may alias *o */      \
        ptrdiff_t j = 0;                                                                  \
        for (; j + W <= n; j += W) {                                                      \
            V v = P##_mul_ps(P##_cvtepi32_ps(LOADI(acc + j)), sv);                        \
            if (relu) v = DRELU(v, z);                                                    \
            if (f16) {                                                                    \
                if (ANYNAN(v)) {                                                          \
                    qcc_i8_res_scalar(o, acc + j, W, s, r != NULL ? r + j : NULL,         \
                                      ysum != NULL ? ysum + j : NULL,                     \
                                      yq != NULL ? yq + j : NULL);                        \
                    continue;                                                             \
                }                                                                         \
                v = R16(v);                                                               \
            }                                                                             \
            if (r != NULL) {                                                              \
                const V b = P##_loadu_ps(r + j);                                          \
                v = res_first ? P##_add_ps(b, v) : P##_add_ps(v, b);                      \
            }                                                                             \
            if (relu2) v = RELU(v, z);                                                    \
            if (ysum != NULL) P##_storeu_ps(ysum + j, v);                                 \
            if (yq != NULL) QSTORE(yq + j, v, &qst);                                      \
        }                                                                                 \
        qcc_i8_res_scalar(o, acc + j, n - j, s, r != NULL ? r + j : NULL,                 \
                          ysum != NULL ? ysum + j : NULL, yq != NULL ? yq + j : NULL);    \
    }

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c")
#define QCC_I8_LOADI16(p) _mm512_loadu_si512((const void *)(p))
#define QCC_I8_DRELU16(v, z) _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, z, _CMP_LT_OQ), z)
#define QCC_I8_ANYNAN16(v) _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q)
#define QCC_I8_QSTORE16(p, v, st) \
    _mm_storeu_si128((__m128i *)(p), qcc_h_quant16_512(qcc_h_r16_512(v), st))
QCC_I8_RES_VECTOR(qcc_i8_res_512, __m512, _mm512, 16, QCC_I8_LOADI16, QCC_I8_DRELU16,
                  QCC_I8_ANYNAN16, qcc_h_r16_512, QCC_ACT_RELU16, QCC_I8_QSTORE16)
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#define QCC_I8_LOADI8(p) _mm256_loadu_si256((const __m256i *)(p))
#define QCC_I8_DRELU8(v, z) _mm256_blendv_ps(v, z, _mm256_cmp_ps(v, z, _CMP_LT_OQ))
#define QCC_I8_ANYNAN8(v) _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))
#define QCC_I8_QSTORE8(p, v, st) \
    _mm_storel_epi64((__m128i *)(p), qcc_h_quant8_avx2(qcc_h_r16_avx2(v), st))
QCC_I8_RES_VECTOR(qcc_i8_res_avx2, __m256, _mm256, 8, QCC_I8_LOADI8, QCC_I8_DRELU8,
                  QCC_I8_ANYNAN8, qcc_h_r16_avx2, QCC_ACT_RELU8, QCC_I8_QSTORE8)
#pragma GCC pop_options
#endif

/* qcc_i8_store of the residual stage, row by row on o->hisa's variant. */
static void qcc_i8_store_res(const qcc_i8_out *o, const int32_t *c, ptrdiff_t ldc,
                             ptrdiff_t at, ptrdiff_t ldy, int rows, int cols, int ch)
{
    int i;
    for (i = 0; i < rows; i++) {
        const ptrdiff_t row = at + (ptrdiff_t)i * ldy;
        const int32_t *acc = c + (ptrdiff_t)i * ldc;
        const float *r = o->res != NULL ? o->res + row : NULL;
        float *ysum = o->ysum != NULL ? o->ysum + row : NULL;
        int8_t *yq = o->yq != NULL ? o->yq + row : NULL;
#if QCC_X86
        if (o->hisa == QCC_ISA_AVX512) {
            qcc_i8_res_512(o, acc, cols, o->dscale[ch + i], r, ysum, yq);
            continue;
        }
        if (o->hisa == QCC_ISA_AVX2) {
            qcc_i8_res_avx2(o, acc, cols, o->dscale[ch + i], r, ysum, yq);
            continue;
        }
#endif
        qcc_i8_res_scalar(o, acc, cols, o->dscale[ch + i], r, ysum, yq);
    }
}

/* Prefetch into L2 the rows a task's output stage reads (a residual) and writes
 * (rows x cols from element `at`, row stride ldy), at the start of the task: its sums
 * then hide the misses. A layer's output and a residual written by an earlier layer
 * are mostly out of cache, and a task's rows are short runs that the hardware
 * prefetchers do not follow: a residual stage of a 64-channel 32x32 layer at batch 32
 * took 1.6x its time in cache before (tools/bench/int8.py's model). */
QCC_INLINE void qcc_i8_prefetch_out(const qcc_i8_out *o, ptrdiff_t at, ptrdiff_t ldy,
                                    int rows, int cols)
{
    int i;
    for (i = 0; i < rows; i++) {
        const ptrdiff_t row = at + (ptrdiff_t)i * ldy;
        if (o->ysum != NULL || o->yq != NULL) {
            if (o->res != NULL) qcc_prefetch(o->res + row, (ptrdiff_t)cols * 4, 0);
            if (o->ysum != NULL) qcc_prefetch(o->ysum + row, (ptrdiff_t)cols * 4, 1);
            if (o->yq != NULL) qcc_prefetch(o->yq + row, cols, 1);
        } else if (o->y != NULL) {
            qcc_prefetch(o->y + row, cols, 1);
        } else if (o->yh != NULL) {
            const ptrdiff_t es = (ptrdiff_t)qcc_h_out_size(o->hst.kind);
            qcc_prefetch((const char *)o->yh + row * es, cols * es, 1);
        }
    }
}

QCC_INLINE void qcc_i8_store(const qcc_i8_out *o, const int32_t *c, ptrdiff_t ldc,
                             ptrdiff_t at, ptrdiff_t ldy, int rows, int cols, int ch)
{
    int i, j;
    if (o->ysum != NULL || o->yq != NULL) {
        qcc_i8_store_res(o, c, ldc, at, ldy, rows, cols, ch);
        return;
    }
    if (o->y != NULL) {
        qcc_i8_requant(c, ldc, o->y + at, ldy, rows, cols, o->mult + ch, o->zy, o->qmin,
                       o->qmax);
        return;
    }
    if (o->yh != NULL) {
        const ptrdiff_t es = (ptrdiff_t)qcc_h_out_size(o->hst.kind);
        for (i = 0; i < rows; i++)
            qcc_h_deq(o->hisa, c + (ptrdiff_t)i * ldc, cols, o->dscale[ch + i], &o->hst,
                      (char *)o->yh + (at + (ptrdiff_t)i * ldy) * es);
        return;
    }
    for (i = 0; i < rows; i++)
        for (j = 0; j < cols; j++) o->out[at + (ptrdiff_t)i * ldy + j] = c[(ptrdiff_t)i * ldc + j];
}

/* ---- the blocked loops (inlined into every variant) ------------------------------- */

/* A variant's own packing of a convolution's panel (qcc_i8_pack_b's arguments and
 * layout, WIDE = 0); returns 0 where it does not apply (then qcc_i8_pack_b runs). */
typedef int (*qcc_i8_pack_fn)(const qcc_i8_job *job, const uint8_t *src, int j0, int nr,
                              int k0, int kc, uint8_t *restrict bp, qcc_run *runs);

/* Task t of the job: rows [r0, r1) of one group, positions of one block. */
QCC_INLINE void qcc_i8_task(qcc_i8_job *job, int t, const int MR, const int NR,
                            const int WIDE, qcc_i8_kern_fn kern, qcc_i8_ilv_fn ilv,
                            qcc_i8_pack_fn pack)
{
    const int rb = t % job->rblocks, pb = (t / job->rblocks) % job->pblocks;
    const int ig = t / (job->rblocks * job->pblocks), gi = ig % job->groups;
    const int r0 = rb * job->rows, r1 = r0 + job->rows < job->m ? r0 + job->rows : job->m;
    const int j0 = pb * job->nc, nc = j0 + job->nc < job->n ? job->nc : job->n - j0;
    const int npan = (nc + NR - 1) / NR;
    const int KC = WIDE ? QCC_I8_KC_WIDE : QCC_I8_KC;
    const int kcb = KC < job->k ? KC : (job->k + 3) / 4 * 4;
    const uint8_t *src = job->src + ig * job->src_grp;
    const int8_t *w = job->w + ((ptrdiff_t)gi * job->m) * job->lda;
    const int32_t *off = job->off + gi * job->m;
    const ptrdiff_t panel_bytes = (ptrdiff_t)kcb * NR * (WIDE ? 2 : 1);
    const ptrdiff_t ldw = (kcb + 3) / 4 * 4;   /* WIDE: row stride of the widened weights */
    const ptrdiff_t out0 = ((ptrdiff_t)ig * job->m) * job->n + j0;
    size_t bytes = (size_t)npan * panel_bytes + 4 * QCC_I8_TMP(NR) + (NR + 2) * sizeof(qcc_run)
                   + 64;
    uint8_t *bp, *tmp;
    int16_t *w16 = NULL;
    qcc_run *runs;
    int32_t *c;
    ptrdiff_t ldc;
    int k0, p, i;
    if (r0 >= r1 || nc <= 0) return;
    const int staged = job->o.out == NULL;   /* a fused output stage: an int32 tile */
    if (staged) bytes += (size_t)(r1 - r0) * job->nc * sizeof(int32_t) + 64;
    if (WIDE) bytes += (size_t)(r1 - r0) * ldw * sizeof(int16_t) + 64;
    bp = (uint8_t *)qcc_thread_buffer(bytes);
    if (bp == NULL) {
        job->failed = 1;
        return;
    }
    tmp = bp + npan * panel_bytes;
    runs = (qcc_run *)(((uintptr_t)(tmp + 4 * QCC_I8_TMP(NR)) + 15) & ~(uintptr_t)15);
    if (staged) {
        c = (int32_t *)(((uintptr_t)(runs + NR + 2) + 63) & ~(uintptr_t)63);
        ldc = job->nc;
        if (WIDE) w16 = (int16_t *)(c + (ptrdiff_t)(r1 - r0) * job->nc);
    } else {
        if (WIDE) w16 = (int16_t *)(((uintptr_t)(runs + NR + 2) + 63) & ~(uintptr_t)63);
        c = job->o.out + out0 + (ptrdiff_t)r0 * job->n;
        ldc = job->n;
    }
    if (staged)
        qcc_i8_prefetch_out(&job->o, out0 + (ptrdiff_t)r0 * job->n, job->n, r1 - r0, nc);
    for (k0 = 0; k0 < job->k; k0 += kcb) {
        const int kc = kcb < job->k - k0 ? kcb : job->k - k0, k4 = (kc + 3) / 4;
        if (WIDE)   /* rows [r0, r1) of this chunk, each q as int16 (w0, w2, w1, w3) */
            for (i = r0; i < r1; i++) {
                const int8_t *s = w + (ptrdiff_t)i * job->lda + k0;
                int16_t *d = w16 + (ptrdiff_t)(i - r0) * ldw;
                for (p = 0; p < k4; p++) {
                    d[4 * p] = s[4 * p];
                    d[4 * p + 1] = s[4 * p + 2];
                    d[4 * p + 2] = s[4 * p + 1];
                    d[4 * p + 3] = s[4 * p + 3];
                }
            }
        for (p = 0; p < npan; p++) {
            const int jp = p * NR, nr = NR < nc - jp ? NR : nc - jp;
            uint8_t *panel = bp + p * panel_bytes;
            if (pack == NULL || !pack(job, src, j0 + jp, nr, k0, kc, panel, runs))
                qcc_i8_pack_b(job, src, j0 + jp, nr, k0, kc, NR, WIDE, panel, tmp, runs, ilv);
            for (i = r0; i < r1; i += MR)
                kern(k4, WIDE ? (const int8_t *)(w16 + (ptrdiff_t)(i - r0) * ldw)
                              : w + (ptrdiff_t)i * job->lda + k0,
                     WIDE ? ldw : job->lda, panel,
                     c + (ptrdiff_t)(i - r0) * ldc + jp, ldc, MR < r1 - i ? MR : r1 - i, nr,
                     off + i, k0 > 0);
        }
    }
    if (staged)
        qcc_i8_store(&job->o, c, ldc, out0 + (ptrdiff_t)r0 * job->n, job->n, r1 - r0, nc,
                     gi * job->m + r0);
}

/* ---- micro-kernels ---------------------------------------------------------------
 * c[i, j] (i < mr, j < nr) of one MR x NR tile: acc = accumulate ? c[i, j] : off[i],
 * then acc += sum_{q < k4, t < 4} a[i*lda + 4q + t] * bp[(q*NR + j)*4 + t]. Rows i >=
 * mr read row 0 of a (their results are dropped). */

#define QCC_I8_PLAIN_MR 4
#define QCC_I8_PLAIN_NR 16
static void qcc_i8_kern_plain(int k4, const int8_t *a, ptrdiff_t lda, const uint8_t *bp,
                              int32_t *c, ptrdiff_t ldc, int mr, int nr, const int32_t *off,
                              int accumulate)
{
    uint32_t acc[QCC_I8_PLAIN_MR][QCC_I8_PLAIN_NR];
    int i, j, q;
    for (i = 0; i < mr; i++)
        for (j = 0; j < QCC_I8_PLAIN_NR; j++)
            acc[i][j] = j < nr && accumulate ? (uint32_t)c[i * ldc + j] : (uint32_t)off[i];
    for (i = 0; i < mr; i++) {
        const int8_t *ai = a + i * lda;
        for (q = 0; q < k4; q++) {
            const int32_t w0 = ai[4 * q], w1 = ai[4 * q + 1], w2 = ai[4 * q + 2], w3 = ai[4 * q + 3];
            const uint8_t *b = bp + (ptrdiff_t)q * QCC_I8_PLAIN_NR * 4;
            for (j = 0; j < QCC_I8_PLAIN_NR; j++)
                acc[i][j] += (uint32_t)(w0 * b[4 * j] + w1 * b[4 * j + 1] + w2 * b[4 * j + 2]
                                        + w3 * b[4 * j + 3]);
        }
    }
    for (i = 0; i < mr; i++)
        for (j = 0; j < nr; j++) c[i * ldc + j] = (int32_t)acc[i][j];
}

static void qcc_i8_task_plain(qcc_i8_job *job, int t)
{
    qcc_i8_task(job, t, QCC_I8_PLAIN_MR, QCC_I8_PLAIN_NR, 0, qcc_i8_kern_plain, NULL, NULL);
}

#if QCC_X86

#pragma GCC push_options
#pragma GCC target("avx2,fma")

#define QCC_I8_AVX2_MR 4
#define QCC_I8_AVX2_NR 16
static const int32_t qcc_i8_masks[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

/* The panel layout of the AVX2 kernel, per q: four vectors of eight int16 pairs,
 * (u0, u2) of positions 0..7, (u1, u3) of 0..7, (u0, u2) of 8..15, (u1, u3) of 8..15
 * (u = x ^ 0x80 zero-extended), so that the kernel loads them as they are (NR 16);
 * here of four rows already in registers and flipped (u), into d[0..127]. */
QCC_INLINE void qcc_i8_wide_store(__m128i a, __m128i b, __m128i c, __m128i e, uint8_t *d)
{
    const __m128i zero = _mm_setzero_si128();
    const __m128i a0 = _mm_unpacklo_epi8(a, zero), a1 = _mm_unpackhi_epi8(a, zero);
    const __m128i b0 = _mm_unpacklo_epi8(b, zero), b1 = _mm_unpackhi_epi8(b, zero);
    const __m128i c0 = _mm_unpacklo_epi8(c, zero), c1 = _mm_unpackhi_epi8(c, zero);
    const __m128i e0 = _mm_unpacklo_epi8(e, zero), e1 = _mm_unpackhi_epi8(e, zero);
    _mm_storeu_si128((__m128i *)d, _mm_unpacklo_epi16(a0, c0));
    _mm_storeu_si128((__m128i *)(d + 16), _mm_unpackhi_epi16(a0, c0));
    _mm_storeu_si128((__m128i *)(d + 32), _mm_unpacklo_epi16(b0, e0));
    _mm_storeu_si128((__m128i *)(d + 48), _mm_unpackhi_epi16(b0, e0));
    _mm_storeu_si128((__m128i *)(d + 64), _mm_unpacklo_epi16(a1, c1));
    _mm_storeu_si128((__m128i *)(d + 80), _mm_unpackhi_epi16(a1, c1));
    _mm_storeu_si128((__m128i *)(d + 96), _mm_unpacklo_epi16(b1, e1));
    _mm_storeu_si128((__m128i *)(d + 112), _mm_unpackhi_epi16(b1, e1));
}

static void qcc_i8_interleave4_wide(const uint8_t *const *r, uint8_t *d, int NR)
{
    const __m128i flip = _mm_set1_epi8((char)0x80);
    (void)NR;
    qcc_i8_wide_store(_mm_xor_si128(_mm_loadu_si128((const __m128i *)r[0]), flip),
                      _mm_xor_si128(_mm_loadu_si128((const __m128i *)r[1]), flip),
                      _mm_xor_si128(_mm_loadu_si128((const __m128i *)r[2]), flip),
                      _mm_xor_si128(_mm_loadu_si128((const __m128i *)r[3]), flip), d);
}

/* qcc_i8_pack_b (WIDE) of a convolution whose positions are contiguous in the padded
 * source (s_w = 1, job->slack), NR = 16: each row of a step is put together in a
 * register, a 16-byte load per run starting `col` bytes before the run (the padded
 * source holds them: a run at col > 0 starts a later output row, at least col bytes
 * into the source) blended in by the run's byte mask, so that nothing is stored and
 * read back across stores (qcc_i8_pack_b_vnni). */
static int qcc_i8_pack_b_avx2(const qcc_i8_job *job, const uint8_t *src, int j0, int nr,
                              int k0, int kc, uint8_t *restrict bp, qcc_run *runs)
{
    const __m128i flip = _mm_set1_epi8((char)0x80);
    const __m128i idx = _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m128i mask[QCC_I8_AVX2_NR + 2];
    ptrdiff_t at[QCC_I8_AVX2_NR + 2];
    const int k4 = (kc + 3) / 4;
    int nruns, r, q, t;
    if (job->kofs == NULL || job->pos.s_w != 1 || !job->slack) return 0;
    nruns = qcc_runs(&job->pos, j0, nr, QCC_I8_AVX2_NR, runs);
    if (nruns == 1 && runs[0].col == 0 && runs[0].len == QCC_I8_AVX2_NR) return 0;   /* direct */
    for (r = 0; r < nruns; r++) {
        const int col = runs[r].col, end = col + runs[r].len;
        mask[r] = _mm_and_si128(_mm_cmpgt_epi8(idx, _mm_set1_epi8((char)(col - 1))),
                                _mm_cmpgt_epi8(_mm_set1_epi8((char)end), idx));
        at[r] = runs[r].src - col;   /* byte j of the row is at at + j */
    }
    for (q = 0; q < k4; q++) {
        __m128i v[4];
        for (t = 0; t < 4; t++) {
            const int kk = k0 + 4 * q + t;
            __m128i x = _mm_setzero_si128();
            if (kk < job->k) {
                const uint8_t *s = src + job->kofs[kk];
                for (r = 0; r < nruns; r++)
                    x = _mm_blendv_epi8(x, _mm_loadu_si128((const __m128i *)(s + at[r])),
                                        mask[r]);
            }
            v[t] = _mm_xor_si128(x, flip);
        }
        qcc_i8_wide_store(v[0], v[1], v[2], v[3], bp + (ptrdiff_t)q * QCC_I8_AVX2_NR * 8);
    }
    return 1;
}

/* a: the task's widened weights (int16, per q (w0, w2, w1, w3); qcc_i8_task), bp: the
 * panel of qcc_i8_interleave4_wide. Per q and row, two broadcasts and four vpmaddwd
 * (each adds two int16 products exactly into an int32 lane): nothing is widened here.
 * Named accumulators, not an array (see qcc_kern_avx2). */
#define QCC_I8_A2_LOAD(i)                                                               \
    __m256i c##i##0, c##i##1;                                                           \
    const int16_t *a##i = a16 + (i < mr ? i : 0) * lda;                                 \
    if (i < mr && accumulate && nr == 16) {                                             \
        c##i##0 = _mm256_loadu_si256((const __m256i *)(c + i * ldc));                   \
        c##i##1 = _mm256_loadu_si256((const __m256i *)(c + i * ldc + 8));               \
    } else if (i < mr && accumulate) {                                                  \
        c##i##0 = _mm256_maskload_epi32(c + i * ldc, m0);                               \
        c##i##1 = _mm256_maskload_epi32(c + i * ldc + 8, m1);                           \
    } else {                                                                            \
        c##i##0 = c##i##1 = _mm256_set1_epi32(i < mr ? off[i] : 0);                     \
    }
#define QCC_I8_A2_STEP(i)                                                               \
    {                                                                                   \
        int32_t we4, wo4;                                                               \
        __m256i we, wo;                                                                 \
        memcpy(&we4, a##i + 4 * q, 4);                                                  \
        memcpy(&wo4, a##i + 4 * q + 2, 4);                                              \
        we = _mm256_set1_epi32(we4);                                                    \
        wo = _mm256_set1_epi32(wo4);                                                    \
        c##i##0 = _mm256_add_epi32(c##i##0, _mm256_madd_epi16(e0, we));                 \
        c##i##1 = _mm256_add_epi32(c##i##1, _mm256_madd_epi16(e1, we));                 \
        c##i##0 = _mm256_add_epi32(c##i##0, _mm256_madd_epi16(o0, wo));                 \
        c##i##1 = _mm256_add_epi32(c##i##1, _mm256_madd_epi16(o1, wo));                 \
    }
#define QCC_I8_A2_STORE(i)                                                              \
    if (i < mr) {                                                                       \
        qcc_store_first_avx2((float *)(c + i * ldc), _mm256_castsi256_ps(c##i##0), n0); \
        qcc_store_first_avx2((float *)(c + i * ldc + 8), _mm256_castsi256_ps(c##i##1), n1); \
    }

static void qcc_i8_kern_avx2(int k4, const int8_t *a, ptrdiff_t lda, const uint8_t *bp,
                             int32_t *c, ptrdiff_t ldc, int mr, int nr, const int32_t *off,
                             int accumulate)
{
    const int16_t *a16 = (const int16_t *)a;
    const int n0 = nr < 8 ? nr : 8, n1 = nr > 8 ? nr - 8 : 0;
    const __m256i m0 = _mm256_loadu_si256((const __m256i *)(qcc_i8_masks + 8 - n0));
    const __m256i m1 = _mm256_loadu_si256((const __m256i *)(qcc_i8_masks + 8 - n1));
    int q;
    QCC_I8_A2_LOAD(0)
    QCC_I8_A2_LOAD(1)
    QCC_I8_A2_LOAD(2)
    QCC_I8_A2_LOAD(3)
    for (q = 0; q < k4; q++) {
        const __m256i *b = (const __m256i *)(bp + (ptrdiff_t)q * 128);
        const __m256i e0 = _mm256_load_si256(b), o0 = _mm256_load_si256(b + 1);
        const __m256i e1 = _mm256_load_si256(b + 2), o1 = _mm256_load_si256(b + 3);
        QCC_I8_A2_STEP(0)
        QCC_I8_A2_STEP(1)
        QCC_I8_A2_STEP(2)
        QCC_I8_A2_STEP(3)
    }
    QCC_I8_A2_STORE(0)
    QCC_I8_A2_STORE(1)
    QCC_I8_A2_STORE(2)
    QCC_I8_A2_STORE(3)
}

static void qcc_i8_task_avx2(qcc_i8_job *job, int t)
{
    qcc_i8_task(job, t, QCC_I8_AVX2_MR, QCC_I8_AVX2_NR, 1, qcc_i8_kern_avx2,
                qcc_i8_interleave4_wide, qcc_i8_pack_b_avx2);
}

#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx512vnni,avx2,fma")

#define QCC_I8_VNNI_MR 8
#define QCC_I8_VNNI_NR 32

/* The accumulators are named variables (c<i>0, c<i>1), not an array: GCC 12 kept an
 * array of __m512i partly on the stack and copied registers around every vpdpbusd. */
#if defined(__GNUC__) && !defined(__clang__)
/* acc += u8 x s8 dot products, in place: with the intrinsic GCC 12 still copied two
 * rows' accumulators to other registers and back every step */
#define QCC_I8_DPBUSD(acc, b, w) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(b), "v"(w))
#else
#define QCC_I8_DPBUSD(acc, b, w) ((acc) = _mm512_dpbusd_epi32((acc), (b), (w)))
#endif
#define QCC_I8_V_LOAD(i)                                                                \
    __m512i c##i##0, c##i##1;                                                           \
    const int8_t *a##i = a + (i < mr ? i : 0) * lda;                                    \
    if (i < mr && accumulate) {                                                         \
        c##i##0 = _mm512_maskz_loadu_epi32(k0, c + i * ldc);                            \
        c##i##1 = _mm512_maskz_loadu_epi32(k1, c + i * ldc + 16);                       \
    } else {                                                                            \
        c##i##0 = c##i##1 = _mm512_set1_epi32(i < mr ? off[i] : 0);                     \
    }
#define QCC_I8_V_STEP(i, b0, b1, q)                                                     \
    {                                                                                   \
        int32_t w4;                                                                     \
        __m512i wv;                                                                     \
        memcpy(&w4, a##i + 4 * (q), 4);                                                 \
        wv = _mm512_set1_epi32(w4);                                                     \
        QCC_I8_DPBUSD(c##i##0, b0, wv);                                                 \
        QCC_I8_DPBUSD(c##i##1, b1, wv);                                                 \
    }
#define QCC_I8_V_STORE(i)                                                               \
    if (i < mr) {                                                                       \
        _mm512_mask_storeu_epi32(c + i * ldc, k0, c##i##0);                             \
        _mm512_mask_storeu_epi32(c + i * ldc + 16, k1, c##i##1);                        \
    }

static void qcc_i8_kern_vnni(int k4, const int8_t *a, ptrdiff_t lda, const uint8_t *bp,
                             int32_t *c, ptrdiff_t ldc, int mr, int nr, const int32_t *off,
                             int accumulate)
{
    const __mmask16 k0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
    const __mmask16 k1 = nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
    int q;
    QCC_I8_V_LOAD(0)
    QCC_I8_V_LOAD(1)
    QCC_I8_V_LOAD(2)
    QCC_I8_V_LOAD(3)
    QCC_I8_V_LOAD(4)
    QCC_I8_V_LOAD(5)
    QCC_I8_V_LOAD(6)
    QCC_I8_V_LOAD(7)
    for (q = 0; q < k4; q++) {
        const __m512i b0 = _mm512_load_si512((const void *)(bp + (ptrdiff_t)q * 128));
        const __m512i b1 = _mm512_load_si512((const void *)(bp + (ptrdiff_t)q * 128 + 64));
        QCC_I8_V_STEP(0, b0, b1, q)
        QCC_I8_V_STEP(1, b0, b1, q)
        QCC_I8_V_STEP(2, b0, b1, q)
        QCC_I8_V_STEP(3, b0, b1, q)
        QCC_I8_V_STEP(4, b0, b1, q)
        QCC_I8_V_STEP(5, b0, b1, q)
        QCC_I8_V_STEP(6, b0, b1, q)
        QCC_I8_V_STEP(7, b0, b1, q)
    }
    QCC_I8_V_STORE(0)
    QCC_I8_V_STORE(1)
    QCC_I8_V_STORE(2)
    QCC_I8_V_STORE(3)
    QCC_I8_V_STORE(4)
    QCC_I8_V_STORE(5)
    QCC_I8_V_STORE(6)
    QCC_I8_V_STORE(7)
}

/* qcc_i8_interleave4 of 32 positions whose four rows (flipped: u) are in registers,
 * into d[0..127]: the byte and word unpacks work within 128-bit lanes, so the lanes'
 * halves are put back in order by a lane permute. */
QCC_INLINE void qcc_i8_ymm_store(__m256i a, __m256i b, __m256i c, __m256i e, uint8_t *d)
{
    const __m256i ab0 = _mm256_unpacklo_epi8(a, b), ab1 = _mm256_unpackhi_epi8(a, b);
    const __m256i ce0 = _mm256_unpacklo_epi8(c, e), ce1 = _mm256_unpackhi_epi8(c, e);
    /* per 128-bit lane h: positions 16h + 0..3, 4..7, 8..11, 12..15 */
    const __m256i p0 = _mm256_unpacklo_epi16(ab0, ce0), p1 = _mm256_unpackhi_epi16(ab0, ce0);
    const __m256i p2 = _mm256_unpacklo_epi16(ab1, ce1), p3 = _mm256_unpackhi_epi16(ab1, ce1);
    _mm256_storeu_si256((__m256i *)d, _mm256_permute2x128_si256(p0, p1, 0x20));
    _mm256_storeu_si256((__m256i *)(d + 32), _mm256_permute2x128_si256(p2, p3, 0x20));
    _mm256_storeu_si256((__m256i *)(d + 64), _mm256_permute2x128_si256(p0, p1, 0x31));
    _mm256_storeu_si256((__m256i *)(d + 96), _mm256_permute2x128_si256(p2, p3, 0x31));
}

/* qcc_i8_interleave4 32 positions at a time in 256-bit registers (NR a multiple of
 * 32). */
static void qcc_i8_interleave4_ymm(const uint8_t *const *r, uint8_t *d, int NR)
{
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    int j;
    for (j = 0; j < NR; j += 32)
        qcc_i8_ymm_store(_mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(r[0] + j)), flip),
                         _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(r[1] + j)), flip),
                         _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(r[2] + j)), flip),
                         _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(r[3] + j)), flip),
                         d + 4 * j);
}

/* qcc_i8_pack_b of a convolution whose positions are contiguous in the source
 * (s_w = 1: stride 1, or the split columns of stride 2), NR = 32: each of the four
 * rows of a step is put together in a register, one masked load per run (masked-out
 * bytes are not read and are 0), then interleaved there. (Gathering the runs into a
 * row buffer stored pieces that the interleave's 32-byte loads then read across:
 * each such load waited for the stores to retire, about a third of a 3x3
 * convolution's time on 28x28 planes.) */
static int qcc_i8_pack_b_vnni(const qcc_i8_job *job, const uint8_t *src, int j0, int nr,
                              int k0, int kc, uint8_t *restrict bp, qcc_run *runs)
{
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    __mmask32 mask[QCC_I8_VNNI_NR + 2];
    ptrdiff_t at[QCC_I8_VNNI_NR + 2];
    const int k4 = (kc + 3) / 4;
    int nruns, r, q, t;
    if (job->kofs == NULL || job->pos.s_w != 1) return 0;
    nruns = qcc_runs(&job->pos, j0, nr, QCC_I8_VNNI_NR, runs);
    for (r = 0; r < nruns; r++) {
        mask[r] = (__mmask32)((((uint64_t)1 << runs[r].len) - 1) << runs[r].col);
        at[r] = runs[r].src - runs[r].col;   /* byte j of the row is at at + j */
    }
    for (q = 0; q < k4; q++) {
        __m256i v[4];
        for (t = 0; t < 4; t++) {
            const int kk = k0 + 4 * q + t;
            const uint8_t *s;
            __m256i x = _mm256_setzero_si256();
            if (kk < job->k) {
                s = src + job->kofs[kk];
                for (r = 0; r < nruns; r++)
                    x = _mm256_mask_loadu_epi8(x, mask[r], (const void *)(s + at[r]));
            }
            v[t] = _mm256_xor_si256(x, flip);
        }
        qcc_i8_ymm_store(v[0], v[1], v[2], v[3], bp + (ptrdiff_t)q * QCC_I8_VNNI_NR * 4);
    }
    return 1;
}

static void qcc_i8_task_vnni(qcc_i8_job *job, int t)
{
    qcc_i8_task(job, t, QCC_I8_VNNI_MR, QCC_I8_VNNI_NR, 0, qcc_i8_kern_vnni,
                qcc_i8_interleave4_ymm, qcc_i8_pack_b_vnni);
}

#pragma GCC pop_options

#endif /* QCC_X86 */

/* ---- dispatch ------------------------------------------------------------------ */

/* Whether this CPU runs the int8 GEMM of `level` (AVX-512 needs VNNI). */
static int qcc_i8_supported(int level) { return qcc_cpu_runs(level, 1); }

/* Task t of the job on the variant of job->isa. */
static void qcc_i8_run_task(qcc_i8_job *job, int t)
{
#if QCC_X86
    if (job->isa == QCC_ISA_AVX512) {
        qcc_i8_task_vnni(job, t);
        return;
    }
    if (job->isa == QCC_ISA_AVX2) {
        qcc_i8_task_avx2(job, t);
        return;
    }
#endif
    qcc_i8_task_plain(job, t);
}

static void qcc_i8_worker(void *arg)
{
    qcc_i8_job *job = (qcc_i8_job *)arg;
    for (;;) {
        const int t = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        if (t >= job->ntasks) break;
        qcc_i8_run_task(job, t);
    }
}

/* Split the job into tasks for `threads` threads: position blocks, and row blocks
 * (multiples of QCC_I8_MAXR, at least 64 rows: each packs its own panels) while there
 * are fewer than 4 tasks a thread. Returns
 * the number of tasks. */
static int qcc_i8_plan_tasks(qcc_i8_job *job, int threads)
{
    const int outer = job->n_img * job->groups;
    /* smaller position blocks first (each is packed once), then row blocks (each
     * packs its own panels of the block) */
    job->nc = QCC_I8_NC;
    while (threads > 1 && job->nc > 32
           && outer * ((job->n + job->nc - 1) / job->nc) < 4 * threads)
        job->nc /= 2;
    job->pblocks = (job->n + job->nc - 1) / job->nc;
    job->rows = (job->m + QCC_I8_MAXR - 1) / QCC_I8_MAXR * QCC_I8_MAXR;
    while (threads > 1 && outer * job->pblocks * ((job->m + job->rows - 1) / job->rows)
                              < 4 * threads
           && job->rows > 8 * QCC_I8_MAXR)
        job->rows = (job->rows / 2 + QCC_I8_MAXR - 1) / QCC_I8_MAXR * QCC_I8_MAXR;
    job->rblocks = (job->m + job->rows - 1) / job->rows;
    return outer * job->pblocks * job->rblocks;
}

/* Run the job on up to `threads` threads of the pool (the caller's included). */
static void qcc_i8_run(qcc_i8_job *job, int threads)
{
    job->ntasks = qcc_i8_plan_tasks(job, threads);
    job->next = 0;
    job->failed = 0;
    qcc_parallel(qcc_i8_worker, job, threads < job->ntasks ? threads : job->ntasks);
}

/* ---- the padded input ------------------------------------------------------------- */

/* d[t] = s[2t] for t < half, d[half + t] = s[2t + 1] for 2t + 1 < n (half = (n+1)/2). */
static void qcc_i8_split_row(const int8_t *s, int8_t *d, ptrdiff_t n)
{
    const ptrdiff_t half = (n + 1) / 2;
    ptrdiff_t t = 0;
#if QCC_X86
    const __m128i low = _mm_set1_epi16(0x00FF);
    for (; 2 * t + 32 <= n; t += 16) {
        const __m128i a = _mm_loadu_si128((const __m128i *)(s + 2 * t));
        const __m128i b = _mm_loadu_si128((const __m128i *)(s + 2 * t + 16));
        _mm_storeu_si128((__m128i *)(d + t),
                         _mm_packus_epi16(_mm_and_si128(a, low), _mm_and_si128(b, low)));
        _mm_storeu_si128((__m128i *)(d + half + t),
                         _mm_packus_epi16(_mm_srli_epi16(a, 8), _mm_srli_epi16(b, 8)));
    }
#endif
    for (; 2 * t < n; t++) {
        d[t] = s[2 * t];
        if (2 * t + 1 < n) d[half + t] = s[2 * t + 1];
    }
}

/* p[c, d, h, w] = x[c, d - pb0, h - pb1, w - pb2] inside the input, z_x elsewhere,
 * for the cg planes of one group, of shape dims; rows split into even and odd
 * columns when `split` (row: scratch of dims[2] bytes). Rows and depth slices that
 * no output reads are left unwritten. */
static void qcc_i8_pad(const int8_t *x, int8_t *p, const qcc_geom *g, const int *dims,
                       int split, int8_t z_x, int8_t *rowbuf)
{
    const ptrdiff_t row = dims[2], plane = (ptrdiff_t)dims[1] * row;
    const ptrdiff_t vol = dims[0] * plane;
    const ptrdiff_t pin = (ptrdiff_t)g->sp[0] * g->sp[1] * g->sp[2];
    unsigned char used_h[256];   /* which rows an output reads (the test divides) */
    const int table = dims[1] <= 256;
    int c, d, h;
    for (h = 0; table && h < dims[1]; h++)
        used_h[h] = (unsigned char)qcc_row_used(h, g->st[1], g->k[1], g->dl[1], g->osp[1]);
    for (c = 0; c < g->cg; c++)
        for (d = 0; d < dims[0]; d++) {
            const int id = d - g->pb[0];
            if (!qcc_row_used(d, g->st[0], g->k[0], g->dl[0], g->osp[0])) continue;
            for (h = 0; h < dims[1]; h++) {
                const int ih = h - g->pb[1];
                int8_t *dst = p + c * vol + d * plane + h * row;
                const int8_t *s;
                if (table ? !used_h[h]
                          : !qcc_row_used(h, g->st[1], g->k[1], g->dl[1], g->osp[1]))
                    continue;
                if (id < 0 || id >= g->sp[0] || ih < 0 || ih >= g->sp[1]) {
                    memset(dst, (uint8_t)z_x, row);
                    continue;
                }
                s = x + c * pin + ((ptrdiff_t)id * g->sp[1] + ih) * g->sp[2];
                if (!split && g->pb[2] == 0 && g->sp[2] == row) {
                    memcpy(dst, s, row);
                    continue;
                }
                {
                    int8_t *r = split ? rowbuf : dst;
                    const ptrdiff_t right = row - g->pb[2] - g->sp[2];
                    memset(r, (uint8_t)z_x, g->pb[2]);
                    memcpy(r + g->pb[2], s, g->sp[2]);
                    if (right > 0) memset(r + g->pb[2] + g->sp[2], (uint8_t)z_x, right);
                    if (split) qcc_i8_split_row(rowbuf, dst, row);
                }
            }
        }
}

/* qcc_i8_pad of `count` (image, group) inputs, x and p advancing by x_step and
 * p_step bytes, shared by the pool's threads (each pads whole inputs: the bytes do
 * not depend on the thread). Returns 0, or -1 when out of memory. */
typedef struct {
    const int8_t *x;
    int8_t *p;
    ptrdiff_t x_step, p_step;
    const qcc_geom *g;
    const int *dims;
    int split, count, next, failed;
    int8_t z_x;
} qcc_i8_pad_job;

static void qcc_i8_pad_worker(void *arg)
{
    qcc_i8_pad_job *job = (qcc_i8_pad_job *)arg;
    int8_t *rowbuf = (int8_t *)qcc_thread_buffer((size_t)job->dims[2] + 64);
    if (rowbuf == NULL) {
        job->failed = 1;
        return;
    }
    for (;;) {
        const int i = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        if (i >= job->count) break;
        qcc_i8_pad(job->x + i * job->x_step, job->p + i * job->p_step, job->g, job->dims,
                   job->split, job->z_x, rowbuf);
    }
}

static int qcc_i8_pad_all(const int8_t *x, ptrdiff_t x_step, int8_t *p, ptrdiff_t p_step,
                          int count, const qcc_geom *g, const int *dims, int split,
                          int8_t z_x, int threads)
{
    qcc_i8_pad_job job;
    job.x = x;
    job.p = p;
    job.x_step = x_step;
    job.p_step = p_step;
    job.g = g;
    job.dims = dims;
    job.split = split;
    job.count = count;
    job.next = 0;
    job.failed = 0;
    job.z_x = z_x;
    if ((double)count * p_step < (1 << 18)) threads = 1;   /* waking a worker costs */
    qcc_parallel(qcc_i8_pad_worker, &job, threads < count ? threads : count);
    return job.failed ? -1 : 0;
}

/* ---- depthwise (one input and one output channel per group): direct taps ------------ */

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && __GNUC__ >= 12
#define QCC_I8_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define QCC_I8_CLONES
#endif

typedef struct {
    const int8_t *x;            /* [N, groups, S] */
    const int8_t *w;            /* w[c*lda + tap] */
    ptrdiff_t lda;
    const int32_t *off;         /* [groups] */
    const qcc_geom *g;
    int groups, planes;
    uint8_t fill;               /* z_x + 128 */
    qcc_i8_out o;               /* [N, groups, OS] */
    int next, failed;
} qcc_i8_dw_job;

/* acc[p] = off + sum_taps w[tap] * u[tap, p] of one plane (uint32: wraps like int32);
 * pad: the plane's u = x + 128 with `fill` around, int16, of shape dims (plus dims[2]
 * elements of slack). With stride 1 along H and W, each output depth slice is one
 * flat loop per tap over whole padded rows (wide: osp[1] x dims[2] accumulators, the
 * columns past osp[2] dropped); else a loop per output row. */
QCC_I8_CLONES
static void qcc_i8_dw_plane(const int8_t *x, const int8_t *w, int32_t off, const qcc_geom *g,
                            const int *dims, uint8_t fill, int16_t *pad, uint32_t *acc,
                            uint32_t *wide)
{
    const ptrdiff_t row = dims[2], plane = (ptrdiff_t)dims[1] * row;
    const int ow_n = g->osp[2], s2 = g->st[2];
    int d, h, t, od, oh, kd, kh, kw;
    for (t = 0; t < dims[0] * plane; t++) pad[t] = fill;
    for (d = 0; d < g->sp[0]; d++)
        for (h = 0; h < g->sp[1]; h++) {
            const int8_t *restrict src = x + ((ptrdiff_t)d * g->sp[1] + h) * g->sp[2];
            int16_t *restrict dst = pad + (d + g->pb[0]) * plane + (h + g->pb[1]) * row + g->pb[2];
            for (t = 0; t < g->sp[2]; t++) dst[t] = (int16_t)(src[t] + 128);
        }
    if (g->st[1] == 1 && s2 == 1) {
        const ptrdiff_t n = (ptrdiff_t)g->osp[1] * row;
        ptrdiff_t i;
        for (od = 0; od < g->osp[0]; od++) {
            int tap = 0;
            for (i = 0; i < n; i++) wide[i] = (uint32_t)off;
            for (kd = 0; kd < g->k[0]; kd++)
                for (kh = 0; kh < g->k[1]; kh++)
                    for (kw = 0; kw < g->k[2]; kw++, tap++) {
                        const int32_t wv = w[tap];
                        const int16_t *src = pad + (ptrdiff_t)(od * g->st[0] + kd * g->dl[0]) * plane
                                             + (ptrdiff_t)kh * g->dl[1] * row + kw * g->dl[2];
                        for (i = 0; i < n; i++) wide[i] += (uint32_t)(wv * src[i]);
                    }
            for (oh = 0; oh < g->osp[1]; oh++)
                memcpy(acc + ((ptrdiff_t)od * g->osp[1] + oh) * ow_n, wide + oh * row,
                       ow_n * sizeof(uint32_t));
        }
        return;
    }
    for (od = 0; od < g->osp[0]; od++)
        for (oh = 0; oh < g->osp[1]; oh++) {
            uint32_t *a = acc + ((ptrdiff_t)od * g->osp[1] + oh) * ow_n;
            const int16_t *wtap;
            int tap = 0;
            for (t = 0; t < ow_n; t++) a[t] = (uint32_t)off;
            for (kd = 0; kd < g->k[0]; kd++)
                for (kh = 0; kh < g->k[1]; kh++)
                    for (kw = 0; kw < g->k[2]; kw++, tap++) {
                        const int32_t wv = w[tap];
                        wtap = pad + ((ptrdiff_t)(od * g->st[0] + kd * g->dl[0]) * dims[1]
                                      + oh * g->st[1] + kh * g->dl[1]) * row + kw * g->dl[2];
                        if (s2 == 1)
                            for (t = 0; t < ow_n; t++) a[t] += (uint32_t)(wv * wtap[t]);
                        else
                            for (t = 0; t < ow_n; t++) a[t] += (uint32_t)(wv * wtap[t * s2]);
                    }
        }
}

static void qcc_i8_dw_worker(void *arg)
{
    qcc_i8_dw_job *job = (qcc_i8_dw_job *)arg;
    const qcc_geom *g = job->g;
    const ptrdiff_t pin = (ptrdiff_t)g->sp[0] * g->sp[1] * g->sp[2];
    const ptrdiff_t pout = (ptrdiff_t)g->osp[0] * g->osp[1] * g->osp[2];
    int dims[3];
    ptrdiff_t vol;
    int16_t *pad;
    uint32_t *acc, *wide;
    qcc_padded_dims(g, g->osp[2], dims);
    vol = (ptrdiff_t)dims[0] * dims[1] * dims[2];
    pad = (int16_t *)qcc_thread_buffer((size_t)(vol + dims[2]) * 2 + (size_t)pout * 4
                                       + (size_t)g->osp[1] * dims[2] * 4 + 192);
    if (pad == NULL) {
        job->failed = 1;
        return;
    }
    acc = (uint32_t *)(((uintptr_t)(pad + vol + dims[2]) + 63) & ~(uintptr_t)63);
    wide = (uint32_t *)(((uintptr_t)(acc + pout) + 63) & ~(uintptr_t)63);
    for (;;) {
        const int t = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        int c;
        if (t >= job->planes) break;
        c = t % job->groups;
        qcc_i8_dw_plane(job->x + (ptrdiff_t)t * pin, job->w + (ptrdiff_t)c * job->lda,
                        job->off[c], g, dims, job->fill, pad, acc, wide);
        qcc_i8_store(&job->o, (const int32_t *)acc, 0, (ptrdiff_t)t * pout, 0, 1, (int)pout, c);
    }
}

/* Run a depthwise job on up to `threads` threads of the pool. */
static void qcc_i8_depthwise(qcc_i8_dw_job *job, int threads)
{
    job->next = 0;
    job->failed = 0;
    qcc_parallel(qcc_i8_dw_worker, job, threads < job->planes ? threads : job->planes);
}

#endif
