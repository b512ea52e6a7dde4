"""Exported GELU and LayerNorm chains run as one compiled step (qcc/runtime/patterns.py);
onnxruntime on the same ONNX graph is the oracle, and a chain whose inner value is
used elsewhere stays unfused."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import qcc
from qcc.runtime import compile_module, execute, kernels

if not kernels.compiled:
    pytest.skip("the compiled kernels are not built", allow_module_level=True)

RNG = np.random.default_rng(0)


def _const(name, value):
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def _model(nodes, inits, shape, outputs=("y",), opset=13):
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _gelu_model(shape, extra_output=False):
    nodes = [helper.make_node("Div", ["x", "sqrt2"], ["t"]),
             helper.make_node("Erf", ["t"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["p"]),
             helper.make_node("Mul", ["x", "p"], ["m"]),
             helper.make_node("Mul", ["m", "half"], ["y"])]
    inits = [_const("sqrt2", np.sqrt(2)), _const("one", 1.0), _const("half", 0.5)]
    return _model(nodes, inits, shape, ("y", "e") if extra_output else ("y",))


def _layer_norm_model(shape, axes, eps=1e-6, affine=True, extra_output=False, square="Pow"):
    norm = [shape[a] for a in axes]
    nodes = [helper.make_node("ReduceMean", ["x"], ["mean"], axes=axes),
             helper.make_node("Sub", ["x", "mean"], ["d"]),
             helper.make_node("Pow", ["d", "two"], ["sq"]) if square == "Pow" else
             helper.make_node("Mul", ["d", "d"], ["sq"]),
             helper.make_node("ReduceMean", ["sq"], ["var"], axes=axes),
             helper.make_node("Add", ["var", "eps"], ["ve"]),
             helper.make_node("Sqrt", ["ve"], ["std"]),
             helper.make_node("Div", ["d", "std"], ["n" if affine else "y"])]
    inits = [_const("two", 2.0), _const("eps", eps)]
    if affine:
        nodes += [helper.make_node("Mul", ["n", "gamma"], ["g"]),
                  helper.make_node("Add", ["beta", "g"], ["y"])]
        inits += [_const("gamma", RNG.standard_normal(norm)),
                  _const("beta", RNG.standard_normal(norm))]
    return _model(nodes, inits, shape, ("y", "d") if extra_output else ("y",))


def _run_both(tmp_path, model, x):
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    plan = compile_module(qcc.load(str(path)))
    got = execute(plan, {"x": x})[0]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"x": x}),
                    strict=True))
    return plan, got, want


def test_gelu_chain_is_one_step_with_onnxruntime_numbers(tmp_path):
    x = (RNG.standard_normal((2, 7, 33)) * 3).astype(np.float32)
    plan, got, want = _run_both(tmp_path, _gelu_model(x.shape), x)
    assert len(plan.steps) == 1
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-6, atol=1e-6)


def test_gelu_chain_with_an_inner_output_is_not_fused(tmp_path):
    x = RNG.standard_normal((4, 9)).astype(np.float32)
    plan, got, want = _run_both(tmp_path, _gelu_model(x.shape, extra_output=True), x)
    assert "qnn.erf" in [s.op.name for s in plan.steps]
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got["e"], want["e"], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape,axes,affine,square", [
    ((2, 5, 16), [-1], True, "Pow"),
    ((3, 4, 6), [1, 2], True, "Mul"),
    ((1, 197, 192), [2], False, "Pow"),
])
def test_layer_norm_chain_is_one_step_with_onnxruntime_numbers(tmp_path, shape, axes, affine,
                                                               square):
    x = (RNG.standard_normal(shape) * 2 + 5).astype(np.float32)
    plan, got, want = _run_both(tmp_path, _layer_norm_model(shape, axes, affine=affine,
                                                            square=square), x)
    assert len(plan.steps) == 1
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-5)


def test_layer_norm_chain_with_an_inner_output_is_not_fused(tmp_path):
    x = RNG.standard_normal((2, 3, 8)).astype(np.float32)
    plan, got, want = _run_both(tmp_path, _layer_norm_model(x.shape, [-1], extra_output=True),
                                x)
    assert "qnn.reduce_mean" in [s.op.name for s in plan.steps]
    for k in ("y", "d"):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5)


def test_layer_norm_over_a_leading_dim_is_not_fused(tmp_path):
    """A mean over a dim that is not trailing is no layer norm of the kernel's."""
    x = RNG.standard_normal((4, 3, 8)).astype(np.float32)
    plan, got, want = _run_both(tmp_path, _layer_norm_model(x.shape, [1], affine=False), x)
    assert "qnn.reduce_mean" in [s.op.name for s in plan.steps]
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-5)


def test_layer_normalization_op_against_onnxruntime(tmp_path):
    """qnn.layer_norm (ONNX LayerNormalization, opset 17) on the compiled kernel."""
    shape = (2, 6, 40)
    node = helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["y"], axis=-1,
                            epsilon=1e-5)
    inits = [_const("gamma", RNG.standard_normal(40)), _const("beta", RNG.standard_normal(40))]
    x = (RNG.standard_normal(shape) * 4 - 3).astype(np.float32)
    plan, got, want = _run_both(tmp_path, _model([node], inits, shape, opset=17), x)
    assert [s.op.name for s in plan.steps] == ["qnn.layer_norm"]
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-5)


def test_group_norm_of_large_offset_groups_against_float64(tmp_path):
    """GroupNorm as exported (InstanceNormalization over [N, groups, -1]): 50176
    values a group with a mean far from 0, where a float32 running sum would lose
    digits; float64 numpy is the oracle."""
    shape = (2, 4, 50176)
    node = helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-5)
    inits = [_const("s", np.ones(4)), _const("b", np.zeros(4))]
    x = (RNG.standard_normal(shape) * 0.05 + 30).astype(np.float32)
    path = tmp_path / "gn.onnx"
    path.write_bytes(_model([node], inits, shape).SerializeToString())
    got = execute(compile_module(qcc.load(str(path))), {"x": x})[0]["y"]
    x64 = x.astype(np.float64)
    mean = x64.mean(-1, keepdims=True)
    want = (x64 - mean) / np.sqrt(((x64 - mean) ** 2).mean(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bias_first", [True, False])
def test_dense_and_bias_add_are_one_step_with_onnxruntime_numbers(tmp_path, bias_first):
    w, b = RNG.standard_normal((24, 40)), RNG.standard_normal(40)
    add = ["b", "mm"] if bias_first else ["mm", "b"]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", add, ["y"])]
    x = RNG.standard_normal((2, 70, 24)).astype(np.float32)
    plan, got, want = _run_both(tmp_path, _model(nodes, [_const("w", w), _const("b", b)],
                                                 x.shape), x)
    assert [s.op.name for s in plan.steps] == ["qnn.dense"]
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-5)


def test_dense_plus_a_computed_value_is_one_step_with_the_residual(tmp_path, monkeypatch):
    """A dense plus another tensor (a residual, not a bias) is the dense with the add
    as its epilogue (rule 7): onnxruntime's numbers, and the bits of the two steps."""
    from qcc.runtime import patterns

    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]),
             helper.make_node("Add", ["mm", "x"], ["y"])]
    x = RNG.standard_normal((50, 8)).astype(np.float32)
    model = _model(nodes, [_const("w", RNG.standard_normal((8, 8)))], x.shape)
    plan, got, want = _run_both(tmp_path, model, x)
    assert [s.op.name for s in plan.steps] == ["qnn.dense"] and len(plan.steps[0].args) == 3
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(patterns, "dense_epilogues", lambda steps, outputs: list(steps))
    two = compile_module(qcc.load(str(tmp_path / "m.onnx")))
    assert [s.op.name for s in two.steps] == ["qnn.dense", "qnn.add"]
    np.testing.assert_array_equal(execute(two, {"x": x})[0]["y"].view(np.int32),
                                  got["y"].view(np.int32))


def test_residual_add_relu_quant_of_a_deploy_model_is_one_pass(tmp_path, monkeypatch):
    """Rule 4 on the int8 deploy model `qcc quantize` writes for a ResNet-18, where
    the convs' output stages do not take the adds (they do by default:
    test_int8_ascend_fused.py): the residual adds whose sum only the next
    ascend.quant reads run as one pass, with the same outputs, bit for bit, as the
    unfused steps (add, relu, quant)."""
    import onnx

    from qcc.runtime import patterns

    monkeypatch.setattr(patterns, "_int8_dequantized", lambda ctx, v: False)
    monkeypatch.setattr(patterns._int8, "residual", lambda *a: None)
    monkeypatch.setattr(patterns._int8, "teed", lambda *a: None)

    from qcc.frontends.onnx import load_onnx
    from qcc.testing.models import resnet18_cifar

    src = tmp_path / "src"
    src.mkdir()
    onnx.save(resnet18_cifar(batch=2), src / "r18.onnx")
    data = {"input": RNG.standard_normal((4, 3, 32, 32)).astype(np.float32)}
    qcc.quantize(str(src / "r18.onnx"), data, None, str(tmp_path / "out"), progress=False)
    plan = compile_module(load_onnx(str(tmp_path / "out" / "r18_deploy.onnx")))
    fused = [s for s in plan.steps if s.op.name == "ascend.quant" and len(s.args) == 2]
    assert fused, "no residual add was fused"
    x = {"input": RNG.standard_normal((2, 3, 32, 32)).astype(np.float32)}
    got, _ = execute(plan, x)
    add = next(s.op for s in plan.unfused if s.op.name == "qnn.add")
    want, _ = execute(plan, x, keep=[add.results[0]])   # a kept inner value: unfused
    assert np.array_equal(got["logits"], want["logits"])
    assert np.isfinite(got["logits"]).all() and np.abs(got["logits"]).max() > 0


@pytest.mark.parametrize("name", ["timm_vit_tiny", "bert"])
def test_exported_transformers_give_the_same_bits_with_dense_epilogues(name, tmp_path,
                                                                       monkeypatch):
    """torch.onnx.export of a timm ViT and a `transformers` BERT (tests/models/zoo.py),
    float and fake-quant (qcc.quantize's module): rule 7 takes the residual adds and
    GELUs into the dense steps before them, and the plan gives the bits of the plan
    without it."""
    import os
    import sys

    pytest.importorskip("torch")
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "models"))
    zoo = pytest.importorskip("zoo")
    from qcc.frontends.onnx import load_onnx
    from qcc.runtime import patterns

    arch = zoo.ZOO[name]
    path = str(tmp_path / f"{name}.onnx")
    zoo.export(arch, "torchscript", path)
    feeds = arch.inputs(3, 1)
    fq_module = qcc.quantize(load_onnx(path), arch.inputs(4, 2), progress=False).module
    rule = patterns.dense_epilogues
    for module in (load_onnx(path), fq_module):
        fused = compile_module(module)
        kinds = [getattr(s.fn, "__name__", "") for s in fused.steps]
        assert kinds.count("with_residual") >= 2 and kinds.count("with_gelu") >= 2
        monkeypatch.setattr(patterns, "dense_epilogues", lambda steps, outputs: list(steps))
        plain = compile_module(module)
        monkeypatch.setattr(patterns, "dense_epilogues", rule)
        assert len(plain.steps) == len(fused.steps) + kinds.count("with_residual") + \
            kinds.count("with_gelu")
        want = execute(plain, feeds)[0]
        got = execute(fused, feeds)[0]
        for k in want:
            np.testing.assert_array_equal(got[k].view(np.int32), want[k].view(np.int32))
