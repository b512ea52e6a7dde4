# cython: language_level=3
"""Reference runtime kernels (float32): matrix products through BLAS sgemm.

A large product is cut into tasks (blocks of about 128 output columns of each
batch entry, so that each task packs only its slice of the weights) that the
runtime's thread pool (runtime/_common.h) shares, each one a single-threaded sgemm
(the executor keeps BLAS on one thread while a plan runs): a worker kept off its
core by other processes leaves its tasks to the others instead of stalling the
call, and no BLAS thread spins against the runtime's. The blocks depend only on the
shapes, never on the threads, so the numbers do not either.

Convolutions live in qcc.runtime._conv, pooling and resize in qcc.runtime._pool,
softmax and normalizations in qcc.runtime._norm.
"""

import math

import numpy as np

cimport cython
cimport numpy as cnp
from libc.string cimport memset
from scipy.linalg.cython_blas cimport sgemm, sgemv

cnp.import_array()

cdef extern from "_common.h" nogil:
    ctypedef void (*qcc_task_fn)(void *arg) noexcept nogil
    void qcc_parallel(qcc_task_fn fn, void *arg, int width)

cdef extern from "_gemv_impl.h" nogil:
    void qcc_gemv(const float *x, const float *w, const float *bias, float *y, int m, int n,
                  int k, int level, int threads)
    int qcc_isa_best(int ceiling, int vnni)
    int qcc_isa_ceiling()
    int qcc_cpu_runs(int level, int vnni)

cdef extern from *:
    """
    static inline int qcc_next_task(int *counter)
    {
        return __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
    }
    """
    int qcc_next_task(int *counter) nogil


ctypedef struct _Gemms:
    # c[i] = a[ai[i]] @ (b[bi[i]] or its transpose) + beta * c[i] for each batch
    # entry i, cut into blocks of `cols` columns: task t is entry t / blocks,
    # block t % blocks.
    const float *a
    const float *b
    float *c
    const Py_ssize_t *ai
    const Py_ssize_t *bi
    Py_ssize_t sa, sb, sc
    int m, n, k, cols, blocks, tasks
    bint trans_b
    float beta
    int next


cdef int _threads = 1
cdef int _gemv_level = qcc_isa_best(qcc_isa_ceiling(), 0)
cdef int _gemv_max_rows = 4       # dense inputs of at most this many rows take qcc_gemv
_GEMV_LEVELS = ("scalar", "avx2", "avx512")
cdef int _col_block = 128         # output columns of a task (a single product)
cdef double _parallel_min = 2e5   # multiply-adds below which a product is one sgemm


def _set_parallel_min(double madds):
    """Set the multiply-adds below which a product runs as one sgemm on the calling
    thread (for tests); returns the old value."""
    global _parallel_min
    old = _parallel_min
    _parallel_min = madds
    return old


def _gemv_isa():
    """The instruction set level of the dense layer's matrix-vector kernel."""
    return _GEMV_LEVELS[_gemv_level]


def _set_gemv_isa(level):
    """Run the matrix-vector kernel (runtime/_gemv_impl.h) at `level` ("scalar",
    "avx2", "avx512"; None: the best of QCC_ISA and the CPU); returns the old one.
    Every level gives the same bits."""
    global _gemv_level
    old = _GEMV_LEVELS[_gemv_level]
    if level is None:
        _gemv_level = qcc_isa_best(qcc_isa_ceiling(), 0)
        return old
    if level not in _GEMV_LEVELS or not qcc_cpu_runs(_GEMV_LEVELS.index(level), 0):
        raise ValueError(f"matrix-vector kernel: level {level!r} does not run on this CPU")
    _gemv_level = _GEMV_LEVELS.index(level)
    return old


def _set_threads(int n):
    """Set how many threads a product uses (the pool's width); returns the old count."""
    global _threads
    old = _threads
    _threads = max(1, n)
    return old


# The runtime's thread pool, for the other compiled modules to bind to (one set of
# workers for all of them; runtime/_common.h).
from cpython.pycapsule cimport PyCapsule_New
cdef extern from "_common.h":
    void *qcc_pool_api_of()
    ctypedef struct qcc_homes:
        pass
    int qcc_claim_home_as(qcc_homes *hs, int tid, int blocks, int units, int width, int cap,
                          int *b, int *u0)
_pool_capsule = PyCapsule_New(qcc_pool_api_of(), "qcc.runtime.pool", NULL)


def _home_claims(int blocks, int units, int width, int cap, tids):
    """The claims of one job whose threads `tids` claim in turn, each until it gets
    none (runtime/_thread_pool.h, qcc_claim_home; a test hook): a list of (thread,
    block, first unit, units)."""
    cdef qcc_homes hs
    cdef int b, u0, n
    memset(&hs, 0, sizeof(hs))
    claims = []
    for tid in tids:
        n = qcc_claim_home_as(&hs, tid, blocks, units, width, cap, &b, &u0)
        if n > 0:
            claims.append((tid, b, u0, n))
    return claims

from qcc.runtime.threads import default_threads as _default_threads


_set_threads(_default_threads())


cdef void _gemm_task(void *arg) noexcept nogil:
    cdef _Gemms *g = <_Gemms *>arg
    cdef int t, e, j0, cols
    cdef const float *b
    while True:
        t = qcc_next_task(&g.next)
        if t >= g.tasks:
            return
        e = t // g.blocks
        j0 = (t % g.blocks) * g.cols
        cols = g.n - j0 if g.n - j0 < g.cols else g.cols
        b = g.b + (g.bi[e] if g.bi != NULL else e) * g.sb
        b = b + <Py_ssize_t>j0 * g.k if g.trans_b else b + j0
        _sgemm_ld(g.a + (g.ai[e] if g.ai != NULL else e) * g.sa, b,
                  g.c + e * g.sc + j0, g.m, cols, g.k, g.trans_b, g.beta,
                  g.k if g.trans_b else g.n, g.n)


cdef void _gemms(_Gemms *g, int nbatch) noexcept nogil:
    """Run the batch of products of `g` (a, b, c, strides, sizes set) on the pool."""
    cdef double madds = <double>nbatch * g.m * g.n * g.k
    # The shapes decide the blocks, never the threads: about `_col_block` columns,
    # equal blocks of a multiple of 16, an even number of tasks when there are
    # several (two or four threads share them evenly: 192 columns are 96 + 96, not
    # 128 + 64; three attention heads of 64 columns are six tasks of 32).
    cdef int blocks = 1
    if madds >= _parallel_min:
        blocks = (g.n + _col_block - 1) // _col_block
        if (nbatch * blocks) % 2 == 1 and g.n >= 32:
            blocks += 1
    g.cols = (g.n + blocks - 1) // blocks
    g.cols = (g.cols + 15) // 16 * 16
    if g.cols >= g.n:
        g.cols = g.n if g.n > 0 else 1
    g.blocks = (g.n + g.cols - 1) // g.cols
    g.tasks = g.blocks * nbatch
    g.next = 0
    if g.tasks <= 1 or _threads == 1 or madds < _parallel_min:
        _gemm_task(g)
    else:
        qcc_parallel(_gemm_task, g, _threads if _threads < g.tasks else g.tasks)


cdef void _sgemm_ld(const float* a, const float* b, float* c, int m, int n, int k,
                    bint trans_b, float beta, int ldb, int ldc) noexcept nogil:
    """Row-major c[m,n] (rows ldc apart) = a[m,k] @ (b[k,n] or b[n,k]^T, rows ldb
    apart) + beta*c; k may be 0."""
    cdef float alpha = 1.0
    cdef char ta = b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef int lda = k
    cdef int i
    if m == 0 or n == 0:
        return
    if k == 0:
        if beta == 0.0:
            for i in range(m):
                memset(c + <Py_ssize_t>i * ldc, 0, n * sizeof(float))
        return
    sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda, &beta, c, &ldc)


cdef void _sgemm_rm(const float* a, const float* b, float* c, int m, int n, int k,
                    bint trans_b, float beta) noexcept nogil:
    """Row-major c[m,n] = a[m,k] @ (b[k,n] or b[n,k]^T) + beta*c; k may be 0."""
    cdef float alpha = 1.0
    cdef char ta = b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef int ldb = k if trans_b else n
    cdef int lda = k
    if m == 0 or n == 0:
        return
    if k == 0:
        if beta == 0.0:
            memset(c, 0, <Py_ssize_t>m * n * sizeof(float))
        return
    sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda, &beta, c, &n)


cdef void _dense_rows(const float* x, const float* w, float* y, int m, int n, int k,
                      float beta) noexcept nogil:
    """y[m,n] = x[m,k] @ w[n,k]^T + beta*y: sgemv for a single row, else sgemm (on
    the pool in blocks of columns when large)."""
    cdef float alpha = 1.0
    cdef char tr = b'T'
    cdef int one = 1
    cdef _Gemms g
    if m == 1 and k > 0 and n > 0:
        # Row-major w[n,k] is column-major [k,n]; y = (w^T)^T x.
        sgemv(&tr, &k, &n, &alpha, <float*>w, &k, <float*>x, &one, &beta, y, &one)
        return
    g.a, g.b, g.c, g.ai, g.bi = x, w, y, NULL, NULL
    g.sa = g.sb = g.sc = 0
    g.m, g.n, g.k, g.trans_b, g.beta = m, n, k, True, beta
    _gemms(&g, 1)


def as_f32(a):
    """`a` as a C-contiguous float32 array (no copy when it already is one)."""
    return np.ascontiguousarray(a, dtype=np.float32)


def out_buffer(out, shape):
    """The caller's `out` buffer, checked to be C-contiguous float32 of `shape`, or
    a new array when `out` is None (shared by all kernel modules)."""
    shape = tuple(int(s) for s in shape)
    if out is None:
        return np.empty(shape, np.float32)
    if (out.shape != shape or out.dtype != np.float32
            or not out.flags.c_contiguous):
        raise ValueError(
            f"out must be a C-contiguous float32 array of shape {shape}, got "
            f"{out.dtype} {out.shape}")
    return out


@cython.wraparound(True)
def dense(x, w, b, out=None):
    """Fully connected layer: out[..., N] = x[..., K] @ w[N, K]^T + b[N] (b may be None).

    w is in [out, in] layout (PyTorch Linear); leading dims of x are flattened into M.
    Up to 4 rows run on qcc's matrix-vector kernel (runtime/_gemv_impl.h: the same
    bits on every instruction set and thread count), more on sgemm.
    """
    x = as_f32(x)
    w = as_f32(w)
    if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"dense: x {x.shape} does not match w {w.shape}")
    cdef int n = w.shape[0]
    cdef int k = w.shape[1]
    cdef int m = math.prod(x.shape[:-1])
    out = out_buffer(out, x.shape[:-1] + (n,))
    if out.size == 0:
        return out
    cdef float beta = 0.0
    cdef const float[::1] bv
    cdef const float* bp = NULL
    if b is not None:
        bias = as_f32(b).reshape(-1)
        if bias.shape[0] != n:
            raise ValueError(f"dense: bias of {bias.shape[0]} values for {n} outputs")
        bv = bias
        bp = &bv[0]
    cdef float[:, ::1] ov = out.reshape(m, n)
    cdef const float[::1] xv = x.reshape(-1)
    cdef const float[::1] wv = w.reshape(-1)
    cdef const float* xp = &xv[0] if x.size else NULL
    cdef const float* wp = &wv[0] if w.size else NULL
    if m <= _gemv_max_rows and k > 0:
        # few rows: bound by reading the weights, shared by the pool's threads
        with nogil:
            qcc_gemv(xp, wp, bp, &ov[0, 0], m, n, k, _gemv_level, _threads)
        return out
    if bp != NULL:
        out.reshape(m, n)[:] = bias
        beta = 1.0
    with nogil:
        _dense_rows(xp, wp, &ov[0, 0], m, n, k, beta)
    return out


def _batch_offsets(batch_shape, full_shape):
    """Index of each broadcast batch entry into an operand's own (flattened) batch."""
    count = math.prod(batch_shape)
    idx = np.arange(count, dtype=np.intp).reshape(batch_shape)
    return np.ascontiguousarray(np.broadcast_to(idx, full_shape).reshape(-1))


@cython.wraparound(True)
def batched_matmul(a, b, out=None):
    """numpy-style matmul: a[..., M, K] @ b[..., K, N] -> [..., M, N] with sgemm.

    Leading dims broadcast; a 2-D b is shared by every batch entry (one big gemm
    when a is contiguous); 1-D operands are promoted and their dim removed as in
    numpy.matmul.
    """
    a = as_f32(a)
    b = as_f32(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("batched_matmul: operands must have at least one dim")
    a_vec = a.ndim == 1
    b_vec = b.ndim == 1
    a2 = a.reshape(1, -1) if a_vec else a
    b2 = b.reshape(-1, 1) if b_vec else b
    if a2.shape[-1] != b2.shape[-2]:
        raise ValueError(f"batched_matmul: shapes {a.shape} and {b.shape} do not match")
    cdef int m = a2.shape[-2]
    cdef int k = a2.shape[-1]
    cdef int n = b2.shape[-1]
    batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    shape = batch + ((m,) if not a_vec else ()) + ((n,) if not b_vec else ())
    out = out_buffer(out, shape)
    if out.size == 0:
        return out
    cdef float[::1] ov = out.reshape(-1)
    cdef const float[::1] av = a2.reshape(-1)
    cdef const float[::1] bv = b2.reshape(-1)
    cdef const float* ap = &av[0] if a2.size else NULL
    cdef const float* bp = &bv[0] if b2.size else NULL
    cdef Py_ssize_t nb = math.prod(batch)
    cdef _Gemms g
    if b2.ndim == 2:
        # Shared right operand: all batch rows of a form one [batch*M, K] matrix.
        if a2.shape[:-2] != batch:
            a2 = np.ascontiguousarray(np.broadcast_to(a2, batch + (m, k)))
            av = a2.reshape(-1)
            ap = &av[0] if a2.size else NULL
        g.a, g.b, g.c, g.ai, g.bi = ap, bp, &ov[0], NULL, NULL
        g.sa = g.sb = g.sc = 0
        g.m, g.n, g.k, g.trans_b, g.beta = <int>(nb * m), n, k, False, 0.0
        with nogil:
            _gemms(&g, 1)
        return out
    cdef const Py_ssize_t[::1] ai = _batch_offsets(a2.shape[:-2], batch)
    cdef const Py_ssize_t[::1] bi = _batch_offsets(b2.shape[:-2], batch)
    if ap == NULL or bp == NULL:  # k == 0: zeros
        out[...] = 0
        return out
    g.a, g.b, g.c, g.ai, g.bi = ap, bp, &ov[0], &ai[0], &bi[0]
    g.sa, g.sb, g.sc = <Py_ssize_t>m * k, <Py_ssize_t>k * n, <Py_ssize_t>m * n
    g.m, g.n, g.k, g.trans_b, g.beta = m, n, k, False, 0.0
    with nogil:
        _gemms(&g, <int>nb)
    return out
