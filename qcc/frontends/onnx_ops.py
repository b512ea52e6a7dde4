"""Lowerings of ONNX ops to qnn (layers, normalization, element-wise, reductions):
`LOWERINGS[op_type](node) -> value(s)`. Shape ops are in `onnx_shape_ops`.

Each function reads one ONNX node (`qcc.frontends.onnx.Node`) and emits qnn ops, or
returns a numpy array when the result is known at import (Shape, a Dropout mask).
Nodes whose inputs are all constants never get here: the importer folds them.
Attribute and input conventions follow the ONNX operator docs, by opset
(`node.version`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from xdsl.ir import SSAValue

from qcc import ir
from qcc.dialects import qnn
from qcc.frontends.errors import FrontendError
from qcc.frontends.onnx_node import Node, Value

Lowering = Callable[[Node], Value | Sequence[Value | None]]
LOWERINGS: dict[str, Lowering] = {}


def lowering(*op_types: str) -> Callable[[Lowering], Lowering]:
    def register(fn: Lowering) -> Lowering:
        for t in op_types:
            LOWERINGS[t] = fn
        return fn

    return register


def prod(values: Iterable[int]) -> int:
    return math.prod(int(v) for v in values)


def norm_axes(axes: Sequence[int] | np.ndarray, rank: int) -> tuple[int, ...]:
    return tuple(int(a) % rank if rank else 0 for a in axes)


def derived(n: Node, i: int, array: np.ndarray) -> SSAValue:
    """Input `i` as a graph value, replaced by `array` when the lowering changed it
    (the constant keeps the input's name, e.g. a transposed "fc.weight")."""
    if array is n.input(i):
        return n.value(i)
    return n.constant(array, n.proto.input[i])


def _unused_outputs(n: Node, *indices: int, why: str) -> None:
    for i in indices:
        if n.uses(i):
            raise FrontendError(f"output '{n.proto.output[i]}' is not supported: {why}")


# ------------------------------------------------------------- conv and pool


def _explicit_pads(n: Node, spatial: Sequence[int], kernel: Sequence[int],
                   strides: Sequence[int], dilations: Sequence[int]) -> tuple[int, ...]:
    """`pads`, with auto_pad SAME_UPPER / SAME_LOWER / VALID resolved."""
    auto = n.attr("auto_pad", "NOTSET")
    d = len(kernel)
    if auto in ("NOTSET", ""):
        return tuple(n.attr("pads", [0] * 2 * d))
    if auto == "VALID":
        return (0,) * 2 * d
    begins, ends = [], []
    for size, s, k, dl in zip(spatial, strides, kernel, dilations, strict=True):
        total = max((-(-size // s) - 1) * s + (k - 1) * dl + 1 - size, 0)
        small, big = total // 2, total - total // 2
        begins.append(small if auto == "SAME_UPPER" else big)
        ends.append(big if auto == "SAME_UPPER" else small)
    return (*begins, *ends)


def _window(n: Node, kernel: Sequence[int]) -> dict[str, Any]:
    d = len(kernel)
    strides = tuple(n.attr("strides", [1] * d))
    dilations = tuple(n.attr("dilations", [1] * d))
    pads = _explicit_pads(n, n.shape(0)[2:], kernel, strides, dilations)
    return {"strides": strides, "pads": pads, "dilations": dilations}


@lowering("Conv")
def conv(n: Node):
    kernel = n.attr("kernel_shape", n.shape(1)[2:])
    return n.emit(qnn.ConvOp, n.value(0), n.value(1), n.optional_value(2),
                  groups=n.attr("group", 1), **_window(n, kernel))


@lowering("ConvTranspose")
def conv_transpose(n: Node):
    x, w = n.shape(0), n.shape(1)
    d = len(w) - 2
    kernel = n.attr("kernel_shape", w[2:])
    strides = tuple(n.attr("strides", [1] * d))
    dilations = tuple(n.attr("dilations", [1] * d))
    out_pad = list(n.attr("output_padding", [0] * d))
    pads = list(n.attr("pads", [0] * 2 * d))
    auto = n.attr("auto_pad", "NOTSET")
    out_shape = n.attr("output_shape")
    if out_shape is None and auto in ("SAME_UPPER", "SAME_LOWER"):
        out_shape = [i * s for i, s in zip(x[2:], strides, strict=True)]
    if out_shape is not None:  # pads from the requested output size
        for i, (size, s, k, dl, o) in enumerate(
                zip(x[2:], strides, kernel, dilations, out_shape[-d:], strict=True)):
            total = s * (size - 1) + out_pad[i] + (k - 1) * dl + 1 - o
            if total < 0:  # larger than the natural size: extra rows at the end
                pads[i], pads[i + d], out_pad[i] = 0, 0, out_pad[i] - total
            elif auto == "SAME_UPPER":
                pads[i], pads[i + d] = total // 2, total - total // 2
            else:
                pads[i], pads[i + d] = total - total // 2, total // 2
    return n.emit(qnn.ConvTransposeOp, n.value(0), n.value(1), n.optional_value(2),
                  strides=strides, pads=tuple(pads), dilations=dilations,
                  output_padding=tuple(out_pad), groups=n.attr("group", 1))


def _pool_props(n: Node) -> dict:
    kernel = tuple(n.attr("kernel_shape"))
    return {"kernel": kernel, "ceil_mode": bool(n.attr("ceil_mode", 0)),
            **_window(n, kernel)}


@lowering("MaxPool")
def max_pool(n: Node):
    _unused_outputs(n, 1, why="qnn.max_pool has no indices output")
    return n.emit(qnn.MaxPoolOp, n.value(0), **_pool_props(n))


@lowering("AveragePool")
def average_pool(n: Node):
    props = _pool_props(n)
    if all(dl == 1 for dl in props["dilations"]):
        del props["dilations"]  # the common case prints without it
    return n.emit(qnn.AvgPoolOp, n.value(0),
                  count_include_pad=bool(n.attr("count_include_pad", 0)), **props)


@lowering("GlobalAveragePool")
def global_average_pool(n: Node):
    return n.emit(qnn.GlobalAvgPoolOp, n.value(0))


@lowering("GlobalMaxPool")
def global_max_pool(n: Node):
    return n.emit(qnn.ReduceMaxOp, n.value(0), axes=tuple(range(2, len(n.shape(0)))),
                  keepdims=True)


# ------------------------------------------------------------ dense / matmul


@lowering("Gemm")
def gemm(n: Node):
    """alpha * A' @ B' + beta * C: qnn.dense when B is a constant, else qnn.matmul."""
    alpha, beta = float(n.attr("alpha", 1.0)), float(n.attr("beta", 1.0))
    a = n.value(0)
    if n.attr("transA", 0):
        a = n.emit(qnn.TransposeOp, a, perm=(1, 0), suffix="/transA")
    b = n.input(1)
    if not isinstance(b, np.ndarray):
        return _gemm_activations(n, a, alpha, beta)
    weight = b if n.attr("transB", 0) else b.T  # dense wants [out, in]
    if alpha != 1.0:
        weight = (weight * alpha).astype(b.dtype)
    bias, rest = _gemm_bias(n, beta, weight.shape[0])
    y = n.emit(qnn.DenseOp, a, derived(n, 1, weight), bias)
    return y if rest is None else n.emit(qnn.AddOp, y, rest, suffix="/C")


def _gemm_bias(n: Node, beta: float, out_features: int):
    """(bias operand of qnn.dense, value still to add) for Gemm's C."""
    if not n.has(2):
        return None, None
    c = n.input(2)
    if not isinstance(c, np.ndarray):
        return None, _scaled(n, n.value(2), beta, c_dtype=n.dtype(2))
    scaled = c if beta == 1.0 else (c * beta).astype(c.dtype)
    if c.size in (1, out_features) and c.shape in ((), (1,), (out_features,),
                                                   (1, out_features), (1, 1)):
        return derived(n, 2, np.broadcast_to(scaled, (out_features,)).copy()
                        if scaled.shape != (out_features,) else scaled), None
    return None, derived(n, 2, scaled)


def _scaled(n: Node, v: SSAValue, factor: float, c_dtype: np.dtype) -> SSAValue:
    if factor == 1.0:
        return v
    k = n.constant(np.array(factor, c_dtype), f"{n.name}.scale")
    return n.emit(qnn.MulOp, v, k, suffix="/scale")


def _gemm_activations(n: Node, a: SSAValue, alpha: float, beta: float) -> SSAValue:
    b = n.value(1)
    if n.attr("transB", 0):
        b = n.emit(qnn.TransposeOp, b, perm=(1, 0), suffix="/transB")
    y = _scaled(n, n.emit(qnn.MatmulOp, a, b), alpha, n.dtype(0))
    if not n.has(2):
        return y
    c = _scaled(n, n.value(2), beta, n.dtype(2))
    return n.emit(qnn.AddOp, y, c, suffix="/C")


@lowering("MatMul")
def matmul(n: Node):
    b = n.input(1)
    if isinstance(b, np.ndarray) and b.ndim == 2:
        return n.emit(qnn.DenseOp, n.value(0), derived(n, 1, np.ascontiguousarray(b.T)))
    return n.emit(qnn.MatmulOp, n.value(0), n.value(1))


# ------------------------------------------------------------- normalization


@lowering("BatchNormalization")
def batch_norm(n: Node):
    if n.attr("training_mode", 0):
        return _batch_norm_training(n)
    _unused_outputs(n, 1, 2, 3, 4, why="batch statistics exist only in training")
    return n.emit(qnn.BatchNormOp, *(n.value(i) for i in range(5)),
                  epsilon=float(n.attr("epsilon", 1e-5)))


def _batch_norm_training(n: Node):
    """Training mode: normalize with the batch's statistics (population variance) and
    return the updated running mean and variance, as ONNX's reference does."""
    x = n.value(0)
    rank = len(n.shape(0))
    axes = (0, *range(2, rank))
    mean = n.emit(qnn.ReduceMeanOp, x, axes=axes, keepdims=False, suffix="/mean")
    mean_b = n.emit(qnn.ReshapeOp, mean, shape=(1, n.shape(0)[1], *([1] * (rank - 2))),
                    suffix="/mean_b")
    centered = n.emit(qnn.SubOp, x, mean_b, suffix="/centered")
    var = n.emit(qnn.ReduceMeanOp, n.emit(qnn.MulOp, centered, centered, suffix="/sq"),
                 axes=axes, keepdims=False, suffix="/var")
    y = n.emit(qnn.BatchNormOp, x, n.value(1), n.value(2), mean, var,
               epsilon=float(n.attr("epsilon", 1e-5)))
    momentum = np.float32(n.attr("momentum", 0.9))
    dtype = n.dtype(0)

    def running(i: int, batch: SSAValue, tag: str) -> SSAValue:
        kept = n.emit(qnn.MulOp, n.value(i), n.constant(np.array(momentum, dtype).reshape(1),
                                                         f"{tag}_momentum"), suffix=f"/{tag}_kept")
        new = n.emit(qnn.MulOp, batch, n.constant(np.array(1 - momentum, dtype).reshape(1),
                                                  f"{tag}_1m"), suffix=f"/{tag}_new")
        return n.emit(qnn.AddOp, kept, new, suffix=f"/{tag}")

    outs = [y]
    if len(n.proto.output) > 1 and n.proto.output[1]:
        outs.append(running(3, mean, "running_mean"))
    if len(n.proto.output) > 2 and n.proto.output[2]:
        outs.append(running(4, var, "running_var"))
    return outs


@lowering("LayerNormalization")
def layer_norm(n: Node):
    x = n.shape(0)
    axis = n.attr("axis", -1) % len(x)
    eps = float(n.attr("epsilon", 1e-5))
    params = [_broadcast(n, i, x[axis:]) for i in (1, 2) if n.has(i)]
    y = n.emit(qnn.LayerNormOp, n.value(0), *params, axis=axis, epsilon=eps)
    if not (n.uses(1) or n.uses(2)):
        return y
    return [y, *_moments(n, tuple(range(axis, len(x))), eps)]


def _moments(n: Node, axes: tuple[int, ...], eps: float) -> list[SSAValue]:
    """LayerNormalization's optional outputs: mean and 1 / sqrt(var + eps) over `axes`."""
    mean = n.emit(qnn.ReduceMeanOp, n.value(0), axes=axes, suffix="/mean")
    d = n.emit(qnn.SubOp, n.value(0), mean, suffix="/centered")
    var = n.emit(qnn.ReduceMeanOp, n.emit(qnn.MulOp, d, d, suffix="/square"), axes=axes,
                 suffix="/var")
    eps_value = n.constant(np.array(eps, n.dtype(0)), f"{n.name}.epsilon")
    std = n.emit(qnn.SqrtOp, n.emit(qnn.AddOp, var, eps_value, suffix="/var_eps"),
                 suffix="/std")
    return [mean, n.emit(qnn.ReciprocalOp, std, suffix="/inv_std_dev")]


def _broadcast(n: Node, i: int, shape: Sequence[int]) -> SSAValue:
    """Input `i` broadcast to `shape` (in numpy when constant)."""
    v = n.input(i)
    if tuple(n.shape(i)) == tuple(shape):
        return n.value(i)
    if isinstance(v, np.ndarray):
        return n.constant(np.broadcast_to(v, shape).copy(), n.proto.input[i])
    return n.emit(qnn.BroadcastOp, v, shape=tuple(shape), suffix=f"/broadcast{i}")


@lowering("InstanceNormalization")
def instance_norm(n: Node):
    """Normalize each (sample, channel) over its spatial dims: qnn.layer_norm from
    axis 2 (unit scale), then the per-channel scale and bias as qnn.scale. GroupNorm
    exports as a reshape to [N, groups, -1], this op with unit scale and zero bias
    (then no qnn.scale), and a reshape back."""
    x = n.shape(0)
    if len(x) < 3:
        raise FrontendError(f"input rank {len(x)} has no spatial dims (needs rank >= 3)")
    ones = n.constant(np.ones(x[2:], n.dtype(0)), f"{n.name}.unit_scale")
    y = n.emit(qnn.LayerNormOp, n.value(0), ones, axis=2,
               epsilon=float(n.attr("epsilon", 1e-5)), suffix="/normalize")
    scale, bias = n.input(1), n.input(2)
    if (isinstance(scale, np.ndarray) and isinstance(bias, np.ndarray)
            and (scale == 1).all() and (bias == 0).all()):
        return y
    return n.emit(qnn.ScaleOp, y, n.value(1), n.value(2), axis=1)


@lowering("Softmax")
def softmax(n: Node):
    x = n.shape(0)
    if n.version >= 13:
        return n.emit(qnn.SoftmaxOp, n.value(0), axis=n.attr("axis", -1) % len(x))
    axis = n.attr("axis", 1) % len(x)  # opset < 13: coerced to 2-D at axis
    if axis == len(x) - 1:
        return n.emit(qnn.SoftmaxOp, n.value(0), axis=axis)
    flat = n.emit(qnn.ReshapeOp, n.value(0), shape=(prod(x[:axis]), prod(x[axis:])),
                  suffix="/flatten")
    y = n.emit(qnn.SoftmaxOp, flat, axis=1)
    return n.emit(qnn.ReshapeOp, y, shape=x, suffix="/unflatten")


@lowering("LRN")
def lrn(n: Node):
    return n.emit(qnn.LrnOp, n.value(0), size=n.attr("size"),
                  alpha=float(n.attr("alpha", 1e-4)), beta=float(n.attr("beta", 0.75)),
                  bias=float(n.attr("bias", 1.0)))


# ---------------------------------------------------------------- activations

UNARY = {
    "Relu": qnn.ReluOp, "Sigmoid": qnn.SigmoidOp, "Tanh": qnn.TanhOp, "Erf": qnn.ErfOp,
    "HardSwish": qnn.HardSwishOp, "Sqrt": qnn.SqrtOp, "Exp": qnn.ExpOp, "Log": qnn.LogOp,
    "Abs": qnn.AbsOp, "Neg": qnn.NegOp, "Reciprocal": qnn.ReciprocalOp,
    "Floor": qnn.FloorOp, "Not": qnn.NotOp, "Identity": qnn.IdentityOp,
}


def _unary(cls: type) -> Lowering:
    return lambda n: n.emit(cls, n.value(0))


_cls: type
for _op_type, _cls in UNARY.items():
    LOWERINGS[_op_type] = _unary(_cls)


@lowering("Clip")
def clip(n: Node):
    if n.version < 11:
        lo, hi = n.attr("min"), n.attr("max")
    else:
        lo, hi = (n.optional_array(i) for i in (1, 2))
    dtype = n.dtype(0)
    info = np.finfo(dtype) if np.issubdtype(dtype, np.floating) else np.iinfo(dtype)
    low = -math.inf if np.issubdtype(dtype, np.floating) else info.min
    high = math.inf if np.issubdtype(dtype, np.floating) else info.max
    return n.emit(qnn.ClipOp, n.value(0), min=float(low if lo is None else lo),
                  max=float(high if hi is None else hi))


@lowering("LeakyRelu")
def leaky_relu(n: Node):
    return n.emit(qnn.LeakyReluOp, n.value(0), alpha=float(n.attr("alpha", 0.01)))


@lowering("HardSigmoid")
def hard_sigmoid(n: Node):
    return n.emit(qnn.HardSigmoidOp, n.value(0), alpha=float(n.attr("alpha", 0.2)),
                  beta=float(n.attr("beta", 0.5)))


@lowering("Gelu")
def gelu(n: Node):
    return n.emit(qnn.GeluOp, n.value(0), approximate=n.attr("approximate", "none"))


@lowering("PRelu")
def prelu(n: Node):
    return n.emit(qnn.PreluOp, n.value(0), n.value(1))


@lowering("IsNaN")
def is_nan(n: Node):
    same = n.emit(qnn.EqualOp, n.value(0), n.value(0), suffix="/eq")
    return n.emit(qnn.NotOp, same)


# -------------------------------------------------------------- element-wise

BINARY = {
    "Add": qnn.AddOp, "Sub": qnn.SubOp, "Mul": qnn.MulOp, "Div": qnn.DivOp,
    "And": qnn.AndOp, "Or": qnn.OrOp, "Equal": qnn.EqualOp, "Less": qnn.LessOp,
    "Greater": qnn.GreaterOp,
}


def _binary(cls: type) -> Lowering:
    return lambda n: n.emit(cls, n.value(0), n.value(1))


for _op_type, _cls in BINARY.items():
    LOWERINGS[_op_type] = _binary(_cls)


@lowering("Pow")
def power(n: Node):
    """The exponent may have another element type (opset >= 12): cast it to the base's."""
    dtype = n.dtype(0)
    exponent = n.input(1)
    if n.dtype(1) == dtype:
        return n.emit(qnn.PowOp, n.value(0), n.value(1))
    if isinstance(exponent, np.ndarray):
        e = n.constant(exponent.astype(dtype), n.proto.input[1])
    else:
        e = n.emit(qnn.CastOp, exponent, to=ir.element_type(dtype), suffix="/cast")
    return n.emit(qnn.PowOp, n.value(0), e)


def _variadic(cls: type, mean: bool = False) -> Lowering:
    """Sum / Min / Max / Mean of any number of inputs as a chain of binary ops."""

    def lower(n: Node):
        values = [n.value(i) for i in range(len(n.proto.input)) if n.has(i)]
        y = values[0]
        for i, v in enumerate(values[1:]):
            y = n.emit(cls, y, v, suffix=f"/{i}" if i else "")
        if mean and len(values) > 1:
            count = n.constant(np.array(len(values), n.dtype(0)), f"{n.name}.count")
            y = n.emit(qnn.DivOp, y, count, suffix="/mean")
        return y

    return lower


LOWERINGS["Sum"] = _variadic(qnn.AddOp)
LOWERINGS["Min"] = _variadic(qnn.MinOp)
LOWERINGS["Max"] = _variadic(qnn.MaxOp)
LOWERINGS["Mean"] = _variadic(qnn.AddOp, mean=True)


@lowering("Where")
def where(n: Node):
    return n.emit(qnn.WhereOp, n.value(0), n.value(1), n.value(2))


@lowering("Cast", "CastLike")
def cast(n: Node):
    if n.op_type == "CastLike":
        dtype = n.dtype(1)
    else:
        from onnx import helper

        dtype = helper.tensor_dtype_to_np_dtype(n.attr("to"))
    try:
        to = ir.element_type(dtype)
    except TypeError:
        raise FrontendError(f"qnn has no element type for {dtype}") from None
    float8 = np.dtype(dtype).name.startswith("float8") and "e8m0" not in np.dtype(dtype).name
    saturate = bool(n.attr("saturate", 1)) if float8 else None
    return n.emit(qnn.CastOp, n.value(0), to=to, saturate=saturate)


# ---------------------------------------------------------------- reductions


def _reduce(cls: type, axes_input_since: int, squared: bool = False,
            root: bool = False) -> Lowering:
    """axes are an attribute before `axes_input_since`, an optional input from then.
    `squared` reduces x * x (ReduceSumSquare, ReduceL2); `root` takes the square root
    of the result (ReduceL2)."""

    def lower(n: Node):
        if squared:
            x = n.emit(qnn.MulOp, n.value(0), n.value(0), suffix="/square")
            reduced = _reduce_axes(n, cls, axes_input_since, x, suffix="/sum" if root else "")
            return n.emit(qnn.SqrtOp, reduced) if root else reduced
        return _reduce_axes(n, cls, axes_input_since, n.value(0))

    return lower


def _reduce_axes(n: Node, cls: type, axes_input_since: int, x: SSAValue, suffix: str = ""):
    if n.version >= axes_input_since:
        axes_array = n.optional_array(1)
        axes = [] if axes_array is None else axes_array.tolist()
    else:
        axes = n.attr("axes", [])
    if not axes and n.attr("noop_with_empty_axes", 0):
        return n.emit(qnn.IdentityOp, x, suffix=suffix)
    return n.emit(cls, x, axes=norm_axes(axes, len(n.shape(0))),
                  keepdims=bool(n.attr("keepdims", 1)), suffix=suffix)


@lowering("CumSum")
def cumsum(n: Node):
    axis = int(n.array(1).reshape(-1)[0])
    return n.emit(qnn.CumSumOp, n.value(0), axis=axis % len(n.shape(0)),
                  exclusive=bool(n.attr("exclusive", 0)), reverse=bool(n.attr("reverse", 0)))


@lowering("ArgMax")
def argmax(n: Node):
    return _argmax(n, n.value(0))


@lowering("ArgMin")
def argmin(n: Node):
    """ArgMin(x) = ArgMax(-x); only exact for float inputs (-x of an integer can wrap)."""
    if not np.issubdtype(n.dtype(0), np.floating):
        raise FrontendError(f"ArgMin of {n.dtype(0)} inputs is not supported (float only)")
    return _argmax(n, n.emit(qnn.NegOp, n.value(0), suffix="/neg"))


def _argmax(n: Node, x):
    return n.emit(qnn.ArgMaxOp, x, axis=int(n.attr("axis", 0)),
                  keepdims=bool(n.attr("keepdims", 1)),
                  select_last_index=bool(n.attr("select_last_index", 0)))


LOWERINGS["ReduceSum"] = _reduce(qnn.ReduceSumOp, 13)
LOWERINGS["ReduceMean"] = _reduce(qnn.ReduceMeanOp, 18)
LOWERINGS["ReduceMax"] = _reduce(qnn.ReduceMaxOp, 18)
LOWERINGS["ReduceMin"] = _reduce(qnn.ReduceMinOp, 18)
LOWERINGS["ReduceSumSquare"] = _reduce(qnn.ReduceSumOp, 18, squared=True)
LOWERINGS["ReduceL2"] = _reduce(qnn.ReduceSumOp, 18, squared=True, root=True)
