# cython: language_level=3
"""Reference runtime kernels (float32, NCHW). Filled by the runtime work."""

import numpy as np
cimport numpy as cnp
from scipy.linalg.cython_blas cimport sgemm

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
