/* Inner loops of the convolution kernels (runtime/_conv.pyx).
 *
 * Plain C so that GCC vectorizes them; on x86-64 each function is compiled for
 * AVX-512, AVX2+FMA and baseline SSE2 and the best one is picked at load time
 * (target_clones). Every spatial problem is 3-D: 1-D and 2-D convolutions have
 * leading spatial dims of size 1.
 */
#ifndef QCC_CONV_IMPL_H
#define QCC_CONV_IMPL_H


#include "_common.h"
#include "_gemm_impl.h"   /* the GEMM, its variants (also the depthwise rows') */


/* One padded row of `row` floats: dst[left + t] = src[t] for t < w_n, zeros around;
 * with `split`, the even padded columns first, then the odd ones (qcc_split_col). */
QCC_INLINE void qcc_pad_row(const float *restrict src, float *restrict dst, ptrdiff_t row, int w_n,
                            int left, int split)
{
    ptrdiff_t t;
    if (split) {
        /* padded column c = 2t (+1) holds src[c - left] for left <= c < left + w_n */
        const ptrdiff_t half = (row + 1) / 2, e0 = (left + 1) / 2, e1 = (left + w_n + 1) / 2;
        const ptrdiff_t o0 = left / 2, o1 = (left + w_n) / 2;
        for (t = 0; t < e0; t++) dst[t] = 0.0f;
        for (t = e0; t < e1; t++) dst[t] = src[2 * t - left];
        for (t = e1; t < half + o0; t++) dst[t] = 0.0f;
        for (t = o0; t < o1; t++) dst[half + t] = src[2 * t + 1 - left];
        for (t = half + o1; t < row; t++) dst[t] = 0.0f;
        return;
    }
    for (t = 0; t < left; t++) dst[t] = 0.0f;
    memcpy(dst + left, src, (size_t)w_n * sizeof(float));
    for (t = left + w_n; t < row; t++) dst[t] = 0.0f;
}

/* Padded copy of one input plane: p[d, h, w] =
 * x[d - pb0, h - pb1, w - pb2] inside the input, 0 elsewhere, with shape dims[3].
 * With `split`, each row holds its even columns, then its odd ones (qcc_dw_tap). */
QCC_INLINE void qcc_pad_plane(const float *restrict x, float *restrict p, const qcc_geom *g,
                              const int *dims, int split)
{
    const ptrdiff_t row = dims[2], plane = (ptrdiff_t)dims[1] * dims[2];
    const int w_n = g->sp[2], left = g->pb[2];
    int d, h;
    for (d = 0; d < dims[0]; d++) {
        const int id = d - g->pb[0];
        float *pd = p + d * plane;
        if (id < 0 || id >= g->sp[0]) {
            memset(pd, 0, plane * sizeof(float));
            continue;
        }
        for (h = 0; h < dims[1]; h++) {
            const int ih = h - g->pb[1];
            float *dst = pd + h * row;
            if (ih < 0 || ih >= g->sp[1])
                memset(dst, 0, row * sizeof(float));
            else
                qcc_pad_row(x + ((ptrdiff_t)id * g->sp[1] + ih) * w_n, dst, row, w_n, left, split);
        }
    }
}

/* Row length of the padded depthwise planes: OW rounded up to a multiple of 8. */
#define QCC_DW_VEC 8
QCC_INLINE int qcc_dw_owr(const qcc_geom *g)
{
    return (g->osp[2] + QCC_DW_VEC - 1) / QCC_DW_VEC * QCC_DW_VEC;
}

/* col2im of input rows [r0, r1) (flattened (id, ih)) for one image and group of a
 * transposed convolution (g->sp is its input, g->osp its output):
 * out[o, id*s - pb + kd*dil, ...] += col[(o, kd, kh, kw), (r - r0) * W + iw]. */
QCC_CLONES
static void qcc_col2im(const float *col, float *out, const qcc_geom *g, int r0, int r1)
{
    const int w_n = g->sp[2], sw = g->st[2];
    const ptrdiff_t npos = (ptrdiff_t)(r1 - r0) * w_n;
    ptrdiff_t row = 0;
    int o, kd, kh, kw, r, lo, hi;
    ptrdiff_t t;
    for (o = 0; o < g->og; o++)
        for (kd = 0; kd < g->k[0]; kd++)
            for (kh = 0; kh < g->k[1]; kh++)
                for (kw = 0; kw < g->k[2]; kw++, row++) {
                    const int off = kw * g->dl[2] - g->pb[2];
                    qcc_valid(off, sw, g->osp[2], w_n, &lo, &hi);
                    for (r = r0; r < r1; r++) {
                        const int id = r / g->sp[1], ih = r - id * g->sp[1];
                        const int od = id * g->st[0] - g->pb[0] + kd * g->dl[0];
                        const int oh = ih * g->st[1] - g->pb[1] + kh * g->dl[1];
                        const float *restrict src;
                        float *restrict dst;
                        if (od < 0 || od >= g->osp[0] || oh < 0 || oh >= g->osp[1]) continue;
                        src = col + row * npos + (ptrdiff_t)(r - r0) * w_n;
                        dst = out + (((ptrdiff_t)o * g->osp[0] + od) * g->osp[1] + oh) * g->osp[2] + off;
                        if (sw == 1)
                            for (t = lo; t < hi; t++) dst[t] += src[t];
                        else
                            for (t = lo; t < hi; t++) dst[(ptrdiff_t)t * sw] += src[t];
                    }
                }
}

/* ---- convolution as an implicit-im2col GEMM (_gemm_impl.h) ---- */

/* The input of one group as the GEMM reads it: x itself when it needs no padding
 * and no splitting, else a padded copy in scratch (qcc_conv_gemm_pad_size floats)
 * of shape dims, its rows split into even and odd columns when `split` (so that
 * stride-2 taps read contiguously; rows no output reads are left unwritten). */
QCC_CLONES
static const float *qcc_conv_gemm_input(const float *x, float *scratch, const qcc_geom *g,
                                        int split, int *dims)
{
    const ptrdiff_t in_plane = (ptrdiff_t)g->sp[0] * g->sp[1] * g->sp[2];
    ptrdiff_t plane, row;
    int c, d, h;
    if (qcc_padded_dims(g, g->osp[2], dims) && !split) return x;
    plane = (ptrdiff_t)dims[0] * dims[1] * dims[2];
    row = dims[2];
    for (c = 0; c < g->cg; c++)
        for (d = 0; d < dims[0]; d++) {
            const int id = d - g->pb[0];
            if (!qcc_row_used(d, g->st[0], g->k[0], g->dl[0], g->osp[0])) continue;
            for (h = 0; h < dims[1]; h++) {
                const int ih = h - g->pb[1];
                float *dst = scratch + c * plane + ((ptrdiff_t)d * dims[1] + h) * row;
                if (!qcc_row_used(h, g->st[1], g->k[1], g->dl[1], g->osp[1])) continue;
                if (id < 0 || id >= g->sp[0] || ih < 0 || ih >= g->sp[1])
                    memset(dst, 0, row * sizeof(float));
                else
                    qcc_pad_row(x + c * in_plane + ((ptrdiff_t)id * g->sp[1] + ih) * g->sp[2], dst,
                                row, g->sp[2], g->pb[2], split);
            }
        }
    return scratch;
}

/* Floats of scratch qcc_conv_gemm_input needs. */
static ptrdiff_t qcc_conv_gemm_pad_size(const qcc_geom *g)
{
    int dims[3];
    if (qcc_padded_dims(g, g->osp[2], dims) && g->st[2] != 2) return 0;
    return (ptrdiff_t)g->cg * dims[0] * dims[1] * dims[2];
}

/* out[og, P] = bias[og] + w[og, Kc] @ im2col(x)[Kc, P] for one image and group, with
 * the im2col gathered while packing (no column buffer). wp: w packed in panels of
 * wp_mr rows and depth chunks of wp_kc (qcc_gemm_pack_a), or NULL. pad: qcc_conv_gemm_pad_size floats; kofs: Kc
 * offsets. Returns 0, or -1 when out of memory. */
static int qcc_conv_gemm(const float *x, const float *w, const float *wp, int wp_mr, int wp_kc,
                         const float *bias, float *out, const qcc_geom *g, float *pad,
                         ptrdiff_t *kofs, const qcc_act *act)
{
    int dims[3];
    qcc_gemm q;
    const int split = g->st[2] == 2;
    const float *p = qcc_conv_gemm_input(x, pad, g, split, dims);
    qcc_conv_kofs(g, dims, split, kofs);
    q.m = g->og;
    q.n = g->osp[0] * g->osp[1] * g->osp[2];
    q.k = g->cg * g->k[0] * g->k[1] * g->k[2];
    q.a = w;
    q.lda = q.k;
    q.ap = wp;
    q.ap_mr = wp_mr;
    q.ap_kc = wp_kc;
    q.bias = bias;
    q.c = out;
    q.ldc = q.n;
    q.src = p;
    q.kofs = kofs;
    q.pos = qcc_conv_positions(g, dims, split);
    q.act = act;
    q.taps = g->k[0] * g->k[1] * g->k[2];
    return qcc_gemm_run(&q);
}

/* ---- images side by side on the thread pool -------------------------------------
 * A batch of images whose GEMMs are each big enough: each thread takes whole images
 * (and groups) and runs their GEMMs alone, instead of all threads sharing every
 * image's GEMM; no wait between images, and the padded copies run in parallel. Each
 * output element is computed as in qcc_conv_gemm on one thread: the same bits. */
typedef struct {
    const float *x, *w, *wp, *bias;
    float *out;
    int wp_mr, wp_kc;
    ptrdiff_t wp_group;
    const qcc_geom *g;
    const qcc_act *act;
    int n_img, groups, c, o;
    int next, failed;
} qcc_conv_images_job;

static void qcc_conv_images_worker(void *arg)
{
    qcc_conv_images_job *job = (qcc_conv_images_job *)arg;
    const qcc_geom *g = job->g;
    const int kc = g->cg * g->k[0] * g->k[1] * g->k[2];
    const ptrdiff_t pin = (ptrdiff_t)g->sp[0] * g->sp[1] * g->sp[2];
    const ptrdiff_t pout = (ptrdiff_t)g->osp[0] * g->osp[1] * g->osp[2];
    const ptrdiff_t pad = (qcc_conv_gemm_pad_size(g) + 15) / 16 * 16;
    float *scratch = (float *)qcc_thread_buffer_slot(
        2, (size_t)pad * sizeof(float) + (size_t)(kc > 0 ? kc : 1) * sizeof(ptrdiff_t));
    ptrdiff_t *kofs;
    if (scratch == NULL) {
        job->failed = 1;
        return;
    }
    kofs = (ptrdiff_t *)(scratch + pad);
    for (;;) {
        const int t = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        int ni, gi;
        if (t >= job->n_img * job->groups) break;
        ni = t / job->groups;
        gi = t % job->groups;
        if (qcc_conv_gemm(job->x + ((ptrdiff_t)ni * job->c + (ptrdiff_t)gi * g->cg) * pin,
                          job->w + (ptrdiff_t)gi * g->og * kc,
                          job->wp ? job->wp + gi * job->wp_group : NULL, job->wp_mr, job->wp_kc,
                          job->bias ? job->bias + (ptrdiff_t)gi * g->og : NULL,
                          job->out + ((ptrdiff_t)ni * job->o + (ptrdiff_t)gi * g->og) * pout,
                          g, scratch, kofs, job->act))
            job->failed = 1;
    }
}

/* Whether the images (and groups) of a convolution go to the threads whole: enough
 * of them to share evenly, and work enough for threads (qcc_gemm_par_min). */
static int qcc_conv_images_parallel(const qcc_geom *g, int n_img, int groups, int threads)
{
    const int tasks = n_img * groups;
    const double madds = (double)g->og * g->cg * g->k[0] * g->k[1] * g->k[2]
                         * g->osp[0] * g->osp[1] * g->osp[2];
    if (threads < 2 || madds * tasks < qcc_gemm_par_min) return 0;
    return tasks >= 8 * threads || (tasks >= 2 * threads && tasks % threads == 0);
}

/* The GEMMs of n_img images and `groups` groups, whole ones a task on `threads`
 * threads; returns 0, or -1 when out of memory. */
static int qcc_conv_images(const float *x, const float *w, const float *wp, int wp_mr, int wp_kc,
                           ptrdiff_t wp_group, const float *bias, float *out, const qcc_geom *g,
                           int n_img, int groups, const qcc_act *act, int threads)
{
    qcc_conv_images_job job;
    job.x = x;
    job.w = w;
    job.wp = wp;
    job.bias = bias;
    job.out = out;
    job.wp_mr = wp_mr;
    job.wp_kc = wp_kc;
    job.wp_group = wp_group;
    job.g = g;
    job.act = act;
    job.n_img = n_img;
    job.groups = groups;
    job.c = groups * g->cg;
    job.o = groups * g->og;
    job.next = 0;
    job.failed = 0;
    qcc_parallel(qcc_conv_images_worker, &job, threads < n_img * groups ? threads : n_img * groups);
    return job.failed ? -1 : 0;
}

/* Output positions below which the images of a batch share one GEMM. */
#define QCC_CONV_BATCH_MAX_P 256

/* Whether qcc_conv_gemm_images runs this convolution (a batch of small 1-D or 2-D
 * outputs: one GEMM per image would leave most of its tiles' columns empty). */
static int qcc_conv_gemm_batches(const qcc_geom *g, int n_img)
{
    return n_img > 1 && g->osp[0] == 1
           && (ptrdiff_t)g->osp[1] * g->osp[2] <= QCC_CONV_BATCH_MAX_P;
}

/* Floats of scratch qcc_conv_gemm_images needs: padded inputs and the GEMM's output. */
static ptrdiff_t qcc_conv_gemm_images_size(const qcc_geom *g, int n_img)
{
    return (qcc_conv_gemm_pad_size(g) + (ptrdiff_t)g->og * g->osp[1] * g->osp[2]) * n_img;
}

/* The serial steps around the batched GEMM, one image a task on the pool: the
 * padded copies of the inputs (out == NULL), or the copy of the GEMM's columns out
 * into the images and their epilogue. Elements are only copied, and the epilogue
 * applies element by element: the bits do not depend on the thread. */
typedef struct {
    const float *x;              /* inputs: image i at x + i*x_img */
    ptrdiff_t x_img;
    float *scratch;              /* padded inputs: image i at scratch + i*pad_img */
    ptrdiff_t pad_img;
    const qcc_geom *g;
    int split;
    float *out;                  /* outputs: image i at out + i*out_img, or NULL */
    ptrdiff_t out_img, npos, ldc;
    const float *tmp;            /* the GEMM's result: image i from column i*npos */
    const qcc_act *act;          /* NULL when the GEMM failed */
    int n_img, next;
} qcc_images_job;

QCC_CLONES
static void qcc_images_worker(void *arg)
{
    qcc_images_job *job = (qcc_images_job *)arg;
    const qcc_geom *g = job->g;
    int dims[3], o;
    for (;;) {
        const int i = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        if (i >= job->n_img) break;
        if (job->out == NULL) {
            qcc_conv_gemm_input(job->x + i * job->x_img, job->scratch + i * job->pad_img, g,
                                job->split, dims);
            continue;
        }
        for (o = 0; o < g->og; o++)
            memcpy(job->out + i * job->out_img + o * job->npos,
                   job->tmp + o * job->ldc + i * job->npos, job->npos * sizeof(float));
        qcc_activate(job->act, job->out + i * job->out_img, job->npos, g->og, job->npos);
    }
}

/* Floats copied below which the steps around the batched GEMM stay on one thread. */
#define QCC_CONV_IMAGES_PAR_MIN (1 << 15)

/* qcc_conv_gemm of one group for n_img images at once (qcc_conv_gemm_batches): image i
 * is at x + i*x_img, its output at out + i*out_img; one GEMM computes the columns of
 * all images (image i's P positions from column i*P on) into scratch, then they are
 * copied out, then the epilogue runs on them. Same sums as one GEMM per image. The
 * padded copies of the inputs and the copy out with the epilogue are shared by the
 * GEMM's threads (qcc_images_worker). scratch: qcc_conv_gemm_images_size floats;
 * kofs: Kc offsets. Returns 0, or -1 when out of memory. */
static int qcc_conv_gemm_images(const float *x, ptrdiff_t x_img, const float *w,
                                const float *wp, int wp_mr, int wp_kc, const float *bias,
                                float *out,
                                ptrdiff_t out_img,
                                const qcc_geom *g, int n_img, float *scratch, ptrdiff_t *kofs,
                                const qcc_act *act)
{
    int dims[3], err, same;
    qcc_gemm q;
    qcc_images_job job;
    const int split = g->st[2] == 2;
    const ptrdiff_t npos = (ptrdiff_t)g->osp[1] * g->osp[2], pad_img = qcc_conv_gemm_pad_size(g);
    float *tmp = scratch + pad_img * n_img;
    same = qcc_padded_dims(g, g->osp[2], dims) && !split;   /* x read in place */
    job.x = x;
    job.x_img = x_img;
    job.scratch = scratch;
    job.pad_img = pad_img;
    job.g = g;
    job.split = split;
    job.out = NULL;
    job.n_img = n_img;
    job.next = 0;
    if (!same)
        qcc_parallel(qcc_images_worker, &job,
                     (double)pad_img * n_img < QCC_CONV_IMAGES_PAR_MIN ? 1 : qcc_gemm_threads);
    qcc_conv_kofs(g, dims, split, kofs);
    q.m = g->og;
    q.n = (int)(npos * n_img);
    q.k = g->cg * g->k[0] * g->k[1] * g->k[2];
    q.a = w;
    q.lda = q.k;
    q.ap = wp;
    q.ap_mr = wp_mr;
    q.ap_kc = wp_kc;
    q.bias = bias;
    q.c = tmp;
    q.ldc = q.n;
    q.src = same ? x : scratch;
    q.kofs = kofs;
    q.pos = qcc_conv_positions(g, dims, split);
    q.pos.s_q = same ? x_img : pad_img;   /* q: the image (osp[0] == 1) */
    /* The epilogue runs on the copied-out images: its residual and per-channel
     * operands are addressed by the place of an element in the output array
     * (act->base), which the scratch columns are not. */
    q.act = NULL;
    q.taps = g->k[0] * g->k[1] * g->k[2];
    err = qcc_gemm_run(&q);
    job.out = out;
    job.out_img = out_img;
    job.npos = npos;
    job.ldc = q.ldc;
    job.tmp = tmp;
    job.act = err == 0 ? act : NULL;
    job.next = 0;
    qcc_parallel(qcc_images_worker, &job,
                 (double)g->og * q.n < QCC_CONV_IMAGES_PAR_MIN ? 1 : qcc_gemm_threads);
    return err;
}

#include "_depthwise_impl.h"   /* the depthwise convolution (qcc_depthwise) */

#endif
