"""Lowerings of Caffe's data-movement and resampling layers (Concat, Slice, Split,
Flatten, Reshape, Permute, Crop, Upsample, Interp), registered in `layers.LOWERINGS`."""

from __future__ import annotations

import math

from qcc.dialects import qnn
from qcc.frontends.caffe.layers import axis_of, lowering
from qcc.frontends.caffe.node import Layer
from qcc.frontends.errors import FrontendError

# ---------------------------------------------------------------- data movement


@lowering("Concat")
def concat(n: Layer):
    p = n.proto.concat_param
    axis = p.axis if p.HasField("axis") or not p.HasField("concat_dim") else p.concat_dim
    axis = axis_of(axis, len(n.shape()), "concat axis")
    if len(n.bottoms) == 1:
        return [n.bottoms[0]]
    return [n.emit(qnn.ConcatOp, n.bottoms, axis=axis)]


@lowering("Slice")
def slice_(n: Layer):
    p = n.proto.slice_param
    shape = n.shape()
    axis = p.axis if p.HasField("axis") or not p.HasField("slice_dim") else p.slice_dim
    axis = axis_of(axis, len(shape), "slice axis")
    dim, tops = shape[axis], n.num_tops
    if p.slice_point:
        points = [0, *[int(v) for v in p.slice_point], dim]
        if len(points) - 1 != tops or points != sorted(points):
            raise FrontendError(f"slice_point {list(p.slice_point)} must be increasing and "
                                f"give {tops} pieces of dim {dim}")
        sizes = [b - a for a, b in zip(points, points[1:], strict=False)]
    else:
        if dim % tops:
            raise FrontendError(f"dim {dim} does not split into {tops} equal pieces")
        sizes = [dim // tops] * tops
    return list(n.emit_op(qnn.SplitOp, n.bottoms[0], axis=axis, sizes=tuple(sizes)).results)


@lowering("Split")
def split(n: Layer):
    return [n.bottoms[0]] * n.num_tops


@lowering("Flatten")
def flatten(n: Layer):
    p = n.proto.flatten_param
    shape = n.shape()
    a = axis_of(p.axis, len(shape), "flatten_param.axis")
    e = axis_of(p.end_axis, len(shape), "flatten_param.end_axis")
    new = (*shape[:a], math.prod(shape[a:e + 1]), *shape[e + 1:])
    return [n.emit(qnn.ReshapeOp, n.bottoms[0], shape=new)]


@lowering("Reshape")
def reshape(n: Layer):
    """reshape_layer.cpp: dims [axis, axis + num_axes) replaced by `shape`; 0 copies
    the bottom's dim, -1 is inferred."""
    p = n.proto.reshape_param
    shape = n.shape()
    rank = len(shape)
    start = p.axis if p.axis >= 0 else rank + p.axis + 1
    end = rank if p.num_axes == -1 else start + p.num_axes
    if not 0 <= start <= end <= rank:
        raise FrontendError(f"reshape_param axis {p.axis} num_axes {p.num_axes} do not fit "
                            f"bottom {list(shape)}")
    spec = [int(d) for d in p.shape.dim]
    dims = [shape[start + i] if d == 0 else d for i, d in enumerate(spec)]
    new = [*shape[:start], *dims, *shape[end:]]
    if new.count(-1) > 1:
        raise FrontendError(f"shape {spec} has more than one -1")
    if -1 in new:
        known = math.prod(d for d in new if d != -1)
        new[new.index(-1)] = math.prod(shape) // known if known else 0
    if math.prod(new) != math.prod(shape):
        raise FrontendError(f"cannot reshape bottom {list(shape)} into {new}")
    return [n.emit(qnn.ReshapeOp, n.bottoms[0], shape=tuple(new))]


@lowering("Permute")
def permute(n: Layer):
    rank = len(n.shape())
    order = [int(o) for o in n.proto.permute_param.order]
    order += [a for a in range(rank) if a not in order]  # SSD appends the rest
    if sorted(order) != list(range(rank)):
        raise FrontendError(f"order {order} is not a permutation of {rank} axes")
    return [n.emit(qnn.TransposeOp, n.bottoms[0], perm=tuple(order))]


@lowering("Crop")
def crop(n: Layer):
    p = n.proto.crop_param
    shape, ref = n.shape(0), n.shape(1)
    axis = axis_of(p.axis, len(shape), "crop_param.axis")
    axes = list(range(axis, len(shape)))
    offsets = list(p.offset)
    if len(offsets) not in (0, 1, len(axes)):
        raise FrontendError(f"{len(offsets)} offsets for {len(axes)} cropped axes")
    offs = [int(offsets[0]) if len(offsets) == 1 else (int(offsets[i]) if offsets else 0)
            for i in range(len(axes))]
    ends = [o + ref[a] for o, a in zip(offs, axes, strict=True)]
    if any(e > shape[a] for e, a in zip(ends, axes, strict=True)):
        raise FrontendError(f"crop of bottom {list(shape)} to {list(ref)} at offsets {offs} "
                            "goes past its end")
    return [n.emit(qnn.SliceOp, n.bottoms[0], starts=tuple(offs), ends=tuple(ends),
                   axes=tuple(axes), steps=(1,) * len(axes))]


@lowering("Upsample")
def upsample(n: Layer):
    """Nearest-neighbour upsampling by an integer `scale` (YOLOv3 forks)."""
    s = int(n.proto.upsample_param.scale)
    shape = n.shape()
    if s < 1 or len(shape) != 4:
        raise FrontendError(f"Upsample needs scale >= 1 and a 4-d bottom (scale {s}, "
                            f"bottom {list(shape)})")
    return [n.emit(qnn.ResizeOp, n.bottoms[0], sizes=(*shape[:2], shape[2] * s, shape[3] * s),
                   mode="nearest", coordinate_transformation_mode="asymmetric",
                   nearest_mode="floor")]


@lowering("Interp")
def interp(n: Layer):
    """PSPNet's Interp (interp_layer.cpp): bilinear, corners aligned; the output size
    from height/width, zoom_factor and/or shrink_factor."""
    p = n.proto.interp_param
    shape = n.shape()
    if len(shape) != 4 or p.pad_beg or p.pad_end:
        raise FrontendError("Interp needs a 4-d bottom and pad_beg = pad_end = 0")
    h, w = shape[2:]
    zoom, shrink = p.HasField("zoom_factor"), p.HasField("shrink_factor")
    if p.HasField("height") and p.HasField("width"):
        out = (int(p.height), int(p.width))
    elif zoom or shrink:
        if shrink:
            if p.shrink_factor < 1:
                raise FrontendError(f"shrink_factor {p.shrink_factor} must be >= 1")
            h, w = (h - 1) // p.shrink_factor + 1, (w - 1) // p.shrink_factor + 1
        if zoom:
            if p.zoom_factor < 1:
                raise FrontendError(f"zoom_factor {p.zoom_factor} must be >= 1")
            h, w = h + (h - 1) * (p.zoom_factor - 1), w + (w - 1) * (p.zoom_factor - 1)
        out = (h, w)
    else:
        raise FrontendError("interp_param needs height and width, zoom_factor or "
                            "shrink_factor")
    if min(out) < 1:
        raise FrontendError(f"output size {list(out)} is empty")
    return [n.emit(qnn.ResizeOp, n.bottoms[0], sizes=(*shape[:2], *out), mode="linear",
                   coordinate_transformation_mode="align_corners")]
