"""ONNX ArgMax / ArgMin through the frontend and qcc's runtime, compared with
onnxruntime on the same inputs (inputs with ties check which index wins)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from qcc import ir
from qcc.dialects import qnn
from qcc.frontends.errors import FrontendError
from qcc.frontends.onnx import load_onnx
from qcc.runtime import run

pytest.importorskip("onnxruntime")
from qcc.testing import ort  # noqa: E402

F, I32, I64 = TensorProto.FLOAT, TensorProto.INT32, TensorProto.INT64


def _model(op, attrs, shape, elem=F, opset=13):
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    graph = helper.make_graph([node], "test", [helper.make_tensor_value_info("x", elem, shape)],
                              [helper.make_tensor_value_info("y", I64, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _ties(shape, dtype=np.float32):
    """Few distinct values, so that most rows hold equal maxima and minima."""
    return np.random.default_rng(5).integers(-2, 2, shape).astype(dtype)


def _check(model, x):
    module = load_onnx(model)
    got = run(module, {"x": x})["y"]
    want = ort.run(model, {"x": x})["y"]
    assert got.dtype == want.dtype == np.int64
    np.testing.assert_array_equal(got, want)
    return module


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("last", [0, 1])
def test_argmax(axis, keepdims, last):
    model = _model("ArgMax", {"axis": axis, "keepdims": keepdims, "select_last_index": last},
                   [3, 4, 5])
    module = _check(model, _ties((3, 4, 5)))
    assert qnn.ArgMaxOp in {type(op) for op in ir.main_func(module).body.block.ops}


def test_argmax_defaults_of_int32_input():
    model = _model("ArgMax", {}, [4, 3], I32, opset=11)
    _check(model, _ties((4, 3), np.int32))


@pytest.mark.parametrize("last", [0, 1])
def test_argmin(last):
    model = _model("ArgMin", {"axis": 1, "select_last_index": last}, [3, 6])
    _check(model, _ties((3, 6)))


def test_argmin_of_integers_is_one_clear_error():
    model = _model("ArgMin", {"axis": 1}, [3, 6], I64)
    with pytest.raises(FrontendError, match="ArgMin.*float only"):
        load_onnx(model)


def test_argmax_axis_out_of_range_names_the_node():
    model = _model("ArgMax", {"axis": 3}, [3, 6])
    with pytest.raises(FrontendError, match="ArgMax.*axis 3 is out of range for rank 2"):
        load_onnx(model)


@pytest.mark.parametrize("last,want", [(False, [[1], [0]]), (True, [[2], [2]])])
def test_argmax_of_a_constant_folds_to_the_hand_computed_indices(last, want):
    from qcc import passes

    g = ir.Graph()
    g.input("x", (1,))
    c = g.const(np.array([[1.0, 7.0, 7.0], [4.0, 4.0, 4.0]], np.float32))
    m = g.finish({"y": g.add(qnn.ArgMaxOp.make(c, axis=1, select_last_index=last))})
    passes.run(m, "canonicalize")
    assert not any(isinstance(op, qnn.ArgMaxOp) for op in m.walk())
    assert run(m, {"x": np.zeros(1, np.float32)})["y"].tolist() == want
