/* A dense layer's epilogue after its sums (qcc_dense_run's `post`): the residual add,
 * GELU and fake-quant steps that follow a transformer's dense layers, run on each
 * claim's rows while they are in cache (runtime/_dense_impl.h). The function is
 * _norm's qcc_norm_post (runtime/_norm_impl.h), compiled without FMA contraction, so
 * that each step gives the bits of its own kernel; _conv gets it through a capsule. */
#ifndef QCC_DENSE_POST_H
#define QCC_DENSE_POST_H

#include <stddef.h>

typedef struct {
    int gelu;                   /* then GELU (qcc_gelu) */
    int fq_on;                  /* then the per-tensor fake-quant (s, z, qmin, qmax) */
    float s, z, qmin, qmax;
} qcc_dense_post_arg;

/* y[0:n] in place: y + res (res NULL: none), then GELU, then the fake-quant. */
typedef void (*qcc_dense_post_fn)(float *y, const float *res, ptrdiff_t n,
                                  const qcc_dense_post_arg *arg);

typedef struct {
    qcc_dense_post_fn fn;
    const float *res;           /* the residual [m, ldr] (NULL: none) */
    ptrdiff_t ldr;
    const qcc_dense_post_arg *arg;
} qcc_dense_post;

#endif
