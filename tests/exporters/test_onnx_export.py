"""ONNX exporter (`qcc.exporters.onnx.export_onnx`) and the QDQ import it pairs with.

- Round trips ONNX -> `load_onnx` -> `export_onnx` -> onnxruntime equal onnxruntime on
  the original: the qcc.testing models and every light model of the onnx wheel.
- One module per qnn op (and per opset where the export differs), run by
  onnxruntime after export against `qcc.runtime.run` on the module.
- Fake quantization: `quant.fake_quant` is QuantizeLinear + DequantizeLinear that
  onnxruntime runs to qcc's numbers; the frontend reads the pair back as the same
  fake_quant, and imports a model quantized by onnxruntime's `quantize_static`.
- Names, errors, atomic writes.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from xdsl.dialects.builtin import StringAttr, f16, f32, i1, i32

from qcc import ir
from qcc.dialects import qnn, quant
from qcc.dialects.base import DYN
from qcc.dialects.quant import UniformQuantizedType as Q
from qcc.exporters.onnx import ExportError, export_onnx
from qcc.frontends.errors import FrontendError
from qcc.frontends.onnx import load_onnx
from qcc.ir import Graph
from qcc.runtime import run
from qcc.runtime.ops import TABLE
from qcc.testing import models

ort = pytest.importorskip("onnxruntime")

LIGHT = sorted(glob.glob(os.path.join(os.path.dirname(onnx.__file__),
                                      "backend/test/data/light/*.onnx")))
RTOL, ATOL = 1e-4, 1e-5


def ort_run(model: onnx.ModelProto | str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """onnxruntime with graph optimizations off: QDQ runs as written, the same on
    every CPU (`qcc.testing.ort`)."""
    from qcc.testing import ort as exact_ort

    return exact_ort.run(model, feeds)


def assert_same(got: dict, want: dict, rtol: float = RTOL, atol: float = ATOL) -> None:
    assert list(got) == list(want)
    for name, expected in want.items():
        actual = np.asarray(got[name])
        assert actual.shape == expected.shape, name
        assert actual.dtype == expected.dtype, name
        if expected.dtype.kind in "biu":
            np.testing.assert_array_equal(actual, expected, err_msg=name)
        else:
            np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=name)


def rand(*shape: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def fake_quant_ops(module) -> list:
    return [op for op in module.walk() if isinstance(op, quant.FakeQuantOp)]


# ------------------------------------------------------------- round trips


def round_trip(model: onnx.ModelProto, feeds: dict[str, np.ndarray], opset: int = 17):
    exported = export_onnx(load_onnx(model), opset=opset)
    assert_same(ort_run(exported, feeds), ort_run(model, feeds), rtol=1e-5, atol=1e-6)
    return exported


def test_round_trip_resnet18_cifar():
    round_trip(models.resnet18_cifar(batch=2, seed=0), {"input": rand(2, 3, 32, 32, seed=1)})


def test_round_trip_digits_cnn():
    pytest.importorskip("sklearn")
    model, (x_test, _) = models.digits_cnn(batch=16, seed=0)
    round_trip(model, {"x": np.ascontiguousarray(x_test[:16])})


@pytest.mark.parametrize("opset", [13, 17, 20])
def test_round_trip_transformer_block(opset):
    """Also at opset 13 (LayerNormalization expanded) and 20."""
    exported = round_trip(models.transformer_block(batch=2, seq=16, d_model=64, heads=4),
                          {"x": rand(2, 16, 64, seed=2)}, opset=opset)
    ops = {n.op_type for n in exported.graph.node}
    assert ("LayerNormalization" in ops) == (opset >= 17)


def test_light_models_are_found():
    assert len(LIGHT) == 9, LIGHT


@pytest.mark.parametrize("path", LIGHT, ids=lambda p: os.path.basename(p)[:-5])
def test_round_trip_light_model(path):
    """On an input of ones, as the shipped outputs are computed."""
    proto = onnx.load(path)
    init = {t.name for t in proto.graph.initializer}
    (vi,) = [i for i in proto.graph.input if i.name not in init]
    shape = tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
    exported = round_trip(proto, {vi.name: np.ones(shape, np.float32)})
    assert [o.name for o in exported.graph.output] == [o.name for o in proto.graph.output]
    assert [i.name for i in exported.graph.input] == [vi.name]


# --------------------------------------------------------- one op a module

CASES: dict[str, tuple[Callable, tuple[int, ...]]] = {}


def case(*opsets: int):
    """Register a module builder `fn(g) -> outputs` (or `(outputs, feeds)` when
    some inputs need particular values), exported at each of `opsets` (17)."""

    def register(fn):
        CASES[fn.__name__] = (fn, opsets or (17,))
        return fn

    return register


def build(name: str):
    """The module of case `name` and its inputs (random where not given)."""
    fn, _ = CASES[name]
    g = Graph()
    result = fn(g)
    outputs, feeds = result if isinstance(result, tuple) else (result, {})
    module = g.finish(outputs)
    rng = np.random.default_rng(len(name))
    fn_op = ir.main_func(module)
    names, _ = ir.io_names(fn_op)
    for arg, n in zip(fn_op.body.block.args, names, strict=True):
        if n in feeds:
            continue
        shape = tuple(arg.type.get_shape())
        dtype = ir.numpy_dtype(arg.type.element_type)
        if dtype == np.bool_:
            feeds[n] = rng.random(shape) < 0.5
        elif dtype.kind in "iu":
            feeds[n] = rng.integers(-20, 20, shape).astype(dtype)
        else:
            feeds[n] = rng.standard_normal(shape).astype(dtype)
    return module, feeds


def positive(*shape: int) -> np.ndarray:
    return np.random.default_rng(7).uniform(0.1, 3.0, shape).astype(np.float32)


@case()
def conv1d(g):
    x = g.input("x", (2, 3, 10))
    y = qnn.ConvOp.make(x, g.const(rand(4, 3, 3), "w"), g.const(rand(4), "b"), name="conv",
                        strides=(2,), pads=(1, 2), dilations=(2,))
    return {"y": g.add(y)}


@case(13, 17, 21)
def conv2d_grouped(g):
    x = g.input("x", (2, 4, 9, 9))
    y = qnn.ConvOp.make(x, g.const(rand(6, 2, 3, 3), "w"), g.const(rand(6), "b"),
                        strides=(2, 1), pads=(1, 0, 2, 1), dilations=(1, 2), groups=2)
    return {"y": g.add(y)}


@case()
def conv3d(g):
    x = g.input("x", (1, 2, 5, 6, 4))
    return {"y": g.add(qnn.ConvOp.make(x, g.const(rand(3, 2, 2, 3, 2), "w"), pads=(1,) * 6))}


@case()
def conv_transpose(g):
    x = g.input("x", (1, 4, 5, 6))
    y = qnn.ConvTransposeOp.make(x, g.const(rand(4, 3, 3, 3), "w"), g.const(rand(6), "b"),
                                 strides=(2, 2), pads=(1, 0, 1, 1), output_padding=(1, 0),
                                 groups=2)
    return {"y": g.add(y)}


@case()
def dense_2d(g):
    x = g.input("x", (3, 5))
    return {"y": g.add(qnn.DenseOp.make(x, g.const(rand(4, 5), "fc.weight"),
                                        g.const(rand(4), "fc.bias"), name="fc"))}


@case()
def dense_3d(g):
    x = g.input("x", (2, 3, 5))
    return {"y": g.add(qnn.DenseOp.make(x, g.const(rand(4, 5), "fc.weight"),
                                        g.const(rand(4), "fc.bias"), name="fc"))}


@case()
def dense_3d_weight_input(g):
    x, w = g.input("x", (2, 3, 5)), g.input("w", (4, 5))
    return {"y": g.add(qnn.DenseOp.make(x, w))}


@case()
def matmul(g):
    a, b = g.input("a", (2, 3, 4, 5)), g.input("b", (3, 5, 6))
    return {"y": g.add(qnn.MatmulOp.make(a, b))}


@case()
def max_pool(g):
    x = g.input("x", (1, 2, 9, 8))
    return {"y": g.add(qnn.MaxPoolOp.make(x, kernel=(3, 2), strides=(2, 2), pads=(1, 0, 1, 1),
                                          ceil_mode=True, dilations=(2, 1)))}


@case()
def avg_pool(g):
    x = g.input("x", (1, 2, 9, 8))
    return {"y": g.add(qnn.AvgPoolOp.make(x, kernel=(3, 2), strides=(2, 2), pads=(1, 0, 1, 1),
                                          ceil_mode=True, count_include_pad=True))}


@case()
def avg_pool_exclude_pad(g):
    x = g.input("x", (1, 2, 7, 7))
    return {"y": g.add(qnn.AvgPoolOp.make(x, kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1)))}


@case(19)
def avg_pool_dilated(g):
    x = g.input("x", (1, 2, 9, 9))
    return {"y": g.add(qnn.AvgPoolOp.make(x, kernel=(2, 2), strides=(1, 1), dilations=(2, 2)))}


@case()
def global_avg_pool(g):
    return {"y": g.add(qnn.GlobalAvgPoolOp.make(g.input("x", (2, 3, 5, 4))))}


@case()
def batch_norm(g):
    x = g.input("x", (2, 3, 4, 4))
    ops = [g.const(rand(3, seed=i), n) for i, n in enumerate(("gamma", "beta", "mean"))]
    y = qnn.BatchNormOp.make(x, *ops, g.const(positive(3), "var"), epsilon=1e-3)
    return {"y": g.add(y)}


@case()
def scale(g):
    x = g.input("x", (2, 3, 4, 5))
    y = qnn.ScaleOp.make(x, g.const(rand(3), "s"), g.const(rand(3, seed=1), "b"))
    return {"y": g.add(y)}


@case()
def scale_last_axis(g):
    x = g.input("x", (2, 3, 5))
    return {"y": g.add(qnn.ScaleOp.make(x, g.const(rand(5), "s"), axis=-1))}


@case()
def scale_runtime_operands(g):
    x, s, b = g.input("x", (2, 3, 4)), g.input("s", (3,)), g.input("b", (3,))
    return {"y": g.add(qnn.ScaleOp.make(x, s, b))}


@case(13, 17)
def layer_norm(g):
    x = g.input("x", (2, 5, 8))
    y = qnn.LayerNormOp.make(x, g.const(rand(8), "gamma"), g.const(rand(8, seed=1), "beta"),
                             axis=-1, epsilon=1e-3)
    return {"y": g.add(y)}


@case(13, 17)
def layer_norm_axis1_no_bias(g):
    x = g.input("x", (2, 5, 8))
    return {"y": g.add(qnn.LayerNormOp.make(x, g.const(rand(5, 8), "gamma"), axis=1))}


@case()
def softmax(g):
    return {"y": g.add(qnn.SoftmaxOp.make(g.input("x", (2, 5, 3)), axis=1))}


@case()
def lrn(g):
    x = g.input("x", (1, 6, 3, 3))
    return {"y": g.add(qnn.LrnOp.make(x, size=3, alpha=2e-4, beta=0.6, bias=1.5))}


UNARY_CASES = {
    "relu": qnn.ReluOp, "sigmoid": qnn.SigmoidOp, "tanh": qnn.TanhOp, "erf": qnn.ErfOp,
    "exp": qnn.ExpOp, "abs": qnn.AbsOp, "neg": qnn.NegOp, "identity": qnn.IdentityOp,
    "dropout": qnn.DropoutOp, "floor": qnn.FloorOp, "hard_sigmoid": qnn.HardSigmoidOp,
    "leaky_relu": qnn.LeakyReluOp,
}

for _name, _cls in UNARY_CASES.items():
    def _unary(g, cls=_cls):
        return {"y": g.add(cls.make(g.input("x", (2, 3, 4))))}

    _unary.__name__ = _name
    case()(_unary)


@case()
def positive_unary(g):
    """sqrt, log, reciprocal on positive inputs."""
    x = g.input("x", (2, 3))
    return ({"sqrt": g.add(qnn.SqrtOp.make(x)), "log": g.add(qnn.LogOp.make(x)),
             "reciprocal": g.add(qnn.ReciprocalOp.make(x))}, {"x": positive(2, 3)})


@case()
def leaky_relu_alpha(g):
    return {"y": g.add(qnn.LeakyReluOp.make(g.input("x", (2, 3)), alpha=0.3))}


@case()
def hard_sigmoid_params(g):
    return {"y": g.add(qnn.HardSigmoidOp.make(g.input("x", (2, 3)), alpha=0.3, beta=0.4))}


@case(13, 14)
def hard_swish(g):
    return {"y": g.add(qnn.HardSwishOp.make(g.input("x", (2, 3, 4))))}


@case()
def prelu(g):
    x = g.input("x", (2, 3, 4, 4))
    return {"y": g.add(qnn.PreluOp.make(x, g.const(rand(3, 1, 1), "slope")))}


@case(17, 20)
def gelu(g):
    return {"y": g.add(qnn.GeluOp.make(g.input("x", (2, 3, 4))))}


@case(17, 20)
def gelu_tanh(g):
    return {"y": g.add(qnn.GeluOp.make(g.input("x", (2, 3, 4)), approximate="tanh"))}


@case()
def clip(g):
    x = g.input("x", (3, 4))
    return {"clip": g.add(qnn.ClipOp.make(x, min=-1.0, max=2.5)),
            "relu6": g.add(qnn.ClipOp.make(x)),
            "lower": g.add(qnn.ClipOp.make(x, min=-0.5, max=float("inf")))}


@case()
def clip_int(g):
    x = g.input("x", (3, 4), np.int32)
    return {"y": g.add(qnn.ClipOp.make(x, min=-3.0, max=100.0))}


@case()
def cast(g):
    x, n = g.input("x", (2, 3)), g.input("n", (2, 3), np.int64)
    return {"i32": g.add(qnn.CastOp.make(x, to=i32)), "f16": g.add(qnn.CastOp.make(x, to=f16)),
            "bool": g.add(qnn.CastOp.make(x, to=i1)), "f32": g.add(qnn.CastOp.make(n, to=f32))}


BINARY_CASES = {
    "add": qnn.AddOp, "sub": qnn.SubOp, "mul": qnn.MulOp, "div": qnn.DivOp,
    "max": qnn.MaxOp, "min": qnn.MinOp, "equal": qnn.EqualOp, "less": qnn.LessOp,
    "greater": qnn.GreaterOp,
}

for _name, _cls in BINARY_CASES.items():
    def _binary(g, cls=_cls):
        a, b = g.input("a", (2, 3, 4)), g.input("b", (3, 1))
        return {"y": g.add(cls.make(a, b)), "k": g.add(cls.make(a, g.const(np.float32(0.5))))}

    _binary.__name__ = _name
    case()(_binary)


@case()
def equal_int(g):
    a, b = g.input("a", (4, 5), np.int64), g.input("b", (5,), np.int64)
    return ({"y": g.add(qnn.EqualOp.make(a, b))},
            {"a": np.arange(20).reshape(4, 5) % 3, "b": np.arange(5) % 3})


@case()
def div_int(g):
    a, b = g.input("a", (6,), np.int32), g.input("b", (6,), np.int32)
    return ({"y": g.add(qnn.DivOp.make(a, b))},
            {"a": np.array([7, -7, 7, -7, 0, 9], np.int32),
             "b": np.array([2, 2, -2, -2, 3, 4], np.int32)})


@case()
def pow_(g):
    a, b = g.input("a", (2, 3)), g.input("b", (3,))
    return {"y": g.add(qnn.PowOp.make(a, b))}, {"a": positive(2, 3)}


@case()
def logic(g):
    a, b = g.input("a", (2, 3), np.bool_), g.input("b", (3,), np.bool_)
    return {"and": g.add(qnn.AndOp.make(a, b)), "or": g.add(qnn.OrOp.make(a, b)),
            "not": g.add(qnn.NotOp.make(a))}


@case()
def where(g):
    c, a, b = g.input("c", (2, 3), np.bool_), g.input("a", (3,)), g.input("b", (2, 1))
    return {"y": g.add(qnn.WhereOp.make(c, a, b))}


@case(13, 18)
def reductions(g):
    x = g.input("x", (2, 3, 4))
    return {"mean": g.add(qnn.ReduceMeanOp.make(x, axes=(1,))),
            "sum": g.add(qnn.ReduceSumOp.make(x, axes=(), keepdims=False)),
            "max": g.add(qnn.ReduceMaxOp.make(x, axes=(0, -1), keepdims=False)),
            "min": g.add(qnn.ReduceMinOp.make(x, axes=(2,)))}


@case()
def shapes(g):
    x = g.input("x", (2, 3, 4))
    return {"reshape": g.add(qnn.ReshapeOp.make(x, shape=(4, 6))),
            "transpose": g.add(qnn.TransposeOp.make(x, perm=(2, 0, 1))),
            "broadcast": g.add(qnn.BroadcastOp.make(g.input("b", (3, 1)), shape=(2, 3, 4)))}


@case()
def concat(g):
    a, b = g.input("a", (2, 1, 4)), g.input("b", (2, 3, 4))
    return {"y": g.add(qnn.ConcatOp.make([a, b, a], axis=1))}


@case()
def split(g):
    op = g.op(qnn.SplitOp.make(g.input("x", (2, 6, 3)), axis=1, sizes=(1, 3, 2)))
    return {f"part{i}": r for i, r in enumerate(op.results)}


@case()
def slice_(g):
    x = g.input("x", (5, 6, 7))
    return {"forward": g.add(qnn.SliceOp.make(x, starts=(1, -5), ends=(4, 100), axes=(0, 2),
                                              steps=(2, 1))),
            "backward": g.add(qnn.SliceOp.make(x, starts=(4, 5), ends=(-7, 0), axes=(1, 2),
                                               steps=(-2, -3))),
            "empty": g.add(qnn.SliceOp.make(x, starts=(3,), ends=(1,), axes=(0,), steps=(1,)))}


@case()
def gather(g):
    x = g.input("x", (5, 4))
    idx = g.const(np.array([[0, -1], [2, 3]], np.int64), "idx")
    return {"rows": g.add(qnn.GatherOp.make(x, idx)),
            "cols": g.add(qnn.GatherOp.make(x, g.input("i", (3,), np.int32), axis=1))}, {
        "i": np.array([3, 0, -2], np.int32)}


@case()
def gather_elements(g):
    """The indices may be smaller than x off the axis (torch.gather), and negative."""
    x = g.input("x", (3, 5))
    idx = g.const(np.array([[4, -1, 0], [2, 2, -5]], np.int64), "idx")
    return {"y": g.add(qnn.GatherElementsOp.make(x, idx, axis=1))}


@case(13, 17)
def run_time_shapes(g):
    """The run-time shape ops on a symbolic batch (their oracle is onnx.reference in
    tests/dialects/test_qnn_dynamic.py; here onnxruntime runs their export)."""
    dyn, i64 = DYN, np.int64
    x = g.input("x", (None, 5))
    s = g.add(qnn.ShapeOfOp.make(x))
    r = g.add(qnn.RangeOp.make(g.const(np.array(0, i64)), g.input("n", (), i64),
                               g.const(np.array(2, i64)), dims=(dyn,)))
    ones = g.add(qnn.FillOp.make(s, g.const(np.float32([1.5])), dims=(dyn, 5)))
    b = g.add(qnn.DynamicBroadcastOp.make(g.const(np.float32([[2.0]])), s, dims=(dyn, 5)))
    flat = g.add(qnn.DynamicReshapeOp.make(x, g.const(np.array([-1], i64)), dims=(dyn,)))
    inner = g.add(qnn.DynamicSliceOp.make(x, g.const(np.array([1], i64)),
                                          g.const(np.array([-1], i64)), dims=(dyn, 3),
                                          axes=(1,), steps=(1,)))
    feeds = {"x": np.arange(15, dtype=np.float32).reshape(3, 5), "n": np.array(7, i64)}
    return {"s": s, "r": r, "ones": ones, "b": b, "flat": flat, "inner": inner}, feeds


@case()
def gather_nd(g):
    x = g.input("x", (2, 3, 4))
    idx = g.const(np.array([[[1], [-3]], [[2], [0]]], np.int64), "idx")
    pairs = g.const(np.array([[0, 2], [1, -1]], np.int64), "pairs")
    return {"batched": g.add(qnn.GatherNdOp.make(x, idx, batch_dims=1)),
            "pairs": g.add(qnn.GatherNdOp.make(x, pairs))}


@case(14)
def cumsum(g):
    x = g.input("x", (2, 5))
    return {"plain": g.add(qnn.CumSumOp.make(x, axis=1)),
            "exclusive_reverse": g.add(qnn.CumSumOp.make(x, axis=1, exclusive=True,
                                                         reverse=True))}


@case(13, 17)
def argmax(g):
    x = g.input("x", (2, 3, 4))
    ties = np.random.default_rng(3).integers(0, 3, (2, 3, 4)).astype(np.float32)
    return ({"first": g.add(qnn.ArgMaxOp.make(x, axis=1)),
             "last_flat": g.add(qnn.ArgMaxOp.make(x, axis=-1, keepdims=False,
                                                  select_last_index=True))},
            {"x": ties})


@case(17, 19)
def pad(g):
    x = g.input("x", (1, 2, 4, 5))
    pads = (0, 0, 1, 2, 0, 0, 2, 1)
    return {"constant": g.add(qnn.PadOp.make(x, pads=pads, value=1.5)),
            "reflect": g.add(qnn.PadOp.make(x, pads=pads, mode="reflect")),
            "edge": g.add(qnn.PadOp.make(x, pads=pads, mode="edge"))}


@case(19)
def pad_wrap(g):
    x = g.input("x", (1, 2, 4, 5))
    return {"y": g.add(qnn.PadOp.make(x, pads=(0, 0, 1, 2, 0, 0, 2, 1), mode="wrap"))}


@case(13, 17, 19)
def resize(g):
    x = g.input("x", (1, 2, 4, 6))
    return {
        "nearest": g.add(qnn.ResizeOp.make(x, sizes=(1, 2, 8, 12), mode="nearest",
                                           coordinate_transformation_mode="asymmetric",
                                           nearest_mode="floor")),
        "linear": g.add(qnn.ResizeOp.make(x, sizes=(1, 2, 3, 4), mode="linear")),
        "cubic_scales": g.add(qnn.ResizeOp.make(
            x, sizes=(1, 2, 6, 10), mode="cubic", scales=(1.0, 1.0, 1.7, 1.7),
            cubic_coeff_a=-0.5, exclude_outside=True)),
        "crop": g.add(qnn.ResizeOp.make(
            x, sizes=(1, 2, 5, 5), mode="linear",
            coordinate_transformation_mode="tf_crop_and_resize",
            roi=(0, 0, 0.2, -0.1, 1, 1, 0.9, 1.2), extrapolation_value=7.0)),
    }


@case(18)
def resize_antialias(g):
    x = g.input("x", (1, 2, 8, 9))
    return {"y": g.add(qnn.ResizeOp.make(x, sizes=(1, 2, 3, 4), mode="linear",
                                         antialias=True))}


@case(19)
def resize_half_pixel_symmetric(g):
    x = g.input("x", (1, 2, 4, 6))
    return {"y": g.add(qnn.ResizeOp.make(x, sizes=(1, 2, 7, 9), mode="linear",
                                         coordinate_transformation_mode="half_pixel_symmetric"))}


I8 = Q.make(scale=0.05, zero_point=-3)
U8_PER_AXIS = Q.make_per_axis(axis=1, scales=[0.02, 0.04, 0.03], zero_points=[128, 120, 0],
                              signed=False)


@case(13, 17, 21)
def quantize_dequantize(g):
    """quant.quantize / dequantize / requantize; int8 tensors reach the outputs."""
    x = g.input("x", (2, 3, 4))
    q = g.add(quant.QuantizeOp.make(x, qtype=I8))
    q2 = g.add(quant.QuantizeOp.make(x, qtype=U8_PER_AXIS))
    narrow = g.add(quant.QuantizeOp.make(x, qtype=Q.make(scale=0.05, narrow_range=True)))
    return {"q": q, "dq": g.add(quant.DequantizeOp.make(q)),
            "rq": g.add(quant.RequantizeOp.make(q, qtype=U8_PER_AXIS)),
            "dq_axis": g.add(quant.DequantizeOp.make(q2)), "narrow": narrow,
            "moved": g.add(qnn.TransposeOp.make(q, perm=(2, 1, 0)))}


@case(13, 17, 21)
def fake_quant(g):
    x = g.input("x", (2, 3, 4))
    return {"per_tensor": g.add(quant.FakeQuantOp.make(x, qtype=I8)),
            "per_axis": g.add(quant.FakeQuantOp.make(x, qtype=U8_PER_AXIS)),
            "i4": g.add(quant.FakeQuantOp.make(x, qtype=Q.make(scale=0.3, bits=4))),
            "i7": g.add(quant.FakeQuantOp.make(
                x, qtype=Q.make(scale=0.01, storage_min=-64, storage_max=63))),
            "per_axis_narrow": g.add(quant.FakeQuantOp.make(x, qtype=Q.make_per_axis(
                axis=1, scales=[0.01, 0.02, 0.003], zero_points=[3, 0, -1], narrow_range=True)))}


@case(17)
def fake_quant_learned(g):
    """Range learning: scale and zero point as run-time inputs, and as constants."""
    x, s, z = g.input("x", (2, 3, 4)), g.input("s", (3,)), g.input("z", (3,))
    narrow = Q.make_per_axis(axis=1, scales=[0.1, 0.1, 0.1], narrow_range=True)
    per_tensor = Q.make(scale=0.1, zero_point=0, signed=False)
    return ({"per_axis": g.add(quant.FakeQuantOp.make(x, s, z, qtype=narrow)),
             "constant": g.add(quant.FakeQuantOp.make(
                 x, g.const(np.float32([0.07])), g.const(np.float32([3.5])), qtype=per_tensor))},
            {"s": np.float32([0.05, 0.02, 0.1]), "z": np.float32([-2.5, 3.2, 0.0])})


@pytest.mark.parametrize("name,opset", [(n, o) for n, (_, opsets) in CASES.items()
                                        for o in opsets])
def test_op_matches_runtime(name, opset):
    module, feeds = build(name)
    model = export_onnx(module, opset=opset)
    assert model.opset_import[0].version == opset
    assert_same(ort_run(model, feeds), run(module, feeds))


def test_cases_cover_every_op():
    """Every qnn op but the constant, and every quant op but observe, has a case."""
    seen = set()
    for name in CASES:
        seen |= {type(op) for op in build(name)[0].walk()}
    wanted = set(qnn.QNN_OPS) | set(quant.QUANT_OPS)
    missing = wanted - seen - {quant.ObserveOp}
    assert not missing, sorted(c.name for c in missing)


def test_dense_export_forms():
    module, _ = build("dense_2d")
    (node,) = export_onnx(module).graph.node
    assert (node.op_type, node.name) == ("Gemm", "fc")
    assert helper.get_attribute_value(node.attribute[0]) == 1  # transB
    model = export_onnx(build("dense_3d")[0])
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Add"]
    (w,) = [t for t in model.graph.initializer if t.name == "fc.weight"]
    assert list(w.dims) == [5, 4]  # transposed for MatMul, keeping its name
    model = export_onnx(build("dense_3d_weight_input")[0])
    assert [n.op_type for n in model.graph.node] == ["Transpose", "MatMul"]


def test_opset_dependent_forms():
    def ops(name, opset):
        return [n.op_type for n in export_onnx(build(name)[0], opset=opset).graph.node]

    assert ops("gelu", 20) == ["Gelu"]
    assert ops("gelu", 17) == ["Div", "Erf", "Add", "Mul", "Mul"]
    assert ops("hard_swish", 14) == ["HardSwish"]
    assert ops("hard_swish", 13) == ["HardSigmoid", "Mul"]
    assert ops("layer_norm", 17) == ["LayerNormalization"]
    assert "LayerNormalization" not in ops("layer_norm", 13)
    for opset, axes_input in ((13, False), (18, True)):
        model = export_onnx(build("reductions")[0], opset=opset)
        nodes = {n.op_type: n for n in model.graph.node}
        assert len(nodes["ReduceMean"].input) == (2 if axes_input else 1)
        assert ("axes" in [a.name for a in nodes["ReduceMean"].attribute]) != axes_input
        assert len(nodes["ReduceSum"].input) == 1  # no axes: all of them


# ------------------------------------------------------------ fake quant


def conv_module(x_qtype: Q | None, w_qtype: Q | None, y_qtype: Q | None = None, seed: int = 0):
    """x -> [fake_quant] -> conv(weight [fake_quant], bias) -> [fake_quant] -> y."""
    g = Graph()
    x = g.input("x", (2, 3, 10, 10))
    w = g.const(rand(8, 3, 3, 3, seed=seed, scale=0.4), "conv.weight")
    b = g.const(rand(8, seed=seed + 1, scale=0.1), "conv.bias")
    if x_qtype is not None:
        op = quant.FakeQuantOp.make(x, qtype=x_qtype)
        op.attributes["id"] = StringAttr("conv.input")  # as qcc-calibrate names them
        x = g.add(op)
    if w_qtype is not None:
        w = g.add(quant.FakeQuantOp.make(w, qtype=w_qtype, name="conv.weight_quant"))
    y = g.add(qnn.ConvOp.make(x, w, b, name="conv", pads=(1, 1, 1, 1)))
    if y_qtype is not None:
        y = g.add(quant.FakeQuantOp.make(y, qtype=y_qtype, name="conv.output_quant"))
    return g.finish({"y": y})


def weight_qtype(narrow: bool = True) -> Q:
    """Per-output-channel symmetric int8 of conv_module's weight, with float64
    scales as qcc-calibrate computes them."""
    w = rand(8, 3, 3, 3, seed=0, scale=0.4)
    levels = 127 if narrow else 128
    scales = [float(np.abs(c).max()) / levels for c in w]
    return Q.make_per_axis(axis=0, scales=scales, narrow_range=narrow)


X_QTYPES = {
    "u8_asymmetric": Q.make(scale=0.025, zero_point=131, signed=False),
    "i8_asymmetric": Q.make(scale=0.025, zero_point=3),
}


def numpy_qdq(x: np.ndarray, scale, zero_point, qmin: int, qmax: int, axis=None):
    """Quantize-dequantize written out in numpy (ONNX semantics, float32 scale)."""
    s = np.asarray(scale, np.float32)
    z = np.asarray(zero_point, np.float32)
    if axis is not None:
        shape = [1] * x.ndim
        shape[axis] = -1
        s, z = s.reshape(shape), z.reshape(shape)
    q = np.clip(np.rint(x / s) + z, qmin, qmax)
    return ((q - z) * s).astype(np.float32)


@pytest.mark.parametrize("x_kind", sorted(X_QTYPES))
@pytest.mark.parametrize("opset", [13, 17, 21])
def test_fake_quant_conv_runs_in_onnxruntime(x_kind, opset, tmp_path):
    xq, wq = X_QTYPES[x_kind], weight_qtype()
    module = conv_module(xq, wq)
    path = tmp_path / "conv_fake_quant.onnx"
    model = export_onnx(module, path, opset=opset)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") == 2 and ops.count("DequantizeLinear") == 2
    (x_q,) = [n for n in model.graph.node if n.name == "conv.input/QuantizeLinear"]
    zp = numpy_helper.to_array([t for t in model.graph.initializer if t.name == x_q.input[2]][0])
    assert zp.dtype == (np.uint8 if x_kind.startswith("u8") else np.int8) and zp.shape == ()
    (w_q,) = [n for n in model.graph.node if n.name == "conv.weight_quant/QuantizeLinear"]
    assert helper.get_attribute_value(w_q.attribute[0]) == 0  # axis
    x = rand(2, 3, 10, 10, seed=3, scale=2.0)  # beyond the input range on both sides
    got = ort_run(str(path), {"x": x})["y"]
    # against numpy quantize-dequantize and a float conv (qcc's runtime)
    w = rand(8, 3, 3, 3, seed=0, scale=0.4)
    lo, hi = (0, 255) if not xq.signed else (-128, 127)
    xdq = numpy_qdq(x, xq.scale, xq.zero_point, lo, hi)
    wdq = numpy_qdq(w, wq.scales, 0, -127, 127, axis=0)
    g = Graph()
    xin = g.input("x", x.shape)
    y = g.add(qnn.ConvOp.make(xin, g.const(wdq), g.const(rand(8, seed=1, scale=0.1)),
                              pads=(1, 1, 1, 1)))
    reference = run(g.finish({"y": y}), {"x": xdq})["y"]
    step = (reference.max() - reference.min()) / 255
    assert np.abs(got - reference).max() <= step
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-5)


def needs_fake_quant_kernel() -> None:
    if (quant.FakeQuantOp, None) not in TABLE:
        pytest.skip("the runtime has no quant.fake_quant kernel")


@pytest.mark.parametrize("x_kind", sorted(X_QTYPES))
def test_fake_quant_conv_matches_runtime(x_kind):
    """Against qcc's own fake-quant execution: within one step of the output range
    (in practice the same values)."""
    needs_fake_quant_kernel()
    module = conv_module(X_QTYPES[x_kind], weight_qtype())
    x = rand(2, 3, 10, 10, seed=3, scale=2.0)
    got = ort_run(export_onnx(module), {"x": x})["y"]
    want = run(module, {"x": x})["y"]
    assert np.abs(got - want).max() <= (want.max() - want.min()) / 255
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_fake_quant_output_runs_as_integer_conv():
    """With the output quantized too, onnxruntime may run the conv in integers
    (QLinearConv): within one output quantization step of qcc's fake-quant."""
    needs_fake_quant_kernel()
    yq = Q.make(scale=0.05, zero_point=10, signed=False)
    module = conv_module(X_QTYPES["u8_asymmetric"], weight_qtype(), yq)
    x = rand(2, 3, 10, 10, seed=4, scale=2.0)
    got = ort_run(export_onnx(module), {"x": x})["y"]
    assert np.abs(got - run(module, {"x": x})["y"]).max() <= yq.scale * 1.0001


def test_narrow_and_4bit_ranges_are_exact():
    """Storage ranges QuantizeLinear lacks are clipped before it (emit_qdq): values
    outside the range land on storage_min/max exactly as qcc computes."""
    x = np.linspace(-4, 4, 2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    module, _ = build("fake_quant")
    for opset in (17, 21):
        model = export_onnx(module, opset=opset)
        assert_same(ort_run(model, {"x": x}), run(module, {"x": x}), rtol=0, atol=0)
    ops17 = [n.op_type for n in export_onnx(module, opset=17).graph.node]
    ops21 = [n.op_type for n in export_onnx(module, opset=21).graph.node]
    assert ops17.count("Clip") == 2 and ops21.count("Clip") == 1  # int4 is native at 21
    assert ops17.count("Max") == ops17.count("Min") == 1  # per-axis narrow range


def test_bias_fake_quant_is_int32_dequantize():
    bias_q = Q.make_per_axis(axis=0, scales=[1e-4] * 8, bits=32)
    g = Graph()
    b = g.const(rand(8, seed=1, scale=0.1), "conv.bias")
    module = g.finish({"y": g.add(quant.FakeQuantOp.make(b, qtype=bias_q))})
    model = export_onnx(module)
    assert [n.op_type for n in model.graph.node] == ["DequantizeLinear"]
    (q,) = [t for t in model.graph.initializer if t.name == "conv.bias_quantized"]
    assert q.data_type == TensorProto.INT32
    assert_same(ort_run(model, {}), run(module, {}), rtol=0, atol=0)


# ------------------------------------------------------------ QDQ import


@pytest.mark.parametrize("opset", [13, 17, 21])
@pytest.mark.parametrize("narrow", [True, False])
def test_qdq_round_trip_prints_the_same_quant_ops(opset, narrow):
    module = conv_module(X_QTYPES["u8_asymmetric"], weight_qtype(narrow),
                         Q.make(scale=0.05, zero_point=-2, bits=4))
    back = load_onnx(export_onnx(module, opset=opset))
    assert [(str(a.qtype), a.attributes["name"].data) for a in fake_quant_ops(back)] == \
        [(str(a.qtype), (a.attributes.get("name") or a.attributes["id"]).data)
         for a in fake_quant_ops(module)]
    def computed(m):
        return [op.name for op in ir.main_func(m).body.block.ops
                if not isinstance(op, qnn.ConstantOp)]

    assert computed(back) == computed(module)  # the clips are read back into the types
    x = rand(2, 3, 10, 10, seed=5, scale=2.0)
    assert_same(run(back, {"x": x}), run(module, {"x": x}), rtol=0, atol=0)


def test_qdq_round_trip_fake_quant_case_types():
    module, feeds = build("fake_quant")
    for opset in (17, 21):
        back = load_onnx(export_onnx(module, opset=opset))
        assert [str(a.qtype) for a in fake_quant_ops(back)] == \
            [str(a.qtype) for a in fake_quant_ops(module)]
        assert_same(run(back, feeds), run(module, feeds), rtol=0, atol=0)


def _float_conv_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("w1", rng.standard_normal((8, 3, 3, 3)) * 0.3), ("b1", rng.standard_normal(8) * 0.1),
        ("w2", rng.standard_normal((6, 8, 1, 1)) * 0.3), ("b2", rng.standard_normal(6) * 0.1),
        ("fc.weight", rng.standard_normal((6, 5)) * 0.3))]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["c2"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "fc.weight"], ["y"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes, "small_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("per_channel", [True, False])
def test_import_onnxruntime_quantize_static(tmp_path, per_channel):
    quantization = pytest.importorskip("onnxruntime.quantization")
    float_path, q_path = tmp_path / "float.onnx", tmp_path / "qdq.onnx"
    onnx.save(_float_conv_model(), float_path)
    rng = np.random.default_rng(1)

    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": rng.standard_normal((2, 3, 8, 8)).astype(np.float32)}
                                 for _ in range(4)])

        def get_next(self):
            return next(self.batches, None)

    quantization.quantize_static(
        str(float_path), str(q_path), Reader(), quant_format=quantization.QuantFormat.QDQ,
        per_channel=per_channel, activation_type=quantization.QuantType.QUInt8,
        weight_type=quantization.QuantType.QInt8)
    qmodel = onnx.load(q_path)
    module = load_onnx(qmodel)
    fqs = fake_quant_ops(module)
    kinds = {(q.qtype.bits, q.qtype.signed, q.qtype.is_per_axis) for q in fqs}
    assert (8, False, False) in kinds  # activations
    assert (8, True, per_channel) in kinds  # weights
    assert (32, True, per_channel) in kinds  # biases
    assert not [op for op in module.walk() if isinstance(op, qnn.ClipOp)]
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    want = ort_run(qmodel, {"x": x})["y"]
    (y_scale,) = [numpy_helper.to_array(t) for t in qmodel.graph.initializer
                  if t.name == "y_scale"]
    got = run(module, {"x": x})["y"]
    assert np.abs(got - want).max() <= float(y_scale) * 1.0001
    # and qcc's export of it runs in onnxruntime to the same values
    again = ort_run(export_onnx(module), {"x": x})["y"]
    assert np.abs(again - want).max() <= float(y_scale) * 1.0001


def _qdq_model(nodes, inits, out_shape=(1, 4)):
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


PARAMS = {"s": np.float32(0.1), "z": np.int8(0), "s2": np.float32(0.2)}


def test_lone_quantize_linear_is_an_error():
    model = _qdq_model([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q1"),
                        helper.make_node("Cast", ["q"], ["y"], name="cast", to=1)], PARAMS)
    with pytest.raises(FrontendError, match="'q1' \\(QuantizeLinear\\).*followed by "
                                            "DequantizeLinear"):
        load_onnx(model)


def test_lone_dequantize_linear_of_a_runtime_value_is_an_error():
    model = _qdq_model([
        helper.make_node("Cast", ["x"], ["i"], name="cast", to=TensorProto.INT8),
        helper.make_node("DequantizeLinear", ["i", "s", "z"], ["y"], name="dq1")], PARAMS)
    with pytest.raises(FrontendError, match="'dq1' \\(DequantizeLinear\\)"):
        load_onnx(model)


def test_mismatched_pair_is_an_error():
    model = _qdq_model([
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q1"),
        helper.make_node("DequantizeLinear", ["q", "s2", "z"], ["y"], name="dq1")], PARAMS)
    with pytest.raises(FrontendError, match="'q1'.*'dq1' does not use"):
        load_onnx(model)


def test_one_quantize_many_dequantize():
    model = _qdq_model([
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q1"),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["a"], name="dq1"),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["b"], name="dq2"),
        helper.make_node("Add", ["a", "b"], ["y"], name="add")], PARAMS)
    module = load_onnx(model)
    (fq,) = fake_quant_ops(module)
    assert str(fq.qtype) == "!quant.uniform<i8:f32, 0.1>"
    x = np.float32([[-20, 0.26, 0.04, 13]])
    assert_same(run(module, {"x": x}), ort_run(model, {"x": x}), rtol=0, atol=0)


# ------------------------------------------------------- names and errors


def test_names():
    g = Graph()
    x = g.input("image:0", (1, 4))
    w = g.const(rand(3, 4), "fc.weight")
    a = g.add(qnn.DenseOp.make(x, w, name="fc"))
    b = g.add(qnn.DenseOp.make(x, g.const(rand(3, 4, seed=2), "fc.weight"), name="fc"))
    c = g.add(qnn.AddOp.make(a, b))
    k = g.const(np.float32([1, 2, 3]), "k")
    module = g.finish({"logits": c, "again": c, "input_copy": x, "k": k})
    model = export_onnx(module, model_name="net")
    assert model.graph.name == "net" and model.producer_name == "qcc"
    assert [i.name for i in model.graph.input] == ["image:0"]
    assert [o.name for o in model.graph.output] == ["logits", "again", "input_copy", "k"]
    # the constant "k" yields its name to the output "k" (an Identity of "k_1")
    assert [t.name for t in model.graph.initializer] == ["fc.weight", "fc.weight_1", "k_1"]
    names = [n.name for n in model.graph.node]
    assert names[:3] == ["fc", "fc_1", "add_4"]
    assert [n.op_type for n in model.graph.node[3:]] == ["Identity"] * 3
    assert len(set(names)) == len(names)
    x_in = rand(1, 4, seed=9)
    assert_same(ort_run(model, {"image:0": x_in}), run(module, {"image:0": x_in}))


def test_ir_version_follows_opset():
    module, _ = build("relu")
    assert export_onnx(module, opset=17).ir_version == 8
    assert export_onnx(module, opset=21).ir_version == 10


def test_every_unsupported_op_is_listed():
    g = Graph()
    x = g.input("x", (1, 2, 9, 9))
    y = g.add(quant.ObserveOp.make(x, algorithm="minmax", id="x.observer"))
    y = g.add(qnn.AvgPoolOp.make(y, kernel=(2, 2), dilations=(2, 2), name="pool"))
    y = g.add(qnn.ResizeOp.make(y, sizes=(1, 2, 9, 9), scales=(1, 1, 1.5, 1.5), name="up"))
    module = g.finish({"y": y})
    with pytest.raises(ExportError) as info:
        export_onnx(module, opset=17)
    text = str(info.value)
    assert "3 kinds of op" in text
    assert "quant.observe: a calibration point" in text and "x.observer" in text
    assert "qnn.avg_pool: dilated AveragePool needs opset 19 (pool)" in text
    assert "qnn.resize: sizes" in text and "(up)" in text


def test_opset_out_of_range():
    module, _ = build("relu")
    with pytest.raises(ValueError, match="opset 12 is not supported"):
        export_onnx(module, opset=12)


def test_integer_arithmetic_is_refused():
    g = Graph()
    q = g.add(quant.QuantizeOp.make(g.input("x", (2, 3)), qtype=I8))
    module = g.finish({"y": g.add(qnn.AddOp.make(q, q, name="qadd"))})
    with pytest.raises(ExportError, match="qnn.add: operates on quantized integers"):
        export_onnx(module)


def test_written_atomically(tmp_path):
    module, feeds = build("conv2d_grouped")
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old contents")
    model = export_onnx(module, path)
    assert path.read_bytes() == model.SerializeToString()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    assert model.graph.name == "model"
    assert_same(ort_run(str(path), feeds), run(module, feeds))


def test_large_model_keeps_weights_outside(tmp_path, monkeypatch):
    """Past protobuf's 2 GB limit (lowered here) the weights go to `<file>.data`."""
    import qcc.exporters.onnx as exporter

    monkeypatch.setattr(exporter, "_PROTOBUF_LIMIT", 20000)
    g = Graph()
    x = g.input("x", (2, 64))
    y = g.add(qnn.DenseOp.make(x, g.const(rand(64, 64), "fc1"), g.const(rand(64), "b1")))
    y = g.add(qnn.DenseOp.make(y, g.const(rand(64, 64, seed=1), "fc2")))
    module, feeds = g.finish({"y": y}), {"x": rand(2, 64, seed=3)}
    path = tmp_path / "big.onnx"
    export_onnx(module, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]
    assert_same(ort_run(str(path), feeds), run(module, feeds))


# ------------------------------------------------- ONNX's node test cases


def _conformance_tool():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).parents[2] / "tools" / "onnx_node_conformance.py"
    spec = importlib.util.spec_from_file_location("onnx_node_conformance", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_node_cases_round_trip():
    """Every ONNX node test case that qcc imports and runs correctly, exported again
    (at its opset, between 13 and 21) runs in onnxruntime to what onnxruntime
    computes on the original. Cases onnxruntime itself cannot run are left out."""
    tool = _conformance_tool()
    from qcc.frontends.errors import NotConstantError

    ort.set_default_logger_severity(3)
    compared, failures = 0, []
    for c in tool.collect(tool.OPS):
        if tool.run_case(c).status == tool.FAILED:
            continue
        model = c.model
        init = {t.name for t in model.graph.initializer}
        names = [i.name for i in model.graph.input if i.name not in init]
        opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        inputs, _ = c.data_sets[0]
        feeds = {k: tool._array(v) for k, v in zip(names, inputs, strict=False)}
        frozen: set[str] = set()
        while True:  # run-time parameters become initializers, as the tool does
            m = tool._freeze(model, frozen, feeds) if frozen else model
            try:
                module = load_onnx(m, input_shapes={k: v.shape for k, v in feeds.items()
                                                    if k not in frozen})
                break
            except NotConstantError as e:
                frozen.add(e.value_name)
        feeds = {k: v for k, v in feeds.items() if k not in frozen}
        try:
            want = ort_run(m, feeds)
        except Exception:
            continue  # onnxruntime cannot run the original (type, opset, ...)
        try:
            got = ort_run(export_onnx(module, opset=min(max(opset, 13), 21)), feeds)
            assert_same(got, want, rtol=max(c.rtol, 1e-4), atol=max(c.atol, 1e-5))
            compared += 1
        except Exception as e:  # collected, listed below
            failures.append(f"{c.name}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    # one known gap: keep_aspect_ratio_policy sizes that are not floor(in * scale)
    assert failures == [
        "test_resize_downsample_sizes_nearest_not_smaller: ExportError: 1 kind of op cannot "
        "be written as ONNX opset 19 (op: why (ops)):"], "\n".join(failures)
    assert compared > 400, compared
