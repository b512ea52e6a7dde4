"""TensorFlow op -> ONNX nodes (lowered to qnn at once by the ONNX frontend's
lowerings): `TRANSLATIONS[op](node) -> Tensor | [Tensor, ...]`.

Conventions: attributes and inputs as in TensorFlow's raw ops (tf.raw_ops docs);
channels-last values that pass through a convolution or pool come back transposed to
channels-first (`Tensor.perm`), and element-wise ops keep that layout.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qcc.frontends.errors import FrontendError
from qcc.frontends.tensorflow import graphdef as gd
from qcc.frontends.tensorflow.node import NCHW, Node, Tensor, in_order, translation

# ------------------------------------------------------------ pass-through


@translation("Const")
def const(n: Node):
    value = n.attr("value")
    if not isinstance(value, np.ndarray):
        raise FrontendError("Const without a tensor value")
    name = n.name
    n.imp.onnx.values[name] = value
    return Tensor(name)


@translation("Identity", "StopGradient", "Snapshot", "PreventGradient", "PlaceholderWithDefault",
             "EnsureShape", "CheckNumerics")
def identity(n: Node):
    return n.value(0)


@translation("IdentityN")
def identity_n(n: Node):
    return [n.value(i) for i in range(len(n.inputs))]


@translation("NoOp")
def no_op(n: Node):
    return None


# ------------------------------------------------------------ element-wise

_UNARY = {"Relu": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Neg": "Neg", "Exp": "Exp",
          "Log": "Log", "Abs": "Abs", "Sqrt": "Sqrt", "Erf": "Erf", "Reciprocal": "Reciprocal",
          "Inv": "Reciprocal", "Floor": "Floor"}


@translation(*_UNARY)
def unary(n: Node):
    v = n.value(0)
    return Tensor(n.emit(_UNARY[n.op], [v.name])[0], v.perm)


@translation("Rsqrt")
def rsqrt(n: Node):
    v = n.value(0)
    s = n.emit("Sqrt", [v.name], "/sqrt")[0]
    return Tensor(n.emit("Reciprocal", [s])[0], v.perm)


@translation("Square")
def square(n: Node):
    v = n.value(0)
    return Tensor(n.emit("Mul", [v.name, v.name])[0], v.perm)


@translation("Erfc")
def erfc(n: Node):
    v = n.value(0)
    e = n.emit("Erf", [v.name], "/erf")[0]
    return Tensor(n.emit("Sub", [n.const(np.float32(1)), e])[0], v.perm)


@translation("Relu6")
def relu6(n: Node):
    v = n.value(0)
    return Tensor(n.emit("Clip", [v.name, n.const(np.float32(0), "/min"),
                                  n.const(np.float32(6), "/max")])[0], v.perm)


@translation("LeakyRelu")
def leaky_relu(n: Node):
    v = n.value(0)
    return Tensor(n.emit("LeakyRelu", [v.name], alpha=float(n.attr("alpha", 0.2)))[0], v.perm)


@translation("Elu", "Selu")
def elu(n: Node):
    # elu(x) = relu(x) + alpha (exp(min(x, 0)) - 1); selu scales both parts
    alpha, scale = (1.0, 1.0) if n.op == "Elu" else (1.6732632423543772, 1.0507009873554805)
    v = n.value(0)
    pos = n.emit("Relu", [v.name], "/pos")[0]
    neg = n.emit("Min", [v.name, n.const(np.float32(0), "/zero")], "/neg")[0]
    ex = n.emit("Exp", [neg], "/exp")[0]
    em1 = n.emit("Sub", [ex, n.const(np.float32(1), "/one")], "/expm1")[0]
    scaled = n.emit("Mul", [em1, n.const(np.float32(alpha * scale), "/alpha")], "/scaled")[0]
    if scale != 1.0:
        pos = n.emit("Mul", [pos, n.const(np.float32(scale), "/scale")], "/pos_scaled")[0]
    return Tensor(n.emit("Add", [pos, scaled])[0], v.perm)


def _binary_operands(n: Node, a_i: int = 0, b_i: int = 1) -> tuple[str, str, tuple | None]:
    """ONNX names of two operands in one layout, and that layout's perm."""
    imp = n.imp
    a, b = n.value(a_i), n.value(b_i)
    if a.perm == b.perm:
        return a.name, b.name, a.perm
    permuted, other, swap = (a, b, False) if a.perm is not None else (b, a, True)
    assert permuted.perm is not None
    rank = len(permuted.perm)
    other_name = n.inputs[a_i if swap else b_i]
    c = imp.array(other_name)
    if c is not None and c.ndim <= rank:
        full = c.reshape((1,) * (rank - c.ndim) + c.shape)
        o = n.const(np.transpose(full, permuted.perm), "/permuted")
    elif c is None and len(imp.shape(other.name)) == rank and other.perm is None:
        o = imp.channels_first(other_name, rank)
    else:
        p = imp.tf_layout(n.inputs[b_i if swap else a_i])
        o = imp.tf_layout(other_name)
        return (o, p, None) if swap else (p, o, None)
    return (o, permuted.name, permuted.perm) if swap else (permuted.name, o, permuted.perm)


_BINARY = {"Add": "Add", "AddV2": "Add", "Sub": "Sub", "Mul": "Mul", "RealDiv": "Div",
           "Div": "Div", "Maximum": "Max", "Minimum": "Min", "Pow": "Pow"}


@translation(*_BINARY)
def binary(n: Node):
    a, b, perm = _binary_operands(n)
    return Tensor(n.emit(_BINARY[n.op], [a, b])[0], perm)


@translation("SquaredDifference")
def squared_difference(n: Node):
    a, b, perm = _binary_operands(n)
    d = n.emit("Sub", [a, b], "/diff")[0]
    return Tensor(n.emit("Mul", [d, d])[0], perm)


@translation("BiasAdd")
def bias_add(n: Node):
    if not n.channels_last():
        bias = n.array(1, " (bias)")
        shaped = n.const(bias.reshape((-1,) + (1,) * (n.rank(0) - 2)), "/bias")
        return Tensor(n.emit("Add", [n.tf(0), shaped])[0])
    a, b, perm = _binary_operands(n)
    return Tensor(n.emit("Add", [a, b])[0], perm)


@translation("Softmax", "LogSoftmax")
def softmax(n: Node):
    out = n.emit("Softmax", [n.tf(0)], axis=-1)[0]
    if n.op == "LogSoftmax":
        out = n.emit("Log", [out], "/log")[0]
    return Tensor(out)


@translation("Cast")
def cast(n: Node):
    to = gd.dtype_of(n.attr("DstT"), "the Cast's target")
    from onnx import helper

    v = n.value(0)
    return Tensor(n.emit("Cast", [v.name], to=helper.np_dtype_to_tensor_dtype(to))[0], v.perm)


# ------------------------------------------------------------ layers


def _pads(n: Node, d: int, channels_last: bool) -> dict[str, Any]:
    padding = n.attr("padding", "VALID")
    if padding == "SAME":
        return {"auto_pad": "SAME_UPPER"}
    if padding == "VALID":
        return {"pads": [0] * 2 * d}
    if padding == "EXPLICIT":
        ex = list(n.attr("explicit_paddings", []))
        pairs = [ex[2 * i: 2 * i + 2] for i in range(d + 2)]
        spatial = pairs[1:-1] if channels_last else pairs[2:]
        return {"pads": [p[0] for p in spatial] + [p[1] for p in spatial]}
    raise FrontendError(f"padding '{padding}' is not supported")


def _conv_input(n: Node, d: int) -> tuple[str, bool]:
    last = n.channels_last()
    return (n.imp.channels_first(n.inputs[0], d + 2) if last else n.tf(0)), last


def _result(n: Node, name: str, last: bool, d: int) -> Tensor:
    return Tensor(name, NCHW[d + 2] if last else None)


@translation("Conv2D", "Conv3D")
def conv(n: Node):
    d = 2 if n.op == "Conv2D" else 3
    x, last = _conv_input(n, d)
    w = n.array(1, " (filter)")  # [*K, I, O]
    weight = np.transpose(w, (d + 1, d, *range(d)))
    groups = n.imp.shape(x)[1] // w.shape[d]
    n.layer()
    out = n.emit("Conv", [x, n.const(weight, "/filter")], group=groups,
                 strides=in_order(n.attr("strides", [1] * (d + 2)), last),
                 dilations=in_order(n.attr("dilations", [1] * (d + 2)), last),
                 **_pads(n, d, last))[0]
    return _result(n, out, last, d)


@translation("DepthwiseConv2dNative")
def depthwise(n: Node):
    x, last = _conv_input(n, 2)
    w = n.array(1, " (filter)")  # [H, W, C, M]
    kh, kw, c, m = w.shape
    weight = w.reshape(kh, kw, 1, c * m).transpose(3, 2, 0, 1)
    n.layer()
    out = n.emit("Conv", [x, n.const(weight, "/filter")], group=c,
                 strides=in_order(n.attr("strides", [1] * 4), last),
                 dilations=in_order(n.attr("dilations", [1] * 4), last),
                 **_pads(n, 2, last))[0]
    return _result(n, out, last, 2)


@translation("Conv2DBackpropInput")
def conv_transpose(n: Node):
    sizes = [int(s) for s in n.array(0, " (input_sizes)")]
    w = n.array(1, " (filter)")  # [H, W, O, I]
    last = n.channels_last()
    x = n.imp.channels_first(n.inputs[2], 4) if last else n.tf(2)
    pads = _pads(n, 2, last)
    if pads.get("auto_pad") != "SAME_UPPER":
        pads = {"pads": pads["pads"]} if any(pads["pads"]) else {}
    n.layer()
    out = n.emit("ConvTranspose", [x, n.const(w.transpose(3, 2, 0, 1), "/filter")],
                 strides=in_order(n.attr("strides", [1] * 4), last),
                 dilations=in_order(n.attr("dilations", [1] * 4), last),
                 output_shape=in_order(sizes, last), **pads)[0]
    return _result(n, out, last, 2)


@translation("AvgPool", "MaxPool", "AvgPool3D", "MaxPool3D")
def pool(n: Node):
    d = 3 if n.op.endswith("3D") else 2
    x, last = _conv_input(n, d)
    pads = _pads(n, d, last)
    kind = "AveragePool" if n.op.startswith("Avg") else "MaxPool"
    if kind == "AveragePool":
        n.layer()
    out = n.emit(kind, [x], kernel_shape=in_order(n.attr("ksize"), last),
                 strides=in_order(n.attr("strides"), last), **pads)[0]
    return _result(n, out, last, d)


@translation("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
def fused_batch_norm(n: Node):
    if n.attr("is_training", False):
        raise FrontendError("is_training is true; freeze the model for inference "
                            "(training=False) so BatchNorm uses its moving statistics")
    d = n.rank(0) - 2
    x, last = _conv_input(n, d)
    params = [n.const(n.array(i).astype(np.float32), f"/{p}")
              for i, p in ((1, "scale"), (2, "offset"), (3, "mean"), (4, "variance"))]
    out = n.emit("BatchNormalization", [x, *params], epsilon=float(n.attr("epsilon", 1e-3)))[0]
    return [_result(n, out, last, d)]


def _matmul(n: Node, a: str, b: str, ta: bool, tb: bool, rank_a: int, rank_b: int) -> str:
    def t(name: str, rank: int, which: str) -> str:
        perm = list(range(rank - 2)) + [rank - 1, rank - 2]
        return n.emit("Transpose", [name], f"/transpose_{which}", perm=perm)[0]

    w = n.imp.array(n.inputs[1])
    if w is not None and w.ndim == 2:  # a constant weight: a dense layer
        b = n.const(w.T if tb else w, "/weight")
        tb = False
    elif tb:
        b = t(b, rank_b, "b")
    if ta:
        a = t(a, rank_a, "a")
    return n.emit("MatMul", [a, b])[0]


@translation("MatMul")
def matmul(n: Node):
    ta, tb = bool(n.attr("transpose_a", False)), bool(n.attr("transpose_b", False))
    n.layer(transpose_a=ta, transpose_b=tb)
    return Tensor(_matmul(n, n.tf(0), n.tf(1), ta, tb, 2, 2))


@translation("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")
def batch_matmul(n: Node):
    ax, ay = bool(n.attr("adj_x", False)), bool(n.attr("adj_y", False))
    n.layer(adj_x=ax, adj_y=ay)
    return Tensor(_matmul(n, n.tf(0), n.tf(1), ax, ay, n.rank(0), n.rank(1)))


@translation("Einsum")
def einsum(n: Node):
    """Two operands without repeated or ellipsis indices: transpose both to
    [batch, free, contracted], one MatMul, reshape and transpose to the result."""
    eq = n.attr("equation").replace(" ", "")
    lhs, _, out = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != 2 or "." in eq or any(len(set(t)) != len(t) for t in terms):
        raise FrontendError(f"einsum '{eq}' is not supported (two operands, no ellipsis "
                            "or repeated indices)")
    a, b = terms
    sa, sb = n.shape(0), n.shape(1)
    size = dict(zip(a, sa, strict=True)) | dict(zip(b, sb, strict=True))
    batch = [c for c in a if c in b and c in out]
    contract = [c for c in a if c in b and c not in out]
    free_a = [c for c in a if c not in b]
    free_b = [c for c in b if c not in a]
    if any(c not in out for c in free_a + free_b):
        raise FrontendError(f"einsum '{eq}' sums over an index of one operand only")

    def arrange(name: str, term: str, order: list[str], shape: list[int], tag: str) -> str:
        perm = [term.index(c) for c in order]
        if perm != list(range(len(perm))):
            name = n.emit("Transpose", [name], f"/{tag}_t", perm=perm)[0]
        return n.emit("Reshape", [name, n.const(np.asarray(shape, np.int64), f"/{tag}_s")],
                      f"/{tag}_r")[0]

    def prod(cs: list[str]) -> int:
        return int(np.prod([size[c] for c in cs])) if cs else 1

    bshape = [size[c] for c in batch]
    x = arrange(n.tf(0), a, batch + free_a + contract, [*bshape, prod(free_a), prod(contract)], "a")
    y = arrange(n.tf(1), b, batch + contract + free_b, [*bshape, prod(contract), prod(free_b)], "b")
    mm = n.emit("MatMul", [x, y], "/matmul")[0]
    order = batch + free_a + free_b
    r = n.emit("Reshape", [mm, n.const(np.asarray([size[c] for c in order], np.int64),
                                          "/out_s")], "/out_r")[0]
    perm = [order.index(c) for c in out]
    if perm == list(range(len(perm))):
        return Tensor(r)
    return Tensor(n.emit("Transpose", [r], perm=perm)[0])


# ------------------------------------------------------------ reductions


@translation("Mean", "Sum", "Max", "Min", "Prod")
def reduce(n: Node):
    v = n.value(0)
    axes = [int(a) for a in np.atleast_1d(n.array(1, " (axes)"))]
    keep = bool(n.attr("keep_dims", False))
    onnx_op = {"Mean": "ReduceMean", "Sum": "ReduceSum", "Max": "ReduceMax",
               "Min": "ReduceMin", "Prod": "ReduceProd"}[n.op]
    if v.perm is None:
        name, perm = n.tf(0), None
        onnx_axes = axes
    else:
        rank = len(v.perm)
        tf_axes = sorted({a % rank for a in axes})
        onnx_axes = [v.perm.index(a) for a in tf_axes]
        name, perm = v.name, v.perm
    if onnx_op == "ReduceSum":
        out = n.emit(onnx_op, [name, n.const(np.asarray(onnx_axes, np.int64), "/axes")],
                     keepdims=int(keep))[0]
    else:
        out = n.emit(onnx_op, [name], axes=onnx_axes, keepdims=int(keep))[0]
    if perm is None or keep:
        return Tensor(out, perm)
    remaining = [a for a in perm if a not in {x % len(perm) for x in axes}]
    if remaining == sorted(remaining):
        return Tensor(out)
    fix = [remaining.index(a) for a in sorted(remaining)]
    return Tensor(n.emit("Transpose", [out], "/layout", perm=fix)[0])
