/* int8 convolution with the output channels in the vector lanes (AVX-512 VNNI).
 *
 * The GEMM of runtime/_int8_impl.h puts positions in the lanes: each depth step of
 * a panel is an im2col row gathered from the input, packed again for every block (a
 * 3x3 convolution copies each input byte nine times; that packing and the padded
 * copy before it were a third of a ResNet layer's time). Here the roles swap, as in
 * the float GEMM's qcc_kern_t_avx512:
 *
 * - a register tile is QCC_IL_MR positions x QCC_IL_NR output channels (4 vectors
 *   of 16 int32 lanes); a task's last tile of 1-2 or 3-4 positions takes a kernel of
 *   2 or 4 (QCC_IL_KERN);
 * - the weights are packed once per plan (qcc.runtime.int8.pack_lanes) as
 *   wl[cb][q][j][t] = w[QCC_IL_NR*cb + j, 4*c4 + t, tap], the depth steps q running
 *   over (tap, c4), zero past the output and input channels;
 * - the activations come from a padded copy of the input, position-major with four
 *   channels a word, p[d][h][w][c4][t] = u[4*c4 + t][d][h][w] (u = x + 128, z_x + 128
 *   where the convolution pads), written once per layer: one pass over the input. The
 *   four depth values a lane of `vpdpbusd` adds are then one 32-bit word of p,
 *   broadcast to all lanes; nothing is gathered per block. The depth steps q run over
 *   (tap, c4), so that a position's steps of one tap are consecutive words (the rows
 *   of an AMX tile: runtime/_int8_amx.h).
 *
 * The sums are those of the other variants (int32, wrapping: acc[o, p] = off[o] +
 * sum w*u, in another order) and the int32 tile, position-major in a per-task
 * buffer, is turned channel-major by 16x16 transposes and handed to qcc_i8_store:
 * identical integers and output bytes. Tasks are (image, block of positions, block
 * of channels), channel blocks outermost when the weights are too large to stay in
 * a core's L2 across images.
 */
#ifndef QCC_INT8_LANES_H
#define QCC_INT8_LANES_H

#include "_int8_impl.h"

#define QCC_IL_MR 6      /* positions a register tile */
#define QCC_IL_NR 64     /* output channels a block */
#define QCC_IL_KC 64     /* depth steps (4 deep) a chunk: 16 KB of weights, L1 */
#define QCC_IL_PC 48     /* positions a task at most (a multiple of MR and 16) */
#define QCC_IL_L2W (1 << 20)   /* weights (bytes) read image after image from L2 */

typedef struct {
    int n_img, m, cblocks, k4;  /* images, output channels, blocks of them, depth steps */
    const int8_t *wl;           /* [cblocks][k4][QCC_IL_NR][4] */
    const int32_t *off;         /* [m] */
    const uint8_t *src;         /* padded copy of image i: src + i*src_img */
    ptrdiff_t src_img;
    const ptrdiff_t *kofs;      /* [k4]: byte offset of depth step q in p */
    int osp[3], st[3], dims[3]; /* output size, strides, size of the padded copy */
    int c4n;                    /* words (four channels) a position of the copy */
    int npos, pc, pchunks;      /* positions: an image, a task, tasks an image */
    int cb_outer;               /* task order: channel blocks outermost */
    qcc_i8_out o;
    int amx;                    /* the sums on AMX tiles (runtime/_int8_amx.h) */
    int ntasks, next, failed;
} qcc_il_job;

/* The lanes of vector v (16 int32 lanes) that hold one of the first n values. */
QCC_INLINE __mmask16 qcc_il_lanes(int n, int v)
{
    return n >= 16 * (v + 1) ? (__mmask16)0xFFFF
           : n <= 16 * v     ? (__mmask16)0
                             : (__mmask16)((1u << (n - 16 * v)) - 1);
}

#include "_int8_amx.h"

/* Byte offset in an image's padded copy of output position p's first input word. */
QCC_INLINE ptrdiff_t qcc_il_pos(const qcc_il_job *job, int p)
{
    const int ow = p % job->osp[2], r = p / job->osp[2];
    const int oh = r % job->osp[1], od = r / job->osp[1];
    return (((ptrdiff_t)od * job->st[0] * job->dims[1] + (ptrdiff_t)oh * job->st[1])
                * job->dims[2]
            + (ptrdiff_t)ow * job->st[2]) * 4 * job->c4n;
}

/* ---- the padded copy, position-major ------------------------------------------ */

typedef struct {
    const int8_t *x;
    uint8_t *p;
    ptrdiff_t x_img, p_img;
    const qcc_geom *g;
    const int *dims;
    int c, count, next, failed;
    uint8_t fill;
} qcc_il_pad_job;

#if QCC_X86
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")

/* p = the padded copy of one image's c channels x[c][sp] (g's padding, dims its
 * size), position-major: position (d, h, w) at ((d*dims[1] + h)*dims[2] + w) * 4*c4n
 * bytes, its word c4 the channels 4*c4 .. 4*c4 + 3; u = x ^ 0x80 and `fill` (z_x +
 * 128) outside the input; lanes of channels past c hold copies of channel c - 1
 * (their weights are 0). A row of the input is interleaved four channels a word into
 * tmp ([c4][wr] words, wr >= the row's width rounded up to 16) and transposed into
 * place by 16 x 16 blocks of words. */
static void qcc_il_pad(const int8_t *x, uint8_t *p, const qcc_geom *g, const int *dims,
                       int c, uint8_t fill, uint8_t *tmp, int wr)
{
    const ptrdiff_t pin = (ptrdiff_t)g->sp[0] * g->sp[1] * g->sp[2], row = dims[2];
    const int c4n = (c + 3) / 4, left = g->pb[2] < dims[2] ? g->pb[2] : dims[2];
    const int width = g->sp[2] < dims[2] - left ? g->sp[2] : dims[2] - left;
    const ptrdiff_t pitch = (ptrdiff_t)4 * c4n;
    int c4, d, h, t, j;
    for (d = 0; d < dims[0]; d++)
        for (h = 0; h < dims[1]; h++) {
            const int id = d - g->pb[0], ih = h - g->pb[1];
            uint8_t *dst = p + ((ptrdiff_t)d * dims[1] + h) * row * pitch;
            if (id < 0 || id >= g->sp[0] || ih < 0 || ih >= g->sp[1] || width <= 0) {
                memset(dst, fill, (size_t)(row * pitch));
                continue;
            }
            for (c4 = 0; c4 < c4n; c4++) {
                const uint8_t *r[4];
                uint8_t *o = tmp + (ptrdiff_t)c4 * wr * 4;
                for (t = 0; t < 4; t++) {
                    const int ch = 4 * c4 + t < c ? 4 * c4 + t : c - 1;
                    r[t] = (const uint8_t *)x + ch * pin + ((ptrdiff_t)id * g->sp[1] + ih) * g->sp[2];
                }
                for (j = 0; j + 16 <= width; j += 16) {
                    const uint8_t *rj[4] = {r[0] + j, r[1] + j, r[2] + j, r[3] + j};
                    qcc_i8_interleave4(rj, o + 4 * j, 16);
                }
                for (; j < width; j++)
                    for (t = 0; t < 4; t++) o[4 * j + t] = (uint8_t)(r[t][j] ^ 0x80);
            }
            memset(dst, fill, (size_t)(left * pitch));
            qcc_tr_copy_avx512((const float *)tmp, wr, (float *)(dst + left * pitch), c4n, width,
                               c4n);
            memset(dst + (left + width) * pitch, fill, (size_t)((row - left - width) * pitch));
        }
}

static void qcc_il_pad_worker(void *arg)
{
    qcc_il_pad_job *job = (qcc_il_pad_job *)arg;
    const int wr = (job->g->sp[2] + 15) / 16 * 16;
    uint8_t *tmp = (uint8_t *)qcc_thread_buffer((size_t)(job->c + 3) / 4 * wr * 4 + 64);
    if (tmp == NULL) {
        job->failed = 1;
        return;
    }
    for (;;) {
        const int i = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        if (i >= job->count) break;
        qcc_il_pad(job->x + i * job->x_img, job->p + i * job->p_img, job->g, job->dims,
                   job->c, job->fill, tmp, wr);
    }
}

#pragma GCC pop_options
#endif /* QCC_X86 */

#if QCC_X86
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx512vnni,avx2,fma")

/* ct[i*QCC_IL_NR + j] (i < mr positions, j < QCC_IL_NR channels): acc = accumulate ?
 * ct[...] : off[j] (0 for j >= nch), then acc += sum_{q < k4, t < 4}
 * ptr[i][kofs[q] + t] * w[(q*QCC_IL_NR + j)*4 + t]. Rows i >= mr read ptr[0] and are
 * not stored. Named accumulators (see qcc_i8_kern_vnni). */
#define QCC_IL_INIT(i)                                                                  \
    __m512i a##i##0, a##i##1, a##i##2, a##i##3;                                         \
    const uint8_t *p##i = ptr[i < mr ? i : 0];                                          \
    if (accumulate) {                                                                   \
        a##i##0 = _mm512_load_si512((const void *)(ct + i * QCC_IL_NR));                \
        a##i##1 = _mm512_load_si512((const void *)(ct + i * QCC_IL_NR + 16));           \
        a##i##2 = _mm512_load_si512((const void *)(ct + i * QCC_IL_NR + 32));           \
        a##i##3 = _mm512_load_si512((const void *)(ct + i * QCC_IL_NR + 48));           \
    } else {                                                                            \
        a##i##0 = o0;                                                                   \
        a##i##1 = o1;                                                                   \
        a##i##2 = o2;                                                                   \
        a##i##3 = o3;                                                                   \
    }
#define QCC_IL_STEP(i)                                                                  \
    {                                                                                   \
        int32_t v;                                                                      \
        __m512i b;                                                                      \
        memcpy(&v, p##i + o, 4);                                                        \
        b = _mm512_set1_epi32(v);                                                       \
        QCC_I8_DPBUSD(a##i##0, b, w0);                                                  \
        QCC_I8_DPBUSD(a##i##1, b, w1);                                                  \
        QCC_I8_DPBUSD(a##i##2, b, w2);                                                  \
        QCC_I8_DPBUSD(a##i##3, b, w3);                                                  \
    }
#define QCC_IL_STORE(i)                                                                 \
    if (i < mr) {                                                                       \
        _mm512_store_si512((void *)(ct + i * QCC_IL_NR), a##i##0);                      \
        _mm512_store_si512((void *)(ct + i * QCC_IL_NR + 16), a##i##1);                 \
        _mm512_store_si512((void *)(ct + i * QCC_IL_NR + 32), a##i##2);                 \
        _mm512_store_si512((void *)(ct + i * QCC_IL_NR + 48), a##i##3);                 \
    }

/* The kernel for tiles of N positions (6, and 4 and 2 for a block's tail: a 4x4
 * plane is 6 + 6 + 4 positions, whose last tile of 6 spent a third of its dot
 * products on copies of its first position); rows N.. are neither computed nor
 * stored. Each position's integers are the same sums whatever N. */
#define QCC_IL_ROWS(N, M)                                                               \
    M(0) if (N > 1) M(1) if (N > 2) M(2) if (N > 3) M(3) if (N > 4) M(4) if (N > 5) M(5)
#define QCC_IL_KERN(NAME, N)                                                            \
static void NAME(int k4, const int8_t *w, const uint8_t *const *ptr,                    \
                 const ptrdiff_t *kofs, int mr, int32_t *ct, const int32_t *off,        \
                 int nch, int accumulate)                                               \
{                                                                                       \
    const __m512i o0 = _mm512_maskz_loadu_epi32(qcc_il_lanes(nch, 0), off);              \
    const __m512i o1 = _mm512_maskz_loadu_epi32(qcc_il_lanes(nch, 1), off + 16);         \
    const __m512i o2 = _mm512_maskz_loadu_epi32(qcc_il_lanes(nch, 2), off + 32);         \
    const __m512i o3 = _mm512_maskz_loadu_epi32(qcc_il_lanes(nch, 3), off + 48);         \
    int q;                                                                              \
    QCC_IL_INIT(0)                                                                      \
    QCC_IL_INIT(1)                                                                      \
    QCC_IL_INIT(2)                                                                      \
    QCC_IL_INIT(3)                                                                      \
    QCC_IL_INIT(4)                                                                      \
    QCC_IL_INIT(5)                                                                      \
    for (q = 0; q < k4; q++) {                                                          \
        const ptrdiff_t o = kofs[q];                                                    \
        const int8_t *wq = w + (ptrdiff_t)q * QCC_IL_NR * 4;                            \
        const __m512i w0 = _mm512_loadu_si512((const void *)wq);                        \
        const __m512i w1 = _mm512_loadu_si512((const void *)(wq + 64));                 \
        const __m512i w2 = _mm512_loadu_si512((const void *)(wq + 128));                \
        const __m512i w3 = _mm512_loadu_si512((const void *)(wq + 192));                \
        QCC_IL_ROWS(N, QCC_IL_STEP)                                                     \
    }                                                                                   \
    QCC_IL_ROWS(N, QCC_IL_STORE)                                                        \
}
QCC_IL_KERN(qcc_il_kern, QCC_IL_MR)
QCC_IL_KERN(qcc_il_kern_t4, 4)
QCC_IL_KERN(qcc_il_kern_t2, 2)

/* Task t of the job. */
static void qcc_il_task(qcc_il_job *job, int t)
{
    const int per = job->n_img * job->pchunks;
    int img, pk, cb, i0, k0, i;
    if (job->cb_outer) {
        cb = t / per;
        img = (t % per) / job->pchunks;
        pk = t % job->pchunks;
    } else {
        img = t / (job->pchunks * job->cblocks);
        pk = (t / job->cblocks) % job->pchunks;
        cb = t % job->cblocks;
    }
    {
        const int p0 = pk * job->pc, np = job->npos - p0 < job->pc ? job->npos - p0 : job->pc;
        const int ch = cb * QCC_IL_NR, nch = job->m - ch < QCC_IL_NR ? job->m - ch : QCC_IL_NR;
        const ptrdiff_t ldc = (QCC_IL_PC + 15) / 16 * 16;
        const size_t ct_bytes = (size_t)(QCC_IL_PC + QCC_IL_MR) * QCC_IL_NR * 4;
        const size_t c_bytes = (size_t)QCC_IL_NR * ldc * 4;
        const uint8_t *base = job->src + img * job->src_img;
        const uint8_t *ptr[QCC_IL_PC + QCC_IL_MR];
        uint8_t *buf;
        int32_t *ct, *c;
        if (np <= 0) return;
        buf = (uint8_t *)qcc_thread_buffer(ct_bytes + c_bytes + 128);
        if (buf == NULL) {
            job->failed = 1;
            return;
        }
        ct = (int32_t *)(((uintptr_t)buf + 63) & ~(uintptr_t)63);
        c = ct + (ptrdiff_t)(QCC_IL_PC + QCC_IL_MR) * QCC_IL_NR;
        for (i = 0; i < np; i++) ptr[i] = base + qcc_il_pos(job, p0 + i);
        qcc_i8_prefetch_out(&job->o, ((ptrdiff_t)img * job->m + ch) * job->npos + p0,
                            job->npos, nch, np);
#if QCC_AMX
        if (job->amx)
            qcc_il_sums_amx(job, cb, ptr, np, ct, job->off + ch, nch);
        else
#endif
        for (k0 = 0; k0 < job->k4; k0 += QCC_IL_KC) {
            const int kc = job->k4 - k0 < QCC_IL_KC ? job->k4 - k0 : QCC_IL_KC;
            const int8_t *w = job->wl + ((ptrdiff_t)cb * job->k4 + k0) * QCC_IL_NR * 4;
            for (i0 = 0; i0 < np; i0 += QCC_IL_MR) {
                const int mr = np - i0 < QCC_IL_MR ? np - i0 : QCC_IL_MR;
                (mr <= 2 ? qcc_il_kern_t2 : mr <= 4 ? qcc_il_kern_t4 : qcc_il_kern)(
                    kc, w, ptr + i0, job->kofs + k0, mr, ct + (ptrdiff_t)i0 * QCC_IL_NR,
                    job->off + ch, nch, k0 > 0);
            }
        }
        qcc_tr_copy_avx512((const float *)ct, QCC_IL_NR, (float *)c, ldc, nch, np);
        qcc_i8_store(&job->o, c, ldc, ((ptrdiff_t)img * job->m + ch) * job->npos + p0,
                     job->npos, nch, np, ch);
    }
}

#pragma GCC pop_options
#endif /* QCC_X86 */

static void qcc_il_worker(void *arg)
{
    qcc_il_job *job = (qcc_il_job *)arg;
    for (;;) {
        const int t = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        if (t >= job->ntasks) break;
#if QCC_X86
        qcc_il_task(job, t);
#endif
    }
}

/* Pad the n_img images of x (c channels, x_img bytes apart) into job->src and run
 * the job on up to `threads` threads (AVX-512 VNNI only: the caller checks). */
static void qcc_il_run(qcc_il_job *job, const int8_t *x, ptrdiff_t x_img, const qcc_geom *g,
                       int c, uint8_t fill, int threads)
{
    qcc_il_pad_job pad;
    pad.x = x;
    pad.p = (uint8_t *)job->src;
    pad.x_img = x_img;
    pad.p_img = job->src_img;
    pad.g = g;
    pad.dims = job->dims;
    pad.c = c;
    pad.count = job->n_img;
    pad.next = 0;
    pad.failed = 0;
    pad.fill = fill;
#if QCC_X86
    qcc_parallel(qcc_il_pad_worker, &pad,
                 (double)job->n_img * job->src_img < (1 << 18) ? 1
                 : threads < job->n_img ? threads : job->n_img);
#endif
    if (pad.failed) {
        job->failed = 1;
        return;
    }
    /* whole blocks of QCC_IL_PC (a multiple of 16: the output stage's vectors) */
    job->pc = job->npos < QCC_IL_PC ? job->npos : QCC_IL_PC;
    job->pchunks = (job->npos + job->pc - 1) / job->pc;
    job->cb_outer = (double)job->cblocks * job->k4 * QCC_IL_NR * 4 > QCC_IL_L2W;
    job->ntasks = job->n_img * job->pchunks * job->cblocks;
    job->next = 0;
    job->failed = 0;
    qcc_parallel(qcc_il_worker, job, threads < job->ntasks ? threads : job->ntasks);
}

#endif /* QCC_INT8_LANES_H */
