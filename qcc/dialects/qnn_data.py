"""Data-movement ops of the `qnn` dialect: reshape, transpose, broadcast, concat,
split, slice, gather, gather_elements, gather_nd, pad, resize. Re-exported by `qcc.dialects.qnn`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from xdsl.dialects.builtin import (
    DenseArrayBase,
    FloatAttr,
    IntegerAttr,
    IntegerType,
    StringAttr,
    TensorType,
)
from xdsl.ir import Attribute
from xdsl.irdl import (
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.traits import Pure

from qcc.dialects import qnn_shapes as S
from qcc.dialects.base import (
    DYN,
    QnnOp,
    ShapeError,
    broadcast_shapes,
    fmt_shape,
    get_int,
    get_ints,
    is_static,
    like,
    norm_axis,
    shape_of,
)
from qcc.dialects.qnn_eval import Folds

AnyTensor = TensorType


# ---------------------------------------------------------------------- shape


@irdl_op_definition
class ReshapeOp(QnnOp):
    """Reshape to `shape` (same number of elements).

    With symbolic dims, as ONNX Reshape: one entry may be -1 (the element count
    decides it) and the entries at the indices in `copy_dims` are 0 and take the
    input's dim at that index. A static input has a static `shape`.
    """

    name = "qnn.reshape"
    input = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    shape = prop_def(DenseArrayBase)
    copy_dims = opt_prop_def(DenseArrayBase)
    traits = traits_def(Pure(), Folds())
    PROPS: ClassVar[dict[str, object]] = {"shape": None, "copy_dims": None}

    @classmethod
    def infer(cls, types, props):
        src = shape_of(types[0])
        return [like(types[0], reshaped(src, get_ints(props["shape"]),
                                        get_ints(props.get("copy_dims"))))]


@irdl_op_definition
class TransposeOp(QnnOp):
    name = "qnn.transpose"
    input = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    perm = prop_def(DenseArrayBase)
    traits = traits_def(Pure(), Folds())
    PROPS: ClassVar[dict[str, object]] = {"perm": None}

    @classmethod
    def infer(cls, types, props):
        shape, perm = shape_of(types[0]), get_ints(props["perm"])
        if sorted(perm) != list(range(len(shape))):
            raise ShapeError(f"perm {perm} is not a permutation of rank {len(shape)}")
        return [like(types[0], [shape[p] for p in perm])]


@irdl_op_definition
class BroadcastOp(QnnOp):
    """Broadcast to `shape` (ONNX Expand, numpy rules). An entry -1 keeps the
    input's (right-aligned) dim there, which may be symbolic."""

    name = "qnn.broadcast"
    input = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    shape = prop_def(DenseArrayBase)
    traits = traits_def(Pure(), Folds())
    PROPS: ClassVar[dict[str, object]] = {"shape": None}

    @classmethod
    def infer(cls, types, props):
        src = shape_of(types[0])
        out = broadcast_shapes(src, broadcast_target(src, get_ints(props["shape"])))
        return [like(types[0], out)]


@irdl_op_definition
class ConcatOp(QnnOp):
    name = "qnn.concat"
    inputs = var_operand_def(AnyTensor)
    output = result_def(AnyTensor)
    axis = prop_def(IntegerAttr)
    traits = traits_def(Pure(), Folds())
    PROPS: ClassVar[dict[str, object]] = {"axis": 0}

    @classmethod
    def make(cls, inputs, *, axis, name=None):
        return super().make(*inputs, axis=axis, name=name)

    @classmethod
    def infer(cls, types, props):
        return [S.concat(types, get_int(props["axis"]))]


@irdl_op_definition
class SplitOp(QnnOp):
    """Split along `axis` into pieces of `sizes`."""

    name = "qnn.split"
    input = operand_def(AnyTensor)
    outputs = var_result_def(AnyTensor)
    axis = prop_def(IntegerAttr)
    sizes = prop_def(DenseArrayBase)
    traits = traits_def(Pure(), Folds())
    PROPS: ClassVar[dict[str, object]] = {"axis": 0, "sizes": None}

    @classmethod
    def infer(cls, types, props):
        shape = shape_of(types[0])
        axis = norm_axis(get_int(props["axis"]), len(shape))
        sizes = get_ints(props["sizes"])
        if (shape[axis] != DYN and sum(sizes) != shape[axis]) or any(s < 0 for s in sizes):
            raise ShapeError(f"sizes {sizes} do not add up to dim {axis} = {shape[axis]}")
        return [like(types[0], shape[:axis] + (s,) + shape[axis + 1:]) for s in sizes]


@irdl_op_definition
class SliceOp(QnnOp):
    """Strided slice, numpy semantics per axis (starts/ends already clamped)."""

    name = "qnn.slice"
    input = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    starts = prop_def(DenseArrayBase)
    ends = prop_def(DenseArrayBase)
    axes = prop_def(DenseArrayBase)
    steps = prop_def(DenseArrayBase)
    traits = traits_def(Pure(), Folds())
    PROPS: ClassVar[dict[str, object]] = {"starts": None, "ends": None, "axes": None, "steps": None}

    @classmethod
    def infer(cls, types, props):
        return [S.slice_(types[0], *(get_ints(props[k]) for k in
                                     ("starts", "ends", "axes", "steps")))]


class IndexedOp(QnnOp):
    """Reads `input` at integer `indices` (the gather ops)."""

    input = operand_def(AnyTensor)
    indices = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    traits = traits_def(Pure(), Folds())

    @staticmethod
    def shapes(types: Sequence[Attribute]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The shapes of the input and of the indices, which must be integers."""
        shape, t = shape_of(types[0]), types[1]
        assert isinstance(t, TensorType)
        if not isinstance(t.element_type, IntegerType):
            raise ShapeError(f"indices must be integers, got {t.element_type}")
        return shape, shape_of(t)


@irdl_op_definition
class GatherOp(IndexedOp):
    """numpy.take(x, indices, axis)."""

    name = "qnn.gather"
    axis = prop_def(IntegerAttr)
    PROPS: ClassVar[dict[str, object]] = {"axis": 0}

    @classmethod
    def infer(cls, types, props):
        shape, idx = cls.shapes(types)
        axis = norm_axis(get_int(props["axis"]), len(shape))
        return [like(types[0], shape[:axis] + idx + shape[axis + 1:])]


@irdl_op_definition
class GatherElementsOp(IndexedOp):
    """out[i][j][k] = x[indices[i][j][k]][j][k] along `axis` (ONNX GatherElements,
    torch.gather): the result has the indices' shape, which may be smaller than x's
    on the other axes. Negative indices count from the end."""

    name = "qnn.gather_elements"
    axis = prop_def(IntegerAttr)
    PROPS: ClassVar[dict[str, object]] = {"axis": 0}

    @classmethod
    def infer(cls, types, props):
        shape, idx = cls.shapes(types)
        axis = norm_axis(get_int(props["axis"]), len(shape))
        if len(idx) != len(shape):
            raise ShapeError(f"indices rank {len(idx)} != input rank {len(shape)}")
        if any(i > d for a, (i, d) in enumerate(zip(idx, shape, strict=True))
               if a != axis and DYN not in (i, d)):
            raise ShapeError(f"indices shape {idx} exceeds input shape {shape} off axis {axis}")
        return [like(types[0], idx)]


@irdl_op_definition
class GatherNdOp(IndexedOp):
    """ONNX GatherND: the last axis of `indices` addresses x's leading dims after the
    first `batch_dims` (shared by x and indices). Negative indices count from the end."""

    name = "qnn.gather_nd"
    batch_dims = prop_def(IntegerAttr)
    PROPS: ClassVar[dict[str, object]] = {"batch_dims": 0}

    @classmethod
    def infer(cls, types, props):
        shape, idx = cls.shapes(types)
        b = get_int(props["batch_dims"])
        if not idx or b < 0 or b >= min(len(shape), len(idx)):
            raise ShapeError(f"batch_dims {b} must be below the ranks of input {shape} and "
                             f"indices {idx}")
        if shape[:b] != idx[:b]:
            raise ShapeError(f"batch dims of input {shape} and indices {idx} differ")
        k = idx[-1]
        if k < 1 or b + k > len(shape):
            raise ShapeError(f"indices address {k} dims of input {shape} after {b} batch dims")
        return [like(types[0], idx[:-1] + shape[b + k:])]


@irdl_op_definition
class PadOp(QnnOp):
    """Pad with `pads` (all begins, then all ends); mode constant/reflect/edge."""

    name = "qnn.pad"
    input = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    pads = prop_def(DenseArrayBase)
    mode = prop_def(StringAttr)
    value = prop_def(FloatAttr)
    traits = traits_def(Pure(), Folds())
    PROPS: ClassVar[dict[str, object]] = {"pads": None, "mode": "constant", "value": 0.0}

    @classmethod
    def infer(cls, types, props):
        shape, pads = shape_of(types[0]), get_ints(props["pads"])
        r = len(shape)
        if len(pads) != 2 * r:
            raise ShapeError(f"pads has {len(pads)} values, expected {2 * r}")
        out = [DYN if d == DYN else d + pads[i] + pads[i + r] for i, d in enumerate(shape)]
        if any(0 > d != DYN for d in out):
            raise ShapeError(f"pads {pads} make a negative dimension")
        return [like(types[0], out)]


@irdl_op_definition
class ResizeOp(QnnOp):
    """Resize to the shape `sizes` with ONNX Resize semantics (opsets 10-19); a size
    -1 keeps the input's (symbolic) dim on an axis that is not resized.

    Any axis may be resized. `scales` (one per axis, as the model gave them) set the
    sampling coordinates when present, since ONNX samples at the given scale even
    when an output size is floor(in * scale); without them the scale is out / in.
    `roi` ([starts..., ends...], 2 * rank) is read by `tf_crop_and_resize`, which
    writes `extrapolation_value` where it samples outside the input. `antialias`
    widens the linear/cubic filter by 1 / scale when downsampling; `exclude_outside`
    drops (and renormalizes away) taps outside the input. Absent optional properties
    take the ONNX defaults.
    """

    name = "qnn.resize"
    input = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    sizes = prop_def(DenseArrayBase)
    mode = prop_def(StringAttr)
    coordinate_transformation_mode = prop_def(StringAttr)
    nearest_mode = prop_def(StringAttr)
    scales = opt_prop_def(DenseArrayBase)
    roi = opt_prop_def(DenseArrayBase)
    cubic_coeff_a = opt_prop_def(FloatAttr)
    exclude_outside = opt_prop_def(IntegerAttr)
    extrapolation_value = opt_prop_def(FloatAttr)
    antialias = opt_prop_def(IntegerAttr)
    traits = traits_def(Pure(), Folds())
    PROPS: ClassVar[dict[str, object]] = {
        "sizes": None, "mode": "nearest", "coordinate_transformation_mode": "half_pixel",
        "nearest_mode": "round_prefer_floor", "scales": None, "roi": None,
        "cubic_coeff_a": None, "exclude_outside": None, "extrapolation_value": None,
        "antialias": None}
    MODES: ClassVar[tuple[str, ...]] = ("nearest", "linear", "cubic")
    COORDINATE_MODES: ClassVar[tuple[str, ...]] = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel",
                        "align_corners", "asymmetric", "tf_crop_and_resize")
    NEAREST_MODES: ClassVar[tuple[str, ...]] = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")

    @classmethod
    def make(cls, *operands, name=None, **props):
        """As `QnnOp.make`; `scales` and `roi` may be float sequences (array<f64>)."""
        from xdsl.dialects.builtin import f64

        for key in ("scales", "roi"):
            value = props.get(key)
            if value is not None and not isinstance(value, Attribute):
                props[key] = DenseArrayBase.from_list(f64, [float(v) for v in value])
        return super().make(*operands, name=name, **props)

    @classmethod
    def infer(cls, types, props):
        shape, sizes = shape_of(types[0]), get_ints(props["sizes"])
        rank = len(shape)
        if len(sizes) != rank or any(d < -1 for d in sizes):
            raise ShapeError(f"sizes {list(sizes)} must be {rank} non-negative sizes (or -1: "
                             f"the input's dim) for input shape {fmt_shape(shape)}")
        sizes = tuple(shape[i] if d == -1 else d for i, d in enumerate(sizes))
        for key, allowed in (("mode", cls.MODES),
                             ("coordinate_transformation_mode", cls.COORDINATE_MODES),
                             ("nearest_mode", cls.NEAREST_MODES)):
            value = props.get(key)
            if isinstance(value, StringAttr) and value.data not in allowed:
                raise ShapeError(f"{key} '{value.data}' is not one of {', '.join(allowed)}")
        scales = cls.floats(props.get("scales"))
        if scales is not None:
            if len(scales) != rank:
                raise ShapeError(f"scales has {len(scales)} values, expected {rank}")
            if not all(s > 0 for s in scales):
                raise ShapeError(f"scales {list(scales)} must be positive")
        roi = cls.floats(props.get("roi"))
        if roi is not None and len(roi) != 2 * rank:
            raise ShapeError(f"roi has {len(roi)} values, expected {2 * rank}")
        return [like(types[0], sizes)]

    @staticmethod
    def floats(attr: Attribute | None) -> tuple[float, ...] | None:
        """The values of an optional float array property (`scales`, `roi`)."""
        if attr is None:
            return None
        assert isinstance(attr, DenseArrayBase)
        return tuple(float(v) for v in attr.get_values())


def reshaped(src: Sequence[int], dst: Sequence[int], copy: Sequence[int] = ()) -> list[int]:
    """The shape `src` reshapes into under `dst` (-1: from the element count; indices
    in `copy`: the input's dim). Symbolic where `src`'s symbolic dims leave it open."""
    out = list(dst)
    for i in copy:
        if not 0 <= i < min(len(src), len(dst)) or dst[i] != 0:
            raise ShapeError(f"copy_dims index {i} must be a dim of both shapes and 0 in "
                             f"shape {list(dst)}")
        out[i] = src[i]
    free = [i for i, d in enumerate(dst) if d == -1]
    if len(free) > 1 or any(d < -1 for d in dst):
        raise ShapeError(f"shape {list(dst)} may have one -1 and no other negative entry")
    # copied dims cancel out of the element count, symbolic or not
    src_rest = [d for i, d in enumerate(src) if i not in copy]
    known = [d for i, d in enumerate(out) if i not in free and i not in copy]
    if free and is_static(src_rest) and is_static(known):
        rest = _numel(known)
        if rest == 0 or _numel(src_rest) % rest:
            raise ShapeError(f"cannot reshape {fmt_shape(src)} into {list(dst)}")
        out[free[0]] = _numel(src_rest) // rest
    elif free:
        out[free[0]] = DYN
    if not free and is_static(src_rest) and is_static(known) \
            and _numel(src_rest) != _numel(known):
        raise ShapeError(f"cannot reshape {fmt_shape(src)} into {fmt_shape(out)}")
    return out


def broadcast_target(src: Sequence[int], dst: Sequence[int]) -> list[int]:
    """`dst` with each -1 replaced by the input's right-aligned dim."""
    out = list(dst)
    for i, d in enumerate(dst):
        j = i - len(dst) + len(src)
        if d == -1:
            if j < 0:
                raise ShapeError(f"shape {list(dst)} has -1 at {i}, where the input "
                                 f"{fmt_shape(src)} has no dim")
            out[i] = src[j]
        elif d < 0:
            raise ShapeError(f"shape {list(dst)} has a negative entry")
    return out


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
