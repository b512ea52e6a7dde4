/* Deterministic float32 GEMM of the convolution kernels (runtime/_conv.pyx).
 *
 *     c[o, p] = bias[o] + sum_k a[o, k] * b[k, p]     (o < m, p < n, k < K)
 *
 * Every output element is computed by the same sequence of operations, whatever
 * its row o, its column p, the blocking, the thread that computes it or the
 * instruction set: acc = bias[o] (0 without bias), then acc = fma(a[o, k],
 * b[k, p], acc) for k = 0, 1, ..., K-1, rounded to float32 at every step. (BLAS
 * sgemm kernels do not promise that: OpenBLAS's Haswell kernel rounds elements
 * differently depending on their place in its tiles, so two output channels with
 * the same weights could differ, which ill-conditioned models amplify.)
 *
 * b is never materialized: it is an implicit im2col of a padded input, element
 * (k, p) at src[kofs[k] + pos(p)] with p = (q*oh + h)*ow + w and
 * pos(p) = q*s_q + h*s_h + w*s_w, gathered into packed panels of NR columns
 * (Goto-style blocking: k in chunks of KC, p in blocks of NC, o in blocks of MC;
 * a register tile of MR output channels x NR positions; a is read in place).
 * Splitting k into chunks keeps the order: a chunk's accumulators are stored to c
 * and loaded back exactly.
 *
 * Three variants, picked at load time (qcc_gemm_set_variant can force one):
 * AVX-512 (8 x 32 tile), AVX2+FMA (6 x 16) and plain C with fmaf (4 x 8). A
 * vector FMA lane rounds exactly like fmaf, and column tails are done with
 * masked loads and stores of full-width tiles (the packed panels are padded with
 * zeros), so all variants give bit-identical results. GEMMs of one or two columns
 * (qcc_gemm_narrow: a 1x1 convolution of a 1x1 input) are, on the vector variants,
 * matrix-vector products over 16 (8) rows whose a[o, k] are gathered: the same
 * operations in the same order.
 *
 * Threads: a small pool of pthreads shares each GEMM, in tasks of columns (wide
 * outputs) or of rows (narrow ones, whose columns are packed once up front), big
 * tasks first and small ones last (qcc_gemm_split); which thread computes an
 * element, and the task sizes, do not change how. A process forked while the pool
 * exists starts a fresh pool. Workers run a job in the caller's floating-point
 * environment (rounding mode, flush-to-zero and denormals-are-zero flags).
 */
#ifndef QCC_GEMM_IMPL_H
#define QCC_GEMM_IMPL_H

#include <fenv.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_common.h"

#define QCC_GEMM_X86 QCC_X86
#define QCC_GINLINE QCC_INLINE

typedef struct {
    int m, n, k;                 /* rows (output channels), columns (positions), depth */
    const float *a;              /* a[o, k] at a[o*lda + k] */
    ptrdiff_t lda;
    const float *ap;             /* a packed in panels of ap_mr rows and depth chunks of
                                    ap_kc (qcc_gemm_pack_a), or NULL; qcc_gemm_run packs
                                    a itself unless they are the variant's MR and the
                                    chunk length it uses (qcc_gemm_chunk) */
    int ap_mr, ap_kc;
    const float *bias;           /* [m] or NULL */
    float *c;                    /* c[o, p] at c[o*ldc + p] */
    ptrdiff_t ldc;
    const float *src;            /* b[k, p] = src[kofs[k] + pos(p)] */
    const ptrdiff_t *kofs;
    qcc_positions pos;           /* column p of b at src[kofs[k] + pos(p)] */
    const qcc_act *act;          /* applied to c once finished, or NULL */
    int taps;                    /* kernel taps of the convolution (1: b is x itself) */
} qcc_gemm;

typedef void (*qcc_kern_fn)(int kc, const float *ap, const float *bp, float *c, ptrdiff_t ldc,
                            int mr, int nr, const float *bias, int mode);
/* A kernel that also applies the epilogue to the finished tile in its registers
 * before storing it (the last depth chunk), when qcc_act_in_kernel. */
typedef void (*qcc_kern_act_fn)(int kc, const float *ap, const float *bp, float *c,
                                ptrdiff_t ldc, int mr, int nr, const float *bias, int mode,
                                const qcc_act *act);

/* Whether a kernel can apply `act` in registers: a residual and/or relu, clip or
 * hard-swish (no affine or fake-quant). The residual of the element at c is at
 * act->add + (c - act->base): the GEMM writes into the output array itself whenever
 * its act has a residual (the batched images' GEMM, into scratch, takes none). */
QCC_INLINE int qcc_act_in_kernel(const qcc_act *act)
{
    return act != NULL && act->mul == NULL && act->fq_scale == NULL
           && (act->kind == QCC_ACT_RELU || act->kind == QCC_ACT_CLIP
               || act->kind == QCC_ACT_HARD_SWISH
               || (act->kind == QCC_ACT_NONE && act->add != NULL));
}

/* Threads a GEMM uses (the width of its qcc_parallel job). */
static int qcc_gemm_threads = 1;

/* Cache blocking (floats): rows of a per block, depth per chunk, columns per block. */
static int qcc_gemm_mc = 256, qcc_gemm_kc = 256, qcc_gemm_nc = 768;

/* Column-block tasks of a GEMM whose depth is at most this go through their tiles
 * row block by row block (each thread then writes MR rows of c at a time, left to
 * right: few long streams), else column panel by column panel. */
static int qcc_gemm_rows_outer_k = 64;

/* ---- packing and the blocked loops (inlined into every variant) ----------------- */

/* dst[t] = src[t * sw] for t < len (len <= NR); one implementation per variant. */
typedef void (*qcc_copy_fn)(float *dst, const float *src, int len, ptrdiff_t sw);

/* Packed panels of b rows [k0, k0 + kc) and the nc columns of `runs`:
 * bp[(panel*kc + k)*NR + col], the last panel padded with zeros. */
QCC_GINLINE void qcc_gemm_pack_b(const qcc_gemm *g, int k0, int kc, const qcc_run *runs,
                                 int nruns, int nc, const int NR, qcc_copy_fn copy,
                                 float *restrict bp)
{
    const ptrdiff_t sw = g->pos.s_w, panel = (ptrdiff_t)kc * NR;
    const ptrdiff_t *kofs = g->kofs + k0;
    const int last = (nc - 1) / NR, tail = nc - last * NR;
    int r, k, t;
    if (tail < NR) {
        float *restrict d = bp + last * panel;
        for (k = 0; k < kc; k++)
            for (t = tail; t < NR; t++) d[(ptrdiff_t)k * NR + t] = 0.0f;
    }
    /* Row by row of b, each read left to right (few streams for the hardware
     * prefetcher, also when the input is not in cache); the panels are in cache. */
    for (k = 0; k < kc; k++) {
        const float *s = g->src + kofs[k];
        float *d = bp + (ptrdiff_t)k * NR;
        for (r = 0; r < nruns; r++)
            copy(d + runs[r].panel * panel + runs[r].col, s + runs[r].src, runs[r].len, sw);
    }
}

/* The tiles of rows [i0, i1) x packed columns [0, nc) at depth chunk [pc, pc + kc):
 * bp holds the nc columns' panels, c points at column 0 of them. With `kern_act`
 * (a variant whose kernel applies epilogues), the last chunk's tiles take g->act in
 * registers when they can (qcc_act_in_kernel): returns whether they did. */
QCC_GINLINE int qcc_gemm_tiles(const qcc_gemm *g, int i0, int i1, int pc, int kc, int nc,
                               const float *bp, float *c, const int MR, const int NR,
                               qcc_kern_fn kern, qcc_kern_act_fn kern_act, int rows_outer)
{
    const int mode = pc ? 2 : g->bias ? 1 : 0;
    const ptrdiff_t mpad = (ptrdiff_t)(g->m + MR - 1) / MR * MR;
    const int acts = kern_act != NULL && pc + kc >= g->k && qcc_act_in_kernel(g->act);
    /* the panel of rows [ir, ir + MR) (ir a multiple of MR) at depth pc */
#define QCC_GEMM_PANEL(ir) (g->ap + (ptrdiff_t)pc * mpad + (ptrdiff_t)(ir) * kc)
#define QCC_GEMM_TILE                                                                      \
    do {                                                                                   \
        const int mr_ = MR < i1 - ir ? MR : i1 - ir, nr_ = NR < nc - jr ? NR : nc - jr;     \
        float *c_ = c + (ptrdiff_t)ir * g->ldc + jr;                                        \
        const float *b_ = g->bias ? g->bias + ir : NULL;                                    \
        if (acts)                                                                           \
            kern_act(kc, QCC_GEMM_PANEL(ir), bp + (ptrdiff_t)jr * kc, c_, g->ldc, mr_, nr_, \
                     b_, mode, g->act);                                                     \
        else                                                                                \
            kern(kc, QCC_GEMM_PANEL(ir), bp + (ptrdiff_t)jr * kc, c_, g->ldc, mr_, nr_, b_, \
                 mode);                                                                     \
    } while (0)
    int ir, jr;
    if (rows_outer) {
        for (ir = i0; ir < i1; ir += MR)
            for (jr = 0; jr < nc; jr += NR) QCC_GEMM_TILE;
    } else {
        for (jr = 0; jr < nc; jr += NR)
            for (ir = i0; ir < i1; ir += MR) QCC_GEMM_TILE;
    }
#undef QCC_GEMM_TILE
#undef QCC_GEMM_PANEL
    return acts;
}

/* Most tasks of one GEMM (qcc_gemm_split). */
#define QCC_GEMM_MAX_TASKS 64

/* Work of one GEMM, shared by the threads, handed out task by task. */
typedef struct {
    const qcc_gemm *g;
    int kchunks, kcb;       /* depth chunks and their length (the last may be shorter) */
    int by_rows;            /* tasks: 0 column blocks (packing their own panels), 1 row
                               blocks (sharing bshared: all columns, packed chunk by
                               chunk by whichever threads come first) */
    int task, ntasks;       /* columns or rows of the largest task, number of tasks */
    int bounds[QCC_GEMM_MAX_TASKS + 1];   /* task t: columns or rows [bounds[t], bounds[t+1]) */
    int next;               /* next task (atomic) */
    float *bshared;         /* by_rows: panels of chunk i at bshared + i*kcb*npad */
    const qcc_run *runs;    /* by_rows: runs of all columns */
    int nruns, npad;        /* npad: columns rounded up to NR */
    int next_pack;          /* by_rows: next chunk to pack (atomic) */
    int *packed;            /* by_rows: chunk i is packed (atomic flags) */
    void (*work)(void *job);  /* the variant's qcc_gemm_work */
    int failed;
    /* by_channels (qcc_gemm_t_work): QCC_T_NR channels a block, QCC_T_MR positions a
       tile; next counts the tiles handed out, block by block, to `width` threads */
    int cblocks, ptiles, width;
} qcc_gemm_job;

QCC_GINLINE void qcc_gemm_wait_packed(const int *flag)
{
    int spins = 0;
    while (!__atomic_load_n(flag, __ATOMIC_ACQUIRE)) {
#if QCC_GEMM_X86
        __builtin_ia32_pause();
#endif
        if (++spins > 4096) {   /* its packer was preempted: let it run */
            sched_yield();
            spins = 0;
        }
    }
}

/* Run tasks of `job` until none is left (every thread of the job does this). */
QCC_GINLINE void qcc_gemm_work(qcc_gemm_job *job, const int MR, const int NR, qcc_kern_fn kern,
                               qcc_kern_act_fn kern_act, qcc_copy_fn copy)
{
    const qcc_gemm *g = job->g;
    float *bp = NULL;
    qcc_run *runs = NULL;
    const int mcb = (qcc_gemm_mc + MR - 1) / MR * MR;   /* row blocks start on panels */
    int ncb = 0, i;
    if (job->by_rows) {
        /* Pack chunks while some are left: every chunk taken is being packed by a
         * running thread, so the waits for them below are short. */
        for (;;) {
            const int c = __atomic_fetch_add(&job->next_pack, 1, __ATOMIC_RELAXED);
            int pc, kc;
            if (c >= job->kchunks) break;
            pc = c * job->kcb;
            kc = job->kcb < g->k - pc ? job->kcb : g->k - pc;
            qcc_gemm_pack_b(g, pc, kc, job->runs, job->nruns, g->n, NR, copy,
                            job->bshared + (ptrdiff_t)pc * job->npad);
            __atomic_store_n(&job->packed[c], 1, __ATOMIC_RELEASE);
        }
    } else {
        size_t b_bytes;
        ncb = qcc_gemm_nc < job->task ? qcc_gemm_nc : job->task;
        ncb = (ncb + NR - 1) / NR * NR;
        b_bytes = ((size_t)ncb * job->kcb * sizeof(float) + 63) / 64 * 64;
        bp = (float *)qcc_thread_buffer(b_bytes + (size_t)(ncb + 2) * sizeof(qcc_run));
        if (bp == NULL) {
            job->failed = 1;
            return;
        }
        runs = (qcc_run *)((char *)bp + b_bytes);
    }
    for (;;) {
        const int t = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        int lo, hi, jc, ic;
        if (t >= job->ntasks) break;
        lo = job->bounds[t];
        hi = job->bounds[t + 1];
        if (job->by_rows) {
            int done = 0;
            for (i = 0; i < job->kchunks; i++) {
                const int pc = i * job->kcb, kc = job->kcb < g->k - pc ? job->kcb : g->k - pc;
                qcc_gemm_wait_packed(&job->packed[i]);
                done = qcc_gemm_tiles(g, lo, hi, pc, kc, g->n,
                                      job->bshared + (ptrdiff_t)pc * job->npad, g->c, MR, NR,
                                      kern, kern_act, 1);
            }
            if (!done) qcc_activate(g->act, g->c + (ptrdiff_t)lo * g->ldc, g->ldc, hi - lo, g->n);
            continue;
        }
        for (jc = lo; jc < hi; jc += ncb) {
            const int nc = ncb < hi - jc ? ncb : hi - jc;
            const int nruns = qcc_runs(&g->pos, jc, nc, NR, runs);
            int done = 0;
            for (i = 0; i < job->kchunks; i++) {
                const int pc = i * job->kcb, kc = job->kcb < g->k - pc ? job->kcb : g->k - pc;
                qcc_gemm_pack_b(g, pc, kc, runs, nruns, nc, NR, copy, bp);
                for (ic = 0; ic < g->m; ic += mcb) {
                    const int i1 = ic + mcb < g->m ? ic + mcb : g->m;
                    done = qcc_gemm_tiles(g, ic, i1, pc, kc, nc, bp, g->c + jc, MR, NR, kern,
                                          kern_act, g->k <= qcc_gemm_rows_outer_k);
                }
            }
            if (!done) qcc_activate(g->act, g->c + jc, g->ldc, g->m, nc);
        }
    }
}

/* ---- packed weights -------------------------------------------------------------
 * a in depth chunks of kc (the last one shorter) and, within a chunk, panels of MR
 * rows: with mpad = m rounded up to MR, a[o, k] of the chunk starting at depth pc is at
 * ap[pc * mpad + (o / MR * MR) * len + (k - pc) * MR + o % MR] (len: the chunk's
 * length), rows past m zero. A micro-kernel reads its MR rows at depth k as MR
 * consecutive floats, and the panels of consecutive rows of a chunk follow each
 * other in memory (one stream for the hardware prefetcher). */

static size_t qcc_gemm_packed_size(int m, int k, int mr)
{
    return (size_t)((m + mr - 1) / mr) * mr * (size_t)k;
}

static int qcc_gemm_by_channels(int m, int k, int n, int taps);

/* The length of even chunks of depth k at most kc long. */
static int qcc_even_chunk(int k, int kc)
{
    const int chunks = (k + kc - 1) / kc;
    return chunks > 0 ? (k + chunks - 1) / chunks : 1;
}

/* Depth per chunk of the tiles with the channels in the lanes (the by-channels conv
 * tile and the dense kernel); 0: the whole depth in one chunk. One chunk was faster
 * than chunks of 128 on AMD Zen 4 (a 32 KB L1): ResNet-50's 256x14x14 3x3 conv on one
 * thread 2.27 against 2.42-2.55 ms, ViT-Tiny's dense layers 7% (each chunk stores
 * and reloads every tile's sums through ct, and the weight panel streams from L2
 * either way). Tests set a short chunk to cover the chunked sums. */
static int qcc_t_kc = 0;

static int qcc_t_chunk(int k)
{
    return qcc_t_kc > 0 ? qcc_even_chunk(k, qcc_t_kc) : (k > 0 ? k : 1);
}

/* The depth chunk of a GEMM of m rows, depth k and n columns (a convolution of
 * `taps` taps) on the variant in use. */
static int qcc_gemm_chunk(int m, int k, int n, int taps)
{
    return qcc_gemm_by_channels(m, k, n, taps) ? qcc_t_chunk(k) : qcc_even_chunk(k, qcc_gemm_kc);
}

static void qcc_gemm_pack_a(const float *a, ptrdiff_t lda, int m, int k, int mr, int kc,
                            float *ap)
{
    const ptrdiff_t mpad = (ptrdiff_t)(m + mr - 1) / mr * mr;
    int pc, o0, i, t;
    for (pc = 0; pc < k; pc += kc) {
        const int len = kc < k - pc ? kc : k - pc;
        for (o0 = 0; o0 < m; o0 += mr) {
            const int rows = m - o0 < mr ? m - o0 : mr;
            const float *s = a + (ptrdiff_t)o0 * lda + pc;
            float *d = ap + (ptrdiff_t)pc * mpad + (ptrdiff_t)o0 * len;
            for (t = 0; t < len; t++, d += mr) {
                for (i = 0; i < rows; i++) d[i] = s[(ptrdiff_t)i * lda + t];
                for (; i < mr; i++) d[i] = 0.0f;
            }
        }
    }
}

/* ---- micro-kernels ------------------------------------------------------------
 * c[i, j] (i < mr, j < nr) of one MR x NR tile: acc = mode 0: 0, 1: bias[i],
 * 2: c[i, j]; then acc = fma(ap[k*MR + i], bp[k*NR + j], acc) for k < kc (ap: the
 * tile's panel of packed a at the chunk's depth). Rows i >= mr hold the panel's
 * zero padding (their results are dropped), columns j >= nr the zero padding of
 * the b panel. */

/* Plain C: fmaf rounds exactly like a vector FMA lane. */
#define QCC_PLAIN_MR 4
#define QCC_PLAIN_NR 8
static void qcc_kern_plain(int kc, const float *ap, const float *bp, float *c, ptrdiff_t ldc,
                           int mr, int nr, const float *bias, int mode)
{
    float acc[QCC_PLAIN_MR][QCC_PLAIN_NR];
    int i, j, k;
    for (i = 0; i < QCC_PLAIN_MR; i++)
        for (j = 0; j < QCC_PLAIN_NR; j++)
            acc[i][j] = i >= mr || j >= nr ? 0.0f
                        : mode == 2 ? c[i * ldc + j] : mode == 1 ? bias[i] : 0.0f;
    for (k = 0; k < kc; k++) {
        const float *b = bp + (ptrdiff_t)k * QCC_PLAIN_NR;
        const float *ak = ap + (ptrdiff_t)k * QCC_PLAIN_MR;
        for (i = 0; i < QCC_PLAIN_MR; i++)
            for (j = 0; j < QCC_PLAIN_NR; j++) acc[i][j] = fmaf(ak[i], b[j], acc[i][j]);
    }
    for (i = 0; i < mr; i++)
        for (j = 0; j < nr; j++) c[i * ldc + j] = acc[i][j];
}

static void qcc_copy_plain(float *dst, const float *src, int len, ptrdiff_t sw)
{
    int t;
    if (sw == 1)
        for (t = 0; t < len; t++) dst[t] = src[t];
    else
        for (t = 0; t < len; t++) dst[t] = src[t * sw];
}

static void qcc_work_plain(void *job)
{
    qcc_gemm_work((qcc_gemm_job *)job, QCC_PLAIN_MR, QCC_PLAIN_NR, qcc_kern_plain, NULL,
                  qcc_copy_plain);
}

/* Tiles of positions whose sums are finished together (all depth chunks) in a
 * thread's own ct (12 KB, which stays in L1), then copied out by the transposes and
 * given the epilogue while the output's part is still in L1: 8 tiles, 48 positions
 * (a multiple of 16). */
#define QCC_T_GROUP 8

/* A claim of the next tiles (qcc_claim, runtime/_thread_pool.h), QCC_T_GROUP at most. */
QCC_GINLINE int qcc_t_claim(int *next, int blocks, int tiles, int width, int *b, int *t0)
{
    return qcc_claim(next, blocks, tiles, width, QCC_T_GROUP, b, t0);
}

#if QCC_GEMM_X86

#include "_gemm_avx.h"     /* the AVX2 and AVX-512 micro-kernels */
#include "_gemm_lanes.h"   /* few columns: the channels in the lanes */
#include "_dense_impl.h"   /* the dense layers' kernels */

#endif /* QCC_GEMM_X86 */

/* ---- variants and the entry point ---------------------------------------------- */

typedef struct {
    const char *name;
    int mr, nr;
    void (*work)(void *job);
    void (*gemv)(const qcc_gemm *g);   /* narrow GEMMs (qcc_gemm_narrow), or NULL */
    void (*t_work)(void *job);         /* few columns, channels in the lanes, or NULL */
    void (*dense_work)(void *job);     /* dense layers (qcc_dense_run), or NULL */
} qcc_gemm_variant_t;

/* Index 0 plain, 1 AVX2+FMA, 2 AVX-512. */
static const qcc_gemm_variant_t qcc_gemm_variants[] = {
    {"plain", QCC_PLAIN_MR, QCC_PLAIN_NR, qcc_work_plain, NULL, NULL, NULL},
#if QCC_GEMM_X86
    {"avx2", QCC_AVX2_MR, QCC_AVX2_NR, qcc_work_avx2, qcc_gemv_avx2, NULL, qcc_dense_work_avx2},
    {"avx512", QCC_AVX512_MR, QCC_AVX512_NR, qcc_work_avx512, qcc_gemv_avx512,
     qcc_gemm_t_work, qcc_dense_work},
#endif
};
#define QCC_GEMM_NVARIANTS ((int)(sizeof(qcc_gemm_variants) / sizeof(qcc_gemm_variants[0])))
static int qcc_gemm_cur = -1;

/* Whether this CPU (and OS) runs variant v (variant index = ISA level, _common.h). */
static int qcc_gemm_supported(int v)
{
    return v >= 0 && v < QCC_GEMM_NVARIANTS && qcc_cpu_runs(v, 0);
}

/* The variant in use (the best supported one unless forced). */
static int qcc_gemm_variant(void)
{
    if (qcc_gemm_cur < 0) {
        int v = qcc_isa_best(qcc_isa_ceiling(), 0);
        while (v > 0 && !qcc_gemm_supported(v)) v--;
        qcc_gemm_cur = v;
    }
    return qcc_gemm_cur;
}

/* Whether a GEMM of m rows (output channels), depth k and n columns of a convolution
 * of `taps` taps puts the channels in the lanes (qcc_gemm_t_work): with at most
 * qcc_gemm_t_max_n columns (0: never), where 32-column tiles would be mostly empty,
 * and, whatever the columns, when the rows fill at least 3/4 of the lanes of their
 * 64-channel blocks. A 1x1 convolution only from a depth of QCC_T_MIN_K1: its
 * packed panels of b are plain copies of x, and with a short depth the tiles'
 * stores, transposes and epilogue outweigh its FMAs. On AMD Zen 4 at one thread,
 * ResNet-50's layers on this path against packed panels of b: 3 -> 64 7x7 stride 2
 * of 224x224 2.5-2.7 against 2.9-3.5 ms, 64x56x56 3x3 2.15-2.46 against 2.62-2.83,
 * 1x1 with a residual: 256x56x56 -> 64 1.18 against 1.44, 256x14x14 -> 1024 1.11
 * against 1.26, 512x7x7 -> 2048 1.24 against 1.44; but 128x28x28 -> 512 1.25
 * against 1.17 and 64x56x56 -> 256 1.70 against 1.27. */
static int qcc_gemm_t_max_n = 1024;
#define QCC_T_MIN_K1 256

#ifndef QCC_T_NR
#define QCC_T_NR 64   /* outputs a panel of packed dense weights holds */
#endif

static int qcc_gemm_by_channels(int m, int k, int n, int taps)
{
    const int lanes = (m + QCC_T_NR - 1) / QCC_T_NR * QCC_T_NR;
    return qcc_gemm_variants[qcc_gemm_variant()].t_work != NULL && qcc_gemm_t_max_n > 0
           && (taps > 1 || k >= QCC_T_MIN_K1)
           && (n <= qcc_gemm_t_max_n || 4 * m >= 3 * lanes);
}

/* Rows of a panel of packed a (qcc_gemm_pack_a) for a GEMM of m rows, depth k and n
 * columns (a convolution of `taps` taps) on the variant in use. */
static int qcc_gemm_mr(int m, int k, int n, int taps)
{
#if QCC_GEMM_X86
    if (qcc_gemm_by_channels(m, k, n, taps)) return QCC_T_NR;
#endif
    return qcc_gemm_variants[qcc_gemm_variant()].mr;
}

static const char *qcc_gemm_variant_name(int v)
{
    return v >= 0 && v < QCC_GEMM_NVARIANTS ? qcc_gemm_variants[v].name : NULL;
}

/* Force variant v (-1: the best supported); returns -1 when unsupported, else 0. */
static int qcc_gemm_set_variant(int v)
{
    if (v == -1) {
        qcc_gemm_cur = -1;
        qcc_gemm_variant();
        return 0;
    }
    if (!qcc_gemm_supported(v)) return -1;
    qcc_gemm_cur = v;
    return 0;
}

static void qcc_gemm_set_threads(int n)
{
    qcc_gemm_threads = n < 1 ? 1 : n > QCC_MAX_THREADS ? QCC_MAX_THREADS : n;
}

static void qcc_gemm_set_blocking(int mc, int kc, int nc)
{
    qcc_gemm_mc = mc < 1 ? 1 : mc;
    qcc_gemm_kc = kc < 1 ? 1 : kc;
    qcc_gemm_nc = nc < 1 ? 1 : nc;
}

static void qcc_gemm_thread(void *arg)
{
    ((qcc_gemm_job *)arg)->work(arg);
}

/* Tasks are guided: each takes 1 / (QCC_GEMM_GUIDE * threads) of what is left, at
 * least QCC_GEMM_MIN_UNITS tiles (rows or columns of a register tile), so that the
 * first tasks are big and the last ones small: a thread finishing its last task
 * leaves the other waiting for at most a small one (and tasks still even out
 * threads slowed by other processes). */
#define QCC_GEMM_GUIDE 2
#define QCC_GEMM_MIN_UNITS 2

/* Split `total` rows or columns into guided tasks of whole `unit`s (the register
 * tile) for `threads` threads; returns the largest task. */
static int qcc_gemm_split(qcc_gemm_job *job, int total, int unit, int threads)
{
    int lo = 0, t = 0, largest = 0;
    while (lo < total) {
        const int rem = total - lo;
        int size = (rem + QCC_GEMM_GUIDE * threads - 1) / (QCC_GEMM_GUIDE * threads);
        size = (size + unit - 1) / unit * unit;
        if (size < QCC_GEMM_MIN_UNITS * unit) size = QCC_GEMM_MIN_UNITS * unit;
        if (threads <= 1 || size > rem || t == QCC_GEMM_MAX_TASKS - 1) size = rem;
        job->bounds[t++] = lo;
        lo += size;
        if (size > largest) largest = size;
    }
    job->bounds[t] = total;
    job->ntasks = t;
    return largest;
}
/* Columns below which the rows are split into tasks (sharing packed columns). */
#define QCC_GEMM_BY_ROWS_MAX_N 256
/* Multiply-adds below which a GEMM stays on one thread: some microseconds of work
 * (a worker between the ops of a run spins, _common.h, so joining a job costs less
 * than a wake-up; at 1 << 22 a 16 -> 16 1x1 conv of 112 x 112 ran on one thread). */
static double qcc_gemm_par_min = 1 << 18;

/* Columns up to which a GEMM is a loop of matrix-vector products (a tile of NR
 * columns would be mostly padding), if a's columns fit 32-bit gather offsets. */
#define QCC_GEMV_MAX_N 2
static int qcc_gemm_narrow(const qcc_gemm *g)
{
    return g->n <= QCC_GEMV_MAX_N && (double)g->lda * 16 < 2147483647.0
           && (double)g->ldc * 16 < 2147483647.0;
}

/* Run one GEMM; returns 0, or -1 when out of memory. */
static int qcc_gemm_run(const qcc_gemm *g0)
{
    qcc_gemm g = *g0;
    qcc_gemm_job job;
    const qcc_gemm_variant_t *v = &qcc_gemm_variants[qcc_gemm_variant()];
    int threads = qcc_gemm_threads;
    if (g.m <= 0 || g.n <= 0) return 0;
    if (g.k <= 0) {   /* no terms: c = bias */
        int o, p;
        for (o = 0; o < g.m; o++)
            for (p = 0; p < g.n; p++) g.c[o * g.ldc + p] = g.bias ? g.bias[o] : 0.0f;
        qcc_activate_best(g.act, g.c, g.ldc, g.m, g.n);
        return 0;
    }
    qcc_positions_merge(&g.pos, g.n);
    if (v->gemv != NULL && qcc_gemm_narrow(&g)) {
        v->gemv(&g);
        qcc_activate_best(g.act, g.c, g.ldc, g.m, g.n);
        return 0;
    }
    const int mr = qcc_gemm_mr(g.m, g.k, g.n, g.taps);
    job.kcb = qcc_gemm_chunk(g.m, g.k, g.n, g.taps);
    job.kchunks = (g.k + job.kcb - 1) / job.kcb;
    if (g.ap == NULL || g.ap_mr != mr || g.ap_kc != job.kcb) {
        float *ap = (float *)qcc_thread_buffer_slot(
            1, qcc_gemm_packed_size(g.m, g.k, mr) * sizeof(float));
        if (ap == NULL) return -1;
        qcc_gemm_pack_a(g.a, g.lda, g.m, g.k, mr, job.kcb, ap);
        g.ap = ap;
        g.ap_mr = mr;
        g.ap_kc = job.kcb;
    }
    if ((double)g.m * g.n * g.k < qcc_gemm_par_min) threads = 1;
    job.g = &g;
#if QCC_GEMM_X86
    if (qcc_gemm_by_channels(g.m, g.k, g.n, g.taps)) {
        job.cblocks = (g.m + QCC_T_NR - 1) / QCC_T_NR;
        job.ptiles = (g.n + QCC_T_MR - 1) / QCC_T_MR;
        job.next = 0;
        job.failed = 0;
        if (threads > job.cblocks * job.ptiles) threads = job.cblocks * job.ptiles;
        job.width = threads;
        qcc_parallel(v->t_work, &job, threads);
        return job.failed ? -1 : 0;
    }
#endif
    job.npad = (g.n + v->nr - 1) / v->nr * v->nr;
    job.next = 0;
    job.failed = 0;
    job.bshared = NULL;
    job.by_rows = g.n <= QCC_GEMM_BY_ROWS_MAX_N && threads > 1;
    if (job.by_rows) {
        const size_t b_bytes = ((size_t)job.npad * g.k * sizeof(float) + 63) / 64 * 64;
        const size_t r_bytes = ((size_t)(g.n + 2) * sizeof(qcc_run) + 63) / 64 * 64;
        char *buf = (char *)qcc_thread_buffer(b_bytes + r_bytes + job.kchunks * sizeof(int));
        qcc_run *runs;
        if (buf == NULL) return -1;
        job.task = qcc_gemm_split(&job, g.m, v->mr, threads);
        job.bshared = (float *)buf;
        runs = (qcc_run *)(buf + b_bytes);
        job.runs = runs;
        job.nruns = qcc_runs(&g.pos, 0, g.n, v->nr, runs);
        job.next_pack = 0;
        job.packed = (int *)(buf + b_bytes + r_bytes);
        memset(job.packed, 0, job.kchunks * sizeof(int));
    } else {
        job.task = qcc_gemm_split(&job, g.n, v->nr, threads);
    }
    if (threads > job.ntasks) threads = job.ntasks;
    job.work = v->work;
    qcc_parallel(qcc_gemm_thread, &job, threads);
    return job.failed ? -1 : 0;
}

/* b [k, n] (rows ldb apart) packed as qcc_gemm_pack_a packs its transpose [n, k]
 * in panels of QCC_T_NR rows and depth chunks of kc: the weights of qcc_dense_run
 * for y = x @ b (a matmul's right operand). */
static void qcc_dense_pack_kn(const float *b, ptrdiff_t ldb, int k, int n, int kc, float *bp)
{
    const ptrdiff_t npad = (ptrdiff_t)(n + QCC_T_NR - 1) / QCC_T_NR * QCC_T_NR;
    int pc, o0, t;
    for (pc = 0; pc < k; pc += kc) {
        const int len = kc < k - pc ? kc : k - pc;
        for (o0 = 0; o0 < n; o0 += QCC_T_NR) {
            const int cols = n - o0 < QCC_T_NR ? n - o0 : QCC_T_NR;
            float *d = bp + (ptrdiff_t)pc * npad + (ptrdiff_t)o0 * len;
            for (t = 0; t < len; t++, d += QCC_T_NR) {
                memcpy(d, b + (ptrdiff_t)(pc + t) * ldb + o0, (size_t)cols * sizeof(float));
                if (cols < QCC_T_NR) memset(d + cols, 0, (size_t)(QCC_T_NR - cols) * sizeof(float));
            }
        }
    }
}

/* Whether qcc_dense_run runs on the variant in use (else the caller takes sgemm). */
static int qcc_dense_runs(void)
{
#if QCC_GEMM_X86
    return qcc_gemm_variants[qcc_gemm_variant()].dense_work != NULL;
#else
    return 0;
#endif
}

/* y[p*ldy + o] = sum_k x[p*ldx + k] * w[o, k] (+ bias[o], bias may be NULL) for p < m,
 * o < n, for each of `batch` elements e (x, wp and y of e at e * sx, sw, sy: one
 * parallel region for all, as attention's heads); wp: w [n, k] packed by
 * qcc_gemm_pack_a in panels of QCC_T_NR rows and depth chunks of qcc_t_chunk(k);
 * then the epilogue `post` (NULL: none; one element only) on each claim's outputs.
 * Returns -1 when this variant has no dense kernel, or for an epilogue of a batch. */
static int qcc_dense_run_batch(const float *x, ptrdiff_t ldx, int m, int k, const float *wp,
                               int n, const float *bias, float *y, ptrdiff_t ldy, int batch,
                               ptrdiff_t sx, ptrdiff_t sw, ptrdiff_t sy, int threads,
                               const qcc_dense_post *post)
{
#if QCC_GEMM_X86
    qcc_dense_job job;
    if (!qcc_dense_runs()) return -1;
    if (post != NULL && batch != 1) return -1;   /* the epilogue reads rows of one element */
    if (m <= 0 || n <= 0 || batch <= 0) return 0;
    if (k <= 0) {
        int p, o, e;
        for (e = 0; e < batch; e++)
            for (p = 0; p < m; p++)
                for (o = 0; o < n; o++)
                    y[e * sy + (ptrdiff_t)p * ldy + o] = bias ? bias[o] : 0.0f;
        if (post != NULL)
            for (p = 0; p < m; p++)
                post->fn(y + (ptrdiff_t)p * ldy,
                         post->res != NULL ? post->res + (ptrdiff_t)p * post->ldr : NULL, n,
                         post->arg);
        return 0;
    }
    job.x = x;
    job.wp = wp;
    job.bias = bias;
    job.y = y;
    job.ldx = ldx;
    job.ldy = ldy;
    job.m = m;
    job.n = n;
    job.k = k;
    job.kcb = qcc_t_chunk(k);
    job.kchunks = (k + job.kcb - 1) / job.kcb;
    job.cblocks = (n + QCC_T_NR - 1) / QCC_T_NR;
    job.ptiles = (m + QCC_T_MR - 1) / QCC_T_MR;
    job.batch = batch;
    job.sx = sx;
    job.sw = sw;
    job.sy = sy;
    job.post = post;
    if ((double)m * n * k * batch < qcc_gemm_par_min) threads = 1;
    job.next = 0;
    if (threads > batch * job.cblocks * job.ptiles) threads = batch * job.cblocks * job.ptiles;
    job.width = threads;
    qcc_parallel(qcc_gemm_variants[qcc_gemm_variant()].dense_work, &job, threads);
    return 0;
#else
    (void)x; (void)ldx; (void)m; (void)k; (void)wp; (void)n; (void)bias; (void)y; (void)ldy;
    (void)batch; (void)sx; (void)sw; (void)sy; (void)threads; (void)post;
    return -1;
#endif
}

/* qcc_dense_run_batch of one element, then the epilogue `post` (NULL: none). */
static int qcc_dense_run(const float *x, ptrdiff_t ldx, int m, int k, const float *wp, int n,
                         const float *bias, float *y, ptrdiff_t ldy, int threads,
                         const qcc_dense_post *post)
{
    return qcc_dense_run_batch(x, ldx, m, k, wp, n, bias, y, ldy, 1, 0, 0, 0, threads, post);
}

#endif
