"""Lowerings of the ATen data-movement ops (resize, pad, shapes, slicing), attention
and the constants of creation ops, registered in `ops.LOWERINGS`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from xdsl.ir import SSAValue

from qcc.dialects import qnn
from qcc.frontends.errors import FrontendError
from qcc.frontends.pytorch.node import Node, dtype_of, shape_of
from qcc.frontends.pytorch.ops import _axis, lowering

# ---------------------------------------------------------------- resize, pad


@lowering("upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d",
          "upsample_bilinear2d", "upsample_linear1d")
def upsample(n: Node):
    x = n.arg(0)
    nearest = n.op.startswith("upsample_nearest")
    scales = n.arg(2 if nearest else 3, "scale_factors")
    if not nearest and len(n.args) > 3 and not isinstance(n.args[3], list | tuple) \
            and n.args[3] is not None:
        scales = None  # the .default overload: (x, size, align_corners, scales_h, ...)
    align = False if nearest else bool(n.arg(2, "align_corners", False))
    props: dict[str, Any] = {"sizes": n.shape, "mode": "nearest" if nearest else "linear"}
    if nearest:
        props.update(coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    else:
        props["coordinate_transformation_mode"] = ("align_corners" if align
                                                   else "pytorch_half_pixel")
    if isinstance(scales, list | tuple) and scales and not align:
        props["scales"] = (1.0, 1.0, *(float(s) for s in scales))
    return n.emit(qnn.ResizeOp, n.value(x), **props)


@lowering("pad", "constant_pad_nd", "reflection_pad1d", "reflection_pad2d",
          "reflection_pad3d", "replication_pad1d", "replication_pad2d", "replication_pad3d")
def pad(n: Node):
    """torch pads (last dim first, begin/end pairs) to qnn's (all begins, all ends)."""
    x = n.arg(0)
    rank = len(shape_of(x))
    p = list(n.arg(1, "pad"))
    mode = {"reflection": "reflect", "replication": "edge"}.get(n.op.split("_")[0], "constant")
    value = 0.0
    if n.op == "pad":
        mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge",
                "circular": "circular"}[n.arg(2, "mode", "constant")]
        value = n.arg(3, "value", None) or 0.0
    elif n.op == "constant_pad_nd":
        value = n.arg(2, "value", 0.0)
    if mode == "circular":
        raise FrontendError("circular padding is not supported")
    begins, ends = [0] * rank, [0] * rank
    for i in range(len(p) // 2):
        begins[rank - 1 - i], ends[rank - 1 - i] = int(p[2 * i]), int(p[2 * i + 1])
    return n.emit(qnn.PadOp, n.value(x), pads=(*begins, *ends), mode=mode, value=float(value))


# ---------------------------------------------------------------- shape ops


@lowering("view", "_unsafe_view", "reshape", "flatten", "squeeze", "unsqueeze",
          "view_copy", "unflatten")
def reshape(n: Node):
    x = n.arg(0)
    if shape_of(x) == n.shape:
        return x
    return n.emit(qnn.ReshapeOp, n.value(x), shape=n.shape)


@lowering("expand", "expand_copy", "broadcast_to")
def expand(n: Node):
    x = n.arg(0)
    if shape_of(x) == n.shape:
        return x
    return n.emit(qnn.BroadcastOp, n.value(x), shape=n.shape)


@lowering("permute", "permute_copy")
def permute(n: Node):
    x = n.arg(0)
    rank = len(shape_of(x))
    return n.emit(qnn.TransposeOp, n.value(x), perm=tuple(_axis(d, rank) for d in n.arg(1)))


@lowering("transpose", "t", "numpy_T")
def transpose(n: Node):
    x = n.arg(0)
    rank = len(shape_of(x))
    perm = list(range(rank))
    if n.op == "transpose":
        a, b = _axis(n.arg(1), rank), _axis(n.arg(2), rank)
        perm[a], perm[b] = perm[b], perm[a]
    else:
        perm.reverse()
    return n.emit(qnn.TransposeOp, n.value(x), perm=tuple(perm))


@lowering("cat", "concat")
def cat(n: Node):
    tensors = [t for t in n.arg(0) if shape_of(t) != (0,)]
    axis = _axis(n.arg(1, "dim", 0), len(shape_of(tensors[0])))
    return n.emit(qnn.ConcatOp, [n.value(t) for t in tensors], axis=axis)


@lowering("stack")
def stack(n: Node):
    tensors = n.arg(0)
    rank = len(shape_of(tensors[0])) + 1
    axis = _axis(n.arg(1, "dim", 0), rank)
    parts = []
    for i, t in enumerate(tensors):
        s = list(shape_of(t))
        parts.append(n.emit(qnn.ReshapeOp, n.value(t), shape=(*s[:axis], 1, *s[axis:]),
                            suffix=f"/unsqueeze{i}"))
    return n.emit(qnn.ConcatOp, parts, axis=axis)


def _split(n: Node, x: Any, sizes: Sequence[int], axis: int) -> list[SSAValue]:
    op = n.emit_op(qnn.SplitOp, n.value(x), axis=axis, sizes=tuple(int(s) for s in sizes))
    return list(op.results)


@lowering("split", "split_with_sizes", "chunk", "unsafe_split")
def split(n: Node):
    x = n.arg(0)
    shape = shape_of(x)
    axis = _axis(n.arg(2, "dim", 0), len(shape))
    arg = n.arg(1)
    total = shape[axis]
    if n.op == "chunk":
        step = -(-total // int(arg))
        arg = step
    if isinstance(arg, int):
        sizes = [min(arg, total - i) for i in range(0, total, arg)]
    else:
        sizes = list(arg)
    return _split(n, x, sizes, axis)


@lowering("unbind")
def unbind(n: Node):
    x = n.arg(0)
    shape = shape_of(x)
    axis = _axis(n.arg(1, "dim", 0), len(shape))
    parts = _split(n, x, [1] * shape[axis], axis)
    out = shape[:axis] + shape[axis + 1:]
    return [n.emit(qnn.ReshapeOp, p, shape=out, suffix=f"/{i}") for i, p in enumerate(parts)]


@lowering("slice", "slice_copy")
def slice_(n: Node):
    x = n.arg(0)
    shape = shape_of(x)
    axis = _axis(n.arg(1, "dim", 0), len(shape))
    size = shape[axis]
    start, end, step = n.arg(2, "start"), n.arg(3, "end"), n.arg(4, "step", 1)
    start, end, _ = slice(start, end, step).indices(size)
    if (start, end, step) == (0, size, 1):
        return x
    return n.emit(qnn.SliceOp, n.value(x), starts=(start,), ends=(end,), axes=(axis,),
                  steps=(int(step),))


@lowering("select", "select_copy")
def select(n: Node):
    x = n.arg(0)
    shape = shape_of(x)
    axis = _axis(n.arg(1), len(shape))
    index = int(n.arg(2)) % shape[axis]
    part = n.emit(qnn.SliceOp, n.value(x), starts=(index,), ends=(index + 1,), axes=(axis,),
                  steps=(1,), suffix="/slice")
    return n.emit(qnn.ReshapeOp, part, shape=n.shape)


@lowering("embedding")
def embedding(n: Node):
    w, idx = n.arg(0), n.arg(1)
    return n.emit(qnn.GatherOp, n.value(w), n.value(idx), axis=0)


@lowering("index_select")
def index_select(n: Node):
    x = n.arg(0)
    return n.emit(qnn.GatherOp, n.value(x), n.value(n.arg(2)),
                  axis=_axis(n.arg(1), len(shape_of(x))))


# ----------------------------------------------------------------- attention


@lowering("scaled_dot_product_attention")
def attention(n: Node):
    """softmax(q @ k^T * scale + mask) @ v; a boolean mask keeps where True."""
    q, k, v = (n.value(n.arg(i)) for i in range(3))
    mask = n.arg(3, "attn_mask")
    if n.arg(4, "dropout_p", 0.0):
        raise FrontendError("scaled_dot_product_attention with dropout_p > 0 (training)")
    causal = bool(n.arg(5, "is_causal", False))
    if n.kwargs.get("enable_gqa"):
        raise FrontendError("scaled_dot_product_attention with enable_gqa is not supported")
    qs, ks = shape_of(q), shape_of(k)
    scale = n.kwargs.get("scale")
    scale = 1.0 / math.sqrt(qs[-1]) if scale is None else float(scale)
    rank = len(ks)
    perm = (*range(rank - 2), rank - 1, rank - 2)
    kt = n.emit(qnn.TransposeOp, k, perm=perm, suffix="/k_t")
    s = n.emit(qnn.MatmulOp, q, kt, suffix="/scores")
    s = n.emit(qnn.MulOp, s, n.value(scale, s), suffix="/scale")
    if causal:
        keep = np.tril(np.ones((qs[-2], ks[-2]), np.bool_))
        mask = keep
    if mask is not None:
        if dtype_of(mask) == np.bool_:
            neg = n.value(-math.inf, s)
            s = n.emit(qnn.WhereOp, n.value(mask), s, neg, suffix="/mask")
        else:
            s = n.emit(qnn.AddOp, s, n.value(mask), suffix="/mask")
    p = n.emit(qnn.SoftmaxOp, s, axis=len(shape_of(s)) - 1, suffix="/softmax")
    return n.emit(qnn.MatmulOp, p, v)


# --------------------------------------------------------- constants at import


@lowering("full", "zeros", "ones", "arange", "scalar_tensor", "full_like", "zeros_like",
          "ones_like", "empty", "empty_like", "new_zeros", "new_ones", "new_full", "tril",
          "triu")
def creation(n: Node):
    """Reached only when an input is a graph value (`*_like` of an activation):
    the result depends on its shape only."""
    import torch

    if n.op in ("full_like", "zeros_like", "ones_like", "empty_like"):
        fill = {"zeros_like": 0, "ones_like": 1, "empty_like": 0}.get(n.op, n.arg(1))
        return np.full(n.shape, fill, n.dtype)
    if n.op in ("new_zeros", "new_ones", "new_full"):
        fill = {"new_zeros": 0, "new_ones": 1}.get(n.op, n.arg(2))
        return np.full(n.shape, fill, n.dtype)
    del torch
    raise FrontendError(f"{n.op} of a run-time tensor is not supported")
