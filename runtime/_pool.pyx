# cython: language_level=3
"""Pooling kernels of the reference runtime (float32, NCHW). (Resize runs
`qcc.runtime.kernels.reference_resize`, onnxruntime's float32 coordinates.)

Pooling handles 1-3 spatial dims as 3-D problems (leading spatial dims of size 1)
and follows onnxruntime where ONNX leaves room: with ceil_mode a last window that
would start in the end padding is dropped, max over a window without input cells
is -FLT_MAX, and count_include_pad counts the cells inside [-pad_begin, S + pad_end).
"""

import math

import numpy as np

from qcc.runtime._kernels import as_f32, out_buffer

cimport numpy as cnp

cnp.import_array()

include "_pool_geom.pxi"

cdef extern from "_pool_impl.h" nogil:
    int QCC_POOL_MAX, QCC_POOL_AVG, QCC_POOL_AVG_PAD
    void qcc_pool_plane(const float* x, float* out, const qcc_pool_geom* g, int mode,
                        const float* wdiv, float* scratch)
    Py_ssize_t qcc_pool_scratch(const qcc_pool_geom* g)
    void qcc_pool_wdiv(const qcc_pool_geom* g, int include_pad, float* wdiv)
    void qcc_plane_means(const float* x, float* out, Py_ssize_t planes, Py_ssize_t n)


def _pool_out_size(int size, int k, int stride, int pb, int pe, int dil, bint ceil_mode):
    """Output length of one pooled dim (ONNX formula, onnxruntime's ceil_mode rule)."""
    cdef int span = dil * (k - 1) + 1
    cdef int num = size + pb + pe - span
    if num < 0:
        raise ValueError(f"pooling window {span} larger than padded input {size + pb + pe}")
    cdef int n = (num + stride - 1) // stride + 1 if ceil_mode else num // stride + 1
    if ceil_mode and (n - 1) * stride >= size + pb:
        n -= 1
    return n


cdef qcc_pool_geom _pool_geom(tuple shape, kernel, strides, pads, dilations,
                              bint ceil_mode) except *:
    """Pool geometry of input `shape` [N, C, *S] padded to 3 spatial dims."""
    cdef qcc_pool_geom g
    cdef int d = len(shape) - 2
    cdef int i, j
    if not 1 <= d <= 3:
        raise ValueError(f"expected 1-3 spatial dims, got input shape {shape}")
    strides = tuple(strides) if strides is not None else (1,) * d
    pads = tuple(pads) if pads is not None else (0,) * (2 * d)
    dilations = tuple(dilations) if dilations is not None else (1,) * d
    if len(kernel) != d or len(strides) != d or len(dilations) != d or len(pads) != 2 * d:
        raise ValueError(f"attributes do not match {d} spatial dims")
    for i in range(3):
        g.sp[i], g.k[i], g.osp[i], g.st[i], g.pb[i], g.pe[i], g.dl[i] = 1, 1, 1, 1, 0, 0, 1
    for i in range(d):
        j = 3 - d + i
        g.sp[j] = shape[2 + i]
        g.k[j] = kernel[i]
        g.st[j] = strides[i]
        g.pb[j] = pads[i]
        g.pe[j] = pads[d + i]
        g.dl[j] = dilations[i]
        g.osp[j] = _pool_out_size(g.sp[j], g.k[j], g.st[j], g.pb[j], g.pe[j], g.dl[j],
                                  ceil_mode)
    return g


cdef _pool(x, kernel, strides, pads, dilations, bint ceil_mode, int mode, out):
    """Shared driver of max_pool and avg_pool: one qcc_pool_plane call per plane."""
    x = as_f32(x)
    cdef qcc_pool_geom g = _pool_geom(x.shape, kernel, strides, pads, dilations, ceil_mode)
    cdef int d = x.ndim - 2
    out = out_buffer(out, x.shape[:2] + tuple(g.osp[i] for i in range(3 - d, 3)))
    cdef const float[::1] xv = x.reshape(-1)
    cdef float[::1] ov = out.reshape(-1)
    cdef float[::1] wdiv = np.empty(g.osp[2], np.float32)
    cdef float[::1] scratch = np.empty(qcc_pool_scratch(&g), np.float32)
    cdef Py_ssize_t planes = x.shape[0] * x.shape[1]
    cdef Py_ssize_t pin = <Py_ssize_t>g.sp[0] * g.sp[1] * g.sp[2]
    cdef Py_ssize_t pout = <Py_ssize_t>g.osp[0] * g.osp[1] * g.osp[2]
    cdef Py_ssize_t p
    if planes == 0:
        return out
    qcc_pool_wdiv(&g, mode == QCC_POOL_AVG_PAD, &wdiv[0])
    with nogil:
        for p in range(planes):
            qcc_pool_plane(&xv[0] + p * pin, &ov[0] + p * pout, &g, mode, &wdiv[0],
                           &scratch[0])
    return out


def max_pool(x, kernel, strides, pads, dilations, bint ceil_mode, out=None):
    """ONNX MaxPool of x[N,C,*S] (1-3 spatial dims) -> [N,C,*OS].

    kernel, strides, dilations: one value per spatial dim (None strides/dilations
    mean 1); pads: ONNX order (begin_1..begin_d, end_1..end_d), None means 0.
    Padded cells are ignored. OS = floor or ceil((S + pb + pe - dil*(K-1) - 1)/stride) + 1,
    minus one with ceil_mode when the last window would start in the end padding.
    """
    return _pool(x, kernel, strides, pads, dilations, ceil_mode, QCC_POOL_MAX, out)


def avg_pool(x, kernel, strides, pads, bint ceil_mode, bint count_include_pad, out=None):
    """ONNX AveragePool of x[N,C,*S] (1-3 spatial dims) -> [N,C,*OS].

    Output size as max_pool. The divisor is the number of input cells in the
    window, or with count_include_pad the cells inside [-pad_begin, S + pad_end)
    (onnxruntime's rule for windows past the end with ceil_mode).
    """
    mode = QCC_POOL_AVG_PAD if count_include_pad else QCC_POOL_AVG
    return _pool(x, kernel, strides, pads, None, ceil_mode, mode, out)


def global_avg_pool(x, out=None):
    """ONNX GlobalAveragePool: x[N,C,*S] -> [N,C,1,...,1], the mean over S."""
    x = as_f32(x)
    if x.ndim < 3:
        raise ValueError(f"expected [N, C, *S], got shape {x.shape}")
    out = out_buffer(out, x.shape[:2] + (1,) * (x.ndim - 2))
    cdef Py_ssize_t planes = x.shape[0] * x.shape[1]
    cdef Py_ssize_t n = math.prod(x.shape[2:])
    if planes == 0:
        return out
    if n == 0:
        out.fill(np.nan)
        return out
    cdef const float[::1] xv = x.reshape(-1)
    cdef float[::1] ov = out.reshape(-1)
    with nogil:
        qcc_plane_means(&xv[0], &ov[0], planes, n)
    return out
