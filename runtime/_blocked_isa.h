/* One instruction set's kernels of the blocked layout: included by _blocked_impl.h
 * once per ISA with its vector type and operations defined (QCC_BV, QCC_BW lanes,
 * QCC_BV_*; QCC_BN(name) the ISA's name of a function): AVX-512 (16 lanes: one
 * vector a channel block) and AVX2 (8 lanes: two vectors a block). Both compute
 * every output with the same operations in the same order (bias, the taps'
 * FMAs ascending, the epilogue lane by lane): the same bits.
 *
 * A "vector" below is the ISA's own (QCC_BW lanes); QCC_BP of them make one block
 * of 16 channels, the v-th of a 64-channel group lying at (v / QCC_BP) * ldv +
 * (v % QCC_BP) * QCC_BW of its position (ldv: a block plane). */

#define QCC_BP (QCC_BLK / QCC_BW)

/* The per-lane parameters of the epilogue for the QCC_BW channels c0.. of `channels`
 * (per channel: scale 1 and zero point 0 past the channels); the fake-quant's in
 * the vector form of runtime/_epilogue.h (QCC_BFQ: qcc_fq16_k or qcc_fq8_k, lane
 * by lane), which applies it (QCC_BV_FQ: qcc_fq16 or qcc_fq8, no division: see
 * qcc_fq_one there). */
typedef struct {
    QCC_BV mul, shift;
    QCC_BFQ fq;
    QCC_BMASK valid;
} QCC_BN(qcc_blk_lanes);

QCC_INLINE void QCC_BN(qcc_blk_lanes_of)(const qcc_act *a, int c0, int channels,
                                         QCC_BN(qcc_blk_lanes) *l)
{
    float mul[QCC_BW], shift[QCC_BW], s[QCC_BW], zp[QCC_BW], r[QCC_BW], lo[QCC_BW], hi[QCC_BW];
    int j;
    l->fq.div = 0;
    for (j = 0; j < QCC_BW; j++) {
        const int c = c0 + j, in = c < channels;
        mul[j] = in && a->mul != NULL ? a->mul[c] : 0.0f;
        shift[j] = in && a->mul != NULL ? a->shift[c] : 0.0f;
        s[j] = zp[j] = 0.0f;
        if (a->fq_scale != NULL) {
            s[j] = !a->fq_per_channel ? a->fq_scale[0] : in ? a->fq_scale[c] : 1.0f;
            zp[j] = !a->fq_per_channel ? a->fq_zero[0] : in ? a->fq_zero[c] : 0.0f;
            if (!qcc_fq_exact_product(s[j], zp[j], a->qmin, a->qmax)) l->fq.div = 1;
        }
        r[j] = s[j] != 0.0f ? 1.0f / s[j] : 0.0f;
        lo[j] = a->qmin - zp[j] + QCC_FQ_MAGIC;
        hi[j] = a->qmax - zp[j] + QCC_FQ_MAGIC;
    }
    l->mul = QCC_BV_LOAD(mul);
    l->shift = QCC_BV_LOAD(shift);
    l->fq.s = QCC_BV_LOAD(s);
    l->fq.r = QCC_BV_LOAD(r);
    l->fq.lo = QCC_BV_LOAD(lo);
    l->fq.hi = QCC_BV_LOAD(hi);
    l->fq.z = QCC_BV_LOAD(zp);
    l->fq.qmin = QCC_BV_SET1(a->qmin);
    l->fq.qmax = QCC_BV_SET1(a->qmax);
    l->valid = QCC_BV_VALID(channels - c0);
}

/* ---- conv (one group): a tile of MR positions x NV vectors of output channels --
 * Position i reads tap k = (c, kh, kw) at P(i)[kofs[k]] (P(i) = ptr[i], or p0 + i*ps
 * for a tile in one output row: one register for all), the weights of its channels
 * packed [k][QCC_BLK_WK] (zeros past the channels: AVX-512 a group of 64, AVX2 a
 * block of 16, each block's weights one stream). The sums (bias first) take the
 * epilogue in the registers (when `apply`: else only the lanes past the channels
 * are zeroed) and are stored at out[QCC_BLK_VOFS(v, ldv) + OFS(i)] (residual: add,
 * laid out alike): OFS(i) = i*16 for a row's positions, the given oofs[i] for the
 * pointer kernels'. A deep conv runs its taps in chunks (`part`): a chunk with
 * QCC_BLK_MORE stores its float sums at out as they are, and the next one, with
 * QCC_BLK_RESUME, starts from them instead of the bias: the same FMAs in the same
 * order on the same float32 values, so the same bits, while the chunk's weights stay
 * in the L1 cache across the task's tiles instead of streaming from L2 for each. */
#define QCC_BLK_VOFS(v, ldv) (((v) / QCC_BP) * (ldv) + ((v) % QCC_BP) * QCC_BW)
#define QCC_BLK_KERN(NAME, NV, MR, PTR_ARGS, PTR_INIT, P, OFS)                           \
    static void NAME(int kc, const float *wp, PTR_ARGS, const ptrdiff_t *kofs, int mr,    \
                     const float *bias, float *out, ptrdiff_t ldv, const qcc_act *act,    \
                     const QCC_BN(qcc_blk_lanes) *lanes, const float *add, int apply,     \
                     float *tee, const ptrdiff_t *oofs, int part)                         \
    {                                                                                    \
        QCC_BV acc[MR][NV], wv[NV];                                                      \
        int i, v, k;                                                                     \
        PTR_INIT(MR)                                                                     \
        if (part & QCC_BLK_RESUME) {                                                     \
            for (v = 0; v < NV; v++)                                                     \
                for (i = 0; i < MR; i++)                                                 \
                    acc[i][v] = QCC_BV_LOAD(out + QCC_BLK_VOFS(v, ldv) + OFS(i < mr ? i : 0)); \
        } else {                                                                         \
            for (v = 0; v < NV; v++) {                                                   \
                const QCC_BV b = bias ? QCC_BV_LOAD(bias + QCC_BW * v) : QCC_BV_ZERO();  \
                for (i = 0; i < MR; i++) acc[i][v] = b;                                  \
            }                                                                            \
        }                                                                                \
        for (k = 0; k < kc; k++) {                                                       \
            const ptrdiff_t o = kofs[k];                                                 \
            for (v = 0; v < NV; v++) wv[v] = QCC_BV_LOAD(wp + (ptrdiff_t)k * QCC_BLK_WK + QCC_BW * v); \
            for (i = 0; i < MR; i++) {                                                   \
                const QCC_BV b = QCC_BV_SET1(P(i)[o]);                                   \
                for (v = 0; v < NV; v++) acc[i][v] = QCC_BV_FMA(b, wv[v], acc[i][v]);    \
            }                                                                            \
        }                                                                                \
        (void)oofs;                                                                      \
        if (part & QCC_BLK_MORE) {   /* partial sums: stored as they are, resumed later */ \
            for (i = 0; i < MR; i++)                                                     \
                for (v = 0; v < NV; v++)                                                 \
                    if (i < mr) QCC_BV_STORE(out + QCC_BLK_VOFS(v, ldv) + OFS(i), acc[i][v]); \
            return;                                                                      \
        }                                                                                \
        QCC_BLK_EPILOGUE(MR, mr, NV, acc[i_][v_], lanes[v_], QCC_BLK_VOFS(v_, ldv) + OFS(i_), \
                         act, apply, out, tee, add);                                     \
    }
#define QCC_BLK_PTRS const float *const *ptr, ptrdiff_t ps
#define QCC_BLK_PTRS_INIT(MR) const float *p[MR]; (void)ps; for (i = 0; i < MR; i++) p[i] = ptr[i < mr ? i : 0];
#define QCC_BLK_P_ARRAY(i) p[i]
#define QCC_BLK_ROW const float *p0, ptrdiff_t ps
#define QCC_BLK_ROW_INIT(MR) const ptrdiff_t ps_ = ps;
#define QCC_BLK_P_ROW(i) (p0 + (i < mr ? i : 0) * ps_)
#define QCC_BLK_OFS_LINE(i) (16 * (i))
#define QCC_BLK_OFS_GIVEN(i) (oofs[i])
/* Tails: a tile of 1, 2 or 3-4 positions (a segment's last, as a 7x7 plane's 49th)
 * takes a kernel of that many, not the full tile's FMAs on copies of its first
 * position: each output's sum is the same operations in the same order either way */
#define QCC_BLK_TAILS(NV, NVN)                                                           \
    QCC_BLK_KERN(QCC_BN(qcc_blk_kern##NVN##_t1), NV, 1, QCC_BLK_PTRS, QCC_BLK_PTRS_INIT, QCC_BLK_P_ARRAY, QCC_BLK_OFS_GIVEN) \
    QCC_BLK_KERN(QCC_BN(qcc_blk_kern##NVN##_t2), NV, 2, QCC_BLK_PTRS, QCC_BLK_PTRS_INIT, QCC_BLK_P_ARRAY, QCC_BLK_OFS_GIVEN) \
    QCC_BLK_KERN(QCC_BN(qcc_blk_kern##NVN##_t4), NV, 4, QCC_BLK_PTRS, QCC_BLK_PTRS_INIT, QCC_BLK_P_ARRAY, QCC_BLK_OFS_GIVEN) \
    QCC_BLK_KERN(QCC_BN(qcc_blk_row##NVN##_t1), NV, 1, QCC_BLK_ROW, QCC_BLK_ROW_INIT, QCC_BLK_P_ROW, QCC_BLK_OFS_LINE) \
    QCC_BLK_KERN(QCC_BN(qcc_blk_row##NVN##_t2), NV, 2, QCC_BLK_ROW, QCC_BLK_ROW_INIT, QCC_BLK_P_ROW, QCC_BLK_OFS_LINE) \
    QCC_BLK_KERN(QCC_BN(qcc_blk_row##NVN##_t4), NV, 4, QCC_BLK_ROW, QCC_BLK_ROW_INIT, QCC_BLK_P_ROW, QCC_BLK_OFS_LINE)
#if QCC_BW == 16
/* 6-12 positions x 1-4 blocks (24-48 accumulators of the 32 registers) */
QCC_BLK_KERN(QCC_BN(qcc_blk_kern4), 4, 6, QCC_BLK_PTRS, QCC_BLK_PTRS_INIT, QCC_BLK_P_ARRAY, QCC_BLK_OFS_GIVEN)
QCC_BLK_KERN(QCC_BN(qcc_blk_kern3), 3, 8, QCC_BLK_PTRS, QCC_BLK_PTRS_INIT, QCC_BLK_P_ARRAY, QCC_BLK_OFS_GIVEN)
QCC_BLK_KERN(QCC_BN(qcc_blk_kern2), 2, 12, QCC_BLK_PTRS, QCC_BLK_PTRS_INIT, QCC_BLK_P_ARRAY, QCC_BLK_OFS_GIVEN)
QCC_BLK_KERN(QCC_BN(qcc_blk_kern1), 1, 12, QCC_BLK_PTRS, QCC_BLK_PTRS_INIT, QCC_BLK_P_ARRAY, QCC_BLK_OFS_GIVEN)
QCC_BLK_KERN(QCC_BN(qcc_blk_row4), 4, 6, QCC_BLK_ROW, QCC_BLK_ROW_INIT, QCC_BLK_P_ROW, QCC_BLK_OFS_LINE)
QCC_BLK_KERN(QCC_BN(qcc_blk_row3), 3, 8, QCC_BLK_ROW, QCC_BLK_ROW_INIT, QCC_BLK_P_ROW, QCC_BLK_OFS_LINE)
QCC_BLK_KERN(QCC_BN(qcc_blk_row2), 2, 12, QCC_BLK_ROW, QCC_BLK_ROW_INIT, QCC_BLK_P_ROW, QCC_BLK_OFS_LINE)
QCC_BLK_KERN(QCC_BN(qcc_blk_row1), 1, 12, QCC_BLK_ROW, QCC_BLK_ROW_INIT, QCC_BLK_P_ROW, QCC_BLK_OFS_LINE)
QCC_BLK_TAILS(4, 4)
QCC_BLK_TAILS(3, 3)
QCC_BLK_TAILS(2, 2)
QCC_BLK_TAILS(1, 1)
#define QCC_BLK_STEP(nv) ((nv) == 4 ? 6 : (nv) == 3 ? 8 : 12)
#define QCC_BLK_CALL_NV(KIND, SFX, nv, KC, WP, P, PS, KOFS, MR, BIAS, O, LDV, ACT, OOFS, PART) \
    switch (nv) {                                                                        \
    case 4: QCC_BN(qcc_blk_##KIND##4##SFX)(KC, WP, P, PS, KOFS, MR, BIAS, O, LDV, ACT, lanes, add, job->apply, tee, OOFS, PART); break; \
    case 3: QCC_BN(qcc_blk_##KIND##3##SFX)(KC, WP, P, PS, KOFS, MR, BIAS, O, LDV, ACT, lanes, add, job->apply, tee, OOFS, PART); break; \
    case 2: QCC_BN(qcc_blk_##KIND##2##SFX)(KC, WP, P, PS, KOFS, MR, BIAS, O, LDV, ACT, lanes, add, job->apply, tee, OOFS, PART); break; \
    default: QCC_BN(qcc_blk_##KIND##1##SFX)(KC, WP, P, PS, KOFS, MR, BIAS, O, LDV, ACT, lanes, add, job->apply, tee, OOFS, PART); break; \
    }
#else
/* 6 positions x one block (12 accumulators of the 16 registers), called per block */
QCC_BLK_KERN(QCC_BN(qcc_blk_kern1), QCC_BP, 6, QCC_BLK_PTRS, QCC_BLK_PTRS_INIT, QCC_BLK_P_ARRAY, QCC_BLK_OFS_GIVEN)
QCC_BLK_KERN(QCC_BN(qcc_blk_row1), QCC_BP, 6, QCC_BLK_ROW, QCC_BLK_ROW_INIT, QCC_BLK_P_ROW, QCC_BLK_OFS_LINE)
QCC_BLK_TAILS(QCC_BP, 1)
#define QCC_BLK_STEP(nv) 6
#define QCC_BLK_CALL_NV(KIND, SFX, nv, KC, WP, P, PS, KOFS, MR, BIAS, O, LDV, ACT, OOFS, PART) \
    QCC_BN(qcc_blk_##KIND##1##SFX)(KC, WP, P, PS, KOFS, MR, BIAS, O, LDV, ACT, lanes, add, \
                                   job->apply, tee, OOFS, PART)
#endif
/* A tile of mr positions: the kernel of the full tile, or of a tail (mr <= 4) */
#define QCC_BLK_CALL(KIND, nv, KC, WP, P, PS, KOFS, MR, BIAS, O, LDV, ACT, OOFS, PART)   \
    do {                                                                                 \
        if ((MR) >= QCC_BLK_STEP(nv) || (MR) > 4)                                        \
            { QCC_BLK_CALL_NV(KIND, , nv, KC, WP, P, PS, KOFS, MR, BIAS, O, LDV, ACT, OOFS, PART); } \
        else if ((MR) == 1)                                                              \
            { QCC_BLK_CALL_NV(KIND, _t1, nv, KC, WP, P, PS, KOFS, MR, BIAS, O, LDV, ACT, OOFS, PART); } \
        else if ((MR) == 2)                                                              \
            { QCC_BLK_CALL_NV(KIND, _t2, nv, KC, WP, P, PS, KOFS, MR, BIAS, O, LDV, ACT, OOFS, PART); } \
        else                                                                             \
            { QCC_BLK_CALL_NV(KIND, _t4, nv, KC, WP, P, PS, KOFS, MR, BIAS, O, LDV, ACT, OOFS, PART); } \
    } while (0)

/* One tile: mr positions from q0 of the images' positions taken in a row (image
 * q / op, position q % op), blocks s0 .. s0 + nv - 1 of channel group b. A tile within one output
 * row takes the row kernel (one pointer, positions sw apart); any other tile, across
 * rows or (span) across images, takes the pointer kernel with each position's input
 * and output offset. */
QCC_INLINE void QCC_BN(qcc_blk_tile)(const qcc_blk_conv_job *job, const qcc_blk_src *src,
                                     int b, int s0, int nv, const qcc_blk_at *at0, int mr,
                                     const QCC_BN(qcc_blk_lanes) *lanes, int k0, int k1,
                                     int part)
{
    const qcc_blk_geom *g = job->g;
    const int kc = g->c * g->kh * g->kw, ob = qcc_blk_cb(g->o);
    const ptrdiff_t op = (ptrdiff_t)g->oh * g->ow, lane = job->x_blocked ? QCC_BLK : 1;
    /* block s0's weights: 16 lanes on of a row of the group (AVX-512), or the next
     * 16 x kc (AVX2) */
    const float *wp = job->wpk + (ptrdiff_t)b * 64 * kc + (ptrdiff_t)16 * s0 * (QCC_BLK_WK == 16 ? kc : 1)
                      + (ptrdiff_t)k0 * QCC_BLK_WK;
    const ptrdiff_t *kofs = job->kofs + k0;
    const float *bias = job->bias + 64 * b + 16 * s0;
    const ptrdiff_t n0 = at0->n, y0 = at0->y, x0 = at0->x, p0 = y0 * g->ow + x0;
    const ptrdiff_t at = ((n0 * ob + 4 * b + s0) * op + p0) * QCC_BLK, ldv = op * QCC_BLK;
    float *o = job->out + at, *tee = job->tee ? job->tee + at : NULL;
    const float *add = job->add ? job->add + at : NULL;
    if (x0 + mr <= g->ow) {   /* one output row: positions p0 + i*sw apart */
        const float *p = src->base + n0 * src->img
                         + ((ptrdiff_t)y0 * g->sh - src->r0) * src->row + (ptrdiff_t)x0 * g->sw * lane;
        const ptrdiff_t ps = (ptrdiff_t)g->sw * lane;
        QCC_BLK_CALL(row, nv, k1 - k0, wp, p, ps, kofs, mr, bias, o, ldv, &job->act, NULL, part);
    } else {
        const float *ptr[12];
        ptrdiff_t oofs[12];
        qcc_blk_at a = *at0;
        int i;
        for (i = 0; i < mr; i++, qcc_blk_at_next(&a, 1, g)) {
            ptr[i] = src->base + a.n * src->img + ((ptrdiff_t)a.y * g->sh - src->r0) * src->row
                     + (ptrdiff_t)a.x * g->sw * lane;
            oofs[i] = ((a.n - n0) * ob * op + (ptrdiff_t)a.y * g->ow + a.x - p0) * QCC_BLK;
        }
        QCC_BLK_CALL(kern, nv, k1 - k0, wp, ptr, 0, kofs, mr, bias, o, ldv, &job->act, oofs, part);
    }
}

/* Claims of units (job->tile positions) of one (segment, channel group): a segment
 * is one image's positions, or (span: small planes at a batch) all the images'
 * positions in a row, so that its tiles of 6-12 positions are not cut at each
 * image. Each thread claims from its home, a contiguous run of the (segment, group,
 * unit) order, so its part of the output is one run of the blocked output
 * (qcc_claim_home, runtime/_thread_pool.h; no cap, but a banded conv's `cap` units,
 * the rows its band can hold: it copies them first, qcc_blk_band): a thread's first
 * claims are long runs of positions (two threads taking 24 positions in turns
 * scaled 1.7x where long runs scaled 1.9x: each core's prefetchers fetched the
 * other's rows), the last ones single units. */
static void QCC_BN(qcc_blk_conv_worker)(void *arg)
{
    qcc_blk_conv_job *shared = (qcc_blk_conv_job *)arg;
    const qcc_blk_conv_job local = *shared, *job = &local;   /* read once: the claims move */
    const qcc_blk_geom *g = job->g;
    const int ob = qcc_blk_cb(g->o);
    const ptrdiff_t op = (ptrdiff_t)g->oh * g->ow;
    const ptrdiff_t seg_len = job->span ? g->n * op : op;
    const int segs = job->span ? 1 : g->n;
    const int kc = g->c * g->kh * g->kw, kcb = job->kcb > 0 ? job->kcb : kc;
    const ptrdiff_t lane = job->x_blocked ? QCC_BLK : 1;
    QCC_BN(qcc_blk_lanes) lanes[4 * QCC_BP];
    qcc_blk_src src;
    float *band = NULL;
    int lanes_of = -1, block, u0, n;
    src.base = job->x;
    src.img = (ptrdiff_t)(job->x_blocked ? qcc_blk_cb(g->c) * QCC_BLK : g->c) * job->hp * job->wp;
    src.row = (ptrdiff_t)job->wp * lane;
    src.r0 = 0;
    if (job->banded) {
        band = (float *)qcc_thread_buffer((size_t)job->band_rows * job->band_pitch * sizeof(float));
        if (band == NULL) {
            shared->failed = 1;
            return;
        }
        src.base = band;
        src.img = 0;
        src.row = job->band_pitch;
    }
    while ((n = qcc_claim_home(job->homes, segs * job->blocks64, job->tiles, job->width,
                               job->banded ? job->cap : job->tiles, &block, &u0)) > 0) {
        const int seg = block / job->blocks64, b = block % job->blocks64;
        int nv, step, v, k0, k1;
        ptrdiff_t q0, q1, q;
        qcc_blk_at first, at;
        nv = ob - 4 * b < 4 ? ob - 4 * b : 4;
        step = QCC_BLK_STEP(nv);
        if (b != lanes_of) {
            for (v = 0; v < nv * QCC_BP; v++)
                QCC_BN(qcc_blk_lanes_of)(&job->act, 4 * b * QCC_BLK + v * QCC_BW, g->o, &lanes[v]);
            lanes_of = b;
        }
        q0 = (ptrdiff_t)u0 * job->tile;
        q1 = q0 + (ptrdiff_t)n * job->tile < seg_len ? q0 + (ptrdiff_t)n * job->tile : seg_len;
        if (band != NULL) {   /* the padded rows of the claim's output rows (one image) */
            const int r1 = (int)((q1 - 1) / g->ow) * g->sh + (g->kh - 1) * g->dh + 1;
            src.r0 = (int)(q0 / g->ow) * g->sh;
            qcc_blk_band(job, seg, src.r0, r1, band);
        }
        q0 += seg * seg_len;
        q1 += seg * seg_len;
        first.n = (int)(q0 / op);
        first.y = (int)((q0 - (ptrdiff_t)first.n * op) / g->ow);
        first.x = (int)(q0 - (ptrdiff_t)first.n * op - (ptrdiff_t)first.y * g->ow);
#if QCC_BW == 16
        for (k0 = 0; k0 < kc; k0 = k1) {
            const int part = (k0 > 0 ? QCC_BLK_RESUME : 0);
            qcc_pf_slices pf;
            int k2;
            k1 = kc - k0 > kcb ? k0 + kcb : kc;
            k2 = kc - k1 > kcb ? k1 + kcb : kc;
            /* the next chunk's weights, [k1, k2) (deep layers' come from memory in the
             * model: light_resnet50 38.5-39.7 -> 37.1-38.1 ms at 2 threads) */
            qcc_pf_slices_of(&pf, job->wpk + (ptrdiff_t)b * 64 * kc + (ptrdiff_t)k1 * 64,
                             (ptrdiff_t)(k2 - k1) * 64 * (ptrdiff_t)sizeof(float),
                             (q1 - q0 + step - 1) / step);
            at = first;
            for (q = q0; q < q1; q += step, qcc_blk_at_next(&at, step, g)) {
                qcc_pf_slice(&pf);
                QCC_BN(qcc_blk_tile)(job, &src, b, 0, nv, &at, q1 - q < step ? (int)(q1 - q) : step,
                                     lanes, k0, k1, part | (k1 < kc ? QCC_BLK_MORE : 0));
            }
        }
#else
        /* block by block over the task's positions: a block's weights (16 x kc) stay
         * in the cache across the task's tiles */
        int s;
        for (s = 0; s < nv; s++)
            for (k0 = 0; k0 < kc; k0 = k1) {
                const int part = (k0 > 0 ? QCC_BLK_RESUME : 0);
                qcc_pf_slices pf;
                int k2;
                k1 = kc - k0 > kcb ? k0 + kcb : kc;
                k2 = kc - k1 > kcb ? k1 + kcb : kc;
                qcc_pf_slices_of(&pf, job->wpk + (ptrdiff_t)b * 64 * kc + (ptrdiff_t)16 * s * kc
                                          + (ptrdiff_t)k1 * 16,
                                 (ptrdiff_t)(k2 - k1) * 16 * (ptrdiff_t)sizeof(float),
                                 (q1 - q0 + step - 1) / step);
                at = first;
                for (q = q0; q < q1; q += step, qcc_blk_at_next(&at, step, g)) {
                    qcc_pf_slice(&pf);
                    QCC_BN(qcc_blk_tile)(job, &src, b, s, 1, &at, q1 - q < step ? (int)(q1 - q) : step,
                                         lanes + QCC_BP * s, k0, k1,
                                         part | (k1 < kc ? QCC_BLK_MORE : 0));
                }
            }
#endif
    }
}

/* ---- depthwise: a band of output rows of one channel block of one image -------- */

/* R outputs of row oy from column x0: bias, then the taps (ky, kx) in order. */
#define QCC_BLK_DW_ROW(R)                                                                \
    do {                                                                                 \
        QCC_BV acc[R][QCC_BP];                                                           \
        int r_, ky_, kx_, h_;                                                            \
        if (band == NULL)                                                                \
            qcc_blk_dw_rows(g, src, oy, x0, R, zeros, win, rows);                        \
        else                                                                             \
            for (ky_ = 0; ky_ < g->kh; ky_++)                                            \
                rows[ky_] = band + ((ptrdiff_t)(oy * g->sh + ky_ * g->dh - r0) * job->wp \
                                    + (ptrdiff_t)x0 * g->sw) * QCC_BLK;                  \
        for (r_ = 0; r_ < R; r_++)                                                       \
            for (h_ = 0; h_ < QCC_BP; h_++) acc[r_][h_] = b[h_];                         \
        for (ky_ = 0; ky_ < g->kh; ky_++)                                                \
            for (kx_ = 0; kx_ < g->kw; kx_++) {                                          \
                const float *q_ = rows[ky_] + (ptrdiff_t)kx_ * g->dw * QCC_BLK;          \
                for (h_ = 0; h_ < QCC_BP; h_++) {                                        \
                    const QCC_BV w_ = QCC_BV_LOAD(wb + (ky_ * g->kw + kx_) * QCC_BLK + h_ * QCC_BW); \
                    for (r_ = 0; r_ < R; r_++)                                           \
                        acc[r_][h_] = QCC_BV_FMA(                                        \
                            QCC_BV_LOAD(q_ + (ptrdiff_t)r_ * g->sw * QCC_BLK + h_ * QCC_BW), \
                            w_, acc[r_][h_]);                                            \
                }                                                                        \
            }                                                                            \
        QCC_BLK_EPILOGUE(R, R, QCC_BP, acc[i_][v_], lanes[v_],                           \
                         ((ptrdiff_t)oy * g->ow + x0 + i_) * QCC_BLK + v_ * QCC_BW,      \
                         &job->act, job->apply, o, tee, add);                            \
    } while (0)

static void QCC_BN(qcc_blk_dw_worker)(void *arg)
{
    qcc_blk_dw_job *shared = (qcc_blk_dw_job *)arg;
    const qcc_blk_dw_job local = *shared, *job = &local;   /* read once: the claims move */
    const qcc_blk_geom *g = job->g;
    const int cb = qcc_blk_cb(g->c), kk = g->kh * g->kw;
    const ptrdiff_t ip = (ptrdiff_t)g->h * g->w, op = (ptrdiff_t)g->oh * g->ow;
    const ptrdiff_t width = (ptrdiff_t)(QCC_BLK_DW_R - 1) * g->sw + (g->kw - 1) * g->dw + 1;
    /* narrow planes: most chunks touch the border, so a band is copied with its
     * zeros once (band rows of the padded plane, the first input row r0) */
    const int banded = g->ow < QCC_BLK_DW_DIRECT;
    const ptrdiff_t rowb = (ptrdiff_t)job->wp * QCC_BLK;
    const int span = (job->band - 1) * g->sh + (g->kh - 1) * g->dh + 1;
    const size_t floats = banded ? (size_t)span * rowb : (size_t)(g->kh + 1) * width * QCC_BLK;
    float *zeros = (float *)qcc_thread_buffer(floats * sizeof(float));
    float *win, *band = NULL;
    const float *rows[QCC_BLK_DW_MAXK];
    int r0 = 0;
    if (zeros == NULL) {
        shared->failed = 1;
        return;
    }
    if (banded) {
        band = zeros;
    } else {
        memset(zeros, 0, (size_t)width * QCC_BLK * sizeof(float));
    }
    win = zeros + width * QCC_BLK;
    int plane = 0, u = 0, n = 0;
    for (;;) {
        int blk, oy, oy1, x0, h;
        const float *wb, *src, *add;
        float *o, *tee;
        QCC_BN(qcc_blk_lanes) lanes[QCC_BP];
        QCC_BV b[QCC_BP];
        if (n == 0 && (n = qcc_claim_home(job->homes, g->n * cb, job->bands, job->width,
                                          job->bands, &plane, &u)) == 0)
            break;
        blk = plane % cb;
        oy = u * job->band;
        u++;
        n--;
        oy1 = oy + job->band < g->oh ? oy + job->band : g->oh;
        src = job->x + (ptrdiff_t)plane * ip * QCC_BLK;
        if (banded) {   /* padded rows [r0, r1): input row yy - ph, zeros outside */
            const int r1 = (oy1 - 1) * g->sh + (g->kh - 1) * g->dh + 1;
            int yy;
            r0 = oy * g->sh;
            for (yy = r0; yy < r1; yy++) {
                float *d = band + (yy - r0) * rowb;
                const int iy = yy - g->ph;
                if (iy < 0 || iy >= g->h) {
                    memset(d, 0, rowb * sizeof(float));
                    continue;
                }
                memset(d, 0, (size_t)g->pw * QCC_BLK * sizeof(float));
                memcpy(d + (ptrdiff_t)g->pw * QCC_BLK, src + (ptrdiff_t)iy * g->w * QCC_BLK,
                       (size_t)g->w * QCC_BLK * sizeof(float));
                memset(d + (ptrdiff_t)(g->pw + g->w) * QCC_BLK, 0,
                       (size_t)(job->wp - g->pw - g->w) * QCC_BLK * sizeof(float));
            }
        }
        wb = job->w + (ptrdiff_t)blk * kk * QCC_BLK;
        for (h = 0; h < QCC_BP; h++) {
            b[h] = job->bias ? QCC_BV_LOAD(job->bias + blk * QCC_BLK + h * QCC_BW) : QCC_BV_ZERO();
            QCC_BN(qcc_blk_lanes_of)(&job->act, blk * QCC_BLK + h * QCC_BW, g->c, &lanes[h]);
        }
        o = job->out + (ptrdiff_t)plane * op * QCC_BLK;
        tee = job->tee ? job->tee + (ptrdiff_t)plane * op * QCC_BLK : NULL;
        add = job->add ? job->add + (ptrdiff_t)plane * op * QCC_BLK : NULL;
        for (; oy < oy1; oy++) {
            for (x0 = 0; x0 + QCC_BLK_DW_R <= g->ow; x0 += QCC_BLK_DW_R) QCC_BLK_DW_ROW(QCC_BLK_DW_R);
            for (; x0 + 4 <= g->ow; x0 += 4) QCC_BLK_DW_ROW(4);
            for (; x0 < g->ow; x0++) QCC_BLK_DW_ROW(1);
        }
    }
}

/* ---- pools (runtime/_blocked_impl.h): d (a block of 16 lanes) = qcc_pool_span's
 * max or sum over the m taps base + j*step, fused as it fuses them; QCC_BV_MAX(a, b)
 * is a > b ? a : b lane by lane (x86's max: the second operand on NaN or equality). */
#define QCC_BLK_POOL_OP(is_max, a, b) ((is_max) ? QCC_BV_MAX(a, b) : QCC_BV_ADD(a, b))
QCC_INLINE void QCC_BN(qcc_blk_pool_span)(float *d, const float *base, ptrdiff_t step, int m,
                                          int is_max)
{
    int h;
    for (h = 0; h < QCC_BP; h++) {
        const float *a = base + h * QCC_BW, *b = a + (m > 1) * step, *c = a + (m > 2) * 2 * step;
        const int j0 = m < 3 ? m : 3;
        int j;
        QCC_BV v = QCC_BV_LOAD(a);
        if (j0 >= 2) v = QCC_BLK_POOL_OP(is_max, v, QCC_BV_LOAD(b));
        if (j0 == 3) v = QCC_BLK_POOL_OP(is_max, v, QCC_BV_LOAD(c));
        for (j = j0; j + 2 <= m; j += 2)
            v = QCC_BLK_POOL_OP(is_max, v, QCC_BLK_POOL_OP(is_max, QCC_BV_LOAD(a + j * step),
                                                           QCC_BV_LOAD(a + (j + 1) * step)));
        if (j < m) v = QCC_BLK_POOL_OP(is_max, v, QCC_BV_LOAD(a + j * step));
        QCC_BV_STORE(d + h * QCC_BW, v);
    }
}

/* Task t: output rows of band t % bands of blocked plane t / bands (image / cb,
 * block % cb). The input rows they read are pooled along W into hbuf (row r at
 * (r - first) * ow) from a copy padded with the op's identity (-FLT_MAX, 0), then
 * along H over the rows inside the input; an average divided by its count (as
 * qcc_pool_plane: the float product of the counts along H and W; 0 for none), then
 * (fq.fq_scale set) the per-tensor fake-quant of the pool's result. */
QCC_INLINE void QCC_BN(qcc_blk_pool_task_impl)(const qcc_blk_pool_job *j, int t, float *hbuf,
                                               float *prow, int is_max)
{
    const qcc_pool_geom *g = &j->g;   /* dim 1 H, dim 2 W */
    const int h = g->sp[1], w = g->sp[2], oh1 = g->osp[1], ow = g->osp[2];
    const int plane = t / j->bands, o0 = (t % j->bands) * j->band;
    const int o1 = o0 + j->band < oh1 ? o0 + j->band : oh1;
    const int valid = j->c - (plane % qcc_blk_cb(j->c)) * QCC_BLK;
    const float init = is_max ? -FLT_MAX : 0.0f;
    const float *x = j->x + (ptrdiff_t)plane * h * w * QCC_BLK;
    float *y = j->y + (ptrdiff_t)plane * oh1 * ow * QCC_BLK;
    QCC_BN(qcc_blk_lanes) lanes[QCC_BP];
    ptrdiff_t e;
    int r, q, oh, lo, hi, first = h, last = 0, l;
    for (l = 0; l < QCC_BP; l++)
        QCC_BN(qcc_blk_lanes_of)(&j->fq, (plane % qcc_blk_cb(j->c)) * QCC_BLK + l * QCC_BW, j->c,
                                 &lanes[l]);
    for (oh = o0; oh < o1; oh++) {   /* the input rows the band reads: [first, last) */
        const int h0 = oh * g->st[1] - g->pb[1];
        qcc_pool_valid(h0, g->dl[1], h, g->k[1], &lo, &hi);
        if (hi > lo) {
            first = h0 + lo * g->dl[1] < first ? h0 + lo * g->dl[1] : first;
            last = h0 + (hi - 1) * g->dl[1] + 1 > last ? h0 + (hi - 1) * g->dl[1] + 1 : last;
        }
    }
    for (e = 0; e < (ptrdiff_t)qcc_pool_row_width(g) * QCC_BLK; e++) prow[e] = init;
    for (r = first; r < last; r++) {   /* along W */
        memcpy(prow + (ptrdiff_t)g->pb[2] * QCC_BLK, x + (ptrdiff_t)r * w * QCC_BLK,
               (size_t)w * QCC_BLK * sizeof(float));
        for (q = 0; q < ow; q++)
            QCC_BN(qcc_blk_pool_span)(hbuf + ((ptrdiff_t)(r - first) * ow + q) * QCC_BLK,
                                      prow + (ptrdiff_t)q * g->st[2] * QCC_BLK,
                                      (ptrdiff_t)g->dl[2] * QCC_BLK, g->k[2], is_max);
    }
    for (oh = o0; oh < o1; oh++) {   /* along H, over the rows inside the input */
        const int h0 = oh * g->st[1] - g->pb[1];
        float *acc = y + (ptrdiff_t)oh * ow * QCC_BLK;
        qcc_pool_valid(h0, g->dl[1], h, g->k[1], &lo, &hi);
        if (hi <= lo) {
            for (e = 0; e < (ptrdiff_t)ow * QCC_BLK; e++) acc[e] = init;
        } else {
            const float *src = hbuf + (ptrdiff_t)(h0 + lo * g->dl[1] - first) * ow * QCC_BLK;
            for (q = 0; q < ow; q++)
                QCC_BN(qcc_blk_pool_span)(acc + (ptrdiff_t)q * QCC_BLK, src + (ptrdiff_t)q * QCC_BLK,
                                          (ptrdiff_t)g->dl[1] * ow * QCC_BLK, hi - lo, is_max);
        }
        if (!is_max) {   /* qcc_pool_plane_impl's divisor */
            const int pad = j->mode == QCC_BLK_POOL_AVG_PAD;
            const float dh = (float)(qcc_pool_count(g, 0, 0, pad) * qcc_pool_count(g, 1, oh, pad));
            for (q = 0; q < ow; q++) {
                const float n = dh * (float)qcc_pool_count(g, 2, q, pad);
                int v;
                for (v = 0; v < QCC_BP; v++) {
                    float *d = acc + (ptrdiff_t)q * QCC_BLK + v * QCC_BW;
                    QCC_BV_STORE(d, n > 0.0f ? QCC_BV_DIV(QCC_BV_LOAD(d), QCC_BV_SET1(n))
                                             : QCC_BV_ZERO());
                }
            }
        }
        if (j->fq.fq_scale != NULL)   /* the fake-quant that follows */
            for (q = 0; q < ow; q++) {
                int v;
                for (v = 0; v < QCC_BP; v++) {
                    float *d = acc + (ptrdiff_t)q * QCC_BLK + v * QCC_BW;
                    QCC_BV_STORE(d, QCC_BV_FQ(QCC_BV_LOAD(d), &lanes[v].fq));
                }
            }
        if (valid < QCC_BLK)   /* the lanes past the channels stay zero */
            for (q = 0; q < ow; q++)
                for (l = valid; l < QCC_BLK; l++) acc[(ptrdiff_t)q * QCC_BLK + l] = 0.0f;
    }
}

static void QCC_BN(qcc_blk_pool_task)(const qcc_blk_pool_job *j, int t, float *hbuf, float *prow)
{
    if (j->mode == QCC_BLK_POOL_MAX)
        QCC_BN(qcc_blk_pool_task_impl)(j, t, hbuf, prow, 1);
    else
        QCC_BN(qcc_blk_pool_task_impl)(j, t, hbuf, prow, 0);
}

#undef QCC_BLK_POOL_OP
#undef QCC_BLK_STEP
#undef QCC_BLK_CALL
#undef QCC_BLK_CALL_NV
#undef QCC_BLK_TAILS
#undef QCC_BLK_DW_ROW
#undef QCC_BLK_KERN
#undef QCC_BLK_VOFS
#undef QCC_BP
