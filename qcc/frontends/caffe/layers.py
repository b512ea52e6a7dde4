"""Lowerings of Caffe layers to qnn: `LOWERINGS[type](layer) -> [value per top]`.

Semantics follow BVLC Caffe's layer implementations (src/caffe/layers/*.cpp):
Pooling rounds the output size up by default and drops a last window that would
start in the end padding; AVE pooling divides by the window clipped to the padded
input; BatchNorm divides its mean and variance by the third blob (the moving-average
scale factor, 0 meaning 0); Eltwise SUM weights its bottoms by `coeff`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from xdsl.dialects.builtin import BoolAttr, IntegerAttr
from xdsl.ir import SSAValue

from qcc.dialects import qnn
from qcc.frontends.caffe import caffe_pb2 as pb
from qcc.frontends.caffe.node import Layer, caffe_pool_size
from qcc.frontends.errors import FrontendError

Lowering = Callable[[Layer], Sequence[SSAValue]]
LOWERINGS: dict[str, Lowering] = {}


def lowering(*types: str) -> Callable[[Lowering], Lowering]:
    def register(fn: Lowering) -> Lowering:
        for t in types:
            LOWERINGS[t] = fn
        return fn

    return register


def axis_of(axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < rank:
        raise FrontendError(f"{what} {axis} is out of range for a rank-{rank} bottom")
    return axis % rank


def _per_dim(repeated: Sequence[int], h: int | None, w: int | None, d: int, default: int,
             what: str) -> tuple[int, ...]:
    """Caffe's kernel/pad/stride: the *_h/*_w pair (2-d), or 1 or d repeated values."""
    if h is not None or w is not None:
        if d != 2 or h is None or w is None:
            raise FrontendError(f"{what}_h and {what}_w go together and are for 2-d only")
        return (h, w)
    if not repeated:
        return (default,) * d
    if len(repeated) == 1:
        return (int(repeated[0]),) * d
    if len(repeated) != d:
        raise FrontendError(f"{what} has {len(repeated)} values for {d} spatial dims")
    return tuple(int(v) for v in repeated)


def _opt(msg, field: str) -> int | None:
    return int(getattr(msg, field)) if msg.HasField(field) else None


# ---------------------------------------------------------------- conv family


def _conv_geometry(n: Layer, p: pb.ConvolutionParameter):
    if p.axis != 1:
        raise FrontendError(f"convolution_param.axis {p.axis} is not supported (only 1)")
    d = len(n.shape()) - 2
    if d < 1:
        raise FrontendError(f"bottom shape {list(n.shape())} has no spatial dims")
    kernel = _per_dim(p.kernel_size, _opt(p, "kernel_h"), _opt(p, "kernel_w"), d, 0, "kernel")
    if any(k <= 0 for k in kernel):
        raise FrontendError("convolution_param needs kernel_size (or kernel_h and kernel_w)")
    pads = _per_dim(p.pad, _opt(p, "pad_h"), _opt(p, "pad_w"), d, 0, "pad")
    strides = _per_dim(p.stride, _opt(p, "stride_h"), _opt(p, "stride_w"), d, 1, "stride")
    dilations = _per_dim(p.dilation, None, None, d, 1, "dilation")
    if not p.HasField("num_output"):
        raise FrontendError("convolution_param needs num_output")
    return kernel, pads, strides, dilations


@lowering("Convolution")
def convolution(n: Layer):
    return _conv_layer(n, qnn.ConvOp, transposed=False)


@lowering("Deconvolution")
def deconvolution(n: Layer):
    return _conv_layer(n, qnn.ConvTransposeOp, transposed=True)


def _conv_layer(n: Layer, op: type, transposed: bool):
    """Convolution and Deconvolution share geometry, group checks and blobs; only the
    weight layout differs (Caffe stores a deconvolution's weight as (Cin, Cout/g, k))."""
    p = n.proto.convolution_param
    kernel, pads, strides, dilations = _conv_geometry(n, p)
    c, g = n.shape()[1], p.group
    if c % g or p.num_output % g:
        raise FrontendError(f"group {g} does not divide the {c} input channels and "
                            f"num_output {p.num_output}")
    w_shape = (c, p.num_output // g) if transposed else (p.num_output, c // g)
    w = n.blob(0, (*w_shape, *kernel), "weight blob")
    b = n.blob(1, (p.num_output,), "bias blob") if p.bias_term else None
    return [n.emit(op, n.bottoms[0], n.const(w, ".weight"),
                   None if b is None else n.const(b, ".bias"), strides=strides,
                   pads=pads + pads, dilations=dilations, groups=g)]


@lowering("InnerProduct")
def inner_product(n: Layer):
    p = n.proto.inner_product_param
    shape = n.shape()
    axis = axis_of(p.axis, len(shape))
    k = math.prod(shape[axis:])
    if not p.HasField("num_output"):
        raise FrontendError("inner_product_param needs num_output")
    x = n.bottoms[0]
    if len(shape) != axis + 1:
        x = n.emit(qnn.ReshapeOp, x, shape=(*shape[:axis], k), suffix="/flatten")
    if p.transpose:
        w = np.ascontiguousarray(n.blob(0, (k, p.num_output), "weight blob").T)
    else:
        w = n.blob(0, (p.num_output, k), "weight blob")
    b = n.blob(1, (p.num_output,), "bias blob") if p.bias_term else None
    op = n.emit_op(qnn.DenseOp, x, n.const(w, ".weight"),
                   None if b is None else n.const(b, ".bias"))
    if p.transpose:  # the target's InnerProduct rules read these
        op.attributes["transpose_b"] = BoolAttr.from_bool(True)
    if axis != 1:
        op.attributes["caffe.axis"] = IntegerAttr(axis, 64)
    return [op.results[0]]


# ---------------------------------------------------------------- pooling


@lowering("Pooling")
def pooling(n: Layer):
    p = n.proto.pooling_param
    shape = n.shape()
    if len(shape) != 4:
        raise FrontendError(f"Pooling needs a 4-d bottom, got {list(shape)}")
    if p.pool == pb.PoolingParameter.STOCHASTIC:
        raise FrontendError("STOCHASTIC pooling is not supported (MAX or AVE)")
    kernel: tuple[int, ...]
    pads: tuple[int, ...]
    strides: tuple[int, ...]
    if p.global_pooling:
        kernel, pads, strides = tuple(shape[2:]), (0, 0), (1, 1)
    else:
        kernel = _per_dim([p.kernel_size] if p.HasField("kernel_size") else [],
                          _opt(p, "kernel_h"), _opt(p, "kernel_w"), 2, 0, "kernel")
        if any(k <= 0 for k in kernel):
            raise FrontendError("pooling_param needs kernel_size (or kernel_h and kernel_w) "
                                "or global_pooling")
        pads = _per_dim([p.pad] if p.HasField("pad") else [], _opt(p, "pad_h"),
                        _opt(p, "pad_w"), 2, 0, "pad")
        strides = _per_dim([p.stride] if p.HasField("stride") else [], _opt(p, "stride_h"),
                           _opt(p, "stride_w"), 2, 1, "stride")
    ceil = p.round_mode == pb.PoolingParameter.CEIL
    props: dict[str, Any] = {"kernel": kernel, "strides": strides, "pads": pads + pads, "ceil_mode": ceil}
    if p.pool == pb.PoolingParameter.MAX:
        y = n.emit(qnn.MaxPoolOp, n.bottoms[0], **props)
    else:  # AVE divides by the window clipped to the padded input: count_include_pad
        y = n.emit(qnn.AvgPoolOp, n.bottoms[0], count_include_pad=True, **props)
    caffe = [caffe_pool_size(shape[2 + i], kernel[i], strides[i], pads[i], ceil)
             for i in range(2)]
    got = list(y.type.get_shape()[2:])  # type: ignore[attr-defined]
    if got != caffe:
        raise FrontendError(f"Caffe's output size {caffe} has an empty last window "
                            f"(kernel {list(kernel)}, stride {list(strides)}, no pad)")
    return [y]


# ---------------------------------------------------------------- normalization


@lowering("BatchNorm")
def batch_norm(n: Layer):
    p = n.proto.batch_norm_param
    if p.HasField("use_global_stats") and not p.use_global_stats:
        raise FrontendError("use_global_stats: false normalizes with the statistics of "
                            "each batch; qcc imports inference nets: set it to true")
    c = n.shape()[1]
    mean = n.blob(0, (c,), "mean blob")
    var = n.blob(1, (c,), "variance blob")
    factor = float(n.blob(2, (1,), "moving-average factor blob")[0])
    f = 0.0 if factor == 0 else 1.0 / factor
    return [n.emit(qnn.BatchNormOp, n.bottoms[0], n.const(np.ones(c), ".scale"),
                   n.const(np.zeros(c), ".bias"), n.const(mean * f, ".mean"),
                   n.const(var * f, ".var"), epsilon=float(p.eps))]


def _param_shape(n: Layer, axis: int, num_axes: int, param: str) -> tuple[int, tuple[int, ...]]:
    shape = n.shape()
    axis = axis_of(axis, len(shape), f"{param}.axis")
    if num_axes < -1:
        raise FrontendError(f"{param}.num_axes {num_axes} must be >= -1")
    end = len(shape) if num_axes == -1 else axis + num_axes
    if end > len(shape):
        raise FrontendError(f"{param} covers axes {axis}..{end - 1} of a rank-"
                            f"{len(shape)} bottom")
    return axis, shape[axis:end]


def _broadcastable(n: Layer, array_shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    rank = len(n.shape())
    return (1,) * axis + array_shape + (1,) * (rank - axis - len(array_shape))


def _affine(n: Layer, axis: int, dims: tuple[int, ...], scale: SSAValue | np.ndarray | None,
            bias: np.ndarray | None) -> SSAValue:
    """x * scale + bias over dims `axis`.. (qnn.scale for a channel vector)."""
    x = n.bottoms[0]
    if axis == 1 and len(dims) == 1 and isinstance(scale, np.ndarray):
        return n.emit(qnn.ScaleOp, x, n.const(scale, ".scale"),
                      None if bias is None else n.const(bias, ".bias"), axis=1)
    full = _broadcastable(n, dims, axis)
    if scale is not None:
        if isinstance(scale, np.ndarray):
            s = n.const(scale.reshape(full), ".scale")
        else:
            s = n.emit(qnn.ReshapeOp, scale, shape=full, suffix="/scale_shape")
        x = n.emit(qnn.MulOp, x, s, suffix="" if bias is None else "/mul")
    if bias is not None:
        x = n.emit(qnn.AddOp, x, n.const(bias.reshape(full), ".bias"))
    return x


@lowering("Scale")
def scale(n: Layer):
    p = n.proto.scale_param
    if len(n.bottoms) == 2:
        axis = axis_of(p.axis, len(n.shape()), "scale_param.axis")
        dims = n.shape(1)
        if n.shape()[axis:axis + len(dims)] != dims:
            raise FrontendError(f"scale bottom {list(dims)} does not match bottom "
                                f"{list(n.shape())} at axis {axis}")
        bias = n.blob(0, dims, "bias blob") if p.bias_term else None
        return [_affine(n, axis, dims, n.bottoms[1], bias)]
    axis, dims = _param_shape(n, p.axis, p.num_axes, "scale_param")
    s = n.blob(0, dims, "scale blob")
    bias = n.blob(1, dims, "bias blob") if p.bias_term else None
    return [_affine(n, axis, dims, s, bias)]


@lowering("Bias")
def bias(n: Layer):
    p = n.proto.bias_param
    if len(n.bottoms) == 2:
        axis = axis_of(p.axis, len(n.shape()), "bias_param.axis")
        dims = n.shape(1)
        shaped = n.emit(qnn.ReshapeOp, n.bottoms[1], shape=_broadcastable(n, dims, axis),
                        suffix="/bias_shape")
        return [n.emit(qnn.AddOp, n.bottoms[0], shaped)]
    axis, dims = _param_shape(n, p.axis, p.num_axes, "bias_param")
    b = n.blob(0, dims, "bias blob").reshape(_broadcastable(n, dims, axis))
    return [n.emit(qnn.AddOp, n.bottoms[0], n.const(b, ".bias"))]


@lowering("LRN")
def lrn(n: Layer):
    p = n.proto.lrn_param
    if p.norm_region == pb.LRNParameter.ACROSS_CHANNELS:
        return [n.emit(qnn.LrnOp, n.bottoms[0], size=int(p.local_size), alpha=float(p.alpha),
                       beta=float(p.beta), bias=float(p.k))]
    # WITHIN_CHANNEL (lrn_layer.cpp): x * (1 + alpha * avg_pool(x^2))^-beta over a
    # local_size square, zero-padded by (local_size - 1) / 2; k is not used.
    if p.local_size % 2 == 0:
        raise FrontendError("WITHIN_CHANNEL LRN needs an odd local_size")
    x, k, pad = n.bottoms[0], int(p.local_size), (int(p.local_size) - 1) // 2
    sq = n.emit(qnn.MulOp, x, x, suffix="/square")
    avg = n.emit(qnn.AvgPoolOp, sq, kernel=(k, k), strides=(1, 1), pads=(pad,) * 4,
                 ceil_mode=True, count_include_pad=True, suffix="/pool")
    t = n.emit(qnn.MulOp, avg, n.const(np.float32(p.alpha), ".alpha"), suffix="/alpha")
    t = n.emit(qnn.AddOp, t, n.const(np.float32(1.0), ".one"), suffix="/shift")
    t = n.emit(qnn.PowOp, t, n.const(np.float32(-p.beta), ".beta"), suffix="/power")
    return [n.emit(qnn.MulOp, x, t)]


@lowering("Normalize")
def normalize(n: Layer):
    """SSD's Normalize: x / sqrt(sum x^2 + eps) * scale, over C (or C, H, W)."""
    p = n.proto.norm_param
    shape = n.shape()
    x = n.bottoms[0]
    axes = tuple(range(1, len(shape))) if p.across_spatial else (1,)
    sq = n.emit(qnn.MulOp, x, x, suffix="/square")
    s = n.emit(qnn.ReduceSumOp, sq, axes=axes, keepdims=True, suffix="/sum")
    s = n.emit(qnn.AddOp, s, n.const(np.float32(p.eps), ".eps"), suffix="/eps")
    norm = n.emit(qnn.SqrtOp, s, suffix="/norm")
    y = n.emit(qnn.DivOp, x, norm, suffix="/div")
    c = shape[1]
    if p.channel_shared:
        w = n.blob(0, (1,), "scale blob").reshape(())
    else:
        w = n.blob(0, (c,), "scale blob").reshape(_broadcastable(n, (c,), 1))
    return [n.emit(qnn.MulOp, y, n.const(w, ".scale"))]


@lowering("Softmax")
def softmax(n: Layer):
    axis = axis_of(n.proto.softmax_param.axis, len(n.shape()), "softmax_param.axis")
    return [n.emit(qnn.SoftmaxOp, n.bottoms[0], axis=axis)]


# ---------------------------------------------------------------- activations


@lowering("ReLU")
def relu(n: Layer):
    slope = float(n.proto.relu_param.negative_slope)
    if slope == 0.0:
        return [n.emit(qnn.ReluOp, n.bottoms[0])]
    return [n.emit(qnn.LeakyReluOp, n.bottoms[0], alpha=slope)]


@lowering("PReLU")
def prelu(n: Layer):
    shape = n.shape()
    if n.proto.prelu_param.channel_shared:
        slope = n.blob(0, (1,), "slope blob").reshape(())
    else:
        slope = n.blob(0, (shape[1],), "slope blob").reshape(_broadcastable(n, (shape[1],), 1))
    return [n.emit(qnn.PreluOp, n.bottoms[0], n.const(slope, ".slope"))]


@lowering("Sigmoid")
def sigmoid(n: Layer):
    return [n.emit(qnn.SigmoidOp, n.bottoms[0])]


@lowering("TanH")
def tanh(n: Layer):
    return [n.emit(qnn.TanhOp, n.bottoms[0])]


@lowering("AbsVal")
def absval(n: Layer):
    return [n.emit(qnn.AbsOp, n.bottoms[0])]


@lowering("Clip")
def clip(n: Layer):
    p = n.proto.clip_param
    return [n.emit(qnn.ClipOp, n.bottoms[0], min=float(p.min), max=float(p.max))]


@lowering("ELU")
def elu(n: Layer):
    """x > 0 ? x : alpha (exp(x) - 1), as relu(x) + alpha (exp(min(x, 0)) - 1)."""
    x = n.bottoms[0]
    neg = n.emit(qnn.MinOp, x, n.const(np.float32(0), ".zero"), suffix="/neg")
    e = n.emit(qnn.ExpOp, neg, suffix="/exp")
    e = n.emit(qnn.SubOp, e, n.const(np.float32(1), ".one"), suffix="/expm1")
    e = n.emit(qnn.MulOp, e, n.const(np.float32(n.proto.elu_param.alpha), ".alpha"),
               suffix="/alpha")
    return [n.emit(qnn.AddOp, n.emit(qnn.ReluOp, x, suffix="/pos"), e)]


@lowering("BNLL")
def bnll(n: Layer):
    """log(1 + exp(x)), computed as relu(x) + log(1 + exp(-|x|))."""
    x = n.bottoms[0]
    a = n.emit(qnn.NegOp, n.emit(qnn.AbsOp, x, suffix="/abs"), suffix="/neg")
    t = n.emit(qnn.AddOp, n.emit(qnn.ExpOp, a, suffix="/exp"),
               n.const(np.float32(1), ".one"), suffix="/1p")
    return [n.emit(qnn.AddOp, n.emit(qnn.ReluOp, x, suffix="/pos"),
                   n.emit(qnn.LogOp, t, suffix="/log"))]


def _scale_shift(n: Layer, x: SSAValue, scale: float, shift: float) -> SSAValue:
    if scale != 1.0:
        x = n.emit(qnn.MulOp, x, n.const(np.float32(scale), ".scale"), suffix="/scale")
    if shift != 0.0:
        x = n.emit(qnn.AddOp, x, n.const(np.float32(shift), ".shift"), suffix="/shift")
    return x


@lowering("Power")
def power(n: Layer):
    p = n.proto.power_param
    x = _scale_shift(n, n.bottoms[0], float(p.scale), float(p.shift))
    if p.power == 1.0:
        return [n.emit(qnn.IdentityOp, x)]
    return [n.emit(qnn.PowOp, x, n.const(np.float32(p.power), ".power"))]


@lowering("Exp")
def exp(n: Layer):
    """base^(shift + scale x) = exp(ln(base) shift + ln(base) scale x)."""
    p = n.proto.exp_param
    ln = 1.0 if p.base == -1.0 else math.log(p.base)
    return [n.emit(qnn.ExpOp, _scale_shift(n, n.bottoms[0], ln * p.scale, ln * p.shift))]


@lowering("Log")
def log(n: Layer):
    """log_base(shift + scale x) = ln(shift + scale x) / ln(base)."""
    p = n.proto.log_param
    y = n.emit(qnn.LogOp, _scale_shift(n, n.bottoms[0], float(p.scale), float(p.shift)),
               suffix="" if p.base == -1.0 else "/ln")
    if p.base == -1.0:
        return [y]
    return [n.emit(qnn.MulOp, y, n.const(np.float32(1.0 / math.log(p.base)), ".base"))]


@lowering("ArgMax")
def argmax(n: Layer):
    """argmax_layer.cpp: the index of the largest value (of equal ones the last, as
    its sort of (value, index) pairs by std::greater gives), as a float top; with
    `axis` along it (kept as 1), without over each sample flattened, the top being
    (N, 1, 1) padded with 1s to the bottom's rank."""
    p = n.proto.argmax_param
    if p.out_max_val or p.top_k != 1:
        raise FrontendError(f"argmax_param out_max_val={str(p.out_max_val).lower()} "
                            f"top_k={p.top_k} is not supported: only top_k 1 without "
                            "out_max_val (the indices) lowers to qnn.argmax")
    x, shape = n.bottoms[0], n.shape()
    if p.HasField("axis"):
        axis = axis_of(p.axis, len(shape), "argmax_param.axis")
        idx = n.emit(qnn.ArgMaxOp, x, axis=axis, keepdims=True, select_last_index=True)
    else:
        flat = n.emit(qnn.ReshapeOp, x, shape=(shape[0], math.prod(shape[1:])),
                      suffix="/flatten")
        idx = n.emit(qnn.ArgMaxOp, flat, axis=1, keepdims=True, select_last_index=True,
                     suffix="/argmax")
        out = [shape[0]] + [1] * (max(len(shape), 3) - 1)
        idx = n.emit(qnn.ReshapeOp, idx, shape=tuple(out))
    # the cast is no layer of its own in a Caffe export: the layer's name stays the top's
    return [n.emit(qnn.CastOp, idx, to=x.type.element_type, suffix="/float")]  # type: ignore[attr-defined]


@lowering("Dropout")
def dropout(n: Layer):
    return [n.bottoms[0]]  # identity at inference (Caffe scales while training)


# ---------------------------------------------------------------- element-wise


@lowering("Eltwise")
def eltwise(n: Layer):
    p = n.proto.eltwise_param
    shapes = [n.shape(i) for i in range(len(n.bottoms))]
    if any(s != shapes[0] for s in shapes):
        raise FrontendError(f"bottoms have different shapes {[list(s) for s in shapes]}")
    if len(n.bottoms) < 2:
        raise FrontendError("Eltwise needs at least two bottoms")
    coeff = list(p.coeff)
    if coeff and (p.operation != pb.EltwiseParameter.SUM or len(coeff) != len(n.bottoms)):
        raise FrontendError(f"coeff ({len(coeff)} values) needs operation SUM and one "
                            f"value per bottom ({len(n.bottoms)})")
    cls = {pb.EltwiseParameter.SUM: qnn.AddOp, pb.EltwiseParameter.PROD: qnn.MulOp,
           pb.EltwiseParameter.MAX: qnn.MaxOp}[p.operation]
    terms = list(n.bottoms)
    for i, c in enumerate(coeff):
        if c != 1.0:
            terms[i] = n.emit(qnn.MulOp, terms[i], n.const(np.float32(c), f".coeff{i}"),
                              suffix=f"/coeff{i}")
    y = terms[0]
    for i, t in enumerate(terms[1:], 1):
        y = n.emit(cls, y, t, suffix="" if i == len(terms) - 1 else f"/{i}")
    return [y]


@lowering("FakeQuant")
def fake_quant(n: Layer):
    """qcc's simulation-model layer (written by qcc.exporters.caffe): quant.fake_quant."""
    from qcc.dialects import quant

    p = n.proto.fake_quant_param
    if not p.scale or len(p.scale) != len(p.zero_point):
        raise FrontendError("fake_quant_param needs one zero_point per scale")
    common: dict[str, Any] = {"bits": int(p.bits), "signed": bool(p.signed),
              "storage_min": int(p.storage_min), "storage_max": int(p.storage_max)}
    if p.axis < 0:
        qtype = quant.UniformQuantizedType.make(scale=float(p.scale[0]),
                                                zero_point=int(p.zero_point[0]), **common)
    else:
        qtype = quant.UniformQuantizedType.make_per_axis(
            axis=int(p.axis), scales=[float(s) for s in p.scale],
            zero_points=[int(z) for z in p.zero_point], **common)
    return [n.emit(quant.FakeQuantOp, n.bottoms[0], qtype=qtype)]
