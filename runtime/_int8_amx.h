/* The channels-in-lanes int8 convolution's sums on Intel AMX (AMX-TILE, AMX-INT8):
 * included by runtime/_int8_lanes.h, whose job, padded copy, packed weights and output
 * stage it shares; only the dot products differ.
 *
 * `tdpbusd` adds to a 16 x 16 int32 tile C the products of A (16 rows of 64 uint8:
 * 16 depth steps of four bytes) and B (16 rows of 64 int8: a depth step's four
 * bytes for each of 16 output channels), 16384 multiply-adds in one instruction
 * (VNNI's `vpdpbusd`: 64). Here:
 *
 * - a row of A is one position's 16 words of the padded copy at the depth steps
 *   q0 .. q0 + 15 (kofs), gathered into a 1 KB buffer (the steps run over channels
 *   and taps, so a position's words are not contiguous);
 * - B is read in place from the packed weights wl[cb][q][j][t]: 16 depth steps of 16
 *   output channels are 16 rows of 64 bytes, 256 bytes apart;
 * - four C tiles hold 16 positions x the block's 64 output channels; a task of up to
 *   48 positions runs its groups of 16 one after the other, each A tile taken by the
 *   four B tiles.
 *
 * The sums are the other variants' (int32, wrapping; another order): the same
 * integers. A depth that is not a multiple of 16 ends with a tile whose last rows
 * are zeros in A and in a copy of B. The tiles are configured by each task (each
 * thread has its own tile state) and released after it.
 *
 * Linux gives a process the AMX tile state only on request
 * (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)); qcc_amx_ready makes it once
 * and says whether the CPU and the OS allow AMX. */
#ifndef QCC_INT8_AMX_H
#define QCC_INT8_AMX_H

#if QCC_X86 && defined(__linux__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#define QCC_AMX 1
#else
#define QCC_AMX 0
#endif

/* 1 when this CPU has AMX-TILE and AMX-INT8 and the OS grants the tile state (asked
 * once), else 0. */
static int qcc_amx_ready(void)
{
    static int state = -1;
#if QCC_AMX
    if (state < 0) {
        unsigned a = 0, b = 0, c = 0, d = 0;
        int ok = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d & (1u << 24)) && (d & (1u << 25))
                 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni");
        /* ARCH_REQ_XCOMP_PERM (0x1023), XFEATURE_XTILEDATA (18) */
        if (ok) ok = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
        state = ok;
    }
#else
    state = 0;
#endif
    return state;
}

#if QCC_AMX
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx512vnni,avx2,fma,amx-tile,amx-int8")

/* The tile instructions with a memory clobber (the compiler's own intrinsics name only
 * the address: stores to a buffer a tile then loads could be moved past the load). */
#define QCC_TILE_LOAD(t, base, stride)                                                    \
    __asm__ volatile("tileloadd (%0,%1,1), %%tmm" #t ::"r"((const void *)(base)),           \
                     "r"((long)(stride)) : "memory")
#define QCC_TILE_STORE(t, base, stride)                                                   \
    __asm__ volatile("tilestored %%tmm" #t ", (%0,%1,1)" ::"r"((void *)(base)),             \
                     "r"((long)(stride)) : "memory")
#define QCC_TILE_ZERO(t) __asm__ volatile("tilezero %%tmm" #t ::: "memory")
#define QCC_TILE_DP(c, a, b) __asm__ volatile("tdpbusd %%tmm" #b ", %%tmm" #a ", %%tmm" #c ::: "memory")

#define QCC_AMX_KC 64   /* depth steps a chunk: its 16 KB of weights stay in L1 across
                         * the task's groups of 16 positions */

typedef struct {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} qcc_amx_cfg;

/* A's 16 rows for depth steps q0 .. q0 + 15 (zeros past k4): row i = the words at
 * rows[i] + kofs[q]; `runs`: the 16 steps are consecutive words of one tap (c4n a
 * multiple of 16), each row one 64-byte load. */
QCC_INLINE void qcc_amx_gather(const qcc_il_job *job, const uint8_t *const *rows, int q0,
                               uint8_t *a, int runs)
{
    int i;
    if (runs) {
        const ptrdiff_t o = job->kofs[q0];
        for (i = 0; i < 16; i++)
            _mm512_store_si512((void *)(a + 64 * i), _mm512_loadu_si512((const void *)(rows[i] + o)));
        return;
    }
    {
        const __mmask16 m = qcc_il_lanes(job->k4 - q0, 0);
        const __m512i lo = _mm512_maskz_loadu_epi64((__mmask8)m, job->kofs + q0);
        const __m512i hi = _mm512_maskz_loadu_epi64((__mmask8)(m >> 8), job->kofs + q0 + 8);
        const __m512i idx = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(lo)),
                                               _mm512_cvtepi64_epi32(hi), 1);
        for (i = 0; i < 16; i++)
            _mm512_store_si512((void *)(a + 64 * i),
                               _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx,
                                                           (const void *)rows[i], 1));
    }
}

/* The int32 sums of one task's positions (ptr[0 .. np)) and block cb of 64 output
 * channels into ct (position-major, QCC_IL_NR a row), off[j] added for j < nch:
 * what qcc_il_kern computes. */
static void qcc_il_sums_amx(const qcc_il_job *job, int cb, const uint8_t *const *ptr, int np,
                            int32_t *ct, const int32_t *off, int nch)
{
    const int k4 = job->k4;
    const int8_t *wcb = job->wl + (ptrdiff_t)cb * k4 * QCC_IL_NR * 4;
    qcc_amx_cfg cfg __attribute__((aligned(64)));
    uint8_t abuf[2][1024] __attribute__((aligned(64)));
    int8_t btail[4][1024] __attribute__((aligned(64)));
    const int runs = job->c4n % 16 == 0;
    int i, g, q0, k0, v;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (i = 0; i < 8; i++) {
        cfg.colsb[i] = 64;
        cfg.rows[i] = 16;
    }
    __asm__ volatile("" ::: "memory");
    _tile_loadconfig(&cfg);
    for (k0 = 0; k0 < k4; k0 += QCC_AMX_KC) {
        const int k1 = k4 - k0 < QCC_AMX_KC ? k4 : k0 + QCC_AMX_KC;
        for (g = 0; g < np; g += 16) {
            const uint8_t *rows[16];
            int32_t *cg = ct + (ptrdiff_t)g * QCC_IL_NR;
            for (i = 0; i < 16; i++) rows[i] = ptr[g + i < np ? g + i : 0];
            if (k0 == 0) {
                QCC_TILE_ZERO(0);
                QCC_TILE_ZERO(1);
                QCC_TILE_ZERO(2);
                QCC_TILE_ZERO(3);
            } else {   /* the sums of the chunks before */
                QCC_TILE_LOAD(0, cg, QCC_IL_NR * 4);
                QCC_TILE_LOAD(1, cg + 16, QCC_IL_NR * 4);
                QCC_TILE_LOAD(2, cg + 32, QCC_IL_NR * 4);
                QCC_TILE_LOAD(3, cg + 48, QCC_IL_NR * 4);
            }
            /* rows equally spaced (a row of output positions): A straight from the
             * copy, no gather */
            ptrdiff_t d = rows[1] - rows[0];
            int direct = runs && g + 16 <= np;
            for (i = 2; i < 16 && direct; i++) direct = rows[i] - rows[i - 1] == d;
            if (!direct) qcc_amx_gather(job, rows, k0, abuf[0], runs);
            for (q0 = k0; q0 < k1; q0 += 16) {
                const int kr = k4 - q0 < 16 ? k4 - q0 : 16;
                const uint8_t *a = abuf[((q0 - k0) >> 4) & 1];
                const int8_t *w = wcb + (ptrdiff_t)q0 * QCC_IL_NR * 4;
                if (direct) {
                    QCC_TILE_LOAD(4, rows[0] + job->kofs[q0], d);
                } else {
                    /* the next depth steps' rows first: the tile load below then reads
                     * rows stored a step earlier (a tile load of rows just stored waits) */
                    if (q0 + 16 < k1)
                        qcc_amx_gather(job, rows, q0 + 16, abuf[(((q0 - k0) >> 4) + 1) & 1], runs);
                    QCC_TILE_LOAD(4, a, 64);
                }
                /* B: 16 steps of each 16 channels in place, 256 bytes a row; the last
                 * kr < 16 steps from a copy whose rows past them are zero */
                const int8_t *b = w;
                ptrdiff_t row = QCC_IL_NR * 4, next = 64;
                if (kr < 16) {
                    int j, r;
                    for (j = 0; j < 4; j++)
                        for (r = 0; r < 16; r++)
                            _mm512_store_si512(
                                (void *)(btail[j] + 64 * r),
                                r < kr ? _mm512_loadu_si512((const void *)(w + (ptrdiff_t)r * QCC_IL_NR * 4 + 64 * j))
                                       : _mm512_setzero_si512());
                    b = btail[0];
                    row = 64;
                    next = 1024;
                }
                QCC_TILE_LOAD(5, b, row);
                QCC_TILE_DP(0, 4, 5);
                QCC_TILE_LOAD(6, b + next, row);
                QCC_TILE_DP(1, 4, 6);
                QCC_TILE_LOAD(7, b + 2 * next, row);
                QCC_TILE_DP(2, 4, 7);
                QCC_TILE_LOAD(5, b + 3 * next, row);
                QCC_TILE_DP(3, 4, 5);
            }
            QCC_TILE_STORE(0, cg, QCC_IL_NR * 4);
            QCC_TILE_STORE(1, cg + 16, QCC_IL_NR * 4);
            QCC_TILE_STORE(2, cg + 32, QCC_IL_NR * 4);
            QCC_TILE_STORE(3, cg + 48, QCC_IL_NR * 4);
        }
    }
    _tile_release();
    for (v = 0; v < 4; v++) {   /* the offsets (0 past the block's channels) */
        const __m512i o = _mm512_maskz_loadu_epi32(qcc_il_lanes(nch, v), off + 16 * v);
        for (i = 0; i < np; i++) {
            int32_t *r = ct + (ptrdiff_t)i * QCC_IL_NR + 16 * v;
            _mm512_store_si512((void *)r, _mm512_add_epi32(_mm512_load_si512((const void *)r), o));
        }
    }
}

#undef QCC_TILE_LOAD
#undef QCC_TILE_STORE
#undef QCC_TILE_ZERO
#undef QCC_TILE_DP
#pragma GCC pop_options
#endif /* QCC_AMX */

#endif /* QCC_INT8_AMX_H */
