# cython: language_level=3
"""Softmax, normalization, erf and GELU kernels of the reference runtime (float32).

Tensors are viewed as [outer, axis, inner] (softmax) or [outer, inner] (layer
norm); the inner loops are in _norm_impl.h (a vectorized exp and erf, sums in
vector lanes combined in double). erf and GELU have AVX-512, AVX2 and plain builds
that give the same bits; the best one at or below QCC_ISA runs (`_set_variant`).

erf, GELU, softmax over the last dim and layer norm of a big tensor run on the
runtime's thread pool (runtime/_common.h), in chunks of whole rows (of elements for
erf and GELU) that the shapes decide: every row is computed alone, so the threads
change no bit.
"""

import math

import numpy as np

from qcc.runtime._kernels import as_f32, out_buffer

cimport numpy as cnp
from libc.math cimport powf, sqrtf

cnp.import_array()

cdef extern from "_norm_impl.h" nogil:
    ctypedef struct qcc_norm_fq:
        float s, z, qmin, qmax
    void qcc_softmax_rows(const float* x, float* y, Py_ssize_t rows, Py_ssize_t n,
                          const qcc_norm_fq* fq)
    void qcc_softmax_strided(const float* x, float* y, Py_ssize_t outer, Py_ssize_t n,
                             Py_ssize_t inner, float* acc, const qcc_norm_fq* fq)
    void qcc_norm_fq_range(float* y, Py_ssize_t n, const qcc_norm_fq* fq)
    void qcc_layer_norm_rows(const float* x, float* y, const float* scale, const float* bias,
                             Py_ssize_t rows, Py_ssize_t n, float eps)
    int QCC_ISA_SCALAR, QCC_ISA_AVX2, QCC_ISA_AVX512
    int qcc_isa_ceiling()
    int qcc_isa_best(int ceiling, int vnni)
    int qcc_cpu_runs(int level, int vnni)
    int qcc_norm_level
    int qcc_norm_set_level(int level)
    void qcc_erf(const float* x, float* y, Py_ssize_t n)
    void qcc_gelu(const float* x, float* y, Py_ssize_t n)
    void qcc_norm_post(float* y, const float* res, Py_ssize_t n, const void* arg)
    ctypedef void (*qcc_task_fn)(void *arg) noexcept nogil
    void qcc_parallel(qcc_task_fn fn, void *arg, int width)

cdef extern from *:
    """
    static inline int qcc_norm_next_task(int *counter)
    {
        return __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
    }
    """
    int qcc_norm_next_task(int *counter) nogil


cdef enum _Kind:
    _ERF, _GELU, _SOFTMAX, _LAYER_NORM


ctypedef struct _Rows:
    # y[r] = f(x[r]) for the rows r of n elements; task t takes rows t*per ..
    _Kind kind
    const float* x
    float* y
    const float* scale
    const float* bias
    Py_ssize_t rows, n, per
    float eps
    const qcc_norm_fq* fq     # the fake-quant of the output (per tensor), or NULL
    int tasks, next


cdef Py_ssize_t _chunk = 8192     # elements of a task, about (whole rows)
cdef int _threads = 1


# One thread pool for the whole runtime: this module's jobs run on the workers of
# qcc.runtime._kernels (runtime/_common.h).
from cpython.pycapsule cimport PyCapsule_GetPointer
cdef extern from "_common.h":
    void qcc_pool_bind(void *p)
from qcc.runtime._kernels import _pool_capsule
qcc_pool_bind(PyCapsule_GetPointer(_pool_capsule, "qcc.runtime.pool"))

from qcc.runtime.threads import default_threads as _default_threads

from cpython.pycapsule cimport PyCapsule_New

_post_capsule = PyCapsule_New(<void*>qcc_norm_post, "qcc.runtime.dense_post", NULL)
"""A dense layer's epilogue (runtime/_dense_post.h), for _conv's dense kernel."""


def _set_threads(int n):
    """Set how many threads erf, GELU, softmax and layer norm use; returns the old count."""
    global _threads
    old = _threads
    _threads = max(1, min(n, 64))
    return old


_set_threads(_default_threads())


cdef void _rows_task(void *arg) noexcept nogil:
    cdef _Rows *g = <_Rows *>arg
    cdef int t
    cdef Py_ssize_t r0, count
    while True:
        t = qcc_norm_next_task(&g.next)
        if t >= g.tasks:
            return
        r0 = t * g.per
        count = g.rows - r0 if g.rows - r0 < g.per else g.per
        if g.kind == _ERF:
            qcc_erf(g.x + r0, g.y + r0, count)
        elif g.kind == _GELU:
            qcc_gelu(g.x + r0, g.y + r0, count)
        elif g.kind == _SOFTMAX:
            qcc_softmax_rows(g.x + r0 * g.n, g.y + r0 * g.n, count, g.n, g.fq)
            continue   # its fake-quant is in its rows
        else:
            qcc_layer_norm_rows(g.x + r0 * g.n, g.y + r0 * g.n, g.scale, g.bias, count,
                                g.n, g.eps)
        if g.fq != NULL:   # the task's rows, still in cache
            qcc_norm_fq_range(g.y + r0 * g.n, count * g.n, g.fq)


cdef void _rows(_Rows *g) noexcept nogil:
    """Run `g` (kind, pointers, rows, n set) in tasks of about `_chunk` elements."""
    g.per = (_chunk + g.n - 1) // g.n
    g.tasks = <int>((g.rows + g.per - 1) // g.per)
    g.next = 0
    if g.tasks <= 1 or _threads == 1:
        _rows_task(g)
    else:
        qcc_parallel(_rows_task, g, _threads if _threads < g.tasks else g.tasks)


_VARIANTS = ("plain", "avx2", "avx512")
"""erf / GELU builds by level (QCC_ISA_SCALAR, QCC_ISA_AVX2, QCC_ISA_AVX512)."""


def _variants():
    """Names of the erf / GELU builds this CPU runs, best last."""
    return [name for level, name in enumerate(_VARIANTS) if qcc_cpu_runs(level, 0)]


def _variant():
    """Name of the erf / GELU build in use."""
    return _VARIANTS[qcc_norm_level]


def _set_variant(name):
    """Use the erf / GELU build `name` (None: the best at or below QCC_ISA); returns
    the old name. For tests and benchmarks: every build gives the same bits."""
    old = _variant()
    if name is None:
        qcc_norm_set_level(qcc_isa_best(qcc_isa_ceiling(), 0))
        return old
    if name not in _VARIANTS:
        raise ValueError(f"unknown erf/GELU build {name!r} (known: {', '.join(_VARIANTS)})")
    if not qcc_norm_set_level(_VARIANTS.index(name)):
        raise ValueError(f"erf/GELU build {name!r} does not run on this CPU")
    return old


_set_variant(None)   # QCC_ISA applies from import on


cdef const qcc_norm_fq* _fq_of(fake_quant, qcc_norm_fq* fq) except? NULL:
    """`fq` set from (scale, zero_point, qmin, qmax), or NULL for None."""
    if fake_quant is None:
        return NULL
    fq.s, fq.z, fq.qmin, fq.qmax = fake_quant
    return fq


include "_arrays.pxi"


cdef _out_like(x, out):
    """`out` for a result of x's shape: checked (out_buffer) unless it is a C-contiguous
    float32 array of that shape (the plan's buffers: no Python work per call)."""
    if out is not None and _f32_c(out) and \
            cnp.PyArray_SIZE(<cnp.ndarray>out) == cnp.PyArray_SIZE(<cnp.ndarray>x) and \
            out.shape == x.shape:
        return out
    return out_buffer(out, x.shape)


def _unary(x, out, int gelu, fake_quant=None):
    if not _f32_c(x):
        x = as_f32(x)
    out = _out_like(x, out)
    cdef Py_ssize_t size = cnp.PyArray_SIZE(<cnp.ndarray>x)
    if size == 0:
        return out
    cdef _Rows g
    cdef qcc_norm_fq fq
    g.kind = _GELU if gelu else _ERF
    g.x, g.y, g.scale, g.bias = _fp(x), _fp(out), NULL, NULL
    g.rows, g.n, g.fq = size, 1, _fq_of(fake_quant, &fq)
    with nogil:
        _rows(&g)
    return out


def erf(x, out=None):
    """erf of each element in float32 (1.14 ulp at most); `out` may be `x`."""
    return _unary(x, out, 0)


def gelu(x, out=None, fake_quant=None):
    """GELU of each element as PyTorch exports it: (x * (erf(x / sqrt(2)) + 1)) * 0.5
    in float32 operations (this erf); `out` may be `x`. `fake_quant`: as `softmax`'s."""
    return _unary(x, out, 1, fake_quant)


cdef void _split_dims(x, int axis, Py_ssize_t* outer, Py_ssize_t* n, Py_ssize_t* inner):
    """x's dims as [outer, x.shape[axis], inner]."""
    cdef cnp.npy_intp* dims = cnp.PyArray_DIMS(<cnp.ndarray>x)
    cdef int nd = cnp.PyArray_NDIM(<cnp.ndarray>x), d
    outer[0] = 1
    inner[0] = 1
    for d in range(axis):
        outer[0] *= dims[d]
    n[0] = dims[axis]
    for d in range(axis + 1, nd):
        inner[0] *= dims[d]


def _axis(int axis, int ndim):
    """Normalize a possibly negative axis."""
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} out of range for {ndim} dims")
    return axis + ndim if axis < 0 else axis


def softmax(x, int axis, out=None, fake_quant=None):
    """ONNX Softmax (opset >= 13): exp(x - max) / sum over the single dim `axis`.

    `fake_quant`: None, or (scale, zero_point, qmin, qmax) of a per-tensor fake-quant
    applied to each result as it is written (the float32 steps of
    `_eltwise.fake_quant`, so the same bits as that step after the softmax)."""
    if not _f32_c(x):
        x = as_f32(x)
    out = _out_like(x, out)
    cdef qcc_norm_fq fq
    cdef const qcc_norm_fq* fqp = _fq_of(fake_quant, &fq)
    cdef float[::1] one
    if x.ndim == 0:   # 1, fake-quantized as a row of one element
        one = np.ones(1, np.float32)
        if fqp != NULL:
            qcc_softmax_rows(&one[0], &one[0], 1, 1, fqp)
        out[...] = one[0]
        return out
    axis = _axis(axis, x.ndim)
    cdef Py_ssize_t outer, n, inner
    _split_dims(x, axis, &outer, &n, &inner)
    if outer * n * inner == 0:
        return out
    cdef float[::1] acc
    cdef _Rows g
    cdef const float* xp = _fp(x)
    cdef float* yp = _fp(out)
    if inner == 1:
        g.kind = _SOFTMAX
        g.x, g.y, g.scale, g.bias = xp, yp, NULL, NULL
        g.rows, g.n, g.fq = outer, n, fqp
        with nogil:
            _rows(&g)
    else:
        acc = np.empty(2 * inner, np.float32)
        with nogil:
            qcc_softmax_strided(xp, yp, outer, n, inner, &acc[0], fqp)
    return out


def layer_norm(x, scale, bias, int axis, float epsilon, out=None, fake_quant=None):
    """ONNX LayerNormalization: normalize x over dims axis..end, then * scale + bias.

    scale and bias (bias may be None) broadcast to x.shape[axis:]. `fake_quant`: as
    `softmax`'s.
    """
    if not _f32_c(x):
        x = as_f32(x)
    out = _out_like(x, out)
    axis = _axis(axis, x.ndim)
    cdef Py_ssize_t rows, n, inner
    _split_dims(x, axis, &rows, &n, &inner)
    n *= inner
    if rows * n == 0:
        return out
    norm_shape = x.shape[axis:]
    # a plan's constant scale and bias are float32 of the normalized shape already
    sc = scale if _f32_c(scale) and scale.shape == norm_shape else \
        as_f32(np.broadcast_to(np.asarray(scale, np.float32), norm_shape))
    bi = bias if bias is None or _f32_c(bias) and bias.shape == norm_shape else \
        as_f32(np.broadcast_to(np.asarray(bias, np.float32), norm_shape))
    cdef _Rows g
    g.kind = _LAYER_NORM
    g.x, g.y, g.scale, g.bias = _fp(x), _fp(out), _fp(sc), _fp(bi) if bi is not None else NULL
    cdef qcc_norm_fq fq
    g.rows, g.n, g.eps, g.fq = rows, n, epsilon, _fq_of(fake_quant, &fq)
    with nogil:
        _rows(&g)
    return out


cdef void _lrn_image(const float* x, float* y, float* acc, Py_ssize_t c_n, Py_ssize_t plane,
                     int lo, int hi, float k, float a, float beta) noexcept nogil:
    """LRN of one image [C, plane]; the window of channel c is [c - lo, c + hi]."""
    cdef Py_ssize_t c, j, i, first, last
    cdef const float* xj
    cdef const float* xc
    cdef float* yc
    cdef float t
    for c in range(c_n):
        first = c - lo if c >= lo else 0
        last = c + hi if c + hi < c_n else c_n - 1
        for i in range(plane):
            acc[i] = 0.0
        for j in range(first, last + 1):
            xj = x + j * plane
            for i in range(plane):
                acc[i] += xj[i] * xj[i]
        xc = x + c * plane
        yc = y + c * plane
        if beta == 0.75:
            for i in range(plane):
                t = k + a * acc[i]
                yc[i] = xc[i] / sqrtf(t * sqrtf(t))
        else:
            for i in range(plane):
                yc[i] = xc[i] * powf(k + a * acc[i], -beta)


def lrn(x, int size, float alpha, float beta, float bias, out=None):
    """ONNX LRN across channels of x[N,C,*S]: x / (bias + alpha/size * sum x^2)^beta.

    The sum runs over channels [c - floor((size-1)/2), c + ceil((size-1)/2)].
    """
    x = as_f32(x)
    if x.ndim < 3:
        raise ValueError(f"lrn expects [N, C, *S], got shape {x.shape}")
    out = out_buffer(out, x.shape)
    cdef Py_ssize_t n_img = x.shape[0]
    cdef Py_ssize_t c_n = x.shape[1]
    cdef Py_ssize_t plane = math.prod(x.shape[2:])
    if x.size == 0:
        return out
    cdef const float[::1] xv = x.reshape(-1)
    cdef float[::1] ov = out.reshape(-1)
    cdef float[::1] acc = np.empty(plane, np.float32)
    cdef int lo = (size - 1) // 2
    cdef int hi = size - 1 - lo
    cdef float a = alpha / size
    cdef Py_ssize_t i
    with nogil:
        for i in range(n_img):
            _lrn_image(&xv[0] + i * c_n * plane, &ov[0] + i * c_n * plane, &acc[0],
                       c_n, plane, lo, hi, bias, a, beta)
    return out
