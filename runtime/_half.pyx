# cython: language_level=3
"""float16 conversions and the Ascend quant/dequant stages in one pass each.

numpy converts float16 one element at a time in software, and its float16
arithmetic converts every operand and result. Here each float16 op is the float32
op rounded once to the float16 grid (what numpy's float16 loops compute), in SIMD
registers: runtime/_half_impl.h has the AVX-512, AVX2 + F16C (`vcvtps2ph` /
`vcvtph2ps`) and scalar C variants, which give numpy's bits on every path. The best
one the CPU runs at or below QCC_ISA is chosen at import; `set_isa(level)` forces
another (`qcc.runtime.isa` does it with the other kernel families). Tensors of 2^18
elements and more are shared by the threads of the pool in runtime/_common.h.
"""


import numpy as np

cimport numpy as cnp
from libc.stdint cimport int8_t, int32_t, uint16_t

cnp.import_array()

include "_half_stage.pxi"

cdef extern from "_half_impl.h" nogil:
    ctypedef struct qcc_h_job:
        int op, isa
        const void* x
        void* y
        Py_ssize_t n
        const qcc_h_stage* st
        const float* scale
        Py_ssize_t channels, inner
        const float* x2
        int relu2
    int QCC_H_F32, QCC_H_F16
    int qcc_h_supported(int level)
    int qcc_isa_ceiling()
    void qcc_h_run(qcc_h_job* job, int threads)

ROUND_MODES = ("Round", "Rint", "Floor", "Ceil", "Trunc")
LEVELS = ("scalar", "avx2", "avx512")
"""Instruction set levels of the kernels, lowest first (QCC_ISA's names)."""


def supported_isas():
    """The levels this CPU runs, lowest first."""
    return [name for i, name in enumerate(LEVELS) if qcc_h_supported(i)]


def default_isa():
    """The best level this CPU runs at or below QCC_ISA."""
    cdef int level = qcc_isa_ceiling()
    while level > 0 and not qcc_h_supported(level):
        level -= 1
    return LEVELS[level]


cdef int _isa = LEVELS.index(default_isa())


def isa():
    """The level the kernels use now."""
    return LEVELS[_isa]


def set_isa(name):
    """Use level `name` (None: `default_isa()`); returns the previous one."""
    global _isa
    if name is None:
        name = default_isa()
    if name not in LEVELS or not qcc_h_supported(LEVELS.index(name)):
        raise ValueError(f"instruction set {name!r} is not supported here "
                         f"(supported: {', '.join(supported_isas())})")
    old = LEVELS[_isa]
    _isa = LEVELS.index(name)
    return old


# One thread pool for the whole runtime: this module's jobs run on the workers of
# qcc.runtime._kernels (runtime/_common.h).
from cpython.pycapsule cimport PyCapsule_GetPointer
cdef extern from "_common.h":
    void qcc_pool_bind(void *p)
from qcc.runtime._kernels import _pool_capsule
qcc_pool_bind(PyCapsule_GetPointer(_pool_capsule, "qcc.runtime.pool"))

from qcc.runtime.threads import default_threads as _default_threads


cdef int _threads = _default_threads()


def set_threads(int n):
    """Set how many threads the kernels use on big tensors; returns the old count."""
    global _threads
    old = _threads
    _threads = max(1, min(n, 64))
    return old


cdef inline void _job(qcc_h_job* job, int op, const void* x, void* y, Py_ssize_t n,
                      const qcc_h_stage* st) noexcept nogil:
    job.op = op
    job.isa = _isa
    job.x = x
    job.y = y
    job.n = n
    job.st = st
    job.scale = NULL
    job.channels = 1
    job.inner = n
    job.x2 = NULL
    job.relu2 = 0


def to_f16(x):
    """float32 array -> float16 array (numpy's astype)."""
    x = np.ascontiguousarray(x, np.float32)
    out = np.empty(x.shape, np.float16)
    if out.size == 0:
        return out
    cdef const float[::1] xv = x.reshape(-1)
    cdef uint16_t[::1] ov = out.reshape(-1).view(np.uint16)
    cdef qcc_h_job job
    _job(&job, 2, &xv[0], &ov[0], xv.shape[0], NULL)
    with nogil:
        qcc_h_run(&job, _threads)
    return out


def to_f32(h, out=None):
    """float16 array -> float32 array (exact, numpy's astype); into `out` if given."""
    h = np.ascontiguousarray(h, np.float16)
    if out is None:
        out = np.empty(h.shape, np.float32)
    if out.size == 0:
        return out
    cdef const uint16_t[::1] hv = h.reshape(-1).view(np.uint16)
    cdef float[::1] ov = out.reshape(-1)
    cdef qcc_h_job job
    _job(&job, 3, &hv[0], &ov[0], hv.shape[0], NULL)
    with nogil:
        qcc_h_run(&job, _threads)
    return out


cdef qcc_h_stage _quant_stage(float scale, float offset, bint sqrt_mode, int mode):
    cdef qcc_h_stage st
    _set_stage(&st, 0, False, scale, offset, sqrt_mode, mode)
    return st


def ascend_quant(x, float scale, float offset, bint sqrt_mode, int mode):
    """int8 of round_mode(f16(f16(f16(x) * scale) [* scale] + offset)), saturated; scale
    and offset are float16 values, x float32 or float16."""
    cdef bint half_in = x.dtype == np.float16
    x = np.ascontiguousarray(x, np.float16 if half_in else np.float32)
    out = np.empty(x.shape, np.int8)
    cdef int8_t[::1] ov = out.reshape(-1)
    cdef Py_ssize_t n = ov.shape[0]
    if n == 0:
        return out
    cdef qcc_h_stage st = _quant_stage(scale, offset, sqrt_mode, mode)
    cdef const float[::1] xf
    cdef const uint16_t[::1] xh
    cdef qcc_h_job job
    if half_in:
        xh = x.reshape(-1).view(np.uint16)
        _job(&job, 1, &xh[0], &ov[0], n, &st)
    else:
        xf = x.reshape(-1)
        _job(&job, 0, &xf[0], &ov[0], n, &st)
    with nogil:
        qcc_h_run(&job, _threads)
    return out


def ascend_add_quant(a, b, bint relu, float scale, float offset, bint sqrt_mode, int mode):
    """ascend_quant of the float32 sum a + b (relu'd when `relu`, NaN staying NaN),
    in one pass: the numbers of the add, the relu and the quant run one after the
    other (a residual block's add before the next layer's quant). a and b: float32
    arrays of one shape."""
    a = np.ascontiguousarray(a, np.float32)
    b = np.ascontiguousarray(b, np.float32)
    if a.shape != b.shape:
        raise ValueError(f"ascend_add_quant: a {a.shape} and b {b.shape} differ")
    out = np.empty(a.shape, np.int8)
    cdef int8_t[::1] ov = out.reshape(-1)
    cdef Py_ssize_t n = ov.shape[0]
    if n == 0:
        return out
    cdef qcc_h_stage st = _quant_stage(scale, offset, sqrt_mode, mode)
    cdef const float[::1] av = a.reshape(-1)
    cdef const float[::1] bv = b.reshape(-1)
    cdef qcc_h_job job
    _job(&job, 5, &av[0], &ov[0], n, &st)
    job.x2 = &bv[0]
    job.relu2 = relu
    with nogil:
        qcc_h_run(&job, _threads)
    return out


def ascend_dequant(acc, scale, int axis, bint relu, bint half_out):
    """float32(acc) * scale[c] (float32; c the index along `axis`, or one scale),
    relu'd, as float32 or float16 (rounded to nearest even)."""
    acc = np.ascontiguousarray(acc, np.int32)
    cdef const float[::1] sv = np.ascontiguousarray(scale, np.float32).reshape(-1)
    shape = acc.shape
    cdef Py_ssize_t channels = sv.shape[0]
    cdef Py_ssize_t n = acc.size
    cdef Py_ssize_t inner = n
    if channels > 1:
        inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    out = np.empty(shape, np.float16 if half_out else np.float32)
    if n == 0:
        return out
    cdef const int32_t[::1] av = acc.reshape(-1)
    cdef int8_t[::1] ob = out.reshape(-1).view(np.int8)
    cdef qcc_h_stage st
    _set_stage(&st, QCC_H_F16 if half_out else QCC_H_F32, relu, 0.0, 0.0, False, 0)
    cdef qcc_h_job job
    _job(&job, 4, &av[0], &ob[0], n, &st)
    job.scale = &sv[0]
    job.channels = channels
    job.inner = inner
    with nogil:
        qcc_h_run(&job, _threads)
    return out
