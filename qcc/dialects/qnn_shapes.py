"""Shape rules of the qnn layer ops. Each function raises `ShapeError` naming the
rule an operand or property breaks."""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects.builtin import TensorType
from xdsl.ir import Attribute

from qcc.dialects.base import (
    DYN,
    ShapeError,
    broadcast_shapes,
    dims_match,
    fmt_shape,
    get_int,
    get_ints,
    like,
    norm_axis,
    shape_of,
    shapes_match,
    static_shape_of,
)
from qcc.dialects.quant_types import UniformQuantizedType, quantized_element


def _check_len(name: str, values: Sequence[int], n: int) -> None:
    if len(values) != n:
        raise ShapeError(f"{name} has {len(values)} values, expected {n}")


def conv(types: Sequence[Attribute], props: dict[str, Attribute], transpose: bool):
    """Output type of conv / conv_transpose; checks weight against input and attrs.
    A symbolic batch or spatial dim of the input gives a symbolic output dim."""
    x, w = shape_of(types[0]), static_shape_of(types[1], "the weight")
    d = len(w) - 2
    if not 1 <= d <= 3:
        raise ShapeError(f"weight must have 1 to 3 spatial dims, got shape {w}")
    if len(x) != d + 2:
        raise ShapeError(f"input rank {len(x)} does not match weight rank {len(w)}")
    strides, pads = get_ints(props.get("strides")), get_ints(props.get("pads"))
    dil = get_ints(props.get("dilations"))
    groups = get_int(props.get("groups"), 1)
    for name, vals, n in (("strides", strides, d), ("pads", pads, 2 * d),
                          ("dilations", dil, d)):
        _check_len(name, vals, n)
    if any(s < 1 for s in strides) or any(v < 1 for v in dil) or any(p < 0 for p in pads):
        raise ShapeError("strides and dilations must be >= 1 and pads >= 0")
    if groups < 1:
        raise ShapeError(f"groups must be >= 1, got {groups}")
    k = w[2:]
    if transpose:
        if not dims_match(x[1], w[0]):
            raise ShapeError(f"input channels {x[1]} != weight dim 0 ({w[0]})")
        if w[0] % groups:
            raise ShapeError(f"input channels {x[1]} not divisible by groups {groups}")
        cout = w[1] * groups
        opad = get_ints(props.get("output_padding"), (0,) * d)
        _check_len("output_padding", opad, d)
        spatial = [DYN if i == DYN else s * (i - 1) + op + (kk - 1) * dl + 1 - pb - pe
                   for i, s, op, kk, dl, pb, pe
                   in zip(x[2:], strides, opad, k, dil, pads[:d], pads[d:], strict=True)]
    else:
        if not dims_match(x[1], w[1] * groups):
            raise ShapeError(
                f"input channels {x[1]} != weight dim 1 ({w[1]}) x groups ({groups})")
        if w[0] % groups:
            raise ShapeError(f"output channels {w[0]} not divisible by groups {groups}")
        cout = w[0]
        spatial = [DYN if i == DYN else (i + pb + pe - (kk - 1) * dl - 1) // s + 1
                   for i, s, kk, dl, pb, pe
                   in zip(x[2:], strides, k, dil, pads[:d], pads[d:], strict=True)]
    if any(1 > s != DYN for s in spatial):
        raise ShapeError(f"output spatial size {spatial} is empty")
    _check_bias(types, cout)
    return like(types[0], [x[0], cout, *spatial])


def _check_bias(types: Sequence[Attribute], cout: int) -> None:
    if len(types) > 2 and shape_of(types[2]) != (cout,):
        raise ShapeError(f"bias shape {shape_of(types[2])} must be ({cout},)")


def dense(types: Sequence[Attribute]) -> TensorType:
    x, w = shape_of(types[0]), static_shape_of(types[1], "the weight")
    if len(w) != 2:
        raise ShapeError(f"weight must be [out_features, in_features], got {w}")
    if not x or not dims_match(x[-1], w[1]):
        raise ShapeError(f"in_features {x[-1] if x else None} != weight dim 1 ({w[1]})")
    _check_bias(types, w[0])
    return like(types[0], [*x[:-1], w[0]])


def matmul(types: Sequence[Attribute]) -> TensorType:
    a, b = shape_of(types[0]), shape_of(types[1])
    if len(a) < 1 or len(b) < 1:
        raise ShapeError("matmul operands must have rank >= 1")
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    if not dims_match(a2[-1], b2[-2]):
        raise ShapeError(f"contracting dims differ: {fmt_shape(a)} @ {fmt_shape(b)}")
    batch = broadcast_shapes(a2[:-2], b2[:-2])
    out = [*batch, a2[-2], b2[-1]]
    if len(a) == 1:
        out.pop(-2)
    if len(b) == 1:
        out.pop(-1)
    return like(types[0], out)


def pool(t: Attribute, props: dict[str, Attribute]) -> TensorType:
    x = shape_of(t)
    kernel = get_ints(props.get("kernel"))
    d = len(kernel)
    if len(x) != d + 2:
        raise ShapeError(f"input rank {len(x)} does not match a {d}-d kernel")
    strides, pads = get_ints(props.get("strides")), get_ints(props.get("pads"))
    dil = get_ints(props.get("dilations"), (1,) * d)
    _check_len("strides", strides, d)
    _check_len("pads", pads, 2 * d)
    ceil = get_int(props.get("ceil_mode")) != 0
    out = []
    for i, (n, k, s, dl) in enumerate(zip(x[2:], kernel, strides, dil, strict=True)):
        pb, pe = pads[i], pads[i + d]
        if n == DYN:
            out.append(DYN)
            continue
        span = n + pb + pe - (k - 1) * dl - 1
        o = (-(-span // s) if ceil else span // s) + 1
        if ceil and (o - 1) * s >= n + pb:  # last window must start inside input/left pad
            o -= 1
        out.append(o)
    if any(1 > o != DYN for o in out):
        raise ShapeError(f"output spatial size {out} is empty")
    return like(t, [*x[:2], *out])


def per_channel(types: Sequence[Attribute], names: Sequence[str], axis: int = 1):
    x = shape_of(types[0])
    axis = norm_axis(axis, len(x))
    c = x[axis]
    for name, t in zip(names, types[1:], strict=False):
        if not shapes_match(shape_of(t), (c,)):
            raise ShapeError(f"{name} has shape {shape_of(t)}, expected ({c},) channels")
    return types[0]


def concat(types: Sequence[Attribute], axis: int) -> TensorType:
    if not types:
        raise ShapeError("concat needs at least one input")
    first = shape_of(types[0])
    axis = norm_axis(axis, len(first))
    total = 0
    out = list(first)
    for t in types:
        s = shape_of(t)
        if len(s) != len(first) or not shapes_match(s[:axis] + s[axis + 1:],
                                                    first[:axis] + first[axis + 1:]):
            raise ShapeError(f"shapes {fmt_shape(first)} and {fmt_shape(s)} differ outside "
                             f"axis {axis}")
        out = [d if d != DYN else e for d, e in zip(out, s, strict=True)]
        total = DYN if DYN in (total, s[axis]) else total + s[axis]
    out[axis] = total
    return like(types[0], out)


SLICE_END = 2**62
"""Slice bounds at or past this (and at or before -SLICE_END) mean "to the end" of a
symbolic dim, as numpy reads an out-of-range bound."""


def slice_(t: Attribute, starts, ends, axes, steps) -> TensorType:
    shape = list(shape_of(t))
    n = len(starts)
    for name, v in (("ends", ends), ("axes", axes), ("steps", steps)):
        _check_len(name, v, n)
    for st, en, ax, sp in zip(starts, ends, axes, steps, strict=True):
        ax = norm_axis(ax, len(shape))
        if sp == 0:
            raise ShapeError("slice step must not be 0")
        if shape[ax] != DYN:
            shape[ax] = len(range(*slice(st, en, sp).indices(shape[ax])))
        elif sp > 0 and 0 <= st and 0 <= en < SLICE_END:
            # bounds from the start: the size holds for any dim >= en (as MLIR's static
            # slice sizes, the run time checks it)
            shape[ax] = max(0, -(-(en - st) // sp))
    return like(t, shape)


# ------------------------------------------------------ integer (quantized) layers


def integer_layer(out: TensorType, types: Sequence[Attribute], weight_axis: int | None,
                  channel_axis: int, groups: int = 1) -> TensorType:
    """Result type of a layer whose operands may be quantized (`qcc-realize-int8`).

    All float: `out` unchanged. Otherwise the input(s) and the weight must all be
    quantized: the input per-tensor, the weight per-tensor or per-axis on
    `weight_axis` (the output-channel axis of the weight; a conv_transpose weight
    holds O/groups of them, repeated for every group). The result is the i32
    accumulator `!quant.uniform<i32:f32[:channel_axis], {s_x * s_w[c]:0, ...}>`,
    per-axis on `channel_axis` of the output when the weight is per-axis. A bias,
    if any, must be i32 with exactly these scales and zero points 0.
    """
    qs = [quantized_element(t) for t in types[:2]]
    if all(q is None for q in qs) and (len(types) < 3 or quantized_element(types[2]) is None):
        return out
    x, w = qs
    if x is None or w is None:
        raise ShapeError("the input and the weight must both be quantized or both be "
                         f"float, got {types[0]} and {types[1]}")
    if x.axis is not None:
        raise ShapeError(f"a quantized input must be per-tensor, got {x}")
    if w.axis is not None and w.axis != weight_axis:
        raise ShapeError(f"a per-axis weight must be quantized on axis {weight_axis}, "
                         f"got {w}")
    if x.expressed_type != w.expressed_type:
        raise ShapeError(f"expressed types differ: {x.expressed_type} and {w.expressed_type}")
    scales = [x.scale * s for s in w.scales] * (groups if w.axis is not None else 1)
    acc = _accumulator(x, scales, None if w.axis is None else channel_axis)
    if len(types) > 2:
        _check_bias_type(types[2], acc)
    return tensor_of(out, acc)


def integer_matmul(out: TensorType, types: Sequence[Attribute]) -> TensorType:
    """Result type of `qnn.matmul`: both operands float (unchanged) or both quantized
    per-tensor, giving the per-tensor i32 accumulator of scale s_a * s_b."""
    a, b = (quantized_element(t) for t in types)
    if a is None and b is None:
        return out
    if a is None or b is None:
        raise ShapeError(f"both operands must be quantized or both float, got {types[0]} "
                         f"and {types[1]}")
    if a.axis is not None or b.axis is not None:
        raise ShapeError(f"quantized matmul operands must be per-tensor, got {a} and {b}")
    return tensor_of(out, _accumulator(a, [a.scale * b.scale], None))


def integer_pool(out: TensorType) -> TensorType:
    """A quantized `qnn.avg_pool` returns its input's quantized type; a per-axis type
    must be on the batch or channel axis (the spatial ones change size)."""
    q = quantized_element(out)
    if q is not None and q.axis is not None and q.axis > 1:
        raise ShapeError(f"a pooled per-axis type must be on axis 0 or 1, got {q}")
    return out


def tensor_of(t: TensorType, element_type: Attribute) -> TensorType:
    return TensorType(element_type, list(t.get_shape()))


def _accumulator(x, scales: Sequence[float], axis: int | None):
    if axis is None:
        return UniformQuantizedType.make(scale=scales[0], bits=32,
                                         expressed_type=x.expressed_type)
    return UniformQuantizedType.make_per_axis(axis=axis, scales=scales, bits=32,
                                              expressed_type=x.expressed_type)


def _check_bias_type(t: Attribute, acc) -> None:
    b = quantized_element(t)
    if b is None or b.bits != 32 or not b.signed:
        raise ShapeError(f"the bias of a quantized layer must be i32, got {t}")
    if (b.axis is None) != (acc.axis is None) or (b.axis is not None and b.axis != 0):
        want = "per-tensor" if acc.axis is None else "per-axis on axis 0"
        raise ShapeError(f"the bias must be {want} like the accumulator {acc}, got {b}")
    if any(b.zero_points) or len(b.scales) != len(acc.scales) or any(
            abs(s - a) > 1e-6 * a for s, a in zip(b.scales, acc.scales, strict=True)):
        raise ShapeError(f"the bias scales must be input scale x weight scales with zero "
                         f"points 0 ({acc}), got {b}")
