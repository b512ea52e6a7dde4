# ONNX ConvTranspose on BLAS sgemm + col2im (included by runtime/_conv.pyx, whose
# geometry, workspace and qcc_col2im it uses).


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
