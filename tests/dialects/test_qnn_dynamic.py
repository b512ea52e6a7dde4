"""The run-time shape ops (`qcc.dialects.qnn_dynamic`) on qcc's runtime, checked
against onnx's reference implementation of the ONNX op each one is (the oracle);
their ONNX export is run by onnxruntime at the same values; canonicalize folds
them where the shapes are static and the folded graph computes the same."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from qcc import ir, passes, runtime
from qcc.dialects import qnn
from qcc.dialects.base import DYN
from qcc.errors import QccError
from qcc.exporters.onnx import export_onnx

ort = pytest.importorskip("onnxruntime")


def _reference(op_type: str, inputs: dict[str, np.ndarray], **attrs) -> np.ndarray:
    """The ONNX op on `inputs` (in order) by onnx.reference."""
    node = helper.make_node(op_type, list(inputs), ["y"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_empty_tensor_value_info(n)
                                            for n in inputs],
                              [helper.make_empty_tensor_value_info("y")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return ReferenceEvaluator(model).run(None, inputs)[0]


def _module(make, inputs: dict[str, np.ndarray]):
    """A module whose inputs are `inputs` (every dim symbolic) and whose output is
    `make(*graph values)`."""
    g = ir.Graph()
    args = [g.input(n, [None] * a.ndim, a.dtype) for n, a in inputs.items()]
    return g.finish({"y": g.add(make(*args))})


def _check(make, op_type: str, inputs: dict[str, np.ndarray], **attrs) -> None:
    want = _reference(op_type, inputs, **attrs)
    module = _module(make, inputs)
    got = runtime.run(module, inputs)["y"]
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    model = export_onnx(module)  # as ONNX, run by onnxruntime with symbolic dims
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, inputs)[0], want)


I64 = np.int64


@pytest.mark.parametrize("shape", [(3, 1, 5), (4,), (0, 2)])
def test_shape_of(shape):
    _check(lambda x: qnn.ShapeOfOp.make(x), "Shape", {"x": np.zeros(shape, np.float32)})


@pytest.mark.parametrize("start,limit,delta", [
    (np.array(0, I64), np.array(7, I64), np.array(2, I64)),
    (np.array(5, I64), np.array(2, I64), np.array(1, I64)),  # empty
    (np.array(10, I64), np.array(-3, I64), np.array(-4, I64)),
    (np.array(1.0, np.float32), np.array(0.0, np.float32), np.array(-0.25, np.float32)),
])
def test_range(start, limit, delta):
    _check(lambda a, b, c: qnn.RangeOp.make(a, b, c, dims=(DYN,)), "Range",
           {"start": start, "limit": limit, "delta": delta})


@pytest.mark.parametrize("value", [np.array([1.5], np.float32), np.array([7], I64)])
def test_fill(value):
    shape = np.array([2, 3], I64)
    tensor = numpy_helper.from_array(value, "value")
    want = _reference("ConstantOfShape", {"shape": shape}, value=tensor)
    g = ir.Graph()
    s = g.input("shape", [None], I64)
    v = g.const(value)
    module = g.finish({"y": g.add(qnn.FillOp.make(s, v, dims=(DYN, DYN)))})
    got = runtime.run(module, {"shape": shape})["y"]
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    session = ort.InferenceSession(export_onnx(module).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, {"shape": shape})[0], want)


@pytest.mark.parametrize("x_shape,shape", [
    ((1, 1, 4), [3, 1, 4]),   # ViT's class token to the batch
    ((2, 1), [3, 1, 5]),      # both ways: a 1 in the shape keeps the input's dim
    ((3, 4), [4]),            # a shorter shape
])
def test_dynamic_broadcast(x_shape, shape):
    x = np.arange(np.prod(x_shape), dtype=np.float32).reshape(x_shape)
    rank = max(len(x_shape), len(shape))
    _check(lambda a, s: qnn.DynamicBroadcastOp.make(a, s, dims=(DYN,) * rank), "Expand",
           {"x": x, "shape": np.array(shape, I64)})


@pytest.mark.parametrize("shape,allowzero", [([0, -1], 0), ([-1, 2, 3], 0), ([4, 0, 6], 1)])
def test_dynamic_reshape(shape, allowzero):
    x = np.arange(24, dtype=np.float32).reshape(4, 6) if not allowzero else \
        np.zeros((0, 4), np.float32)
    _check(lambda a, s: qnn.DynamicReshapeOp.make(a, s, dims=(DYN,) * len(shape),
                                                  allowzero=allowzero or None),
           "Reshape", {"x": x, "shape": np.array(shape, I64)}, allowzero=allowzero)


@pytest.mark.parametrize("starts,ends,axes,steps", [
    ([0], [5], [1], [1]),                  # BERT's position ids: buffer[:, :seq]
    ([-3, 1], [100, -1], [0, 1], [1, 2]),  # from the end, clamped, strided
    ([-1], [-100], [0], [-1]),             # reversed to the first element
    ([2], [1], [1], [1]),                  # empty
])
def test_dynamic_slice(starts, ends, axes, steps):
    x = np.arange(48, dtype=np.float32).reshape(6, 8)
    inputs = {"x": x, "starts": np.array(starts, I64), "ends": np.array(ends, I64),
              "axes": np.array(axes, I64), "steps": np.array(steps, I64)}
    want = _reference("Slice", inputs)
    module = _module(lambda a, b, e: qnn.DynamicSliceOp.make(
        a, b, e, dims=(DYN, DYN), axes=tuple(axes), steps=tuple(steps)),
        {k: inputs[k] for k in ("x", "starts", "ends")})
    feeds = {k: inputs[k] for k in ("x", "starts", "ends")}
    np.testing.assert_array_equal(runtime.run(module, feeds)["y"], want)
    session = ort.InferenceSession(export_onnx(module).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, feeds)[0], want)


def test_a_static_dim_the_values_contradict_is_an_error_naming_the_op():
    g = ir.Graph()
    x = g.input("x", [None], np.float32)
    s = g.input("s", [None], I64)
    y = g.add(qnn.DynamicReshapeOp.make(x, s, dims=(DYN, 4), name="to_rows"))
    module = g.finish({"y": y})
    feeds = {"x": np.zeros(12, np.float32), "s": np.array([4, 3], I64)}
    with pytest.raises(QccError, match=r"'to_rows' \(qnn.dynamic_reshape\) computed shape "
                                       r"\(4, 3\), but its type says \(\?, 4\)"):
        runtime.run(module, feeds)


def test_canonicalize_folds_static_shape_arithmetic_to_the_same_values():
    """position ids of a static [2, 5] input: range(0, 5) as [1, 5], added to x."""
    g = ir.Graph()
    x = g.input("x", (2, 5), I64)
    s = g.add(qnn.ShapeOfOp.make(x))
    n = g.add(qnn.GatherOp.make(s, g.const(np.array(1, I64)), axis=0))
    r = g.add(qnn.RangeOp.make(g.const(np.array(0, I64)), n, g.const(np.array(1, I64)),
                               dims=(5,)))
    p = g.add(qnn.DynamicBroadcastOp.make(r, g.const(np.array([1, 5], I64)), dims=(1, 5)))
    module = g.finish({"y": g.add(qnn.AddOp.make(x, p))})
    feeds = {"x": np.arange(10, dtype=I64).reshape(2, 5)}
    want = feeds["x"] + np.arange(5)  # by hand
    np.testing.assert_array_equal(runtime.run(module, feeds)["y"], want)
    passes.run(module, "canonicalize")
    names = [op.name for op in ir.main_func(module).body.block.ops]
    assert names == ["qnn.constant", "qnn.add", "func.return"]
    np.testing.assert_array_equal(runtime.run(module, feeds)["y"], want)
