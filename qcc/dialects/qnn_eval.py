"""Numpy semantics of the pure qnn ops that need no compiled kernel, and the fold
hook built on them.

`EVAL` maps an op name to `fn(op, *arrays) -> array(s)`. The runtime executes these
entries as its kernels for the same ops, so a folded constant holds exactly the
numbers the runtime would compute. `Folds` is the `HasFolder` trait of the pure qnn
ops: when every operand is a constant and the op has an entry here, `fold` returns
the results as dense attributes (xDSL's `Folder` then materializes `qnn.constant`s).
Layers (conv, dense, pools), resize and every quant op have no entry and never fold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ml_dtypes
import numpy as np
from scipy import special
from xdsl.dialects.builtin import TensorType
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.traits import ConstantLike, HasFolder, Pure

from qcc.dialects.base import get_bool, get_float, get_int, get_ints, get_str
from qcc.dialects.constants import array_of, dense, numpy_dtype

Evaluate = Callable[..., object]
EVAL: dict[str, Evaluate] = {}

FOLD_LIMIT = 1 << 24
"""Largest constant (elements) that folding may create."""


def evaluates(*op_names: str) -> Callable[[Evaluate], Evaluate]:
    def register(fn: Evaluate) -> Evaluate:
        for n in op_names:
            EVAL[n] = fn
        return fn

    return register


def _p(op, key: str):
    return op.properties.get(key)


class Folds(HasFolder):
    """Fold a pure qnn op whose operands are all constants into constants."""

    @classmethod
    def fold(cls, op: Operation) -> Sequence[SSAValue | Attribute] | None:
        evaluate = EVAL.get(op.name)
        if evaluate is None or not op.has_trait(Pure) or not op.operands:
            return None
        if not all(isinstance(v.owner, Operation) and v.owner.has_trait(ConstantLike)
                   for v in op.operands):
            return None
        types: list[TensorType] = []
        for r in op.results:
            assert isinstance(r.type, TensorType)
            if not r.type.has_static_shape():  # the values decide (qnn_dynamic)
                return None
            types.append(r.type)
        if sum(int(np.prod(t.get_shape())) for t in types) > FOLD_LIMIT:
            return None
        out: Any = evaluate(op, *[np.array(array_of(v)) for v in op.operands])  # array(s)
        outs = list(out) if len(op.results) > 1 else [out]
        return [dense(np.asarray(value, dtype=numpy_dtype(t.element_type)).reshape(t.get_shape()))
                for value, t in zip(outs, types, strict=True)]


@evaluates("qnn.matmul")
def _matmul(op, a, b):
    return np.matmul(a, b)



@evaluates("qnn.global_avg_pool")
def _global_avg_pool(op, x):
    return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True, dtype=np.float32)



# ----------------------------------------------------------- normalization


def channel(v: np.ndarray, ndim: int, axis: int = 1) -> np.ndarray:
    """`v` (one value per channel) shaped to broadcast along `axis` of an ndim-dim
    tensor."""
    shape = [1] * ndim
    shape[axis % ndim] = -1
    return v.reshape(shape)


@evaluates("qnn.batch_norm")
def _batch_norm(op, x, scale, bias, mean, var):
    eps = get_float(_p(op, "epsilon"), 1e-5)
    a = (scale / np.sqrt(var.astype(np.float64) + eps)).astype(np.float32)
    b = (bias - mean * a).astype(np.float32)
    return x * channel(a, x.ndim) + channel(b, x.ndim)


@evaluates("qnn.scale")
def _scale(op, x, scale, bias=None):
    axis = get_int(_p(op, "axis"), 1)
    y = x * channel(scale, x.ndim, axis)
    return y if bias is None else y + channel(bias, x.ndim, axis)


@evaluates("qnn.layer_norm")
def _layer_norm(op, x, scale, bias=None):
    axis = get_int(_p(op, "axis"), -1) % x.ndim
    axes = tuple(range(axis, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    d = x - mean
    var = (d * d).mean(axis=axes, keepdims=True)
    y = d / np.sqrt(var + np.float32(get_float(_p(op, "epsilon"), 1e-5))) * scale
    return y if bias is None else y + bias


@evaluates("qnn.softmax")
def _softmax(op, x):
    axis = get_int(_p(op, "axis"), -1)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@evaluates("qnn.lrn")
def _lrn(op, x):
    size = get_int(_p(op, "size"), 5)
    alpha, beta = get_float(_p(op, "alpha"), 1e-4), get_float(_p(op, "beta"), 0.75)
    bias = get_float(_p(op, "bias"), 1.0)
    sq = np.square(x)
    pad = [(0, 0)] * x.ndim
    pad[1] = ((size - 1) // 2, size // 2)
    c = np.cumsum(np.pad(sq, pad), axis=1)
    c = np.concatenate([np.zeros_like(c[:, :1]), c], axis=1)
    window = c[:, size:] - c[:, :-size]
    return (x / (bias + alpha / size * window) ** beta).astype(np.float32)


# -------------------------------------------------------------- element-wise

_UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "qnn.relu": lambda x: np.maximum(x, 0, dtype=x.dtype),
    "qnn.sigmoid": lambda x: special.expit(x),
    "qnn.tanh": np.tanh,
    "qnn.erf": lambda x: special.erf(x).astype(x.dtype),
    "qnn.sqrt": np.sqrt,
    "qnn.exp": np.exp,
    "qnn.log": np.log,
    "qnn.abs": np.abs,
    "qnn.neg": np.negative,
    "qnn.reciprocal": np.reciprocal,
    "qnn.identity": lambda x: x,
    "qnn.dropout": lambda x: x,
    "qnn.floor": np.floor,
    "qnn.not": np.logical_not,
    "qnn.hard_swish": lambda x: x * np.clip(x / 6 + 0.5, 0, 1).astype(x.dtype),
}

_f: Callable[..., np.ndarray]
for _t, _f in _UNARY.items():
    EVAL[_t] = (lambda f: lambda op, x: f(x))(_f)


@evaluates("qnn.leaky_relu")
def _leaky_relu(op, x):
    return np.where(x >= 0, x, x * np.float32(get_float(_p(op, "alpha"), 0.01)))


@evaluates("qnn.clip")
def _clip(op, x):
    lo, hi = get_float(_p(op, "min")), get_float(_p(op, "max"))
    return np.clip(x, x.dtype.type(lo), x.dtype.type(hi))


@evaluates("qnn.hard_sigmoid")
def _hard_sigmoid(op, x):
    a, b = get_float(_p(op, "alpha"), 0.2), get_float(_p(op, "beta"), 0.5)
    return np.clip(x * np.float32(a) + np.float32(b), 0, 1).astype(x.dtype)


@evaluates("qnn.gelu")
def _gelu(op, x):
    if get_str(_p(op, "approximate"), "none") == "tanh":
        inner = np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)
        return (0.5 * x * (1 + np.tanh(inner))).astype(x.dtype)
    return (0.5 * x * (1 + special.erf(x / np.sqrt(2)))).astype(x.dtype)


@evaluates("qnn.prelu")
def _prelu(op, x, slope):
    return np.where(x >= 0, x, x * slope)


@evaluates("qnn.cast")
def _cast(op, x):
    to = numpy_dtype(_p(op, "to"))
    if get_bool(_p(op, "saturate")):
        x = _saturate(x, to)
    return x.astype(to)


def _saturate(x: np.ndarray, to: np.dtype) -> np.ndarray:
    """ONNX Cast saturate=1 for float8: clip to the finite range (inf -> max)."""
    info = ml_dtypes.finfo(to)
    return np.clip(x, info.min, info.max)


_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "qnn.add": np.add, "qnn.sub": np.subtract, "qnn.mul": np.multiply,
    "qnn.pow": np.power, "qnn.max": np.maximum, "qnn.min": np.minimum,
    "qnn.and": np.logical_and, "qnn.or": np.logical_or, "qnn.equal": np.equal,
    "qnn.less": np.less, "qnn.greater": np.greater,
}

for _t, _f in _BINARY.items():
    EVAL[_t] = (lambda f: lambda op, a, b: f(a, b))(_f)


@evaluates("qnn.div")
def _div(op, a, b):
    if np.issubdtype(a.dtype, np.integer):
        return (np.trunc(a / b)).astype(a.dtype)  # ONNX integer Div truncates
    return np.divide(a, b)


@evaluates("qnn.where")
def _where(op, c, a, b):
    return np.where(c, a, b)


def _reduce(fn, empty: float | None = None):
    """`empty` is the value of a reduction over no elements (max: -inf, min: +inf)."""

    def run(op, x):
        axes = get_ints(_p(op, "axes")) or tuple(range(x.ndim))
        keep = get_bool(_p(op, "keepdims"), True)
        if x.size == 0 and empty is not None:
            shape = op.results[0].type.get_shape()
            if x.dtype == np.bool_:
                return np.full(shape, empty > 0, np.bool_)
            if np.issubdtype(x.dtype, np.floating):
                return np.full(shape, empty, x.dtype)
            info = np.iinfo(x.dtype)
            return np.full(shape, info.min if empty < 0 else info.max, x.dtype)
        return fn(x, axis=tuple(axes), keepdims=keep).astype(x.dtype, copy=False)

    return run


@evaluates("qnn.cumsum")
def _cumsum(op, x):
    axis = get_int(_p(op, "axis"))
    reverse = get_bool(_p(op, "reverse"))
    y = np.flip(x, axis) if reverse else x
    if get_bool(_p(op, "exclusive")) and x.shape[axis]:  # leave each own element out
        head = np.zeros_like(np.take(y, [0], axis=axis))
        y = np.concatenate([head, np.delete(y, -1, axis=axis)], axis=axis)
    total = np.cumsum(y, axis=axis, dtype=x.dtype)
    return np.ascontiguousarray(np.flip(total, axis) if reverse else total)


@evaluates("qnn.argmax")
def _argmax(op, x):
    axis = get_int(_p(op, "axis")) % x.ndim
    if get_bool(_p(op, "select_last_index")):  # the last of equal maxima
        idx = x.shape[axis] - 1 - np.argmax(np.flip(x, axis), axis=axis)
    else:
        idx = np.argmax(x, axis=axis)
    if get_bool(_p(op, "keepdims"), True):
        idx = np.expand_dims(idx, axis)
    return np.ascontiguousarray(idx, dtype=np.int64)


EVAL["qnn.reduce_mean"] = _reduce(np.mean)
EVAL["qnn.reduce_sum"] = _reduce(np.sum)
EVAL["qnn.reduce_max"] = _reduce(np.max, -np.inf)
EVAL["qnn.reduce_min"] = _reduce(np.min, np.inf)


# -------------------------------------------------------------------- shape


@evaluates("qnn.reshape")
def _reshape(op, x):
    shape = list(get_ints(_p(op, "shape")))
    for i in get_ints(_p(op, "copy_dims")):  # a copied (symbolic) dim of the input
        shape[i] = x.shape[i]
    return x.reshape(shape)


@evaluates("qnn.transpose")
def _transpose(op, x):
    return np.ascontiguousarray(x.transpose(get_ints(_p(op, "perm"))))


@evaluates("qnn.broadcast")
def _broadcast(op, x):
    target = list(get_ints(_p(op, "shape")))
    for i, d in enumerate(target):  # -1 keeps the input's right-aligned dim
        if d == -1:
            target[i] = x.shape[i - len(target) + x.ndim]
    return np.ascontiguousarray(np.broadcast_to(x, np.broadcast_shapes(x.shape, target)))


@evaluates("qnn.concat")
def _concat(op, *xs):
    return np.concatenate(xs, axis=get_int(_p(op, "axis")))


@evaluates("qnn.split")
def _split(op, x):
    sizes = get_ints(_p(op, "sizes"))
    return [np.ascontiguousarray(p) for p in
            np.split(x, np.cumsum(sizes)[:-1], axis=get_int(_p(op, "axis")))]


@evaluates("qnn.slice")
def _slice(op, x):
    index = [slice(None)] * x.ndim
    for st, en, ax, sp in zip(*(get_ints(_p(op, k)) for k in ("starts", "ends", "axes", "steps")),
                              strict=True):
        index[ax] = slice(st, en, sp)
    return np.ascontiguousarray(x[tuple(index)])


@evaluates("qnn.gather")
def _gather(op, x, idx):
    return np.take(x, idx, axis=get_int(_p(op, "axis")))


@evaluates("qnn.gather_elements")
def _gather_elements(op, x, idx):
    axis = get_int(_p(op, "axis")) % x.ndim
    # the indices may be smaller than x off the axis (torch.gather): crop x to them
    crop = tuple(slice(None) if a == axis else slice(0, d) for a, d in enumerate(idx.shape))
    idx = np.where(idx < 0, idx + x.shape[axis], idx)
    return np.ascontiguousarray(np.take_along_axis(x[crop], idx, axis=axis))


@evaluates("qnn.gather_nd")
def _gather_nd(op, x, idx):
    b = get_int(_p(op, "batch_dims"))
    k = idx.shape[-1]
    lead = x.shape[:b]
    idx = np.where(idx < 0, idx + np.array(x.shape[b:b + k], idx.dtype), idx)
    xs = x.reshape(-1, *x.shape[b:])  # one batch axis
    ids = idx.reshape(xs.shape[0], -1, k)  # [batch, points, k]
    batch = np.arange(xs.shape[0])[:, None]
    picked = xs[(batch, *(ids[..., j] for j in range(k)))]
    return np.ascontiguousarray(picked.reshape(*lead, *idx.shape[b:-1], *x.shape[b + k:]))


@evaluates("qnn.pad")
def _pad(op, x):
    pads = get_ints(_p(op, "pads"))
    r = x.ndim
    width = [(pads[i], pads[i + r]) for i in range(r)]
    mode = get_str(_p(op, "mode"), "constant")
    if mode == "constant":
        return np.pad(x, width, constant_values=get_float(_p(op, "value")))
    return np.pad(x, width, mode={"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode])
