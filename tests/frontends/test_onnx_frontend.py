"""ONNX frontend: real models import and run, lowerings have the expected shape, and
errors say what is wrong."""

from __future__ import annotations

import glob
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from xdsl.dialects import func

from qcc import ir
from qcc.dialects import qnn
from qcc.frontends.errors import FrontendError, NotConstantError
from qcc.frontends.onnx import load_onnx

try:
    from qcc.runtime import run
except ImportError:  # the runtime lands separately
    run = None

needs_runtime = pytest.mark.skipif(run is None, reason="qcc.runtime.run is not importable")

LIGHT = sorted(glob.glob(os.path.join(os.path.dirname(onnx.__file__),
                                      "backend/test/data/light/*.onnx")))
F = TensorProto.FLOAT


def _ops(module, cls=None):
    ops = [op for op in ir.main_func(module).body.block.ops]
    return [op for op in ops if cls is None or isinstance(op, cls)]


def _name(op) -> str | None:
    attr = op.attributes.get("name")
    return attr.data if attr is not None else None


def _model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "test", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8  # what the installed onnxruntime reads
    return model


def _vi(name, shape, dtype=F):
    return helper.make_tensor_value_info(name, dtype, shape)


def _init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def _check_against_onnxruntime(model, feeds, rtol=1e-4, atol=1e-5):
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString())
    want = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds),
                    strict=True))
    got = run(load_onnx(model), feeds)
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=atol, err_msg=k)


# ------------------------------------------------------------- real models


def test_light_models_are_found():
    assert len(LIGHT) == 9, LIGHT


def _light_io(path):
    proto = onnx.load(path)
    init = {t.name for t in proto.graph.initializer}
    (vi,) = [i for i in proto.graph.input if i.name not in init]
    shape = tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
    return proto, vi.name, shape


@pytest.mark.parametrize("path", LIGHT, ids=lambda p: os.path.basename(p)[:-5])
def test_light_model_imports(path):
    proto, input_name, shape = _light_io(path)
    module = load_onnx(path)
    module.verify()
    fn = ir.main_func(module)
    inputs, outputs = ir.io_names(fn)
    assert inputs == [input_name]
    assert outputs == [o.name for o in proto.graph.output]
    assert tuple(fn.body.block.args[0].type.get_shape()) == shape
    # shape plumbing (ConstantOfShape of the weights) is folded away
    kinds = {type(op) for op in _ops(module)}
    assert kinds <= set(qnn.QNN_OPS) | {func.ReturnOp}
    assert qnn.ConstantOp not in {type(op.owner) for op in _ops(module)[-1].operands}
    # convs keep the node's name; their weights are named after the ONNX value
    node_names = {n.name or n.output[0] for n in proto.graph.node}
    convs = _ops(module, qnn.ConvOp)
    assert convs and all(_name(c) in node_names for c in convs)
    conv_nodes = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert _name(convs[0].weight.owner) == conv_nodes[0].input[1]


@needs_runtime
@pytest.mark.parametrize("path", LIGHT, ids=lambda p: os.path.basename(p)[:-5])
def test_light_model_matches_shipped_output(path):
    """The shipped `<model>_output_0.pb` is the output on an input of ones (checked
    against onnxruntime when this test was written: identical)."""
    _, input_name, shape = _light_io(path)
    expected = numpy_helper.to_array(onnx.load_tensor(path.replace(".onnx", "_output_0.pb")))
    got = run(load_onnx(path), {input_name: np.ones(shape, np.float32)})
    (y,) = got.values()
    np.testing.assert_allclose(y, expected, rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------- lowerings


def _gemm_model(trans_b: int, constant_b: bool, c_shape=(4,)):
    rng = np.random.default_rng(0)
    b = rng.standard_normal((4, 3) if trans_b else (3, 4)).astype(np.float32)
    c = rng.standard_normal(c_shape).astype(np.float32)
    node = helper.make_node("Gemm", ["a", "fc.weight", "fc.bias"], ["y"], name="fc",
                            transB=trans_b, alpha=0.5, beta=2.0)
    inputs = [_vi("a", [2, 3])]
    inits = [_init("fc.bias", c)]
    if constant_b:
        inits.append(_init("fc.weight", b))
    else:
        inputs.append(_vi("fc.weight", list(b.shape)))
    return _model([node], inputs, [_vi("y", [2, 4])], inits), b


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_with_constant_b_is_dense(trans_b):
    model, b = _gemm_model(trans_b, constant_b=True)
    module = load_onnx(model)
    (dense,) = _ops(module, qnn.DenseOp)
    assert _name(dense) == "fc"
    assert _name(dense.weight.owner) == "fc.weight"
    expected = 0.5 * (b if trans_b else b.T)
    np.testing.assert_allclose(ir.array_of(dense.weight), expected)
    assert _name(dense.bias.owner) == "fc.bias"
    if run is not None:
        _check_against_onnxruntime(model, {"a": np.ones((2, 3), np.float32)})


def test_gemm_with_activation_b_is_matmul_and_add():
    model, b = _gemm_model(0, constant_b=False, c_shape=(2, 4))
    module = load_onnx(model)
    assert _ops(module, qnn.MatmulOp) and _ops(module, qnn.AddOp)
    assert not _ops(module, qnn.DenseOp)
    if run is not None:
        feeds = {"a": np.ones((2, 3), np.float32), "fc.weight": b}
        _check_against_onnxruntime(model, feeds)


def test_matmul_by_constant_is_dense_and_by_activation_is_matmul():
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="proj"),
             helper.make_node("MatMul", ["h", "z"], ["y"], name="attn")]
    model = _model(nodes, [_vi("x", [2, 5, 3]), _vi("z", [4, 2])], [_vi("y", [2, 5, 2])],
                   [_init("w", w)])
    module = load_onnx(model)
    (dense,) = _ops(module, qnn.DenseOp)
    np.testing.assert_array_equal(ir.array_of(dense.weight), w.T)
    assert [_name(op) for op in _ops(module, qnn.MatmulOp)] == ["attn"]


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_conv_auto_pad_becomes_explicit_pads(auto_pad):
    w = np.ones((2, 1, 3, 3), np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c", auto_pad=auto_pad,
                            strides=[2, 2], kernel_shape=[3, 3])
    model = _model([node], [_vi("x", [1, 1, 6, 6])], [_vi("y", None)], [_init("w", w)])
    (conv,) = _ops(load_onnx(model), qnn.ConvOp)
    pads = tuple(conv.pads.get_values())
    assert pads == {"SAME_UPPER": (0, 0, 1, 1), "SAME_LOWER": (1, 1, 0, 0),
                    "VALID": (0, 0, 0, 0)}[auto_pad]
    if run is not None:
        _check_against_onnxruntime(model, {"x": np.arange(36, dtype=np.float32)
                                           .reshape(1, 1, 6, 6)})


def test_softmax_before_opset_13_coerces_to_2d():
    node = helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=1)
    model = _model([node], [_vi("x", [2, 3, 4])], [_vi("y", [2, 3, 4])], opset=11)
    module = load_onnx(model)
    assert [type(op) for op in _ops(module)][:3] == [qnn.ReshapeOp, qnn.SoftmaxOp,
                                                     qnn.ReshapeOp]
    if run is not None:
        x = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32)
        _check_against_onnxruntime(model, {"x": x})


def test_clip_0_6_from_attributes_and_inputs_stays_clip():
    old = _model([helper.make_node("Clip", ["x"], ["y"], min=0.0, max=6.0)],
                 [_vi("x", [4])], [_vi("y", [4])], opset=9)
    new = _model([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])],
                 [_vi("x", [4])], [_vi("y", [4])],
                 [_init("lo", np.float32(0)), _init("hi", np.float32(6))], opset=13)
    for model in (old, new):
        (clip,) = _ops(load_onnx(model), qnn.ClipOp)
        assert (clip.min.value.data, clip.max.value.data) == (0.0, 6.0)


def test_shape_arithmetic_is_folded_at_import():
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape (a PyTorch flatten) is one
    qnn.reshape: no shape arithmetic reaches the graph."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus_one"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"], name="flatten"),
    ]
    inits = [_init("zero", np.int64(0)), _init("axes", np.array([0], np.int64)),
             _init("minus_one", np.array([-1], np.int64))]
    model = _model(nodes, [_vi("x", [2, 3, 4])], [_vi("y", [2, 12])], inits)
    ops = _ops(load_onnx(model))
    assert [type(op) for op in ops[:-1]] == [qnn.ReshapeOp]
    assert _name(ops[0]) == "flatten"
    assert tuple(ops[0].shape.get_values()) == (2, 12)


def test_initializer_listed_as_input_is_a_constant():
    w = np.ones((3, 3), np.float32)
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    model = _model([node], [_vi("x", [1, 3]), _vi("w", [3, 3])], [_vi("y", [1, 3])],
                   [_init("w", w)], opset=9)
    module = load_onnx(model)
    assert ir.io_names(ir.main_func(module))[0] == ["x"]
    assert _ops(module, qnn.DenseOp)


def test_upsample_and_resize_nearest():
    up = _model([helper.make_node("Upsample", ["x", "scales"], ["y"], mode="nearest")],
                [_vi("x", [1, 1, 2, 2])], [_vi("y", [1, 1, 4, 4])],
                [_init("scales", np.array([1, 1, 2, 2], np.float32))], opset=9)
    (resize,) = _ops(load_onnx(up), qnn.ResizeOp)
    assert tuple(resize.sizes.get_values()) == (1, 1, 4, 4)
    if run is not None:
        x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
        got = run(load_onnx(up), {"x": x})["y"]
        np.testing.assert_array_equal(got, x.repeat(2, axis=2).repeat(2, axis=3))


# ------------------------------------------------------------------- errors


def test_truncated_file_is_not_a_valid_onnx_model(tmp_path):
    data = open(LIGHT[0], "rb").read()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FrontendError, match="not a valid ONNX model") as e:
        load_onnx(path)
    assert str(path) in str(e.value)
    assert "parser says" in str(e.value)


def test_non_onnx_file(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("these are not the weights you are looking for\n")
    with pytest.raises(FrontendError, match="not a valid ONNX model"):
        load_onnx(path)


def test_unsupported_ops_are_listed_all_at_once():
    nodes = [
        helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk1"),
        helper.make_node("Relu", ["v"], ["r"], name="relu"),
        helper.make_node("NonZero", ["r"], ["nz"], name="nonzero1"),
        helper.make_node("TopK", ["r", "k"], ["v2", "i2"], name="topk2"),
    ]
    model = _model(nodes, [_vi("x", [1, 8])], [_vi("nz", None), _vi("v2", None)],
                   [_init("k", np.array([2], np.int64))])
    with pytest.raises(FrontendError) as e:
        load_onnx(model)
    message = str(e.value)
    assert "2 unsupported ONNX op types" in message
    assert "TopK: topk1, topk2" in message
    assert "NonZero: nonzero1" in message
    assert "Relu" not in message


def test_dynamic_input_stays_symbolic_unless_given_a_shape():
    node = helper.make_node("Relu", ["images"], ["y"])
    model = _model([node], [_vi("images", ["N", 3, 224, 224])], [_vi("y", None)])
    module = load_onnx(model)
    fn = ir.main_func(module)
    assert str(fn.body.block.args[0].type) == "tensor<?x3x224x224xf32>"
    assert [n.data for n in fn.arg_attrs.data[0].data["qnn.dims"].data] == ["N", "", "", ""]
    module = load_onnx(model, input_shapes={"images": (2, 3, 224, 224)})
    assert tuple(ir.main_func(module).body.block.args[0].type.get_shape()) == (2, 3, 224, 224)


def test_input_shapes_naming_an_unknown_input():
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [1])],
                   [_vi("y", [1])])
    with pytest.raises(FrontendError, match="model's inputs are x"):
        load_onnx(model, input_shapes={"image": (1,)})


def test_run_time_shape_operand_is_a_clear_error():
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="r")
    model = _model([node], [_vi("x", [2, 3]), _vi("shape", [2], TensorProto.INT64)],
                   [_vi("y", None)])
    with pytest.raises(NotConstantError) as e:
        load_onnx(model)
    assert e.value.value_name == "shape"
    assert "node 'r' (Reshape)" in str(e.value)
