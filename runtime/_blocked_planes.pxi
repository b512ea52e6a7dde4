# The blocked layout's whole-plane jobs: the layout copies, the means (global average
# pool) and the per-channel scale (included by _blocked.pyx: its helpers
# _blocked_input, _out, _fp and the plane job's type).


def to_blocked(x, out=None):
    """NCHW float32 x -> its blocked array."""
    x = np.ascontiguousarray(x, np.float32)
    out = _out(out, blocked_shape(x.shape))
    cdef const float* xp = _fp(x)
    cdef float* yp = _fp(out)
    cdef int n = x.shape[0], c = x.shape[1]
    cdef Py_ssize_t plane = <Py_ssize_t>x.shape[2] * x.shape[3]
    with nogil:
        qcc_blk_from_nchw(xp, yp, n, c, plane)
    return out


def to_nchw(y, int c, out=None):
    """The blocked array y of c channels -> NCHW."""
    _blocked_input(y, c)
    out = _out(out, (y.shape[0], c, y.shape[2], y.shape[3]))
    cdef qcc_blk_plane_job job
    memset(&job, 0, sizeof(job))
    job.x = _fp(y)
    job.y = _fp(out)
    job.c = c
    job.planes = y.shape[0] * y.shape[1]
    job.plane = <Py_ssize_t>y.shape[2] * y.shape[3]
    cdef int width = min(_threads, job.planes) if job.plane * job.planes * 16 >= 65536 else 1
    job.width = width
    with nogil:
        qcc_parallel(qcc_blk_to_nchw_worker, &job, width)
    return out


cdef _set_fake_quant(qcc_blk_plane_job* job, fake_quant):
    if fake_quant is not None:
        fs, fz, qmin, qmax = fake_quant
        job.fq_on = 1
        job.fs, job.fz, job.qmin, job.qmax = fs, fz, qmin, qmax


def means(y, int c, out=None, fake_quant=None, scale=None):
    """Global average pool of the blocked y of c channels -> [N, C, 1, 1] (the bits of
    qcc.runtime._pool.global_avg_pool); with `scale` (c float32 factors), each mean
    times its channel's factor (numpy's float32 product); with `fake_quant` = (scale,
    zero point, qmin, qmax), then their fake-quant (the bits of _eltwise.fake_quant)."""
    _blocked_input(y, c)
    out = _out(out, (y.shape[0], c, 1, 1))
    cdef qcc_blk_plane_job job
    memset(&job, 0, sizeof(job))
    _set_fake_quant(&job, fake_quant)
    if scale is not None:
        scale = np.ascontiguousarray(scale, np.float32).reshape(-1)
        if scale.shape[0] != c:
            raise ValueError(f"blocked means: {scale.shape[0]} factors for {c} channels")
        job.s = _fp(scale)
    job.x = _fp(y)
    job.y = _fp(out)
    job.c = c
    job.planes = y.shape[0] * ((c + 15) // 16)
    job.plane = <Py_ssize_t>y.shape[2] * y.shape[3]
    cdef int width = min(_threads, job.planes) if job.plane * job.planes * 16 >= 65536 else 1
    job.width = width
    with nogil:
        qcc_parallel(qcc_blk_means_worker, &job, width)
    return out


def scale(y, s, out=None, fake_quant=None):
    """y * s, y blocked and s [N, C, 1, 1] (or [1, C, 1, 1]): blocked. With
    `fake_quant` = (scale, zero point, qmin, qmax), one per tensor, the products'
    fake-quant in the same pass (the bits of _eltwise.fake_quant after the product)."""
    s = np.ascontiguousarray(s, np.float32)
    cdef int c = s.shape[1] if s.ndim == 4 else 0
    _blocked_input(y, c)
    cdef int n = y.shape[0]
    if s.ndim != 4 or s.shape[2:] != (1, 1) or s.shape[0] not in (1, n):
        raise ValueError(f"blocked scale: s {s.shape} is not per channel of {c} channels")
    if s.shape[0] != n:
        s = np.ascontiguousarray(np.broadcast_to(s, (n, c, 1, 1)))
    out = _out(out, y.shape)
    cdef qcc_blk_plane_job job
    memset(&job, 0, sizeof(job))
    job.x = _fp(y)
    job.s = _fp(s)
    job.y = _fp(out)
    job.n, job.c = n, c
    _set_fake_quant(&job, fake_quant)
    job.planes = n * ((c + 15) // 16)
    job.plane = <Py_ssize_t>y.shape[2] * y.shape[3]
    cdef int width = _threads if job.plane * job.planes * 16 >= 65536 else 1
    # whole planes (each thread a contiguous run of them, qcc_claim_home), parts of
    # planes when they are fewer than 2 a thread
    cdef int parts = 1 if job.planes >= 2 * width else (2 * width + job.planes - 1) // job.planes
    job.part = (job.plane + parts - 1) // parts
    job.width = width = min(width, job.planes * parts)
    with nogil:
        qcc_parallel(qcc_blk_scale_worker, &job, width)
    return out
