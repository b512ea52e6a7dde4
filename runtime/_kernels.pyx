# cython: language_level=3
"""Reference runtime kernels (float32): matrix products through BLAS sgemm.

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


def gemm(const float[:, ::1] a, const float[:, ::1] b, float[:, ::1] out,
         bint trans_b=False):
    """out[M,N] = a[M,K] @ b[K,N] (or b[N,K]^T when trans_b) with BLAS sgemm."""
    cdef int m = a.shape[0]
    cdef int k = a.shape[1]
    cdef int n = out.shape[1]
    cdef float alpha = 1.0
    cdef float beta = 0.0
    cdef char ta = b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef int ldb = k if trans_b else n
    # Row-major C = A B is column-major C^T = B^T A^T.
    sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*>&b[0, 0], &ldb,
          <float*>&a[0, 0], &k, &beta, &out[0, 0], &n)
    return out


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
    """y[m,n] = x[m,k] @ w[n,k]^T + beta*y: sgemv for a single row, else sgemm."""
    cdef float alpha = 1.0
    cdef char tr = b'T'
    cdef int one = 1
    if m == 1 and k > 0 and n > 0:
        # Row-major w[n,k] is column-major [k,n]; y = (w^T)^T x.
        sgemv(&tr, &k, &n, &alpha, <float*>w, &k, <float*>x, &one, &beta, y, &one)
    else:
        _sgemm_rm(x, w, y, m, n, k, True, beta)


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
    if b is not None:
        bias = as_f32(b).reshape(-1)
        if bias.shape[0] != n:
            raise ValueError(f"dense: bias of {bias.shape[0]} values for {n} outputs")
        out.reshape(m, n)[:] = bias
        beta = 1.0
    cdef float[:, ::1] ov = out.reshape(m, n)
    cdef const float[::1] xv = x.reshape(-1)
    cdef const float[::1] wv = w.reshape(-1)
    cdef const float* xp = &xv[0] if x.size else NULL
    cdef const float* wp = &wv[0] if w.size else NULL
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
    cdef Py_ssize_t i
    if b2.ndim == 2:
        # Shared right operand: all batch rows of a form one [batch*M, K] matrix.
        if a2.shape[:-2] != batch:
            a2 = np.ascontiguousarray(np.broadcast_to(a2, batch + (m, k)))
            av = a2.reshape(-1)
            ap = &av[0] if a2.size else NULL
        with nogil:
            _sgemm_rm(ap, bp, &ov[0], <int>(nb * m), n, k, False, 0.0)
        return out
    cdef const Py_ssize_t[::1] ai = _batch_offsets(a2.shape[:-2], batch)
    cdef const Py_ssize_t[::1] bi = _batch_offsets(b2.shape[:-2], batch)
    cdef Py_ssize_t sa = <Py_ssize_t>m * k
    cdef Py_ssize_t sb = <Py_ssize_t>k * n
    cdef Py_ssize_t so = <Py_ssize_t>m * n
    with nogil:
        for i in range(nb):
            _sgemm_rm(ap + ai[i] * sa if ap != NULL else NULL,
                      bp + bi[i] * sb if bp != NULL else NULL,
                      &ov[0] + i * so, m, n, k, False, 0.0)
    return out
