# cython: language_level=3
"""Convolution kernels of the reference runtime (float32, NCHW, 1-3 spatial dims).

Every spatial problem is handled as a 3-D one: 1-D and 2-D inputs get leading
spatial dims of size 1 (kernel 1, stride 1, pad 0, dilation 1), which costs nothing
in the inner loops. Convolutions are a GEMM per image and group, out[og, P] =
b + w[og, Kc] @ im2col(x)[Kc, P], computed by qcc's own blocked GEMM
(_gemm_impl.h) that gathers the im2col columns from the padded input while packing
them (a batch of small 1-D or 2-D outputs is one GEMM over all its images): every output element is bias + a chain of FMAs in ascending k, the same for
every output channel and position, on every instruction set (AVX-512, AVX2+FMA,
plain C) and thread count. Convolutions with one input channel per group
(depthwise) are a direct loop whose planes the threads share, rounded like the GEMM
(bias, then FMAs in ascending tap order): output rows in the vector lanes, or, on
planes with short rows, 16 channels side by side in the lanes. A 1x1 kernel on a 1x1
plane (squeeze-and-excitation) is a matrix-vector product per image
(_gemv_impl.h: dots in 16 lanes added in a fixed order, then the bias; the same
bits on every instruction set and thread count). A fused epilogue
(batch-norm affine, residual add, activation, fake-quant; runtime/_common.h) is
applied to each finished output. ConvTranspose is BLAS sgemm + col2im. The inner
loops are C in _conv_impl.h and _gemm_impl.h.
"""

import os
import threading

import numpy as np

from qcc.runtime._kernels import as_f32, out_buffer

cimport numpy as cnp
from libc.string cimport memset
from scipy.linalg.cython_blas cimport sgemm

cnp.import_array()

# Bytes of ConvTranspose's col2im buffer per tile: bounds the scratch memory of big
# layers. Larger tiles measured faster than cache-sized ones (fewer, bigger gemm
# calls, fewer wake-ups of the BLAS threads).
cdef int TILE_BYTES = 8 << 20

cdef extern from "_gemv_impl.h" nogil:
    void qcc_gemv(const float *x, const float *w, const float *bias, float *y, int m, int n,
                  int k, int level, int threads)

cdef extern from "_conv_impl.h" nogil:
    ctypedef struct qcc_geom:
        int cg, og
        int sp[3]
        int k[3]
        int osp[3]
        int st[3]
        int pb[3]
        int dl[3]
    void qcc_col2im(const float* col, float* out, const qcc_geom* g, int r0, int r1)
    Py_ssize_t qcc_depthwise_scratch(const qcc_geom* g)
    Py_ssize_t qcc_conv_gemm_pad_size(const qcc_geom* g)
    ctypedef struct qcc_act:
        int kind
        float lo, hi
        const float* base
        Py_ssize_t plane
        int channels
        const float* mul
        const float* shift
        const float* add
        const float* fq_scale
        const float* fq_zero
        int fq_per_channel
        float qmin, qmax
    int QCC_ACT_NONE, QCC_ACT_RELU, QCC_ACT_CLIP, QCC_ACT_HARD_SWISH
    int QCC_ACT_HARD_SIGMOID, QCC_ACT_SIGMOID
    void qcc_activate_best(const qcc_act* act, float* c, Py_ssize_t ldc, int rows,
                           Py_ssize_t cols)
    int qcc_conv_gemm(const float* x, const float* w, const float* wp, int wp_mr, int wp_kc,
                      const float* bias, float* out, const qcc_geom* g, float* pad,
                      Py_ssize_t* kofs, const qcc_act* act)
    bint qcc_conv_gemm_batches(const qcc_geom* g, int n_img)
    Py_ssize_t qcc_conv_gemm_images_size(const qcc_geom* g, int n_img)
    int qcc_conv_gemm_images(const float* x, Py_ssize_t x_img, const float* w,
                             const float* wp, int wp_mr, int wp_kc, const float* bias,
                             float* out,
                             Py_ssize_t out_img,
                             const qcc_geom* g, int n_img, float* scratch, Py_ssize_t* kofs,
                             const qcc_act* act)
    int qcc_depthwise(const float* x, const float* w, const float* bias, float* out,
                      const qcc_geom* g, int n_img, int groups, const qcc_act* act,
                      int threads)
    int qcc_gemm_variant()
    int qcc_gemm_mr(int n, int taps)
    size_t qcc_gemm_packed_size(int m, int k, int mr)
    void qcc_gemm_pack_a(const float* a, Py_ssize_t lda, int m, int k, int mr, int kc,
                         float* ap)
    int qcc_gemm_chunk(int k, int n, int taps)
    const char* qcc_gemm_variant_name(int v)
    int qcc_gemm_set_variant(int v)
    int qcc_gemm_supported(int v)
    int QCC_GEMM_NVARIANTS
    int qcc_gemm_threads
    int qcc_dwcb_max_ow
    void qcc_gemm_set_threads(int n)
    int qcc_gemm_mc, qcc_gemm_kc, qcc_gemm_nc
    double qcc_gemm_par_min
    int qcc_gemm_t_max_n
    void qcc_gemm_set_blocking(int mc, int kc, int nc)

ctypedef qcc_geom Geom


_local = threading.local()


def _variants():
    """Names of the GEMM variants this CPU runs, best last (plain, avx2, avx512)."""
    return [qcc_gemm_variant_name(v).decode() for v in range(QCC_GEMM_NVARIANTS)
            if qcc_gemm_supported(v)]


def _variant():
    """Name of the GEMM variant in use."""
    return qcc_gemm_variant_name(qcc_gemm_variant()).decode()


# QCC_ISA level -> the best GEMM variant it allows.
_CEILING = {"scalar": "plain", "avx2": "avx2", "avx512": "avx512"}


def _default_variant():
    """The best GEMM variant this CPU runs at or below the level QCC_ISA names
    (scalar, avx2, avx512; unset or unknown: the best one)."""
    names = _variants()   # best last (no negative indexing: wraparound is off)
    cap = _CEILING.get(os.environ.get("QCC_ISA", "").strip().lower())
    if cap in names:
        return cap
    return names[len(names) - 1]


def _set_variant(name):
    """Force the GEMM variant `name` ('plain', 'avx2', 'avx512'; None: the default,
    `_default_variant()`); returns the old name. For tests and benchmarks."""
    old = _variant()
    cdef int v
    if name is None:
        name = _default_variant()
    for v in range(QCC_GEMM_NVARIANTS):
        if qcc_gemm_variant_name(v).decode() == name:
            if qcc_gemm_set_variant(v):
                raise ValueError(f"GEMM variant {name!r} does not run on this CPU")
            return old
    raise ValueError(f"unknown GEMM variant {name!r}")


_set_variant(None)   # QCC_ISA applies from import on


def _set_threads(int n):
    """Set how many threads a convolution's GEMM uses; returns the old count."""
    old = qcc_gemm_threads
    qcc_gemm_set_threads(n)
    return old


def _set_blocking(int mc, int kc, int nc):
    """Set the GEMM cache blocking (output channels, depth, positions per block) for
    tests and benchmarks; returns the old triple. Results do not depend on it."""
    old = (qcc_gemm_mc, qcc_gemm_kc, qcc_gemm_nc)
    qcc_gemm_set_blocking(mc, kc, nc)
    return old


def _set_depthwise_lanes_below(int ow):
    """Depthwise convolutions whose output rows are shorter than `ow` run with 16
    channels side by side in the vector lanes, longer ones row by row (for tests: 0
    forces rows, a large value forces lanes; both give the same bits); returns the
    old bound."""
    global qcc_dwcb_max_ow
    old = qcc_dwcb_max_ow
    qcc_dwcb_max_ow = ow
    return old


def _set_by_channels_max_n(int n):
    """GEMMs of at most `n` columns put the output channels in the vector lanes on
    AVX-512 (runtime/_gemm_impl.h, qcc_gemm_t_work); 0 turns that path off (for tests
    and benchmarks: the bits are the same); returns the old bound."""
    global qcc_gemm_t_max_n
    old = qcc_gemm_t_max_n
    qcc_gemm_t_max_n = max(n, 0)
    return old


def _set_parallel_min(double madds):
    """Set the multiply-adds below which a GEMM runs on one thread (for tests);
    returns the old value."""
    global qcc_gemm_par_min
    old = qcc_gemm_par_min
    qcc_gemm_par_min = madds
    return old


# One thread pool for the whole runtime: this module's jobs run on the workers of
# qcc.runtime._kernels (runtime/_common.h).
from cpython.pycapsule cimport PyCapsule_GetPointer
cdef extern from "_common.h":
    void qcc_pool_bind(void *p)
from qcc.runtime._kernels import _pool_capsule
qcc_pool_bind(PyCapsule_GetPointer(_pool_capsule, "qcc.runtime.pool"))

from qcc.runtime.threads import default_threads as _default_threads


qcc_gemm_set_threads(_default_threads())


def _set_tile_bytes(int nbytes):
    """Set the col2im tile size in bytes (for benchmarks); returns the old one."""
    global TILE_BYTES
    old = TILE_BYTES
    TILE_BYTES = max(nbytes, 4)
    return old


def _workspace(Py_ssize_t size):
    """A per-thread float32 scratch buffer of at least `size` elements."""
    buf = getattr(_local, "buf", None)
    if buf is None or buf.shape[0] < size:
        buf = np.empty(max(size, 1), np.float32)
        _local.buf = buf
    return buf


def _pad3(vals, int d, int fill):
    """Left-pad a per-spatial-dim tuple of length d to length 3."""
    vals = [int(v) for v in vals]
    if len(vals) != d:
        raise ValueError(f"expected {d} values, got {vals}")
    return [fill] * (3 - d) + vals


def _attrs(int d, strides, pads, dilations):
    """Per-dim attribute tuples for d spatial dims; None means ONNX's default."""
    if not 1 <= d <= 3:
        raise ValueError(f"expected 1-3 spatial dims, got {d}")
    strides = (1,) * d if strides is None else tuple(int(v) for v in strides)
    pads = (0,) * (2 * d) if pads is None else tuple(int(v) for v in pads)
    dilations = (1,) * d if dilations is None else tuple(int(v) for v in dilations)
    if len(strides) != d or len(dilations) != d or len(pads) != 2 * d:
        raise ValueError(f"strides {strides}, pads {pads}, dilations {dilations} do not "
                         f"match {d} spatial dims")
    if min(strides + dilations) < 1 or (pads and min(pads) < 0):
        raise ValueError(f"bad strides {strides}, pads {pads} or dilations {dilations}")
    return strides, pads, dilations


cdef Geom _geom(x_shape, k_shape, strides, pads, dilations, osp, int cg, int og):
    """Fill a Geom from attributes checked by _attrs (d spatial dims, 1 <= d <= 3)."""
    cdef Geom g
    cdef int d = len(x_shape) - 2
    cdef int i
    sp = _pad3(x_shape[2:], d, 1)
    ks = _pad3(k_shape, d, 1)
    st = _pad3(strides, d, 1)
    pb = _pad3(pads[:d], d, 0)
    dl = _pad3(dilations, d, 1)
    os3 = _pad3(osp, d, 1)
    g.cg = cg
    g.og = og
    for i in range(3):
        g.sp[i] = sp[i]
        g.k[i] = ks[i]
        g.osp[i] = os3[i]
        g.st[i] = st[i]
        g.pb[i] = pb[i]
        g.dl[i] = dl[i]
    return g


cdef void _fill_bias(float* out, const float* bias, int nch, Py_ssize_t plane) noexcept nogil:
    """out[c, :] = bias[c] (or 0 without bias) for nch planes of `plane` elements."""
    cdef int c
    cdef Py_ssize_t i
    cdef float v
    for c in range(nch):
        if bias == NULL:
            memset(out + c * plane, 0, plane * sizeof(float))
        else:
            v = bias[c]
            for i in range(plane):
                out[c * plane + i] = v


cdef void _sgemm_rm(const float* a, int lda, bint ta, const float* b, int ldb, bint tb,
                    float* c, int ldc, int m, int n, int k, float beta) noexcept nogil:
    """Row-major c[m,n] = op(a)[m,k] @ op(b)[k,n] + beta*c with BLAS sgemm."""
    cdef float alpha = 1.0
    cdef char tra = b'T' if ta else b'N'
    cdef char trb = b'T' if tb else b'N'
    # Row-major C = A B is column-major C^T = B^T A^T.
    sgemm(&trb, &tra, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda,
          &beta, c, &ldc)


cdef qcc_act _activation(activation) except *:
    """None, "relu", ("clip", lo, hi), "hard_swish", ("hard_sigmoid", alpha, beta) or
    "sigmoid" as a qcc_act (no residual, no fake-quant)."""
    cdef qcc_act act
    memset(&act, 0, sizeof(act))
    if activation is None:
        return act
    if activation in ("relu", "hard_swish", "sigmoid"):
        act.kind = {"relu": QCC_ACT_RELU, "hard_swish": QCC_ACT_HARD_SWISH,
                    "sigmoid": QCC_ACT_SIGMOID}[activation]
        return act
    if isinstance(activation, tuple) and len(activation) == 3 and \
            activation[0] in ("clip", "hard_sigmoid"):
        act.kind = QCC_ACT_CLIP if activation[0] == "clip" else QCC_ACT_HARD_SIGMOID
        act.lo = <float>float(activation[1])
        act.hi = <float>float(activation[2])
        return act
    raise ValueError(f"conv activation {activation!r}: expected None, 'relu', ('clip', "
                     "lo, hi), 'hard_swish', ('hard_sigmoid', alpha, beta) or 'sigmoid'")


cdef class WeightPack:
    """A conv's constant weights packed for the GEMM (runtime/_gemm_impl.h: panels of
    as many output channels as the instruction set's register tile has rows). Made
    empty by the plan for a conv whose weights are a constant, filled by `conv` on its
    first call and owned by the plan's step; `conv` packs again when called with other
    weights or after the instruction set changed."""

    cdef object source
    cdef object data
    cdef int mr, kc, groups

    def __init__(self):
        self.source = None
        self.data = None
        self.mr = 0
        self.kc = 0
        self.groups = 0

    @property
    def nbytes(self):
        """Bytes of the packed weights (0 before the first call)."""
        return 0 if self.data is None else self.data.nbytes


cdef object _packed(WeightPack pack, object w_given, w, int groups, int og, int kc, int n,
                    int taps):
    """pack's array of w for GEMMs of n columns and `taps` kernel taps (packed now
    unless it holds w_given in the layout they take)."""
    cdef int mr = qcc_gemm_mr(n, taps)
    cdef int chunk = qcc_gemm_chunk(kc, n, taps)
    cdef Py_ssize_t per = qcc_gemm_packed_size(og, kc, mr)
    cdef int gi
    if pack.source is w_given and pack.mr == mr and pack.kc == chunk and \
            pack.groups == groups:
        return pack.data
    data = np.empty(max(per * groups, 1), np.float32)
    cdef const float[::1] wv = w.reshape(-1)
    cdef float[::1] dv = data
    with nogil:
        for gi in range(groups):
            qcc_gemm_pack_a(&wv[0] + <Py_ssize_t>gi * og * kc, kc, og, kc, mr, chunk,
                            &dv[0] + gi * per)
    pack.source = w_given
    pack.data = data
    pack.mr = mr
    pack.kc = chunk
    pack.groups = groups
    return data


def conv(x, w, b, strides, pads, dilations, int groups, out=None, activation=None,
         residual=None, fake_quant=None, affine=None, WeightPack pack=None):
    """ONNX Conv: x[N,C,*S] * w[O,C/groups,*K] + b[O] -> [N,O,*OS], 1-3 spatial dims.

    strides, dilations: one value per spatial dim; pads: ONNX order
    (begin_1..begin_d, end_1..end_d); None means the ONNX default (1s, 0s).
    OS = floor((S + pb + pe - dil*(K-1) - 1)/stride) + 1. b may be None. Writes into
    and returns `out` (a C-contiguous float32 array of the output shape, or None to
    allocate one). `activation`: None, "relu" (numpy's maximum(y, 0)) or ("clip", lo,
    hi) (numpy's clip(y, float32(lo), float32(hi))), applied to each output once its
    sum is complete (fused: the sums are the same as without it); also
    "hard_swish", ("hard_sigmoid", alpha, beta) and "sigmoid" (qnn_eval's float32
    formulas). `residual` (a float32 array of the output's shape, not `out`) is added
    to each finished output before the activation; `fake_quant` = (scales,
    zero_points, qmin, qmax), float32 arrays of 1 or O values, fake-quantizes each
    output after it; `affine` = (mul, shift), float32 arrays of O values, scales
    and shifts each output per channel before all that (see runtime/_common.h).
    `pack`: a WeightPack that keeps w packed for the GEMM from call to call (for
    constant weights; the same bits as without).
    """
    cdef int i
    cdef qcc_act act = _activation(activation)
    w_given = w
    x = as_f32(x)
    w = as_f32(w)
    cdef int d = x.ndim - 2
    strides, pads, dilations = _attrs(d, strides, pads, dilations)
    if w.ndim != x.ndim:
        raise ValueError(f"conv: x {x.shape} and w {w.shape} differ in rank")
    cdef int n_img = x.shape[0]
    cdef int c = x.shape[1]
    cdef int o = w.shape[0]
    if groups < 1 or c % groups or o % groups or w.shape[1] * groups != c:
        raise ValueError(f"bad groups={groups} for x {x.shape} and w {w.shape}")
    osp = []
    for i in range(d):
        span = (int(dilations[i]) * (w.shape[2 + i] - 1) + 1)
        size = (x.shape[2 + i] + int(pads[i]) + int(pads[d + i]) - span) // int(strides[i]) + 1
        if size < 1:
            raise ValueError(f"empty conv output for x {x.shape} w {w.shape}")
        osp.append(size)
    out = out_buffer(out, (n_img, o) + tuple(osp))
    cdef Geom g = _geom(x.shape, w.shape[2:], strides, pads, dilations, osp,
                        c // groups, o // groups)
    bias = None if b is None else as_f32(b).reshape(-1)
    if bias is not None and bias.shape[0] != o:
        raise ValueError(f"bias of {bias.shape[0]} values for {o} output channels")
    cdef const float[::1] xv = x.reshape(-1)
    cdef const float[::1] wv = w.reshape(-1)
    cdef float[::1] ov = out.reshape(-1)
    cdef const float[::1] bv = bias if bias is not None else np.zeros(1, np.float32)
    cdef const float* bp = &bv[0] if bias is not None else NULL
    cdef bint depthwise = g.cg == 1 and g.k[0] * g.k[1] * g.k[2] > 1
    cdef Py_ssize_t pin = <Py_ssize_t>g.sp[0] * g.sp[1] * g.sp[2]
    cdef Py_ssize_t pout = <Py_ssize_t>g.osp[0] * g.osp[1] * g.osp[2]
    cdef int kk = g.k[0] * g.k[1] * g.k[2]
    cdef int kc = g.cg * kk
    # a 1x1 kernel on a 1x1 plane (squeeze-and-excitation, a classifier as a conv):
    # matrix-vector products over the images, x [N, C] and w [O, C]
    cdef bint vector = (groups == 1 and kk == 1 and pin == 1 and pout == 1
                        and g.pb[0] == 0 and g.pb[1] == 0 and g.pb[2] == 0)
    cdef bint batched = not depthwise and not vector and qcc_conv_gemm_batches(&g, n_img)
    cdef float[::1] ws = _workspace(1 if depthwise or vector else
                                    qcc_conv_gemm_images_size(&g, n_img) if batched else
                                    qcc_conv_gemm_pad_size(&g))
    cdef Py_ssize_t[::1] kofs = np.empty(max(kc, 1), np.intp)
    cdef const float[::1] pv
    cdef const float* wpp = NULL
    cdef int wp_mr = 0
    cdef int wp_kc = 0
    cdef Py_ssize_t wp_group = 0
    if pack is not None and not depthwise and not vector:
        pv = _packed(pack, w_given, w, groups, g.og, kc, pout * n_img if batched else pout,
                     kk)
        wpp = &pv[0]
        wp_mr = pack.mr
        wp_kc = pack.kc
        wp_group = qcc_gemm_packed_size(g.og, kc, wp_mr)
    cdef const float[::1] rv
    cdef const float[::1] sv
    cdef const float[::1] zv
    cdef const float[::1] mv
    cdef const float[::1] hv
    if residual is not None or fake_quant is not None or affine is not None:
        act.base = &ov[0]
        act.plane = pout
        act.channels = o
    if residual is not None:
        residual = as_f32(residual)
        if residual.shape != out.shape or np.shares_memory(residual, out):
            raise ValueError(f"conv residual {residual.shape}: expected a separate array "
                             f"of the output's shape {out.shape}")
        rv = residual.reshape(-1)
        act.add = &rv[0]
    if affine is not None:
        mul, shift = (as_f32(v).reshape(-1) for v in affine)
        if mul.shape[0] != o or shift.shape[0] != o:
            raise ValueError(f"conv affine: {mul.shape[0]} and {shift.shape[0]} values "
                             f"for {o} output channels")
        mv = mul
        hv = shift
        act.mul = &mv[0]
        act.shift = &hv[0]
    if fake_quant is not None:
        scales, zeros, qmin, qmax = fake_quant
        scales = as_f32(scales).reshape(-1)
        zeros = as_f32(zeros).reshape(-1)
        if scales.shape[0] not in (1, o) or zeros.shape[0] != scales.shape[0]:
            raise ValueError(f"conv fake_quant: {scales.shape[0]} scales and "
                             f"{zeros.shape[0]} zero points for {o} output channels")
        sv = scales
        zv = zeros
        act.fq_scale = &sv[0]
        act.fq_zero = &zv[0]
        act.fq_per_channel = scales.shape[0] > 1
        act.qmin = <float>float(qmin)
        act.qmax = <float>float(qmax)
    cdef int ni, gi
    cdef int err = 0
    cdef const float* xp
    cdef const float* wp
    cdef float* op
    with nogil:
        if vector:
            qcc_gemv(&xv[0], &wv[0], bp, &ov[0], n_img, o, c, qcc_gemm_variant(),
                     qcc_gemm_threads)
            qcc_activate_best(&act, &ov[0], o, n_img, o)
        elif depthwise:
            err = qcc_depthwise(&xv[0], &wv[0], bp, &ov[0], &g, n_img, groups, &act,
                                qcc_gemm_threads)
        elif batched:
            for gi in range(groups):
                err |= qcc_conv_gemm_images(
                    &xv[0] + <Py_ssize_t>gi * g.cg * pin, <Py_ssize_t>c * pin,
                    &wv[0] + <Py_ssize_t>gi * g.og * kc,
                    wpp + gi * wp_group if wpp != NULL else NULL, wp_mr, wp_kc,
                    bp + gi * g.og if bp != NULL else NULL,
                    &ov[0] + <Py_ssize_t>gi * g.og * pout, <Py_ssize_t>o * pout,
                    &g, n_img, &ws[0], &kofs[0], &act)
        else:
            for ni in range(n_img):
                for gi in range(groups):
                    xp = &xv[0] + (<Py_ssize_t>ni * c + gi * g.cg) * pin
                    wp = &wv[0] + <Py_ssize_t>gi * g.og * kc
                    op = &ov[0] + (<Py_ssize_t>ni * o + gi * g.og) * pout
                    err |= qcc_conv_gemm(xp, wp, wpp + gi * wp_group if wpp != NULL else NULL,
                                         wp_mr, wp_kc, bp + gi * g.og if bp != NULL else NULL,
                                         op, &g, &ws[0], &kofs[0], &act)
    if err:
        raise MemoryError("conv: out of memory for the GEMM scratch")
    return out


cdef void _deconv_group(const float* x, const float* w, float* out, float* col,
                        const Geom* g, int rows_per_tile) noexcept nogil:
    """out[og, OS] += col2im(w[cg, og*KK]^T @ x[cg, P]) for one image and group."""
    cdef int nk = g.og * g.k[0] * g.k[1] * g.k[2]
    cdef int nrows = g.sp[0] * g.sp[1]
    cdef int w_n = g.sp[2]
    cdef int pin = nrows * w_n
    cdef int r0, r1, npos
    r0 = 0
    while r0 < nrows:
        r1 = r0 + rows_per_tile
        if r1 > nrows:
            r1 = nrows
        npos = (r1 - r0) * w_n
        _sgemm_rm(w, nk, True, x + <Py_ssize_t>r0 * w_n, pin, False, col, npos,
                  nk, npos, g.cg, 0.0)
        qcc_col2im(col, out, g, r0, r1)
        r0 = r1


def conv_transpose(x, w, b, strides, pads, dilations, int groups, output_padding,
                   out=None):
    """ONNX ConvTranspose: x[N,C,*S], w[C,O/groups,*K], b[O] -> [N,O,*OS].

    OS = stride*(S-1) + output_padding + ((K-1)*dil+1) - pb - pe, with pads in ONNX
    order (begin_1..begin_d, end_1..end_d); None attributes mean the ONNX defaults.
    gemm + col2im per group; b may be None. Writes into and returns `out`.
    """
    cdef int i
    x = as_f32(x)
    w = as_f32(w)
    cdef int d = x.ndim - 2
    strides, pads, dilations = _attrs(d, strides, pads, dilations)
    output_padding = (0,) * d if output_padding is None else tuple(output_padding)
    if w.ndim != x.ndim or len(output_padding) != d:
        raise ValueError(f"conv_transpose: x {x.shape}, w {w.shape} and output_padding "
                         f"{output_padding} do not match")
    cdef int n_img = x.shape[0]
    cdef int c = x.shape[1]
    if groups < 1 or c % groups or w.shape[0] != c:
        raise ValueError(f"bad groups={groups} for x {x.shape} and w {w.shape}")
    cdef int o = w.shape[1] * groups
    osp = []
    for i in range(d):
        size = (int(strides[i]) * (x.shape[2 + i] - 1) + int(output_padding[i])
                + (w.shape[2 + i] - 1) * int(dilations[i]) + 1
                - int(pads[i]) - int(pads[d + i]))
        if size < 1:
            raise ValueError(f"empty conv_transpose output for x {x.shape} w {w.shape}")
        osp.append(size)
    out = out_buffer(out, (n_img, o) + tuple(osp))
    cdef Geom g = _geom(x.shape, w.shape[2:], strides, pads, dilations, osp,
                        c // groups, o // groups)
    bias = None if b is None else as_f32(b).reshape(-1)
    if bias is not None and bias.shape[0] != o:
        raise ValueError(f"bias of {bias.shape[0]} values for {o} output channels")
    cdef const float[::1] xv = x.reshape(-1)
    cdef const float[::1] wv = w.reshape(-1)
    cdef float[::1] ov = out.reshape(-1)
    cdef const float[::1] bv = bias if bias is not None else np.zeros(1, np.float32)
    cdef const float* bp = &bv[0] if bias is not None else NULL
    cdef Py_ssize_t pin = <Py_ssize_t>g.sp[0] * g.sp[1] * g.sp[2]
    cdef Py_ssize_t pout = <Py_ssize_t>g.osp[0] * g.osp[1] * g.osp[2]
    cdef int nk = g.og * g.k[0] * g.k[1] * g.k[2]
    cdef bint pointwise = nk == g.og
    for i in range(3):
        pointwise = pointwise and g.st[i] == 1 and g.pb[i] == 0 and g.osp[i] == g.sp[i]
    cdef int rows = max(1, min(g.sp[0] * g.sp[1], TILE_BYTES // (4 * nk * g.sp[2])))
    cdef float[::1] col = _workspace(<Py_ssize_t>nk * rows * g.sp[2])
    cdef int ni, gi
    cdef const float* xp
    cdef const float* wp
    cdef float* op
    with nogil:
        for ni in range(n_img):
            op = &ov[0] + <Py_ssize_t>ni * o * pout
            _fill_bias(op, bp, o, pout)
            for gi in range(groups):
                xp = &xv[0] + (<Py_ssize_t>ni * c + gi * g.cg) * pin
                wp = &wv[0] + <Py_ssize_t>gi * g.cg * nk
                if pointwise:
                    _sgemm_rm(wp, nk, True, xp, pin, False,
                              op + <Py_ssize_t>gi * g.og * pout, pout,
                              g.og, pout, g.cg, 1.0)
                else:
                    _deconv_group(xp, wp, op + <Py_ssize_t>gi * g.og * pout,
                                  &col[0], &g, rows)
    return out
