/* A pool's geometry and its window rules (the NCHW kernels, runtime/_pool_impl.h, and
 * the blocked layout's, runtime/_blocked_impl.h): which taps of a window lie inside
 * the input, how many cells an average counts, how wide a padded input row is. */
#ifndef QCC_POOL_GEOM_H
#define QCC_POOL_GEOM_H

typedef struct {
    int sp[3];   /* input spatial size (D, H, W) */
    int k[3];    /* kernel size */
    int osp[3];  /* output spatial size */
    int st[3];   /* strides */
    int pb[3];   /* pads at the beginning */
    int pe[3];   /* pads at the end */
    int dl[3];   /* dilations */
} qcc_pool_geom;

/* [*lo, *hi): the t in [0, count) with 0 <= t*stride + off < limit. */
static inline void qcc_pool_valid(int off, int stride, int limit, int count, int *lo, int *hi)
{
    int a = off < 0 ? (-off + stride - 1) / stride : 0;
    int b = limit - 1 - off < 0 ? 0 : (limit - 1 - off) / stride + 1;
    if (b > count) b = count;
    if (a > count) a = count;
    if (b < a) b = a;
    *lo = a;
    *hi = b;
}

/* Cells averaged by output o along dim i: the taps inside the input, or (with
 * count_include_pad) inside the padded input [-pb, S + pe), like onnxruntime. */
static inline int qcc_pool_count(const qcc_pool_geom *g, int i, int o, int include_pad)
{
    const int start = o * g->st[i] - g->pb[i];
    int lo, hi;
    if (include_pad) {
        int end = start + g->k[i] * g->dl[i];
        const int limit = g->sp[i] + g->pe[i];
        if (end > limit) end = limit;
        return end > start ? (end - start + g->dl[i] - 1) / g->dl[i] : 0;
    }
    qcc_pool_valid(start, g->dl[i], g->sp[i], g->k[i], &lo, &hi);
    return hi - lo;
}

/* Cells of the input row padded with the op's identity that the windows read along W
 * (at least the begin pad and the input). */
static inline int qcc_pool_row_width(const qcc_pool_geom *g)
{
    const int need = (g->osp[2] - 1) * g->st[2] + (g->k[2] - 1) * g->dl[2] + 1;
    return need > g->pb[2] + g->sp[2] ? need : g->pb[2] + g->sp[2];
}

#endif /* QCC_POOL_GEOM_H */
