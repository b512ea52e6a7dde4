"""The kernel table's float layers: conv and its epilogues, conv_transpose, dense, matmul,
pooling, softmax, layer norm, erf, gelu, batch norm, resize, cast (see `qcc.runtime.ops`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
from xdsl.dialects.builtin import Float16Type, Float32Type

from qcc.dialects import qnn, quant
from qcc.dialects.base import get_bool, get_float, get_int, get_ints, get_str
from qcc.dialects.qnn_eval import EVAL, channel
from qcc.runtime import half
from qcc.runtime import kernels as C
from qcc.runtime.kernel_table import ELTWISE, Kernel, _p, is_f32, kernel

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

    def run(x, w, b=None, out=None, residual=None, gelu=False, fake_quant=None):
        """x @ w^T + b, then the epilogue of `patterns.dense_epilogues`: + residual,
        GELU, the fake-quant (the steps' own bits, in the dense's pass when it runs
        on the compiled kernel, else one after the other)."""
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        o2 = None if out is None else out.reshape(-1, w.shape[0])
        r2 = None if residual is None else residual.reshape(-1, w.shape[0])
        post = r2 is not None or gelu or fake_quant is not None
        y = fast(x2, w, b, out=o2, residual=r2, gelu=gelu, fake_quant=fake_quant) \
            if fast is not None and post else None
        if y is None:
            y = fast(x2, w, b, out=o2) if fast is not None else None
            if y is None:
                y = dense(x2, w, b, out=o2)
            if r2 is not None:
                y = np.add(y, r2, out=y)
            if gelu:
                y = C.gelu(y, out=y, fake_quant=fake_quant)
            elif fake_quant is not None:
                s, z, lo, hi = fake_quant
                y = ELTWISE.fake_quant(y, np.float32([s]), np.float32([z]), lo, hi, out=y)
        return y.reshape(*lead, w.shape[0])

    run.dense_epilogue = True
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
