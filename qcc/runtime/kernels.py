"""Layer kernels of the runtime: the compiled Cython ones, with vectorized numpy
versions (`reference_*`) that define the semantics and serve as a fallback.

Layout NCHW, float32, pads as ONNX (all begins, then all ends).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def aligned(shape: int | Sequence[int], zero: bool = False,
            dtype: np.typing.DTypeLike = np.float32) -> np.ndarray:
    """An array of `shape` and `dtype` (float32 unless given) starting on a 64-byte
    boundary; zeroed when `zero`. numpy's own arrays start 16 or 32 bytes past one:
    every 64-byte vector load of a kernel then straddled two cache lines (packed conv
    weights read so: a 64 -> 64 3x3 conv ran 8% slower)."""
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dt.itemsize
    raw = (np.zeros if zero else np.empty)(nbytes + 64, np.uint8)
    skip = -raw.ctypes.data % 64
    return raw[skip:skip + nbytes].view(dt).reshape(shape)


def _pad_spatial(x: np.ndarray, pads: Sequence[int], value: float = 0.0) -> np.ndarray:
    d = len(pads) // 2
    if not any(pads):
        return x
    width = [(0, 0), (0, 0)] + [(pads[i], pads[i + d]) for i in range(d)]
    return np.pad(x, width, constant_values=value)


def _windows(x: np.ndarray, kernel, strides, dilations) -> np.ndarray:
    """View [N, C, *out, *kernel] of dilated, strided windows (no copy)."""
    d = len(kernel)
    span = [(k - 1) * dl + 1 for k, dl in zip(kernel, dilations, strict=True)]
    v = sliding_window_view(x, span, axis=tuple(range(2, 2 + d)))
    index = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides) + tuple(
        slice(None, None, dl) for dl in dilations)
    return v[index]


def reference_conv(x, w, b, strides, pads, dilations, groups):
    d = w.ndim - 2
    xp = _pad_spatial(x, pads)
    win = _windows(xp, w.shape[2:], strides, dilations)  # N, C, *out, *K
    n, c = x.shape[:2]
    o = w.shape[0]
    out_sp = win.shape[2:2 + d]
    cg, og = c // groups, o // groups
    ys = []
    for g in range(groups):
        wg = win[:, g * cg:(g + 1) * cg]
        # N, *out, C, *K  @  (C*K) -> O
        cols = np.moveaxis(wg, 1, 1 + d).reshape(n, *out_sp, -1)
        wmat = w[g * og:(g + 1) * og].reshape(og, -1)
        ys.append(cols @ wmat.T)
    y = np.concatenate(ys, axis=-1)
    y = np.moveaxis(y, -1, 1)
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * d)
    return np.ascontiguousarray(y, dtype=np.float32)


def reference_conv_transpose(x, w, b, strides, pads, dilations, groups, output_padding):
    d = w.ndim - 2
    n, c = x.shape[:2]
    og = w.shape[1]
    cg = c // groups
    k = w.shape[2:]
    full = [s * (i - 1) + (kk - 1) * dl + 1 + op for i, s, kk, dl, op in
            zip(x.shape[2:], strides, k, dilations, output_padding, strict=True)]
    y = np.zeros((n, og * groups, *full), np.float32)
    for g in range(groups):
        xg = x[:, g * cg:(g + 1) * cg]
        wg = w[g * cg:(g + 1) * cg]  # C, O, *K
        # contributions [N, O, *in, *K]
        contrib = np.tensordot(xg, wg, axes=([1], [0]))  # N, *in, O, *K
        contrib = np.moveaxis(contrib, 1 + d, 1)
        for kidx in np.ndindex(*k):
            index = [slice(None), slice(g * og, (g + 1) * og)]
            for j in range(d):
                start = kidx[j] * dilations[j]
                index.append(slice(start, start + strides[j] * (x.shape[2 + j] - 1) + 1,
                                   strides[j]))
            y[tuple(index)] += contrib[(slice(None), slice(None)) + (slice(None),) * d + kidx]
    crop = (slice(None), slice(None)) + tuple(
        slice(pads[j], full[j] - pads[j + d]) for j in range(d))
    y = y[crop]
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * d)
    return np.ascontiguousarray(y, dtype=np.float32)


def reference_dense(x, w, b):
    y = x @ w.T
    return y if b is None else y + b


def _pool_pads(x, kernel, strides, pads, dilations, ceil_mode):
    """Pads extended on the end so that ceil_mode windows exist."""
    d = len(kernel)
    pads = list(pads)
    for i in range(d):
        n = x.shape[2 + i]
        span = n + pads[i] + pads[i + d] - (kernel[i] - 1) * dilations[i] - 1
        o = (-(-span // strides[i]) if ceil_mode else span // strides[i]) + 1
        if ceil_mode and (o - 1) * strides[i] >= n + pads[i]:
            o -= 1
        need = (o - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1
        have = n + pads[i] + pads[i + d]
        extra = max(0, need - have)
        pads[i + d] += extra
        if need < have:
            pads[i + d] -= have - need
    return pads


def _pad_or_crop(a, begins, ends, value):
    """Pad the spatial dims by `begins`/`ends`; a negative end crops instead."""
    d = len(begins)
    a = _pad_spatial(a, [max(v, 0) for v in (*begins, *ends)], value)
    crop = (slice(None), slice(None)) + tuple(
        slice(None, a.shape[2 + i] + ends[i]) if ends[i] < 0 else slice(None)
        for i in range(d))
    return a[crop]


def reference_max_pool(x, kernel, strides, pads, dilations, ceil_mode):
    d = len(kernel)
    p = _pool_pads(x, kernel, strides, pads, dilations, ceil_mode)
    lowest = -np.inf if np.issubdtype(x.dtype, np.floating) else np.iinfo(x.dtype).min
    xp = _pad_or_crop(x, p[:d], p[d:], lowest)
    win = _windows(xp, kernel, strides, dilations)
    return np.ascontiguousarray(win.max(axis=tuple(range(-d, 0))), dtype=x.dtype)


def reference_avg_pool(x, kernel, strides, pads, ceil_mode, count_include_pad,
                       dilations=None):
    d = len(kernel)
    dil = tuple(dilations) if dilations is not None else (1,) * d
    p = _pool_pads(x, kernel, strides, pads, dil, ceil_mode)
    xp = _pad_or_crop(x, p[:d], p[d:], 0.0)
    mask = np.ones((1, 1, *x.shape[2:]), np.float32)
    if count_include_pad:
        # cells of the declared padding count; cells added for ceil_mode do not
        mask = _pad_spatial(mask, pads, 1.0)
        mask = _pad_or_crop(mask, [0] * d, [p[i + d] - pads[i + d] for i in range(d)], 0.0)
    else:
        mask = _pad_or_crop(mask, p[:d], p[d:], 0.0)
    axes = tuple(range(-d, 0))
    s = _windows(xp, kernel, strides, dil).sum(axis=axes)
    cnt = _windows(mask, kernel, strides, dil).sum(axis=axes)
    return np.ascontiguousarray(s / np.maximum(cnt, 1), dtype=np.float32)


def _source_coords(n_in, n_out, scale, width, mode, roi=(0.0, 1.0)):
    """Source coordinate of each output index along one axis (ONNX Resize), and for
    tf_crop_and_resize the mask of those outside the input (None otherwise).

    `scale` is the axis's scale and `width` the real-valued output length (scale *
    n_in, or n_out when the scale is n_out / n_in), which align_corners and
    tf_crop_and_resize divide by as the ONNX reference does. The arithmetic is
    float32 in onnxruntime's order, so that a scale like 1/3 (0.33333334f) still
    samples every third pixel under floor rounding.
    """
    f = np.float32
    o = np.arange(n_out, dtype=f)
    s, w, n, half = f(scale), f(width), f(n_in), f(0.5)
    if mode == "half_pixel":
        c = (o + half) / s - half
    elif mode == "half_pixel_symmetric":  # the offset in float32, the rest in float64
        offset = n / f(2) * (f(1) - f(n_out) / w)
        c = (float(offset) + (o.astype(np.float64) + 0.5) / float(s) - 0.5).astype(f)
    elif mode == "pytorch_half_pixel":  # 0 for a single output, as the ONNX spec says
        c = (o + half) / s - half if n_out > 1 else np.zeros(n_out, f)
    elif mode == "align_corners":
        c = o * (n - f(1)) / (w - f(1)) if w != 1 else np.zeros(n_out, f)
    elif mode == "asymmetric":
        c = o / s
    elif mode == "tf_crop_and_resize":
        lo, hi = f(roi[0]), f(roi[1])
        if w != 1:
            c = lo * (n - f(1)) + o * (hi - lo) * (n - f(1)) / (w - f(1))
        else:
            c = np.full(n_out, half * (lo + hi) * (n - f(1)), f)
        return c.astype(np.float64), (c < 0) | (c > n - f(1))
    else:
        raise ValueError(f"unsupported coordinate_transformation_mode {mode}")
    return c.astype(np.float64), None


def _nearest(c, n_in, nearest_mode):
    if nearest_mode == "round_prefer_floor":
        i = np.where(c - np.floor(c) == 0.5, np.floor(c), np.round(c))
    elif nearest_mode == "round_prefer_ceil":
        i = np.where(c - np.floor(c) == 0.5, np.ceil(c), np.round(c))
    elif nearest_mode == "floor":
        i = np.floor(c)
    elif nearest_mode == "ceil":
        i = np.ceil(c)
    else:
        raise ValueError(f"unsupported nearest_mode {nearest_mode}")
    return np.clip(i, 0, n_in - 1).astype(np.intp)


def _cubic_kernel(d, a):
    """Keys' cubic convolution kernel at distances d >= 0 (coefficient a)."""
    d2, d3 = d * d, d * d * d
    return np.where(d <= 1, (a + 2) * d3 - (a + 3) * d2 + 1,
                    np.where(d < 2, a * d3 - 5 * a * d2 + 8 * a * d - 4 * a, 0.0))


def _filter_taps(c, n_in, scale, mode, a, exclude_outside, antialias):
    """Input indices [n_out, taps] (clamped into the input, i.e. edge padding) and
    float64 weights [n_out, taps] of linear or cubic interpolation at coordinates c.

    The taps are the ones nearest c, the left one preferred (so a coordinate that is
    an integer i has taps ending at i). With antialias and scale < 1 the filter is
    stretched by 1 / scale (more taps) and its weights normalized to sum to 1;
    exclude_outside zeroes taps outside the input and renormalizes.
    """
    support = 1.0 if mode == "linear" else 2.0
    s = min(scale, 1.0) if antialias else 1.0
    first = int(np.floor(-support / s)) + 1
    offsets = np.arange(first, 2 - first, dtype=np.float64)
    base = np.floor(c)
    base = np.where(base == c, base - 1, base)
    d = np.abs((offsets[None, :] - (c - base)[:, None]) * s)
    w = np.clip(1 - d, 0.0, 1.0) if mode == "linear" else _cubic_kernel(d, a)
    if antialias:
        w = w / w.sum(axis=1, keepdims=True)
    idx = base.astype(np.int64)[:, None] + offsets.astype(np.int64)[None, :]
    if exclude_outside:
        w = np.where((idx < 0) | (idx >= n_in), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    return np.clip(idx, 0, n_in - 1).astype(np.intp), w


def _weighted_taps(y, axis, idx, w):
    """sum_k y[..., idx[:, k], ...] * w[:, k] along `axis` (float64)."""
    shape = [1] * y.ndim
    shape[axis] = -1
    out = None
    for k in range(idx.shape[1]):
        term = np.take(y, idx[:, k], axis=axis) * w[:, k].reshape(shape)
        if out is None:
            out = term.astype(np.float64, copy=False)
        else:
            out += term
    if out is None:  # no taps: an empty output
        shape = list(y.shape)
        shape[axis] = idx.shape[0]
        return np.zeros(shape, np.float64)
    return out


def reference_resize(x, sizes, mode="nearest", coord_mode="half_pixel",
                     nearest_mode="round_prefer_floor", *, scales=None, roi=None,
                     cubic_coeff_a=-0.75, exclude_outside=False, extrapolation_value=0.0,
                     antialias=False):
    """ONNX Resize of x (any rank, any axes) to `sizes`, separable axis by axis.

    `scales` (one per axis) set the sampling coordinates when given (ONNX samples at
    the given scale even when a size is floor(in * scale)); otherwise the scale is
    out / in. `roi` is [starts..., ends...] for tf_crop_and_resize. Nearest gathers
    (any dtype); linear and cubic accumulate in float64 and return x's dtype
    (integers rounded and saturated).
    """
    x = np.asarray(x)
    r = x.ndim
    if len(sizes) != r:
        raise ValueError(f"resize: {len(sizes)} sizes for a rank-{r} input")
    if mode not in ("nearest", "linear", "cubic"):
        raise ValueError(f"unsupported resize mode {mode}")
    y = x
    for axis in range(r):
        n_in, n_out = x.shape[axis], int(sizes[axis])
        if scales is not None:
            scale = float(np.float32(scales[axis]))
            width = float(np.float32(scale) * np.float32(n_in))
        else:  # float32 out / in, as onnxruntime
            scale = float(np.float32(n_out) / np.float32(n_in)) if n_in else 1.0
            width = float(n_out)
        window = (0.0, 1.0) if roi is None else (float(roi[axis]), float(roi[axis + r]))
        crop = coord_mode == "tf_crop_and_resize"
        if n_in == n_out and scale == 1.0 and (not crop or window == (0.0, 1.0)):
            continue
        if n_in == 0 or n_out == 0:
            shape = list(y.shape)
            shape[axis] = n_out
            y = np.zeros(shape, y.dtype)
            continue
        c, outside = _source_coords(n_in, n_out, scale, width, coord_mode, window)
        if mode == "nearest":
            y = np.take(y, _nearest(c, n_in, nearest_mode), axis=axis)
        else:
            idx, w = _filter_taps(c, n_in, scale, mode, cubic_coeff_a, exclude_outside,
                                  antialias)
            y = _weighted_taps(y, axis, idx, w)
        if outside is not None and outside.any():
            shape = [1] * r
            shape[axis] = n_out
            y = np.where(outside.reshape(shape), np.asarray(extrapolation_value, y.dtype), y)
    return _saturate(y, x.dtype)


def _saturate(y, dtype):
    """y as `dtype`: integers rounded (half to even) and clipped to the type's range."""
    if y.dtype == dtype:
        return np.ascontiguousarray(y)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        y = np.clip(np.round(y), info.min, info.max)
    elif dtype == np.bool_:
        y = y != 0
    return np.ascontiguousarray(y, dtype=dtype)


def f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def _compiled():
    """The Cython kernels, unless QCC_REFERENCE_KERNELS=1 asks for the numpy ones."""
    if os.environ.get("QCC_REFERENCE_KERNELS") == "1":
        return None
    try:
        from qcc.runtime import _conv, _kernels, _norm, _pool
    except ImportError:  # an uncompiled checkout: the numpy kernels still run
        return None
    return _conv, _kernels, _pool, _norm


def _no_out(reference):
    """`reference` on float32 copies of its array arguments; `out` is not taken."""
    def run(*args, out=None):
        assert out is None
        return reference(*[f32(a) if isinstance(a, np.ndarray) else a for a in args])
    return run


_mods = _compiled()
compiled = _mods is not None
"""Whether the compiled kernels run (they take `out=` buffers); the numpy ones do not."""
if _mods is None:
    conv = _no_out(reference_conv)
    conv_transpose = _no_out(reference_conv_transpose)
    dense = _no_out(reference_dense)
    max_pool = _no_out(reference_max_pool)
    avg_pool = _no_out(reference_avg_pool)
    global_avg_pool = softmax = batched_matmul = layer_norm = erf = gelu = None
    WeightPack = Conv = Dense = fast_matmul = None
else:
    # The compiled conv computes every output element with the same operations
    # (fma in ascending k, whatever the channel, position, thread or ISA), so
    # identical channels stay identical (light_squeezenet depends on it).
    conv = _mods[0].conv
    WeightPack = _mods[0].WeightPack
    Conv = _mods[0].Conv
    Dense = _mods[0].Dense
    fast_matmul = _mods[0].matmul
    conv_transpose = _mods[0].conv_transpose
    dense = _mods[1].dense
    batched_matmul = _mods[1].batched_matmul
    max_pool = _mods[2].max_pool
    avg_pool = _mods[2].avg_pool
    global_avg_pool = _mods[2].global_avg_pool
    softmax = _mods[3].softmax
    layer_norm = _mods[3].layer_norm
    erf = _mods[3].erf
    gelu = _mods[3].gelu
resize = reference_resize
