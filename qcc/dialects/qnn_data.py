"""Data-movement ops of the `qnn` dialect: reshape, transpose, broadcast, concat,
split, slice, gather, pad, resize. Re-exported by `qcc.dialects.qnn`."""

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
    QnnOp,
    ShapeError,
    broadcast_shapes,
    get_int,
    get_ints,
    like,
    norm_axis,
    shape_of,
)
from qcc.dialects.qnn_eval import Folds

AnyTensor = TensorType


# ---------------------------------------------------------------------- shape


@irdl_op_definition
class ReshapeOp(QnnOp):
    """Reshape to a static `shape` (same number of elements)."""

    name = "qnn.reshape"
    input = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    shape = prop_def(DenseArrayBase)
    traits = traits_def(Pure(), Folds())
    PROPS: ClassVar[dict[str, object]] = {"shape": None}

    @classmethod
    def infer(cls, types, props):
        src, dst = shape_of(types[0]), get_ints(props["shape"])
        if any(d < 0 for d in dst) or _numel(src) != _numel(dst):
            raise ShapeError(f"cannot reshape {src} into {dst}")
        return [like(types[0], dst)]


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
    """Broadcast to `shape` (ONNX Expand, numpy rules)."""

    name = "qnn.broadcast"
    input = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    shape = prop_def(DenseArrayBase)
    traits = traits_def(Pure(), Folds())
    PROPS: ClassVar[dict[str, object]] = {"shape": None}

    @classmethod
    def infer(cls, types, props):
        out = broadcast_shapes(shape_of(types[0]), get_ints(props["shape"]))
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
        if sum(sizes) != shape[axis] or any(s < 0 for s in sizes):
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


@irdl_op_definition
class GatherOp(QnnOp):
    """numpy.take(x, indices, axis)."""

    name = "qnn.gather"
    input = operand_def(AnyTensor)
    indices = operand_def(AnyTensor)
    output = result_def(AnyTensor)
    axis = prop_def(IntegerAttr)
    traits = traits_def(Pure(), Folds())
    PROPS: ClassVar[dict[str, object]] = {"axis": 0}

    @classmethod
    def infer(cls, types, props):
        shape = shape_of(types[0])
        idx_t = types[1]
        assert isinstance(idx_t, TensorType)
        if not isinstance(idx_t.element_type, IntegerType):
            raise ShapeError(f"indices must be integers, got {idx_t.element_type}")
        axis = norm_axis(get_int(props["axis"]), len(shape))
        return [like(types[0], shape[:axis] + shape_of(idx_t) + shape[axis + 1:])]


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
        out = [d + pads[i] + pads[i + r] for i, d in enumerate(shape)]
        if any(d < 0 for d in out):
            raise ShapeError(f"pads {pads} make a negative dimension")
        return [like(types[0], out)]


@irdl_op_definition
class ResizeOp(QnnOp):
    """Resize to the static shape `sizes` with ONNX Resize semantics (opsets 10-19).

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
        if len(sizes) != rank or any(d < 0 for d in sizes):
            raise ShapeError(f"sizes {list(sizes)} must be {rank} non-negative sizes for "
                             f"input shape {shape}")
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


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
