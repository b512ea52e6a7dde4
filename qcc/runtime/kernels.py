"""Layer kernels of the runtime: the compiled Cython ones, with vectorized numpy
versions (`reference_*`) that define the semantics and serve as a fallback.

Layout NCHW, float32, pads as ONNX (all begins, then all ends).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


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


def _source_coords(n_in, n_out, mode):
    scale = n_out / n_in
    o = np.arange(n_out, dtype=np.float64)
    if mode == "half_pixel":
        return (o + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (o + 0.5) / scale - 0.5 if n_out > 1 else np.zeros(n_out)
    if mode == "align_corners":
        return o * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros(n_out)
    if mode == "asymmetric":
        return o / scale
    raise ValueError(f"unsupported coordinate_transformation_mode {mode}")


def _nearest(c, n_in, nearest_mode):
    if nearest_mode == "round_prefer_floor":
        i = np.where(c - np.floor(c) == 0.5, np.floor(c), np.round(c))
    elif nearest_mode == "round_prefer_ceil":
        i = np.where(c - np.floor(c) == 0.5, np.ceil(c), np.round(c))
    elif nearest_mode == "floor":
        i = np.floor(c)
    else:
        i = np.ceil(c)
    return np.clip(i, 0, n_in - 1).astype(np.int64)


def reference_resize(x, sizes, mode, coord_mode, nearest_mode):
    y = x
    for axis in range(2, x.ndim):
        n_in, n_out = x.shape[axis], sizes[axis]
        if n_in == n_out:
            continue
        c = _source_coords(n_in, n_out, coord_mode)
        if mode == "nearest":
            y = np.take(y, _nearest(c, n_in, nearest_mode), axis=axis)
            continue
        c = np.clip(c, 0, n_in - 1)
        lo = np.floor(c).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        frac = (c - lo).astype(np.float32)
        shape = [1] * y.ndim
        shape[axis] = -1
        frac = frac.reshape(shape)
        y = np.take(y, lo, axis=axis) * (1 - frac) + np.take(y, hi, axis=axis) * frac
    return np.ascontiguousarray(y, dtype=np.float32)


def _compiled():
    """The Cython kernels, unless QCC_REFERENCE_KERNELS=1 asks for the numpy ones."""
    if os.environ.get("QCC_REFERENCE_KERNELS") == "1":
        return None
    try:
        from qcc.runtime import _conv, _kernels, _pool
    except ImportError:  # an uncompiled checkout: the numpy kernels still run
        return None
    return _conv, _kernels, _pool


_mods = _compiled()
if _mods is None:
    conv = reference_conv
    conv_transpose = reference_conv_transpose
    dense = reference_dense
    max_pool = reference_max_pool
    avg_pool = reference_avg_pool
else:
    # The compiled conv rounds differently per output channel, which ill-conditioned
    # models (light_squeezenet on ones: activations ~1e9) amplify; until it sums
    # every channel in the same order, conv stays on the BLAS-backed numpy kernel.
    conv = reference_conv
    conv_transpose = _mods[0].conv_transpose
    dense = _mods[1].dense
    max_pool = _mods[2].max_pool
    avg_pool = _mods[2].avg_pool
resize = reference_resize
