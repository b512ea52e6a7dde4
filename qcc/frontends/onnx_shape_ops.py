"""Lowerings of ONNX shape ops to qnn (reshape family, concat/split/slice, gather,
pad, resize) and of the ops whose result is known at import (Shape, Size, Dropout's
mask). The registry and helpers are in `onnx_ops`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from xdsl.ir import SSAValue

from qcc.dialects import qnn
from qcc.frontends.errors import FrontendError
from qcc.frontends.onnx import Node
from qcc.frontends.onnx_ops import derived, lowering, norm_axes, prod

# --------------------------------------------------------------------- shape


def _reshape(n: Node, shape: Sequence[int]) -> SSAValue:
    return n.emit(qnn.ReshapeOp, n.value(0), shape=tuple(int(d) for d in shape))


@lowering("Reshape")
def reshape(n: Node):
    x = n.shape(0)
    target = n.array(1).tolist() if n.version >= 5 else list(n.attr("shape"))
    keep_zero = n.attr("allowzero", 0)
    out = [x[i] if d == 0 and not keep_zero else int(d) for i, d in enumerate(target)]
    if -1 in out:
        known = prod(d for d in out if d != -1)
        out[out.index(-1)] = prod(x) // known if known else 0
    return _reshape(n, out)


@lowering("Flatten")
def flatten(n: Node):
    x = n.shape(0)
    axis = n.attr("axis", 1)
    axis = axis + len(x) if axis < 0 else axis
    return _reshape(n, (prod(x[:axis]), prod(x[axis:])))


@lowering("Squeeze")
def squeeze(n: Node):
    x = n.shape(0)
    axes = n.optional_array(1) if n.version >= 13 else n.attr("axes")
    if axes is None:
        drop = {i for i, d in enumerate(x) if d == 1}
    else:
        drop = set(norm_axes(axes, len(x)))
    return _reshape(n, [d for i, d in enumerate(x) if i not in drop])


@lowering("Unsqueeze")
def unsqueeze(n: Node):
    x = list(n.shape(0))
    axes = n.array(1) if n.version >= 13 else n.attr("axes")
    rank = len(x) + len(axes)
    for a in sorted(norm_axes(axes, rank)):
        x.insert(a, 1)
    return _reshape(n, x)


@lowering("Transpose")
def transpose(n: Node):
    rank = len(n.shape(0))
    perm = n.attr("perm", list(reversed(range(rank))))
    return n.emit(qnn.TransposeOp, n.value(0), perm=tuple(perm))


@lowering("Expand")
def expand(n: Node):
    return n.emit(qnn.BroadcastOp, n.value(0), shape=tuple(n.array(1).tolist()))


@lowering("Concat")
def concat(n: Node):
    values = [n.value(i) for i in range(len(n.proto.input)) if n.has(i)]
    return n.emit(qnn.ConcatOp, values, axis=n.attr("axis") % len(n.shape(0)))


@lowering("Split")
def split(n: Node):
    x = n.shape(0)
    axis = n.attr("axis", 0) % len(x)
    dim, parts = x[axis], len(n.proto.output)
    if n.version >= 13 and n.has(1):
        sizes = n.array(1).tolist()
    elif n.version < 13 and n.attr("split") is not None:
        sizes = list(n.attr("split"))
    elif n.attr("num_outputs") is not None:  # opset 18: the last part may be smaller
        chunk = -(-dim // n.attr("num_outputs"))
        sizes = [chunk] * (parts - 1) + [dim - chunk * (parts - 1)]
    else:
        if dim % parts:
            raise FrontendError(f"dim {axis} ({dim}) does not split into {parts} equal parts")
        sizes = [dim // parts] * parts
    op = n.emit_op(qnn.SplitOp, n.value(0), axis=axis, sizes=tuple(sizes))
    return list(op.results)


def _slice_bounds(start: int, end: int, step: int, dim: int) -> tuple[int, int]:
    """ONNX clamping of one axis, as bounds that numpy slicing reads the same way."""
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        return min(max(start, 0), dim), min(max(end, 0), dim)
    start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return start, (-dim - 1 if end < 0 else end)  # -1 would mean "the last element"


@lowering("Slice")
def slice_(n: Node):
    x = n.shape(0)
    if n.version < 10:
        starts, ends = n.attr("starts"), n.attr("ends")
        axes, steps = n.attr("axes", range(len(starts))), [1] * len(starts)
    else:
        starts, ends = n.array(1).tolist(), n.array(2).tolist()
        axes = n.optional_array(3)
        axes = range(len(starts)) if axes is None else axes.tolist()
        steps = n.optional_array(4)
        steps = [1] * len(starts) if steps is None else steps.tolist()
    axes = norm_axes(axes, len(x))
    bounds = [_slice_bounds(int(b), int(e), int(s), x[a])
              for b, e, s, a in zip(starts, ends, steps, axes, strict=True)]
    return n.emit(qnn.SliceOp, n.value(0), starts=tuple(b for b, _ in bounds),
                  ends=tuple(e for _, e in bounds), axes=axes, steps=tuple(steps))


@lowering("Gather")
def gather(n: Node):
    axis = n.attr("axis", 0) % len(n.shape(0))
    indices = n.input(1)
    if isinstance(indices, np.ndarray) and (indices < 0).any():
        dim = n.shape(0)[axis]
        indices = np.where(indices < 0, indices + dim, indices).astype(indices.dtype)
    return n.emit(qnn.GatherOp, n.value(0), derived(n, 1, indices)
                  if isinstance(indices, np.ndarray) else n.value(1), axis=axis)


@lowering("Pad")
def pad(n: Node):
    x = n.shape(0)
    rank = len(x)
    if n.version < 11:
        pads, value = list(n.attr("pads")), n.attr("value", 0.0)
    else:
        pads = n.array(1).tolist()
        value = n.optional_array(2)
        value = 0.0 if value is None or value.size == 0 else value.item()
        axes = n.optional_array(3)
        if axes is not None:
            pads = _pads_fornorm_axes(pads, norm_axes(axes, rank), rank)
    y = n.value(0)
    if any(p < 0 for p in pads):  # negative pads crop: slice first
        starts = [max(-p, 0) for p in pads[:rank]]
        ends = [d - max(-p, 0) for d, p in zip(x, pads[rank:], strict=True)]
        y = n.emit(qnn.SliceOp, y, starts=starts, ends=ends, axes=tuple(range(rank)),
                   steps=(1,) * rank, suffix="/crop")
        pads = [max(p, 0) for p in pads]
    return n.emit(qnn.PadOp, y, pads=tuple(pads), mode=n.attr("mode", "constant"),
                  value=float(value))


def _pads_fornorm_axes(pads: Sequence[int], axes: Sequence[int], rank: int) -> list[int]:
    full = [0] * 2 * rank
    for j, a in enumerate(axes):
        full[a], full[a + rank] = pads[j], pads[j + len(axes)]
    return full


@lowering("Resize", "Upsample")
def resize(n: Node):
    """Nearest and linear resize to static sizes (scales are turned into sizes)."""
    x = n.shape(0)
    mode = n.attr("mode", "nearest")
    if mode not in ("nearest", "linear"):
        raise FrontendError(f"mode '{mode}' is not supported (qnn.resize does nearest "
                            "and linear)")
    if n.op_type == "Upsample" or n.version < 11:  # Upsample, Resize-10
        scales = n.attr("scales") if n.op_type == "Upsample" and n.version < 9 else n.array(1)
        props = {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
        return n.emit(qnn.ResizeOp, n.value(0), sizes=_scaled_sizes(x, range(len(x)), scales),
                      mode=mode, **props)
    ctm = n.attr("coordinate_transformation_mode", "half_pixel")
    if ctm == "tf_crop_and_resize" or n.attr("antialias", 0):
        raise FrontendError("tf_crop_and_resize and antialias are not supported")
    if n.attr("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise FrontendError("keep_aspect_ratio_policy other than 'stretch' is not supported")
    axes = norm_axes(n.attr("axes", range(len(x))), len(x))
    scales = n.optional_array(2) if n.has(2) else None
    sizes = n.optional_array(3) if n.has(3) else None
    if sizes is not None and sizes.size:
        out = list(x)
        for a, s in zip(axes, sizes.tolist(), strict=True):
            out[a] = int(s)
    elif scales is not None and scales.size:
        out = _scaled_sizes(x, axes, scales)
    else:
        raise FrontendError("Resize needs scales or sizes")
    return n.emit(qnn.ResizeOp, n.value(0), sizes=tuple(out), mode=mode,
                  coordinate_transformation_mode=ctm,
                  nearest_mode=n.attr("nearest_mode", "round_prefer_floor"))


def _scaled_sizes(x: Sequence[int], axes: Sequence[int], scales) -> list[int]:
    out = list(x)
    for a, s in zip(axes, np.asarray(scales, np.float64).tolist(), strict=True):
        size = x[a] * s
        if abs(size - round(size)) > 1e-6:
            raise FrontendError(
                f"scale {s} on axis {a} gives a fractional size {size:g}; qnn.resize "
                "samples at output/input ratios, so give sizes instead of scales")
        out[a] = int(round(size))
    return out


# --------------------------------------------------------- import-time values


@lowering("Shape")
def shape(n: Node):
    start, end = n.attr("start", 0), n.attr("end")
    return np.array(n.shape(0)[start:end], np.int64)


@lowering("Size")
def size(n: Node):
    return np.array(prod(n.shape(0)), np.int64)


@lowering("ConstantOfShape", "Range")
def needs_constants(n: Node):
    """Folded when its inputs are constants; a run-time input is an error."""
    for i in range(len(n.proto.input)):
        if n.has(i):
            n.array(i)
    raise AssertionError("unreachable: a node with constant inputs is folded")


@lowering("Dropout")
def dropout(n: Node):
    if n.version >= 12:
        ratio = n.optional_array(1)
        training = n.optional_array(2)
        if training is not None and bool(training):
            raise FrontendError("training_mode=True is not supported (inference only)")
        ratio = 0.5 if ratio is None else float(ratio)
    else:
        ratio = float(n.attr("ratio", 0.5))
    y = n.emit(qnn.DropoutOp, n.value(0), ratio=ratio)
    return [y, np.ones(n.shape(0), np.bool_) if n.uses(1) else None]
