# cython: language_level=3
"""Float convolutions on the blocked layout (runtime/_blocked_impl.h), AVX-512 or AVX2.

A blocked tensor [N, C, H, W] is a float32 array [N, ceil(C/16), H, W, 16] (the lanes
past C zero). A plan keeps the values between its convolutions in it
(qcc.runtime.blocked): `Conv` reads an NCHW or a blocked input and writes a blocked
output, with its epilogue (affine, residual, activation, fake-quant); `means` (global
average pool) and `scale` (a per-channel product, squeeze-and-excitation) read it;
`to_blocked` / `to_nchw` convert. Every value is the same float32 as the NCHW
kernels' (qcc.runtime._conv, _pool): the same operations in the same order.
"""

import threading

import numpy as np

cimport numpy as cnp
from libc.string cimport memset

cnp.import_array()

include "_act_types.pxi"
include "_pool_geom.pxi"

cdef extern from "_blocked_impl.h" nogil:
    ctypedef struct qcc_homes:
        pass
    ctypedef struct qcc_blk_geom:
        int n, c, h, w, o, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw
    ctypedef struct qcc_blk_conv_job:
        const qcc_blk_geom* g
        const float* x
        int x_blocked, hp, wp
        const float* wpk
        const float* bias
        float* out
        float* tee
        const float* add
        const Py_ssize_t* kofs
        qcc_act act
        int apply, tile, tiles, width, span, kcb, blocks64, failed, level
        qcc_homes* homes
        int banded, cap, band_rows, fq_on
        Py_ssize_t band_pitch
        float fs, fz, qmin, qmax
    ctypedef struct qcc_blk_dw_job:
        const qcc_blk_geom* g
        const float* x
        const float* w
        const float* bias
        float* out
        float* tee
        const float* add
        qcc_act act
        int apply, hp, wp, band, bands, width, failed, level
        qcc_homes* homes
    int qcc_blk_runs(int level)
    int qcc_blk_default_level()
    void qcc_blk_conv_worker(void* job)
    void qcc_blk_dw_worker(void* job)
    void qcc_parallel(void (*fn)(void*) noexcept nogil, void* arg, int width)
    void qcc_blk_from_nchw(const float* x, float* y, int n, int c, Py_ssize_t plane)
    void qcc_blk_to_nchw_worker(void* job)
    ctypedef struct qcc_blk_plane_job:
        const float* x
        const float* s
        float* y
        int n, c, planes
        Py_ssize_t plane
        int fq_on
        float fs, fz, qmin, qmax
        int h, hp, rows
        Py_ssize_t len, row_in, row_out, lead, part
        int width
    ctypedef struct qcc_blk_pool_job:
        const float* x
        float* y
        qcc_pool_geom g
        int c, mode
        qcc_act fq
        int planes, band, bands, width, failed, level
    void qcc_blk_pool_worker(void* job)
    void qcc_blk_scale_worker(void* job)
    void qcc_blk_means_worker(void* job)
    void qcc_blk_pad_worker(void* job)

from cpython.pycapsule cimport PyCapsule_GetPointer
cdef extern from "_common.h":
    void qcc_pool_bind(void *p)
from qcc.runtime._kernels import _pool_capsule
qcc_pool_bind(PyCapsule_GetPointer(_pool_capsule, "qcc.runtime.pool"))

from qcc.runtime.kernels import aligned as _aligned
from qcc.runtime.threads import default_threads as _default_threads

include "_act.pxi"

cdef int _threads = _default_threads()


def _set_threads(int n):
    """Set how many threads a blocked conv uses; returns the old count."""
    global _threads
    old = _threads
    _threads = max(1, min(n, 64))
    return old


_LEVELS = {"avx2": 1, "avx512": 2}   # QCC_BLK_AVX2, QCC_BLK_AVX512
cdef int _level = qcc_blk_default_level()
cdef int _chunk = 0   # taps a chunk of a deep conv (0: the ISA's own; tests set it)


cdef bint _banded = True   # a padded conv copies its padded rows claim by claim
BAND_BYTES = 512 * 1024    # the rows of a claim's band at most (the thread's L2 keeps them)


def _set_banded(bint on):
    """Whether padded convs copy the padded rows of each claim into the thread's
    scratch (True, the default) or pad the whole input first (tests compare the
    two); returns the old setting. Takes effect at a conv's next new input shape."""
    global _banded
    old = _banded
    _banded = on
    return old


def _set_chunk(int n):
    """Taps a chunk of the conv kernels (0: the default); returns the old setting."""
    global _chunk
    old = _chunk
    _chunk = max(0, n)
    return old


cdef bint _plane_units = True   # a small plane one unit of work (tests compare)


def _set_plane_units(bint on):
    """Whether a plane of fewer than 72 positions runs as one unit of work when the
    groups of 64 channels are enough for the threads (True, the default); returns
    the old setting."""
    global _plane_units
    old = _plane_units
    _plane_units = on
    return old


def _variants():
    """The kernels' instruction sets this CPU runs, lowest first: avx2 (AVX2 + FMA),
    avx512 (AVX-512 F, VL, BW, DQ). The same bits on each."""
    return [name for name, lv in _LEVELS.items() if qcc_blk_runs(lv)]


def _variant():
    """The instruction set the kernels use now, or None (the layout is off)."""
    return next((name for name, lv in _LEVELS.items() if lv == _level), None)


def _set_variant(name):
    """Use the kernels of `name` (avx2, avx512; None: no kernels, or back to the
    default with `name` "default": the best at or below QCC_ISA); returns the old."""
    global _level
    old = _variant()
    if name == "default":
        _level = qcc_blk_default_level()
    elif name is None:
        _level = 0
    elif name in _LEVELS and qcc_blk_runs(_LEVELS[name]):
        _level = _LEVELS[name]
    else:
        raise ValueError(f"blocked kernels: {name!r} does not run on this CPU "
                         f"(available: {', '.join(_variants()) or 'none'})")
    return old


cdef _require_kernels(what):
    if _level == 0:
        raise RuntimeError(f"blocked {what}: no blocked kernels run here (they need "
                           "AVX2 + FMA or AVX-512, within QCC_ISA)")


def supported():
    """Whether the blocked kernels run now (AVX-512 or AVX2 + FMA, within QCC_ISA)."""
    return _level != 0


def blocked_shape(shape):
    """The blocked array's shape of an NCHW tensor's `shape` (4 dims)."""
    n, c, h, w = shape
    return (n, (c + 15) // 16, h, w, 16)


include "_arrays.pxi"


cdef _out(out, shape):
    if out is None:
        return _aligned(shape, zero=True)
    if not (_f32_c(out) and tuple(out.shape) == tuple(shape)):
        raise ValueError(f"blocked kernel: out {getattr(out, 'shape', None)} is not a "
                         f"C-contiguous float32 array of shape {tuple(shape)}")
    return out


def _blocked_input(x, int c):
    if not (_f32_c(x) and x.ndim == 5 and x.shape[1] == (c + 15) // 16 and x.shape[4] == 16):
        raise ValueError(f"blocked kernel: expected a blocked float32 array of {c} "
                         f"channels, got {getattr(x, 'shape', None)}")


include "_blocked_planes.pxi"


include "_blocked_pool.pxi"


cdef class Conv:
    """A 2-D float conv of constant weights (groups 1, or depthwise) writing the
    blocked layout: `Conv(w, b, strides, pads, dilations, groups, activation,
    fake_quant, affine)(x, residual=None, out=None)`, x NCHW or blocked, residual
    and out blocked; the arguments mean what they mean for qcc.runtime._conv.conv.

    With `tee=True` (and a fake_quant), the conv keeps both its result before the
    fake-quant and the fake-quant of it, written in one pass: `out` is then
    [2, *blocked shape], and the call returns (out[0], out[1]): the result and its
    fake-quant. With `in_fake_quant` = (scale, zero point, qmin, qmax), one per
    tensor, the conv reads the fake-quant of its NCHW input x (made as it copies x
    into its padded plane: the bits of _eltwise.fake_quant of x, then the conv)."""

    cdef object bias, wpk, keep, kofs, pad_buf, pad_lock, shape_key, oshape, in_fq, w
    cdef int wpk_level
    cdef qcc_act act0
    cdef int groups, o, c, kh, kw, sh, sw, ph, pw, pe_h, pe_w, dh, dw
    cdef bint depthwise, tee
    cdef qcc_blk_geom g
    cdef int hp, wp, x_blocked
    cdef bint banded, span
    cdef int cap, band_rows
    cdef Py_ssize_t band_pitch

    def __init__(self, w, b, strides, pads, dilations, int groups, activation=None,
                 fake_quant=None, affine=None, tee=False, in_fake_quant=None):
        w = np.ascontiguousarray(w, np.float32)
        self.in_fq = None if in_fake_quant is None else tuple(float(v) for v in in_fake_quant)
        if tee and fake_quant is None:
            raise ValueError("blocked conv: a tee keeps a fake-quant's input and result; "
                             "no fake_quant given")
        self.tee = bool(tee)
        if w.ndim != 4:
            raise ValueError(f"blocked conv: 2-D kernels only, got w {w.shape}")
        o, cg, kh, kw = w.shape
        self.groups = groups
        self.depthwise = groups > 1
        if groups > 1 and not (groups == o and cg == 1):
            raise ValueError(f"blocked conv: groups={groups} for w {w.shape} is not depthwise")
        if groups > 1 and kh > 64:
            raise ValueError(f"blocked conv: a depthwise kernel of {kh} rows (64 at most)")
        self.o, self.c, self.kh, self.kw = o, cg * groups, kh, kw
        self.sh, self.sw = (1, 1) if strides is None else (int(strides[0]), int(strides[1]))
        self.dh, self.dw = (1, 1) if dilations is None else (int(dilations[0]), int(dilations[1]))
        p = (0, 0, 0, 0) if pads is None else tuple(int(v) for v in pads)
        self.ph, self.pw, self.pe_h, self.pe_w = p
        ob = (o + 15) // 16
        bias = _aligned(ob * 16 + 64, zero=True)
        if b is not None:
            bias[:o] = np.asarray(b, np.float32).reshape(-1)
        self.bias = bias
        if self.depthwise:   # [cb][kh*kw][16]
            wl = np.zeros((ob * 16, kh * kw), np.float32)
            wl[:o] = w.reshape(o, kh * kw)
            self.wpk = _aligned((ob, kh * kw, 16))
            self.wpk[...] = wl.reshape(ob, 16, kh * kw).transpose(0, 2, 1)
        else:                # packed for the kernels of the level in use (_pack)
            self.w = w
            self.wpk_level = -1
        self.act0 = _activation(activation)
        self.keep = []
        if affine is not None:
            mul, shift = (np.ascontiguousarray(v, np.float32).reshape(-1) for v in affine)
            if mul.shape[0] != o or shift.shape[0] != o:
                raise ValueError(f"blocked conv affine: expected {o} values")
            self.keep += [mul, shift]
            self.act0.mul = _fp(mul)
            self.act0.shift = _fp(shift)
        if fake_quant is not None:
            scales, zeros, qmin, qmax = fake_quant
            scales = np.ascontiguousarray(scales, np.float32).reshape(-1)
            zeros = np.ascontiguousarray(zeros, np.float32).reshape(-1)
            if scales.shape[0] not in (1, o) or zeros.shape[0] != scales.shape[0]:
                raise ValueError(f"blocked conv fake_quant: {scales.shape[0]} scales, "
                                 f"{zeros.shape[0]} zero points for {o} channels")
            self.keep += [scales, zeros]
            self.act0.fq_scale = _fp(scales)
            self.act0.fq_zero = _fp(zeros)
            self.act0.fq_per_channel = scales.shape[0] > 1
            self.act0.qmin = <float>float(qmin)
            self.act0.qmax = <float>float(qmax)
        self.shape_key = None
        self.pad_lock = threading.Lock()

    def out_shape(self, shape):
        """The blocked output shape for an NCHW input `shape` (of each half of a tee's
        output)."""
        n, c, h, w = shape
        oh = (h + self.ph + self.pe_h - self.dh * (self.kh - 1) - 1) // self.sh + 1
        ow = (w + self.pw + self.pe_w - self.dw * (self.kw - 1) - 1) // self.sw + 1
        return (n, (self.o + 15) // 16, oh, ow, 16)

    cdef _setup(self, x):
        cdef int blocked = x.ndim == 5
        if blocked:
            n, cb, h, w, l = x.shape
            if cb != (self.c + 15) // 16 or l != 16:
                raise ValueError(f"blocked conv: input {x.shape} is not {self.c} channels blocked")
        else:
            n, c, h, w = x.shape
            if c != self.c or self.depthwise:
                raise ValueError(f"blocked conv: input {x.shape} for {self.c} channels"
                                 + (" (a depthwise conv reads a blocked input)" if self.depthwise else ""))
        oshape = self.out_shape((n, self.c, h, w))
        self.oshape = oshape
        if oshape[2] < 1 or oshape[3] < 1:
            raise ValueError(f"blocked conv: empty output for input {x.shape}")
        g = &self.g
        g.n, g.c, g.h, g.w = n, self.c, h, w
        g.o, g.oh, g.ow = self.o, oshape[2], oshape[3]
        g.kh, g.kw, g.sh, g.sw = self.kh, self.kw, self.sh, self.sw
        g.ph, g.pw, g.dh, g.dw = self.ph, self.pw, self.dh, self.dw
        self.x_blocked = blocked
        if blocked and self.in_fq is not None:
            raise ValueError("blocked conv: in_fake_quant takes an NCHW input")
        # the input's fake-quant is made in the padded copy: one even without pads
        pads = self.ph or self.pw or self.pe_h or self.pe_w or self.in_fq is not None
        # the padded plane: what the outputs read (rows past the last one read unused)
        self.hp = max(h + self.ph + self.pe_h, (g.oh - 1) * self.sh + self.dh * (self.kh - 1) + 1)
        self.wp = max(w + self.pw + self.pe_w, (g.ow - 1) * self.sw + self.dw * (self.kw - 1) + 1)
        self.pad_buf = None
        cdef Py_ssize_t op = <Py_ssize_t>g.oh * g.ow
        # small planes (ResNet's 4x4 at a batch): tiles of 6-12 positions cut at each
        # image would leave lanes idle; the tasks run over all the images' positions
        self.span = g.n > 1 and op < 48 and op % 6 != 0
        # a padded conv whose tasks stay in one image reads its padded rows from a
        # band each claim copies (qcc_blk_band): no padded copy of the whole input
        # written to memory and read back (ResNet-18 at batch 32: 145 -> 134 ms; its
        # 64 -> 64 3x3 convs 9.5 -> 8.4 ms). Each group of 64 outputs copies its own
        # bands, so convs of more than 4 groups pad once instead (light_resnet50's
        # 512-channel 3x3 of 14x14 at stride 2: 1.51 ms padded, 1.64 banded).
        self.banded = bool(pads) and not self.depthwise and not self.span and _banded \
            and (self.o + 63) // 64 <= 4
        if pads and not self.depthwise and not self.banded:
            chans = x.shape[1] * (16 if blocked else 1)
            shape = (n, chans if not blocked else x.shape[1], self.hp, self.wp) + \
                ((16,) if blocked else ())
            self.pad_buf = _aligned(shape, zero=True)
        elif not pads:
            self.hp, self.wp = h, w
        if not self.depthwise:
            kk = self.kh * self.kw
            c = np.arange(self.c)
            chans = (self.c + 15) // 16 * 16 if blocked else self.c
            # a tap's rows apart: a plane's rows, or a band's (all channels a row)
            row = chans * self.wp if self.banded else self.wp * (16 if blocked else 1)
            plane = self.wp * 16 if self.banded else self.hp * self.wp * 16
            taps = (np.arange(self.kh)[:, None] * self.dh * row
                    + np.arange(self.kw)[None, :] * self.dw * (16 if blocked else 1)).reshape(-1)
            if blocked:
                base = (c // 16) * plane + c % 16
            else:
                base = c * (self.wp if self.banded else self.hp * self.wp)
            kofs = base[:, None] + taps[None, :]
            self.kofs = np.ascontiguousarray(kofs.reshape(-1), np.intp)
            if self.banded:
                self._band_geometry(row)
        self.shape_key = (x.shape, blocked)

    cdef _band_geometry(self, Py_ssize_t pitch):
        """A banded conv's claims: units of 24 positions, `cap` of them at most, so
        that a claim's padded rows (pitch floats each) fill about BAND_BYTES;
        band_rows: the rows a claim may read."""
        g = &self.g
        span = (g.kh - 1) * g.dh + 1
        orows = max(1, (BAND_BYTES // (4 * pitch) - span) // g.sh + 1)
        self.cap = max(1, orows * g.ow // 24)
        spanned = (self.cap * 24 + g.ow - 1) // g.ow + 1   # output rows a claim may touch
        self.band_rows = min(self.hp, (min(spanned, g.oh) - 1) * g.sh + span)
        self.band_pitch = pitch

    def __call__(self, x, residual=None, out=None):
        _require_kernels("conv")
        if not _f32_c(x):
            x = np.ascontiguousarray(x, np.float32)
        if self.shape_key is None or self.shape_key[0] != x.shape or \
                self.shape_key[1] != (x.ndim == 5):
            self._setup(x)
        g = &self.g
        oshape = self.oshape
        out = _out(out, (2,) + oshape if self.tee else oshape)
        if residual is not None:
            if not (_f32_c(residual) and tuple(residual.shape) == oshape):
                raise ValueError(f"blocked conv residual {getattr(residual, 'shape', None)}: "
                                 f"expected a blocked float32 array {oshape}")
            if np.may_share_memory(residual, out):
                raise ValueError("blocked conv: the residual must not be the output")
        if np.may_share_memory(x, out):   # a deep conv keeps partial sums in out
            raise ValueError("blocked conv: the input must not be the output")
        src = x
        cdef qcc_blk_plane_job pj
        cdef Py_ssize_t lane = 16 if self.x_blocked else 1
        owner = False
        if self.pad_buf is not None:
            # the step's padded copy (its borders zero since its allocation); a
            # concurrent call of the same step pads into a copy of its own
            owner = self.pad_lock.acquire(False)
            src = self.pad_buf if owner else _aligned(self.pad_buf.shape, zero=True)
            memset(&pj, 0, sizeof(pj))
            pj.x = _fp(x)
            pj.y = _fp(src)
            pj.planes = x.shape[0] * x.shape[1]
            pj.h, pj.hp = g.h, self.hp
            pj.rows = max(1, (pj.planes * g.h + 8 * _threads - 1) // (8 * _threads * pj.planes))  # rows a task
            pj.len = g.w * lane
            pj.row_in = g.w * lane
            pj.row_out = self.wp * lane
            pj.lead = (<Py_ssize_t>self.ph * self.wp + self.pw) * lane
            _set_fake_quant(&pj, self.in_fq)
            pj.width = min(_threads, pj.planes * ((g.h + pj.rows - 1) // pj.rows))
            with nogil:
                qcc_parallel(qcc_blk_pad_worker, &pj, pj.width)
        try:
            return self._run(src, residual, out)
        finally:
            if owner:
                self.pad_lock.release()

    cdef _pack(self):
        """The weights [O, C, KH, KW] as the conv kernels of the level in use read them:
        [kc][64] per 64 output channels (AVX-512: a tile's 1-4 blocks side by side),
        [kc][16] per 16 (AVX2: a tile's one block, one stream), zeros past O."""
        cdef int width = 64 if _level == _LEVELS["avx512"] else 16
        o, kc = self.o, self.c * self.kh * self.kw
        groups = (o + 63) // 64 * (64 // width)
        wl = np.zeros((groups * width, kc), np.float32)
        wl[:o] = self.w.reshape(o, kc)
        self.wpk = _aligned((groups, kc, width))
        self.wpk[...] = wl.reshape(groups, width, kc).transpose(0, 2, 1)
        self.wpk_level = _level

    cdef _run(self, src, residual, out):
        g = &self.g
        cdef Py_ssize_t op = <Py_ssize_t>g.oh * g.ow
        cdef qcc_act act = self.act0
        act.add = NULL
        cdef int apply = act.kind != QCC_ACT_NONE or act.mul != NULL or act.fq_scale != NULL \
            or residual is not None
        cdef const float* add = NULL if residual is None else _fp(residual)
        cdef qcc_blk_conv_job cj
        cdef qcc_blk_dw_job dj
        cdef qcc_homes homes
        cdef int width, total, planes, bands
        cdef float* tee = NULL
        result = out
        if self.tee:
            result = (out[0], out[1])
            tee = _fp(result[1])
        if self.depthwise:
            memset(&dj, 0, sizeof(dj))
            memset(&homes, 0, sizeof(homes))
            dj.homes = &homes
            dj.g = g
            dj.x = _fp(src)
            dj.w = _fp(self.wpk)
            dj.bias = _fp(self.bias)
            dj.out = _fp(out)
            dj.tee = tee
            dj.add = add
            dj.act = act
            dj.apply = apply
            dj.hp, dj.wp = self.hp, self.wp
            dj.level = _level
            planes = g.n * ((g.c + 15) // 16)
            # bands of rows: some 8 tasks a thread when the planes are few
            bands = min(g.oh, max(1, (8 * _threads + planes - 1) // planes))
            dj.band = (g.oh + bands - 1) // bands
            dj.bands = (g.oh + dj.band - 1) // dj.band
            total = planes * dj.bands
            width = min(_threads, total)
            dj.width = width
            with nogil:
                qcc_parallel(qcc_blk_dw_worker, &dj, width)
            if dj.failed:
                raise MemoryError("blocked depthwise conv: out of memory for the scratch")
            return result
        if self.wpk_level != _level:
            self._pack()
        memset(&cj, 0, sizeof(cj))
        memset(&homes, 0, sizeof(homes))
        cj.homes = &homes
        cj.g = g
        cj.x = _fp(src)
        cj.x_blocked = self.x_blocked
        cj.hp, cj.wp = self.hp, self.wp
        cj.wpk = _fp(self.wpk)
        cj.bias = _fp(self.bias)
        cj.out = _fp(out)
        cj.tee = tee
        cj.add = add
        cj.kofs = <const Py_ssize_t*>cnp.PyArray_DATA(<cnp.ndarray>self.kofs)
        cj.act = act
        cj.apply = apply
        cj.blocks64 = (self.o + 63) // 64
        cj.level = _level
        cj.span = self.span
        seg_len = g.n * op if cj.span else op
        if self.banded:
            cj.banded = 1
            cj.cap, cj.band_rows, cj.band_pitch = self.cap, self.band_rows, self.band_pitch
            if self.in_fq is not None:
                cj.fq_on = 1
                cj.fs, cj.fz, cj.qmin, cj.qmax = self.in_fq
        # units of 24 positions (whole tiles of 6, 8 and 12), handed out in claims of
        # a share of what is left (_blocked_isa.h)
        cj.tile = 24
        blocks = (1 if cj.span else g.n) * cj.blocks64   # (segment, group) pairs
        if _plane_units and seg_len < 3 * cj.tile and blocks >= 2 * _threads:
            # a small plane (7x7: 24 + 24 + 1) in one unit: a claim of part of it
            # would read all its group's weights again for a few positions (2.4 MB
            # a 512-deep 3x3's group), with groups enough for the threads
            cj.tile = <int>seg_len
        # taps a chunk: its weights (64 channels x 96 taps, 24 KB; AVX2 16 x 256, 16
        # KB) stay in the L1 cache across a task's tiles
        cj.kcb = _chunk if _chunk > 0 else 96 if _level == _LEVELS["avx512"] else 256
        cj.tiles = <int>((seg_len + cj.tile - 1) // cj.tile)
        total = blocks * cj.tiles
        width = min(_threads, total)
        cj.width = width
        with nogil:
            qcc_parallel(qcc_blk_conv_worker, &cj, width)
        if cj.failed:
            raise MemoryError("blocked conv: out of memory for the scratch")
        return result

