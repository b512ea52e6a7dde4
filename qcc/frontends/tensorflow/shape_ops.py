"""TensorFlow shape and data-movement ops -> ONNX nodes (see `ops.py`). These read
and write values in the model's layout (`Node.tf`), except Pad, which keeps a
channels-first value channels-first."""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto

from qcc.frontends.errors import FrontendError
from qcc.frontends.tensorflow import graphdef as gd
from qcc.frontends.tensorflow.node import NCHW, Node, Tensor, translation


@translation("Shape")
def shape(n: Node):
    s = n.emit("Shape", [n.tf(0)], "/shape")[0]
    to = gd.dtype_of(n.attr("out_type", gd.DT.DT_INT32), "Shape's out_type")
    return Tensor(n.emit("Cast", [s], to=TensorProto.INT32 if to == np.int32 else
                         TensorProto.INT64)[0])


@translation("Reshape")
def reshape(n: Node):
    target = n.array(1, " (shape)").astype(np.int64)
    return Tensor(n.emit("Reshape", [n.tf(0), n.const(target, "/shape")])[0])


@translation("Squeeze")
def squeeze(n: Node):
    dims = list(n.attr("squeeze_dims", []) or [])
    inputs = [n.tf(0)] + ([n.const(np.asarray(dims, np.int64), "/axes")] if dims else [])
    return Tensor(n.emit("Squeeze", inputs)[0])


@translation("ExpandDims")
def expand_dims(n: Node):
    axis = np.atleast_1d(n.array(1, " (axis)")).astype(np.int64)
    return Tensor(n.emit("Unsqueeze", [n.tf(0), n.const(axis, "/axes")])[0])


@translation("Transpose")
def transpose(n: Node):
    perm = [int(p) for p in n.array(1, " (perm)")]
    return Tensor(n.emit("Transpose", [n.tf(0)], perm=perm)[0])


@translation("ConcatV2")
def concat(n: Node):
    k = len(n.inputs) - 1
    axis = int(n.array(k, " (axis)"))
    values = [n.value(i) for i in range(k)]
    perm = values[0].perm
    if perm is not None and all(v.perm == perm for v in values):
        return Tensor(n.emit("Concat", [v.name for v in values],
                             axis=perm.index(axis % len(perm)))[0], perm)
    return Tensor(n.emit("Concat", [n.tf(i) for i in range(k)], axis=axis)[0])


@translation("Pack")
def pack(n: Node):
    axis = np.asarray([int(n.attr("axis", 0))], np.int64)
    parts = [n.emit("Unsqueeze", [n.tf(i), n.const(axis, f"/axis{i}")], f"/unsqueeze{i}")[0]
             for i in range(len(n.inputs))]
    return Tensor(n.emit("Concat", parts, axis=int(axis[0]))[0])


def _split(n: Node, x: str, axis: int, sizes: list[int]) -> list[str]:
    return n.emit("Split", [x, n.const(np.asarray(sizes, np.int64), "/split")],
                  n_out=len(sizes), axis=axis)


@translation("Unpack")
def unpack(n: Node):
    axis = int(n.attr("axis", 0))
    num = int(n.attr("num"))
    parts = _split(n, n.tf(0), axis, [1] * num)
    axes = n.const(np.asarray([axis], np.int64), "/axes")
    return [Tensor(n.emit("Squeeze", [p, axes], f"/squeeze{i}")[0]) for i, p in enumerate(parts)]


@translation("Split")
def split(n: Node):
    axis = int(n.array(0, " (axis)"))
    num = int(n.attr("num_split"))
    size = n.shape(1)[axis] if n.value(1).perm is None else n.imp.shape(n.tf(1))[axis]
    return [Tensor(p) for p in _split(n, n.tf(1), axis, [size // num] * num)]


@translation("SplitV")
def split_v(n: Node):
    sizes = [int(s) for s in n.array(1, " (size_splits)")]
    axis = int(n.array(2, " (axis)"))
    x = n.tf(0)
    total = n.imp.shape(x)[axis]
    if -1 in sizes:
        sizes[sizes.index(-1)] = total - (sum(sizes) + 1)
    return [Tensor(p) for p in _split(n, x, axis, sizes)]


@translation("Pad", "PadV2", "MirrorPad")
def pad(n: Node):
    paddings = n.array(1, " (paddings)").astype(np.int64)
    mode = "constant"
    if n.op == "MirrorPad":
        mode = {"REFLECT": "reflect", "SYMMETRIC": "symmetric"}.get(
            str(n.attr("mode", "REFLECT")), "")
        if not mode:
            raise FrontendError(f"MirrorPad mode {n.attr('mode')} is not supported "
                                "(REFLECT and SYMMETRIC are)")
    v = n.value(0)
    name, perm = (v.name, v.perm) if v.perm is not None else (n.tf(0), None)
    if perm is not None:
        paddings = paddings[list(perm)]
    if mode == "symmetric":
        return Tensor(_symmetric_pad(n, name, paddings), perm)
    inputs = [name, n.const(np.concatenate([paddings[:, 0], paddings[:, 1]]), "/pads")]
    if n.op == "PadV2":
        inputs.append(n.const(n.array(2).reshape(()), "/value"))
    return Tensor(n.emit("Pad", inputs, mode=mode)[0], perm)


def _symmetric_pad(n: Node, x: str, paddings: np.ndarray) -> str:
    """MirrorPad SYMMETRIC (the edge repeated: [c b a | a b c d | d c b]) as one Gather
    a padded axis, with constant indices."""
    shape = n.imp.shape(x)
    for axis, (before, after) in enumerate(paddings.tolist()):
        if before == 0 and after == 0:
            continue
        size = shape[axis]
        if size < 0:
            raise FrontendError(f"MirrorPad SYMMETRIC pads a symbolic dim {axis}: give its "
                                "size with --input-shape")
        if before > size or after > size:
            raise FrontendError(f"MirrorPad SYMMETRIC pads ({before}, {after}) exceed dim "
                                f"{axis} of size {size}")
        index = np.concatenate([np.arange(before - 1, -1, -1), np.arange(size),
                                np.arange(size - 1, size - after - 1, -1)]).astype(np.int64)
        x = n.emit("Gather", [x, n.const(index, f"/symmetric{axis}")], f"/symmetric{axis}",
                   axis=axis)[0]
    return x


@translation("ResizeBilinear", "ResizeNearestNeighbor")
def resize(n: Node):
    size = [int(s) for s in n.array(1, " (size)")]
    x = n.imp.channels_first(n.inputs[0], 4)
    nb, c = n.imp.shape(x)[:2]
    align, half = bool(n.attr("align_corners", False)), bool(n.attr("half_pixel_centers", False))
    linear = n.op == "ResizeBilinear"
    # nearest, half_pixel_centers: src = floor((dst + 0.5) * in / out), which is
    # half_pixel's (dst + 0.5) * in / out - 0.5 rounded half up
    ctm = "align_corners" if align else "half_pixel" if half else "asymmetric"
    extra: dict[str, Any] = {} if linear else {
        "nearest_mode": "round_prefer_ceil" if align or half else "floor"}
    out = n.emit("Resize", [x, "", "", n.const(np.asarray([nb, c, *size], np.int64), "/sizes")],
                 mode="linear" if linear else "nearest", coordinate_transformation_mode=ctm,
                 **extra)[0]
    return Tensor(out, NCHW[4])


@translation("Slice")
def slice_(n: Node):
    begin = n.array(1, " (begin)").astype(np.int64)
    size = n.array(2, " (size)").astype(np.int64)
    end = np.where(size < 0, np.iinfo(np.int64).max, begin + size)
    return Tensor(n.emit("Slice", [n.tf(0), n.const(begin, "/starts"), n.const(end, "/ends"),
                                   n.const(np.arange(len(begin), dtype=np.int64), "/axes")])[0])


@translation("StridedSlice")
def strided_slice(n: Node):
    x = n.tf(0)
    shape = n.imp.shape(x)
    begin, end, strides = (n.array(i).astype(np.int64).tolist() for i in (1, 2, 3))
    masks = {k: int(n.attr(f"{k}_mask", 0)) for k in
             ("begin", "end", "ellipsis", "new_axis", "shrink_axis")}
    real = sum(1 for i in range(len(begin))
               if not (masks["new_axis"] >> i) & 1 and not (masks["ellipsis"] >> i) & 1)
    big = np.iinfo(np.int64).max
    starts, ends, axes, steps, out_shape = [], [], [], [], []
    dim = 0
    for i in range(len(begin)):
        bit = 1 << i
        if masks["ellipsis"] & bit:
            for _ in range(len(shape) - real):
                out_shape.append(shape[dim])
                dim += 1
            continue
        if masks["new_axis"] & bit:
            out_shape.append(1)
            continue
        s = strides[i]
        b = None if masks["begin"] & bit else begin[i]
        e = None if masks["end"] & bit else end[i]
        if masks["shrink_axis"] & bit:
            b = begin[i]
            e = b + 1 if b != -1 else big
            s = 1
        b_v = b if b is not None else (0 if s > 0 else -1)
        e_v = e if e is not None else (big if s > 0 else -big)
        starts.append(b_v)
        ends.append(e_v)
        axes.append(dim)
        steps.append(s)
        length = len(range(shape[dim])[slice(b, e if e != big else None, s)])
        if not masks["shrink_axis"] & bit:
            out_shape.append(length)
        dim += 1
    out_shape.extend(shape[dim:])
    arr = lambda v, t: n.const(np.asarray(v, np.int64), t)  # noqa: E731
    sliced = n.emit("Slice", [x, arr(starts, "/starts"), arr(ends, "/ends"), arr(axes, "/axes"),
                              arr(steps, "/steps")], "/slice")[0]
    return Tensor(n.emit("Reshape", [sliced, arr(out_shape, "/shape")])[0])


@translation("Fill")
def fill(n: Node):
    dims = [int(d) for d in n.array(0, " (dims)")]
    return Tensor(n.const(np.full(dims, n.array(1, " (value)")), "/filled"))


@translation("GatherV2")
def gather(n: Node):
    """Gather along a constant axis (Keras's Tensordot gathers its dims from Shape when
    the batch is unknown)."""
    if int(n.attr("batch_dims", 0) or 0) != 0:
        raise FrontendError("GatherV2 with batch_dims != 0 is not supported")
    axis = int(n.array(2, " (axis)"))
    return Tensor(n.emit("Gather", [n.tf(0), n.tf(1)], axis=axis)[0])
