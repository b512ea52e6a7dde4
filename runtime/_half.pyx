# cython: language_level=3
"""float16 conversions and the Ascend quant/dequant stages in one pass each.

numpy converts float16 one element at a time in software, and its float16
arithmetic converts every operand and result. Here each float16 op is the float32
op rounded once to the float16 grid (what numpy's float16 loops compute: the
product of two float16 values is exact in float32), with the rounding done in
float32 registers: (v + c) - c, c = sign(v) 2^(e + 13) for v's exponent e clamped to
float16's normal range, rounds v at float16's spacing, ties to even (the sign of
v put back on a zero). Built with
-ffp-contract=off so that no product and sum fuse into an FMA. Conversions to
float16 bits follow numpy's npy_floatbits_to_halfbits (NaN payloads included).
"""

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int8_t, int32_t, uint16_t

cnp.import_array()

cdef extern from *:
    """
    #include <math.h>
    #include <stdint.h>
    #include <string.h>

    typedef union { float f; uint32_t u; } qcc_fu;

    static inline float qcc_round_f16(float v) {
        qcc_fu a, c;
        uint32_t e;
        float r;
        a.f = v;
        e = a.u & 0x7F800000u;
        e = e < (113u << 23) ? (113u << 23) : e;
        e = e > (142u << 23) ? (142u << 23) : e;
        c.u = (e + (13u << 23)) | (a.u & 0x80000000u);
        r = copysignf((v + c.f) - c.f, v);  /* x - x is +0: keep v's sign */
        return fabsf(r) > 65504.0f ? copysignf(INFINITY, r) : r;
    }

    /* float16 bits of v on the float16 grid or +-inf, not NaN (branch free) */
    static inline uint16_t qcc_f16_bits_number(float v) {
        qcc_fu a, t;
        uint32_t s, m, sub, normal;
        a.f = v;
        s = (a.u >> 16) & 0x8000u;
        m = a.u & 0x7FFFFFFFu;
        t.u = m < (113u << 23) ? m : 0u;
        sub = (uint32_t)(int32_t)(t.f * 16777216.0f);  /* k of k * 2^-24, exact */
        normal = (m - (112u << 23)) >> 13;
        return (uint16_t)(s | (m >= 0x7F800000u ? 0x7C00u : (m >= (113u << 23) ? normal : sub)));
    }

    /* float16 bits of v, which is on the float16 grid (or inf, NaN) */
    static inline uint16_t qcc_f16_bits(float v) {
        uint32_t u, a;
        uint16_t s, ret;
        float f;
        memcpy(&u, &v, 4);
        s = (uint16_t)((u >> 16) & 0x8000u);
        a = u & 0x7FFFFFFFu;
        if (a >= 0x7F800000u) {
            if (a == 0x7F800000u) return s | 0x7C00u;
            ret = (uint16_t)(0x7C00u + ((a & 0x007FFFFFu) >> 13));
            if (ret == 0x7C00u) ret++;
            return s + ret;
        }
        if (a >= (113u << 23)) return s | (uint16_t)((a - (112u << 23)) >> 13);
        memcpy(&f, &a, 4);
        return s | (uint16_t)(f * 16777216.0f);
    }

    /* Round per ascend.quant's round_mode: 0 Round (half away), 1 Rint, 2 Floor,
       3 Ceil, 4 Trunc. v + copysign(0.5, v) is exact for float16 values. */
    static inline float qcc_round_mode(float v, int mode) {
        switch (mode) {
            case 0: return truncf(v + copysignf(0.5f, v));
            case 1: return nearbyintf(v);
            case 2: return floorf(v);
            case 3: return ceilf(v);
            default: return truncf(v);
        }
    }
    /* ascend.quant's last steps for round_mode Round: v + copysign(0.5, v) clamped
       to [-128, 127] and truncated (clamping first gives the same integers) */
    static inline int8_t qcc_round_away_int8(float v, int8_t nan_value) {
        v = v + copysignf(0.5f, v);
        v = v < -128.0f ? -128.0f : (v > 127.0f ? 127.0f : v);
        return v != v ? nan_value : (int8_t)(int32_t)v;
    }

    static void qcc_quant_f32(const float* restrict x, int8_t* restrict y, Py_ssize_t n,
                              float scale, float offset, int sqrt_mode, int mode,
                              int8_t nan_value) {
        Py_ssize_t i;
        if (mode == 0 && !sqrt_mode) {
            for (i = 0; i < n; i++)
                y[i] = qcc_round_away_int8(
                    qcc_round_f16(qcc_round_f16(qcc_round_f16(x[i]) * scale) + offset),
                    nan_value);
            return;
        }
        for (i = 0; i < n; i++) {
            float v = qcc_round_f16(qcc_round_f16(x[i]) * scale);
            if (sqrt_mode) v = qcc_round_f16(v * scale);
            v = qcc_round_mode(qcc_round_f16(v + offset), mode);
            v = v < -128.0f ? -128.0f : (v > 127.0f ? 127.0f : v);
            y[i] = v != v ? nan_value : (int8_t)v;
        }
    }
    static void qcc_quant_f16(const uint16_t* restrict x, const float* restrict table,
                              int8_t* restrict y, Py_ssize_t n, float scale, float offset,
                              int sqrt_mode, int mode, int8_t nan_value) {
        Py_ssize_t i;
        if (mode == 0 && !sqrt_mode) {
            for (i = 0; i < n; i++)
                y[i] = qcc_round_away_int8(
                    qcc_round_f16(qcc_round_f16(table[x[i]] * scale) + offset), nan_value);
            return;
        }
        for (i = 0; i < n; i++) {
            float v = qcc_round_f16(table[x[i]] * scale);
            if (sqrt_mode) v = qcc_round_f16(v * scale);
            v = qcc_round_mode(qcc_round_f16(v + offset), mode);
            v = v < -128.0f ? -128.0f : (v > 127.0f ? 127.0f : v);
            y[i] = v != v ? nan_value : (int8_t)v;
        }
    }
    static void qcc_dequant(const int32_t* restrict acc, const float* restrict scale, Py_ssize_t outer,
                            Py_ssize_t channels, Py_ssize_t inner, int relu, float* restrict yf,
                            uint16_t* restrict yh) {
        Py_ssize_t o, c, k, i = 0;
        for (o = 0; o < outer; o++)
            for (c = 0; c < channels; c++) {
                float s = scale[c];
                if (yh != NULL) {
                    for (k = 0; k < inner; k++, i++) {
                        float v = (float)acc[i] * s;
                        v = (relu && v < 0) ? 0.0f : v;
                        yh[i] = qcc_f16_bits_number(qcc_round_f16(v));  /* no NaN */
                    }
                } else {
                    for (k = 0; k < inner; k++, i++) {
                        float v = (float)acc[i] * s;
                        yf[i] = (relu && v < 0) ? 0.0f : v;
                    }
                }
            }
    }
    """
    void qcc_quant_f32(const float* x, int8_t* y, Py_ssize_t n, float scale, float offset,
                       int sqrt_mode, int mode, int8_t nan_value) nogil
    void qcc_quant_f16(const uint16_t* x, const float* table, int8_t* y, Py_ssize_t n,
                       float scale, float offset, int sqrt_mode, int mode,
                       int8_t nan_value) nogil
    void qcc_dequant(const int32_t* acc, const float* scale, Py_ssize_t outer,
                     Py_ssize_t channels, Py_ssize_t inner, int relu, float* yf,
                     uint16_t* yh) nogil
    float qcc_round_f16(float v) nogil
    uint16_t qcc_f16_bits(float v) nogil
    float qcc_round_mode(float v, int mode) nogil

ROUND_MODES = ("Round", "Rint", "Floor", "Ceil", "Trunc")

_TO_F32 = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(
    np.float32)
cdef const float[::1] _to_f32 = _TO_F32
with np.errstate(invalid="ignore"):
    _NAN_INT8_VALUE = int(np.array([np.nan], np.float32).astype(np.int8)[0])
cdef int8_t _NAN_INT8 = _NAN_INT8_VALUE


def to_f16(x):
    """float32 array -> float16 array (numpy's astype)."""
    x = np.ascontiguousarray(x, np.float32)
    out = np.empty(x.shape, np.float16)
    cdef const float[::1] xv = x.reshape(-1)
    cdef uint16_t[::1] ov = out.reshape(-1).view(np.uint16)
    cdef Py_ssize_t i, n = xv.shape[0]
    cdef float v
    with nogil:
        for i in range(n):
            v = xv[i]
            ov[i] = qcc_f16_bits(qcc_round_f16(v) if v == v else v)  # NaN: payload kept
    return out


def to_f32(h):
    """float16 array -> float32 array (exact, numpy's astype)."""
    h = np.ascontiguousarray(h, np.float16)
    out = np.empty(h.shape, np.float32)
    cdef const uint16_t[::1] hv = h.reshape(-1).view(np.uint16)
    cdef float[::1] ov = out.reshape(-1)
    cdef Py_ssize_t i, n = hv.shape[0]
    with nogil:
        for i in range(n):
            ov[i] = _to_f32[hv[i]]
    return out


def ascend_quant(x, float scale, float offset, bint sqrt_mode, int mode):
    """int8 of round_mode(f16(f16(f16(x) * scale) [* scale] + offset)), saturated; scale
    and offset are float16 values, x float32 or float16."""
    cdef bint half_in = x.dtype == np.float16
    x = np.ascontiguousarray(x, np.float16 if half_in else np.float32)
    out = np.empty(x.shape, np.int8)
    cdef int8_t[::1] ov = out.reshape(-1)
    cdef Py_ssize_t n = ov.shape[0]
    if n == 0:
        return out
    cdef const float[::1] xf
    cdef const uint16_t[::1] xh
    if half_in:
        xh = x.reshape(-1).view(np.uint16)
        with nogil:
            qcc_quant_f16(&xh[0], &_to_f32[0], &ov[0], n, scale, offset, sqrt_mode, mode,
                          _NAN_INT8)
    else:
        xf = x.reshape(-1)
        with nogil:
            qcc_quant_f32(&xf[0], &ov[0], n, scale, offset, sqrt_mode, mode, _NAN_INT8)
    return out


def ascend_dequant(acc, scale, int axis, bint relu, bint half_out):
    """float32(acc) * scale[c] (float32; c the index along `axis`, or one scale),
    relu'd, as float32 or float16 (rounded to nearest even)."""
    acc = np.ascontiguousarray(acc, np.int32)
    cdef const float[::1] sv = np.ascontiguousarray(scale, np.float32).reshape(-1)
    shape = acc.shape
    cdef Py_ssize_t channels = sv.shape[0]
    cdef Py_ssize_t inner = 1
    if channels > 1:
        inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    out = np.empty(shape, np.float16 if half_out else np.float32)
    cdef Py_ssize_t n = acc.size
    if n == 0:
        return out
    cdef const int32_t[::1] av = acc.reshape(-1)
    cdef float[::1] of
    cdef uint16_t[::1] oh
    cdef Py_ssize_t outer = n // (channels * inner)
    if half_out:
        oh = out.reshape(-1).view(np.uint16)
        with nogil:
            qcc_dequant(&av[0], &sv[0], outer, channels, inner, relu, NULL, &oh[0])
    else:
        of = out.reshape(-1)
        with nogil:
            qcc_dequant(&av[0], &sv[0], outer, channels, inner, relu, &of[0], NULL)
    return out
