/* Element-wise kernels of the runtime (runtime/_eltwise.pyx): the fused epilogue of
 * runtime/_common.h (activation, fake-quant) run on a whole float32 tensor, in place
 * or into another buffer, its chunks shared by the thread pool.
 *
 * Compiled without FMA contraction (setup.py), and each element is computed by the
 * same float32 operations whatever the chunk, thread or instruction set. */
#ifndef QCC_ELTWISE_IMPL_H
#define QCC_ELTWISE_IMPL_H

#include "_common.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && __GNUC__ >= 12
#define QCC_ELT_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define QCC_ELT_CLONES
#endif

/* Elements per task: big enough to amortize handing it out, small enough to even
 * out threads. */
#define QCC_ELT_CHUNK 16384

typedef struct {
    const qcc_act *act;     /* act->base: the output */
    const float *src;       /* the input (NULL: already in the output) */
    ptrdiff_t n;            /* elements */
    int chunks, width;
    qcc_homes homes;        /* claims of chunks (qcc_claim_home: a contiguous run a thread) */
} qcc_elt_job;

/* Elements [e0, e1): copied from src first (while the chunk stays in cache, rather
 * than a whole-tensor copy before: one pass over memory, not two). */
QCC_ELT_CLONES
static void qcc_elt_chunk(const qcc_act *act, const float *src, ptrdiff_t e0, ptrdiff_t e1)
{
    float *c = (float *)act->base;
    if (src != NULL) memcpy(c + e0, src + e0, (size_t)(e1 - e0) * sizeof(float));
    qcc_epilogue_range(act, c, e0, e1);
}

static void qcc_elt_worker(void *arg)
{
    qcc_elt_job *job = (qcc_elt_job *)arg;
    int b, t, n;
    while ((n = qcc_claim_home(&job->homes, 1, job->chunks, job->width, job->chunks, &b, &t)) > 0) {
        const ptrdiff_t e0 = (ptrdiff_t)t * QCC_ELT_CHUNK, e1 = e0 + (ptrdiff_t)n * QCC_ELT_CHUNK;
        qcc_elt_chunk(job->act, job->src, e0, e1 < job->n ? e1 : job->n);
    }
}

/* The epilogue `act` on the n elements at src (NULL: at act->base) into act->base,
 * on up to `threads` threads. */
static void qcc_eltwise(const qcc_act *act, const float *src, ptrdiff_t n, int threads)
{
    qcc_elt_job job;
    const ptrdiff_t chunks = (n + QCC_ELT_CHUNK - 1) / QCC_ELT_CHUNK;
    job.act = act;
    job.src = src == act->base ? NULL : src;
    job.n = n;
    if (n <= 0) return;
    if (threads > chunks) threads = (int)chunks;
    if (n < 4 * QCC_ELT_CHUNK) threads = 1;   /* waking a worker costs some microseconds */
    job.chunks = (int)chunks;
    job.width = threads;
    memset(&job.homes, 0, sizeof(job.homes));
    qcc_parallel(qcc_elt_worker, &job, threads);
}

#endif
