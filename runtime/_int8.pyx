# cython: language_level=3
"""Integer kernels of the reference runtime: int8 convolution (1-3 spatial dims,
groups) and dense with exact int32 accumulation. `qcc.runtime.int8` prepares the
packed weights and per-channel offsets and keeps the numpy kernels that define the
semantics; these are the fast path for int8 activations and int8 weights whose zero
points are 0.

Arithmetic. The column buffer holds activations as uint8 `u = x_q + 128` (the bit
pattern of x_q with its sign bit flipped), so that every product is u8 x s8, the
operand types of the x86 dot-product instructions (VNNI `vpdpbusd`; AVX2 widens to
16 bits, where 255 * 128 still fits). Padding cells hold `z_x + 128`. Then

    acc[o, p] = sum_k w[o, k] * (x[k, p] - z_x) + b[o]
              = sum_k w[o, k] * u[k, p] + (b[o] - (z_x + 128) * sum_k w[o, k])

and the second term is the per-channel `off` computed once with the weights. Each
sum is exact in int32 as long as K * 255 * 128 < 2^31 (the caller checks), so every
instruction set gives the same integers.

Dispatch. The GEMM is compiled three times from one C body (AVX-512 VNNI, AVX2,
baseline x86-64); the best one the CPU supports, at or below the level the
environment variable QCC_ISA names (scalar, avx2, avx512), is chosen at import and
`set_isa(name)` forces another (the tests run all of them and compare).
"""

import os

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int8_t, int32_t, uint8_t

cnp.import_array()

cdef extern from *:
    """
    #include <stddef.h>
    #include <stdint.h>
    #include <string.h>

    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
    #define QCC_I8_X86 1
    #endif

    typedef struct {
        int cg, og;          /* input / output channels per group */
        int sp[3], k[3], osp[3], st[3], pb[3], dl[3];
        int dims[3];         /* padded input plane covering every tap */
        int kc, kp;          /* column length cg*K and its padded length */
    } qcc_i8_geom;

    typedef void (*qcc_i8_gemm_fn)(const int8_t *, const uint8_t *, int32_t *, ptrdiff_t,
                                   ptrdiff_t, int, int, int, const int32_t *);

    /* c[i*ldi + j*ldj] = off[i] + sum_k a[i, k] * b[j, k]; a [m, kp] s8, b [n, kp] u8,
       both row-major. Four rows of a share each row of b. */
    static inline __attribute__((always_inline)) void qcc_i8_gemm_body(
        const int8_t *restrict a, const uint8_t *restrict b, int32_t *restrict c,
        ptrdiff_t ldi, ptrdiff_t ldj, int m, int n, int kp, const int32_t *restrict off)
    {
        int i = 0, j, k;
        for (; i + 4 <= m; i += 4) {
            const int8_t *a0 = a + (ptrdiff_t)i * kp, *a1 = a0 + kp, *a2 = a1 + kp,
                         *a3 = a2 + kp;
            for (j = 0; j < n; j++) {
                const uint8_t *bj = b + (ptrdiff_t)j * kp;
                int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                for (k = 0; k < kp; k++) {
                    const int32_t v = bj[k];
                    s0 += a0[k] * v;
                    s1 += a1[k] * v;
                    s2 += a2[k] * v;
                    s3 += a3[k] * v;
                }
                int32_t *cj = c + j * ldj + i * ldi;
                cj[0] = s0 + off[i];
                cj[ldi] = s1 + off[i + 1];
                cj[2 * ldi] = s2 + off[i + 2];
                cj[3 * ldi] = s3 + off[i + 3];
            }
        }
        for (; i < m; i++) {
            const int8_t *a0 = a + (ptrdiff_t)i * kp;
            for (j = 0; j < n; j++) {
                const uint8_t *bj = b + (ptrdiff_t)j * kp;
                int32_t s0 = 0;
                for (k = 0; k < kp; k++) s0 += a0[k] * bj[k];
                c[j * ldj + i * ldi] = s0 + off[i];
            }
        }
    }

    #define QCC_I8_GEMM(NAME, ATTR)                                                   \\
        ATTR static void NAME(const int8_t *a, const uint8_t *b, int32_t *c,          \\
                              ptrdiff_t ldi, ptrdiff_t ldj, int m, int n, int kp,     \\
                              const int32_t *off)                                     \\
        { qcc_i8_gemm_body(a, b, c, ldi, ldj, m, n, kp, off); }

    #ifdef QCC_I8_X86
    QCC_I8_GEMM(qcc_i8_gemm_vnni,
                __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))))
    QCC_I8_GEMM(qcc_i8_gemm_avx2, __attribute__((target("avx2,fma"))))
    #endif
    QCC_I8_GEMM(qcc_i8_gemm_base, )

    /* 0: AVX-512 VNNI, 1: AVX2, 2: baseline. */
    static int qcc_i8_supported(int isa)
    {
    #ifdef QCC_I8_X86
        __builtin_cpu_init();
        if (isa == 0)
            return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw")
                   && __builtin_cpu_supports("avx512vl");
        if (isa == 1) return __builtin_cpu_supports("avx2");
    #endif
        return isa == 2;
    }

    static qcc_i8_gemm_fn qcc_i8_gemm_of(int isa)
    {
    #ifdef QCC_I8_X86
        if (isa == 0) return qcc_i8_gemm_vnni;
        if (isa == 1) return qcc_i8_gemm_avx2;
    #endif
        return qcc_i8_gemm_base;
    }

    /* Bytes of the padded copy of one group's input planes. */
    static ptrdiff_t qcc_i8_pad_size(const qcc_i8_geom *g)
    {
        return (ptrdiff_t)g->cg * g->dims[0] * g->dims[1] * g->dims[2];
    }

    /* p[c, d, h, w] = x[c, d - pb0, h - pb1, w - pb2] + 128 inside the input, `fill`
       (z_x + 128) elsewhere, for the cg planes of one group. */
    static void qcc_i8_pad(const int8_t *x, uint8_t *p, const qcc_i8_geom *g, uint8_t fill)
    {
        const ptrdiff_t row = g->dims[2], plane = (ptrdiff_t)g->dims[1] * row;
        const ptrdiff_t vol = g->dims[0] * plane;
        const ptrdiff_t pin = (ptrdiff_t)g->sp[0] * g->sp[1] * g->sp[2];
        int c, d, h, w;
        memset(p, fill, g->cg * vol);
        for (c = 0; c < g->cg; c++)
            for (d = 0; d < g->sp[0]; d++)
                for (h = 0; h < g->sp[1]; h++) {
                    const int8_t *src = x + c * pin + ((ptrdiff_t)d * g->sp[1] + h) * g->sp[2];
                    uint8_t *dst = p + c * vol + (d + g->pb[0]) * plane
                                   + (h + g->pb[1]) * row + g->pb[2];
                    for (w = 0; w < g->sp[2]; w++) dst[w] = (uint8_t)(src[w] ^ 0x80);
                }
    }

    /* Column rows for output positions [p0, p1): row r holds the kc taps of position
       p0 + r in (c, kd, kh, kw) order, then zeros up to kp. */
    static void qcc_i8_im2col(const uint8_t *p, const qcc_i8_geom *g, uint8_t *col,
                              ptrdiff_t p0, ptrdiff_t p1)
    {
        const ptrdiff_t row = g->dims[2], plane = (ptrdiff_t)g->dims[1] * row;
        const ptrdiff_t vol = g->dims[0] * plane;
        const int ohw = g->osp[1] * g->osp[2];
        ptrdiff_t q;
        for (q = p0; q < p1; q++) {
            uint8_t *dst = col + (q - p0) * g->kp;
            const int od = (int)(q / ohw), oh = (int)(q % ohw) / g->osp[2];
            const int ow = (int)(q % g->osp[2]);
            const uint8_t *base = p + od * g->st[0] * plane + oh * g->st[1] * row
                                  + ow * g->st[2];
            int c, kd, kh, kw, t = 0;
            for (c = 0; c < g->cg; c++)
                for (kd = 0; kd < g->k[0]; kd++)
                    for (kh = 0; kh < g->k[1]; kh++) {
                        const uint8_t *src = base + c * vol + kd * g->dl[0] * plane
                                             + kh * g->dl[1] * row;
                        if (g->dl[2] == 1) {
                            memcpy(dst + t, src, g->k[2]);
                            t += g->k[2];
                        } else {
                            for (kw = 0; kw < g->k[2]; kw++) dst[t++] = src[kw * g->dl[2]];
                        }
                    }
            memset(dst + t, 0, g->kp - t);
        }
    }

    /* out[O, P] of one image: per group, pad, then im2col and GEMM tile by tile. */
    static void qcc_i8_conv_image(const int8_t *x, const int8_t *w, const int32_t *off,
                                  int32_t *out, const qcc_i8_geom *g, int groups,
                                  uint8_t fill, uint8_t *pad, uint8_t *col, ptrdiff_t tile,
                                  qcc_i8_gemm_fn gemm)
    {
        const ptrdiff_t pin = (ptrdiff_t)g->sp[0] * g->sp[1] * g->sp[2];
        const ptrdiff_t pout = (ptrdiff_t)g->osp[0] * g->osp[1] * g->osp[2];
        int gi;
        ptrdiff_t p0, p1;
        for (gi = 0; gi < groups; gi++) {
            qcc_i8_pad(x + gi * g->cg * pin, pad, g, fill);
            for (p0 = 0; p0 < pout; p0 = p1) {
                p1 = p0 + tile < pout ? p0 + tile : pout;
                qcc_i8_im2col(pad, g, col, p0, p1);
                gemm(w + (ptrdiff_t)gi * g->og * g->kp, col,
                     out + (ptrdiff_t)gi * g->og * pout + p0, pout, 1, g->og, (int)(p1 - p0),
                     g->kp, off + gi * g->og);
            }
        }
    }

    /* Rows of x [m, k] as u8 (x + 128) padded with zeros to kp. */
    static void qcc_i8_rows(const int8_t *x, uint8_t *u, ptrdiff_t m, int k, int kp)
    {
        ptrdiff_t i;
        int t;
        for (i = 0; i < m; i++) {
            for (t = 0; t < k; t++) u[i * kp + t] = (uint8_t)(x[i * k + t] ^ 0x80);
            for (; t < kp; t++) u[i * kp + t] = 0;
        }
    }
    """
    ctypedef struct qcc_i8_geom:
        int cg, og
        int sp[3]
        int k[3]
        int osp[3]
        int st[3]
        int pb[3]
        int dl[3]
        int dims[3]
        int kc, kp
    ctypedef void (*qcc_i8_gemm_fn)(const int8_t*, const uint8_t*, int32_t*, Py_ssize_t,
                                    Py_ssize_t, int, int, int, const int32_t*) noexcept nogil
    int qcc_i8_supported(int isa) nogil
    qcc_i8_gemm_fn qcc_i8_gemm_of(int isa) nogil
    Py_ssize_t qcc_i8_pad_size(const qcc_i8_geom* g) nogil
    void qcc_i8_conv_image(const int8_t* x, const int8_t* w, const int32_t* off,
                           int32_t* out, const qcc_i8_geom* g, int groups, uint8_t fill,
                           uint8_t* pad, uint8_t* col, Py_ssize_t tile,
                           qcc_i8_gemm_fn gemm) nogil
    void qcc_i8_rows(const int8_t* x, uint8_t* u, Py_ssize_t m, int k, int kp) nogil


ISAS = ("avx512vnni", "avx2", "baseline")
"""Instruction sets of the GEMM, best first."""

# Bytes of the column buffer per tile (it stays in the L2 cache).
cdef Py_ssize_t TILE_BYTES = 256 << 10

# QCC_ISA level -> the first entry of ISAS it allows.
_CEILING = {"avx512": 0, "avx2": 1, "scalar": 2}


def default_isa():
    """The best instruction set this CPU runs at or below QCC_ISA (unset or unknown:
    the best one)."""
    first = _CEILING.get(os.environ.get("QCC_ISA", "").strip().lower(), 0)
    return next(name for i, name in enumerate(ISAS) if i >= first and qcc_i8_supported(i))


cdef int _isa = ISAS.index(default_isa())


def supported_isas():
    """The instruction sets this CPU runs, best first."""
    return [name for i, name in enumerate(ISAS) if qcc_i8_supported(i)]


def isa():
    """The instruction set the kernels use now."""
    return ISAS[_isa]


def set_isa(name):
    """Use instruction set `name` (one of `supported_isas()`; None: `default_isa()`);
    returns the previous."""
    global _isa
    if name is None:
        name = default_isa()
    if name not in ISAS or not qcc_i8_supported(ISAS.index(name)):
        raise ValueError(f"instruction set {name!r} is not supported here "
                         f"(supported: {', '.join(supported_isas())})")
    old = ISAS[_isa]
    _isa = ISAS.index(name)
    return old


def padded_length(int k):
    """Column length the packed weights and columns use: k rounded up to 32."""
    return (k + 31) // 32 * 32


def _pad3(vals, int fill):
    vals = [int(v) for v in vals]
    return [fill] * (3 - len(vals)) + vals


def conv(x, wpack, off, kernel, int z_x, strides, pads, dilations, int groups):
    """int32 [N, O, *OS] = sum((x - z_x) * w) + b of int8 x [N, C, *S] (1-3 spatial dims).

    `wpack` is int8 [O, padded_length(C / groups * prod(kernel))] (weights of output
    channel o, flattened in (c, *kernel) order, zero-padded); `off` int32 [O] is
    b - (z_x + 128) * sum(w[o]). pads in ONNX order (all begins, then all ends).
    """
    cdef int d = x.ndim - 2
    cdef int i
    x = np.ascontiguousarray(x, np.int8)
    cdef int n_img = x.shape[0]
    cdef int c = x.shape[1]
    cdef int o = wpack.shape[0]
    cdef qcc_i8_geom g
    osp = []
    for i in range(d):
        span = int(dilations[i]) * (int(kernel[i]) - 1) + 1
        osp.append((x.shape[2 + i] + int(pads[i]) + int(pads[d + i]) - span)
                   // int(strides[i]) + 1)
    sp, ks, st = _pad3(x.shape[2:], 1), _pad3(kernel, 1), _pad3(strides, 1)
    pb, dl, os3 = _pad3(pads[:d], 0), _pad3(dilations, 1), _pad3(osp, 1)
    g.cg = c // groups
    g.og = o // groups
    for i in range(3):
        g.sp[i], g.k[i], g.st[i], g.pb[i], g.dl[i], g.osp[i] = sp[i], ks[i], st[i], pb[i], dl[i], os3[i]
        need = (os3[i] - 1) * st[i] + (ks[i] - 1) * dl[i] + 1
        g.dims[i] = max(need, pb[i] + sp[i])
    g.kc = g.cg * g.k[0] * g.k[1] * g.k[2]
    g.kp = wpack.shape[1]
    if g.kp != padded_length(g.kc) or o % groups or c % groups:
        raise ValueError(f"packed weight {wpack.shape} does not fit x {x.shape}, kernel "
                         f"{tuple(kernel)} and groups {groups}")
    out = np.empty((n_img, o, *osp), np.int32)
    cdef Py_ssize_t pout = <Py_ssize_t>g.osp[0] * g.osp[1] * g.osp[2]
    cdef Py_ssize_t pin = <Py_ssize_t>g.sp[0] * g.sp[1] * g.sp[2]
    cdef Py_ssize_t tile = max(1, min(pout, TILE_BYTES // g.kp))
    pad = np.empty(max(1, qcc_i8_pad_size(&g)), np.uint8)
    col = np.empty(tile * g.kp, np.uint8)
    cdef const int8_t[::1] xv = x.reshape(-1)
    cdef const int8_t[:, ::1] wv = np.ascontiguousarray(wpack, np.int8)
    cdef const int32_t[::1] ov = np.ascontiguousarray(off, np.int32)
    cdef int32_t[::1] outv = out.reshape(-1)
    cdef uint8_t[::1] padv = pad
    cdef uint8_t[::1] colv = col
    cdef uint8_t fill = <uint8_t>(z_x + 128)
    cdef qcc_i8_gemm_fn gemm = qcc_i8_gemm_of(_isa)
    cdef int ni
    with nogil:
        for ni in range(n_img):
            qcc_i8_conv_image(&xv[0] + <Py_ssize_t>ni * c * pin, &wv[0, 0], &ov[0],
                              &outv[0] + <Py_ssize_t>ni * o * pout, &g, groups, fill,
                              &padv[0], &colv[0], tile, gemm)
    return out


def dense(x, wpack, off):
    """int32 [M, N] = (x - z_x) @ w^T + b of int8 x [M, K]; `wpack` int8 [N,
    padded_length(K)], `off` int32 [N] = b - (z_x + 128) * sum(w[n])."""
    x = np.ascontiguousarray(x, np.int8)
    cdef Py_ssize_t m = x.shape[0]
    cdef int k = x.shape[1]
    cdef int n = wpack.shape[0]
    cdef int kp = wpack.shape[1]
    if kp != padded_length(k):
        raise ValueError(f"packed weight {wpack.shape} does not fit x {x.shape}")
    out = np.empty((m, n), np.int32)
    if m == 0 or n == 0:
        return out
    rows = np.empty((m, kp), np.uint8)
    cdef const int8_t[:, ::1] xv = x if k else np.zeros((m, 1), np.int8)
    cdef const int8_t[:, ::1] wv = np.ascontiguousarray(wpack, np.int8)
    cdef const int32_t[::1] ov = np.ascontiguousarray(off, np.int32)
    cdef int32_t[:, ::1] outv = out
    cdef uint8_t[:, ::1] rv = rows
    cdef qcc_i8_gemm_fn gemm = qcc_i8_gemm_of(_isa)
    with nogil:
        qcc_i8_rows(&xv[0, 0], &rv[0, 0], m, k, kp)
        gemm(&wv[0, 0], &rv[0, 0], &outv[0, 0], 1, n, n, <int>m, kp, &ov[0])
    return out
