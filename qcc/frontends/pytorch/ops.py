"""Lowerings of ATen ops to qnn: `LOWERINGS[packet name](node) -> value(s)`.

Arguments follow the ATen schemas (`native_functions.yaml`). Ops in `PRESERVED` are
kept whole by `run_decompositions` (a `linear` stays one layer, attention one
pattern); every other op arrives in core ATen form, and both forms are lowered so
that programs saved already decomposed (`.pt2`) import as well.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from xdsl.ir import SSAValue

from qcc.dialects import qnn
from qcc.frontends.errors import FrontendError
from qcc.frontends.pytorch.node import Node, dtype_of, shape_of

Lowering = Callable[[Node], Any]
LOWERINGS: dict[str, Lowering] = {}
"""Filled by this module and `data_ops` (the importer imports both)."""

PRESERVED = (
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "linear", "layer_norm", "group_norm", "relu6", "hardswish",
    "hardsigmoid", "silu", "mish", "softmax", "log_softmax", "scaled_dot_product_attention",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "matmul",
    "max_pool2d", "max_pool1d", "max_pool3d", "pad", "upsample_nearest2d",
    "upsample_bilinear2d", "prelu", "dropout",
)


def decompose(program: Any) -> Any:
    """Core ATen, keeping `PRESERVED` ops whole; a program whose ops all have
    lowerings already is kept as it is (decomposition retraces, which is slow)."""
    import torch

    ops = {_packet(n.target) for n in program.graph.nodes if n.op == "call_function"}
    if all(o in LOWERINGS for o in ops):
        return program
    table = torch.export.default_decompositions()
    for key in list(table):
        if _packet(key) in PRESERVED:
            del table[key]
    return program.run_decompositions(table)


def _packet(target: Any) -> str:
    packet = getattr(target, "overloadpacket", None)
    return packet.__name__ if packet is not None else getattr(target, "__name__", "")


def is_random(target: Any) -> bool:
    return getattr(target, "overloadpacket", None) is not None and \
        target.overloadpacket.__name__ in ("rand", "randn", "rand_like", "randn_like",
                                           "bernoulli", "randint", "native_dropout")


def lowering(*names: str) -> Callable[[Lowering], Lowering]:
    def register(fn: Lowering) -> Lowering:
        for n in names:
            LOWERINGS[n] = fn
        return fn

    return register


def _tuple(v: Any, d: int) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * d
    v = tuple(int(x) for x in v)
    return v * d if len(v) == 1 else v


def _axis(a: int, rank: int) -> int:
    return int(a) % rank if rank else 0


# --------------------------------------------------------------- pass-through


@lowering("getitem")
def getitem(n: Node):
    return n.arg(0)[n.arg(1)]


@lowering("clone", "alias", "detach", "contiguous", "lift_fresh_copy", "dropout",
          "feature_dropout", "alpha_dropout", "_to_copy_same")
def identity(n: Node):
    return n.arg(0)


@lowering("_assert_tensor_metadata", "_assert_scalar", "sym_constrain_range_for_size",
          "_assert_async")
def assertion(n: Node):
    return None


@lowering("sym_size")
def sym_size(n: Node):
    return shape_of(n.arg(0))[n.arg(1)]


@lowering("_to_copy", "to", "type_as")
def to_copy(n: Node):
    from qcc import ir

    x = n.arg(0)
    dtype = n.dtype
    if dtype_of(x) == dtype:
        return x
    return n.emit(qnn.CastOp, n.value(x), to=ir.element_type(dtype))


# ------------------------------------------------------------------- layers


def _conv(n: Node, x: Any, w: np.ndarray | SSAValue, b: Any, stride: Any, padding: Any,
          dilation: Any, transposed: bool, output_padding: Any, groups: int):
    d = len(shape_of(w)) - 2
    strides, dilations = _tuple(stride, d), _tuple(dilation, d)
    if isinstance(padding, str):
        padding = _same_pads(shape_of(w)[2:], dilations) if padding == "same" else (0,) * d
    pads = _tuple(padding, d)
    bias = None if b is None else n.value(b)
    pads2 = (*pads, *pads) if len(pads) == d else pads
    pad_mode = _pad_mode(n)
    if transposed:
        op = n.emit_op(qnn.ConvTransposeOp, n.value(x), n.value(w), bias, strides=strides,
                       pads=pads2, dilations=dilations,
                       output_padding=_tuple(output_padding or 0, d), groups=int(groups),
                       source=f"ConvTranspose{d}d")
    else:
        op = n.emit_op(qnn.ConvOp, n.value(x), n.value(w), bias, strides=strides, pads=pads2,
                       dilations=dilations, groups=int(groups), source=f"Conv{d}d")
    if pad_mode != "zeros":
        from xdsl.dialects.builtin import StringAttr

        op.attributes["pad_mode"] = StringAttr(pad_mode)
    return op.results[0]


def _same_pads(kernel: Sequence[int], dilations: Sequence[int]) -> tuple[int, ...]:
    """padding='same' (stride 1): total (k-1)*d, the extra one at the end."""
    totals = [(k - 1) * dl for k, dl in zip(kernel, dilations, strict=True)]
    return (*(t // 2 for t in totals), *(t - t // 2 for t in totals))


def _pad_mode(n: Node) -> str:
    """padding_mode of the owning torch.nn.ConvNd ("zeros" when unknown)."""
    from qcc.frontends.pytorch.node import module_path

    owner, model = module_path(n.fx), n.importer.model
    if owner is None or model is None:
        return "zeros"
    try:
        module = model.get_submodule(owner[0])
    except AttributeError:
        return "zeros"
    return str(getattr(module, "padding_mode", "zeros"))


@lowering("convolution")
def convolution(n: Node):
    return _conv(n, *n.args[:9])


@lowering("conv1d", "conv2d", "conv3d")
def conv_nd(n: Node):
    x, w = n.arg(0), n.arg(1)
    return _conv(n, x, w, n.arg(2, "bias"), n.arg(3, "stride", 1), n.arg(4, "padding", 0),
                 n.arg(5, "dilation", 1), False, 0, n.arg(6, "groups", 1))


@lowering("conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
def conv_transpose_nd(n: Node):
    # (input, weight, bias, stride, padding, output_padding, groups, dilation)
    return _conv(n, n.arg(0), n.arg(1), n.arg(2, "bias"), n.arg(3, "stride", 1),
                 n.arg(4, "padding", 0), n.arg(7, "dilation", 1), True,
                 n.arg(5, "output_padding", 0), n.arg(6, "groups", 1))


def _dense(n: Node, x: Any, w_out_in: Any, b: Any):
    """x @ w.T + b: qnn.dense for a constant weight, else qnn.matmul."""
    if isinstance(w_out_in, np.ndarray):
        bias = None if b is None else n.value(b)
        w = n.value(w_out_in)
        return n.emit(qnn.DenseOp, n.value(x), w, bias)
    wt = n.emit(qnn.TransposeOp, w_out_in, perm=(1, 0), suffix="/weight_t")
    y = n.emit(qnn.MatmulOp, n.value(x), wt)
    return y if b is None else n.emit(qnn.AddOp, y, n.value(b), suffix="/bias")


@lowering("linear")
def linear(n: Node):
    return _dense(n, n.arg(0), n.arg(1), n.arg(2, "bias"))


@lowering("addmm")
def addmm(n: Node):
    """bias + x @ w (w is linear's weight transposed, folded at import)."""
    if n.kwargs.get("beta", 1) != 1 or n.kwargs.get("alpha", 1) != 1:
        raise FrontendError("addmm with beta or alpha != 1 is not supported")
    w = n.arg(2)
    if isinstance(w, np.ndarray):
        weight = np.ascontiguousarray(w.T)
        n.importer.name_constant(weight, n.importer.const_name(w, n.name + ".weight"))
        return _dense(n, n.arg(1), weight, n.arg(0))
    y = n.emit(qnn.MatmulOp, n.value(n.arg(1)), w)
    return n.emit(qnn.AddOp, y, n.value(n.arg(0)), suffix="/bias")


@lowering("mm", "bmm", "matmul")
def matmul(n: Node):
    a, b = n.arg(0), n.arg(1)
    if isinstance(b, np.ndarray) and b.ndim == 2:
        weight = np.ascontiguousarray(b.T)
        n.importer.name_constant(weight, n.importer.const_name(b, n.name + ".weight"))
        return _dense(n, a, weight, None)
    return n.emit(qnn.MatmulOp, n.value(a), n.value(b))


# ------------------------------------------------------------- normalization


def _param(n: Node, v: Any, shape: Sequence[int], fill: float, tag: str) -> SSAValue:
    if v is None:
        return n.value(np.full(tuple(shape), fill, np.float32))
    return n.value(v)


@lowering("_native_batch_norm_legit_no_training", "batch_norm",
          "_native_batch_norm_legit_functional", "native_batch_norm")
def batch_norm(n: Node):
    x = n.arg(0)
    c = shape_of(x)[1]
    w, b, mean, var = (n.arg(i) for i in range(1, 5))
    if n.op == "_native_batch_norm_legit_no_training":
        eps = n.arg(6, "eps")
    else:
        if n.arg(5, "training", False):
            raise FrontendError("batch norm in training mode: call model.eval() first")
        eps = n.arg(7, "eps")
    if mean is None or var is None:
        raise FrontendError("batch norm without running statistics "
                            "(track_running_stats=False) is not supported")
    y = n.emit(qnn.BatchNormOp, n.value(x), _param(n, w, (c,), 1.0, "weight"),
               _param(n, b, (c,), 0.0, "bias"), n.value(mean), n.value(var), epsilon=float(eps))
    return y if n.op == "batch_norm" else (y, None, None)


@lowering("layer_norm", "native_layer_norm")
def layer_norm(n: Node):
    x = n.arg(0)
    normalized = tuple(n.arg(1))
    rank = len(shape_of(x))
    axis = rank - len(normalized)
    eps = n.arg(4, "eps", 1e-5)
    w, b = n.arg(2, "weight"), n.arg(3, "bias")
    y = n.emit(qnn.LayerNormOp, n.value(x), _param(n, w, normalized, 1.0, "weight"),
               None if b is None else n.value(b), axis=axis, epsilon=float(eps))
    return y if n.op == "layer_norm" else (y, None, None)


@lowering("group_norm")
def group_norm(n: Node):
    """Normalize each group (reshape to [N, G, rest], layer_norm over rest), then the
    per-channel affine as qnn.scale."""
    x = n.arg(0)
    shape = shape_of(x)
    groups = int(n.arg(1))
    w, b, eps = n.arg(2, "weight"), n.arg(3, "bias"), n.arg(4, "eps", 1e-5)
    rest = math.prod(shape[1:]) // groups
    flat = n.emit(qnn.ReshapeOp, n.value(x), shape=(shape[0], groups, rest), suffix="/groups")
    ones = n.value(np.ones((rest,), np.float32))
    normed = n.emit(qnn.LayerNormOp, flat, ones, None, axis=2, epsilon=float(eps),
                    suffix="/norm")
    y = n.emit(qnn.ReshapeOp, normed, shape=shape, suffix="/ungroup")
    if w is None and b is None:
        return y
    c = shape[1]
    return n.emit(qnn.ScaleOp, y, _param(n, w, (c,), 1.0, "weight"),
                  None if b is None else n.value(b), axis=1, suffix="/affine")


# ---------------------------------------------------------------- activations

UNARY = {"relu": qnn.ReluOp, "sigmoid": qnn.SigmoidOp, "tanh": qnn.TanhOp,
         "hardswish": qnn.HardSwishOp, "sqrt": qnn.SqrtOp, "exp": qnn.ExpOp,
         "log": qnn.LogOp, "abs": qnn.AbsOp, "neg": qnn.NegOp, "reciprocal": qnn.ReciprocalOp,
         "floor": qnn.FloorOp, "erf": qnn.ErfOp, "logical_not": qnn.NotOp,
         "bitwise_not": qnn.NotOp}


def _unary(cls: type) -> Lowering:
    return lambda n: n.emit(cls, n.value(n.arg(0)))


_cls: type
for _name, _cls in UNARY.items():
    LOWERINGS[_name] = _unary(_cls)


@lowering("rsqrt")
def rsqrt(n: Node):
    return n.emit(qnn.ReciprocalOp, n.emit(qnn.SqrtOp, n.value(n.arg(0)), suffix="/sqrt"))


@lowering("relu6")
def relu6(n: Node):
    return n.emit(qnn.ClipOp, n.value(n.arg(0)), min=0.0, max=6.0)


@lowering("hardtanh")
def hardtanh(n: Node):
    return n.emit(qnn.ClipOp, n.value(n.arg(0)), min=float(n.arg(1, "min_val", -1.0)),
                  max=float(n.arg(2, "max_val", 1.0)))


@lowering("clamp")
def clamp(n: Node):
    lo, hi = n.arg(1, "min"), n.arg(2, "max")
    if isinstance(lo, SSAValue | np.ndarray) or isinstance(hi, SSAValue | np.ndarray):
        raise FrontendError("clamp with tensor bounds is not supported")
    return n.emit(qnn.ClipOp, n.value(n.arg(0)), min=-math.inf if lo is None else float(lo),
                  max=math.inf if hi is None else float(hi))


@lowering("leaky_relu")
def leaky_relu(n: Node):
    return n.emit(qnn.LeakyReluOp, n.value(n.arg(0)), alpha=float(n.arg(1, "negative_slope",
                                                                          0.01)))


@lowering("prelu", "_prelu_kernel")
def prelu(n: Node):
    x, w = n.arg(0), n.arg(1)
    rank = len(shape_of(x))
    if isinstance(w, np.ndarray) and w.ndim == 1 and w.size > 1 and rank > 1:
        slope = w.reshape((w.size,) + (1,) * (rank - 2))
        n.importer.name_constant(slope, n.importer.const_name(w, n.name + ".weight"))
        w = slope
    return n.emit(qnn.PreluOp, n.value(x), n.value(w))


@lowering("gelu")
def gelu(n: Node):
    return n.emit(qnn.GeluOp, n.value(n.arg(0)), approximate=n.kwargs.get(
        "approximate", n.arg(1, default="none")))


@lowering("hardsigmoid")
def hardsigmoid(n: Node):
    return n.emit(qnn.HardSigmoidOp, n.value(n.arg(0)), alpha=1.0 / 6.0, beta=0.5)


@lowering("silu")
def silu(n: Node):
    x = n.value(n.arg(0))
    return n.emit(qnn.MulOp, x, n.emit(qnn.SigmoidOp, x, suffix="/sigmoid"))


@lowering("mish")
def mish(n: Node):
    """x * tanh(softplus(x)), softplus = log(1 + exp(x)) (x itself above 20, as torch)."""
    x = n.value(n.arg(0))
    e = n.emit(qnn.ExpOp, x, suffix="/exp")
    sp = n.emit(qnn.LogOp, n.emit(qnn.AddOp, e, n.value(1.0, x), suffix="/1p"), suffix="/log")
    big = n.emit(qnn.GreaterOp, x, n.value(20.0, x), suffix="/big")
    sp = n.emit(qnn.WhereOp, big, x, sp, suffix="/softplus")
    return n.emit(qnn.MulOp, x, n.emit(qnn.TanhOp, sp, suffix="/tanh"))


@lowering("softmax", "_softmax")
def softmax(n: Node):
    x = n.arg(0)
    return n.emit(qnn.SoftmaxOp, n.value(x), axis=_axis(n.arg(1), len(shape_of(x))))


@lowering("log_softmax", "_log_softmax")
def log_softmax(n: Node):
    """(x - max) - log(sum(exp(x - max)))."""
    x = n.value(n.arg(0))
    axis = _axis(n.arg(1), len(shape_of(x)))
    m = n.emit(qnn.ReduceMaxOp, x, axes=(axis,), keepdims=True, suffix="/max")
    s = n.emit(qnn.SubOp, x, m, suffix="/shift")
    total = n.emit(qnn.ReduceSumOp, n.emit(qnn.ExpOp, s, suffix="/exp"), axes=(axis,),
                   keepdims=True, suffix="/sum")
    return n.emit(qnn.SubOp, s, n.emit(qnn.LogOp, total, suffix="/log"))


# -------------------------------------------------------------- element-wise

BINARY = {"add": qnn.AddOp, "sub": qnn.SubOp, "mul": qnn.MulOp, "div": qnn.DivOp,
          "pow": qnn.PowOp, "maximum": qnn.MaxOp, "minimum": qnn.MinOp, "eq": qnn.EqualOp,
          "lt": qnn.LessOp, "gt": qnn.GreaterOp, "logical_and": qnn.AndOp,
          "logical_or": qnn.OrOp, "bitwise_and": qnn.AndOp, "bitwise_or": qnn.OrOp}


def _operands(n: Node, a: Any, b: Any) -> tuple[SSAValue, SSAValue]:
    like = a if isinstance(a, SSAValue | np.ndarray) else b
    return n.value(a, like), n.value(b, like)


def _binary(cls: type) -> Lowering:
    def lower(n: Node):
        a, b = n.arg(0), n.arg(1)
        alpha = n.kwargs.get("alpha", 1)
        if alpha != 1:
            b = n.emit(qnn.MulOp, *_operands(n, b, alpha), suffix="/alpha")
        if n.op == "div" and n.kwargs.get("rounding_mode") not in (None, "floor"):
            raise FrontendError(f"div with rounding_mode={n.kwargs['rounding_mode']!r} "
                                "is not supported")
        y = n.emit(cls, *_operands(n, a, b))
        if n.op == "div" and n.kwargs.get("rounding_mode") == "floor":
            y = n.emit(qnn.FloorOp, y, suffix="/floor")
        return y

    return lower


for _name, _cls in BINARY.items():
    LOWERINGS[_name] = _binary(_cls)


@lowering("rsub")
def rsub(n: Node):
    """other - alpha * x."""
    x, other = n.arg(0), n.arg(1)
    alpha = n.arg(2, "alpha", 1)
    if alpha != 1:
        x = n.emit(qnn.MulOp, *_operands(n, x, alpha), suffix="/alpha")
    return n.emit(qnn.SubOp, *_operands(n, other, x))


@lowering("ne", "ge", "le")
def negated_compare(n: Node):
    """ne = not eq, ge = not lt, le = not gt."""
    cls = {"ne": qnn.EqualOp, "ge": qnn.LessOp, "le": qnn.GreaterOp}[n.op]
    y = n.emit(cls, *_operands(n, n.arg(0), n.arg(1)), suffix="/cmp")
    return n.emit(qnn.NotOp, y)


@lowering("where")
def where(n: Node):
    cond, a, b = n.arg(0), n.arg(1), n.arg(2)
    like = a if isinstance(a, SSAValue | np.ndarray) else b
    return n.emit(qnn.WhereOp, n.value(cond), n.value(a, like), n.value(b, like))


@lowering("masked_fill")
def masked_fill(n: Node):
    x, mask, fill = n.arg(0), n.arg(1), n.arg(2)
    return n.emit(qnn.WhereOp, n.value(mask), n.value(fill, x), n.value(x))


# ---------------------------------------------------------------- reductions


def _reduce(cls: type) -> Lowering:
    def lower(n: Node):
        x = n.arg(0)
        rank = len(shape_of(x))
        dims = n.arg(1, "dim")
        if dims is None or (isinstance(dims, list | tuple) and not dims):
            dims = list(range(rank))
        dims = [dims] if isinstance(dims, int) else dims
        keep = bool(n.arg(2, "keepdim", False))
        if n.kwargs.get("dtype") is not None:
            raise FrontendError("a reduction with dtype= is not supported")
        return n.emit(cls, n.value(x), axes=tuple(sorted(_axis(d, rank) for d in dims)),
                      keepdims=keep)

    return lower


LOWERINGS["mean"] = _reduce(qnn.ReduceMeanOp)
LOWERINGS["sum"] = _reduce(qnn.ReduceSumOp)
LOWERINGS["amax"] = _reduce(qnn.ReduceMaxOp)
LOWERINGS["amin"] = _reduce(qnn.ReduceMinOp)


# ---------------------------------------------------------------------- pools


def _pool(n: Node, cls: type, d: int, **extra: Any):
    x = n.arg(0)
    kernel = _tuple(n.arg(1, "kernel_size"), d)
    stride = n.arg(2, "stride") or kernel
    padding = _tuple(n.arg(3, "padding", 0), d)
    return dict(kernel=kernel, strides=_tuple(stride, d), pads=(*padding, *padding),
                **extra), x


@lowering("max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices",
          "max_pool3d_with_indices")
def max_pool(n: Node):
    d = len(shape_of(n.arg(0))) - 2
    props, x = _pool(n, qnn.MaxPoolOp, d)
    dil = _tuple(n.arg(4, "dilation", 1), d)
    y = n.emit(qnn.MaxPoolOp, n.value(x), ceil_mode=bool(n.arg(5, "ceil_mode", False)),
               dilations=dil, **props)
    return (y, None) if n.op.endswith("with_indices") else y


@lowering("avg_pool1d", "avg_pool2d", "avg_pool3d")
def avg_pool(n: Node):
    d = len(shape_of(n.arg(0))) - 2
    props, x = _pool(n, qnn.AvgPoolOp, d)
    if n.arg(6, "divisor_override") is not None:
        raise FrontendError("avg_pool with divisor_override is not supported")
    return n.emit(qnn.AvgPoolOp, n.value(x), ceil_mode=bool(n.arg(4, "ceil_mode", False)),
                  count_include_pad=bool(n.arg(5, "count_include_pad", True)),
                  source=f"AvgPool{d}d", **props)


@lowering("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
          "_adaptive_avg_pool2d", "_adaptive_avg_pool3d")
def adaptive_avg_pool(n: Node):
    """Global (output 1) or exact windows (input divisible by output)."""
    x = n.arg(0)
    shape = shape_of(x)
    d = len(shape) - 2
    out = _tuple(n.arg(1, "output_size"), d)
    if all(o == 1 for o in out):
        return n.emit(qnn.GlobalAvgPoolOp, n.value(x))
    if any(i % o for i, o in zip(shape[2:], out, strict=True)):
        raise FrontendError(f"adaptive_avg_pool to {out} from {shape[2:]}: only global "
                            "pooling or sizes that divide the input are supported")
    kernel = tuple(i // o for i, o in zip(shape[2:], out, strict=True))
    return n.emit(qnn.AvgPoolOp, n.value(x), kernel=kernel, strides=kernel,
                  pads=(0,) * (2 * d), count_include_pad=False, ceil_mode=False,
                  source=f"AdaptiveAvgPool{d}d")
