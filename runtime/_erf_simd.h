/* erf and GELU on QCC_ERF_NV interleaved vectors of QCC_SIMD_W floats: included by
 * runtime/_norm_impl.h once per width (8: AVX2, 16: AVX-512), inside that width's
 * target pragma, with
 *   QCC_SIMD_FN(name)   the function's name for this width,
 *   QCC_SIMD_TAIL_ERF   and QCC_SIMD_TAIL_GELU: the scalar-order loops for the tail.
 * Every step is qcc_erff's / qcc_expf's float32 operation in their order (a multiply,
 * then an add: never contracted), so both widths give the plain build's bits. */

#if QCC_SIMD_W == 8
#define QCC_V __m256
#define QCC_M __m256                                   /* a comparison's result */
#define QCC_K(c) _mm256_set1_ps(c)
#define QCC_KI(c) _mm256_set1_epi32(c)
#define QCC_ADD _mm256_add_ps
#define QCC_SUB _mm256_sub_ps
#define QCC_MUL _mm256_mul_ps
#define QCC_DIV _mm256_div_ps
#define QCC_AND _mm256_and_ps
#define QCC_ANDNOT _mm256_andnot_ps
#define QCC_OR _mm256_or_ps
#define QCC_ZERO _mm256_setzero_ps
#define QCC_LOAD _mm256_loadu_ps
#define QCC_STORE _mm256_storeu_ps
#define QCC_CMP(a, b, imm) _mm256_cmp_ps(a, b, imm)
#define QCC_SELECT(m, a, b) _mm256_blendv_ps(a, b, m)    /* m ? b : a */
#define QCC_ADDI _mm256_add_epi32
#define QCC_SUBI _mm256_sub_epi32
#define QCC_SLLI _mm256_slli_epi32
#define QCC_CAST_I _mm256_castps_si256
#define QCC_CAST_F _mm256_castsi256_ps
#else
#define QCC_V __m512
#define QCC_M __mmask16
#define QCC_K(c) _mm512_set1_ps(c)
#define QCC_KI(c) _mm512_set1_epi32(c)
#define QCC_ADD _mm512_add_ps
#define QCC_SUB _mm512_sub_ps
#define QCC_MUL _mm512_mul_ps
#define QCC_DIV _mm512_div_ps
#define QCC_AND _mm512_and_ps
#define QCC_ANDNOT _mm512_andnot_ps
#define QCC_OR _mm512_or_ps
#define QCC_ZERO _mm512_setzero_ps
#define QCC_LOAD _mm512_loadu_ps
#define QCC_STORE _mm512_storeu_ps
#define QCC_CMP(a, b, imm) _mm512_cmp_ps_mask(a, b, imm)
#define QCC_SELECT(m, a, b) _mm512_mask_blend_ps(m, a, b)
#define QCC_ADDI _mm512_add_epi32
#define QCC_SUBI _mm512_sub_epi32
#define QCC_SLLI _mm512_slli_epi32
#define QCC_CAST_I _mm512_castps_si512
#define QCC_CAST_F _mm512_castsi512_ps
#endif

/* v = v * m + c for each vector */
#define QCC_HORNER(v, m, c) QCC_EACH(v[J] = QCC_ADD(QCC_MUL(v[J], m[J]), QCC_K(c)))

/* qcc_expf of QCC_ERF_NV vectors q (overwritten) into e. */
static inline __attribute__((always_inline)) void QCC_SIMD_FN(qcc_exp_vec)(QCC_V *q, QCC_V *e)
{
    QCC_M under[QCC_ERF_NV];
    QCC_V t[QCC_ERF_NV], n[QCC_ERF_NV], r[QCC_ERF_NV];
    QCC_EACH(under[J] = QCC_CMP(q[J], QCC_K(-87.3f), _CMP_LT_OQ));
    QCC_EACH(q[J] = QCC_SELECT(under[J], q[J], QCC_K(-87.3f)));
    QCC_EACH(q[J] = QCC_SELECT(QCC_CMP(q[J], QCC_K(88.3f), _CMP_GT_OQ), q[J], QCC_K(88.3f)));
    QCC_EACH(t[J] = QCC_ADD(QCC_MUL(q[J], QCC_K(1.44269504088896341f)), QCC_K(12582912.0f)));
    QCC_EACH(n[J] = QCC_SUB(t[J], QCC_K(12582912.0f)));
    QCC_EACH(r[J] = QCC_ADD(QCC_SUB(q[J], QCC_MUL(n[J], QCC_K(0.693359375f))),
                            QCC_MUL(n[J], QCC_K(2.12194440e-4f))));
    QCC_EACH(e[J] = QCC_K(1.9875691500e-4f));
    QCC_HORNER(e, r, 1.3981999507e-3f);
    QCC_HORNER(e, r, 8.3334519073e-3f);
    QCC_HORNER(e, r, 4.1665795894e-2f);
    QCC_HORNER(e, r, 1.6666665459e-1f);
    QCC_HORNER(e, r, 5.0000001201e-1f);
    QCC_EACH(e[J] = QCC_ADD(QCC_ADD(QCC_MUL(QCC_MUL(e[J], r[J]), r[J]), r[J]), QCC_K(1.0f)));
    QCC_EACH(t[J] = QCC_CAST_F(QCC_SLLI(
        QCC_ADDI(QCC_SUBI(QCC_CAST_I(t[J]), QCC_KI(0x4B400000)), QCC_KI(127)), 23)));
    QCC_EACH(e[J] = QCC_SELECT(under[J], QCC_MUL(e[J], t[J]), QCC_ZERO()));
}

/* qcc_erff of QCC_ERF_NV vectors x into y. */
static inline __attribute__((always_inline)) void QCC_SIMD_FN(qcc_erf_vec)(const QCC_V *x, QCC_V *y)
{
    const QCC_V sign = QCC_K(-0.0f);
    QCC_V a[QCC_ERF_NV], t[QCC_ERF_NV], p[QCC_ERF_NV], q[QCC_ERF_NV];
    QCC_V e[QCC_ERF_NV];
    QCC_EACH(a[J] = QCC_ANDNOT(sign, x[J]));
    QCC_EACH(t[J] = QCC_MUL(a[J], a[J]));
    QCC_EACH(p[J] = QCC_K(-0.000598617306f));
    QCC_HORNER(p, t, 0.00499217352f);
    QCC_HORNER(p, t, -0.026765855f);
    QCC_HORNER(p, t, 0.112817928f);
    QCC_HORNER(p, t, -0.376124918f);
    QCC_HORNER(p, t, 0.128379151f);
    QCC_EACH(p[J] = QCC_ADD(a[J], QCC_MUL(a[J], p[J])));
    QCC_EACH(q[J] = QCC_K(-2.48125183e-08f));
    QCC_HORNER(q, a, 2.17673596e-06f);
    QCC_HORNER(q, a, -5.11130456e-05f);
    QCC_HORNER(q, a, 0.000623499393f);
    QCC_HORNER(q, a, -0.00484685553f);
    QCC_HORNER(q, a, 0.0266035367f);
    QCC_HORNER(q, a, -0.110322833f);
    QCC_HORNER(q, a, -0.631628692f);
    QCC_HORNER(q, a, -1.13032186f);
    QCC_HORNER(q, a, 0.000336636382f);
    QCC_SIMD_FN(qcc_exp_vec)(q, e);
    /* q = 1 - exp(Q); 1 from 3.925 on; p below 0.921875; x's sign */
    QCC_EACH(q[J] = QCC_SUB(QCC_K(1.0f), e[J]));
    QCC_EACH(q[J] = QCC_SELECT(QCC_CMP(a[J], QCC_K(3.925f), _CMP_LT_OQ), QCC_K(1.0f), q[J]));
    QCC_EACH(q[J] = QCC_SELECT(QCC_CMP(a[J], QCC_K(0.921875f), _CMP_GT_OQ), p[J], q[J]));
    QCC_EACH(y[J] = QCC_OR(QCC_ANDNOT(sign, q[J]), QCC_AND(sign, x[J])));
}

static void QCC_SIMD_FN(qcc_erf)(const float *x, float *y, ptrdiff_t n)
{
    QCC_V v[QCC_ERF_NV], w[QCC_ERF_NV];
    ptrdiff_t i;
    for (i = 0; i + QCC_SIMD_W * QCC_ERF_NV <= n; i += QCC_SIMD_W * QCC_ERF_NV) {
        QCC_EACH(v[J] = QCC_LOAD(x + i + QCC_SIMD_W * J));
        QCC_SIMD_FN(qcc_erf_vec)(v, w);
        QCC_EACH(QCC_STORE(y + i + QCC_SIMD_W * J, w[J]));
    }
    QCC_SIMD_TAIL_ERF(x + i, y + i, n - i);
}

static void QCC_SIMD_FN(qcc_gelu)(const float *x, float *y, ptrdiff_t n)
{
    QCC_V v[QCC_ERF_NV], u[QCC_ERF_NV], w[QCC_ERF_NV];
    ptrdiff_t i;
    for (i = 0; i + QCC_SIMD_W * QCC_ERF_NV <= n; i += QCC_SIMD_W * QCC_ERF_NV) {
        QCC_EACH(v[J] = QCC_LOAD(x + i + QCC_SIMD_W * J));
        QCC_EACH(u[J] = QCC_DIV(v[J], QCC_K(1.41421354f)));
        QCC_SIMD_FN(qcc_erf_vec)(u, w);
        QCC_EACH(w[J] = QCC_MUL(QCC_MUL(v[J], QCC_ADD(w[J], QCC_K(1.0f))), QCC_K(0.5f)));
        QCC_EACH(QCC_STORE(y + i + QCC_SIMD_W * J, w[J]));
    }
    QCC_SIMD_TAIL_GELU(x + i, y + i, n - i);
}

#undef QCC_HORNER
#undef QCC_V
#undef QCC_M
#undef QCC_K
#undef QCC_KI
#undef QCC_ADD
#undef QCC_SUB
#undef QCC_MUL
#undef QCC_DIV
#undef QCC_AND
#undef QCC_ANDNOT
#undef QCC_OR
#undef QCC_ZERO
#undef QCC_LOAD
#undef QCC_STORE
#undef QCC_CMP
#undef QCC_SELECT
#undef QCC_ADDI
#undef QCC_SUBI
#undef QCC_SLLI
#undef QCC_CAST_I
#undef QCC_CAST_F
#undef QCC_SIMD_W
#undef QCC_SIMD_FN
#undef QCC_SIMD_TAIL_ERF
#undef QCC_SIMD_TAIL_GELU
