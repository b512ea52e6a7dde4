# cython: language_level=3
"""Element-wise float32 kernels of the reference runtime: hard_swish, hard_sigmoid,
sigmoid, relu, clip, fake-quant (per tensor or per channel) and the sum of two
tensors followed by an activation, in place or into another buffer, threaded for big
tensors.

They run the conv epilogue of runtime/_common.h on a whole tensor, so a fused conv
and these kernels give the same bits, which are those of qcc.dialects.qnn_eval's
numpy formulas (activations) and of qcc.runtime.ops.fake_quant_into (fake-quant):
the same float32 operations in the same order, no FMA contraction.
"""


import numpy as np

cimport numpy as cnp
from libc.string cimport memset

cnp.import_array()

include "_act_types.pxi"

cdef extern from "_eltwise_impl.h" nogil:
    void qcc_eltwise(const qcc_act* act, const float* src, Py_ssize_t n, int threads)


# One thread pool for the whole runtime: this module's jobs run on the workers of
# qcc.runtime._kernels (runtime/_common.h).
from cpython.pycapsule cimport PyCapsule_GetPointer
cdef extern from "_common.h":
    void qcc_pool_bind(void *p)
from qcc.runtime._kernels import _pool_capsule
qcc_pool_bind(PyCapsule_GetPointer(_pool_capsule, "qcc.runtime.pool"))

from qcc.runtime.threads import default_threads as _default_threads


cdef int _threads = _default_threads()


def _set_threads(int n):
    """Set how many threads a big element-wise kernel uses; returns the old count."""
    global _threads
    old = _threads
    _threads = max(1, min(n, 64))
    return old


cdef _writable_out(out, shape):
    """`out` checked to be a writable C-contiguous float32 array of `shape`, or a new
    array when it is None."""
    if out is None:
        return np.empty(shape, np.float32)
    if (not isinstance(out, np.ndarray) or out.dtype != np.float32 or
            not out.flags.c_contiguous or not out.flags.writeable or out.shape != shape):
        raise ValueError(f"out must be a writable C-contiguous float32 array of shape "
                         f"{shape}")
    return out


cdef _run(qcc_act* act, x, out):
    """The kernel `act` of x into `out` (x itself for in place; None: a new array),
    which it returns. A float32 C-contiguous x is read in the kernel's chunks (one
    pass); another one is converted first."""
    cdef const float[::1] xv
    cdef float[::1] yv
    cdef Py_ssize_t n = x.size
    out = _writable_out(out, x.shape)
    if n == 0:
        return out
    if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.flags.c_contiguous):
        x = np.ascontiguousarray(x, dtype=np.float32)
    elif (out is not x and np.may_share_memory(x, out) and
            x.__array_interface__["data"][0] != out.__array_interface__["data"][0]):
        x = x.copy()   # overlapping, not the same: the chunks would read what they wrote
    xv = x.reshape(-1)
    yv = out.reshape(-1)
    act.base = &yv[0]
    with nogil:
        qcc_eltwise(act, &xv[0], n, _threads)
    return out


_KINDS = {"relu": 1, "clip": 2, "hard_swish": 3, "hard_sigmoid": 4, "sigmoid": 5}


cdef int _kind(kind) except -1:
    """The epilogue's code of the activation named `kind`."""
    if kind not in _KINDS:
        raise ValueError(f"unknown activation {kind!r}")
    return _KINDS[kind]


def activation(x, kind, float a=0, float b=0, out=None):
    """`kind` ("relu", "clip" (a = lo, b = hi), "hard_swish", "hard_sigmoid"
    (a = alpha, b = beta) or "sigmoid") of the float32 array x, into `out` (x itself
    for in place; None: a new array). Returns the result."""
    cdef qcc_act act
    memset(&act, 0, sizeof(act))
    act.kind = _kind(kind)
    act.lo = a
    act.hi = b
    act.plane = max(1, x.size)   # one run of the whole tensor (plane 1 made a call per
    act.channels = 1             # element: 40x slower)
    return _run(&act, x, out)


def add(a, b, kind=None, float lo=0, float hi=0, out=None):
    """a + b of two float32 arrays of one shape, then the activation `kind` (None, or
    as `activation`: "relu", "clip" (lo, hi), ...), into `out` (a itself for in
    place; None: a new array), in one threaded pass: numpy's float32 sum, then the
    activation's numbers (the conv epilogue's residual add). Returns the result."""
    cdef qcc_act act
    cdef const float[::1] bv
    memset(&act, 0, sizeof(act))
    if kind is not None:
        act.kind = _kind(kind)
    act.lo = lo
    act.hi = hi
    if a.shape != b.shape:
        raise ValueError(f"add: shapes {a.shape} and {b.shape} differ")
    b = np.ascontiguousarray(b, dtype=np.float32)
    if out is not None and np.may_share_memory(b, out):
        b = b.copy()   # b is read where the output is written
    act.plane = max(1, a.size)
    act.channels = 1
    if a.size:
        bv = b.reshape(-1)
        act.add = &bv[0]
    return _run(&act, a, out)


def fake_quant(x, scales, zero_points, qmin, qmax, axis=None, out=None):
    """Fake-quant of the float32 array x, clip(rint(x / s) + z, qmin, qmax) - z) * s
    in float32, with one scale and zero point, or one per index of `axis`
    (`scales`, `zero_points`: float32 arrays of 1 or x.shape[axis] values), into
    `out` (x itself for in place; None: a new array). Returns the result."""
    cdef qcc_act act
    cdef const float[::1] sv
    cdef const float[::1] zv
    memset(&act, 0, sizeof(act))
    s = np.ascontiguousarray(scales, dtype=np.float32).reshape(-1)
    z = np.ascontiguousarray(zero_points, dtype=np.float32).reshape(-1)
    channels = 1 if axis is None else x.shape[axis]
    if s.shape[0] not in (1, channels) or z.shape[0] != s.shape[0]:
        raise ValueError(f"fake_quant: {s.shape[0]} scales and {z.shape[0]} zero points "
                         f"for {channels} channels")
    act.plane = 1
    act.channels = 1
    if axis is not None and s.shape[0] > 1:
        act.plane = max(1, int(np.prod(x.shape[axis + 1:], dtype=np.int64)))
        act.channels = channels
        act.fq_per_channel = 1
    sv = s
    zv = z
    act.fq_scale = &sv[0]
    act.fq_zero = &zv[0]
    act.qmin = <float>float(qmin)
    act.qmax = <float>float(qmax)
    if act.plane == 1 and act.channels == 1:
        act.plane = max(1, x.size)
    return _run(&act, x, out)


# ------------------------------------------------------------ strided copies

cdef extern from "_transpose_impl.h" nogil:
    ctypedef struct qcc_copy_epi:
        int mul_on, fq_on
        float mul, s, z, qmin, qmax
    ctypedef struct qcc_copy_job:
        const float* x
        float* y
        int nd
        Py_ssize_t dims[8]
        Py_ssize_t xs[8]
        qcc_copy_epi epi
        int tiles
    void qcc_copy(qcc_copy_job* j, int threads)
    int QCC_ISA_SCALAR, QCC_ISA_AVX2, QCC_ISA_AVX512
    int qcc_cpu_runs(int level, int vnni)
    int qcc_isa_ceiling()


_COPY_VARIANTS = ("plain", "avx2", "avx512")
"""Builds of `transpose`: a swap of the last two dims in AVX-512 or AVX2 tiles, or
element by element (the other loops are the compiler's, for the CPU)."""


cdef int _best_copy():
    cdef int ceiling = qcc_isa_ceiling()
    if ceiling >= QCC_ISA_AVX512 and qcc_cpu_runs(QCC_ISA_AVX512, 0):
        return 2
    return 1 if ceiling >= QCC_ISA_AVX2 and qcc_cpu_runs(QCC_ISA_AVX2, 0) else 0


cdef int _copy_tiles = _best_copy()


def _copy_variants():
    """Names of the `transpose` builds this CPU runs, best last."""
    return [name for i, name in enumerate(_COPY_VARIANTS)
            if i == 0 or qcc_cpu_runs(QCC_ISA_AVX2 if i == 1 else QCC_ISA_AVX512, 0)]


def _set_copy_variant(name):
    """Use the `transpose` build `name` (None: the best at or below QCC_ISA); returns
    the old name. For tests and benchmarks: every build gives the same bits."""
    global _copy_tiles
    old = _COPY_VARIANTS[_copy_tiles]
    if name is None:
        _copy_tiles = _best_copy()
    elif name not in _copy_variants():
        raise ValueError(f"transpose build {name!r} does not run here (known: "
                         f"{', '.join(_COPY_VARIANTS)})")
    else:
        _copy_tiles = _COPY_VARIANTS.index(name)
    return old


cdef int _copy_dims(cnp.ndarray v, qcc_copy_job* job) except -1:
    """The job's dims and input strides (elements) from the view v: dims of 1 dropped,
    dims that follow each other in the input merged. -1 when v's strides are not whole
    elements or there are more than 8 dims left."""
    cdef int d, k = -1
    cdef Py_ssize_t n, st
    for d in range(cnp.PyArray_NDIM(v)):
        n = cnp.PyArray_DIMS(v)[d]
        st = cnp.PyArray_STRIDES(v)[d]
        if n == 1:
            continue
        if st % 4:
            return -1
        st //= 4
        if k >= 0 and job.xs[k] == st * n:
            job.dims[k] *= n
            job.xs[k] = st
        elif k == 7:
            return -1
        else:
            k += 1
            job.dims[k] = n
            job.xs[k] = st
    if k < 0:
        job.dims[0] = 1
        job.xs[0] = 1
        k = 0
    job.nd = k + 1
    return 0


def transpose(x, perm=None, out=None, mul=None, fake_quant=None):
    """x.transpose(perm) (None: x as it is, any strides) into the C-contiguous float32
    `out` (None: a new array), times the float32 scalar `mul` if given, then the
    per-tensor fake-quant `fake_quant` = (scale, zero_point, qmin, qmax) if given: the
    bits of np.copyto, numpy's float32 product and `fake_quant`. Returns `out`."""
    cdef qcc_copy_job job
    if not (isinstance(x, np.ndarray) and x.dtype == np.float32):
        x = np.asarray(x, np.float32)
    v = x if perm is None else x.transpose(perm)
    out = _writable_out(out, v.shape)
    if v.size == 0:
        return out
    memset(&job, 0, sizeof(job))
    if np.may_share_memory(x, out) or _copy_dims(<cnp.ndarray>v, &job) < 0:
        v = np.ascontiguousarray(v).copy()   # read where it is written, or odd strides
        _copy_dims(<cnp.ndarray>v, &job)
    job.x = <const float*>cnp.PyArray_DATA(<cnp.ndarray>v)
    job.y = <float*>cnp.PyArray_DATA(<cnp.ndarray>out)
    if mul is not None:
        job.epi.mul_on = 1
        job.epi.mul = mul
    if fake_quant is not None:
        job.epi.fq_on = 1
        job.epi.s, job.epi.z, job.epi.qmin, job.epi.qmax = fake_quant
    job.tiles = _copy_tiles
    with nogil:
        qcc_copy(&job, _threads)
    return out
