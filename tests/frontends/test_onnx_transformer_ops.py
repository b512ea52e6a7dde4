"""ONNX ops that transformer and GroupNorm exports need: GatherElements, GatherND,
CumSum, InstanceNormalization, If, and ReduceL2 / ReduceSumSquare (ConvNeXt-V2's
global response norm). Each one-node (or few-node) model runs through
the frontend and qcc's runtime and is compared with onnxruntime (graph optimizations
off) on the same inputs; folded forms are compared with onnxruntime too."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from qcc import ir
from qcc.dialects import qnn
from qcc.frontends.errors import FrontendError
from qcc.frontends.onnx import load_onnx
from qcc.runtime import run

ort = pytest.importorskip("onnxruntime")

F, I64 = TensorProto.FLOAT, TensorProto.INT64


def _model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "test", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _vi(name, shape, dtype=F):
    return helper.make_tensor_value_info(name, dtype, shape)


def _init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def _ort(model, feeds):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def _check(model, feeds, rtol=1e-5, atol=1e-6):
    module = load_onnx(model)
    got, want = run(module, feeds), _ort(model, feeds)
    for name, expected in want.items():
        assert got[name].shape == expected.shape, name
        assert got[name].dtype == expected.dtype, name
        np.testing.assert_allclose(got[name], expected, rtol=rtol, atol=atol, err_msg=name)
    return module


def _kinds(module):
    return {type(op) for op in ir.main_func(module).body.block.ops}


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ---------------------------------------------------------------- GatherElements


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_elements_runtime_indices(axis):
    """Indices computed at run time, negative ones included, smaller than the data
    off the axis (as torch.gather allows and onnxruntime runs)."""
    node = helper.make_node("GatherElements", ["x", "i"], ["y"], axis=axis)
    model = _model([node], [_vi("x", [3, 4]), _vi("i", [2, 3], I64)], [_vi("y", None)])
    dim = 3 if axis == 0 else 4
    idx = np.random.default_rng(1).integers(-dim, dim, (2, 3))
    module = _check(model, {"x": _rand(3, 4), "i": idx})
    assert qnn.GatherElementsOp in _kinds(module)


def test_gather_elements_folds_the_position_id_chain():
    """BERT's token-type ids: a [1, 64] buffer sliced to the sequence, expanded to the
    batch and gathered with [1, seq] position ids. onnx's reference evaluator refuses
    indices smaller than the data ("cannot reshape array of size 1 into shape (1,8)");
    qcc folds it as onnxruntime computes it."""
    buffer = np.arange(64, dtype=np.int64).reshape(1, 64) * 3
    nodes = [
        helper.make_node("Shape", ["ids"], ["shape"]),
        helper.make_node("Slice", ["buffer", "zero", "seq", "one"], ["sliced"]),
        helper.make_node("Expand", ["sliced", "shape"], ["expanded"]),
        helper.make_node("Slice", ["positions", "zero", "seq", "one"], ["pos"]),
        helper.make_node("GatherElements", ["expanded", "pos"], ["token_type"], axis=1),
        helper.make_node("Cast", ["token_type"], ["tt"], to=F),
        helper.make_node("Add", ["x", "tt"], ["y"]),
    ]
    positions = np.array([[3, 1, 0, 7, 2, 6, 5, 4, *range(8, 64)]], np.int64)
    inits = [_init("buffer", buffer), _init("positions", positions),
             _init("zero", np.array([0])), _init("seq", np.array([8])),
             _init("one", np.array([1]))]
    model = _model(nodes, [_vi("ids", [2, 8], I64), _vi("x", [2, 8])], [_vi("y", None)],
                   inits)
    module = _check(model, {"ids": np.zeros((2, 8), np.int64), "x": _rand(2, 8)})
    assert qnn.GatherElementsOp not in _kinds(module)  # folded


# --------------------------------------------------------------------- GatherND


@pytest.mark.parametrize("batch_dims,idx_shape,values", [
    (0, (2, 2), [[0, 1], [1, -1]]),
    (0, (3, 1), [[1], [0], [-2]]),
    (1, (2, 1), [[2], [-1]]),
    (1, (2, 3, 2), [[[0, 1], [2, 3], [1, -4]], [[0, 0], [1, 1], [2, 2]]]),
])
def test_gather_nd(batch_dims, idx_shape, values):
    node = helper.make_node("GatherND", ["x", "i"], ["y"], batch_dims=batch_dims)
    model = _model([node], [_vi("x", [2, 3, 4]), _vi("i", list(idx_shape), I64)],
                   [_vi("y", None)])
    idx = np.array(values, np.int64).reshape(idx_shape)
    module = _check(model, {"x": _rand(2, 3, 4), "i": idx})
    assert qnn.GatherNdOp in _kinds(module)


def test_gather_nd_of_a_mask_as_dynamo_writes_it():
    """The dynamo exporter picks rows of an int64 attention mask with GatherND."""
    node = helper.make_node("GatherND", ["mask", "rows"], ["y"])
    model = _model([node], [_vi("mask", [3, 5], I64)], [_vi("y", None, I64)],
                   [_init("rows", np.array([[2], [0]], np.int64))])
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], np.int64)
    _check(model, {"mask": mask})


# ----------------------------------------------------------------------- CumSum


@pytest.mark.parametrize("exclusive,reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_cumsum(exclusive, reverse, dtype):
    node = helper.make_node("CumSum", ["x", "axis"], ["y"], exclusive=exclusive,
                            reverse=reverse)
    elem = F if dtype == np.float32 else I64
    model = _model([node], [_vi("x", [2, 5], elem)], [_vi("y", None, elem)],
                   [_init("axis", np.array(1, np.int64))])
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((2, 5)) * 1e3 if dtype == np.float32
         else rng.integers(-9, 9, (2, 5))).astype(dtype)
    module = _check(model, {"x": x})
    assert qnn.CumSumOp in _kinds(module)


def test_cumsum_needs_a_constant_axis():
    node = helper.make_node("CumSum", ["x", "axis"], ["y"])
    model = _model([node], [_vi("x", [2, 5]), _vi("axis", [], I64)], [_vi("y", None)])
    with pytest.raises(FrontendError, match="CumSum.*'axis' must be a constant"):
        load_onnx(model)


# ------------------------------------------------- ReduceL2 / ReduceSumSquare


@pytest.mark.parametrize("op", ["ReduceL2", "ReduceSumSquare"])
@pytest.mark.parametrize("opset,keepdims", [(14, 1), (18, 1), (18, 0)])
def test_reduce_l2_and_sum_square(op, opset, keepdims):
    """axes an attribute (opset 14) or an input (18); numpy's norm is the second oracle."""
    axes = [1, 2]
    if opset >= 18:
        node = helper.make_node(op, ["x", "axes"], ["y"], keepdims=keepdims)
        inits = [_init("axes", np.array(axes, np.int64))]
    else:
        node = helper.make_node(op, ["x"], ["y"], axes=axes, keepdims=keepdims)
        inits = []
    model = _model([node], [_vi("x", [2, 3, 4, 5])], [_vi("y", None)], inits, opset=opset)
    x = _rand(2, 3, 4, 5) * 2
    _check(model, {"x": x}, rtol=1e-5, atol=1e-5)
    got = run(load_onnx(model), {"x": x})["y"]
    square_sum = np.sum(x.astype(np.float64) ** 2, axis=(1, 2), keepdims=bool(keepdims))
    want = np.sqrt(square_sum) if op == "ReduceL2" else square_sum
    np.testing.assert_allclose(got, want, rtol=1e-5)


# -------------------------------------------------------- InstanceNormalization


def test_instance_norm_with_scale_and_bias():
    node = helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-3)
    model = _model([node], [_vi("x", [2, 3, 4, 5])], [_vi("y", None)],
                   [_init("s", _rand(3, seed=1)), _init("b", _rand(3, seed=2))])
    module = _check(model, {"x": _rand(2, 3, 4, 5) * 3 + 1}, rtol=1e-4, atol=1e-5)
    assert {qnn.LayerNormOp, qnn.ScaleOp} <= _kinds(module)


def test_group_norm_as_torch_exports_it():
    """GroupNorm(2 groups, 4 channels): reshape to [N, 2, -1], InstanceNormalization
    with unit scale and zero bias, reshape back, then the per-channel affine. The
    oracle is numpy's group normalization, besides onnxruntime."""
    nodes = [
        helper.make_node("Reshape", ["x", "grouped"], ["g"]),
        helper.make_node("InstanceNormalization", ["g", "ones", "zeros"], ["n"], epsilon=1e-5),
        helper.make_node("Reshape", ["n", "back"], ["r"]),
        helper.make_node("Mul", ["r", "gamma"], ["m"]),
        helper.make_node("Add", ["m", "beta"], ["y"]),
    ]
    gamma, beta = _rand(4, 1, 1, seed=3), _rand(4, 1, 1, seed=4)
    inits = [_init("grouped", np.array([2, 2, -1])), _init("back", np.array([2, 4, 3, 3])),
             _init("ones", np.ones(2, np.float32)), _init("zeros", np.zeros(2, np.float32)),
             _init("gamma", gamma), _init("beta", beta)]
    model = _model(nodes, [_vi("x", [2, 4, 3, 3])], [_vi("y", None)], inits)
    x = _rand(2, 4, 3, 3, seed=5)
    module = _check(model, {"x": x}, rtol=1e-4, atol=1e-5)
    assert qnn.ScaleOp not in _kinds(module)  # unit scale, zero bias: no affine
    g = x.reshape(2, 2, -1).astype(np.float64)
    ref = (g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + 1e-5)
    ref = ref.reshape(x.shape) * gamma + beta
    np.testing.assert_allclose(run(module, {"x": x})["y"], ref, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- If


def _if_model(cond_nodes, cond_inputs, inits):
    then_graph = helper.make_graph([helper.make_node("Relu", ["x"], ["t"])], "then", [],
                                   [_vi("t", None)])
    else_graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["e"])], "else", [], [_vi("e", None)],
        [_init("two", np.float32(2))])
    node = helper.make_node("If", ["cond"], ["y"], name="check_batch",
                            then_branch=then_graph, else_branch=else_graph)
    return _model([*cond_nodes, node], cond_inputs, [_vi("y", None)], inits)


@pytest.mark.parametrize("batch,taken", [(1, qnn.ReluOp), (3, qnn.MulOp)])
def test_if_decided_by_a_shape_is_inlined(batch, taken):
    """`if x.shape[0] == 1`: the static batch decides; the taken branch is inlined."""
    cond_nodes = [helper.make_node("Shape", ["x"], ["s"]),
                  helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
                  helper.make_node("Equal", ["b", "one"], ["cond"])]
    model = _if_model(cond_nodes, [_vi("x", [batch, 4])],
                      [_init("zero", np.array(0)), _init("one", np.array(1))])
    module = _check(model, {"x": _rand(batch, 4)})
    kinds = _kinds(module)
    assert taken in kinds and ({qnn.ReluOp, qnn.MulOp} - {taken}).isdisjoint(kinds)


def test_if_decided_at_run_time_is_one_error_naming_the_node():
    cond_nodes = [helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
                  helper.make_node("Greater", ["total", "zero"], ["cond"])]
    model = _if_model(cond_nodes, [_vi("x", [2, 4])], [_init("zero", np.float32(0))])
    with pytest.raises(FrontendError) as e:
        load_onnx(model)
    message = str(e.value)
    assert "'check_batch' (If)" in message and "'cond' is computed at run time" in message
    assert "--input-shape" in message and "\n" not in message


def test_if_branch_ops_are_scanned():
    """An unsupported op inside a branch is reported with the others, before lowering."""
    then_graph = helper.make_graph([helper.make_node("Det", ["x"], ["t"], name="det")],
                                   "then", [], [_vi("t", None)])
    else_graph = helper.make_graph([helper.make_node("Relu", ["x"], ["e"])], "else", [],
                                   [_vi("e", None)])
    node = helper.make_node("If", ["cond"], ["y"], then_branch=then_graph,
                            else_branch=else_graph)
    model = _model([node], [_vi("x", [3, 3])], [_vi("y", None)],
                   [_init("cond", np.array(True))])
    with pytest.raises(FrontendError, match="Det: det"):
        load_onnx(model)
