# The blocked layout's 2-D max and average pools (included by _blocked.pyx: its
# helpers _blocked_input, _out, _fp, the pool job's types, and _blocked_planes.pxi's
# _set_fake_quant).

_POOL_MODES = {"max": 0, "avg": 1, "avg_pad": 2}   # QCC_BLK_POOL_*


def pool(y, int c, kind, kernel, strides, pads, dilations, out_hw, out=None,
         fake_quant=None):
    """2-D pool of the blocked y of c channels into the blocked output of
    out_hw = (OH, OW) (the op's, ceil_mode included): `kind` "max", "avg" (the cells
    inside the input counted) or "avg_pad" (count_include_pad); kernel, strides,
    dilations of 2 values, pads (top, left, bottom, right). The bits of
    qcc.runtime._pool.max_pool / avg_pool (their operations in their order, lane by
    lane); with `fake_quant` = (scale, zero point, qmin, qmax), one per tensor, then
    its fake-quant in the same pass (the bits of _eltwise.fake_quant)."""
    _require_kernels("pool")
    if kind not in _POOL_MODES:
        raise ValueError(f"blocked pool: kind {kind!r} is not one of {', '.join(_POOL_MODES)}")
    _blocked_input(y, c)
    kh, kw = (int(v) for v in kernel)
    sh, sw = (1, 1) if strides is None else (int(v) for v in strides)
    dh, dw = (1, 1) if dilations is None else (int(v) for v in dilations)
    ph, pw, eh, ew = (0, 0, 0, 0) if pads is None else (int(v) for v in pads)
    oh, ow = (int(v) for v in out_hw)
    if min(kh, kw, sh, sw, dh, dw, oh, ow) < 1 or min(ph, pw, eh, ew) < 0:
        raise ValueError(f"blocked pool: kernel {kernel}, strides {strides}, "
                         f"dilations {dilations}, pads {pads}, output {out_hw}")
    out = _out(out, (y.shape[0], y.shape[1], oh, ow, 16))
    cdef qcc_blk_pool_job job
    memset(&job, 0, sizeof(job))
    job.x = _fp(y)
    job.y = _fp(out)
    # the NCHW kernels' geometry (runtime/_pool_geom.h): dim 0 a plane of one, H, W
    job.g.sp = [1, y.shape[2], y.shape[3]]
    job.g.k = [1, kh, kw]
    job.g.osp = [1, oh, ow]
    job.g.st = [1, sh, sw]
    job.g.pb = [0, ph, pw]
    job.g.pe = [0, eh, ew]
    job.g.dl = [1, dh, dw]
    job.c, job.mode = c, _POOL_MODES[kind]
    cdef float fq_s, fq_z
    if fake_quant is not None:
        fq_s, fq_z = fake_quant[0], fake_quant[1]
        job.fq.fq_scale = &fq_s
        job.fq.fq_zero = &fq_z
        job.fq.qmin, job.fq.qmax = fake_quant[2], fake_quant[3]
    job.planes = y.shape[0] * y.shape[1]
    job.level = _level
    # bands of output rows: the W-pooled rows of a band stay in L1 / L2 (8 rows of
    # 56 positions, 3 taps a stride of 2: 17 rows, 60 KB), some 8 tasks a thread
    job.band = max(1, min(8, oh, (job.planes * oh + 8 * _threads - 1) // (8 * _threads)))
    job.bands = (oh + job.band - 1) // job.band
    cdef int total = job.planes * job.bands
    cdef int width = min(_threads, total) if job.planes * oh * ow * kh * kw * 16 >= 65536 else 1
    job.width = width
    with nogil:
        qcc_parallel(qcc_blk_pool_worker, &job, width)
    if job.failed:
        raise MemoryError("blocked pool: out of memory for the scratch")
    return out
