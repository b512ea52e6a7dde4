"""The runtime's kernel table: one table, filled by one decorator, read when a plan is
compiled.

An entry maps (op class, operand kind) to a *builder*. The kind is `"int"` when the
op's first operand has an integer or quantized element type, `"float"` otherwise
(read from the IR's types once, at plan time); an entry registered without a kind
serves both. A builder runs once per op of a plan: it decodes the op's attributes
(strides, pads, qtypes, multipliers, zero points), packs the constant operands it
is given, and returns the step's function of arrays (a `Kernel`). Nothing is
decided again when the step runs.

Float layers go to the compiled kernels (`qcc.runtime.kernels`), integer layers to
`qcc.runtime.int8`, the Ascend ops to `qcc.runtime.ascend_ops`, reshape / transpose /
split to `qcc.runtime.shape_ops` (attributes decoded here, not on every call); the
other element-wise, shape and normalization ops run their numpy semantics from
`qcc.dialects.qnn_eval`, the same functions canonicalize folds constants with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
from xdsl.dialects.builtin import AnyFloat, Float16Type, Float32Type, TensorType, f32
from xdsl.ir import Operation

from qcc.dialects import qnn, quant
from qcc.dialects.base import get_bool, get_float, get_int, get_ints, get_str
from qcc.dialects.qnn_eval import EVAL, channel
from qcc.runtime import half
from qcc.runtime import kernels as C


def _eltwise_module() -> Any:
    """The compiled element-wise kernels (runtime/_eltwise.pyx), or None when the
    numpy kernels run (QCC_REFERENCE_KERNELS=1, an uncompiled checkout)."""
    if not C.compiled:
        return None
    try:
        from qcc.runtime import _eltwise
    except ImportError:
        return None
    return _eltwise


ELTWISE = _eltwise_module()

Consts = Sequence["np.ndarray | None"]
"""Per operand of the op: its array when it is a constant of the plan, else None."""


@dataclass(frozen=True)
class Kernel:
    """A step's function, built once per op: `fn(*arrays)`, one array per operand,
    returns one array per result (a tuple for several)."""

    fn: Callable[..., Any]
    fresh: bool = False
    """The result is a new array (never a view of an argument): followers may
    update it in place."""
    takes_out: bool = False
    """`fn(*arrays, out=buffer)` writes into a preallocated C-contiguous float32
    buffer of the result's shape and returns it."""


Builder = Callable[[Operation, Consts], "Kernel | Callable[..., Any]"]
TABLE: dict[tuple[type, str | None], Builder] = {}


def kernel(*op_types: type, on: str | None = None) -> Callable[[Builder], Builder]:
    """Register a builder for `op_types` on operands of kind `on` ("float", "int",
    or None for both)."""
    assert on in (None, "float", "int")

    def register(fn: Builder) -> Builder:
        for t in op_types:
            TABLE[(t, on)] = fn
        return fn

    return register


def operand_kind(op: Operation) -> str:
    """"int" when the first operand holds integers or quantized integers."""
    if not op.operands:
        return "float"
    t = op.operands[0].type
    if not isinstance(t, TensorType):
        return "float"
    return "float" if isinstance(t.element_type, AnyFloat) else "int"


def build(op: Operation, consts: Consts) -> Kernel | None:
    """The kernel of `op` (None when the table has none)."""
    builder = TABLE.get((type(op), operand_kind(op))) or TABLE.get((type(op), None))
    if builder is None:
        return None
    k = builder(op, consts)
    return k if isinstance(k, Kernel) else Kernel(k)


def is_f32(value) -> bool:
    t = value.type
    return isinstance(t, TensorType) and isinstance(t.element_type, Float32Type)


def _p(op, key: str):
    return op.properties.get(key)


# Ops of qnn_eval whose result is a new array, never a view of an operand.
_FRESH_EVAL = {"qnn.relu", "qnn.clip", "qnn.add", "qnn.sub", "qnn.mul", "qnn.batch_norm",
               "qnn.scale", "qnn.gelu", "qnn.sigmoid", "qnn.softmax", "qnn.layer_norm",
               "qnn.matmul", "qnn.global_avg_pool"}


def _eval_builder(evaluate: Callable[..., Any], fresh: bool) -> Builder:
    return lambda op, consts: Kernel(partial(evaluate, op), fresh=fresh)


for _op in qnn.QNN_OPS:
    if _op.name in EVAL:
        TABLE[(_op, None)] = _eval_builder(EVAL[_op.name], _op.name in _FRESH_EVAL)


# ------------------------------------------------------------------ layers


@kernel(qnn.ConvOp, on="float")
def _conv(op, consts):
    return conv_kernel(op, constant_weights=len(consts) > 1 and consts[1] is not None)


@dataclass(frozen=True)
class Epilogue:
    """What a float conv's compiled kernel applies to each finished output, in this
    order (runtime/_common.h): a batch_norm's per-channel affine (mul, shift), a
    residual (one more operand of the step, a float32 tensor of the output's shape,
    added), an activation (see `_conv.conv`), a fake-quant (scales, zero points,
    qmin, qmax)."""

    affine: tuple | None = None
    residual: bool = False
    activation: Any = None
    fake_quant: tuple | None = None

    @property
    def stage(self) -> int:
        """How far the chain got: 0 nothing, 1 affine, 2 residual, 3 activation,
        4 fake-quant."""
        return 4 if self.fake_quant is not None else 3 if self.activation is not None \
            else 2 if self.residual else 1 if self.affine is not None else 0


@dataclass(frozen=True)
class ConvSpec:
    """The attributes and epilogue of a compiled float conv step, kept on its fn
    (`fn.conv_spec`) for qcc.runtime.blocked, which runs the conv on other layouts."""

    strides: Any
    pads: Any
    dilations: Any
    groups: int
    epilogue: Epilogue | None


def conv_kernel(op, activation: Any = None, epilogue: Epilogue | None = None,
                constant_weights: bool = False) -> Kernel:
    """The float conv's step; `activation` (None, "relu" or ("clip", lo, hi)) or an
    `epilogue` is applied by the compiled conv to each output once its sum is
    complete. With a residual, the step takes it after the conv's own operands. With
    `constant_weights`, the step keeps the weights packed for the GEMM (packed on its
    first run, owned by the step: `_conv.WeightPack`)."""
    strides, pads = get_ints(_p(op, "strides")), get_ints(_p(op, "pads"))
    dilations, groups = get_ints(_p(op, "dilations")), get_int(_p(op, "groups"), 1)
    if epilogue is None and activation is not None:
        epilogue = Epilogue(activation=activation)
    n_conv = len(op.operands)
    if C.Conv is None:   # the numpy kernels (epilogues are fused only when compiled)
        assert epilogue is None, "conv epilogues need the compiled kernels"

        def reference(x, w, b=None, out=None):
            return C.conv(x, w, b, strides, pads, dilations, groups)

        return Kernel(reference, fresh=True, takes_out=False)
    # decoded once (_conv.Conv): a call costs a few checks
    pack = C.WeightPack() if constant_weights and C.WeightPack is not None else None
    if epilogue is None:
        conv = C.Conv(strides, pads, dilations, groups, pack=pack)

        def run(x, w, b=None, out=None):
            return conv(x, w, b, out=out)

        run.conv_spec = ConvSpec(strides, pads, dilations, groups, None)  # type: ignore[attr-defined]
        return Kernel(run, fresh=True, takes_out=True)
    spec = ConvSpec(strides, pads, dilations, groups, epilogue)
    act, fq, affine = epilogue.activation, epilogue.fake_quant, epilogue.affine
    conv = C.Conv(strides, pads, dilations, groups, act, fq, affine, pack)
    if not epilogue.residual:
        def activated(*args, out=None):
            return conv(args[0], args[1], args[2] if n_conv > 2 else None, out=out)
        activated.conv_spec = spec  # type: ignore[attr-defined]
        return Kernel(activated, fresh=True, takes_out=True)
    plain = C.Conv(strides, pads, dilations, groups, None, None, affine, pack)

    def with_residual(*args, out=None):
        x, w, b, skip = args[0], args[1], args[2] if n_conv > 2 else None, args[n_conv]
        if out is not None and skip.shape == out.shape and skip.dtype == np.float32:
            return conv(x, w, b, out=out, residual=skip)
        # a run without the shared buffers, or a skip that broadcasts: unfused
        y = plain(x, w, b)
        return _epilogue_in_place(np.add(y, skip), act, fq)

    with_residual.conv_spec = spec  # type: ignore[attr-defined]
    return Kernel(with_residual, fresh=True, takes_out=True)


def _epilogue_in_place(y: np.ndarray, activation: Any, fake_quant: tuple | None
                       ) -> np.ndarray:
    """The conv epilogue's activation and fake-quant on the float32 array y."""
    if activation is not None:
        y = ELTWISE.activation(y, *activation_args(activation), out=y)
    if fake_quant is not None:
        s, z, qmin, qmax = fake_quant
        y = ELTWISE.fake_quant(y, s, z, qmin, qmax, 1 if s.size > 1 else None, out=y)
    return y


def epilogue_runs(conv_op) -> bool:
    """Whether the compiled conv runs `conv_op` (float32) with an epilogue."""
    return C.compiled and ELTWISE is not None and \
        all(is_f32(v) for v in conv_op.operands) and is_f32(conv_op.results[0])


def extend_epilogue(conv_op, epilogue: Epilogue, op, params: Sequence[np.ndarray]
                    ) -> Epilogue | None:
    """`epilogue` followed by `op` (a batch_norm of constants `params`, an activation
    or a fake-quant of the conv's result, its only user) when the compiled float conv
    `conv_op` can run it; else None. (A residual add is matched by the executor: it
    adds an operand.)"""
    if not (epilogue_runs(conv_op) and op.operands and is_f32(op.operands[0])
            and is_f32(op.results[0])):
        return None
    if isinstance(op, qnn.BatchNormOp):
        if epilogue.stage >= 1 or len(params) != 4 or \
                any(p.dtype != np.float32 for p in params):
            return None
        return replace(epilogue, affine=batch_norm_affine(op, *params))
    if isinstance(op, quant.FakeQuantOp):
        if len(op.operands) != 1 or epilogue.stage >= 4:
            return None
        qtype: Any = op.properties["qtype"]
        if qtype.axis not in (None, 1):
            return None
        fq = (np.asarray(qtype.scales, np.float32), np.asarray(qtype.zero_points, np.float32),
              qtype.storage_min, qtype.storage_max)
        return replace(epilogue, fake_quant=fq)
    if len(op.operands) != 1 or epilogue.stage >= 3:
        return None
    act = activation_of(op)
    return None if act is None else replace(epilogue, activation=act)


def activation_of(op) -> Any:
    """The conv / _eltwise activation computing the one-operand op `op`, or None."""
    if isinstance(op, qnn.ReluOp):
        return "relu"
    if isinstance(op, qnn.ClipOp):
        return ("clip", *_clip_bounds(op))
    if isinstance(op, qnn.HardSwishOp):
        return "hard_swish"
    if isinstance(op, qnn.HardSigmoidOp):
        return ("hard_sigmoid", np.float32(get_float(_p(op, "alpha"), 0.2)),
                np.float32(get_float(_p(op, "beta"), 0.5)))
    if isinstance(op, qnn.SigmoidOp):
        return "sigmoid"
    return None


def activation_args(act: Any) -> tuple[str, Any, Any]:
    """(kind, a, b), the arguments of the `_eltwise` kernels, of an activation as
    `activation_of` gives it (a name, or a name and its two parameters)."""
    return (act, 0.0, 0.0) if isinstance(act, str) else act


def _clip_bounds(op) -> tuple[np.float32, np.float32]:
    return np.float32(get_float(_p(op, "min"))), np.float32(get_float(_p(op, "max")))


@kernel(qnn.HardSwishOp, qnn.HardSigmoidOp, qnn.SigmoidOp, on="float")
def _activation(op, consts):
    """float32: the compiled element-wise kernel (qnn_eval's numbers); else numpy."""
    act = activation_of(op)
    if ELTWISE is None or not (is_f32(op.operands[0]) and is_f32(op.results[0])):
        return Kernel(partial(EVAL[op.name], op), fresh=True)
    kind, a, b = activation_args(act)
    activation = ELTWISE.activation

    def run(x, out=None):
        return activation(x, kind, a, b, out=out)

    return Kernel(run, fresh=True, takes_out=True)


@kernel(qnn.ConvTransposeOp, on="float")
def _conv_transpose(op, consts):
    strides, pads = get_ints(_p(op, "strides")), get_ints(_p(op, "pads"))
    dilations, groups = get_ints(_p(op, "dilations")), get_int(_p(op, "groups"), 1)
    output_padding = get_ints(_p(op, "output_padding"))
    conv_transpose = C.conv_transpose

    def run(x, w, b=None, out=None):
        return conv_transpose(x, w, b, strides, pads, dilations, groups, output_padding,
                              out=out)

    return Kernel(run, fresh=True, takes_out=C.compiled)


@kernel(qnn.DenseOp, on="float")
def _dense(op, consts):
    """sgemm, or on AVX-512 the compiled `_conv.Dense` (weights packed once when they
    are a constant, owned by the step), which falls back to sgemm by returning None."""
    dense, fast = C.dense, C.Dense() if C.Dense is not None else None

    def run(x, w, b=None, out=None):
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        o2 = None if out is None else out.reshape(-1, w.shape[0])
        y = fast(x2, w, b, out=o2) if fast is not None else None
        if y is None:
            y = dense(x2, w, b, out=o2)
        return y.reshape(*lead, w.shape[0])

    return Kernel(run, fresh=True, takes_out=C.compiled)


@kernel(qnn.MatmulOp, on="float")
def _matmul(op, consts):
    if not (C.compiled and all(is_f32(v) for v in op.operands)):
        return Kernel(partial(EVAL["qnn.matmul"], op), fresh=True)
    fast, sgemm = C.fast_matmul, C.batched_matmul
    if fast is None:
        return Kernel(sgemm, fresh=True, takes_out=True)

    def run(a, b, out=None):   # the dense kernel, else (broadcasts, vectors) sgemm
        y = fast(a, b, out=out)
        return sgemm(a, b, out=out) if y is None else y

    return Kernel(run, fresh=True, takes_out=True)


@kernel(qnn.MaxPoolOp)
def _max_pool(op, consts):
    k = get_ints(_p(op, "kernel"))
    strides, pads = get_ints(_p(op, "strides")), get_ints(_p(op, "pads"))
    dilations = get_ints(_p(op, "dilations"), (1,) * len(k))
    ceil_mode = get_bool(_p(op, "ceil_mode"))
    if not is_f32(op.operands[0]):  # integer pooling is exact through the reference kernel
        def exact(x):
            return C.reference_max_pool(x, k, strides, pads, dilations,
                                        ceil_mode).astype(x.dtype)
        return Kernel(exact, fresh=True)
    max_pool = C.max_pool

    def run(x, out=None):
        return max_pool(x, k, strides, pads, dilations, ceil_mode, out=out)

    return Kernel(run, fresh=True, takes_out=C.compiled)


@kernel(qnn.AvgPoolOp, on="float")
def _avg_pool(op, consts):
    k = get_ints(_p(op, "kernel"))
    strides, pads = get_ints(_p(op, "strides")), get_ints(_p(op, "pads"))
    dil = get_ints(_p(op, "dilations"), (1,) * len(k))
    ceil_mode, include = get_bool(_p(op, "ceil_mode")), get_bool(_p(op, "count_include_pad"))
    if any(d != 1 for d in dil):
        def dilated(x):
            return C.reference_avg_pool(C.f32(x), k, strides, pads, ceil_mode, include, dil)
        return Kernel(dilated, fresh=True)
    avg_pool = C.avg_pool

    def run(x, out=None):
        return avg_pool(x, k, strides, pads, ceil_mode, include, out=out)

    return Kernel(run, fresh=True, takes_out=C.compiled)


@kernel(qnn.GlobalAvgPoolOp, on="float")
def _global_avg_pool(op, consts):
    if not (C.compiled and is_f32(op.operands[0])):
        return Kernel(partial(EVAL["qnn.global_avg_pool"], op), fresh=True)
    return Kernel(C.global_avg_pool, fresh=True, takes_out=True)


@kernel(qnn.SoftmaxOp, on="float")
def _softmax(op, consts):
    if not (C.compiled and is_f32(op.operands[0])):
        return Kernel(partial(EVAL["qnn.softmax"], op), fresh=True)
    axis, softmax = get_int(_p(op, "axis"), -1), C.softmax

    def run(x, out=None):
        return softmax(x, axis, out=out)

    return Kernel(run, fresh=True, takes_out=True)


@kernel(qnn.LayerNormOp, on="float")
def _layer_norm(op, consts):
    """The compiled layer norm (mean and variance summed in double, then float32
    steps as numpy's: (x - mean) / sqrt(var + eps) * scale + bias)."""
    if not (C.compiled and all(is_f32(v) for v in op.operands)):
        return Kernel(partial(EVAL["qnn.layer_norm"], op), fresh=True)
    return layer_norm_kernel(get_int(_p(op, "axis"), -1), get_float(_p(op, "epsilon"), 1e-5))


def layer_norm_kernel(axis: int, epsilon: float,
                      fake_quant: tuple[float, float, float, float] | None = None) -> Kernel:
    """`fn(x, scale, bias=None, out=None)`: layer norm of x over dims axis.. (also
    the step of a decomposed layer norm, `qcc.runtime.patterns`), then the per-tensor
    fake-quant (scale, zero point, qmin, qmax) if given, applied as it writes (the
    fake-quant step's bits)."""
    layer_norm = C.layer_norm

    def run(x, scale, bias=None, out=None):
        return layer_norm(x, scale, bias, axis, epsilon, out=out, fake_quant=fake_quant)

    return Kernel(run, fresh=True, takes_out=True)


@kernel(qnn.ErfOp, on="float")
def _erf(op, consts):
    """The compiled float32 erf (1.14 ulp at most; scipy's for other float types)."""
    if not (C.compiled and is_f32(op.operands[0]) and is_f32(op.results[0])):
        return Kernel(partial(EVAL["qnn.erf"], op), fresh=True)
    erf = C.erf

    def run(x, out=None):
        return erf(x, out=out)

    return Kernel(run, fresh=True, takes_out=True)


@kernel(qnn.GeluOp, on="float")
def _gelu(op, consts):
    """The compiled float32 GELU, (x * (erf(x / sqrt(2)) + 1)) * 0.5 in float32 steps
    (numpy's float64 formula for other types and for approximate="tanh")."""
    if not (C.compiled and is_f32(op.operands[0]) and is_f32(op.results[0])
            and get_str(_p(op, "approximate"), "none") == "none"):
        return Kernel(partial(EVAL["qnn.gelu"], op), fresh=True)
    return gelu_kernel()


def gelu_kernel(fake_quant: tuple[float, float, float, float] | None = None) -> Kernel:
    """`fn(x, out=None)`: the compiled float32 GELU (also the step of a GELU exported
    as Div, Erf, Add, Mul, Mul: `qcc.runtime.patterns`), then the per-tensor
    fake-quant (scale, zero point, qmin, qmax) if given, applied as it writes (the
    fake-quant step's bits)."""
    gelu = C.gelu

    def run(x, out=None):
        return gelu(x, out=out, fake_quant=fake_quant)

    return Kernel(run, fresh=True, takes_out=True)


def batch_norm_affine(op, scale, bias, mean, var) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) with batch_norm(x) = x * a + b, as `qnn_eval` computes them."""
    eps = get_float(_p(op, "epsilon"), 1e-5)
    a = (scale / np.sqrt(var.astype(np.float64) + eps)).astype(np.float32)
    return a, (bias - mean * a).astype(np.float32)


@kernel(qnn.BatchNormOp, on="float")
def _batch_norm(op, consts):
    """x * a + b with a and b computed once when the statistics are constants."""
    if any(c is None for c in consts[1:]):
        return Kernel(partial(EVAL["qnn.batch_norm"], op), fresh=True)
    a, b = batch_norm_affine(op, *consts[1:])

    def run(x, *params):
        return x * channel(a, x.ndim) + channel(b, x.ndim)

    return Kernel(run, fresh=True)


@kernel(qnn.ResizeOp)
def _resize(op, consts):
    """Any dtype for nearest (a gather); linear and cubic return x's dtype."""
    dims = get_ints(_p(op, "sizes"))
    options = dict(scales=qnn.ResizeOp.floats(_p(op, "scales")),
                   roi=qnn.ResizeOp.floats(_p(op, "roi")),
                   cubic_coeff_a=get_float(_p(op, "cubic_coeff_a"), -0.75),
                   exclude_outside=get_bool(_p(op, "exclude_outside")),
                   extrapolation_value=get_float(_p(op, "extrapolation_value")),
                   antialias=get_bool(_p(op, "antialias")))
    modes = (get_str(_p(op, "mode"), "nearest"),
             get_str(_p(op, "coordinate_transformation_mode"), "half_pixel"),
             get_str(_p(op, "nearest_mode"), "round_prefer_floor"))
    resize = C.resize

    def run(x):
        sizes = [x.shape[i] if d == -1 else d for i, d in enumerate(dims)]
        return resize(np.asarray(x), sizes, *modes, **options)

    return run


@kernel(qnn.CastOp)
def _cast(op, consts):
    """float16 <-> float32 through `qcc.runtime.half` (numpy's numbers, faster)."""
    src, to = op.operands[0].type.element_type, op.properties["to"]
    if isinstance(src, Float16Type) and isinstance(to, Float32Type):
        return Kernel(half.to_f32, fresh=True)
    if isinstance(src, Float32Type) and isinstance(to, Float16Type) and \
            not get_bool(_p(op, "saturate")):
        return Kernel(half.to_f16, fresh=True)
    return Kernel(partial(EVAL["qnn.cast"], op))


# -------------------------------------------------------------------- quant


@kernel(quant.ObserveOp)
def _observe(op, consts):
    return lambda x: x  # calibration replaces this kernel to collect statistics


@kernel(quant.FakeQuantOp)
def _fake_quant(op, consts):
    qtype = op.properties["qtype"]
    if len(op.operands) == 1:
        compiled = _compiled_fake_quant(op)
        return compiled if compiled is not None else Kernel(qtype.fake_quant, fresh=True)
    # range learning: parameters are values (float zero point, rounded here)
    qmin, qmax = qtype.storage_min, qtype.storage_max
    axis = qtype.axis

    def learned(x, scale, zero_point):
        shape = [1] * x.ndim
        if axis is not None:
            shape[axis] = -1
        s = np.asarray(scale, np.float32).reshape(shape if scale.size > 1 else ())
        z = np.rint(np.asarray(zero_point, np.float32)).reshape(
            shape if zero_point.size > 1 else ())
        q = np.clip(np.rint(x / s) + z, qmin, qmax)
        return ((q - z) * s).astype(np.float32)

    return Kernel(learned, fresh=True)


def _compiled_fake_quant(op) -> Kernel | None:
    """A float32 fake-quant with its parameters as attributes on the compiled kernel:
    the numbers of `fake_quant_into` (those of qtype.fake_quant but for NaN, which
    stays NaN)."""
    if ELTWISE is None or not (is_f32(op.operands[0]) and is_f32(op.output)) or \
            quant.quantized_element(op.output.type) is not None:
        return None
    qtype: Any = op.properties["qtype"]
    s = np.asarray(qtype.scales, np.float32)
    z = np.asarray(qtype.zero_points, np.float32)
    qmin, qmax, axis = qtype.storage_min, qtype.storage_max, qtype.axis
    fake_quant, copy = ELTWISE.fake_quant, ELTWISE.transpose
    params = None if axis is not None or s.size != 1 or z.size != 1 else \
        (float(s.reshape(-1)[0]), float(z.reshape(-1)[0]), float(qmin), float(qmax))

    def run(x, out=None):
        if axis is not None and (axis >= x.ndim or x.shape[axis] != s.size):
            raise ValueError(f"{qtype} does not fit an array of shape {x.shape}")
        if params is not None and out is not None and isinstance(x, np.ndarray) \
                and x.dtype == np.float32 and not x.flags.c_contiguous:
            return copy(x, None, out=out, fake_quant=params)   # a view: one pass
        return fake_quant(x, s, z, qmin, qmax, axis, out=out)

    return Kernel(run, fresh=True, takes_out=True)


def per_tensor_fake_quant(op: Any) -> tuple[float, float, float, float] | None:
    """(scale, zero point, qmin, qmax) of a float32 -> float32 fake-quant with one
    scale that the compiled fake-quant kernel runs (the values a kernel applies to its
    output as it writes it), or None for another op."""
    if not isinstance(op, quant.FakeQuantOp) or len(op.operands) != 1 or \
            _compiled_fake_quant(op) is None:
        return None
    qtype: Any = op.properties["qtype"]
    s = np.asarray(qtype.scales, np.float32).reshape(-1)
    z = np.asarray(qtype.zero_points, np.float32).reshape(-1)
    if qtype.axis is not None or s.size != 1 or z.size != 1:
        return None
    return float(s[0]), float(z[0]), float(qtype.storage_min), float(qtype.storage_max)


def fake_quant_params(qtype, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 scales and zero points of `qtype` shaped to broadcast at rank `ndim`."""
    shape = [1] * ndim
    if qtype.axis is not None:
        shape[qtype.axis] = -1
    return (np.asarray(qtype.scales, np.float32).reshape(shape),
            np.asarray(qtype.zero_points, np.float32).reshape(shape))


def fake_quant_into(s: np.ndarray, z: np.ndarray, qmin: float, qmax: float,
                    x: np.ndarray) -> np.ndarray:
    """qtype.fake_quant(x) computed in place on the float32 buffer `x` (the same
    numbers: x / s and rint in float32, integers exact in float32, (q - z) * s)."""
    np.divide(x, s, out=x)
    np.rint(x, out=x)
    np.add(x, z, out=x)
    np.clip(x, qmin, qmax, out=x)
    np.subtract(x, z, out=x)
    np.multiply(x, s, out=x)
    return x


def fold_at_compile_time(op) -> bool:
    """Ops the plan evaluates once when all their operands are constants (the
    quantized and fake-quantized weights and biases)."""
    from qcc.dialects import ascend
    return isinstance(op, (quant.FakeQuantOp, quant.QuantizeOp, ascend.WeightQuantOp))


_BINARY_IN_PLACE: dict[type, np.ufunc] = {qnn.AddOp: np.add, qnn.SubOp: np.subtract,
                                         qnn.MulOp: np.multiply, qnn.DivOp: np.divide}
"""Float element-wise ops whose `y op constant` runs in place (numpy's ufunc with
out=, the same numbers as without it)."""


@kernel(qnn.AddOp, qnn.SubOp, qnn.MulOp, qnn.DivOp, on="float")
def _binary(op, consts):
    """float32 `a op b` (broadcasting) into the step's preallocated buffer: numpy's
    ufunc with out=, the same numbers as qnn_eval's without it."""
    if len(op.operands) != 2 or not all(is_f32(v) for v in (*op.operands, op.results[0])):
        return Kernel(partial(EVAL[op.name], op), fresh=True)
    ufunc = _BINARY_IN_PLACE[type(op)]
    compiled = add_activation(op)
    if compiled is not None:
        return compiled

    def run(a, b, out=None):
        return ufunc(a, b, out=out)

    return Kernel(run, fresh=True, takes_out=True)


def add_activation(op, then: Operation | None = None) -> Kernel | None:
    """The compiled, threaded a + b of the float32 add `op` of two operands of its
    result's static shape, followed by the activation op `then` (its only user) if
    given: numpy's sum, then the activation's numbers, in one pass (an int8 model's
    residual add and relu between two quantized convs); None when it does not apply."""
    if ELTWISE is None or not isinstance(op, qnn.AddOp) or len(op.operands) != 2:
        return None
    t = op.results[0].type
    if not all(is_f32(v) and v.type == t for v in (*op.operands, op.results[0])) \
            or any(d < 0 for d in t.get_shape()):  # type: ignore[attr-defined]
        return None
    act = None if then is None else activation_of(then)
    if then is not None and (act is None or len(then.operands) != 1
                             or not (is_f32(then.results[0]) and then.results[0].type == t)):
        return None
    kind, lo, hi = (None, 0.0, 0.0) if act is None else activation_args(act)
    add = ELTWISE.add

    def run(a, b, out=None):
        return add(a, b, kind, lo, hi, out=out)

    return Kernel(run, fresh=True, takes_out=True)


def _fits_in(c: tuple[int, ...], x: tuple[int, ...]) -> bool:
    """Whether a constant of shape `c` broadcasts against `x` without growing it,
    whatever sizes x's symbolic dims take (its dims other than 1 are x's static ones)."""
    return len(c) <= len(x) and all(
        d == 1 or d == e for d, e in zip(reversed(c), reversed(x), strict=False))


def in_place(op, params: Sequence[np.ndarray] = ()
             ) -> Callable[[np.ndarray], np.ndarray] | None:
    """For an op that can run in place on its first operand's fresh float32 buffer
    (fake-quant, relu, clip, hard_swish, hard_sigmoid, sigmoid, batch_norm, scale of
    float32 constants, add / sub / mul / div of a float32 constant; `params` the constant arrays of its other operands), the function
    doing so; None otherwise."""
    if not is_f32(op.operands[0]) or not is_f32(op.results[0]):
        return None
    if isinstance(op, qnn.BatchNormOp):
        if any(p.dtype != np.float32 for p in params):
            return None
        a, b = batch_norm_affine(op, *params)
        ndim = len(op.operands[0].type.get_shape())  # type: ignore[attr-defined]
        a, b = channel(a, ndim), channel(b, ndim)
        return lambda y: np.add(np.multiply(y, a, out=y), b, out=y)
    if isinstance(op, qnn.ScaleOp):   # x * scale (+ bias) per channel, as qnn_eval
        shape = tuple(op.operands[0].type.get_shape())  # type: ignore[attr-defined]
        if not shape or len(params) != len(op.operands) - 1 or any(
                p.dtype != np.float32 for p in params):
            return None
        axis = get_int(_p(op, "axis"), 1)
        per_channel = [channel(p, len(shape), axis) for p in params]
        if not all(_fits_in(v.shape, shape) for v in per_channel):
            return None
        s = per_channel[0]
        if len(per_channel) == 1:
            return lambda y: np.multiply(y, s, out=y)
        b = per_channel[1]
        return lambda y: np.add(np.multiply(y, s, out=y), b, out=y)
    if type(op) in _BINARY_IN_PLACE:
        c = params[0] if len(params) == 1 else None
        if c is None or c.dtype != np.float32 or \
                not _fits_in(c.shape, tuple(op.operands[0].type.get_shape())):
            return None  # only `y op constant` keeping y's shape and float32
        ufunc = _BINARY_IN_PLACE[type(op)]
        return lambda y: ufunc(y, c, out=y)
    if len(op.operands) != 1:
        return None
    if isinstance(op, quant.FakeQuantOp):
        if quant.quantized_element(op.output.type) is not None or \
                op.output.type.element_type != f32:
            return None
        qtype: Any = op.properties["qtype"]
        compiled = _compiled_fake_quant(op)
        if compiled is not None:
            f = _lanewise(partial(_out_is_arg, compiled.fn), qtype.axis is None)
            fq = per_tensor_fake_quant(op)
            if fq is not None:   # for kernels fusing it (qcc.runtime.blocked)
                f.fake_quant = fq  # type: ignore[attr-defined]
            return f
        ndim = len(op.operands[0].type.get_shape())  # type: ignore[attr-defined]
        s, z = fake_quant_params(qtype, ndim)
        return partial(fake_quant_into, s, z, qtype.storage_min, qtype.storage_max)
    if isinstance(op, qnn.ReluOp):
        return _lanewise(lambda y: np.maximum(y, np.float32(0), out=y))
    if isinstance(op, qnn.ClipOp):
        lo, hi = _clip_bounds(op)
        return _lanewise(lambda y: np.clip(y, lo, hi, out=y))
    if isinstance(op, (qnn.HardSwishOp, qnn.HardSigmoidOp, qnn.SigmoidOp)) and \
            ELTWISE is not None:
        kernel = build(op, [None])
        return None if kernel is None else _lanewise(partial(_out_is_arg, kernel.fn))
    return None


def _out_is_arg(fn: Callable[..., Any], y: np.ndarray) -> Any:
    return fn(y, out=y)


def _lanewise(f: Callable[..., Any], lanewise: bool = True) -> Callable[..., Any]:
    """f, marked as computing each element from itself alone when `lanewise` (so it
    runs on any layout of the tensor: qcc.runtime.blocked)."""
    f.lanewise = lanewise  # type: ignore[attr-defined]
    return f


def fuse(producer: Kernel, followers: Sequence[Callable[[np.ndarray], np.ndarray]],
         fallbacks: Sequence[Callable[[np.ndarray], np.ndarray]]) -> Kernel:
    """A kernel running `producer`, then each follower in place on its result (the
    follower's own kernel, `fallbacks[i]`, when the result is not a writable
    contiguous float32 array)."""
    fn = producer.fn

    def apply(y):
        if not isinstance(y, np.ndarray) or y.dtype != np.float32 or \
                not y.flags.writeable or not y.flags.c_contiguous:
            for f in fallbacks:
                y = f(y)
            return y
        for f in followers:
            y = f(y)
        return y

    if producer.takes_out:
        def fused_out(*args, out=None):
            return apply(fn(*args, out=out))
        fused_out.followers = tuple(followers)  # type: ignore[attr-defined]
        return Kernel(fused_out, fresh=True, takes_out=True)
    return Kernel(lambda *args: apply(fn(*args)), fresh=True)


@kernel(quant.QuantizeOp)
def _quantize(op, consts):
    return Kernel(op.properties["qtype"].quantize, fresh=True)


@kernel(quant.DequantizeOp)
def _dequantize(op, consts):
    return Kernel(quant.quantized_element(op.input.type).dequantize, fresh=True)
