# The dense layer `Dense` and `matmul` on the GEMM's dense kernel (included by
# _conv.pyx, after WeightPack, _packed, _gemv_packed, _f32_c and _fp).

cdef extern from "_conv_impl.h" nogil:
    int qcc_t_chunk(int k)
    void qcc_dense_pack_kn(const float* b, Py_ssize_t ldb, int k, int n, int kc, float* bp)
    bint qcc_dense_runs()
    int qcc_dense_run(const float* x, Py_ssize_t ldx, int m, int k, const float* wp, int n,
                      const float* bias, float* y, Py_ssize_t ldy, int threads,
                      const qcc_dense_post* post)
    int qcc_dense_run_batch(const float* x, Py_ssize_t ldx, int m, int k, const float* wp,
                            int n, const float* bias, float* y, Py_ssize_t ldy, int batch,
                            Py_ssize_t sx, Py_ssize_t sw, Py_ssize_t sy, int threads,
                            const qcc_dense_post* post)
    int QCC_T_NR

cdef extern from "_dense_post.h" nogil:
    ctypedef struct qcc_dense_post_arg:
        int gelu, fq_on
        float s, z, qmin, qmax
    ctypedef void (*qcc_dense_post_fn)(float* y, const float* res, Py_ssize_t n,
                                       const qcc_dense_post_arg* arg) noexcept nogil
    ctypedef struct qcc_dense_post:
        qcc_dense_post_fn fn
        const float* res
        Py_ssize_t ldr
        const qcc_dense_post_arg* arg

# The epilogue of a dense layer (residual add, GELU, fake-quant) is _norm's
# qcc_norm_post (compiled without FMA contraction: each step's own bits).
from qcc.runtime._norm import _post_capsule
cdef qcc_dense_post_fn _norm_post = <qcc_dense_post_fn>PyCapsule_GetPointer(
    _post_capsule, "qcc.runtime.dense_post")


cdef class Dense:
    """A dense layer y[M, N] = x[M, K] @ w[N, K]^T + b[N] on the GEMM's kernel with the
    outputs in the lanes (runtime/_gemm_impl.h, qcc_dense_run: y written row-major
    where it lies, x read in place); w packed in panels of QCC_T_NR outputs, kept
    from call to call while the same array object is given (a plan's constant
    weights are packed once, at the step's first run; other weights are packed at
    every call). Every output is 0, then fma of x[p, k] * w[o, k] for k ascending,
    on any thread count, then + b[o] (the sum rounded, then the bias added: ONNX
    Gemm's C, and the same bits as a dense followed by an Add). At most `min_rows`
    rows run on the matrix-vector kernel (runtime/_gemv_impl.h, on every instruction
    set: the bits of qcc.runtime._kernels.dense) with w packed for it once, the same
    way. A call returns None where neither runs (more rows on an instruction set
    without AVX-512, other dtypes or layouts): the caller takes sgemm then."""

    cdef WeightPack pack, vpack
    cdef public int min_rows

    def __init__(self, int min_rows=4):
        self.pack = WeightPack()
        self.vpack = WeightPack()
        self.min_rows = min_rows

    @property
    def nbytes(self):
        """Bytes of the packed weights (0 before the first call)."""
        return self.pack.nbytes + self.vpack.nbytes

    def __call__(self, x, w, b, out=None, residual=None, gelu=False, fake_quant=None):
        """y = x @ w^T + b, then an epilogue: + residual (a [M, N] float32 array),
        GELU, and the per-tensor fake-quant (scale, zero point, qmin, qmax), the bits
        of the add, GELU and fake-quant steps after it. With an epilogue, only on
        the dense kernel (None for at most min_rows rows)."""
        if not (_f32_c(x) and _f32_c(w)) or x.ndim != 2 or w.ndim != 2 \
                or x.shape[1] != w.shape[1]:
            return None
        cdef bint post = residual is not None or gelu or fake_quant is not None
        if x.shape[0] <= self.min_rows:   # (the caller runs an epilogue after it)
            return None if post else self._vector(x, w, b, out)
        if not qcc_dense_runs():
            return None
        cdef int m = x.shape[0]
        cdef int k = x.shape[1]
        cdef int n = w.shape[0]
        if b is not None and not (_f32_c(b) and b.size == n):
            return None
        if out is None:
            out = np.empty((m, n), np.float32)
        elif not (_f32_c(out) and out.shape == (m, n)):
            return None
        cdef qcc_dense_post q
        cdef qcc_dense_post_arg qa
        if post:
            if residual is not None and not (_f32_c(residual) and residual.shape == (m, n)):
                return None
            q.fn = _norm_post
            q.res = _fp(residual) if residual is not None else NULL
            q.ldr = n
            q.arg = &qa
            qa.gelu = gelu
            qa.fq_on = fake_quant is not None
            qa.s = qa.z = qa.qmin = qa.qmax = 0
            if fake_quant is not None:
                qa.s, qa.z, qa.qmin, qa.qmax = fake_quant
        data = _packed(self.pack, w, w, 1, n, k, QCC_T_NR, qcc_t_chunk(k))
        cdef const float* xp = _fp(x)
        cdef const float* wpp = _fp(data)
        cdef const float* bp = _fp(b) if b is not None else NULL
        cdef float* yp = <float*>_fp(out)
        with nogil:
            qcc_dense_run(xp, k, m, k, wpp, n, bp, yp, n, qcc_gemm_threads, &q if post else NULL)
        return out

    cdef _vector(self, x, w, b, out):
        """At most min_rows rows: the matrix-vector kernel on the packed weights."""
        cdef int m = x.shape[0]
        cdef int k = x.shape[1]
        cdef int n = w.shape[0]
        if m == 0 or k == 0 or n == 0 or b is not None and not (_f32_c(b) and b.size == n):
            return None
        if out is None:
            out = np.empty((m, n), np.float32)
        elif not (_f32_c(out) and out.shape == (m, n)):
            return None
        data = _gemv_packed(self.vpack, w, w, n, k)
        cdef const float* xp = _fp(x)
        cdef const float* wpp = _fp(data)
        cdef const float* bp = _fp(b) if b is not None else NULL
        cdef float* yp = <float*>_fp(out)
        with nogil:
            qcc_gemv_w(xp, wpp, 1, bp, yp, m, n, k, qcc_gemm_variant(), qcc_gemm_threads)
        return out


def matmul(a, b, out=None):
    """a[..., M, K] @ b[..., K, N] on the dense kernel (qcc_dense_run, AVX-512) when
    both are C-contiguous float32 of at least 2 dims with the same leading dims, or b
    is 2-D (shared: a's rows form one [*, K] matrix), and M > 4: each output is 0,
    then fma of a[m, k] * b[k, n] for k ascending. Returns None otherwise (the caller
    takes sgemm). b is packed at every call (it is an activation: attention's keys
    and values)."""
    if not qcc_dense_runs() or not (_f32_c(a) and _f32_c(b)) or a.ndim < 2 or b.ndim < 2:
        return None
    if b.ndim != 2 and a.shape[:a.ndim - 2] != b.shape[:b.ndim - 2]:
        return None
    cdef int m = a.shape[a.ndim - 2]
    cdef int k = a.shape[a.ndim - 1]
    cdef int n = b.shape[b.ndim - 1]
    if b.shape[b.ndim - 2] != k or m <= 4 or k == 0:
        return None
    shape = a.shape[:a.ndim - 1] + (n,)
    if out is None:
        out = np.empty(shape, np.float32)
    elif not (_f32_c(out) and out.shape == shape):
        return None
    if out.size == 0:
        return out
    cdef int chunk = qcc_t_chunk(k)
    cdef Py_ssize_t nb = 1 if b.ndim == 2 else math.prod(a.shape[:a.ndim - 2])
    cdef Py_ssize_t rows = m if b.ndim != 2 else math.prod(a.shape[:a.ndim - 1])
    cdef Py_ssize_t per = qcc_gemm_packed_size(n, k, QCC_T_NR)
    # b's panels in a per-thread scratch kept across calls (a new array each call
    # took fresh pages from the OS: about 20 us of attention's 0.11 ms score matmul)
    packed = getattr(_local, "matmul_b", None)
    if packed is None or packed.shape[0] < per * nb:
        packed = _aligned(max(per * nb, 1))
        _local.matmul_b = packed
    cdef const float* ap = _fp(a)
    cdef const float* bp = _fp(b)
    cdef float* pp = <float*>_fp(packed)
    cdef float* yp = <float*>_fp(out)
    cdef Py_ssize_t e
    with nogil:
        for e in range(nb):
            qcc_dense_pack_kn(bp + e * k * n, n, k, n, chunk, pp + e * per)
        qcc_dense_run_batch(ap, k, <int>rows, k, pp, n, NULL, yp, n, <int>nb, rows * k, per,
                            rows * n, qcc_gemm_threads, NULL)
    return out
