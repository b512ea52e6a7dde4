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

/* Prefetch into L2 the bytes [p, p + n) (rw 1: to be written): data a kernel reads
 * or writes soon that the hardware prefetchers do not see coming (short runs). */
QCC_INLINE void qcc_prefetch(const void *p, ptrdiff_t n, int rw)
{
    const char *a = (const char *)((uintptr_t)p & ~(uintptr_t)63), *e = (const char *)p + n;
    for (; a < e; a += 64) {
        if (rw) __builtin_prefetch(a, 1, 2);
        else __builtin_prefetch(a, 0, 2);
    }
}

/* A run of weights the next chunk of a kernel's loop reads, prefetched into L2 a slice
 * before each of the current chunk's tiles (qcc_pf_slice): the tiles' sums hide the
 * misses, and the prefetches are spread out (one burst of a whole chunk at once
 * stalled on the fill buffers instead). */
typedef struct {
    const char *at, *end;
    ptrdiff_t slice;
} qcc_pf_slices;

/* `bytes` from `from`, in slices for `tiles` tiles (nothing when bytes is 0). */
QCC_INLINE void qcc_pf_slices_of(qcc_pf_slices *p, const void *from, ptrdiff_t bytes,
                                 ptrdiff_t tiles)
{
    p->at = (const char *)from;
    p->end = p->at + bytes;
    p->slice = (bytes / (tiles > 0 ? tiles : 1) + 63) & ~(ptrdiff_t)63;
}

QCC_INLINE void qcc_pf_slice(qcc_pf_slices *p)
{
    if (p->at < p->end) {
        qcc_prefetch(p->at, p->slice < p->end - p->at ? p->slice : p->end - p->at, 0);
        p->at += p->slice;
    }
}

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

#include "_epilogue.h"      /* the fused epilogues (qcc_act, qcc_epilogue_run) */

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

#include "_thread_pool.h"   /* per-thread scratch, the thread pool (qcc_parallel) */

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
