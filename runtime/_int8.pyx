# cython: language_level=3
"""Integer kernels of the reference runtime: int8 convolution (1-3 spatial dims,
groups) and dense with exact int32 accumulation, optionally requantized to int8 in
the same pass. `qcc.runtime.int8` packs the weights and per-channel offsets once
(`int8.pack`) and keeps the numpy kernels that define the semantics; these are the
fast path for int8 activations and int8 weights whose zero points are 0.

Arithmetic. Activations enter the GEMM as uint8 `u = x_q + 128` (the bit pattern of
x_q with its sign bit flipped), so that every product is u8 x s8, the operand types
of the x86 dot-product instructions. Padding cells hold `z_x + 128`. Then

    acc[o, p] = sum_k w[o, k] * (x[k, p] - z_x) + b[o]
              = sum_k w[o, k] * u[k, p] + (b[o] - (z_x + 128) * sum_k w[o, k])

and the second term is the per-channel `off` computed once with the weights. All
sums are int32 with wraparound (numpy's int64 sums cast to int32 give the same
integers), so the result is exact whenever it fits int32, whatever the partial sums.

Dispatch. The GEMM (runtime/_int8_impl.h) has three variants: AVX-512 VNNI
(`vpdpbusd`), AVX2 (operands widened to int16, `vpmaddwd`: exact, no int16
saturation) and scalar C; they give identical integers. The best one the CPU
supports, at or below the level the environment variable QCC_ISA names (scalar,
avx2, avx512; runtime/_common.h), is chosen at import, and `set_isa(name)` forces
another (the tests run all of them and compare). Threads: the GIL is released and
the tasks (image, group, block of positions, block of output channels) are shared by
the calling thread and the workers of the pool in runtime/_common.h (the float conv
GEMM's pool): a task is taken by whichever thread comes first and the caller never
waits for a worker that has not started. (OpenMP `prange` was measured first: its
end-of-loop barrier waits for a thread the OS has descheduled, which on a busy
2-core machine made two threads six times slower than one.)
"""

import os

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int8_t, int32_t, uint8_t

cnp.import_array()

include "_half_stage.pxi"

cdef extern from "_int8_impl.h" nogil:
    ctypedef struct qcc_i8_out:
        int32_t* out
        int8_t* y
        const float* mult
        int zy, qmin, qmax
        void* yh
        const float* dscale
        qcc_h_stage hst
        int hisa
        const float* res
        int res_first, relu2
        float* ysum
        int8_t* yq
        qcc_h_stage qst
    int qcc_h_supported(int level)
    ctypedef struct qcc_geom:
        int cg, og
        int sp[3]
        int k[3]
        int osp[3]
        int st[3]
        int pb[3]
        int dl[3]
    ctypedef struct qcc_positions:
        int ow, oh
        Py_ssize_t s_q, s_h, s_w
    ctypedef struct qcc_i8_job:
        int n_img, groups
        int m, n, k
        const int8_t* w
        Py_ssize_t lda
        const int32_t* off
        const uint8_t* src
        Py_ssize_t src_grp
        const Py_ssize_t* kofs
        qcc_positions pos
        Py_ssize_t row_stride
        int slack
        qcc_i8_out o
        int ntasks
        int isa
        int failed
    int QCC_I8_SLACK
    int QCC_I8_NC
    int qcc_out_size(int n, int k, int st, int pb, int pe, int dl)
    int qcc_padded_dims(const qcc_geom* g, int ow_n, int* dims)
    void qcc_conv_kofs(const qcc_geom* g, const int* dims, int split, Py_ssize_t* kofs)
    qcc_positions qcc_conv_positions(const qcc_geom* g, const int* dims, int split)
    void qcc_positions_merge(qcc_positions* s, int n)
    int qcc_isa_ceiling()
    int qcc_isa_best(int ceiling, int vnni)
    int qcc_i8_supported(int level)
    void qcc_i8_run(qcc_i8_job* job, int threads)
    ctypedef struct qcc_i8_dw_job:
        const int8_t* x
        const int8_t* w
        Py_ssize_t lda
        const int32_t* off
        const qcc_geom* g
        int groups, planes
        uint8_t fill
        qcc_i8_out o
        int failed
    void qcc_i8_depthwise(qcc_i8_dw_job* job, int threads)
    int qcc_i8_pad_all(const int8_t* x, Py_ssize_t x_step, int8_t* p, Py_ssize_t p_step,
                       int count, const qcc_geom* g, const int* dims, int split,
                       int8_t z_x, int threads)
    void qcc_i8_store(const qcc_i8_out* o, const int32_t* c, Py_ssize_t ldc, Py_ssize_t at,
                      Py_ssize_t ldy, int rows, int cols, int ch)
    int QCC_H_F32, QCC_H_F16, QCC_H_F16F32, QCC_H_QUANT


cdef extern from "_int8_lanes.h" nogil:
    ctypedef struct qcc_il_job:
        int n_img, m, cblocks, k4
        const int8_t* wl
        const int32_t* off
        const uint8_t* src
        Py_ssize_t src_img
        const Py_ssize_t* kofs
        int osp[3]
        int st[3]
        int dims[3]
        int c4n
        int npos
        qcc_i8_out o
        int amx
        int failed
    int QCC_IL_NR
    int qcc_amx_ready()
    void qcc_il_run(qcc_il_job* job, const int8_t* x, Py_ssize_t x_img, const qcc_geom* g,
                    int c, uint8_t fill, int threads)


ISAS = ("avx512vnni", "avx2", "baseline")
"""Instruction sets of the GEMM, best first (ISA levels 2, 1, 0 of _common.h)."""


cdef inline int _level(int index) noexcept nogil:
    return 2 - index


def default_isa():
    """The best instruction set this CPU runs at or below QCC_ISA (unset or unknown:
    the best one)."""
    return ISAS[2 - qcc_isa_best(qcc_isa_ceiling(), 1)]


cdef int _isa = ISAS.index(default_isa())


def supported_isas():
    """The instruction sets this CPU runs, best first."""
    return [name for i, name in enumerate(ISAS) if qcc_i8_supported(_level(i))]


def isa():
    """The instruction set the kernels use now."""
    return ISAS[_isa]


def set_isa(name):
    """Use instruction set `name` (one of `supported_isas()`; None: `default_isa()`);
    returns the previous."""
    global _isa
    if name is None:
        name = default_isa()
    if name not in ISAS or not qcc_i8_supported(_level(ISAS.index(name))):
        raise ValueError(f"instruction set {name!r} is not supported here "
                         f"(supported: {', '.join(supported_isas())})")
    old = ISAS[_isa]
    _isa = ISAS.index(name)
    return old


# One thread pool for the whole runtime: this module's jobs run on the workers of
# qcc.runtime._kernels (runtime/_common.h).
from cpython.pycapsule cimport PyCapsule_GetPointer
cdef extern from "_common.h":
    void qcc_pool_bind(void *p)
from qcc.runtime._kernels import _pool_capsule
qcc_pool_bind(PyCapsule_GetPointer(_pool_capsule, "qcc.runtime.pool"))

from qcc.runtime.kernels import aligned as _aligned
from qcc.runtime.threads import default_threads as _default_threads


cdef int _threads = _default_threads()


def set_threads(int n):
    """Set how many threads the int8 kernels use; returns the old count."""
    global _threads
    old = _threads
    _threads = max(1, min(n, 64))
    return old


def padded_length(int k):
    """Row length of the packed weights (and dense columns): k rounded up to 32."""
    return (k + 31) // 32 * 32


def _pad3(vals, int fill):
    vals = [int(v) for v in vals]
    return [fill] * (3 - len(vals)) + vals


include "_int8_stages.pxi"


def _conv(x, wpack, off, kernel, int z_x, strides, pads, dilations, int groups, stage,
          lanes=None):
    cdef int d = x.ndim - 2
    cdef int i
    x = np.ascontiguousarray(x, np.int8)
    cdef int n_img = x.shape[0]
    cdef int c = x.shape[1]
    cdef int o = wpack.shape[0]
    cdef qcc_geom g
    if o % groups or c % groups:
        raise ValueError(f"groups {groups} do not divide the {c} input and {o} output "
                         "channels")
    sp, ks, st = _pad3(x.shape[2:], 1), _pad3(kernel, 1), _pad3(strides, 1)
    pb, dl = _pad3(pads[:d], 0), _pad3(dilations, 1)
    pe = _pad3(pads[d:], 0)
    g.cg = c // groups
    g.og = o // groups
    for i in range(3):
        g.sp[i], g.k[i], g.st[i], g.pb[i], g.dl[i] = sp[i], ks[i], st[i], pb[i], dl[i]
        g.osp[i] = qcc_out_size(sp[i], ks[i], st[i], pb[i], pe[i], dl[i])
        if g.osp[i] < 1:
            raise ValueError(f"empty conv output for x {x.shape} and kernel {tuple(kernel)}")
    osp = [g.osp[3 - d + i] for i in range(d)]
    cdef int kc = g.cg * g.k[0] * g.k[1] * g.k[2]
    if wpack.ndim != 2 or wpack.shape[1] != padded_length(kc):
        raise ValueError(f"packed weight {wpack.shape} does not fit x {x.shape}, kernel "
                         f"{tuple(kernel)} and groups {groups}")
    if g.cg == 1 and g.og == 1:
        return _depthwise(x, wpack, off, &g, groups, osp, z_x, stage)
    if lanes is not None and groups == 1 and _level(_isa) == 2 and _lanes_takes(&g):
        return _conv_lanes(x, lanes, off, &g, osp, z_x, stage)
    cdef Py_ssize_t per_image = <Py_ssize_t>g.osp[0] * g.osp[1] * g.osp[2]
    if d < 3 and n_img > 1 and per_image < QCC_I8_NC and (stage is not None or
                                                          per_image <= 32):
        # few positions an image: the images become one more (outer) spatial dim of
        # kernel 1 so that the GEMM's position blocks span images (full panels, and
        # the weights read once a block rather than once an image). (An int32 result
        # is written in place with rows of all the images' positions: past one panel
        # an image, their stride costs more than the merge gains.)
        xt = np.ascontiguousarray(np.moveaxis(x, 0, 1))[None]
        if stage is not None and stage[0] == "residual" and stage[4] is not None:
            # the residual in the same layout
            stage = with_residual(stage, np.moveaxis(stage[4], 0, 1)[None])
        res = _conv(xt, wpack, off, (1, *kernel), z_x, (1, *strides),
                    (0, *pads[:d], 0, *pads[d:]), (1, *dilations), groups, stage)
        if isinstance(res, tuple):
            return tuple(np.ascontiguousarray(np.moveaxis(r[0], 1, 0)) for r in res)
        return np.ascontiguousarray(np.moveaxis(res[0], 1, 0))
    cdef int dims[3]
    cdef int split = g.st[2] == 2
    cdef bint padded = not qcc_padded_dims(&g, g.osp[2], dims) or split
    cdef qcc_positions pos = qcc_conv_positions(&g, dims, split)
    qcc_positions_merge(&pos, g.osp[0] * g.osp[1] * g.osp[2])
    # the gather reads x in place when every panel is one contiguous run, else a copy
    # (padded where the conv pads) with QCC_I8_SLACK bytes to spare
    padded = padded or pos.ow != g.osp[0] * g.osp[1] * g.osp[2] or pos.s_w != 1
    cdef Py_ssize_t vol = <Py_ssize_t>dims[0] * dims[1] * dims[2]
    cdef Py_ssize_t pin = <Py_ssize_t>g.sp[0] * g.sp[1] * g.sp[2]
    cdef Py_ssize_t pout = <Py_ssize_t>g.osp[0] * g.osp[1] * g.osp[2]
    cdef const int8_t[::1] xv = x.reshape(-1)
    pad = _aligned(n_img * c * vol + QCC_I8_SLACK if padded else 1, dtype=np.int8)
    kofs = np.empty(max(1, kc), np.intp)
    cdef int8_t[::1] padv = pad
    cdef Py_ssize_t[::1] kofsv = kofs
    qcc_conv_kofs(&g, dims, split, &kofsv[0])
    cdef const int8_t[:, ::1] wv = np.ascontiguousarray(wpack, np.int8)
    cdef const int32_t[::1] ov = np.ascontiguousarray(off, np.int32).reshape(-1)
    if ov.shape[0] != o:
        raise ValueError(f"{ov.shape[0]} offsets for {o} output channels")
    cdef qcc_i8_job job
    job.n_img = n_img
    job.groups = groups
    job.m = g.og
    job.n = <int>pout
    job.k = kc
    job.w = &wv[0, 0]
    job.lda = wv.shape[1]
    job.off = &ov[0]
    job.src = <const uint8_t*>&padv[0] if padded else <const uint8_t*>&xv[0]
    job.src_grp = g.cg * (vol if padded else pin)
    job.slack = padded
    job.kofs = &kofsv[0]
    job.pos = pos
    job.row_stride = 0
    job.isa = _level(_isa)
    job.failed = 0
    res, keep = _output((n_img, o, *osp), o, stage, job.isa, &job.o)
    with nogil:
        if padded and qcc_i8_pad_all(&xv[0], <Py_ssize_t>g.cg * pin, &padv[0],
                                     <Py_ssize_t>g.cg * vol, n_img * groups, &g, dims,
                                     split, <int8_t>z_x, _threads):
            job.failed = 1
        else:
            qcc_i8_run(&job, _threads)
    if job.failed:
        raise MemoryError("int8 conv: out of memory for the GEMM scratch")
    return res


def lanes_shape(int o, int c, int taps):
    """Shape of the weights of the channels-in-lanes conv (`pack_lanes`)."""
    return ((o + QCC_IL_NR - 1) // QCC_IL_NR, (c + 3) // 4 * taps, QCC_IL_NR, 4)


cdef int _lanes = 1   # 0: never, 1: where _lanes_takes, 2: always
LANES = ("never", "auto", "always")


cdef int _mode(what, mode) except -1:
    """The index in LANES of a `set_lanes` / `set_amx` mode."""
    if mode not in LANES:
        raise ValueError(f"{what} mode {mode!r}: expected one of {LANES}")
    return LANES.index(mode)


def set_lanes(mode):
    """Where the AVX-512 VNNI variant runs convolutions with the output channels in the
    lanes (`conv`'s `lanes` weights given): "auto" (the measured rule of
    `_lanes_takes`), "always" or "never" (the tests force each); returns the old mode."""
    global _lanes
    old = LANES[_lanes]
    _lanes = _mode("lanes", mode)
    return old


# the lanes conv's sums on AMX tiles where the CPU and OS allow: 0 never (QCC_AMX=0),
# 1 from 64 input channels (a tile's rows then one tap's words), 2 always
cdef int _amx = 0 if os.environ.get("QCC_AMX", "").strip() == "0" else 1


def amx_supported():
    """Whether this CPU has AMX-INT8 and the OS grants the tile state (Linux: asked
    once, with arch_prctl)."""
    return bool(qcc_amx_ready())


def amx():
    """Whether the channels-in-lanes conv may run its sums on AMX tiles now."""
    return _amx > 0 and bool(qcc_amx_ready())


def set_amx(mode):
    """Where the channels-in-lanes conv runs its sums on AMX tiles (where
    `amx_supported()`): "auto" (the default: convs of 64 input channels and more; with
    fewer, a tile's rows are gathered and AVX-512 VNNI was as fast or faster),
    "always" or "never" (AVX-512 VNNI; also QCC_AMX=0); the tests force each. Returns
    the old mode."""
    global _amx
    old = LANES[_amx]
    _amx = _mode("amx", mode)
    return old


cdef bint _lanes_takes(const qcc_geom* g) noexcept:
    """Whether the channels-in-lanes path runs this conv. Measured against the GEMM
    at 2 threads on an AVX-512 VNNI Xeon: 3x3 convs of 64 or more channels 1.2-1.6x
    faster (no im2col panels); 1x1 stride 2 faster from 128 input channels (the
    GEMM's strided gather); slower where the 64 lanes are mostly idle (16 or 32
    output channels), where the depth is short (3 input channels: the transposed
    int32 tile and its output stage cost as much as the sums) and for 1x1 stride 1
    (the GEMM's panels are plain copies of x)."""
    cdef int taps = g.k[0] * g.k[1] * g.k[2]
    cdef bint strided = g.st[0] > 1 or g.st[1] > 1 or g.st[2] > 1
    if _lanes != 1:
        return _lanes == 2
    return g.og >= 48 and ((taps > 1 and g.cg >= 16) or (strided and g.cg >= 128))


cdef _conv_lanes(x, lanes, off, const qcc_geom* g, osp, int z_x, stage):
    """The conv with the output channels in the vector lanes (AVX-512 VNNI;
    runtime/_int8_lanes.h): a position-major padded copy of x, four channels a word,
    no packed panels."""
    cdef int n_img = x.shape[0]
    cdef int c = x.shape[1]
    cdef int o = g.og
    cdef int taps = g.k[0] * g.k[1] * g.k[2]
    cdef int i, c4, kd, kh, kw, q
    if lanes.shape != lanes_shape(o, c, taps):
        raise ValueError(f"lanes weights {lanes.shape} do not fit x {x.shape} and {o} "
                         f"output channels of {taps} taps")
    cdef qcc_il_job job
    for i in range(3):
        job.dims[i] = (g.osp[i] - 1) * g.st[i] + (g.k[i] - 1) * g.dl[i] + 1
        job.osp[i] = g.osp[i]
        job.st[i] = g.st[i]
    cdef Py_ssize_t plane = <Py_ssize_t>job.dims[0] * job.dims[1] * job.dims[2] * 4
    cdef Py_ssize_t img = (c + 3) // 4 * plane
    pad = _aligned(n_img * img + 64, dtype=np.uint8)
    kofs = np.empty((c + 3) // 4 * taps, np.intp)
    cdef Py_ssize_t[::1] kofsv = kofs
    cdef int c4n = (c + 3) // 4
    q = 0   # the depth steps: (tap, c4), c4 fastest (a position's words, side by side)
    for kd in range(g.k[0]):
        for kh in range(g.k[1]):
            for kw in range(g.k[2]):
                for c4 in range(c4n):
                    kofsv[q] = ((<Py_ssize_t>kd * g.dl[0] * job.dims[1] + kh * g.dl[1])
                                * job.dims[2] + kw * g.dl[2]) * 4 * c4n + 4 * c4
                    q += 1
    cdef const int8_t[:, :, :, ::1] wv = lanes
    cdef const int32_t[::1] ov = np.ascontiguousarray(off, np.int32).reshape(-1)
    cdef const int8_t[::1] xv = x.reshape(-1)
    cdef uint8_t[::1] padv = pad
    if ov.shape[0] != o:
        raise ValueError(f"{ov.shape[0]} offsets for {o} output channels")
    job.n_img = n_img
    job.m = o
    job.cblocks = wv.shape[0]
    job.k4 = wv.shape[1]
    job.wl = &wv[0, 0, 0, 0]
    job.off = &ov[0]
    job.src = &padv[0]
    job.src_img = img
    job.kofs = &kofsv[0]
    job.npos = g.osp[0] * g.osp[1] * g.osp[2]
    job.c4n = c4n
    job.amx = qcc_amx_ready() and (_amx == 2 or (_amx == 1 and c >= 64))
    job.failed = 0
    res, keep = _output((n_img, o, *osp), o, stage, 2, &job.o)
    with nogil:
        qcc_il_run(&job, &xv[0], <Py_ssize_t>c * g.sp[0] * g.sp[1] * g.sp[2], g, c,
                   <uint8_t>(z_x + 128), _threads)
    if job.failed:
        raise MemoryError("int8 conv: out of memory for the GEMM scratch")
    return res


cdef _depthwise(x, wpack, off, const qcc_geom* g, int groups, osp, int z_x, stage):
    """Depthwise conv (one input and one output channel per group): direct taps per
    plane, the planes shared by the threads."""
    cdef int n_img = x.shape[0]
    cdef const int8_t[::1] xv = x.reshape(-1)
    cdef const int8_t[:, ::1] wv = np.ascontiguousarray(wpack, np.int8)
    cdef const int32_t[::1] ov = np.ascontiguousarray(off, np.int32).reshape(-1)
    if ov.shape[0] != groups:
        raise ValueError(f"{ov.shape[0]} offsets for {groups} output channels")
    cdef qcc_i8_dw_job job
    job.x = &xv[0]
    job.w = &wv[0, 0]
    job.lda = wv.shape[1]
    job.off = &ov[0]
    job.g = g
    job.groups = groups
    job.planes = n_img * groups
    job.fill = <uint8_t>(z_x + 128)
    res, keep = _output((n_img, groups, *osp), groups, stage, _level(_isa), &job.o)
    cdef int threads = _threads
    if <double>job.planes * g.osp[0] * g.osp[1] * g.osp[2] * g.k[0] * g.k[1] * g.k[2] < (1 << 19):
        threads = 1   # waking a worker costs some microseconds
    with nogil:
        qcc_i8_depthwise(&job, threads)
    if job.failed:
        raise MemoryError("int8 depthwise conv: out of memory for the scratch")
    return res


def conv(x, wpack, off, kernel, int z_x, strides, pads, dilations, int groups, stage=None,
         lanes=None):
    """int32 [N, O, *OS] = sum((x - z_x) * w) + b of int8 x [N, C, *S] (1-3 spatial dims),
    or with `stage` (`requantize_stage`, `dequant_stage`) that stage's output of it,
    computed in the same pass.

    `wpack` is int8 [O, padded_length(C / groups * prod(kernel))] (weights of output
    channel o, flattened in (c, *kernel) order, zero-padded); `off` int32 [O] is
    b - (z_x + 128) * sum(w[o]). pads in ONNX order (all begins, then all ends).
    `lanes` (optional, groups 1): the same weights packed by `qcc.runtime.int8.pack_lanes`
    for the AVX-512 VNNI variant's channels-in-lanes path, which it then takes.
    """
    return _conv(x, wpack, off, kernel, z_x, strides, pads, dilations, groups, stage, lanes)


def conv_requantize(x, wpack, off, kernel, int z_x, strides, pads, dilations, int groups,
                    multiplier, int z_y, int qmin=-128, int qmax=127, lanes=None):
    """`conv`, requantized in the same pass: int8 [N, O, *OS] =
    clip(rint(float32(acc) * multiplier[o]) + z_y, qmin, qmax), rint rounding half to
    even (the accumulator's zero point is 0). `multiplier`: float32, one per output
    channel or one for all."""
    return _conv(x, wpack, off, kernel, z_x, strides, pads, dilations, groups,
                 requantize_stage(multiplier, z_y, qmin, qmax), lanes)


def _dense(x, wpack, off, stage):
    x = np.ascontiguousarray(x, np.int8)
    cdef Py_ssize_t m = x.shape[0]
    cdef int k = x.shape[1]
    cdef int n = wpack.shape[0]
    cdef int kp = wpack.shape[1]
    if kp != padded_length(k):
        raise ValueError(f"packed weight {wpack.shape} does not fit x {x.shape}")
    cdef qcc_i8_job job
    job.isa = _level(_isa)
    if stage is not None and stage[0] == "residual":
        raise ValueError("int8 dense: no residual stage (its output is transposed)")
    res, keep = _output((n, m), n, stage, job.isa, &job.o)   # channels x rows: the GEMM's
    if m == 0 or n == 0:
        return np.ascontiguousarray(res.T)
    if k % 4:   # the GEMM reads rows in groups of 4: pad them with zeros
        rows = np.zeros((m, kp), np.int8)
        rows[:, :k] = x
    else:
        rows = x
    cdef const int8_t[:, ::1] rv = rows if k else np.zeros((m, 1), np.int8)
    cdef const int8_t[:, ::1] wv = np.ascontiguousarray(wpack, np.int8)
    cdef const int32_t[::1] ov = np.ascontiguousarray(off, np.int32).reshape(-1)
    cdef const int32_t[:, ::1] accv
    job.n_img = 1
    job.groups = 1
    job.m = n
    job.n = <int>m
    job.k = k
    job.w = &wv[0, 0]
    job.lda = kp
    job.off = &ov[0]
    job.src = <const uint8_t*>&rv[0, 0]
    job.src_grp = 0
    job.kofs = NULL
    job.row_stride = rv.shape[1]
    job.slack = 0
    job.failed = 0
    if k:
        with nogil:
            qcc_i8_run(&job, _threads)
    if job.failed:
        raise MemoryError("int8 dense: out of memory for the GEMM scratch")
    if not k:   # no terms: acc = off
        accv = np.ascontiguousarray(np.broadcast_to(
            np.asarray(off, np.int32).reshape(-1, 1), (n, m)))
        qcc_i8_store(&job.o, &accv[0, 0], m, 0, m, n, <int>m, 0)
    return np.ascontiguousarray(res.T)


def dense(x, wpack, off, stage=None):
    """int32 [M, N] = (x - z_x) @ w^T + b of int8 x [M, K], or its output `stage` (see
    `conv`); `wpack` int8 [N, padded_length(K)], `off` int32 [N] = b - (z_x + 128) *
    sum(w[n])."""
    return _dense(x, wpack, off, stage)


def dense_requantize(x, wpack, off, multiplier, int z_y, int qmin=-128, int qmax=127):
    """`dense`, requantized in the same pass: int8 [M, N] =
    clip(rint(float32(acc) * multiplier[n]) + z_y, qmin, qmax) (see conv_requantize)."""
    return _dense(x, wpack, off, requantize_stage(multiplier, z_y, qmin, qmax))
