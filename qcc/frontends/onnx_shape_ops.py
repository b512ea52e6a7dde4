"""Lowerings of ONNX shape ops to qnn (reshape family, concat/split/slice, gather,
pad, resize) and of the ops whose result is known at import (Shape, Size, Dropout's
mask). The registry and helpers are in `onnx_ops`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from xdsl.ir import SSAValue

from qcc.dialects import qnn
from qcc.frontends.errors import FrontendError
from qcc.frontends.onnx_node import Node
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
        step_array = n.optional_array(4)
        steps = [1] * len(starts) if step_array is None else step_array.tolist()
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
    """ONNX Resize (opsets 10-19) and Upsample to `qnn.resize` with static sizes.

    Scales give sizes floor(in * scale) (in float32, as onnxruntime) and stay on the
    op when they differ from sizes / in, since ONNX samples at the given scale. `axes`
    and keep_aspect_ratio_policy are resolved here (full-rank sizes, scales, roi).
    Upsample and Resize-10 sample 'asymmetric'; their nearest pixel is onnxruntime's
    (floor when upsampling, ceil when downsampling).
    """
    x = n.shape(0)
    r = len(x)
    mode = n.attr("mode", "nearest")
    if mode not in qnn.ResizeOp.MODES:
        raise FrontendError(f"mode '{mode}' is not supported (qnn.resize does "
                            f"{', '.join(qnn.ResizeOp.MODES)})")
    if n.op_type == "Upsample" or n.version < 11:  # Upsample, Resize-10
        given = n.attr("scales") if n.op_type == "Upsample" and n.version < 9 else n.array(1)
        scales = np.asarray(given, np.float64).tolist()
        if len(scales) != r or any(s <= 0 for s in scales):
            raise FrontendError(f"scales {scales} must be {r} positive values")
        sizes = _scaled_sizes(x, scales)
        resized = [s for s in scales if s != 1.0]
        if mode == "nearest" and resized and min(resized) < 1.0 < max(resized):
            raise FrontendError(f"scales {scales} up- and downsample: {n.op_type}-"
                                f"{n.version} rounds those differently, qnn.resize cannot")
        nearest = "ceil" if resized and max(resized) < 1.0 else "floor"
        return n.emit(qnn.ResizeOp, n.value(0), sizes=tuple(sizes), mode=mode,
                      coordinate_transformation_mode="asymmetric", nearest_mode=nearest,
                      scales=_kept_scales(x, sizes, scales))
    ctm = n.attr("coordinate_transformation_mode", "half_pixel")
    nearest = n.attr("nearest_mode", "round_prefer_floor")
    if ctm not in qnn.ResizeOp.COORDINATE_MODES:
        raise FrontendError(f"coordinate_transformation_mode '{ctm}' is not supported")
    if nearest not in qnn.ResizeOp.NEAREST_MODES:
        raise FrontendError(f"nearest_mode '{nearest}' is not supported")
    axes = norm_axes(n.attr("axes", range(r)), r)
    given_scales = n.optional_array(2) if n.has(2) else None
    given_sizes = n.optional_array(3) if n.has(3) else None
    if given_sizes is not None and given_sizes.size:
        sizes, scales = _sizes_with_policy(n, x, axes, given_sizes.tolist())
    elif given_scales is not None and given_scales.size:
        if given_scales.size != len(axes):
            raise FrontendError(f"{given_scales.size} scales for {len(axes)} axes")
        scales = [1.0] * r
        for a, s in zip(axes, np.asarray(given_scales, np.float64).tolist(), strict=True):
            scales[a] = s
        if any(s <= 0 for s in scales):
            raise FrontendError(f"scales {scales} must be positive")
        sizes = _scaled_sizes(x, scales)
    else:
        raise FrontendError("Resize needs scales or sizes")
    props: dict[str, Any] = {}
    if ctm == "tf_crop_and_resize":
        given_roi = n.optional_array(1) if n.has(1) else None
        roi = [0.0] * r + [1.0] * r
        if given_roi is not None and given_roi.size:
            if given_roi.size != 2 * len(axes):
                raise FrontendError(f"roi has {given_roi.size} values, expected "
                                    f"{2 * len(axes)}")
            values = np.asarray(given_roi, np.float64).tolist()
            for j, a in enumerate(axes):
                roi[a], roi[a + r] = values[j], values[j + len(axes)]
        props["roi"] = tuple(roi)
        if n.attr("extrapolation_value", 0.0) != 0.0:
            props["extrapolation_value"] = float(n.attr("extrapolation_value"))
    if mode == "cubic" and n.attr("cubic_coeff_a", -0.75) != -0.75:
        props["cubic_coeff_a"] = float(n.attr("cubic_coeff_a"))
    if n.attr("exclude_outside", 0):
        props["exclude_outside"] = True
    if mode != "nearest" and n.attr("antialias", 0):
        props["antialias"] = True
    return n.emit(qnn.ResizeOp, n.value(0), sizes=tuple(sizes), mode=mode,
                  coordinate_transformation_mode=ctm, nearest_mode=nearest,
                  scales=_kept_scales(x, sizes, scales), **props)


def _sizes_with_policy(n: Node, x: Sequence[int], axes: Sequence[int],
                       given: Sequence[int]) -> tuple[list[int], list[float] | None]:
    """Full-rank sizes from Resize's `sizes` input, and the scales that
    keep_aspect_ratio_policy not_larger/not_smaller imposes (None for stretch)."""
    if len(given) != len(axes):
        raise FrontendError(f"{len(given)} sizes for {len(axes)} axes")
    sizes = list(x)
    for a, s in zip(axes, given, strict=True):
        sizes[a] = int(s)
    policy = n.attr("keep_aspect_ratio_policy", "stretch")
    if policy == "stretch":
        return sizes, None
    if policy not in ("not_larger", "not_smaller"):
        raise FrontendError(f"keep_aspect_ratio_policy '{policy}' is not supported")
    ratios = [sizes[a] / x[a] for a in axes]
    scale = min(ratios) if policy == "not_larger" else max(ratios)
    scales = [scale if i in axes else 1.0 for i in range(len(x))]
    return [int(scale * d + 0.5) if i in axes else d for i, d in enumerate(x)], scales


def _scaled_sizes(x: Sequence[int], scales: Sequence[float]) -> list[int]:
    """floor(in * scale) per axis, multiplied in float32 as onnxruntime does."""
    return [int(np.floor(np.float32(s) * np.float32(d))) for d, s in zip(x, scales, strict=True)]


def _kept_scales(x: Sequence[int], sizes: Sequence[int],
                 scales: Sequence[float] | None) -> tuple[float, ...] | None:
    """The scales, unless each is what qnn.resize derives from the sizes (out / in,
    in the float32 the runtime samples with)."""
    f = np.float32
    if scales is None or all(d and f(s) == f(o) / f(d) and f(s) * f(d) == o
                             for d, o, s in zip(x, sizes, scales, strict=True)):
        return None
    return tuple(float(s) for s in scales)


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
        ratio_array = n.optional_array(1)
        training = n.optional_array(2)
        if training is not None and bool(training):
            raise FrontendError("training_mode=True is not supported (inference only)")
        ratio = 0.5 if ratio_array is None else float(ratio_array)
    else:
        ratio = float(n.attr("ratio", 0.5))
    y = n.emit(qnn.DropoutOp, n.value(0), ratio=ratio)
    return [y, np.ones(n.shape(0), np.bool_) if n.uses(1) else None]
