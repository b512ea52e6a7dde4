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

import math
import os
import threading

import numpy as np

from qcc.runtime._kernels import as_f32, out_buffer
from qcc.runtime.kernels import aligned as _aligned

cimport numpy as cnp
from libc.string cimport memset
from scipy.linalg.cython_blas cimport sgemm

cnp.import_array()

# Bytes of ConvTranspose's col2im buffer per tile: bounds the scratch memory of big
# layers. Larger tiles measured faster than cache-sized ones (fewer, bigger gemm
# calls, fewer wake-ups of the BLAS threads).
cdef int TILE_BYTES = 8 << 20

cdef extern from "_gemv_impl.h" nogil:
    void qcc_gemv_w(const float *x, const float *w, int packed, const float *bias, float *y,
                    int m, int n, int k, int level, int threads)
    Py_ssize_t qcc_gemv_packed_size(int n, int k)
    void qcc_gemv_pack(const float *w, int n, int k, float *out)

include "_act_types.pxi"

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
    void qcc_activate_best(const qcc_act* act, float* c, Py_ssize_t ldc, int rows,
                           Py_ssize_t cols)
    int qcc_conv_gemm(const float* x, const float* w, const float* wp, int wp_mr, int wp_kc,
                      const float* bias, float* out, const qcc_geom* g, float* pad,
                      Py_ssize_t* kofs, const qcc_act* act)
    bint qcc_conv_gemm_batches(const qcc_geom* g, int n_img)
    bint qcc_conv_images_parallel(const qcc_geom* g, int n_img, int groups, int threads)
    int qcc_conv_images(const float* x, const float* w, const float* wp, int wp_mr, int wp_kc,
                        Py_ssize_t wp_group, const float* bias, float* out, const qcc_geom* g,
                        int n_img, int groups, const qcc_act* act, int threads)
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
    int qcc_gemm_mr(int m, int k, int n, int taps)
    size_t qcc_gemm_packed_size(int m, int k, int mr)
    void qcc_gemm_pack_a(const float* a, Py_ssize_t lda, int m, int k, int mr, int kc,
                         float* ap)
    int qcc_gemm_chunk(int m, int k, int n, int taps)
    const char* qcc_gemm_variant_name(int v)
    int qcc_gemm_set_variant(int v)
    int qcc_gemm_supported(int v)
    int QCC_GEMM_NVARIANTS
    int qcc_gemm_threads
    int qcc_dwcb_max_ow
    void qcc_gemm_set_threads(int n)
    int qcc_gemm_mc, qcc_gemm_kc, qcc_gemm_nc
    double qcc_gemm_par_min
    int qcc_gemm_rows_outer_k
    double qcc_dw_par_min
    int qcc_gemm_t_max_n
    int qcc_t_kc
    void qcc_gemm_set_blocking(int mc, int kc, int nc)

ctypedef qcc_geom Geom


_local = threading.local()

# Bumped by the setters below that change what Conv._setup works out (the GEMM's
# blocking and paths; the variant is compared itself): a Conv then sets up again.
cdef int _tuning = 0


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
    global _tuning
    _tuning += 1
    old = (qcc_gemm_mc, qcc_gemm_kc, qcc_gemm_nc)
    qcc_gemm_set_blocking(mc, kc, nc)
    return old


def _set_depthwise_lanes_below(int ow):
    """Depthwise convolutions whose output rows are shorter than `ow` run with 16
    channels side by side in the vector lanes (when there are at least as many groups
    of 16 channels as threads, or the rows are shorter than 8), longer ones row by row
    (for tests: 0 forces rows, a large value lanes; both give the same bits); returns
    the old bound."""
    global qcc_dwcb_max_ow
    old = qcc_dwcb_max_ow
    qcc_dwcb_max_ow = ow
    return old


def _set_t_chunk(int kc):
    """Depth per chunk of the tiles with the channels in the lanes (by-channels conv
    and dense kernel; 0: the whole depth, the default); for tests, which cover the
    chunked sums with short chunks (the bits are the same); returns the old value."""
    global _tuning
    _tuning += 1
    global qcc_t_kc
    old = qcc_t_kc
    qcc_t_kc = max(kc, 0)
    return old


def _set_by_channels_max_n(int n):
    """GEMMs of at most `n` columns put the output channels in the vector lanes on
    AVX-512 (runtime/_gemm_lanes.h, qcc_gemm_t_work); 0 turns that path off (for tests
    and benchmarks: the bits are the same); returns the old bound."""
    global _tuning
    _tuning += 1
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


def _set_rows_outer_k(int k):
    """Set the depth up to which column-block GEMM tasks go through their tiles row
    block by row block (for tests and benchmarks); returns the old value."""
    global qcc_gemm_rows_outer_k
    old = qcc_gemm_rows_outer_k
    qcc_gemm_rows_outer_k = k
    return old


def _set_depthwise_parallel_min(double madds):
    """Set the multiply-adds below which a depthwise conv runs on one thread (for
    tests and benchmarks); returns the old value."""
    global qcc_dw_par_min
    old = qcc_dw_par_min
    qcc_dw_par_min = madds
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
        buf = _aligned(max(size, 1))
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


include "_act.pxi"


cdef class WeightPack:
    """A conv's (or a `Dense`'s) constant weights packed for the GEMM
    (runtime/_gemm_impl.h: panels of as many output channels as the instruction set's
    register tile has rows). Made empty by the plan for a conv whose weights are a
    constant (a Dense makes its own), filled by `conv` on its first call and owned by
    the plan's step; `conv` packs again when called with other weights or after the
    instruction set changed."""

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


cdef object _packed(WeightPack pack, object w_given, w, int groups, int og, int kc, int mr,
                    int chunk):
    """pack's array of w ([groups * og, kc]) in panels of mr rows and depth chunks of
    `chunk` (packed now unless it holds w_given in that layout)."""
    cdef Py_ssize_t per = qcc_gemm_packed_size(og, kc, mr)
    cdef int gi
    if pack.source is w_given and pack.mr == mr and pack.kc == chunk and \
            pack.groups == groups:
        return pack.data
    data = _aligned(max(per * groups, 1))
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


cdef object _gemv_packed(WeightPack pack, object w_given, w, int n, int k):
    """pack's array of w ([n, k]) in the matrix-vector kernel's layout
    (runtime/_gemv_impl.h, qcc_gemv_pack; packed now unless it holds w_given so)."""
    if pack.source is w_given and pack.mr == -1 and pack.kc == k and pack.groups == n:
        return pack.data
    data = _aligned(max(qcc_gemv_packed_size(n, k), 1))
    cdef const float[::1] wv = w.reshape(-1)
    cdef float[::1] dv = data
    if n > 0 and k > 0:
        with nogil:
            qcc_gemv_pack(&wv[0], n, k, &dv[0])
    pack.source = w_given
    pack.data = data
    pack.mr = -1   # the matrix-vector layout, not the GEMM's panels
    pack.kc = k
    pack.groups = n
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
    constant weights; the same bits as without). A step that runs many times takes
    a `Conv` instead (the same computation, decoded once).
    """
    return Conv(strides, pads, dilations, groups, activation, fake_quant, affine,
                pack)(x, w, b, out=out, residual=residual)


include "_arrays.pxi"


cdef class Conv:
    """One conv step of a plan, decoded once: `Conv(strides, pads, dilations,
    groups, activation, fake_quant, affine, pack)(x, w, b, out=out,
    residual=residual)` computes `conv` of the same arguments, bit for bit. The
    attributes, the activation and the epilogue's arrays are converted at
    construction; the geometry, the path (GEMM, batched GEMM, depthwise, vector) and
    the packed weights are worked out at the first call and kept while the input
    shape, the weights and bias objects (constants of the plan) and the GEMM's tuning
    stay the same, so a call of the plan's step costs a few checks, not the
    decoding."""

    cdef object strides_in, pads_in, dilations_in
    cdef int groups
    cdef WeightPack pack
    cdef qcc_act act0               # kind, lo, hi, affine and fake-quant pointers
    cdef object keep                # the arrays act0 points into
    cdef int n_mul, n_fq            # values of the affine and fake-quant arrays (-1: none)
    # worked out for one input shape, weights and bias (ready)
    cdef bint ready
    cdef int tuning, variant
    cdef object xshape, oshape, w_given, b_given, w, bias, pdata
    cdef Geom g
    cdef bint vector, depthwise, batched
    cdef Py_ssize_t ws_size, pin, pout, wp_group
    cdef int n_img, c, o, kc, wp_mr, wp_kc

    def __init__(self, strides, pads, dilations, int groups, activation=None,
                 fake_quant=None, affine=None, WeightPack pack=None):
        self.strides_in = strides
        self.pads_in = pads
        self.dilations_in = dilations
        self.groups = groups
        self.pack = pack
        self.act0 = _activation(activation)
        self.keep = []
        self.n_mul = self.n_fq = -1
        self.ready = False
        if affine is not None:
            mul, shift = (as_f32(v).reshape(-1) for v in affine)
            if mul.shape[0] != shift.shape[0]:
                raise ValueError(f"conv affine: {mul.shape[0]} and {shift.shape[0]} values "
                                 f"for one set of output channels")
            self.keep += [mul, shift]
            self.n_mul = mul.shape[0]
            self.act0.mul = _fp(mul)
            self.act0.shift = _fp(shift)
        if fake_quant is not None:
            scales, zeros, qmin, qmax = fake_quant
            scales = as_f32(scales).reshape(-1)
            zeros = as_f32(zeros).reshape(-1)
            if zeros.shape[0] != scales.shape[0]:
                raise ValueError(f"conv fake_quant: {scales.shape[0]} scales and "
                                 f"{zeros.shape[0]} zero points")
            self.keep += [scales, zeros]
            self.n_fq = scales.shape[0]
            self.act0.fq_scale = _fp(scales)
            self.act0.fq_zero = _fp(zeros)
            self.act0.fq_per_channel = scales.shape[0] > 1
            self.act0.qmin = <float>float(qmin)
            self.act0.qmax = <float>float(qmax)

    cdef _setup(self, x, w_given, b):
        """Work out everything but the data for x (C-contiguous float32), w and b."""
        cdef int i
        self.ready = False
        w = as_f32(w_given)
        cdef int d = x.ndim - 2
        strides, pads, dilations = _attrs(d, self.strides_in, self.pads_in, self.dilations_in)
        if w.ndim != x.ndim:
            raise ValueError(f"conv: x {x.shape} and w {w.shape} differ in rank")
        cdef int groups = self.groups
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
        cdef Geom g = _geom(x.shape, w.shape[2:], strides, pads, dilations, osp,
                            c // groups, o // groups)
        bias = None if b is None else as_f32(b).reshape(-1)
        if bias is not None and bias.shape[0] != o:
            raise ValueError(f"bias of {bias.shape[0]} values for {o} output channels")
        if self.n_mul >= 0 and self.n_mul != o:
            raise ValueError(f"conv affine: {self.n_mul} and {self.n_mul} values "
                             f"for {o} output channels")
        if self.n_fq >= 0 and self.n_fq not in (1, o):
            raise ValueError(f"conv fake_quant: {self.n_fq} scales and "
                             f"{self.n_fq} zero points for {o} output channels")
        self.depthwise = g.cg == 1 and g.k[0] * g.k[1] * g.k[2] > 1
        self.pin = <Py_ssize_t>g.sp[0] * g.sp[1] * g.sp[2]
        self.pout = <Py_ssize_t>g.osp[0] * g.osp[1] * g.osp[2]
        cdef int kk = g.k[0] * g.k[1] * g.k[2]
        self.kc = g.cg * kk
        # a 1x1 kernel on a 1x1 plane (squeeze-and-excitation, a classifier as a
        # conv): matrix-vector products over the images, x [N, C] and w [O, C]
        self.vector = (groups == 1 and kk == 1 and self.pin == 1 and self.pout == 1
                       and g.pb[0] == 0 and g.pb[1] == 0 and g.pb[2] == 0)
        self.batched = not self.depthwise and not self.vector and \
            qcc_conv_gemm_batches(&g, n_img)
        self.ws_size = (1 if self.depthwise or self.vector else
                        qcc_conv_gemm_images_size(&g, n_img) if self.batched else
                        qcc_conv_gemm_pad_size(&g))
        self.pdata = None
        self.wp_mr = self.wp_kc = 0
        self.wp_group = 0
        if self.pack is not None and self.vector:
            self.pdata = _gemv_packed(self.pack, w_given, w, o, c)
        if self.pack is not None and not self.depthwise and not self.vector:
            cols = self.pout * n_img if self.batched else self.pout
            self.pdata = _packed(self.pack, w_given, w, groups, g.og, self.kc,
                                 qcc_gemm_mr(g.og, self.kc, cols, kk),
                                 qcc_gemm_chunk(g.og, self.kc, cols, kk))
            self.wp_mr = self.pack.mr
            self.wp_kc = self.pack.kc
            self.wp_group = qcc_gemm_packed_size(g.og, self.kc, self.wp_mr)
        self.g = g
        self.n_img = n_img
        self.c = c
        self.o = o
        self.xshape = x.shape
        self.oshape = (n_img, o) + tuple(osp)
        self.w_given = w_given
        self.b_given = b
        self.w = w
        self.bias = bias
        self.tuning = _tuning
        self.variant = qcc_gemm_variant()
        # kept only while the arrays read are the caller's own (a converted copy would
        # miss changes made in place to the caller's)
        self.ready = (w is w_given or self.pack is not None) and \
            (b is None or _f32_c(b) and (<cnp.ndarray>b).ndim == 1)

    def __call__(self, x, w, b, out=None, residual=None):
        if not (self.ready and w is self.w_given and b is self.b_given and _f32_c(x)
                and x.shape == self.xshape and self.tuning == _tuning
                and self.variant == qcc_gemm_variant()):
            x = as_f32(x)
            self._setup(x, w, b)
        if not (_f32_c(out) and out.shape == self.oshape):
            out = out_buffer(out, self.oshape)
        return self._run(x, out, residual)

    cdef _run(self, x, out, residual):
        # locals, so that a call of another thread setting up again cannot change
        # what this one reads without the GIL
        cdef Geom g = self.g
        cdef qcc_act act = self.act0
        w, bias, pdata = self.w, self.bias, self.pdata
        cdef int n_img = self.n_img, c = self.c, o = self.o, groups = self.groups
        cdef int kc = self.kc, wp_mr = self.wp_mr, wp_kc = self.wp_kc
        cdef Py_ssize_t pin = self.pin, pout = self.pout, wp_group = self.wp_group
        cdef bint vector = self.vector, depthwise = self.depthwise, batched = self.batched
        cdef const float* xp0 = _fp(x)
        cdef const float* wp0 = _fp(w)
        cdef float* op0 = <float*>cnp.PyArray_DATA(<cnp.ndarray>out)
        cdef const float* bp = NULL if bias is None else _fp(bias)
        cdef const float* wpp = NULL if pdata is None else _fp(pdata)
        cdef const float* rp
        cdef Py_ssize_t total = <Py_ssize_t>n_img * o * pout
        if residual is not None or self.n_fq >= 0 or self.n_mul >= 0:
            act.base = op0
            act.plane = pout
            act.channels = o
        if residual is not None:
            residual = as_f32(residual)
            if residual.shape != out.shape:
                raise ValueError(f"conv residual {residual.shape}: expected a separate "
                                 f"array of the output's shape {out.shape}")
            rp = _fp(residual)
            if rp < op0 + total and op0 < rp + total:   # contiguous: overlap of bounds
                raise ValueError(f"conv residual {residual.shape}: expected a separate "
                                 f"array of the output's shape {out.shape}")
            act.add = rp
        cdef float[::1] ws = _workspace(self.ws_size)
        cdef Py_ssize_t[::1] kofs = np.empty(max(kc, 1), np.intp)
        cdef int ni, gi
        cdef int err = 0
        cdef const float* xp
        cdef const float* wp
        cdef float* op
        with nogil:
            if vector:
                qcc_gemv_w(xp0, wpp if wpp != NULL else wp0, wpp != NULL, bp, op0, n_img, o,
                           c, qcc_gemm_variant(), qcc_gemm_threads)
                qcc_activate_best(&act, op0, o, n_img, o)
            elif depthwise:
                err = qcc_depthwise(xp0, wp0, bp, op0, &g, n_img, groups, &act,
                                    qcc_gemm_threads)
            elif batched:
                for gi in range(groups):
                    err |= qcc_conv_gemm_images(
                        xp0 + <Py_ssize_t>gi * g.cg * pin, <Py_ssize_t>c * pin,
                        wp0 + <Py_ssize_t>gi * g.og * kc,
                        wpp + gi * wp_group if wpp != NULL else NULL, wp_mr, wp_kc,
                        bp + gi * g.og if bp != NULL else NULL,
                        op0 + <Py_ssize_t>gi * g.og * pout, <Py_ssize_t>o * pout,
                        &g, n_img, &ws[0], &kofs[0], &act)
            elif qcc_conv_images_parallel(&g, n_img, groups, qcc_gemm_threads):
                err = qcc_conv_images(xp0, wp0, wpp, wp_mr, wp_kc, wp_group, bp, op0, &g,
                                      n_img, groups, &act, qcc_gemm_threads)
            else:
                for ni in range(n_img):
                    for gi in range(groups):
                        xp = xp0 + (<Py_ssize_t>ni * c + gi * g.cg) * pin
                        wp = wp0 + <Py_ssize_t>gi * g.og * kc
                        op = op0 + (<Py_ssize_t>ni * o + gi * g.og) * pout
                        err |= qcc_conv_gemm(xp, wp,
                                             wpp + gi * wp_group if wpp != NULL else NULL,
                                             wp_mr, wp_kc,
                                             bp + gi * g.og if bp != NULL else NULL,
                                             op, &g, &ws[0], &kofs[0], &act)
        if err:
            raise MemoryError("conv: out of memory for the GEMM scratch")
        return out


include "_dense.pxi"


include "_conv_transpose.pxi"
